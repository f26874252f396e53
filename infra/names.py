"""Names of the namespaces the platform itself owns; teams may not take them."""

from __future__ import annotations

PLATFORM = "ml-system"
GPU = "gpu-system"
KUBEFLOW = "kubeflow"
SERVING = "serving"
MONITORING = "monitoring"
LOGGING = "logging"
NOTEBOOK_CONTROLLER = "notebook-controller-system"  # the upstream overlay's own namespace

# Where Kubeflow Pipelines runs the pods of every pipeline run.  Standalone Pipelines is
# single-user: the API server keeps a run's namespace empty and creates its Workflow in its own
# namespace, and the Argo controller handles Workflows of that namespace only
# (kubeflow/pipelines@2.17.0:backend/src/apiserver/resource/resource_manager.go ReplaceNamespace
# and CreateRun; manifests/kustomize/third-party/argo/installs/namespace adds `--namespaced`;
# tests/upstream/kubeflow-pipelines-runs.yaml).  Runs in team namespaces need multi-user
# Pipelines, which comes only with the full Kubeflow distribution.
PIPELINE_RUNS = KUBEFLOW

PLATFORM_NAMESPACES = frozenset(
    {PLATFORM, GPU, KUBEFLOW, SERVING, MONITORING, LOGGING, NOTEBOOK_CONTROLLER}
)
KUBERNETES_NAMESPACES = frozenset({"default", "kube-system", "kube-public", "kube-node-lease"})
RESERVED_NAMESPACES = PLATFORM_NAMESPACES | KUBERNETES_NAMESPACES
