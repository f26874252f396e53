"""Train the MNIST classifier, on one device or as one worker of a TFJob, and export it.

    python -m training.train --data mnist.npz --export-dir /models/team/mnist \\
        [--epochs 10] [--batch-size 256] [--learning-rate 0.002] [--hidden-units 256] \\
        [--dropout 0.1] [--checkpoint-dir DIR] [--metrics-file FILE]

- Reads the npz that `training.prepare_data` stages (never downloads), validated the same way.
- When `TF_CONFIG` (injected by the training operator) names several workers it trains with
  MultiWorkerMirroredStrategy; Keras 3's `fit` crashes under that strategy (keras-team/keras#20585),
  so the loop is a custom one that works for one device and for many.  Chief and Worker tasks
  train; PS and Evaluator tasks are refused before anything loads (`training.roles`).
- Checkpoints every epoch and resumes from the newest checkpoint, so a restarted worker continues;
  a run that already finished exports nothing again, and a changed run (choices, data, code)
  starts fresh rather than resume another's checkpoints (`training/run_state.py`).
- Waits up to `--data-wait-seconds` for the data set to be staged (`training/data_wait.py`).
- The chief (the Chief task when the job has one, else worker 0) writes the checkpoints and
  exports a SavedModel to `<export-dir>/<version>/` through a temporary directory on the same file
  system and a rename, so TF Serving never sees half a version; other workers write nothing there.
  Signature `serving_default`: input `image`, float32 (None, 28, 28) scaled to [0, 1]; output
  `output_0`, the 10 class probabilities.
- Mixed precision and XLA when a GPU is present.
- The chief prints its final metrics as one `name=value` line (`REPORTED_METRICS`), the form
  Katib's StdOut metrics collector parses, so a Katib trial of this trainer reports its
  objective; a run that already finished prints the metrics it recorded.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from training import devices
from training.data_wait import DEFAULT_WAIT_SECONDS, DataNotReady, wait_for_data
from training.prepare_data import DataError, validate
from training.roles import Cluster, RoleError, from_tf_config
from training.run_state import begin_run, identify_run, record_export

SHUFFLE_BUFFER = 60_000
# The metrics the chief prints for Katib's StdOut collector, in `metric_line`'s form.  Katib
# matches `([\w|-]+)\s*=\s*([+-]?\d*(\.\d+)?([Ee][+-]?\d+)?)` on each line that contains a
# metric's name (kubeflow/katib@v0.19.0:pkg/metricscollector/v1beta1/common/const.go L47,
# file-metricscollector/file-metricscollector.go L72-126), so names are word characters only.
REPORTED_METRICS = ("test_accuracy", "test_loss")


@dataclass(frozen=True)
class Metrics:
    test_accuracy: float
    test_loss: float
    epochs: int
    train_seconds: float
    examples_per_second: float
    version: int
    num_workers: int


class TrainingError(RuntimeError):
    """A problem with the inputs or environment; the message says what to do."""


def cluster_from_env(environ: dict[str, str] | None = None) -> Cluster:
    """This process's role from TF_CONFIG; a task type the trainer cannot play is refused here."""
    try:
        return from_tf_config(
            (environ if environ is not None else dict(os.environ)).get("TF_CONFIG", "")
        )
    except RoleError as error:
        raise TrainingError(str(error)) from None


def load_dataset(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The train and test arrays of a staged mnist.npz, checked before any training starts."""
    if not path.is_file():
        raise TrainingError(
            f"no data file at {path}; stage it with `python -m training.prepare_data --out {path}`"
        )
    try:
        validate(path.read_bytes(), str(path))
    except DataError as error:
        raise TrainingError(str(error)) from None
    with np.load(path, allow_pickle=False) as data:
        return data["x_train"], data["y_train"], data["x_test"], data["y_test"]


def build_model(keras: Any, hidden_units: int = 256, dropout: float = 0.1) -> Any:
    """A small MLP: enough for 97-98% on MNIST, fast on a CPU."""
    inputs = keras.Input(shape=(28, 28), name="image", dtype="float32")
    x = keras.layers.Flatten()(inputs)
    x = keras.layers.Dense(hidden_units, activation="relu")(x)
    x = keras.layers.Dropout(dropout)(x)
    # Probabilities in float32 even under mixed precision: the softmax must not lose range.
    outputs = keras.layers.Dense(10, activation="softmax", dtype="float32", name="probabilities")(x)
    return keras.Model(inputs, outputs, name="mnist_mlp")


def weights_digest(model: Any) -> str:
    """A short fingerprint of the weights, to compare workers."""
    digest = hashlib.sha256()
    for weight in model.get_weights():
        digest.update(np.ascontiguousarray(weight, dtype=np.float32).tobytes())
    return digest.hexdigest()[:16]


def next_version(base: Path) -> int:
    """A version number above every existing one (seconds since the epoch, as a rule)."""
    existing = (
        [int(p.name) for p in base.iterdir() if p.is_dir() and p.name.isdigit()]
        if base.is_dir()
        else []
    )
    return max([int(time.time()), *(v + 1 for v in existing)])


def export_atomically(model: Any, base: Path, version: int) -> Path:
    """Write the SavedModel beside its final place and rename it in, so readers see all or none."""
    base.mkdir(parents=True, exist_ok=True)
    final = base / str(version)
    staging = Path(tempfile.mkdtemp(prefix=f".tmp-{version}-", dir=base))
    try:
        model.export(str(staging), format="tf_saved_model", verbose=False)
        os.replace(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return final


def _write_json_atomically(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(
        "w", dir=path.parent, delete=False, prefix=f".{path.name}."
    ) as tmp:
        json.dump(payload, tmp, indent=2)
    os.replace(tmp.name, path)


@contextlib.contextmanager
def _worker_dir(final: Path | None, cluster: Cluster) -> Iterator[Path | None]:
    """Where this worker writes: the real directory for the chief, a throwaway one for others.

    Under MultiWorkerMirroredStrategy every worker must take part in saving, but only the chief's
    copy may land where others read it.
    """
    if final is None:
        yield None
    elif cluster.is_chief:
        final.mkdir(parents=True, exist_ok=True)
        yield final
    else:
        scratch = Path(tempfile.mkdtemp(prefix=f"{cluster.task_type}-{cluster.task_index}-"))
        try:
            yield scratch
        finally:
            shutil.rmtree(scratch, ignore_errors=True)


@dataclass(frozen=True)
class Run:
    """One training run's choices."""

    epochs: int = 10
    batch_size: int = 256  # per replica
    learning_rate: float = 2e-3
    hidden_units: int = 256  # width of the hidden layer
    dropout: float = 0.1  # after the hidden layer
    checkpoint_dir: Path | None = None
    metrics_file: Path | None = None
    mixed_precision: bool | None = None  # None: on when a GPU is present
    xla: bool | None = None  # None: on when a GPU is present
    seed: int = 42


def train(
    data: Path,
    export_dir: Path,
    run: Run | None = None,
    *,
    environ: dict[str, str] | None = None,
    log: Any = print,
) -> Metrics | None:
    """Train and export; return the chief's metrics (None on other workers, or when the same
    run already finished and exported its version: see training/run_state.py)."""
    run = run or Run()
    cluster = cluster_from_env(environ)
    arrays = load_dataset(data)

    import keras  # noqa: PLC0415
    import tensorflow as tf  # noqa: PLC0415 - heavy import, after the cheap input checks

    keras.utils.set_random_seed(run.seed)
    try:
        gpus = devices.use_gpus(len(tf.config.list_physical_devices("GPU")), environ)
    except devices.DeviceError as error:
        raise TrainingError(str(error)) from None
    mixed = gpus if run.mixed_precision is None else run.mixed_precision
    jit = gpus if run.xla is None else run.xla
    # A re-run of a finished run exports nothing; a changed run does not resume an old one.
    identity = identify_run(
        {**asdict(run), "mixed_precision": mixed, "xla": jit, "workers": cluster.num_workers},
        data,
        {"tensorflow": tf.__version__, "keras": keras.__version__, "numpy": np.__version__},
    )
    start = begin_run(run.checkpoint_dir, identity, export_dir, chief=cluster.is_chief, log=log)
    if start.finished is not None:
        if cluster.is_chief and run.metrics_file is not None and run.metrics_file.is_file():
            log(metric_line(json.loads(run.metrics_file.read_text())))
        return None
    with _precision(keras, "mixed_float16" if mixed else None):
        strategy = (
            tf.distribute.MultiWorkerMirroredStrategy()
            if cluster.num_workers > 1
            else tf.distribute.get_strategy()
        )
        session = _Session(tf, keras, strategy, run, mixed=mixed, jit=jit)
        started = time.perf_counter()
        first_epoch = session.fit(arrays[0], arrays[1], cluster, log, resume=start.resume)
        train_seconds = time.perf_counter() - started
        accuracy, loss = session.evaluate(arrays[2], arrays[3])
        digest = weights_digest(session.model)
        log(f"test accuracy {accuracy:.4f}, loss {loss:.4f}, weights {digest}")
        version = next_version(export_dir)
        if not cluster.is_chief:
            # Take part in the (collective) save, but never where the chief's versions live.
            with tempfile.TemporaryDirectory() as scratch:
                export_atomically(session.model, Path(scratch), version)
            return None
        record_export(run.checkpoint_dir, identity, version)
        log(f"exported {export_atomically(session.model, export_dir, version)}")
    trained = run.epochs - first_epoch
    metrics = Metrics(
        test_accuracy=accuracy,
        test_loss=loss,
        epochs=run.epochs,
        train_seconds=round(train_seconds, 3),
        examples_per_second=round(len(arrays[0]) * trained / max(train_seconds, 1e-9), 1),
        version=version,
        num_workers=cluster.num_workers,
    )
    if run.metrics_file is not None:
        _write_json_atomically(run.metrics_file, asdict(metrics))
    log(metric_line(asdict(metrics)))
    return metrics


def metric_line(metrics: dict[str, Any]) -> str:
    """The reported metrics as `name=value` pairs on one line (Katib's StdOut format)."""
    return " ".join(f"{name}={float(metrics[name]):.6f}" for name in REPORTED_METRICS)


@contextlib.contextmanager
def _precision(keras: Any, policy: str | None) -> Iterator[None]:
    """Use `policy` for the models built inside, then restore the process-wide one."""
    previous = keras.mixed_precision.global_policy()
    if policy:
        keras.mixed_precision.set_global_policy(policy)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


class _Session:
    """The model, optimizer and checkpoint of one run, built under the distribution strategy."""

    def __init__(
        self, tf: Any, keras: Any, strategy: Any, run: Run, *, mixed: bool, jit: bool
    ) -> None:
        self.tf, self.strategy, self.run, self.mixed, self.jit = tf, strategy, run, mixed, jit
        self.global_batch = run.batch_size * strategy.num_replicas_in_sync
        with strategy.scope():
            self.model = build_model(keras, run.hidden_units, run.dropout)
            optimizer = keras.optimizers.Adam(run.learning_rate)
            self.optimizer = keras.optimizers.LossScaleOptimizer(optimizer) if mixed else optimizer
            self.loss_fn = keras.losses.SparseCategoricalCrossentropy(reduction="none")
            self.epochs_done = tf.Variable(0, dtype=tf.int64, trainable=False, name="epochs_done")
            self.checkpoint = tf.train.Checkpoint(
                model=self.model, optimizer=self.optimizer, epochs_done=self.epochs_done
            )

    def _dataset(self, images: np.ndarray, labels: np.ndarray) -> Any:
        tf, global_batch, seed = self.tf, self.global_batch, self.run.seed
        scaled = (images.astype(np.float32) / 255.0).reshape(-1, 28, 28)

        def per_worker(context: Any) -> Any:
            dataset = tf.data.Dataset.from_tensor_slices((scaled, labels.astype(np.int32)))
            dataset = dataset.shard(context.num_input_pipelines, context.input_pipeline_id)
            dataset = dataset.cache().shuffle(SHUFFLE_BUFFER, seed=seed)
            per_replica = context.get_per_replica_batch_size(global_batch)
            return (
                dataset.repeat().batch(per_replica, drop_remainder=True).prefetch(tf.data.AUTOTUNE)
            )

        return self.strategy.distribute_datasets_from_function(per_worker)

    def _train_steps(self) -> Any:
        tf, model, optimizer, strategy = self.tf, self.model, self.optimizer, self.strategy

        # XLA compiles the forward and backward pass; the gradient all-reduce and the update stay
        # outside it (and so does reading the input iterator, which XLA cannot compile).
        @tf.function(jit_compile=self.jit)  # type: ignore[untyped-decorator]
        def loss_and_gradients(images: Any, labels: Any) -> Any:
            with tf.GradientTape() as tape:
                per_example = self.loss_fn(labels, model(images, training=True))
                loss = tf.nn.compute_average_loss(per_example, global_batch_size=self.global_batch)
                scaled = optimizer.scale_loss(loss) if self.mixed else loss
            return loss, tape.gradient(scaled, model.trainable_variables)

        def step(inputs: Any) -> Any:
            loss, gradients = loss_and_gradients(*inputs)
            optimizer.apply_gradients(zip(gradients, model.trainable_variables, strict=True))
            return loss

        @tf.function  # type: ignore[untyped-decorator]
        def steps(iterator: Any, count: Any) -> Any:
            total = tf.constant(0.0)
            for _ in tf.range(count):
                total += strategy.reduce(
                    "SUM", strategy.run(step, args=(next(iterator),)), axis=None
                )
            return total / tf.cast(count, tf.float32)

        return steps

    def fit(
        self, images: np.ndarray, labels: np.ndarray, cluster: Cluster, log: Any, *, resume: bool
    ) -> int:
        """Train to `run.epochs`, from the newest checkpoint if `resume`; return the first epoch."""
        tf, checkpoint_dir = self.tf, self.run.checkpoint_dir
        steps_per_epoch = tf.constant(math.ceil(len(images) / self.global_batch))
        train_steps = self._train_steps()
        with _worker_dir(checkpoint_dir, cluster) as write_dir:
            manager = (
                tf.train.CheckpointManager(self.checkpoint, str(write_dir), max_to_keep=2)
                if write_dir is not None
                else None
            )
            if write_dir is not None:
                log(f"{cluster.name} writes checkpoints to {write_dir}")
            # Every worker resumes from the chief's checkpoints (the shared directory).
            latest = (
                tf.train.latest_checkpoint(str(checkpoint_dir))
                if checkpoint_dir and resume
                else None
            )
            if latest:
                self.checkpoint.restore(latest)
                log(f"resumed from {latest} after {int(self.epochs_done.numpy())} epoch(s)")
            first_epoch = int(self.epochs_done.numpy())
            iterator = iter(self._dataset(images, labels))
            for epoch in range(first_epoch, self.run.epochs):
                loss = train_steps(iterator, steps_per_epoch)
                self.epochs_done.assign(epoch + 1)
                if manager is not None:
                    manager.save(checkpoint_number=epoch + 1)
                log(f"epoch {epoch + 1}/{self.run.epochs}: loss {float(loss):.4f}")
        return first_epoch

    def evaluate(self, images: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
        """Test accuracy and loss, from plain calls on this process's copy of the weights.

        Not `predict`: Keras 3's distributed predict shares `fit`'s MultiWorkerMirroredStrategy bug.
        """
        scaled = (images.astype(np.float32) / 255.0).reshape(-1, 28, 28)
        probabilities = np.concatenate(
            [
                np.asarray(self.model(scaled[i : i + 1024], training=False))
                for i in range(0, len(scaled), 1024)
            ]
        )
        loss = float(np.mean(self.loss_fn(labels.astype(np.int32), probabilities)))
        return float(np.mean(np.argmax(probabilities, axis=1) == labels)), loss


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} must be a positive integer")
    return value


def _fraction(text: str) -> float:
    value = float(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"{text} must be at least 0 and below 1")
    return value


def _rate(text: str) -> float:
    value = float(text)
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"{text} must be a positive number")
    return value


def _seconds(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"{text} must be a number of seconds, 0 or more")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Train the MNIST classifier and export it.")
    parser.add_argument("--data", type=Path, required=True, help="staged mnist.npz")
    parser.add_argument("--export-dir", type=Path, required=True, help="model base path")
    parser.add_argument("--epochs", type=_positive, default=Run.epochs)
    parser.add_argument("--batch-size", type=_positive, default=Run.batch_size, help="per replica")
    parser.add_argument("--learning-rate", type=_rate, default=Run.learning_rate)
    parser.add_argument(
        "--hidden-units", type=_positive, default=Run.hidden_units, help="hidden layer width"
    )
    parser.add_argument(
        "--dropout", type=_fraction, default=Run.dropout, help="dropout after the hidden layer"
    )
    parser.add_argument("--checkpoint-dir", type=Path, default=None)
    parser.add_argument("--metrics-file", type=Path, default=None)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--data-wait-seconds",
        type=_seconds,
        default=DEFAULT_WAIT_SECONDS,
        help="how long to wait for --data to be staged (0: not at all)",
    )
    args = parser.parse_args(argv)
    run = Run(
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        hidden_units=args.hidden_units,
        dropout=args.dropout,
        checkpoint_dir=args.checkpoint_dir,
        metrics_file=args.metrics_file,
        seed=args.seed,
    )
    try:
        wait_for_data(args.data, args.data_wait_seconds)
        train(args.data, args.export_dir, run)
    except (TrainingError, DataNotReady) as error:
        print(f"train: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
