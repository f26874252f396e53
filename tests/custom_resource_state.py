"""kube-state-metrics' custom-resource-state configuration, read the way it reads it.

Written here from the facts in tests/upstream/kube-state-metrics-crs.yaml (what a configuration
may say, how a gauge over a list becomes series, which labels are added): enough to check a
configuration's keys, list every field it reads, and compute the series it gives for an object.
Only what our configuration uses is modelled (gauges, plain paths); anything else is refused.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

Labels = dict[str, str]


_SCALARS: dict[str, Callable[[Any], bool]] = {
    "map": lambda v: isinstance(v, dict),
    "string": lambda v: isinstance(v, str),
    "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "bool": lambda v: isinstance(v, bool),
    "path": lambda v: isinstance(v, list) and all(isinstance(s, str) for s in v),
}


def schema_problems(config: dict[str, Any], ksm: dict[str, Any]) -> list[str]:
    """Keys the configuration's structs do not have, wrong shapes, and `each` mismatches."""
    problems: list[str] = []
    top = dict(config)
    if top.get("kind") == ksm["documented_kind"]:
        top.pop("kind")
    _check(top, "Metrics", "config", ksm, problems)
    return problems


def _check(value: Any, kind: str, where: str, ksm: dict[str, Any], problems: list[str]) -> None:
    if kind.startswith("["):
        items = value if isinstance(value, list) else None
        if items is None:
            problems.append(f"{where}: not a list")
        for i, item in enumerate(items or []):
            _check(item, kind[1:-1], f"{where}[{i}]", ksm, problems)
    elif kind == "pathmap":
        paths = value if isinstance(value, dict) else None
        if paths is None:
            problems.append(f"{where}: not a mapping of label to path")
        for key, path in (paths or {}).items():
            _check(path, "path", f"{where}.{key}", ksm, problems)
    elif kind in _SCALARS:
        if not _SCALARS[kind](value):
            problems.append(f"{where}: not a {kind}")
    elif not isinstance(value, dict):
        problems.append(f"{where}: not a mapping")
    else:
        _check_struct(value, kind, where, ksm, problems)


def _check_struct(
    value: dict[str, Any], kind: str, where: str, ksm: dict[str, Any], problems: list[str]
) -> None:
    fields: dict[str, str] = ksm["schema"][kind]
    for key, item in value.items():
        if key not in fields:
            problems.append(f"{where}.{key}: no such field in {kind}")
        else:
            _check(item, fields[key], f"{where}.{key}", ksm, problems)
    if kind == "Metric":
        member = ksm["metric_types"].get(str(value.get("type", "")).lower())
        if member is None:
            problems.append(f"{where}.type: unknown metric type {value.get('type')!r}")
        elif member not in value:
            problems.append(f"{where}: type {value['type']} needs each.{member}")


def _gauges(resource: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for metric in resource["metrics"]:
        each = metric["each"]
        assert each["type"].lower() == "gauge", f"{metric['name']}: only gauges are modelled"
        found.append(metric)
    return found


def read_paths(resource: dict[str, Any]) -> list[list[str]]:
    """Every field path the resource's metrics read, from the object's root.

    A list is entered as `[]`: a gauge over a list reads its element paths from each element.
    """
    paths = [list(p) for p in resource.get("labelsFromPath", {}).values()]
    for metric in _gauges(resource):
        paths += [list(p) for p in metric.get("labelsFromPath", {}).values()]
        gauge = metric["each"]["gauge"]
        base = list(gauge["path"])
        paths.append(base)
        for element_path in [*gauge.get("labelsFromPath", {}).values(), gauge["valueFrom"]]:
            paths.append([*base, "[]", *element_path])
    return paths


def field_exists(fields: Any, path: list[str]) -> bool:
    """Whether `path` names a field in a type tree of mappings and one-element lists."""
    node = fields
    for segment in path:
        if segment == "[]":
            if not (isinstance(node, list) and len(node) == 1):
                return False
            node = node[0]
        elif isinstance(node, dict) and segment in node:
            node = node[segment]
        else:
            return False
    return True


def _get(obj: Any, path: list[str]) -> Any:
    for segment in path:
        if re.fullmatch(r"\[.*\]", segment):
            raise AssertionError(f"list lookups ({segment}) are not modelled")
        if isinstance(obj, dict):
            obj = obj.get(segment)
        elif isinstance(obj, list) and re.fullmatch(r"-?\d+", segment):
            index = int(segment)
            obj = obj[index] if -len(obj) <= index < len(obj) else None
        else:
            return None
        if obj is None:
            return None
    return obj


def _value(raw: Any, ksm: dict[str, Any]) -> float:
    if isinstance(raw, bool):
        return 1.0 if raw else 0.0
    if isinstance(raw, str):
        mapped = ksm["string_values"].get(raw.lower())
        assert mapped is not None, f"value {raw!r}: only the boolean strings are modelled"
        return float(mapped)
    return float(raw)


def emitted(
    resource: dict[str, Any], obj: dict[str, Any], ksm: dict[str, Any]
) -> list[tuple[str, Labels, float]]:
    """The series kube-state-metrics gives for one object of the resource: (name, labels, value)."""
    prefix = resource.get("metricNamePrefix", ksm["default_metric_prefix"])
    gvk = resource["groupVersionKind"]
    out = []
    for metric in _gauges(resource):
        name = "_".join(part for part in (prefix, metric["name"]) if part)
        base: Labels = {ksm["gvk_labels"][key]: gvk[key] for key in ("group", "version", "kind")}
        for label, path in {
            **resource.get("labelsFromPath", {}),
            **metric.get("labelsFromPath", {}),
        }.items():
            found = _get(obj, path)
            if found is not None:
                base[label] = str(found)
        gauge = metric["each"]["gauge"]
        target = _get(obj, gauge["path"])
        elements = target if isinstance(target, list) else [] if target is None else [target]
        for element in elements:
            raw = _get(element, gauge["valueFrom"])
            if raw is None:
                continue
            labels: Labels = {}
            for label, path in gauge.get("labelsFromPath", {}).items():
                found = _get(element, path)
                if found is not None:
                    labels[label] = str(found)
            out.append((name, {**base, **labels}, _value(raw, ksm)))
    return out
