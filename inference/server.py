"""Run the inference API.

    python -m inference.server --model-base-path /models/team/mnist --model-name mnist \\
        --port 8080 [--max-batch-size 32] [--batch-timeout-ms 5] [--max-queue-ms 50] \
        [--max-body-bytes 1048576]

`--max-batch-size 1` turns batching off.  A prediction that cannot start within `--max-queue-ms`
is answered 503 with `Retry-After` (inference/batcher.py).  The server starts even before a model
version exists (`/readyz` answers 503 until one loads) and picks up new versions as they appear.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import uvicorn

from inference.app import Config, create_app


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} must be at least 1")
    return value


def _non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} must not be negative")
    return value


def _positive(text: str) -> float:
    value = _non_negative(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"{text} must be above 0")
    return value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Serve an exported MNIST model over HTTP.")
    parser.add_argument("--model-base-path", type=Path, required=True)
    parser.add_argument("--model-name", required=True)
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=_positive_int, default=8080)
    parser.add_argument("--max-batch-size", type=_positive_int, default=32)
    parser.add_argument("--batch-timeout-ms", type=_non_negative, default=5.0)
    parser.add_argument(
        "--max-queue-ms",
        type=_positive,
        default=Config.max_queue_ms,
        help="the longest a prediction may wait for its batch before it is shed with 503",
    )
    parser.add_argument("--max-body-bytes", type=_positive_int, default=1 << 20)
    parser.add_argument("--max-instances", type=_positive_int, default=256)
    parser.add_argument("--poll-seconds", type=_non_negative, default=10.0)
    args = parser.parse_args(argv)
    if args.model_base_path.exists() and not args.model_base_path.is_dir():
        parser.error(f"--model-base-path {args.model_base_path} is a file, not a directory")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    config = Config(
        model_base_path=args.model_base_path,
        model_name=args.model_name,
        max_batch_size=args.max_batch_size,
        batch_timeout_ms=args.batch_timeout_ms,
        max_body_bytes=args.max_body_bytes,
        max_instances=args.max_instances,
        poll_seconds=args.poll_seconds,
        max_queue_ms=args.max_queue_ms,
    )
    uvicorn.run(
        create_app(config), host=args.host, port=args.port, log_level="warning", access_log=False
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
