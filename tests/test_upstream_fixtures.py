"""The upstream-fact fixtures themselves: complete, cited, and each one read by a test."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.upstream_facts import FIXTURES, source

TESTS = Path(__file__).resolve().parent
NAMES = sorted(path.stem for path in FIXTURES.glob("*.yaml"))


def test_there_are_fixtures() -> None:
    assert NAMES


@pytest.mark.parametrize("name", NAMES)
def test_fixture_names_its_source(name: str) -> None:
    origin = source(name)
    assert re.fullmatch(r"[\w.-]+/[\w.-]+", origin["repository"]), origin
    assert str(origin["ref"]).strip(), origin
    assert all(isinstance(path, str) and path for path in origin["files"]), origin


@pytest.mark.parametrize("name", NAMES)
def test_fixture_is_read_by_a_test(name: str) -> None:
    """A fixture no test reads checks nothing; it must be removed or used."""
    readers = [
        path.name
        for path in TESTS.glob("*.py")
        if path.name != Path(__file__).name and f'"{name}"' in path.read_text()
    ]
    assert readers, f"no test reads tests/upstream/{name}.yaml"
