"""Strict validation of rendered objects against the Kubernetes OpenAPI schema of a version.

Uses the JSON schemas that ship with `kubernetes-validate` (1.25 to 1.37), in their strict form
(unknown fields are errors), and reports every error rather than stopping at the first.
"""

from __future__ import annotations

import functools
import json
import re
from importlib import resources
from typing import Any

import jsonschema
from referencing import Registry, Resource

# API groups served by the Kubernetes API server itself.  An object in one of these groups with
# no schema for the target version uses an API that does not exist (or was removed) there.
BUILT_IN_GROUPS = frozenset(
    {
        "",
        "admissionregistration.k8s.io",
        "apiextensions.k8s.io",
        "apps",
        "autoscaling",
        "batch",
        "certificates.k8s.io",
        "coordination.k8s.io",
        "discovery.k8s.io",
        "events.k8s.io",
        "flowcontrol.apiserver.k8s.io",
        "networking.k8s.io",
        "node.k8s.io",
        "policy",
        "rbac.authorization.k8s.io",
        "resource.k8s.io",
        "scheduling.k8s.io",
        "storage.k8s.io",
    }
)


def api_group(api_version: str) -> str:
    return api_version.rsplit("/", 1)[0] if "/" in api_version else ""


def is_built_in(obj: dict[str, Any]) -> bool:
    return api_group(str(obj.get("apiVersion", ""))) in BUILT_IN_GROUPS


def _schema_root() -> Any:
    return resources.files("kubernetes_validate").joinpath("kubernetes-json-schema")


@functools.cache
def _schema_dir(kubernetes_minor: str) -> Any:
    folder = _schema_root().joinpath(f"v{kubernetes_minor}.0-local-strict")
    if not folder.is_dir():
        raise ValueError(f"kubernetes-validate has no schema for Kubernetes {kubernetes_minor}")
    return folder


@functools.cache
def _definitions_document(kubernetes_minor: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(
        _schema_dir(kubernetes_minor).joinpath("_definitions.json").read_text()
    )
    return document


def definitions(kubernetes_minor: str) -> dict[str, Any]:
    """The API's type definitions (with their reference descriptions) for a Kubernetes minor."""
    found: dict[str, Any] = _definitions_document(kubernetes_minor)["$defs"]
    return found


@functools.cache
def _registry(kubernetes_minor: str) -> Registry:
    return Resource.from_contents(_definitions_document(kubernetes_minor)) @ Registry()


@functools.cache
def _validator(kubernetes_minor: str, kind: str, api_version: str) -> jsonschema.Validator | None:
    # kubernetes-validate names files <kind>-<group without domain>-<version>.json
    file_api = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    path = _schema_dir(kubernetes_minor).joinpath(f"{kind.lower()}-{file_api}.json")
    if not path.is_file():
        return None
    schema = json.loads(path.read_text())
    registry = Resource.from_contents(schema) @ _registry(kubernetes_minor)
    return jsonschema.Draft202012Validator(schema, registry=registry)


def validation_errors(obj: dict[str, Any], kubernetes_minor: str) -> list[str]:
    """Every schema error of one built-in object, as `path: message` lines; [] when valid."""
    kind, api_version = str(obj.get("kind", "")), str(obj.get("apiVersion", ""))
    validator = _validator(kubernetes_minor, kind, api_version)
    if validator is None:
        return [
            f"{api_version} {kind} does not exist in Kubernetes {kubernetes_minor} (removed or "
            "misspelled API)"
        ]
    errors = sorted(validator.iter_errors(obj), key=lambda e: list(map(str, e.absolute_path)))
    return [f"{'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in errors]
