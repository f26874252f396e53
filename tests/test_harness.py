"""The mock harness itself: it must fail loudly rather than hand the program empty answers."""

from __future__ import annotations

import pulumi
import pytest

from harness.mocks import PlatformMocks, UnmockedCallError
from harness.program import SECRET_MASK, engine_config, project_defaults
from infra.kubeflow import retain_shared_objects
from tests.conftest import stack_run


def test_unmocked_invoke_is_an_error() -> None:
    call = pulumi.runtime.MockCallArgs(token="aws:ec2/getAmi:getAmi", args={}, provider="")
    with pytest.raises(UnmockedCallError, match="no mock for invoke 'aws:ec2/getAmi:getAmi'"):
        PlatformMocks().call(call)


def test_unmocked_resource_type_is_an_error() -> None:
    args = pulumi.runtime.MockResourceArgs(
        typ="aws:rds/instance:Instance",
        name="db",
        inputs={},
        provider="",
        resource_id="",
        custom=True,
    )
    with pytest.raises(UnmockedCallError, match="no mock outputs for resource type"):
        PlatformMocks().new_resource(args)


def test_kubernetes_objects_without_a_name_are_auto_named() -> None:
    args = pulumi.runtime.MockResourceArgs(
        typ="kubernetes:core/v1:ConfigMap",
        name="settings",
        inputs={"metadata": {"namespace": "ml-system"}},
        provider="",
        resource_id="",
        custom=True,
    )
    resource_id, state = PlatformMocks().new_resource(args)
    name = state["metadata"]["name"]
    assert name.startswith("settings-")
    assert resource_id == f"ml-system/{name}"


def test_secure_values_become_dummy_secrets() -> None:
    flat, secrets = engine_config({"ml-platform:token": {"secure": "AAABAxyz"}, "ml-platform:n": 3})
    assert flat["ml-platform:token"].startswith("mock-secret-")
    assert secrets == ["ml-platform:token"]
    assert flat["ml-platform:n"] == "3"


def test_project_defaults_come_from_pulumi_yaml() -> None:
    defaults = project_defaults()
    assert defaults["ml-platform:teams"] == []
    assert defaults["pulumi:tags"]["project"] == "ml-platform"
    assert "ml-platform:cluster" not in defaults  # required: no default


def test_secret_inputs_are_masked_in_resources_json() -> None:
    provider = next(
        r for r in stack_run("dev").resources if r.type == "pulumi:providers:kubernetes"
    )  # both cluster providers carry the kubeconfig
    assert "kubeconfig" in provider.secret_inputs
    assert provider.as_json()["inputs"]["kubeconfig"] == SECRET_MASK


def test_each_resource_keeps_its_own_transforms() -> None:
    # The mocks run no transforms, so tests run them; the harness must hand over the very
    # functions the program gave each resource, and none to resources that were given none.
    run = stack_run("local")
    directories = run.of_type("kubernetes:kustomize/v2:Directory")
    assert directories
    for directory in directories:
        assert retain_shared_objects in directory.transforms, directory.name
    releases = run.of_type("kubernetes:helm.sh/v3:Release")
    assert releases
    assert all(release.transforms == () for release in releases)
