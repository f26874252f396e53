"""Write the stack configuration reference (docs/configuration.md) from the settings models.

    python -m infra.config_reference > docs/configuration.md

Generated, so the reference cannot drift from what the program accepts; a test compares them.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from typing import Annotated, Any, Literal, get_args, get_origin

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from infra.settings import PROJECT, Settings, unwrap_annotation

_SCALARS = {str: "string", int: "integer", float: "number", bool: "boolean"}


def _type_name(annotation: Any) -> str:
    origin = get_origin(annotation)
    args = [a for a in get_args(annotation) if a is not type(None)]
    if origin is None:
        return _SCALARS.get(annotation, "object")
    if origin is Literal:
        return " \\| ".join(f"`{a}`" for a in args)
    if origin in (list, dict):
        if origin is list:
            return f"list of {_type_name(args[0])}"
        return f"map of {_type_name(args[1])}" if len(args) == 2 else "map of string"
    if origin is Annotated:
        return _type_name(args[0])
    optional = " (optional)" if type(None) in get_args(annotation) else ""
    return " or ".join(_type_name(a) for a in args) + optional


def _default(info: FieldInfo) -> str:
    if info.default_factory is not None:
        value = info.default_factory()  # type: ignore[call-arg]
        if isinstance(value, BaseModel):
            return "see below"
        return f"`{json.dumps(value)}`" if value not in ([], {}) else "none"
    if info.default is PydanticUndefined:
        return "**required**"
    if info.default is None:
        return "none"
    return f"`{json.dumps(info.default)}`"


def _model_of(annotation: Any) -> type[BaseModel] | None:
    found = unwrap_annotation(annotation)
    return found if isinstance(found, type) and issubclass(found, BaseModel) else None


def _rows(model: type[BaseModel], prefix: str) -> Iterator[tuple[str, str, str, str]]:
    for name, info in model.model_fields.items():
        key = f"{prefix}{info.alias or name}"
        yield key, _type_name(info.annotation), _default(info), info.description or ""
        nested = _model_of(info.annotation)
        if nested is not None:
            # A list's items as `key[].field`, a map's values as `key.<name>.field`.
            origin = get_origin(info.annotation)
            below = (
                f"{key}[]." if origin is list else f"{key}.<name>." if origin is dict else f"{key}."
            )
            yield from _rows(nested, below)


def reference() -> str:
    lines = [
        "# Stack configuration reference",
        "",
        "Generated from the models in `infra/settings/` by `make docs`; do not edit by hand.",
        f"Every key lives under the `{PROJECT}:` namespace in `Pulumi.<stack>.yaml`. Unknown",
        "keys are errors, and so is every value outside what the table allows.",
        "",
    ]
    for name, info in Settings.model_fields.items():
        top = info.alias or name
        lines += [f"## `{PROJECT}:{top}`", "", info.description or "", ""]
        lines += ["| key | type | default | meaning |", "|---|---|---|---|"]
        model = _model_of(info.annotation)
        rows = (
            _rows(model, f"{top}[]." if get_origin(info.annotation) is list else f"{top}.")
            if model
            else iter([(top, _type_name(info.annotation), _default(info), "")])
        )
        lines += [f"| `{key}` | {kind} | {default} | {text} |" for key, kind, default, text in rows]
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.stdout.write(reference())
