"""The pack __main__.py builds: every rule, all mandatory."""

from __future__ import annotations

import runpy
from pathlib import Path
from typing import Any

import pulumi_policy
import pytest
from pulumi_policy import EnforcementLevel, ResourceValidationPolicy

from ml_platform_policy import PACK_NAME, POLICIES

POLICY_DIR = Path(__file__).resolve().parent.parent

EXPECTED = {
    "gpu-whole-and-equal-to-limits",
    "no-gpu-defaults-in-limit-ranges",
    "gpu-quotas-on-requests",
    "no-public-load-balancers",
    "no-privileged-pods-outside-node-agents",
    "efs-encrypted",
    "no-latest-image-tags",
    "no-iam-admin-grants",
}


def built_pack(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Run __main__.py as Pulumi does, recording the PolicyPack instead of serving it (the real
    constructor starts the analyzer's gRPC server and blocks)."""
    built: dict[str, Any] = {}

    def record(**kwargs: Any) -> None:
        built.update(kwargs)

    monkeypatch.setattr(pulumi_policy, "PolicyPack", record)
    monkeypatch.syspath_prepend(str(POLICY_DIR))
    runpy.run_path(str(POLICY_DIR), run_name="__main__")
    return built


def test_main_builds_the_pack_from_every_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    pack = built_pack(monkeypatch)
    assert pack["name"] == PACK_NAME == "ml-platform"
    assert pack["enforcement_level"] is EnforcementLevel.MANDATORY
    assert [p.name for p in pack["policies"]] == [p.name for p in POLICIES]
    assert {p.name for p in pack["policies"]} == EXPECTED


def test_every_rule_is_a_mandatory_resource_policy() -> None:
    assert len({p.name for p in POLICIES}) == len(POLICIES)
    for policy in POLICIES:
        assert isinstance(policy, ResourceValidationPolicy)
        assert policy.enforcement_level is EnforcementLevel.MANDATORY, policy.name
        assert policy.description


def test_only_the_privileged_rule_takes_config() -> None:
    configured = [p.name for p in POLICIES if p.config_schema is not None]
    assert configured == ["no-privileged-pods-outside-node-agents"]


def test_the_pack_runs_with_uv() -> None:
    text = (POLICY_DIR / "PulumiPolicy.yaml").read_text()
    assert "name: python" in text
    assert "toolchain: uv" in text
    assert (POLICY_DIR / "uv.lock").is_file()
