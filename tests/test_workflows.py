"""The GitHub Actions workflows agree with the repository: every stack is rendered, scanned and
previewed; previews run the policy pack; cloud credentials come only from OIDC.

(actionlint, in `make lint`, checks the workflows' syntax, expressions and action inputs.)
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.program import ROOT, stack_names

WORKFLOWS = ROOT / ".github" / "workflows"
# An action pinned to a full commit, its version in the trailing comment.
PINNED = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40}$")


def _load(name: str) -> dict[str, Any]:
    # YAML 1.1 reads the key `on` as True.
    workflow: dict[Any, Any] = yaml.safe_load((WORKFLOWS / name).read_text())
    workflow["on"] = workflow.pop(True, workflow.get("on"))
    return workflow


def _steps(job: dict[str, Any]) -> list[dict[str, Any]]:
    return list(job.get("steps") or [])


def _stacks_of(job: dict[str, Any]) -> list[str]:
    matrix = job["strategy"]["matrix"]
    return (
        [entry["stack"] for entry in matrix["include"]] if "include" in matrix else matrix["stack"]
    )


def test_pull_requests_render_scan_and_preview_every_stack() -> None:
    jobs = _load("pr.yml")["jobs"]
    assert sorted(_stacks_of(jobs["render"])) == sorted(stack_names())
    assert sorted(_stacks_of(jobs["preview"])) == sorted(stack_names())
    render = " ".join(step.get("run", "") for step in _steps(jobs["render"]))
    assert "make render" in render
    assert "make scan" in render
    assert "test_manifests_validate_strictly" in render


def test_the_test_job_runs_what_the_readme_names() -> None:
    runs = [step.get("run", "") for step in _steps(_load("pr.yml")["jobs"]["test"])]
    assert ".ci/run" in runs
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    assert "make test" in (ROOT / "README.md").read_text()


def test_previews_run_the_policy_pack_and_comment_on_the_pull_request() -> None:
    [preview] = [
        step
        for step in _steps(_load("pr.yml")["jobs"]["preview"])
        if step.get("uses", "").startswith("pulumi/actions@")
        and step.get("with", {}).get("command") == "preview"
    ]
    inputs = preview["with"]
    assert inputs["policyPacks"] == "policy"
    assert (ROOT / inputs["policyPacks"] / "PulumiPolicy.yaml").exists()
    assert inputs["diff"] is True
    assert "comment-on-pr" in inputs


def test_prod_is_checked_for_drift_nightly() -> None:
    drift = _load("drift.yml")
    assert "schedule" in drift["on"]
    [step] = [
        step
        for job in drift["jobs"].values()
        for step in _steps(job)
        if step.get("uses", "").startswith("pulumi/actions@")
    ]
    inputs = step["with"]
    assert inputs["command"] == "preview"
    assert inputs["refresh"] is True
    assert inputs["expect-no-changes"] is True
    assert inputs["stack-name"].endswith("/ml-platform/${{ env.STACK }}")
    assert drift["env"]["STACK"] == "prod"


@pytest.mark.parametrize("name", ["pr.yml", "drift.yml"])
def test_cloud_credentials_come_from_oidc_only(name: str) -> None:
    text = (WORKFLOWS / name).read_text()
    for key in ("aws-access-key-id", "aws-secret-access-key", "PULUMI_ACCESS_TOKEN"):
        assert key not in text, f"{name} uses {key}: use OIDC role assumption"
    workflow = _load(name)
    for job_name, job in workflow["jobs"].items():
        assumes_role = any(
            step.get("uses", "").startswith("aws-actions/configure-aws-credentials@")
            for step in _steps(job)
        )
        if assumes_role:
            assert job["permissions"]["id-token"] == "write", job_name


@pytest.mark.parametrize("path", sorted(WORKFLOWS.glob("*.yml")), ids=lambda p: p.name)
def test_every_action_is_pinned_to_a_commit(path: Path) -> None:
    workflow = _load(path.name)
    for job in workflow["jobs"].values():
        for step in _steps(job):
            if "uses" in step:
                assert PINNED.match(step["uses"]), step["uses"]


@pytest.mark.parametrize("path", sorted(WORKFLOWS.glob("*.yml")), ids=lambda p: p.name)
def test_every_job_has_a_timeout_and_least_privilege(path: Path) -> None:
    workflow = _load(path.name)
    assert workflow["permissions"] == {"contents": "read"}
    for name, job in workflow["jobs"].items():
        assert job.get("timeout-minutes"), name
