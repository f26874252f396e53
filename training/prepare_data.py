"""Stage the MNIST data set as one validated `mnist.npz` for the training jobs.

    python -m training.prepare_data --out /data/mnist.npz [--source URL-or-FILE]

The output has the keys Keras distributes it with: `x_train` (N, 28, 28) uint8, `y_train` (N,)
labels 0-9, and the same for `x_test`/`y_test`.  The source is the Keras copy (checked against
its published SHA-256) or a local file.  Nothing is written until the data validates: the file is
written next to its destination and renamed into place, followed by a `.sha256` file.  Run again,
it recognises a good file by that checksum and leaves it alone, so the staging Job is idempotent.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import sys
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np

KERAS_MNIST_URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz"
KERAS_MNIST_SHA256 = "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1"
KEYS = ("x_train", "y_train", "x_test", "y_test")
IMAGE_SHAPE = (28, 28)
CLASSES = 10
DOWNLOAD_TIMEOUT_S = 120


class DataError(ValueError):
    """The data, or where it should come from, is unusable; the message says why and what to do."""


@dataclass(frozen=True)
class Summary:
    train: int
    test: int
    sha256: str


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_sha256(path: Path) -> str:
    """`sha256_of` a file's contents, read a block at a time."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def validate(data: bytes, where: str) -> Summary:
    """Check that `data` is an MNIST npz as Keras ships it; raise DataError saying what is wrong."""
    try:
        archive = np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        raise DataError(f"{where} is not a NumPy .npz archive ({error})") from None
    with archive:
        missing = [key for key in KEYS if key not in archive.files]
        if missing:
            found = ", ".join(archive.files) or "nothing"
            raise DataError(
                f"{where} lacks {', '.join(missing)}; it has {found} (expected {', '.join(KEYS)})"
            )
        counts = {}
        for split in ("train", "test"):
            images, labels = archive[f"x_{split}"], archive[f"y_{split}"]
            if images.ndim != 3 or images.shape[1:] != IMAGE_SHAPE or images.shape[0] == 0:
                raise DataError(
                    f"{where}: x_{split} has shape {images.shape}; expected (N, 28, 28) with N > 0"
                )
            if images.dtype != np.uint8:
                raise DataError(
                    f"{where}: x_{split} is {images.dtype}; expected uint8 pixels 0-255"
                )
            if labels.shape != (images.shape[0],):
                raise DataError(
                    f"{where}: y_{split} has shape {labels.shape}; expected ({images.shape[0]},), "
                    f"one label per image"
                )
            if not np.issubdtype(labels.dtype, np.integer):
                raise DataError(f"{where}: y_{split} is {labels.dtype}; expected integer labels")
            if labels.min() < 0 or labels.max() >= CLASSES:
                raise DataError(
                    f"{where}: y_{split} has labels from {labels.min()} to {labels.max()}; "
                    f"expected 0-{CLASSES - 1}"
                )
            counts[split] = int(images.shape[0])
    return Summary(counts["train"], counts["test"], sha256_of(data))


def read_source(source: str, expected_sha256: str | None) -> bytes:
    """The bytes of `source` (an http(s) URL or a file), checked against `expected_sha256`."""
    if source.startswith(("http://", "https://")):
        try:
            with urllib.request.urlopen(source, timeout=DOWNLOAD_TIMEOUT_S) as response:
                data: bytes = response.read()
        except (urllib.error.URLError, TimeoutError) as error:
            raise DataError(
                f"cannot download {source}: {error}; give a local copy with --source FILE"
            ) from None
    else:
        path = Path(source)
        if not path.is_file():
            raise DataError(f"source file {path} does not exist; check the --source path")
        data = path.read_bytes()
    if expected_sha256 and sha256_of(data) != expected_sha256:
        raise DataError(
            f"{source} has SHA-256 {sha256_of(data)}, not the expected {expected_sha256}; the "
            "download is corrupt or the file is another data set"
        )
    return data


def checksum_path(out: Path) -> Path:
    return out.with_name(out.name + ".sha256")


def already_prepared(out: Path) -> Summary | None:
    """The summary of a good file already at `out` (its checksum file agrees), else None."""
    check = checksum_path(out)
    if not (out.is_file() and check.is_file()):
        return None
    data = out.read_bytes()
    if check.read_text().split()[0:1] != [sha256_of(data)]:
        return None
    try:
        return validate(data, str(out))
    except DataError:
        return None


def _write_atomically(path: Path, data: bytes) -> None:
    """Write next to `path`, then rename, so readers see the old file or the new, never half."""
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", delete=False) as tmp:
        tmp.write(data)
        tmp.flush()
        os.fsync(tmp.fileno())
    os.replace(tmp.name, path)


def prepare(out: Path, source: str, expected_sha256: str | None) -> tuple[Summary, bool]:
    """Stage the data set at `out`; return its summary and whether anything was written."""
    if not out.parent.is_dir():
        raise DataError(f"the folder {out.parent} does not exist; mount the datasets volume there")
    existing = already_prepared(out)
    if existing is not None:
        return existing, False
    data = read_source(source, expected_sha256)
    summary = validate(data, source)  # before touching `out`: a bad source never replaces it
    _write_atomically(out, data)
    _write_atomically(checksum_path(out), f"{summary.sha256}  {out.name}\n".encode())
    return summary, True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Stage MNIST as a validated mnist.npz.")
    parser.add_argument("--out", type=Path, required=True, help="where to write mnist.npz")
    parser.add_argument(
        "--source",
        default=KERAS_MNIST_URL,
        help="an http(s) URL or a local .npz file (default: the Keras copy)",
    )
    parser.add_argument(
        "--sha256",
        default=None,
        help="expected SHA-256 of the source (default: Keras's for its own URL, none otherwise)",
    )
    args = parser.parse_args(argv)
    expected = args.sha256 or (KERAS_MNIST_SHA256 if args.source == KERAS_MNIST_URL else None)
    try:
        summary, wrote = prepare(args.out, args.source, expected)
    except DataError as error:
        print(f"prepare_data: {error}", file=sys.stderr)
        return 2
    state = "wrote" if wrote else "already prepared"
    print(
        f"prepare_data: {state} {args.out}: {summary.train} training and {summary.test} test "
        f"images, sha256 {summary.sha256}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
