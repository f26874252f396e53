"""training.train on real MNIST and on made-up data: accuracy, export, resume, two workers."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.synthetic import synthetic_mnist
from training import train as trainer
from training.sample_data import mnist_npz

ROOT = Path(__file__).resolve().parents[1]
QUIET_TF = {"TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": "", "PYTHONUNBUFFERED": "1"}


def _quiet(*_: Any) -> None:
    pass


# --- the full data set -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def full_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, trainer.Metrics]:
    out = tmp_path_factory.mktemp("full")
    run = trainer.Run(epochs=5, batch_size=128, metrics_file=out / "metrics.json")
    metrics = trainer.train(mnist_npz(), out / "mnist", run, log=_quiet)
    assert metrics is not None
    return out, metrics


def test_full_mnist_reaches_97_percent(full_run: tuple[Path, trainer.Metrics]) -> None:
    out, metrics = full_run
    assert metrics.test_accuracy >= 0.97
    written = json.loads((out / "metrics.json").read_text())
    assert set(written) == {
        "test_accuracy",
        "test_loss",
        "epochs",
        "train_seconds",
        "examples_per_second",
        "version",
        "num_workers",
    }
    assert written["test_accuracy"] == metrics.test_accuracy
    assert written["num_workers"] == 1
    assert written["epochs"] == 5


def test_export_is_tf_serving_layout_and_reproduces_the_accuracy(
    full_run: tuple[Path, trainer.Metrics],
) -> None:
    out, metrics = full_run
    versions = list((out / "mnist").iterdir())
    assert [p.name for p in versions] == [str(metrics.version)]
    version_dir = versions[0]
    assert (version_dir / "saved_model.pb").is_file()
    assert (version_dir / "variables").is_dir()
    loaded = tf.saved_model.load(str(version_dir))
    serve = loaded.signatures["serving_default"]
    [(name, spec)] = serve.structured_input_signature[1].items()
    assert name == "image"
    assert spec.shape.as_list() == [None, 28, 28]
    assert spec.dtype == tf.float32
    with np.load(mnist_npz()) as data:
        images, labels = data["x_test"].astype(np.float32) / 255.0, data["y_test"]
    outputs = serve(image=tf.constant(images))
    [probabilities] = outputs.values()
    assert probabilities.shape == (10000, 10)
    np.testing.assert_allclose(np.sum(probabilities, axis=1), 1.0, atol=1e-4)
    accuracy = float(np.mean(np.argmax(probabilities, axis=1) == labels))
    assert accuracy == pytest.approx(metrics.test_accuracy, abs=1e-4)


# --- bad inputs ----------------------------------------------------------------------------------


def _bad_data(path: Path, case: str) -> Path:
    rng = np.random.default_rng(1)
    good = {
        "x_train": rng.integers(0, 256, (20, 28, 28), dtype=np.uint8),
        "y_train": rng.integers(0, 10, 20).astype(np.uint8),
        "x_test": rng.integers(0, 256, (5, 28, 28), dtype=np.uint8),
        "y_test": rng.integers(0, 10, 5).astype(np.uint8),
    }
    if case == "wrong keys":
        good["images"] = good.pop("x_train")
    elif case == "wrong shape":
        good["x_train"] = rng.integers(0, 256, (20, 784), dtype=np.uint8)
    elif case == "wrong dtype":
        good["x_test"] = rng.random((5, 28, 28))  # type: ignore[assignment]
    elif case == "labels out of range":
        good["y_train"] = np.full(20, 10, dtype=np.uint8)
    np.savez(path, **good)  # type: ignore[arg-type]
    return path


BAD = {
    "wrong keys": "lacks x_train",
    "wrong shape": "x_train has shape (20, 784)",
    "wrong dtype": "x_test is float64",
    "labels out of range": "labels from 10 to 10; expected 0-9",
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_data_is_refused_before_any_export(
    tmp_path: Path, case: str, capsys: pytest.CaptureFixture[str]
) -> None:
    data = _bad_data(tmp_path / "data.npz", case)
    export = tmp_path / "export"
    assert trainer.main(["--data", str(data), "--export-dir", str(export)]) == 2
    assert BAD[case] in capsys.readouterr().err
    assert not export.exists()


def test_missing_data_file_says_how_to_stage_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        trainer.main(
            [
                "--data",
                str(tmp_path / "none.npz"),
                "--export-dir",
                str(tmp_path / "e"),
                "--data-wait-seconds",
                "0",
            ]
        )
        == 2
    )
    assert "stage it with `python -m training.prepare_data" in capsys.readouterr().err


def test_bad_flags_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        trainer.main(["--data", "x", "--export-dir", "y", "--epochs", "0"])
    assert exited.value.code == 2
    assert "must be a positive integer" in capsys.readouterr().err


def test_malformed_tf_config_is_explained() -> None:
    with pytest.raises(trainer.TrainingError, match="TF_CONFIG is not valid"):
        trainer.cluster_from_env({"TF_CONFIG": '{"cluster": {}}'})
    assert trainer.cluster_from_env({}).is_chief
    worker = trainer.cluster_from_env(
        {
            "TF_CONFIG": json.dumps(
                {"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 1}}
            )
        }
    )
    assert (worker.num_workers, worker.is_chief) == (2, False)


# --- export and resume -----------------------------------------------------------------------


def test_export_is_atomic(tmp_path: Path) -> None:
    class Failing:
        def export(self, path: str, **_: Any) -> None:
            (Path(path) / "saved_model.pb").write_bytes(b"half")
            raise OSError("disk full")

    base = tmp_path / "mnist"
    (base / "7").mkdir(parents=True)
    with pytest.raises(OSError, match="disk full"):
        trainer.export_atomically(Failing(), base, 8)
    assert sorted(p.name for p in base.iterdir()) == ["7"]  # no half version, no temp left
    assert trainer.next_version(base) > 7


def test_gpu_path_mixed_precision_and_xla_trains_and_exports_float32(tmp_path: Path) -> None:
    """What a GPU node runs (float16 compute, XLA-compiled steps), exercised on the CPU."""
    data = synthetic_mnist(tmp_path / "data.npz", train_size=512, test_size=128)
    run = trainer.Run(epochs=2, batch_size=64, mixed_precision=True, xla=True)
    metrics = trainer.train(data, tmp_path / "export", run, log=_quiet)
    assert metrics is not None
    assert metrics.test_accuracy > 0.9
    assert keras.mixed_precision.global_policy().name == "float32"  # restored after training
    loaded = tf.saved_model.load(str(tmp_path / "export" / str(metrics.version)))
    [output] = loaded.signatures["serving_default"].structured_outputs.values()
    assert output.dtype == tf.float32


def _run(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as sink:
        return subprocess.Popen(
            [sys.executable, "-m", "training.train", *args],
            cwd=ROOT,
            env={**os.environ, **QUIET_TF, **env},
            stdout=sink,
            stderr=subprocess.STDOUT,
        )


def _committed_epochs(checkpoints: Path) -> int | None:
    """The epoch of the checkpoint a restart would resume from, or None before the first.

    `tf.train.CheckpointManager.save` writes `ckpt-N.index` and the data first and only then
    replaces the `checkpoint` state file to name `ckpt-N`; a restart reads that file
    (`tf.train.latest_checkpoint`, as the trainer does).
    """
    latest = tf.train.latest_checkpoint(str(checkpoints))
    return int(latest.rsplit("-", 1)[1]) if latest else None


def test_resumes_from_its_checkpoint_after_being_killed(tmp_path: Path) -> None:
    data = synthetic_mnist(tmp_path / "data.npz", train_size=12000, test_size=400)
    checkpoints = tmp_path / "ckpt"
    args = [
        "--data",
        str(data),
        "--export-dir",
        str(tmp_path / "export"),
        "--epochs",
        "8",
        "--batch-size",
        "32",
        "--checkpoint-dir",
        str(checkpoints),
    ]
    first = _run(args, {}, tmp_path / "first.log")
    deadline = time.monotonic() + 120
    # Killed once two epochs are committed: `ckpt-2.index` appears before the state file names
    # it, and a restart resumes from the state file, so that is what to wait for.
    while (_committed_epochs(checkpoints) or 0) < 2:
        assert first.poll() is None, (tmp_path / "first.log").read_text()
        assert time.monotonic() < deadline, "no checkpoint committed after two epochs"
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert not (tmp_path / "export").exists()  # killed before it could export anything

    second = _run(args, {}, tmp_path / "second.log")
    assert second.wait(timeout=180) == 0, (tmp_path / "second.log").read_text()
    log = (tmp_path / "second.log").read_text()
    resumed_after = int(log.split("after ", 1)[1].split(" epoch", 1)[0])
    assert resumed_after >= 2
    assert "epoch 1/8" not in log
    assert "epoch 8/8" in log
    assert len(list((tmp_path / "export").iterdir())) == 1


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


def test_two_workers_on_loopback_train_identical_weights(tmp_path: Path) -> None:
    """Two processes with TF_CONFIG, as the training operator starts them, on 127.0.0.1."""
    data = synthetic_mnist(tmp_path / "data.npz", train_size=4000, test_size=400)
    export = tmp_path / "export"
    workers = [f"127.0.0.1:{port}" for port in _free_ports(2)]
    processes = []
    for index in range(2):
        config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        processes.append(
            _run(
                [
                    "--data",
                    str(data),
                    "--export-dir",
                    str(export),
                    "--epochs",
                    "2",
                    "--batch-size",
                    "64",
                    "--checkpoint-dir",
                    str(tmp_path / "ckpt"),
                    "--metrics-file",
                    str(tmp_path / "m.json"),
                ],
                {"TF_CONFIG": json.dumps(config)},
                tmp_path / f"worker-{index}.log",
            )
        )
    for index, process in enumerate(processes):
        assert process.wait(timeout=300) == 0, (tmp_path / f"worker-{index}.log").read_text()
    digests = []
    for index in range(2):
        log = (tmp_path / f"worker-{index}.log").read_text()
        digests.append(log.split("weights ", 1)[1].split()[0])
    assert digests[0] == digests[1]
    assert len(list(export.iterdir())) == 1  # only the chief exported
    assert json.loads((tmp_path / "m.json").read_text())["num_workers"] == 2
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir() if p.name.endswith(".index")) == [
        "ckpt-1.index",
        "ckpt-2.index",
    ]
