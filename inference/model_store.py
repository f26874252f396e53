"""The newest good model version under a TF Serving base path, reloaded when a newer one lands.

A version is a `<base>/<integer>/` SavedModel with a `serving_default` signature taking `image`
float32 (None, 28, 28).  A version that fails to load or has the wrong signature is rejected and
remembered (so it is not retried on every poll); the version in service keeps serving.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger("inference.models")

Predict = Callable[[np.ndarray], np.ndarray]
INPUT_NAME = "image"
IMAGE_SHAPE = (28, 28)


class ModelLoadError(RuntimeError):
    pass


@dataclass(frozen=True)
class LoadedModel:
    version: int
    predict: Predict


def load_version(path: Path) -> Predict:
    """Load one SavedModel and return a numpy-in, numpy-out call of its serving signature."""
    import tensorflow as tf  # noqa: PLC0415 - heavy; imported where it is needed

    if not (path / "saved_model.pb").is_file():
        raise ModelLoadError(f"{path} has no saved_model.pb")
    try:
        loaded = tf.saved_model.load(str(path))
    except Exception as error:
        raise ModelLoadError(f"{path} does not load: {error}") from None
    signature = loaded.signatures.get("serving_default")
    if signature is None:
        raise ModelLoadError(f"{path} has no serving_default signature")
    inputs = signature.structured_input_signature[1]
    spec = inputs.get(INPUT_NAME)
    if spec is None or spec.dtype != tf.float32 or tuple(spec.shape[1:]) != IMAGE_SHAPE:
        raise ModelLoadError(
            f"{path}: serving_default must take `image` float32 (None, 28, 28); got {inputs}"
        )

    def predict(batch: np.ndarray) -> np.ndarray:
        outputs = signature(**{INPUT_NAME: tf.constant(batch, dtype=tf.float32)})
        [probabilities] = outputs.values()
        return np.asarray(probabilities)

    predict(np.zeros((1, *IMAGE_SHAPE), dtype=np.float32))  # warm up: first call traces
    # Keep the loaded object alive with the closure that uses its signature.
    predict.__dict__["_loaded"] = loaded
    return predict


class ModelStore:
    """Holds the model in service; `refresh()` swaps in a newer good version atomically."""

    def __init__(
        self,
        base_path: Path,
        loader: Callable[[Path], Predict] = load_version,
        on_reject: Callable[[], None] = lambda: None,
    ) -> None:
        self.base_path = base_path
        self._loader = loader
        self._on_reject = on_reject
        self._current: LoadedModel | None = None
        self._rejected: set[int] = set()
        self._lock = threading.Lock()

    @property
    def current(self) -> LoadedModel | None:
        return self._current

    @property
    def rejected(self) -> list[int]:
        """The versions that failed to load, oldest first."""
        return sorted(self._rejected)

    def versions(self) -> list[int]:
        if not self.base_path.is_dir():
            return []
        return sorted(
            int(p.name) for p in self.base_path.iterdir() if p.is_dir() and p.name.isdigit()
        )

    def refresh(self) -> LoadedModel | None:
        """Load the newest version newer than the one in service; return it if swapped in."""
        with self._lock:
            serving = self._current.version if self._current else -1
            for version in reversed(self.versions()):
                if version <= serving:
                    return None
                if version in self._rejected:
                    continue
                try:
                    predict = self._loader(self.base_path / str(version))
                except ModelLoadError as error:
                    self._rejected.add(version)
                    self._on_reject()
                    log.error("rejected model version %s: %s", version, error)
                    continue
                self._current = LoadedModel(version, predict)
                log.info("serving model version %s", version)
                return self._current
            return None
