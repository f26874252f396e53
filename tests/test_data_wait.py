"""The trainer waits, for a bounded and logged time, for the data set the staging Job writes.

Real trainer processes: the data appears while one waits (it then trains and exports), or never
appears (it then fails with a message naming the path).  Nothing here depends on how long the
waits take: the test acts on what the trainer logged, and the bounds are generous.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.synthetic import synthetic_mnist
from training import data_wait, prepare_data

ROOT = Path(__file__).resolve().parents[1]
QUIET_TF = {"TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": "", "PYTHONUNBUFFERED": "1"}


def _trainer(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as sink:
        return subprocess.Popen(
            [sys.executable, "-m", "training.train", *args],
            cwd=ROOT,
            env={**os.environ, **QUIET_TF},
            stdout=sink,
            stderr=subprocess.STDOUT,
        )


def _await_line(process: subprocess.Popen[bytes], log: Path, text: str) -> None:
    """Block until the running process has logged `text` (it must not exit first)."""
    deadline = time.monotonic() + 300  # a bound against a hung test, not a timing assertion
    while text not in log.read_text():
        assert process.poll() is None, log.read_text()
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.1)


def test_training_starts_once_the_data_is_staged(tmp_path: Path) -> None:
    datasets = tmp_path / "datasets"
    datasets.mkdir()
    data = datasets / "mnist.npz"
    export = tmp_path / "export"
    log = tmp_path / "train.log"
    args = ["--data", str(data), "--export-dir", str(export), "--epochs", "1"]
    trainer = _trainer([*args, "--batch-size", "64", "--data-wait-seconds", "3600"], log)
    try:
        _await_line(trainer, log, f"waiting up to 3600 s for {data}")
        # What the staging Job does: the npz renamed into place, then its checksum file.
        source = synthetic_mnist(tmp_path / "source.npz", train_size=256, test_size=64)
        prepare_data.prepare(data, str(source), None)
        assert trainer.wait(timeout=600) == 0, log.read_text()
    finally:
        if trainer.poll() is None:
            trainer.kill()
            trainer.wait()
    text = log.read_text()
    assert f"data set ready at {data}" in text
    assert "epoch 1/1" in text
    assert len([p for p in export.iterdir() if p.name.isdigit()]) == 1


def test_training_fails_clearly_when_the_data_never_comes(tmp_path: Path) -> None:
    data = tmp_path / "datasets" / "mnist.npz"
    export = tmp_path / "export"
    log = tmp_path / "train.log"
    trainer = _trainer(
        ["--data", str(data), "--export-dir", str(export), "--data-wait-seconds", "1"], log
    )
    assert trainer.wait(timeout=600) == 2, log.read_text()
    text = log.read_text()
    assert f"no data set at {data} after waiting 1 s" in text
    assert f"python -m training.prepare_data --out {data}" in text
    assert "--data-wait-seconds" in text
    assert not export.exists()


def test_a_file_that_disagrees_with_its_checksum_is_not_ready(tmp_path: Path) -> None:
    """Between the staging Job's two renames (data set replaced, checksum not yet) it waits."""
    data = synthetic_mnist(tmp_path / "mnist.npz")
    marker = prepare_data.checksum_path(data)
    marker.write_text(f"{'0' * 64}  mnist.npz\n")
    logged: list[str] = []
    with pytest.raises(data_wait.DataNotReady, match=r"does not match the checksum in"):
        data_wait.wait_for_data(data, 0, log=logged.append)
    marker.write_text(f"{prepare_data.sha256_of(data.read_bytes())}  mnist.npz\n")
    data_wait.wait_for_data(data, 0, log=logged.append)
    assert logged == []  # ready at once: nothing to wait for, nothing logged


def test_data_without_a_checksum_file_is_ready(tmp_path: Path) -> None:
    """Data put there by hand (no `.sha256`) is used as it is: the npz itself appears whole."""
    data = synthetic_mnist(tmp_path / "mnist.npz")
    data_wait.wait_for_data(data, 0, log=lambda *_: None)


def test_the_wait_must_not_be_negative(capsys: pytest.CaptureFixture[str]) -> None:
    from training import train  # noqa: PLC0415

    with pytest.raises(SystemExit):
        train.main(["--data", "x", "--export-dir", "y", "--data-wait-seconds", "-1"])
    assert "--data-wait-seconds" in capsys.readouterr().err
