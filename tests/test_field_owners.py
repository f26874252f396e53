"""Each upstream object has one owner: nothing patches an object a kustomize Directory creates.

A `*Patch` resource applies its fields with a field manager of its own.  On an object a
Directory also applies, every refresh records the patched values as the Directory child's state,
the next diff shows them as changes, and the update that puts the upstream values back conflicts
with the patch's field manager.  Upstream objects are changed by the Directory's transforms
instead (infra/kubeflow.py, infra/pipeline_store.py).

The objects each Directory creates are listed in fixtures rendered from the pinned sources
(tests/upstream/*-objects.yaml).  Helm releases are one opaque resource under mocks and their
charts are not rendered here, so their objects are not covered.
"""

from __future__ import annotations

from typing import Any

import pytest

from harness.program import ProgramRun, RegisteredResource
from infra import versions
from tests.conftest import STACKS, stack_run
from tests.upstream_facts import facts

DIRECTORY = "kubernetes:kustomize/v2:Directory"
# Repository URL of a Directory's source -> the fixture listing what each of its paths creates.
OBJECT_LISTS = {
    "https://github.com/kubeflow/pipelines": "kubeflow-pipelines-objects",
    "https://github.com/kubeflow/kubeflow": "kubeflow-notebook-controller-objects",
    "https://github.com/kubeflow/trainer": "kubeflow-trainer-objects",
    "https://github.com/kubeflow/katib": "kubeflow-katib-objects",
}


def identity(api_version: str, kind: str, namespace: str | None, name: str) -> str:
    """`<apiVersion> <kind> [<namespace>/]<name>`, the fixtures' form."""
    return f"{api_version} {kind} {f'{namespace}/' if namespace else ''}{name}"


def directory_objects(directory: RegisteredResource) -> set[str]:
    """What `directory` creates, from the fixture rendered from its source."""
    url = str(directory.inputs["directory"])
    repository, _, rest = url.rpartition("//")  # <repository>//<path>?ref=<ref>
    path, _, ref = rest.partition("?ref=")
    fixture = OBJECT_LISTS.get(repository)
    assert fixture is not None, f"{directory.name}: list what {url} creates in a fixture"
    listed: dict[str, list[str]] = facts(fixture, pinned=ref)["objects"]
    assert path in listed, f"{directory.name}: tests/upstream/{fixture}.yaml lacks {path}"
    return set(listed[path])


def patched_object(patch: RegisteredResource) -> str:
    """The object a `*Patch` resource applies to, from its type token and metadata."""
    _, group_version, kind = patch.type.split(":")
    group, _, version = group_version.rpartition("/")
    metadata: dict[str, Any] = patch.inputs.get("metadata") or {}
    return identity(
        version if group == "core" else f"{group}/{version}",
        kind.removesuffix("Patch"),
        metadata.get("namespace"),
        str(metadata.get("name")),
    )


def doubly_owned(run: ProgramRun) -> list[str]:
    created = {
        obj: directory.name
        for directory in run.of_type(DIRECTORY)
        for obj in directory_objects(directory)
    }
    return [
        f"{patch.name} patches {patched_object(patch)}, which {created[patched_object(patch)]} "
        "creates: change it through that Directory's transforms"
        for patch in run.resources
        if patch.type.startswith("kubernetes:") and patch.type.endswith("Patch")
        if patched_object(patch) in created
    ]


@pytest.mark.parametrize("stack", STACKS)
def test_no_directory_object_is_also_patched(stack: str) -> None:
    run = stack_run(stack)
    assert run.of_type(DIRECTORY), "every stack installs some Kubeflow component"
    assert doubly_owned(run) == []


def test_patched_object_names_what_the_patch_applies_to() -> None:
    def patch(type_: str, metadata: dict[str, str]) -> RegisteredResource:
        return RegisteredResource(
            urn="urn",
            type=type_,
            name="p",
            custom=True,
            parent=None,
            dependencies=(),
            provider=None,
            inputs={"metadata": metadata},
            outputs={},
        )

    config_map = patch("kubernetes:core/v1:ConfigMapPatch", {"name": "c", "namespace": "kubeflow"})
    assert patched_object(config_map) == "v1 ConfigMap kubeflow/c"
    deployment = patch(
        "kubernetes:apps/v1:DeploymentPatch", {"name": "ml-pipeline", "namespace": "kubeflow"}
    )
    assert patched_object(deployment) == "apps/v1 Deployment kubeflow/ml-pipeline"
    role = patch("kubernetes:rbac.authorization.k8s.io/v1:ClusterRolePatch", {"name": "r"})
    assert patched_object(role) == "rbac.authorization.k8s.io/v1 ClusterRole r"
    # The listing the generic test compares with holds that Deployment.
    pipelines = facts("kubeflow-pipelines-objects", pinned=versions.KFP_REF)["objects"]
    assert patched_object(deployment) in pipelines["manifests/kustomize/env/platform-agnostic"]
