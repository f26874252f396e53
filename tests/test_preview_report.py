"""The preview report: a failed preview's output reaches the job summary and the pull request."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from scripts import preview_report

FAILED = """Previewing update (dev):
  pulumi:pulumi:Stack ml-platform-dev running
Policies:
    ❌ ml-platform-policy@v0.1.0 (local: policy)
        - [mandatory]  no-privileged-containers  (kubernetes:apps/v1:Deployment: bad)
error: preview failed
"""


def test_a_failed_preview_is_reported_with_its_output() -> None:
    body = preview_report.report(
        stack="dev", outcome="failure", output=FAILED, command="pulumi preview"
    )
    assert body.startswith(preview_report.marker("dev"))
    assert "failed" in body.splitlines()[1]
    assert "no-privileged-containers" in body
    assert "error: preview failed" in body
    assert "<details open>" in body


def test_a_preview_that_never_ran_says_so() -> None:
    body = preview_report.report(
        stack="prod", outcome="skipped", output=None, command="pulumi preview"
    )
    assert "did not run" in body
    assert "log" in body


def test_long_output_keeps_its_end_within_a_comment() -> None:
    output = "\n".join(f"line {i}" for i in range(50_000)) + "\nerror: the last line"
    body = preview_report.report(stack="dev", outcome="failure", output=output, command="p")
    assert len(body) <= preview_report.COMMENT_LIMIT
    assert "error: the last line" in body
    assert "characters cut" in body


def test_output_cannot_close_the_code_block() -> None:
    output = "```\n# not a heading\n````"
    body = preview_report.report(stack="dev", outcome="failure", output=output, command="p")
    assert "`````text\n" in body


def test_colour_codes_are_stripped() -> None:
    body = preview_report.report(
        stack="dev", outcome="success", output="\x1b[32m+ create\x1b[0m", command="p"
    )
    assert "\x1b" not in body
    assert "+ create" in body


@pytest.fixture
def fake_gh(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A `gh` on PATH that logs its arguments and finds an existing comment 42."""
    log = tmp_path / "gh.log"
    gh = tmp_path / "bin" / "gh"
    gh.parent.mkdir()
    gh.write_text(
        "#!/bin/sh\n"
        f'echo "$*" >> {log}\n'
        'case "$*" in *--paginate*) [ -n "$FAKE_GH_FOUND" ] && echo 42;; esac\n'
        "exit 0\n"
    )
    gh.chmod(0o755)
    monkeypatch.setenv("PATH", f"{gh.parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("GH_REPO", "owner/repo")
    return log


@pytest.mark.parametrize("existing", [True, False])
def test_main_writes_the_summary_and_comments_on_the_pull_request(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_gh: Path, existing: bool
) -> None:
    output = tmp_path / "preview.txt"
    output.write_text(FAILED)
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    if existing:
        monkeypatch.setenv("FAKE_GH_FOUND", "1")
    preview_report.main(
        ["--stack", "dev", "--output", str(output), "--outcome", "failure", "--comment", "7"]
    )
    assert "no-privileged-containers" in summary.read_text()
    calls = fake_gh.read_text().splitlines()
    assert "repos/owner/repo/issues/7/comments" in calls[0]
    if existing:
        assert "-X PATCH repos/owner/repo/issues/comments/42" in calls[1]
    else:
        assert "-X POST repos/owner/repo/issues/7/comments" in calls[1]
    assert "body=@" in calls[1]
