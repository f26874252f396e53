"""Safe reads of resource properties as a policy sees them.

During `pulumi preview` the engine hands a policy its resource's inputs wrapped in proxies
(Mappings and Sequences, not dicts and lists) that raise `UnknownValueError` when a value is
not known yet, and numbers arrive as floats. These helpers never raise: a missing, unknown or
oddly typed value reads as "nothing to check". `pulumi up` runs the policies again with every
value known, so a value skipped in a preview is still checked before anything is created.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from pulumi_policy.proxy import UnknownValueError

# The engine's placeholders for values that are not known yet (pulumi_policy/proxy.py).
_UNKNOWN_SENTINELS = frozenset(
    {
        "1c4a061d-8072-4f0a-a4cb-0ff528b18fe7",
        "3eeb2bf0-c639-47a8-9e75-3b44932eb421",
        "04da6b54-80e4-46f7-96ec-b56ff0331ba9",
        "6a19a0b0-7e62-4c92-b797-7f8e31da9cc2",
        "030794c1-ac77-496b-92df-f27374a8bd58",
        "e48ece36-62e2-4504-bad9-02848725956a",
        "dd056dcd-154b-4c76-9bd3-c8f88648b5ff",
    }
)


def is_unknown(value: object) -> bool:
    """Whether `value` is the engine's placeholder for a value not known during preview."""
    return isinstance(value, str) and value in _UNKNOWN_SENTINELS


def _read(obj: object, key: str) -> tuple[bool, object]:
    """(present, value) of obj[key]; unknown values count as present, with value None."""
    if not isinstance(obj, Mapping):
        return False, None
    try:
        if key not in obj:
            return False, None
        value = obj[key]
    except UnknownValueError:
        return True, None
    except (KeyError, TypeError):
        return False, None
    return True, (None if is_unknown(value) else value)


def field(obj: object, *path: str) -> Any:
    """obj[path[0]][path[1]]..., or None when any step is missing, unknown or not a mapping."""
    current: object = obj
    for key in path:
        _, current = _read(current, key)
        if current is None:
            return None
    return current


def is_unknown_field(obj: object, key: str) -> bool:
    """Whether obj[key] is present but not known yet (as opposed to absent)."""
    if not isinstance(obj, Mapping):
        return False
    try:
        if key not in obj:
            return False
        value = obj[key]
    except UnknownValueError:
        return True
    except (KeyError, TypeError):
        return False
    return is_unknown(value)


def mapping(value: object) -> Mapping[str, Any]:
    """`value` if it is a mapping, else an empty one."""
    return value if isinstance(value, Mapping) else {}


def elements(value: object) -> Iterator[tuple[int, Any]]:
    """(index, element) of a list, skipping unknown elements; nothing for a non-list."""
    if not isinstance(value, Sequence) or isinstance(value, str | bytes):
        return
    for index in range(len(value)):
        try:
            element = value[index]
        except (UnknownValueError, IndexError):
            continue
        if not is_unknown(element):
            yield index, element


def keys(value: object) -> list[str]:
    """The string keys of a mapping (their values may still be unknown); [] otherwise."""
    if not isinstance(value, Mapping):
        return []
    return [key for key in value if isinstance(key, str)]


def strings(value: object) -> list[str]:
    """A string or a list of strings as a list (IAM's Action/Resource shape); [] otherwise."""
    if isinstance(value, str):
        return [] if is_unknown(value) else [value]
    return [element for _, element in elements(value) if isinstance(element, str)]


def is_true(value: object) -> bool:
    """True only for a real boolean true (the engine passes booleans through unchanged)."""
    return value is True
