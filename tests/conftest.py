"""Shared fixtures: each stack's program run under mocks once per session."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from harness.program import ProgramRun, run_program, stack_names
from harness.render import kubernetes_objects
from tests.synthetic import synthetic_mnist
from training import train as trainer

STACKS = stack_names()
AWS_STACKS = [stack for stack in STACKS if stack != "local"]  # the stacks in mode `eks`

_runs: dict[str, ProgramRun] = {}


def stack_run(stack: str) -> ProgramRun:
    """The program's run for `stack` (run once, then reused; runs are read-only)."""
    if stack not in _runs:
        _runs[stack] = run_program(stack)
    return _runs[stack]


@pytest.fixture(params=STACKS)
def run(request: pytest.FixtureRequest) -> ProgramRun:
    return stack_run(request.param)


@pytest.fixture(params=AWS_STACKS)
def aws_run(request: pytest.FixtureRequest) -> ProgramRun:
    return stack_run(request.param)


@pytest.fixture(params=STACKS)
def manifests(request: pytest.FixtureRequest) -> tuple[str, list[dict[str, Any]]]:
    return request.param, kubernetes_objects(stack_run(request.param))


@pytest.fixture(scope="session")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray, Path]:
    """A model version exported by the trainer, the test images, and a second version to add."""
    out = tmp_path_factory.mktemp("exported")
    data = synthetic_mnist(out / "data.npz")
    run = trainer.Run(epochs=1, batch_size=64)
    first = trainer.train(data, out / "models", run, log=lambda *_: None)
    # Into the same directory, as a retrained model would be: its version is always above the
    # first's, even when both finish within the same second.
    second = trainer.train(
        data, out / "models", trainer.Run(epochs=2, batch_size=64), log=lambda *_: None
    )
    assert first is not None
    assert second is not None
    with np.load(data) as arrays:
        images = arrays["x_test"].astype(np.float32) / 255.0
    assert second.version > first.version
    models = out / "models"
    return models / str(first.version), images, models / str(second.version)


@pytest.fixture
def base(tmp_path: Path, exported: tuple[Path, np.ndarray, Path]) -> Path:
    first, _, _ = exported
    target = tmp_path / "mnist"
    shutil.copytree(first, target / first.name)
    return target
