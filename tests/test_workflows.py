"""The GitHub Actions workflows agree with the repository: every stack is rendered, scanned and
previewed; previews run the policy pack; cloud credentials come only from OIDC.

(actionlint, in `make lint`, checks the workflows' syntax, expressions and action inputs.)
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
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


def _step(job: dict[str, Any], step_id: str) -> tuple[int, dict[str, Any]]:
    [found] = [(i, step) for i, step in enumerate(_steps(job)) if step.get("id") == step_id]
    return found


OUTPUT = '"$RUNNER_TEMP/preview.txt"'


def _report_step(job: dict[str, Any]) -> dict[str, Any]:
    """The step after the preview that reports it, also when the preview (or a step before it)
    failed: pulumi/actions@v7.0.0 reports nothing about a failed preview."""
    index, preview = _step(job, "preview")
    run = preview["run"]
    assert "set -o pipefail" in run  # GitHub's default bash has no pipefail: tee would hide it
    assert run.rstrip().endswith(f"| tee {OUTPUT}")
    assert "pulumi/actions" not in str(preview.get("uses", ""))
    [report] = [
        step
        for step in _steps(job)[index + 1 :]
        if "scripts/preview_report.py" in step.get("run", "")
    ]
    assert "failure()" in report["if"]
    assert report["env"]["OUTCOME"] == "${{ steps.preview.outcome }}"
    assert f"--output {OUTPUT}" in report["run"]
    assert (ROOT / "scripts" / "preview_report.py").exists()
    return report


def test_previews_run_the_policy_pack_and_report_on_the_pull_request() -> None:
    job = _load("pr.yml")["jobs"]["preview"]
    _, preview = _step(job, "preview")
    run = preview["run"]
    assert run.count("--policy-pack policy") == 2  # the cloud stacks and local
    assert (ROOT / "policy" / "PulumiPolicy.yaml").exists()
    assert "--diff" in run
    assert 'scripts/preview.sh "$STACK"' in run  # local: what `make preview` runs
    assert '--diff "$@"' in (ROOT / "scripts" / "preview.sh").read_text()
    report = _report_step(job)
    assert "--comment" in report["run"]
    assert report["env"]["PR_NUMBER"] == "${{ github.event.pull_request.number }}"
    assert job["permissions"]["pull-requests"] == "write"


def test_prod_is_checked_for_drift_nightly() -> None:
    drift = _load("drift.yml")
    assert "schedule" in drift["on"]
    job = drift["jobs"]["drift"]
    _, preview = _step(job, "preview")
    run = preview["run"]
    assert "preview" in run
    assert "--refresh --expect-no-changes" in run
    assert '--stack "$PULUMI_ORG/ml-platform/$STACK"' in run
    assert drift["env"]["STACK"] == "prod"
    _report_step(job)


@pytest.mark.parametrize(("name", "job"), [("pr.yml", "preview"), ("drift.yml", "drift")])
def test_previews_refuse_a_stale_lock(name: str, job: str) -> None:
    """Pulumi's uv toolchain syncs with `uv sync --inexact` and no `--locked`; UV_LOCKED is how
    the sync it runs for the program and the policy pack refuses a stale uv.lock."""
    _, preview = _step(_load(name)["jobs"][job], "preview")
    assert preview["env"]["UV_LOCKED"] == "1"
    assert "export UV_LOCKED=1" in (ROOT / "scripts" / "preview.sh").read_text()


FAKE_PULUMI = """#!/bin/sh
# A stand-in for the CLI: logs its arguments, and writes a salt where the real one does.
echo "$* UV_LOCKED=$UV_LOCKED FALLBACK=$PULUMI_FALLBACK_TO_STATE_SECRETS_MANAGER" >> "$FAKE_LOG"
case "$1" in
  whoami) exit 0 ;;
  stack) echo "encryptionsalt: v1:fake" >> "Pulumi.local.yaml" ;;
  preview)
    file=Pulumi.local.yaml
    while [ $# -gt 0 ]; do [ "$1" = --config-file ] && file=$2; shift; done
    echo "encryptionsalt: v1:fake" >> "$file" ;;
esac
"""


def test_make_preview_leaves_the_stack_file_alone(tmp_path: Path) -> None:
    """Creating a stack and previewing it write the passphrase salt into its config file; the
    tracked Pulumi.local.yaml must stay as it is (the preview reads a copy)."""
    project = tmp_path / "project"
    (project / "scripts").mkdir(parents=True)
    shutil.copy2(ROOT / "scripts" / "preview.sh", project / "scripts" / "preview.sh")
    shutil.copy2(ROOT / "Pulumi.local.yaml", project / "Pulumi.local.yaml")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "pulumi").write_text(FAKE_PULUMI)
    (bin_dir / "pulumi").chmod(0o755)
    log = tmp_path / "pulumi.log"
    subprocess.run(
        ["scripts/preview.sh", "local", "--policy-pack", "policy"],
        cwd=project,
        env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "FAKE_LOG": str(log)},
        check=True,
    )
    assert (project / "Pulumi.local.yaml").read_bytes() == (ROOT / "Pulumi.local.yaml").read_bytes()
    calls = log.read_text().splitlines()
    [preview] = [call for call in calls if call.startswith("preview ")]
    assert "--stack local" in preview
    assert "--config-file" in preview
    assert str(project) not in preview.split("--config-file ")[1].split()[0]
    assert "--diff --policy-pack policy" in preview
    assert "UV_LOCKED=1" in preview
    assert "FALLBACK=true" in preview


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
