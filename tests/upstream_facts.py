"""Facts read from third-party sources at the refs the program pins, kept as test fixtures.

Each `tests/upstream/<name>.yaml` records what an upstream repository says at one ref (which
object sets which field, which flag or env var a binary reads, which labels an exporter emits),
with the files it was read from:

    source:
      repository: owner/repo
      ref: v1.2.3
      files: [path/in/repo, ...]
    facts:
      ...            # whatever the tests need, written from those files

`facts(name, pinned=...)` returns the `facts` mapping, and fails when the fixture was written
from another ref than the one the program pins now: a pin bump must come with a fresh reading of
the upstream files, so a changed fact is seen instead of silently assumed.

Where the pinned ref itself could not be read (a release newer than any copy of the repository
available), `source.ref` is the ref actually read and `source.pinned` the pin it stands in for;
the fixture's comments say what the gap is.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

FIXTURES = Path(__file__).resolve().parent / "upstream"


def source(name: str) -> dict[str, Any]:
    """The fixture's `source` block: repository, ref and the files the facts come from."""
    document = _load(name)
    block: dict[str, Any] = document["source"]
    return block


def facts(name: str, *, pinned: str) -> Any:
    """The fixture's facts, provided they were read at `pinned`, the ref the program uses."""
    document = _load(name)
    origin = document["source"]
    written_for = origin.get("pinned", origin["ref"])
    assert written_for == pinned, (
        f"tests/upstream/{name}.yaml was written for {origin['repository']}@{written_for}, "
        f"but the program now pins {pinned}: read {', '.join(origin['files'])} at {pinned} and "
        "update the fixture (and the settings that rely on it)"
    )
    return document["facts"]


def _load(name: str) -> dict[str, Any]:
    path = FIXTURES / f"{name}.yaml"
    document = yaml.safe_load(path.read_text())
    assert isinstance(document, dict), f"{path}: not a mapping"
    origin = document.get("source")
    assert isinstance(origin, dict), f"{path}: no source block"
    missing = {"repository", "ref", "files"} - set(origin)
    assert not missing, f"{path}: source lacks {sorted(missing)}"
    assert origin["files"], f"{path}: source.files is empty"
    assert "facts" in document, f"{path}: no facts"
    return document
