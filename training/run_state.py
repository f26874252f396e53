"""What a checkpoint directory holds a run of, so a re-run neither repeats nor wrongly resumes it.

A TFJob recreated under the same name (its declaration changed, or `pulumi up --replace`) finds
the checkpoints of the run before it.  Resuming them is right only when it is the same run,
interrupted; so the chief keeps a record, `run.json`, beside the checkpoints:

- `identity`: what defines the run — the training choices (not where files are written), the
  SHA-256 of the data set, a digest of the trainer's code (every module of this package, as the
  image carries them) and the TensorFlow, Keras and NumPy versions — and its `fingerprint`;
- `export`: the version the run exported, written before the export is renamed into place.

At start every worker reads the record and decides the same way:

- same fingerprint and the recorded version is in the export directory: the run is finished;
  say so and export nothing;
- same fingerprint otherwise: resume from the newest checkpoint (an interrupted run, or a finished
  one whose version is gone: it exports again without training);
- no record, or another fingerprint: start fresh and say what changed.  The chief removes the
  old checkpoints before it records the new run, so a worker that reads the record at any point
  meanwhile also starts fresh (a checkpoint of the new run needs every worker's first epoch).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from training.prepare_data import file_sha256

RECORD = "run.json"
# Run choices that say where the run writes, not what it computes.
LOCATIONS = frozenset({"checkpoint_dir", "metrics_file"})
CODE = Path(__file__).resolve().parent


def code_sha256() -> str:
    """A digest of the trainer's code: each module of the package, by name and contents."""
    digest = hashlib.sha256()
    for path in sorted(CODE.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


@dataclass(frozen=True)
class RunIdentity:
    parts: dict[str, Any]

    @property
    def fingerprint(self) -> str:
        canonical = json.dumps(self.parts, sort_keys=True, default=str)
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def identify_run(
    choices: Mapping[str, Any], data: Path, libraries: Mapping[str, str]
) -> RunIdentity:
    """The identity of a run of `choices` (see LOCATIONS) on `data` with this code."""
    return RunIdentity(
        {
            "choices": {k: v for k, v in sorted(choices.items()) if k not in LOCATIONS},
            "data_sha256": file_sha256(data),
            "code_sha256": code_sha256(),
            "libraries": dict(sorted(libraries.items())),
        }
    )


@dataclass(frozen=True)
class Start:
    resume: bool  # restore the newest checkpoint
    finished: int | None = None  # the version this run already exported: nothing to do


def begin_run(
    checkpoint_dir: Path | None,
    identity: RunIdentity,
    export_dir: Path,
    *,
    chief: bool,
    log: Callable[[str], object],
) -> Start:
    """Whether the run resumes, starts fresh or is already done; the chief records a new run."""
    if checkpoint_dir is None:
        return Start(resume=False)
    record = _read(checkpoint_dir / RECORD)
    if record is not None and record.get("fingerprint") == identity.fingerprint:
        version = (record.get("export") or {}).get("version")
        if version is None:
            return Start(resume=True)
        if (export_dir / str(version)).is_dir():
            log(
                f"nothing to do: run {identity.fingerprint} already finished and exported version "
                f"{version} to {export_dir}; to train it again remove {checkpoint_dir}"
            )
            return Start(resume=False, finished=int(version))
        log(
            f"run {identity.fingerprint} finished, but its version {version} is not in "
            f"{export_dir}: exporting its final checkpoint again"
        )
        return Start(resume=True)
    if record is not None:
        why = ", ".join(_changes(record.get("identity", {}), identity.parts)) or "its record"
        log(f"starting fresh in {checkpoint_dir}: {why} changed since the run recorded there")
    elif _checkpoints(checkpoint_dir):
        log(f"starting fresh in {checkpoint_dir}: its checkpoints have no record of the run")
    if chief:
        for stale in _checkpoints(checkpoint_dir):
            stale.unlink(missing_ok=True)
        _write(checkpoint_dir / RECORD, {"fingerprint": identity.fingerprint, **_body(identity)})
    return Start(resume=False)


def record_export(checkpoint_dir: Path | None, identity: RunIdentity, version: int) -> None:
    """Note the version the run exports (before it is renamed into place: no duplicate later)."""
    if checkpoint_dir is None:
        return
    _write(
        checkpoint_dir / RECORD,
        {"fingerprint": identity.fingerprint, **_body(identity), "export": {"version": version}},
    )


def _body(identity: RunIdentity) -> dict[str, Any]:
    return {"identity": json.loads(json.dumps(identity.parts, default=str))}


def _checkpoints(directory: Path) -> list[Path]:
    """The files tf.train.CheckpointManager writes: the `checkpoint` state file and `ckpt-N.*`."""
    if not directory.is_dir():
        return []
    return [p for p in directory.iterdir() if p.name == "checkpoint" or p.name.startswith("ckpt-")]


def _changes(before: Any, after: Any, where: str = "") -> list[str]:
    """`key old -> new` for every leaf that differs, long digests shortened."""
    if isinstance(before, dict) and isinstance(after, dict):
        return [
            change
            for key in sorted(set(before) | set(after))
            for change in _changes(
                before.get(key), after.get(key), f"{where}.{key}" if where else key
            )
        ]
    old, new = (
        json.loads(json.dumps(before, default=str)),
        json.loads(json.dumps(after, default=str)),
    )
    if old == new:
        return []
    return [f"{where} {_short(old)} -> {_short(new)}"]


def _short(value: Any) -> str:
    text = str(value)
    return text[:12] if len(text) == 64 else text


def _read(path: Path) -> dict[str, Any] | None:
    try:
        record = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def _write(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(
        "w", dir=path.parent, delete=False, prefix=f".{path.name}."
    ) as tmp:
        json.dump(payload, tmp, indent=2, sort_keys=True)
    os.replace(tmp.name, path)
