"""Shared fixtures: each stack's program run under mocks once per session."""

from __future__ import annotations

from typing import Any

import pytest

from harness.program import ProgramRun, run_program, stack_names
from harness.render import kubernetes_objects

STACKS = stack_names()

_runs: dict[str, ProgramRun] = {}


def stack_run(stack: str) -> ProgramRun:
    """The program's run for `stack` (run once, then reused; runs are read-only)."""
    if stack not in _runs:
        _runs[stack] = run_program(stack)
    return _runs[stack]


@pytest.fixture(params=STACKS)
def run(request: pytest.FixtureRequest) -> ProgramRun:
    return stack_run(request.param)


@pytest.fixture(params=STACKS)
def manifests(request: pytest.FixtureRequest) -> tuple[str, list[dict[str, Any]]]:
    return request.param, kubernetes_objects(stack_run(request.param))
