"""Wait, for a bounded time, for the data set that dataset staging writes.

A training job and the staging Job (`infra/staging.py`) are created by the same `pulumi up`; the
program orders the job after the Job, but a worker can still be first (the job created by hand,
staging rerun beside it, data staged by a pipeline step).  Rather than exit at once and use up
the job's `backoffLimit`, the trainer polls for the file and says that it does, and gives up
with a message naming the path once the bound is spent.

`training.prepare_data` renames the npz into place whole and then writes its `.sha256` beside
it; the data set is ready when the npz exists and, where that checksum file exists, agrees with
it (the two disagree only between the two renames of a restaging).  A file put there by hand,
with no checksum file, is ready as it is.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from training.prepare_data import checksum_path, file_sha256

POLL_SECONDS = 2.0
DEFAULT_WAIT_SECONDS = 300


class DataNotReady(RuntimeError):
    """The data set did not appear in time; the message names the path and what to do."""


def not_ready(path: Path) -> str | None:
    """Why the data set at `path` cannot be used yet, or None when it can."""
    if not path.is_file():
        return f"no file at {path}"
    marker = checksum_path(path)
    try:
        recorded = marker.read_text().split()[:1]
    except FileNotFoundError:
        return None
    if recorded != [file_sha256(path)]:
        return f"{path} does not match the checksum in {marker}"
    return None


def wait_for_data(
    path: Path,
    timeout_s: float,
    *,
    log: Callable[[str], object] = print,
    poll_s: float = POLL_SECONDS,
) -> None:
    """Return once the data set at `path` is ready; raise DataNotReady after `timeout_s`."""
    started = time.monotonic()
    reason = not_ready(path)
    if reason is None:
        return
    if timeout_s > 0:
        log(f"waiting up to {timeout_s:g} s for {path} ({reason}); the staging Job writes it")
    while reason is not None:
        remaining = started + timeout_s - time.monotonic()
        if remaining <= 0:
            raise DataNotReady(
                f"no data set at {path} after waiting {timeout_s:g} s ({reason}); stage it with "
                f"`python -m training.prepare_data --out {path}` (the stage-mnist Job in "
                "ml-system does, with storage.staging.enabled), or wait longer with "
                "--data-wait-seconds"
            )
        time.sleep(min(poll_s, remaining))
        reason = not_ready(path)
    log(f"data set ready at {path} after {time.monotonic() - started:.0f} s")
