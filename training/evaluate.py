"""Evaluate an exported model version on the test split, as TF Serving would run it.

    python -m training.evaluate --model-base /models/.candidates/RUN --data /data/mnist.npz \\
        [--accuracy-out FILE]

Loads the newest `<model-base>/<version>/` SavedModel, calls its `serving_default` signature on the
test images and reports the accuracy (also written to --accuracy-out, for a pipeline step).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

from training.train import TrainingError, load_dataset

BATCH = 1024


def newest_version(base: Path) -> Path:
    versions = (
        sorted(
            (p for p in base.iterdir() if p.is_dir() and p.name.isdigit()),
            key=lambda p: int(p.name),
        )
        if base.is_dir()
        else []
    )
    if not versions:
        raise TrainingError(
            f"no model version under {base}; expected {base}/<integer>/saved_model.pb"
        )
    newest = versions[-1]
    if not (newest / "saved_model.pb").is_file():
        raise TrainingError(f"{newest} is not a SavedModel (no saved_model.pb)")
    return newest


def accuracy_of(version_dir: Path, data: Path) -> float:
    import tensorflow as tf  # noqa: PLC0415 - heavy import after the cheap checks

    _, _, x_test, y_test = load_dataset(data)
    loaded = tf.saved_model.load(str(version_dir))
    if "serving_default" not in loaded.signatures:
        raise TrainingError(f"{version_dir} has no serving_default signature for TF Serving")
    serve = loaded.signatures["serving_default"]
    images = x_test.astype(np.float32) / 255.0
    predictions = []
    for start in range(0, len(images), BATCH):
        [probabilities] = serve(image=tf.constant(images[start : start + BATCH])).values()
        predictions.append(np.argmax(probabilities.numpy(), axis=1))
    return float(np.mean(np.concatenate(predictions) == y_test))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Evaluate the newest exported model version.")
    parser.add_argument("--model-base", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--accuracy-out", type=Path, default=None)
    args = parser.parse_args(argv)
    try:
        version = newest_version(args.model_base)
        accuracy = accuracy_of(version, args.data)
    except TrainingError as error:
        print(f"evaluate: {error}", file=sys.stderr)
        return 2
    print(f"evaluate: {version}: test accuracy {accuracy:.4f}")
    if args.accuracy_out is not None:
        args.accuracy_out.parent.mkdir(parents=True, exist_ok=True)
        args.accuracy_out.write_text(f"{accuracy}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.exit(main())
