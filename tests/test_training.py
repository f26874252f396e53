"""training.train on real MNIST and on made-up data: accuracy, export, resume, replica roles."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.python.distribute import multi_worker_util

from infra import versions
from tests.synthetic import synthetic_mnist
from tests.upstream_facts import facts
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


# --- replica roles ---------------------------------------------------------------------------

TF_CONFIG = facts("kubeflow-trainer-tf-config", pinned=versions.TRAINING_OPERATOR.ref)
MULTI_WORKER = facts("tensorflow-multi-worker", pinned=f"v{tf.__version__}")


def operator_tf_config(
    replicas: dict[str, int], task: tuple[str, int], address: Callable[[str, int], str]
) -> dict[str, Any]:
    """The TF_CONFIG the training operator gives replica `task` of a TFJob with `replicas`."""
    return {
        "cluster": {
            kind.lower(): [address(kind.lower(), i) for i in range(count)]
            for kind, count in replicas.items()
        },
        "task": {"type": task[0].lower(), "index": task[1]},
        "environment": "cloud",
    }


def test_operator_tf_config_is_what_the_operator_generates() -> None:
    example = TF_CONFIG["example"]
    job, namespace, port = example["job"], example["namespace"], example["port"]
    generated = operator_tf_config(
        example["replicas"],
        (example["task"]["type"], example["task"]["index"]),
        lambda kind, i: f"{job}-{kind}-{i}.{namespace}.svc:{port}",
    )
    assert generated == example["tf_config"]


def _cluster(kinds: list[str]) -> dict[str, list[str]]:
    return {
        kind: [f"{kind}-{i}:2222" for i in range(2 if kind == "worker" else 1)] for kind in kinds
    }


@pytest.mark.parametrize("case", MULTI_WORKER["is_chief"], ids=str)
def test_the_chief_is_the_one_tensorflow_names(case: dict[str, Any]) -> None:
    """With a Chief replica, worker 0 is not the chief: only one task writes where others read."""
    cluster = _cluster(case["cluster"])
    task_type, index = case["task"]
    config = {"cluster": cluster, "task": {"type": task_type, "index": index}}
    role = trainer.cluster_from_env({"TF_CONFIG": json.dumps(config)})
    assert role.is_chief == case["chief"]
    # The installed TensorFlow (the release the image runs) agrees.
    assert multi_worker_util.is_chief(cluster, task_type, index) == case["chief"]
    collective = sum(len(cluster.get(kind, [])) for kind in MULTI_WORKER["collective"])
    assert role.num_workers == collective == multi_worker_util.worker_count(cluster, task_type)


@pytest.mark.parametrize("task_type", ["ps", "evaluator"])
def test_ps_and_evaluator_tasks_are_refused_before_training(
    tmp_path: Path,
    task_type: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    data = synthetic_mnist(tmp_path / "data.npz", train_size=64, test_size=16)
    config = operator_tf_config(
        {"Worker": 2, "PS": 1, "Evaluator": 1}, (task_type, 0), lambda kind, i: f"{kind}-{i}:2222"
    )
    monkeypatch.setenv("TF_CONFIG", json.dumps(config))
    export = tmp_path / "export"
    args = ["--data", str(data), "--export-dir", str(export), "--epochs", "1"]
    assert trainer.main([*args, "--checkpoint-dir", str(tmp_path / "ckpt")]) == 2
    error = capsys.readouterr().err
    assert f"task {task_type}/0" in error
    assert "remove `parameterServers` and `evaluator`" in error
    assert not export.exists()
    assert not (tmp_path / "ckpt").exists()


def test_tensorflow_cannot_place_a_ps_task_in_the_collective() -> None:
    """Why a PS is refused: MultiWorkerMirroredStrategy has no place for it."""
    cluster = _cluster(["worker", "ps"])
    [kind] = MULTI_WORKER["no_collective_id"]
    with pytest.raises(ValueError, match=re.escape(MULTI_WORKER["no_collective_id_error"])):
        multi_worker_util.id_in_cluster(cluster, kind, 0)
    evaluator = _cluster(["worker", "evaluator"])
    assert (
        multi_worker_util.worker_count(evaluator, "evaluator")
        == (MULTI_WORKER["evaluator_worker_count"])
    )


def _mnist_sample(path: Path, train_size: int, test_size: int) -> Path:
    """The first images of the real MNIST, in the staged layout."""
    with np.load(mnist_npz()) as data:
        np.savez(
            path,
            x_train=data["x_train"][:train_size],
            y_train=data["y_train"][:train_size],
            x_test=data["x_test"][:test_size],
            y_test=data["y_test"][:test_size],
        )
    return path


# The replica layouts the settings accept for the built-in trainer.
LAYOUTS = {
    "two-workers": ({"Worker": 2}, ("worker", 0)),
    "chief-and-worker": ({"Chief": 1, "Worker": 1}, ("chief", 0)),
}


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_replicas_on_loopback_train_identical_weights_and_one_writes(
    tmp_path: Path, layout: str
) -> None:
    """The processes a TFJob starts, with the operator's TF_CONFIG, on 127.0.0.1.

    Every task trains the same weights; only TensorFlow's chief writes the checkpoints that
    restarts resume from, the exported version and the metrics.
    """
    replicas, chief = LAYOUTS[layout]
    data = _mnist_sample(tmp_path / "data.npz", train_size=2048, test_size=256)
    export, checkpoints = tmp_path / "export", tmp_path / "ckpt"
    tasks = [(kind.lower(), i) for kind, count in replicas.items() for i in range(count)]
    ports = dict(zip(tasks, _free_ports(len(tasks)), strict=True))
    processes = {}
    for task in tasks:
        config = operator_tf_config(replicas, task, lambda kind, i: f"127.0.0.1:{ports[kind, i]}")
        processes[task] = _run(
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
                str(checkpoints),
                "--metrics-file",
                str(tmp_path / "m.json"),
            ],
            {"TF_CONFIG": json.dumps(config)},
            tmp_path / f"{task[0]}-{task[1]}.log",
        )
    logs = {}
    for (kind, index), process in processes.items():
        log = tmp_path / f"{kind}-{index}.log"
        assert process.wait(timeout=300) == 0, log.read_text()
        logs[kind, index] = log.read_text()
    digests = {log.split("weights ", 1)[1].split()[0] for log in logs.values()}
    assert len(digests) == 1
    exporters = [task for task, log in logs.items() if "exported " in log]
    writers = [
        task for task, log in logs.items() if f"writes checkpoints to {checkpoints}\n" in log
    ]
    assert exporters == writers == [chief]
    assert len(list(export.iterdir())) == 1
    assert json.loads((tmp_path / "m.json").read_text())["num_workers"] == len(tasks)
    assert sorted(p.name for p in checkpoints.iterdir() if p.name.endswith(".index")) == [
        "ckpt-1.index",
        "ckpt-2.index",
    ]


# --- the flags Katib tunes ---------------------------------------------------------------------


def test_hidden_units_and_dropout_shape_the_model() -> None:
    model = trainer.build_model(keras, hidden_units=48, dropout=0.25)
    [hidden] = [layer for layer in model.layers if layer.name.startswith("dense")]
    [dropout] = [layer for layer in model.layers if layer.name.startswith("dropout")]
    assert hidden.units == 48
    assert dropout.rate == 0.25


@pytest.mark.parametrize(
    "flags",
    [["--dropout", "1"], ["--dropout", "-0.1"], ["--learning-rate", "0"], ["--hidden-units", "0"]],
)
def test_out_of_range_tuning_flags_are_refused(flags: list[str], tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as caught:
        trainer.main(["--data", str(tmp_path / "x.npz"), "--export-dir", str(tmp_path), *flags])
    assert caught.value.code == 2


def test_metric_line_is_what_katibs_collector_reads() -> None:
    line = trainer.metric_line({"test_accuracy": 0.97125, "test_loss": 0.1, "epochs": 3})
    assert line == "test_accuracy=0.971250 test_loss=0.100000"
