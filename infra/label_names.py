"""Kubernetes names as they appear in Prometheus label names and values."""

from __future__ import annotations

import re

_INVALID = re.compile(r"[^a-zA-Z0-9_]")


def sanitise(name: str) -> str:
    """`name` with every character outside [a-zA-Z0-9_] made "_", as kube-state-metrics spells a
    resource name in its `resource` label (kubernetes/kube-state-metrics@v2.20.0:
    internal/store/utils.go L38,148-150, applied in internal/store/pod.go L258-286) and
    prometheus-operator names a target label copied from a Kubernetes label
    (prometheus-operator/prometheus-operator@v0.93.0:pkg/prometheus/promcfg.go L74-78)."""
    return _INVALID.sub("_", name)


def ksm_label(name: str) -> str:
    """The label kube-state-metrics gives a Kubernetes label in its `*_labels` series:
    "label_" + the name sanitised and camel case made snake case
    (kubernetes/kube-state-metrics@v2.20.0:internal/store/utils.go L38-39, L143-160)."""
    return "label_" + re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", sanitise(name)).lower()
