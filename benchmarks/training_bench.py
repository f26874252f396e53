"""Time to 97% test accuracy on MNIST: training.train against the article's way of training.

The baseline reproduces the article's script on the same data and the same model: Keras
`model.fit` on NumPy arrays with batch size 32.  The platform's trainer uses its tf.data pipeline
(cached, shuffled, prefetched), a larger batch and a compiled training step.  Both are timed in this
one run, on this machine; the figure that matters is the ratio.

    python -m benchmarks.training_bench [--target 0.97] [--max-epochs 10]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np

from training import train as trainer
from training.sample_data import mnist_npz


def baseline_time_to(target: float, max_epochs: int, data: Path) -> tuple[float | None, int]:
    """The article's loop: fit on arrays, batch 32, one epoch at a time (evaluation not timed)."""
    keras.utils.set_random_seed(42)
    with np.load(data) as arrays:
        x_train, y_train = arrays["x_train"] / 255.0, arrays["y_train"]
        x_test, y_test = arrays["x_test"] / 255.0, arrays["y_test"]
    model = trainer.build_model(keras)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    elapsed = 0.0
    for epoch in range(1, max_epochs + 1):
        started = time.perf_counter()
        model.fit(x_train, y_train, epochs=1, batch_size=32, verbose=0)
        elapsed += time.perf_counter() - started
        _, accuracy = model.evaluate(x_test, y_test, verbose=0)
        if accuracy >= target:
            return elapsed, epoch
    return None, max_epochs


def trainer_time_to(target: float, max_epochs: int, data: Path) -> tuple[float | None, int]:
    """training.train for 1, 2, ... epochs, fresh each: the time of the first run to get there."""
    for epochs in range(1, max_epochs + 1):
        with tempfile.TemporaryDirectory() as out:
            run = trainer.Run(epochs=epochs)
            metrics = trainer.train(data, Path(out) / "model", run, log=lambda *_: None)
        assert metrics is not None
        if metrics.test_accuracy >= target:
            return metrics.train_seconds, epochs
    return None, max_epochs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--target", type=float, default=0.97)
    parser.add_argument("--max-epochs", type=int, default=10)
    args = parser.parse_args(argv)
    data = mnist_npz()
    ours, our_epochs = trainer_time_to(args.target, args.max_epochs, data)
    base, base_epochs = baseline_time_to(args.target, args.max_epochs, data)
    print(f"time to {args.target:.0%} test accuracy on MNIST (training time, this machine):")
    for label, seconds, epochs in (
        ("article baseline (fit, batch 32)", base, base_epochs),
        ("training.train", ours, our_epochs),
    ):
        shown = f"{seconds:7.2f} s" if seconds is not None else "  never"
        print(f"  {label:34} {shown}  ({epochs} epoch(s))")
    if ours is None or base is None:
        print("  ratio: n/a (a run did not reach the target)")
        return 1
    print(f"  speed-up: {base / ours:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
