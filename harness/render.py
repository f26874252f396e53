"""`make render STACK=<stack>`: write a stack's Kubernetes objects and resource graph to build/.

    python -m harness.render dev            # build/dev/: manifests.yaml, resources.json and
                                            # alertmanager.yaml
    python -m harness.render --all          # every stack

Runs the program under mocks (no cloud credentials, Pulumi CLI or network), then validates every
built-in Kubernetes object strictly against the stack's Kubernetes version.  Files are written
only when the program succeeded, and each one atomically.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from harness.program import (
    ROOT,
    ProgramError,
    ProgramRun,
    chosen_stacks,
    run_program,
    stack_arguments,
    stack_settings,
    whole_numbers,
)
from harness.schema import is_built_in, validation_errors
from infra import alert_routing, schedulability

# Custom resources of the Kubernetes provider that are not Kubernetes objects.
NOT_OBJECTS = frozenset({"kubernetes:helm.sh/v3:Release"})

# Apply order, as Helm installs: what others refer to comes first.
KIND_ORDER = [
    "Namespace",
    "NetworkPolicy",
    "ResourceQuota",
    "LimitRange",
    "PriorityClass",
    "PodDisruptionBudget",
    "ServiceAccount",
    "Secret",
    "ConfigMap",
    "StorageClass",
    "PersistentVolume",
    "PersistentVolumeClaim",
    "CustomResourceDefinition",
    "ClusterRole",
    "ClusterRoleBinding",
    "Role",
    "RoleBinding",
    "Service",
    "DaemonSet",
    "Pod",
    "ReplicaSet",
    "Deployment",
    "HorizontalPodAutoscaler",
    "StatefulSet",
    "Job",
    "CronJob",
    "IngressClass",
    "Ingress",
    "APIService",
    "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration",
]


def kubernetes_objects(run: ProgramRun) -> list[dict[str, Any]]:
    """Every Kubernetes object the program registers itself, as the API server receives it.

    Helm, kustomize and YAML components are not expanded: under mocks they are single opaque
    nodes, and their inputs are checked in resources.json instead.
    """
    objects = []
    for resource in run.resources:
        if not (resource.custom and resource.type.startswith("kubernetes:")):
            continue
        if resource.type in NOT_OBJECTS or resource.type.endswith("Patch"):
            continue  # a patch is part of an object someone else owns; see resources.json
        # Secrets masked, as Pulumi shows them: the rendered files may be shared and kept.
        obj = whole_numbers(resource.masked_inputs())
        metadata = dict(obj.get("metadata") or {})
        assigned = resource.outputs.get("metadata") or {}
        metadata["name"] = assigned.get("name", metadata.get("name"))
        if "namespace" in assigned:
            metadata["namespace"] = assigned["namespace"]
        obj["metadata"] = metadata
        objects.append(_ordered_keys(obj))
    return sorted(objects, key=_sort_key)


def _sort_key(obj: dict[str, Any]) -> tuple[int, str, str, str, str]:
    kind = obj.get("kind", "")
    rank = KIND_ORDER.index(kind) if kind in KIND_ORDER else len(KIND_ORDER)
    metadata = obj.get("metadata", {})
    return (rank, obj.get("apiVersion", ""), kind, metadata.get("namespace", ""), metadata["name"])


def _ordered_keys(obj: dict[str, Any]) -> dict[str, Any]:
    """apiVersion, kind and metadata first, everything else sorted, at every depth."""
    head = [k for k in ("apiVersion", "kind", "metadata") if k in obj]
    return {k: _sorted_deep(obj[k]) for k in [*head, *sorted(k for k in obj if k not in head)]}


def _sorted_deep(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _sorted_deep(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [_sorted_deep(v) for v in value]
    return value


def schema_problems(objects: list[dict[str, Any]], kubernetes_minor: str) -> list[str]:
    """Strict schema errors of every built-in object, each prefixed with the object it is in."""
    problems = []
    for obj in objects:
        if not is_built_in(obj):
            continue
        where = f"{obj['kind']} {obj['metadata'].get('namespace', '-')}/{obj['metadata']['name']}"
        problems += [f"{where}: {error}" for error in validation_errors(obj, kubernetes_minor)]
    return problems


def _write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as tmp:
        tmp.write(text)
    os.replace(tmp.name, path)


def alertmanager_file(run: ProgramRun) -> str | None:
    """Alertmanager's configuration as the program hands it over (the config Secret's key), or
    None without monitoring.  It names credential files and holds no secret itself."""
    for resource in run.of_type("kubernetes:core/v1:Secret"):
        if resource.inputs["metadata"]["name"] == alert_routing.CONFIG_SECRET:
            text: str = resource.inputs["stringData"][alert_routing.CONFIG_KEY]
            return text
    return None


def render(stack: str, out_dir: Path, config: Mapping[str, Any] | None = None) -> list[str]:
    """Render one stack into out_dir/<stack>/; return the problems found (none = valid).

    Problems: strict schema errors, and GPU workloads no node pool can run.  `config` replaces
    the stack file's config, as in `run_program`.  Writes manifests.yaml, resources.json and,
    with monitoring, alertmanager.yaml.
    """
    run = run_program(stack, config)
    objects = kubernetes_objects(run)
    kubernetes_minor = str(run.outputs["kubernetesVersion"])
    manifests = yaml.safe_dump_all(objects, sort_keys=False, default_flow_style=False)
    graph = [r.as_json() for r in sorted(run.resources, key=lambda r: r.urn)]
    _write_atomically(out_dir / stack / "manifests.yaml", manifests)
    _write_atomically(
        out_dir / stack / "resources.json", json.dumps(graph, indent=2, sort_keys=True) + "\n"
    )
    alertmanager = alertmanager_file(run)
    if alertmanager is not None:
        _write_atomically(out_dir / stack / "alertmanager.yaml", alertmanager)
    else:
        (out_dir / stack / "alertmanager.yaml").unlink(missing_ok=True)
    return schema_problems(objects, kubernetes_minor) + schedulability.check(
        objects, stack_settings(stack, config)
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    stack_arguments(parser, "render")
    parser.add_argument("--out", type=Path, default=ROOT / "build", help="output folder")
    args = parser.parse_args(argv)
    stacks = chosen_stacks(parser, args, "render")
    status = 0
    for stack in stacks:
        try:
            problems = render(stack, args.out)
        except ProgramError as error:
            print(f"render {stack}: FAILED\n{error.cause}", file=sys.stderr)
            status = 1
            continue
        where = args.out / stack
        if problems:
            print(f"render {stack}: {len(problems)} problem(s) in {where}/manifests.yaml:")
            for problem in problems:
                print(f"  - {problem}")
            status = 1
        else:
            print(f"render {stack}: wrote {where}/manifests.yaml and {where}/resources.json")
    return status


if __name__ == "__main__":
    sys.exit(main())
