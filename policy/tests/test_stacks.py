"""Every rule over every resource each stack renders: the platform itself must pass."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ml_platform_policy import POLICIES
from ml_platform_policy.workloads import containers, pod_specs
from tests.helpers import check, default_config, engine_view

BUILD = Path(__file__).resolve().parent.parent.parent / "build"
STACKS = ("dev", "prod", "local")


def rendered(stack: str) -> list[dict[str, Any]]:
    path = BUILD / stack / "resources.json"
    if not path.is_file():
        pytest.fail(f"{path} is missing: run `make render-all` in the repository root first")
    resources: list[dict[str, Any]] = json.loads(path.read_text())
    assert resources, f"{path} lists no resources"
    return resources


@pytest.mark.parametrize("stack", STACKS)
def test_the_rendered_stack_passes_every_rule(stack: str) -> None:
    violations: list[str] = []
    resources = rendered(stack)
    for resource in resources:
        for policy in POLICIES:
            for message in check(
                policy,
                resource["type"],
                resource.get("inputs") or {},
                config=default_config(policy),
                name=resource["name"],
                urn=resource["urn"],
            ):
                violations.append(
                    f"[{policy.name}] {resource['type']} {resource['name']}: {message}"
                )
    assert violations == [], "\n".join(violations)


@pytest.mark.parametrize("stack", STACKS)
def test_the_stack_has_what_the_rules_look_at(stack: str) -> None:
    """Guard against a vacuous pass: the stack does carry pods and tenancy objects."""
    resources = rendered(stack)
    types = {resource["type"] for resource in resources}
    pods = [
        pod
        for resource in resources
        for pod in pod_specs(resource["type"], engine_view(resource.get("inputs") or {}))
    ]
    assert pods  # local: the staging Job; AWS stacks: also the model servers and scheduler
    assert all(list(containers(pod)) for pod in pods)
    assert "kubernetes:core/v1:ResourceQuota" in types
    assert "kubernetes:core/v1:LimitRange" in types
    assert "kubernetes:batch/v1:Job" in types
    if stack != "local":
        assert "aws:efs/fileSystem:FileSystem" in types
        assert "aws:iam/rolePolicy:RolePolicy" in types
        assert "kubernetes:apps/v1:Deployment" in types
