"""Shared pieces of the settings models: the base model, value types and error plumbing."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

import pulumi
from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

PROJECT = "ml-platform"


class SettingsError(pulumi.RunError):
    """A stack configuration problem; Pulumi prints it without a stack trace."""


class ConfigProblem(ValueError):
    """Raised by cross-field validators to point at a key below the model being validated."""

    def __init__(self, loc: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.loc = loc
        self.message = message


_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_QUANTITY = re.compile(
    r"^(?P<num>\d+(\.\d+)?|\.\d+)(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E|[eE][+-]?\d+)?$"
)
_SUFFIX_FACTOR = {
    "": Decimal(1),
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "k": Decimal(10) ** 3,
    "M": Decimal(10) ** 6,
    "G": Decimal(10) ** 9,
    "T": Decimal(10) ** 12,
    "P": Decimal(10) ** 15,
    "E": Decimal(10) ** 18,
    "Ki": Decimal(2) ** 10,
    "Mi": Decimal(2) ** 20,
    "Gi": Decimal(2) ** 30,
    "Ti": Decimal(2) ** 40,
    "Pi": Decimal(2) ** 50,
    "Ei": Decimal(2) ** 60,
}


def quantity_value(quantity: str) -> Decimal:
    """The numeric value of a Kubernetes quantity ("500m" -> 0.5, "1Gi" -> 1073741824)."""
    match = _QUANTITY.match(quantity)
    if not match:
        raise ValueError(f"{quantity!r} is not a Kubernetes quantity")
    suffix = match["suffix"] or ""
    number = Decimal(match["num"])
    if suffix[:1] in ("e", "E"):
        return number * (Decimal(10) ** int(suffix[1:]))
    return number * _SUFFIX_FACTOR[suffix]


def _check_quantity(value: str) -> str:
    try:
        amount = quantity_value(value)
    except (ValueError, InvalidOperation):
        raise ValueError(
            f"{value!r} is not a Kubernetes quantity; write a number with an optional unit "
            "suffix, e.g. 500m, 4, 16Gi, 1Ti"
        ) from None
    if amount <= 0:
        raise ValueError(f"{value!r} must be greater than zero")
    return value


def _check_dns_label(value: str) -> str:
    if len(value) > 63 or not _DNS_LABEL.match(value):
        raise ValueError(
            f"{value!r} is not a valid name: use at most 63 lower-case letters, digits and '-', "
            "starting and ending with a letter or digit"
        )
    return value


def _check_dns_subdomain(value: str) -> str:
    # Names of most objects, StorageClasses among them (Kubernetes' DNS-1123 subdomain rule).
    if len(value) > 253 or not _DNS_SUBDOMAIN.match(value):
        raise ValueError(
            f"{value!r} is not a valid object name: use at most 253 lower-case letters, digits, "
            "'-' and '.', starting and ending with a letter or digit"
        )
    return value


Quantity = Annotated[str, AfterValidator(_check_quantity)]
DnsLabel = Annotated[str, AfterValidator(_check_dns_label)]
DnsSubdomain = Annotated[str, AfterValidator(_check_dns_subdomain)]
Size = Annotated[int, Field(ge=0)]


class SettingsModel(BaseModel):
    """Base for every settings model: camelCase keys, unknown keys rejected, immutable."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        strict=True,
        alias_generator=to_camel,
        validate_default=True,
    )


def refuse_duplicates(
    items: Iterable[Any],
    key: Callable[[Any], Any],
    loc: tuple[str | int, ...],
    what: str,
    field: str | None = None,
) -> None:
    seen: dict[Any, int] = {}
    for index, item in enumerate(items):
        value = key(item)
        if value in seen:
            where = (*loc, index, field) if field else (*loc, index)
            raise ConfigProblem(
                where,
                f"duplicate {what} {value!r} (also at index {seen[value]}); names must be unique",
            )
        seen[value] = index
