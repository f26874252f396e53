"""Running the platform's alert rules through Debian's `promtool`: rule files, input series,
expected alerts, and `promtool test rules` itself."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import yaml

from infra import alerts
from tests.programs import PROMTOOL, needs

needs_promtool = needs("promtool")


def rule_file(tmp_path: Path) -> Path:
    """The platform's rule groups, written where promtool can read them."""
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump({"groups": alerts.rule_groups()}, sort_keys=False))
    return path


def run(*args: str) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None, "CI must install promtool (.ci/run installs Debian's prometheus)"
    return subprocess.run(
        [PROMTOOL, *args], capture_output=True, text=True, timeout=120, check=False
    )


def run_rule_tests(tmp_path: Path, *tests: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    """`promtool test rules` of the platform's rules: each test (input_series, alert_rule_test)
    with 1-minute samples, evaluated every minute."""
    document = {
        "rule_files": [str(rule_file(tmp_path))],
        "evaluation_interval": "1m",
        "tests": [{"interval": "1m", **test} for test in tests],
    }
    path = tmp_path / "tests.yml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return run("test", "rules", str(path))


def assert_rule_tests_pass(
    tmp_path: Path, *tests: dict[str, Any]
) -> subprocess.CompletedProcess[str]:
    result = run_rule_tests(tmp_path, *tests)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def series(metric: str, labels: dict[str, str], values: str) -> dict[str, str]:
    """One promtool input series: `metric{labels}` with its expanding values."""
    rendered = ", ".join(f'{k}="{v}"' for k, v in labels.items())
    return {"series": f"{metric}{{{rendered}}}", "values": values}


def expand(template: str, labels: dict[str, str]) -> str:
    """An annotation or label template with `{{ $labels.x }}` filled in from `labels`."""
    return re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: labels.get(m[1], ""), template)


def expected(name: str, labels: dict[str, str]) -> dict[str, Any]:
    """The alert `name` as promtool reports it for a series with `labels`."""
    [alert] = [a for group in alerts.GROUPS.values() for a in group if a.name == name]
    # The rule's own labels, templated from the series (an empty one is no label).
    extra = {k: expand(v, labels) for k, v in alert.labels.items()}
    return {
        "exp_labels": {
            **labels,
            **{k: v for k, v in extra.items() if v},
            "severity": alert.severity,
        },
        "exp_annotations": {"summary": expand(alert.summary, labels), "runbook": alert.runbook},
    }
