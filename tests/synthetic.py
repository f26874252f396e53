"""Data the tests make: a learnable stand-in for MNIST, quick to train on."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def synthetic_mnist(
    path: Path, train_size: int = 2000, test_size: int = 400, seed: int = 0
) -> Path:
    """A learnable stand-in for MNIST: each class lights its own block of pixels."""
    rng = np.random.default_rng(seed)
    total = train_size + test_size
    images = rng.integers(0, 60, size=(total, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=total).astype(np.uint8)
    for i, label in enumerate(labels):
        row, col = divmod(int(label), 5)
        images[i, row * 14 : row * 14 + 10, col * 5 : col * 5 + 5] = 255
    np.savez(
        path,
        x_train=images[:train_size],
        y_train=labels[:train_size],
        x_test=images[train_size:],
        y_test=labels[train_size:],
    )
    return path
