"""What the Pulumi CLI checks in a stack's config before `preview` or `up` runs the program.

`pulumi preview` and `pulumi up` merge the stack file with `Pulumi.yaml` and refuse to start
(`validating stack config: ...`) when
- a key of the project's own namespace declared without `default` or `value` has no stack value:
  it is required, and no stack can run without it;
- a value of an explicitly typed key, from the stack or from the declared default, is not of the
  declared type (objects arrive JSON-decoded, scalars as their text).

pulumi/pulumi@v3.259.0:pkg/workspace/config.go (`mergeConfig`, `validateStackConfigValues`) and
sdk/go/common/workspace/project.go (`ValidateConfigValue`); the CLI pinned is 3.272.0, the same
version as the SDK in pyproject.toml, and tests/upstream/pulumi-stack-config.yaml records the gap.
The mocks never run the CLI, so the harness checks the same rules itself.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any


class StackConfigError(ValueError):
    """The CLI would refuse this stack's config before running the program."""


def full_key(project: str, key: str) -> str:
    """A declared key with its namespace; a bare key is in the project's (`parseConfigKey`)."""
    return key if ":" in key else f"{project}:{key}"


def required_keys(project: str, declarations: Mapping[str, Any]) -> list[str]:
    """Declared keys of the project's namespace that have neither `default` nor `value`."""
    return sorted(
        key
        for key, declaration in declarations.items()
        if full_key(project, key).startswith(f"{project}:")
        and not (
            isinstance(declaration, Mapping)
            and (declaration.get("default") is not None or declaration.get("value") is not None)
        )
    )


def check_stack_config(
    project: str,
    stack: str,
    declarations: Mapping[str, Any],
    stack_config: Mapping[str, Any],
    merged: Mapping[str, Any],
) -> None:
    """Raise StackConfigError with the CLI's message if `pulumi preview` would refuse to start.

    `stack_config`: the stack file's values (`namespace:key`); `merged`: with the declared
    defaults and values underneath, as the program receives them.
    """
    missing = [
        key
        for key in required_keys(project, declarations)
        if full_key(project, key) not in stack_config
    ]
    if missing:
        values = "value" if len(missing) == 1 else "values"
        them = "it" if len(missing) == 1 else "them"
        raise StackConfigError(
            f"Stack '{stack}' is missing configuration {values} {_quoted(missing)}: set "
            f"{', '.join(full_key(project, key) for key in missing)} in Pulumi.{stack}.yaml, or "
            f"declare a default for {them} in Pulumi.yaml"
        )
    for key in sorted(declarations):
        declaration = declarations[key]
        if not isinstance(declaration, Mapping) or declaration.get("type") is None:
            continue
        name = full_key(project, key)
        if name not in merged:
            continue
        value = _as_cli_reads(merged[name])
        if not config_value_matches(declaration["type"], declaration.get("items"), value):
            raise StackConfigError(
                f"Stack '{stack}' with configuration key '{key}' must be of type "
                f"'{type_name(declaration['type'], declaration.get('items'))}': fix "
                f"{name} in Pulumi.{stack}.yaml"
            )


def _quoted(keys: list[str]) -> str:
    """`formatMissingKeys`: 'a', 'b' and 'c'."""
    quoted = [f"'{key}'" for key in sorted(keys)]
    return quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} and {quoted[-1]}"


def _as_cli_reads(value: Any) -> Any:
    """The value as `validateStackConfigValue` sees it: objects and arrays JSON-decoded, every
    scalar (and a `secure:` value, once decrypted) as its text."""
    if isinstance(value, Mapping) and set(value) == {"secure"}:
        return "<secret>"
    if isinstance(value, Mapping | list):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def config_value_matches(type_: str, items: Mapping[str, Any] | None, value: Any) -> bool:
    """`ValidateConfigValue`: string, integer, boolean, object, or array of `items`."""
    scalar_checks = {
        "string": lambda: isinstance(value, str),
        # A whole number, or text that parses as one (config arrives as text).
        "integer": lambda: (
            not isinstance(value, bool)
            and (
                isinstance(value, int)
                or (isinstance(value, float) and value.is_integer())
                or (isinstance(value, str) and _parses_as_int(value))
            )
        ),
        "boolean": lambda: value in ("true", "false") or isinstance(value, bool),
        "object": lambda: isinstance(value, Mapping),
    }
    if type_ in scalar_checks:
        return bool(scalar_checks[type_]())
    if not isinstance(value, list) or items is None:
        return False
    return all(config_value_matches(items["type"], items.get("items"), item) for item in value)


def _parses_as_int(text: str) -> bool:
    """strconv.Atoi: an optional sign and decimal digits."""
    return re.fullmatch(r"[+-]?[0-9]+", text) is not None


def type_name(type_: str, items: Mapping[str, Any] | None) -> str:
    """`InferFullTypeName`: `array<object>` for an array of objects."""
    return f"array<{type_name(items['type'], items.get('items'))}>" if items else type_
