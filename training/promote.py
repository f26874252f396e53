"""Promote a candidate model version into the directory TF Serving serves, if it is good enough.

    python -m training.promote --candidate-base DIR --serving-base /models/TEAM/mnist \\
        --accuracy 0.981 --threshold 0.97

Copies the newest `<candidate-base>/<version>/` to `<serving-base>/<version>/` through a temporary
directory beside it and a rename, so TF Serving (which polls the base path) only ever sees complete
versions.  Below the threshold nothing is copied and the step still succeeds: a model that is not
better is a result, not a failure.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from training.evaluate import newest_version
from training.train import TrainingError


def promote(
    candidate_base: Path, serving_base: Path, accuracy: float, threshold: float
) -> Path | None:
    """The promoted version directory, or None when the accuracy is below the threshold."""
    if not 0.0 <= threshold <= 1.0:
        raise TrainingError(f"threshold {threshold} must lie between 0 and 1")
    if accuracy < threshold:
        return None
    source = newest_version(candidate_base)
    target = serving_base / source.name
    if target.exists():
        return target  # already promoted (a retried step)
    serving_base.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".tmp-{source.name}-", dir=serving_base))
    try:
        shutil.copytree(source, staging, dirs_exist_ok=True)
        staging.replace(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Promote a model version that meets the bar.")
    parser.add_argument("--candidate-base", type=Path, required=True)
    parser.add_argument("--serving-base", type=Path, required=True)
    parser.add_argument("--accuracy", type=float, required=True)
    parser.add_argument("--threshold", type=float, required=True)
    args = parser.parse_args(argv)
    try:
        promoted = promote(args.candidate_base, args.serving_base, args.accuracy, args.threshold)
    except TrainingError as error:
        print(f"promote: {error}", file=sys.stderr)
        return 2
    if promoted is None:
        print(
            f"promote: not promoted: accuracy {args.accuracy:.4f} < threshold {args.threshold:.4f}"
        )
    else:
        print(f"promote: serving {promoted}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
