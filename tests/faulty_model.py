"""A model version with a classic export bug, for tests of how the serving path reports it."""

from __future__ import annotations

from pathlib import Path


def export_batch_of_one(base: Path, version: int = 1) -> Path:
    """Export `<base>/<version>/`: a SavedModel whose `serving_default` signature declares what
    the inference API asks for (`image`, float32 (None, 28, 28); inference/model_store.py) but
    whose graph reshapes its input to a batch of one.  It loads, passes the API's warm-up (one
    image), answers single images, and fails on every batch of two or more."""
    import tensorflow as tf  # noqa: PLC0415 - heavy; imported where it is needed

    class BatchOfOne(tf.Module):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.weights = tf.Variable(tf.zeros([28 * 28, 10]))

        @tf.function(  # type: ignore[untyped-decorator]
            input_signature=[tf.TensorSpec([None, 28, 28], tf.float32, name="image")]
        )
        def serve(self, image: tf.Tensor) -> dict[str, tf.Tensor]:
            flat = tf.reshape(image, [1, 28 * 28])  # the bug: the batch dimension fixed at 1
            return {"probabilities": tf.nn.softmax(flat @ self.weights)}

    module = BatchOfOne()
    path = base / str(version)
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    return path
