"""Every environment the project builds compiles its modules to bytecode at install.

CI and the test machines set PYTHONDONTWRITEBYTECODE, so a module not compiled at install is
compiled from source by every process that imports it (pulumi_aws alone takes seconds).  uv's
`compile-bytecode` setting in each project's [tool.uv] reaches every sync of it: the Makefile's
(the platform, tools/checkov, policy), CI's (through the Makefile, and the platform's own
`uv sync --locked` steps in .github/workflows/pr.yml and drift.yml), and Pulumi's uv
toolchain's (the platform, policy).
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from tests.pulumi_pin import SDK_PIN_READ, WORKFLOWS, pulumi_cli
from tests.upstream_facts import facts

ROOT = Path(__file__).resolve().parents[1]
PROJECTS = ["pyproject.toml", "tools/checkov/pyproject.toml", "policy/pyproject.toml"]
UV_VERSION = re.search(r"^UV_VERSION := (\S+)$", (ROOT / "Makefile").read_text(), re.M)


@pytest.mark.parametrize("workflow", WORKFLOWS)
def test_the_workflows_install_the_cli_of_the_sdk_pin(workflow: str) -> None:
    text = (ROOT / workflow).read_text()
    assert SDK_PIN_READ in text, f"{workflow} no longer reads the CLI's version from the SDK pin"
    assert "pulumi-version: ${{ steps.stack.outputs.pulumi-version }}" in text


def _uv_pin() -> str:
    assert UV_VERSION is not None, "the Makefile sets no UV_VERSION"
    return UV_VERSION[1]


@pytest.mark.parametrize("project", PROJECTS)
def test_each_project_compiles_bytecode_when_its_environment_is_built(project: str) -> None:
    uv = facts("uv-compile-bytecode", pinned=_uv_pin())
    assert uv["default"] is False  # so it must be asked for
    table = tomllib.loads((ROOT / project).read_text())
    for key in uv["table"].split("."):
        table = table[key]
    assert table.get(uv["setting"]) is True, f"{project}: set {uv['setting']} = true"


def test_pulumis_toolchain_syncs_read_the_projects_settings() -> None:
    toolchain = facts("pulumi-uv-toolchain", pinned=pulumi_cli())
    assert toolchain["reads_project_settings"] is True
    assert all(command.split()[0] == "sync" for command in toolchain["sync_commands"])
    pulumi = (ROOT / "Pulumi.yaml").read_text()
    assert re.search(r"^\s+toolchain: uv$", pulumi, re.M)
    # The environment Pulumi syncs is the one `make setup` builds.
    assert re.search(r"^\s+virtualenv: \.venv$", pulumi, re.M)
    assert re.search(r"^VENV := \.venv$", (ROOT / "Makefile").read_text(), re.M)
