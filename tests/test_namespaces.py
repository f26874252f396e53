"""Namespaces: which exist per stack, and the Pod Security Standard each one enforces."""

from __future__ import annotations

from typing import Any

import pytest

from harness.program import raw_settings, stack_settings
from infra.namespaces import namespace_specs
from infra.settings import parse_settings
from tests.conftest import STACKS, stack_run

PSA = "pod-security.kubernetes.io"
NODE_AGENT_NAMESPACES = {"gpu-system", "monitoring", "logging"}


def _namespaces(manifests: tuple[str, list[dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    _, objects = manifests
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == "Namespace"}


def test_every_namespace_pins_all_three_pod_security_modes(
    manifests: tuple[str, list[dict[str, Any]]],
) -> None:
    stack, _ = manifests
    version = f"v{stack_settings(stack).cluster.kubernetes_version}"
    namespaces = _namespaces(manifests)
    assert namespaces
    for name, namespace in namespaces.items():
        labels = namespace["metadata"]["labels"]
        for mode in ("enforce", "audit", "warn"):
            assert labels[f"{PSA}/{mode}"] in ("privileged", "baseline", "restricted"), name
            assert labels[f"{PSA}/{mode}-version"] == version, name
        assert namespace["metadata"]["annotations"]["ml-platform.io/pod-security-reason"]


def test_only_node_agent_namespaces_are_privileged(
    manifests: tuple[str, list[dict[str, Any]]],
) -> None:
    for name, namespace in _namespaces(manifests).items():
        level = namespace["metadata"]["labels"][f"{PSA}/enforce"]
        if level == "privileged":
            assert name in NODE_AGENT_NAMESPACES, name
        else:
            assert namespace["metadata"]["labels"][f"{PSA}/warn"] == "restricted", name


def test_team_namespaces_are_restricted_and_labelled(
    manifests: tuple[str, list[dict[str, Any]]],
) -> None:
    stack, _ = manifests
    teams = stack_settings(stack).teams
    assert teams
    namespaces = _namespaces(manifests)
    for team in teams:
        labels = namespaces[team.name]["metadata"]["labels"]
        assert labels["ml-platform.io/team"] == team.name
        assert labels[f"{PSA}/enforce"] == "restricted"


def test_namespaces_follow_the_enabled_components() -> None:
    raw = raw_settings("local")
    everything = {spec.name for spec in namespace_specs(parse_settings(raw, "local"))}
    assert {"ml-system", "kubeflow", "serving", "monitoring", "logging", "research"} <= everything
    assert "gpu-system" not in everything  # local declares no GPU pool
    raw.update(
        kubeflow={
            "trainingOperator": {"enabled": False},
            "notebooks": {"enabled": False},
            "pipelines": {"enabled": False},
        },
        serving={"enabled": False},
        monitoring={"enabled": False},
        logging={"enabled": False},
    )
    assert {spec.name for spec in namespace_specs(parse_settings(raw, "local"))} == {
        "ml-system",
        "research",
    }


def test_a_baseline_team_says_why() -> None:
    raw = raw_settings("local")
    raw["teams"] = [
        {
            "name": "legacy",
            "podSecurity": "baseline",
            "podSecurityReason": "vendor image runs as root",
        }
    ]
    [spec] = [s for s in namespace_specs(parse_settings(raw, "local")) if s.team]
    assert spec.enforce == "baseline"
    assert spec.reason == "vendor image runs as root"


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_gpu_stacks_get_the_node_agent_namespace(stack: str) -> None:
    assert "gpu-system" in {s.name for s in namespace_specs(stack_settings(stack))}


@pytest.mark.parametrize("stack", STACKS)
def test_default_accounts_mount_no_token_where_we_author_the_pods(stack: str) -> None:
    run = stack_run(stack)
    patched = {
        r.inputs["metadata"]["namespace"]: r
        for r in run.of_type("kubernetes:core/v1:ServiceAccountPatch")
        if r.inputs["metadata"]["name"] == "default"
    }
    namespaces = {
        r.inputs["metadata"]["name"]: r for r in run.of_type("kubernetes:core/v1:Namespace")
    }
    authored = {spec.name for spec in namespace_specs(stack_settings(stack)) if spec.authored}
    assert {"ml-system", *(team.name for team in stack_settings(stack).teams)} <= authored
    # Upstream installs (Kubeflow, charts) keep their namespaces' defaults.
    assert set(patched) == authored
    for namespace, patch in patched.items():
        assert patch.inputs["automountServiceAccountToken"] is False
        assert namespaces[namespace].urn in patch.dependencies
