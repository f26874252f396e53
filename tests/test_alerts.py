"""The alert rules: valid for promtool, and firing (or not) on synthetic series as intended."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra import alerts

PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None and not os.environ.get("CI"),
    reason="promtool is not installed here (Debian: apt-get install prometheus); CI installs it",
)


def _rule_file(tmp_path: Path) -> Path:
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump({"groups": alerts.rule_groups()}, sort_keys=False))
    return path


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None, "CI must install promtool (.ci/run installs Debian's prometheus)"
    return subprocess.run(
        [PROMTOOL, *args], capture_output=True, text=True, timeout=120, check=False
    )


def series(metric: str, labels: dict[str, str], values: str) -> dict[str, str]:
    """One promtool input series: `metric{labels}` with its expanding values."""
    rendered = ", ".join(f'{k}="{v}"' for k, v in labels.items())
    return {"series": f"{metric}{{{rendered}}}", "values": values}


def _expand(template: str, labels: dict[str, str]) -> str:
    return re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: labels.get(m[1], ""), template)


def _expected(name: str, labels: dict[str, str]) -> dict[str, Any]:
    [alert] = [a for group in alerts.GROUPS.values() for a in group if a.name == name]
    return {
        "exp_labels": {**labels, "severity": alert.severity},
        "exp_annotations": {"summary": _expand(alert.summary, labels), "runbook": alert.runbook},
    }


@needs_promtool
def test_every_rule_group_passes_promtool_check(tmp_path: Path) -> None:
    result = _promtool("check", "rules", str(_rule_file(tmp_path)))
    assert result.returncode == 0, result.stdout + result.stderr
    total = sum(len(group) for group in alerts.GROUPS.values())
    assert f"SUCCESS: {total} rules found" in result.stdout


def test_every_alert_has_severity_summary_and_runbook() -> None:
    for group in alerts.rule_groups():
        for rule in group["rules"]:
            assert rule["labels"]["severity"] in ("critical", "warning", "info")
            assert rule["annotations"]["summary"]
            assert rule["annotations"]["runbook"]


@needs_promtool
def test_gpu_idle_and_error_rate_alerts_fire_only_when_they_should(tmp_path: Path) -> None:
    idle = {"gpu": "0", "Hostname": "node-a", "namespace": "research", "pod": "notebook-0"}
    busy = {"gpu": "1", "Hostname": "node-a", "namespace": "research", "pod": "trainer-0"}
    unallocated = {"gpu": "2", "Hostname": "node-b", "namespace": "", "pod": ""}
    failing = {"namespace": "serving", "service": "inference-mnist"}
    healthy = {"namespace": "serving", "service": "inference-other"}

    tests = {
        "rule_files": [str(_rule_file(tmp_path))],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    series("DCGM_FI_DEV_GPU_UTIL", idle, "2x60"),
                    series("DCGM_FI_DEV_GPU_UTIL", busy, "90x60"),
                    series("DCGM_FI_DEV_GPU_UTIL", unallocated, "0x60"),
                    series(
                        "inference_requests_total",
                        {**failing, "route": "predict", "status": "200"},
                        "0+100x40",
                    ),
                    series(
                        "inference_requests_total",
                        {**failing, "route": "predict", "status": "500"},
                        "0+10x40",
                    ),
                    series(
                        "inference_requests_total",
                        {**healthy, "route": "predict", "status": "200"},
                        "0+1000x40",
                    ),
                    series(
                        "inference_requests_total",
                        {**healthy, "route": "predict", "status": "500"},
                        "0+1x40",
                    ),
                ],
                "alert_rule_test": [
                    # Not yet: the window and `for` have not passed.
                    {"eval_time": "5m", "alertname": "GpuIdleWhileAllocated", "exp_alerts": []},
                    {"eval_time": "5m", "alertname": "InferenceApiErrorRate", "exp_alerts": []},
                    # Only the allocated idle GPU, not the busy one or the unallocated one.
                    {
                        "eval_time": "50m",
                        "alertname": "GpuIdleWhileAllocated",
                        "exp_alerts": [_expected("GpuIdleWhileAllocated", idle)],
                    },
                    # 9% errors fires; 0.1% does not.
                    {
                        "eval_time": "30m",
                        "alertname": "InferenceApiErrorRate",
                        "exp_alerts": [_expected("InferenceApiErrorRate", failing)],
                    },
                ],
            }
        ],
    }
    test_file = tmp_path / "tests.yml"
    test_file.write_text(yaml.safe_dump(tests, sort_keys=False))
    result = _promtool("test", "rules", str(test_file))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@needs_promtool
def test_promtool_test_catches_a_wrong_expectation(tmp_path: Path) -> None:
    """A control: the harness above would notice an alert that does not fire."""
    tests = {
        "rule_files": [str(_rule_file(tmp_path))],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    {
                        "series": 'DCGM_FI_DEV_GPU_UTIL{gpu="0", pod="p", namespace="n"}',
                        "values": "90x60",
                    }
                ],
                "alert_rule_test": [
                    {
                        "eval_time": "50m",
                        "alertname": "GpuIdleWhileAllocated",
                        "exp_alerts": [{"exp_labels": {"severity": "warning"}}],
                    }
                ],
            }
        ],
    }
    test_file = tmp_path / "tests.yml"
    test_file.write_text(yaml.safe_dump(tests, sort_keys=False))
    assert _promtool("test", "rules", str(test_file)).returncode != 0


@needs_promtool
def test_logs_dropped_fires_when_a_chunk_runs_out_of_retries(tmp_path: Path) -> None:
    dropping = {"namespace": "logging", "pod": "fluent-bit-a", "name": "cloudwatch_logs.0"}
    fine = {"namespace": "logging", "pod": "fluent-bit-b", "name": "cloudwatch_logs.0"}
    metric = "fluentbit_output_retries_failed_total"

    tests = {
        "rule_files": [str(_rule_file(tmp_path))],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                # One pod's counter steps up at minute 20; the other's never moves.
                "input_series": [
                    series(metric, dropping, "0x20 3x20"),
                    series(metric, fine, "0x40"),
                ],
                "alert_rule_test": [
                    {"eval_time": "15m", "alertname": "LogsDropped", "exp_alerts": []},
                    {
                        "eval_time": "25m",
                        "alertname": "LogsDropped",
                        "exp_alerts": [_expected("LogsDropped", dropping)],
                    },
                    # Ten minutes after the last drop the window no longer sees it.
                    {"eval_time": "35m", "alertname": "LogsDropped", "exp_alerts": []},
                ],
            }
        ],
    }
    test_file = tmp_path / "tests.yml"
    test_file.write_text(yaml.safe_dump(tests, sort_keys=False))
    result = _promtool("test", "rules", str(test_file))
    assert result.returncode == 0, result.stdout + result.stderr
