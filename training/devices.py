"""Whether a training process that was given GPUs can use them.

The platform sets `EXPECTED_GPUS=<n>` in every training container that requests GPUs (the TFJob
and PyTorchJob replicas of workloads/manifests.py, the pipeline's train step), and only there.
When TensorFlow then lists no GPU, the container lacks the CUDA libraries TensorFlow was built
for or the node's driver is not reachable, and training would run on the CPU while it holds the
GPU, slowly and without a word: the trainer stops instead, saying why.

At least one GPU is required, not `n`: a request counts shares of a time-sliced GPU or MIG slices,
which need not each appear as a device of their own.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

EXPECTED_GPUS = "EXPECTED_GPUS"
CHECK = "python -c 'import tensorflow as tf; print(tf.config.list_physical_devices(\"GPU\"))'"


class DeviceError(RuntimeError):
    """The GPUs this process was given are not usable; the message says what to check."""


def expected_gpus(environ: Mapping[str, str] | None = None) -> int:
    """How many GPUs the container requests (0: none, or not run by the platform)."""
    raw = (environ if environ is not None else os.environ).get(EXPECTED_GPUS, "").strip()
    if not raw:
        return 0
    if not raw.isdigit():
        raise DeviceError(
            f"{EXPECTED_GPUS}={raw!r} is not a number of GPUs; the platform sets it to the "
            "container's GPU request: unset it, or set the request's count"
        )
    return int(raw)


def use_gpus(found: int, environ: Mapping[str, str] | None = None) -> bool:
    """True when there are GPUs to train on (`found`: the GPUs TensorFlow lists).

    Raises DeviceError when the container was given GPUs and TensorFlow sees none.
    """
    expected = expected_gpus(environ)
    if expected and not found:
        raise DeviceError(
            f"the container requests {expected} GPU(s) ({EXPECTED_GPUS}={expected}) but "
            "TensorFlow lists none, so it would train on the CPU. TensorFlow's log above names "
            "the CUDA library it could not load. Check that the image installs TensorFlow's CUDA "
            "wheels (training/requirements.txt, `make training-requirements`) and that the "
            f"node's NVIDIA driver works: `nvidia-smi`, and `{CHECK}` in the pod"
        )
    return found > 0
