"""Shared fixtures: each stack's program run under mocks once per session."""

from __future__ import annotations

from typing import Any

import pytest

from harness.program import ProgramRun, project_defaults, run_program, stack_config, stack_names
from harness.render import kubernetes_objects
from infra.settings import PROJECT, Settings, parse_settings

STACKS = stack_names()

_runs: dict[str, ProgramRun] = {}


def stack_run(stack: str) -> ProgramRun:
    """The program's run for `stack` (run once, then reused; runs are read-only)."""
    if stack not in _runs:
        _runs[stack] = run_program(stack)
    return _runs[stack]


def raw_settings(stack: str) -> dict[str, Any]:
    """The stack's `ml-platform:*` config over the Pulumi.yaml defaults, keys without namespace."""
    merged = {**project_defaults(), **stack_config(stack)}
    prefix = f"{PROJECT}:"
    return {k.removeprefix(prefix): v for k, v in merged.items() if k.startswith(prefix)}


def stack_settings(stack: str) -> Settings:
    return parse_settings(raw_settings(stack), stack)


@pytest.fixture(params=STACKS)
def run(request: pytest.FixtureRequest) -> ProgramRun:
    return stack_run(request.param)


@pytest.fixture(params=STACKS)
def manifests(request: pytest.FixtureRequest) -> tuple[str, list[dict[str, Any]]]:
    return request.param, kubernetes_objects(stack_run(request.param))
