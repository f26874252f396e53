"""Debian's `amtool` (prometheus-alertmanager 0.25.0): checking an Alertmanager configuration and
which receivers its routes pick for a set of labels."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.programs import AMTOOL, needs

# The version whose fields tests/upstream/alertmanager-config-amtool.yaml records.
AMTOOL_VERSION = "v0.25.0"
needs_amtool = needs("amtool")


def run(*args: str) -> subprocess.CompletedProcess[str]:
    assert AMTOOL is not None, "CI must install amtool (.ci/run installs prometheus-alertmanager)"
    return subprocess.run([AMTOOL, *args], capture_output=True, text=True, timeout=120, check=False)


def check_config(path: Path) -> subprocess.CompletedProcess[str]:
    return run("check-config", str(path))


def receivers_for(path: Path, labels: dict[str, str]) -> list[str]:
    """The receivers the configuration's routes send an alert with `labels` to."""
    result = run(
        "config", "routes", "test", "--config.file", str(path),
        *(f"{name}={value}" for name, value in labels.items()),
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    return sorted(result.stdout.strip().split(","))
