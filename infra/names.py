"""Names of the namespaces the platform itself owns; teams may not take them."""

from __future__ import annotations

PLATFORM = "ml-system"
GPU = "gpu-system"
KUBEFLOW = "kubeflow"
SERVING = "serving"
MONITORING = "monitoring"
LOGGING = "logging"
NOTEBOOK_CONTROLLER = "notebook-controller-system"  # the upstream overlay's own namespace

PLATFORM_NAMESPACES = frozenset(
    {PLATFORM, GPU, KUBEFLOW, SERVING, MONITORING, LOGGING, NOTEBOOK_CONTROLLER}
)
KUBERNETES_NAMESPACES = frozenset({"default", "kube-system", "kube-public", "kube-node-lease"})
RESERVED_NAMESPACES = PLATFORM_NAMESPACES | KUBERNETES_NAMESPACES
