"""The Pulumi CLI version the project installs, read where the workflows read it.

The workflows install the CLI of the SDK's pin in pyproject.toml (the CLI is released with the
same version as the SDK), so the tests that hold facts about the CLI read that pin too.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = (".github/workflows/pr.yml", ".github/workflows/drift.yml")
# The expression each workflow reads the SDK's pin with.
SDK_PIN_READ = 'd.removeprefix("pulumi==") for d in deps if d.startswith("pulumi==")'


def pulumi_cli() -> str:
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    pins: list[str] = [d.removeprefix("pulumi==") for d in dependencies if d.startswith("pulumi==")]
    assert len(pins) == 1, f"pyproject.toml must pin the Pulumi SDK once as pulumi==X; has {pins}"
    return pins[0]
