"""checkov over every stack's rendered manifests: no finding outside security/checkov-skips.yaml."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from harness.render import render
from harness.scan import Finding, ScanError, load_skips, run_checkov, stale, unaccepted
from tests.conftest import STACKS

_findings: dict[str, list[Finding]] = {}


def _scan(stack: str, out: Path) -> list[Finding]:
    if stack not in _findings:
        render(stack, out)
        _findings[stack] = run_checkov(out / stack / "manifests.yaml")
    return _findings[stack]


@pytest.mark.parametrize("stack", STACKS)
def test_checkov_finds_nothing_unaccepted(stack: str, tmp_path: Path) -> None:
    findings = _scan(stack, tmp_path)
    assert not unaccepted(findings, load_skips()), "\n".join(map(str, findings))


def test_every_skip_is_still_needed(tmp_path: Path) -> None:
    findings = [f for stack in STACKS for f in _scan(stack, tmp_path / stack)]
    assert not stale(findings, load_skips())


def test_the_scan_fails_an_unsafe_deployment(tmp_path: Path) -> None:
    unsafe = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "unsafe", "namespace": "research"},
        "spec": {
            "selector": {"matchLabels": {"app": "unsafe"}},
            "template": {
                "metadata": {"labels": {"app": "unsafe"}},
                "spec": {
                    "hostNetwork": True,
                    "containers": [
                        {"name": "c", "image": "busybox", "securityContext": {"privileged": True}}
                    ],
                },
            },
        },
    }
    manifests = tmp_path / "manifests.yaml"
    manifests.write_text(yaml.safe_dump(unsafe))
    failures = {f.check for f in unaccepted(run_checkov(manifests), load_skips())}
    # privileged, host network, no resource limits
    assert {"CKV_K8S_16", "CKV_K8S_19", "CKV_K8S_13"} <= failures, failures


def test_a_skip_without_a_reason_is_refused(tmp_path: Path) -> None:
    skips = tmp_path / "skips.yaml"
    skips.write_text(yaml.safe_dump([{"check": "CKV_K8S_15", "reason": " "}]))
    with pytest.raises(ScanError, match="CKV_K8S_15 needs a `reason`"):
        load_skips(skips)


def test_a_resource_scoped_skip_covers_only_that_resource() -> None:
    [skip] = [s for s in load_skips() if s.check == "CKV_K8S_38"]
    scheduler = Finding("CKV_K8S_38", "", "Deployment.kube-system.gpu-binpack-scheduler")
    other = Finding("CKV_K8S_38", "", "Deployment.serving.tfserving-mnist")
    assert skip.covers(scheduler)
    assert not skip.covers(other)
