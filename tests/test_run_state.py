"""Re-running a training job: a finished run exports nothing new, a changed one starts afresh.

Real (tiny) runs of `training.train` on made-up data, sharing one checkpoint directory the way
a TFJob recreated under the same name does.  (An interrupted identical run resuming from its
checkpoint is `test_resumes_from_its_checkpoint_after_being_killed` in test_training.py.)
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.synthetic import synthetic_mnist
from training import run_state
from training import train as trainer


class Log:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def __call__(self, line: str) -> None:
        self.lines.append(line)

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


def _versions(export: Path) -> list[str]:
    return sorted(p.name for p in export.iterdir() if p.name.isdigit())


def _train(data: Path, tmp_path: Path, **choices: float) -> tuple[trainer.Metrics | None, Log]:
    log = Log()
    run = trainer.Run(
        epochs=int(choices.pop("epochs", 1)),
        batch_size=64,
        checkpoint_dir=tmp_path / "ckpt",
        **choices,  # type: ignore[arg-type]
    )
    return trainer.train(data, tmp_path / "export", run, log=log), log


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return synthetic_mnist(tmp_path / "data.npz", train_size=256, test_size=64)


def test_an_identical_rerun_exports_nothing_and_says_which_version_it_made(
    data: Path, tmp_path: Path
) -> None:
    first, _ = _train(data, tmp_path)
    assert first is not None
    again, log = _train(data, tmp_path)
    assert again is None
    assert _versions(tmp_path / "export") == [str(first.version)]
    assert f"already finished and exported version {first.version}" in log.text
    assert "epoch 1/1" not in log.text
    record = json.loads((tmp_path / "ckpt" / run_state.RECORD).read_text())
    assert record["export"]["version"] == first.version


def test_changed_flags_start_fresh_and_say_why(data: Path, tmp_path: Path) -> None:
    first, _ = _train(data, tmp_path)
    second, log = _train(data, tmp_path, learning_rate=1e-3)
    assert first is not None
    assert second is not None
    assert "starting fresh" in log.text
    assert "learning_rate 0.002 -> 0.001" in log.text
    assert "resumed" not in log.text
    assert "epoch 1/1" in log.text  # trained, rather than resuming the finished run
    assert _versions(tmp_path / "export") == sorted([str(first.version), str(second.version)])


def test_changed_data_starts_fresh(data: Path, tmp_path: Path) -> None:
    _train(data, tmp_path)
    synthetic_mnist(data, train_size=256, test_size=64, seed=1)  # restaged with other data
    second, log = _train(data, tmp_path)
    assert second is not None
    assert "starting fresh" in log.text
    assert "data_sha256" in log.text
    assert "epoch 1/1" in log.text
    assert len(_versions(tmp_path / "export")) == 2


def test_changed_code_starts_fresh(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _train(data, tmp_path)
    monkeypatch.setattr(run_state, "code_sha256", lambda: "0" * 64)  # another trainer build
    second, log = _train(data, tmp_path)
    assert second is not None
    assert "starting fresh" in log.text
    assert "code_sha256" in log.text
    assert "epoch 1/1" in log.text


def test_a_finished_run_whose_version_is_gone_exports_again_without_training(
    data: Path, tmp_path: Path
) -> None:
    first, _ = _train(data, tmp_path)
    assert first is not None
    shutil.rmtree(tmp_path / "export" / str(first.version))
    second, log = _train(data, tmp_path)
    assert second is not None
    assert f"version {first.version} is not in" in log.text
    assert "resumed from" in log.text
    assert "epoch 1/1" not in log.text
    assert _versions(tmp_path / "export") == [str(second.version)]


def test_checkpoints_without_a_run_record_are_not_resumed(data: Path, tmp_path: Path) -> None:
    """Checkpoints an older trainer left (no record of what they came from) start a fresh run."""
    _train(data, tmp_path)
    (tmp_path / "ckpt" / run_state.RECORD).unlink()
    second, log = _train(data, tmp_path)
    assert second is not None
    assert "no record of the run" in log.text
    assert "resumed" not in log.text
    assert "epoch 1/1" in log.text


def test_the_fingerprint_ignores_where_things_are_written(data: Path, tmp_path: Path) -> None:
    base = {"epochs": 1, "batch_size": 64, "checkpoint_dir": tmp_path / "a"}
    moved = {**base, "checkpoint_dir": tmp_path / "b", "metrics_file": tmp_path / "m.json"}
    libraries = {"tensorflow": "x"}
    same = run_state.identify_run(base, data, libraries).fingerprint
    assert run_state.identify_run(moved, data, libraries).fingerprint == same
    assert run_state.identify_run({**base, "epochs": 2}, data, libraries).fingerprint != same
    assert run_state.identify_run(base, data, {"tensorflow": "y"}).fingerprint != same
