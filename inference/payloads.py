"""Turning request bodies into model inputs, or into a clear 4xx message.

`{"instances": [...]}` as TF Serving takes it: each instance a 28x28 list of pixel values in
[0, 1] (or 784 of them).  Or a PNG/JPEG picture of one digit for the friendly endpoint.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import orjson

IMAGE_SHAPE = (28, 28)
PIXELS = IMAGE_SHAPE[0] * IMAGE_SHAPE[1]


class BadRequest(ValueError):
    """The request cannot be served as sent; the message tells the client why."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def parse_instances(body: bytes, max_instances: int) -> np.ndarray:
    """The instances of a predict request as a float32 (n, 28, 28) array."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        if any(token in body for token in (b"NaN", b"Infinity")):
            raise BadRequest("NaN and infinity are not pixel values; send finite numbers") from None
        raise BadRequest(f"the body is not valid JSON: {error}") from None
    if not isinstance(document, dict) or "instances" not in document:
        raise BadRequest('send {"instances": [<28x28 pixel values in [0, 1]>, ...]}')
    instances = document["instances"]
    if not isinstance(instances, list) or not instances:
        raise BadRequest('"instances" must be a non-empty list of images')
    if len(instances) > max_instances:
        raise BadRequest(
            f"{len(instances)} instances in one request; send at most {max_instances}", status=413
        )
    # NumPy would read true/false as 1/0.  "u" and "f" are in neither numbers nor "instances", so
    # two one-byte searches clear the usual body before the full ones.
    if (b"u" in body or b"f" in body) and (b"true" in body or b"false" in body):
        raise BadRequest("instances hold true/false; send pixel values")
    try:
        # The common case in one vectorised step; a ragged or mistyped request falls through
        # to a per-instance look that says which instance is wrong and how.
        batch = np.asarray(instances, dtype=np.float32)
    except (TypeError, ValueError):
        batch = None
    if batch is None or batch.shape[1:] not in ((PIXELS,), IMAGE_SHAPE):
        return np.stack([_instance(item, index) for index, item in enumerate(instances)])
    # Two reductions settle the usual request: NaN fails both comparisons, infinities one.
    if not (batch.min() >= 0.0 and batch.max() <= 1.0):
        _check_range(batch, "instances")
    return batch.reshape(-1, *IMAGE_SHAPE)


def _check_range(array: np.ndarray, where: str) -> None:
    if not np.all(np.isfinite(array)):
        raise BadRequest(f"{where} hold NaN or infinity; send finite pixel values")
    low, high = float(array.min()), float(array.max())
    if low < 0 or high > 1:
        raise BadRequest(
            f"{where} have values from {low:g} to {high:g}; scale pixels to [0, 1] (divide 0-255 "
            "values by 255)"
        )


def _instance(item: Any, index: int) -> np.ndarray:
    try:
        array = np.asarray(item, dtype=np.float64)
    except (TypeError, ValueError):
        raise BadRequest(
            f"instances[{index}] must be numbers, as a 28x28 list (or 784 values)"
        ) from None
    if array.size != PIXELS or array.shape not in ((PIXELS,), IMAGE_SHAPE):
        raise BadRequest(
            f"instances[{index}] has shape {list(array.shape)}; expected [28, 28] (or [784])"
        )
    _check_range(array, f"instances[{index}]")
    return array.reshape(IMAGE_SHAPE).astype(np.float32)


def parse_image(body: bytes) -> np.ndarray:
    """A PNG/JPEG digit as one (1, 28, 28) instance, white-on-black like MNIST."""
    from PIL import Image, UnidentifiedImageError  # noqa: PLC0415

    if not body:
        raise BadRequest("send the picture as the request body (PNG or JPEG)")
    try:
        with Image.open(io.BytesIO(body)) as picture:
            if picture.format not in ("PNG", "JPEG"):
                raise BadRequest(f"{picture.format} pictures are not accepted; send PNG or JPEG")
            gray = picture.convert("L").resize(IMAGE_SHAPE[::-1], Image.Resampling.BILINEAR)
            pixels = np.asarray(gray, dtype=np.float32) / 255.0
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as error:
        raise BadRequest(f"the body is not a readable PNG or JPEG picture ({error})") from None
    if pixels.mean() > 0.5:
        pixels = 1.0 - pixels  # dark ink on a light background: flip to MNIST's light on dark
    return pixels.reshape(1, *IMAGE_SHAPE)
