"""Reading IAM policy documents in tests, whatever shape they were written in."""

from __future__ import annotations

import json
from typing import Any


def statements(document: Any) -> list[dict[str, Any]]:
    """The statements of a policy given as JSON text or a dict (one statement or a list)."""
    parsed = json.loads(document) if isinstance(document, str) else document
    found = parsed["Statement"]
    return found if isinstance(found, list) else [found]


def as_list(value: Any) -> list[Any]:
    """An Action or Resource value, which IAM allows as one string or a list."""
    return value if isinstance(value, list) else [value]
