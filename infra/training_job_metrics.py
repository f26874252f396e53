"""Training jobs' conditions as series: kube-state-metrics' custom-resource-state metrics.

The training operator's own `training_operator_jobs_failed_total` moves only when a replica pod
reaches phase Failed (kubeflow/trainer@v1.9.4:pkg/controller.v1/tensorflow/tfjob_controller.go
L494-508).  Our jobs restart in place (`restartPolicy: OnFailure`) and fail through their
backoffLimit or activeDeadlineSeconds, which sets the job's `Failed` condition without touching
that counter (@v1.9.4:pkg/controller.v1/common/job.go L206-227).  So the alert reads the
condition itself: kube-state-metrics (the one kube-prometheus-stack runs) exports every
condition of every TFJob and PyTorchJob as

    kube_customresource_training_job_condition{customresource_kind, namespace, job_name, type} 1|0

one series per condition, 1 while its status is "True".
"""

from __future__ import annotations

from typing import Any

# kubeflow/trainer@v1.9.4:pkg/apis/kubeflow.org/v1/groupversion_info.go L29 (group, version);
# tensorflow_types.go L32-34 and pytorch_types.go L33-35 (kind, plural).
GROUP = "kubeflow.org"
VERSION = "v1"
KINDS = {"TFJob": "tfjobs", "PyTorchJob": "pytorchjobs"}

METRIC = "training_job_condition"
# kubernetes/kube-state-metrics@v2.20.0:pkg/customresourcestate/config.go L36,74-80: with no
# metricNamePrefix every series is named kube_customresource_<name>.
SERIES = f"kube_customresource_{METRIC}"
# Labels the alert routes on: the job's namespace is its team's.
NAMESPACE_LABEL = "namespace"
NAME_LABEL = "job_name"
# Added by kube-state-metrics from groupVersionKind (@v2.20.0:registry_factory.go L44-46).
KIND_LABEL = "customresource_kind"


def _resource(kind: str) -> dict[str, Any]:
    return {
        "groupVersionKind": {"group": GROUP, "version": VERSION, "kind": kind},
        # Read from the object's root for every series of the resource.
        "labelsFromPath": {
            NAMESPACE_LABEL: ["metadata", "namespace"],
            NAME_LABEL: ["metadata", "name"],
        },
        "metrics": [
            {
                "name": METRIC,
                "help": "A training job's condition (Created, Running, Restarting, Succeeded, "
                "Suspended, Failed): 1 while its status is True.",
                "each": {
                    "type": "Gauge",
                    # status.conditions is a list of {type, status, reason, ...}
                    # (kubeflow/trainer@v1.9.4:pkg/apis/kubeflow.org/v1/common_types.go
                    # L47-126): a gauge over a list gives one series per element, and the
                    # status string "True"/"False"/"Unknown" becomes 1/0/0
                    # (kube-state-metrics@v2.20.0:registry_factory.go L286-297, L745-770).
                    "gauge": {
                        "path": ["status", "conditions"],
                        "labelsFromPath": {"type": ["type"]},
                        "valueFrom": ["status"],
                    },
                },
            }
        ],
    }


def custom_resource_state_config() -> dict[str, Any]:
    """The chart's `customResourceState.config`: kube-state-metrics' configuration file."""
    # `kind` is the documentation's header (docs/metrics/extend/customresourcestate-metrics.md);
    # the decoder reads only `spec`.
    return {
        "kind": "CustomResourceStateMetrics",
        "spec": {"resources": [_resource(kind) for kind in KINDS]},
    }


def rbac_rules() -> list[dict[str, Any]]:
    """What kube-state-metrics needs beyond its defaults to read the jobs.

    The chart adds list/watch on CustomResourceDefinitions itself once customResourceState is
    enabled (prometheus-community/helm-charts@kube-state-metrics-8.4.0:
    charts/kube-state-metrics/templates/role.yaml L243-248); the resources are read with list and
    watch (kube-state-metrics@v2.20.0:pkg/customresourcestate/custom_resource_metrics.go L93-105).
    """
    return [{"apiGroups": [GROUP], "resources": sorted(KINDS.values()), "verbs": ["list", "watch"]}]


def kube_state_metrics_values() -> dict[str, Any]:
    """Values for kube-prometheus-stack's kube-state-metrics subchart (chart 8.4.0).

    The chart's `--resources` list (its built-in collectors) need not name the jobs: every
    resource of the custom-resource config is enabled on its own
    (kubernetes/kube-state-metrics@v2.20.0:internal/discovery/discovery.go L295-322).
    """
    return {
        "customResourceState": {"enabled": True, "config": custom_resource_state_config()},
        "rbac": {"extraRules": rbac_rules()},
    }
