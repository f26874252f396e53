"""Names of the namespaces the platform itself owns; teams may not take them."""

from __future__ import annotations

PLATFORM = "ml-system"
GPU = "gpu-system"
KUBEFLOW = "kubeflow"
SERVING = "serving"
MONITORING = "monitoring"
LOGGING = "logging"

PLATFORM_NAMESPACES = frozenset({PLATFORM, GPU, KUBEFLOW, SERVING, MONITORING, LOGGING})
KUBERNETES_NAMESPACES = frozenset({"default", "kube-system", "kube-public", "kube-node-lease"})
RESERVED_NAMESPACES = PLATFORM_NAMESPACES | KUBERNETES_NAMESPACES
