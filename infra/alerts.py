"""Alert rules, defined as data and rendered into PrometheusRule groups.

Each rule names the metric family it watches (DCGM exporter, TF Serving, the inference API,
kube-state-metrics and the training jobs' conditions through it, kubelet, Fluent Bit), carries a
severity, a summary and a runbook line, and is checked by `promtool` in the tests.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from infra import gpu_sharing, label_names, labels
from infra.training_job_metrics import KIND_LABEL, NAME_LABEL, NAMESPACE_LABEL, SERIES


@dataclass(frozen=True)
class Alert:
    name: str
    expr: str
    duration: str
    # critical pages, warning and info notify (infra/alert_routing.py); `none` is the Watchdog's.
    severity: Literal["critical", "warning", "info", "none"]
    summary: str
    runbook: str
    # Labels the alert adds, templated from the series (an empty value sets no label).
    labels: dict[str, str] = field(default_factory=dict)

    def rule(self) -> dict[str, Any]:
        return {
            "alert": self.name,
            "expr": self.expr,
            "for": self.duration,
            "labels": {**self.labels, "severity": self.severity},
            "annotations": {"summary": self.summary, "runbook": self.runbook},
        }


# Every resource a GPU pool advertises: whole GPUs, time-sliced shares, MIG slices.
GPU_REQUESTS = "|".join(
    [
        label_names.sanitise(gpu_sharing.GPU),
        label_names.sanitise(gpu_sharing.SHARED_GPU),
        f"{label_names.sanitise(gpu_sharing.MIG_PREFIX)}.*",
    ]
)

# Nodes whose GPUs are shared as nvidia.com/gpu: more of it advertised than dcgm-exporter finds
# GPUs there (time-slicing without renaming; MIG's single strategy too, whose slices report no
# utilisation).
_SHARED = (
    "(count by (hostname) (count by (hostname, gpu) (DCGM_FI_DEV_GPU_UTIL))"
    " < on (hostname) max by (hostname) (label_replace(kube_node_status_capacity"
    f'{{resource="{label_names.sanitise(gpu_sharing.GPU)}"}}, "hostname", "$1", "node", "(.+)")))'
)

# A team's pods run in its namespace, named after the team (infra/namespaces.py): alerts about
# a pod or claim name the namespace's team.  Routes send a `team` that is no team's to the
# platform (infra/alert_routing.py).
POD_TEAM = {"team": "{{ $labels.namespace }}"}

# dcgm-exporter (4.6.0-4.8.3, as GPU Operator v26.7.0 ships it) names the node `hostname`
# (NVIDIA/dcgm-exporter@d5e5f51:internal/pkg/rendermetrics/render_metrics.go L47; `Hostname`
# before #655).  Its pod/namespace/container labels exist only on GPUs a pod holds through
# nvidia.com/gpu or MIG; time-sliced shares and free GPUs carry none (infra/gpu_operator.py).
GPU = [
    Alert(
        "GpuIdleWhileAllocated",
        # Pods holding a whole GPU or a MIG slice.  Time-sliced pools (prod's serving) are out of
        # scope: the exporter cannot say which of a shared GPU's pods is idle, and a serving
        # pool's GPUs idle at low traffic by design (its minimum replicas).  A pool that does
        # not rename its shares advertises them as nvidia.com/gpu, and the exporter then maps
        # the shared GPU to one of its pods (tests/upstream/dcgm-exporter.yaml
        # `shared_device_maps_to_one_pod`): such nodes are left out too.
        f'avg_over_time(DCGM_FI_DEV_GPU_UTIL{{pod!=""}}[30m]) < 5 unless on (hostname) {_SHARED}',
        "15m",
        "warning",
        "GPU {{ $labels.gpu }} on {{ $labels.hostname }} is held by {{ $labels.namespace }}/"
        "{{ $labels.pod }} but has been under 5% busy for 30 minutes",
        "A pod holds a GPU it does not use (an idle notebook, a stuck job): the node cannot scale "
        "down. Check the pod; notebooks are culled after kubeflow.notebooks.cullIdleMinutes.",
        POD_TEAM,
    ),
    Alert(
        "GpuMemoryNearlyFull",
        "DCGM_FI_DEV_FB_USED / (DCGM_FI_DEV_FB_USED + DCGM_FI_DEV_FB_FREE) > 0.95",
        "10m",
        "warning",
        "GPU {{ $labels.gpu }} on {{ $labels.hostname }} has used over 95% of its memory for 10m",
        "Out-of-memory errors follow. On time-sliced pools check each server's "
        "--per_process_gpu_memory_fraction; otherwise lower the batch size.",
        # The holder's team; a GPU no pod holds (shared, or free) has no namespace: platform.
        POD_TEAM,
    ),
    Alert(
        "GpuTooHot",
        # Hardware, so the platform's: per node and GPU, without the holding pod's namespace,
        # which would route it to that team.
        "max by (hostname, gpu) (DCGM_FI_DEV_GPU_TEMP) > 85",
        "5m",
        "critical",
        "GPU {{ $labels.gpu }} on {{ $labels.hostname }} is at {{ $value }} C",
        "The GPU throttles and may fail. Drain the node (kubectl drain) and replace the instance.",
    ),
    Alert(
        "GpuXidErrors",
        # DCGM_FI_DEV_XID_ERRORS holds the last XID and keeps it until the exporter restarts
        # (etc/dcp-metrics-included.csv; NVIDIA/dcgm-exporter#500), and the exporter copies the
        # value into err_code (internal/pkg/collector/gpu_collector.go L323-331): a new XID is a
        # new series.  So the alert is "this GPU shows an XID it did not show 10 minutes ago",
        # per node and GPU only: the gauge outlives the pod that held the GPU, and the next
        # holder, another team, did not cause it.  "Did show" looks back an hour from then
        # (last_over_time), not at the one instant: a failed scrape writes stale markers for
        # every series of the target (prometheus/prometheus@v3.14.0:scrape/scrape.go L1438), and
        # a bare `offset 10m` would then find nothing and fire again for a standing XID.
        "max by (hostname, gpu, err_code, err_msg) (DCGM_FI_DEV_XID_ERRORS) > 0 unless"
        " max by (hostname, gpu, err_code, err_msg)"
        " (last_over_time(DCGM_FI_DEV_XID_ERRORS[1h] offset 10m))",
        "0m",
        "critical",
        "GPU {{ $labels.gpu }} on {{ $labels.hostname }} reported XID {{ $labels.err_code }} "
        "({{ $labels.err_msg }})",
        "Look the XID up in NVIDIA's XID catalogue; most mean a driver or hardware fault: cordon "
        "and replace the node. The alert lasts 10 minutes per new XID; the same XID again is not "
        "seen until the exporter restarts (it keeps the last one).",
    ),
    Alert(
        "GpuPodsPending",
        "sum by (namespace, pod) (kube_pod_container_resource_requests"
        f'{{resource=~"{GPU_REQUESTS}"}}'
        ' * on (namespace, pod) group_left () (kube_pod_status_phase{phase="Pending"} == 1)) > 0',
        "15m",
        "warning",
        "{{ $labels.namespace }}/{{ $labels.pod }} has waited 15 minutes for a GPU",
        "Its pool may be at maxSize, or no instance type has capacity (spot). Check the "
        "cluster-autoscaler logs and the pool's maxSize; run the schedulability check.",
        POD_TEAM,
    ),
]

# The inference API's routes that answer predictions (inference/metrics.py PREDICTION_ROUTES).
PREDICTIONS = 'route=~"predict|digit"'

# Serving's Services carry their model's team (workloads/serving.py) and its ServiceMonitors
# copy that label onto every series as a target label, named with each character outside
# [a-zA-Z0-9_] made "_" (prometheus-operator/prometheus-operator@v0.93.0:pkg/prometheus/
# promcfg.go L74-78, L2156-2164; kube-prometheus-stack 88.5.3 ships v0.93.1).
TEAM_SERIES_LABEL = label_names.sanitise(labels.TEAM)
# Every serving alert names the team whose model it is about, for routing by team (they all
# carry namespace="serving").
SERVING_TEAM = {"team": f"{{{{ $labels.{TEAM_SERIES_LABEL} }}}}"}

# What the serving rules aggregate by: the model (TF Serving) or the API's Service, and its team.
BY_MODEL = f"namespace, model_name, {TEAM_SERIES_LABEL}"
BY_SERVICE = f"namespace, service, {TEAM_SERIES_LABEL}"

SERVING = [
    Alert(
        "TfServingErrorRate",
        f"sum by ({BY_MODEL}) "
        '(rate(:tensorflow:serving:request_count{status!="OK"}[5m]))'
        f" / sum by ({BY_MODEL}) (rate(:tensorflow:serving:request_count[5m])) > 0.05",
        "10m",
        "critical",
        "TF Serving answers over 5% of {{ $labels.model_name }} requests with errors",
        "Check the model's newest version (a bad export?) and the server logs. Errors with "
        'status="UNAVAILABLE" are requests shed because the batch queue was full: the '
        "replicas are saturated; check the HPA's replicas against its maximum.",
        SERVING_TEAM,
    ),
    Alert(
        "TfServingSlow",
        f"histogram_quantile(0.99, sum by (le, {BY_MODEL}) "
        "(rate(:tensorflow:serving:request_latency_bucket[5m]))) > 100000",
        "10m",
        "warning",
        "TF Serving's p99 latency for {{ $labels.model_name }} is over 100 ms",
        "The servers are saturated: check the HPA's replicas against its maximum and the "
        "batching settings.",
        SERVING_TEAM,
    ),
    Alert(
        "InferenceApiErrorRate",
        # Over predictions only (inference/metrics.py PREDICTION_ROUTES): the probes are not
        # counted, and a route such as the model-status GET would dilute the rate at low traffic.
        f"sum by ({BY_SERVICE}) "
        f'(rate(inference_requests_total{{{PREDICTIONS},status=~"5.."}}[5m]))'
        f" / sum by ({BY_SERVICE}) (rate(inference_requests_total{{{PREDICTIONS}}}[5m]))"
        " > 0.05",
        "10m",
        "critical",
        "The inference API {{ $labels.service }} fails over 5% of predictions",
        "5xx means the server failed, not the client: check /readyz and the logs. 503s counted "
        "in inference_requests_shed_total were shed past the queue budget (--max-queue-ms): the "
        "replicas are saturated; check the HPA's replicas against its maximum.",
        SERVING_TEAM,
    ),
    Alert(
        "InferenceApiSlow",
        f"histogram_quantile(0.99, sum by (le, {BY_SERVICE}) "
        '(rate(inference_request_duration_seconds_bucket{route="predict"}[5m]))) > 0.1',
        "10m",
        "warning",
        "The inference API {{ $labels.service }} answers predictions in over 100 ms (p99)",
        "Check replicas against the HPA maximum and --max-batch-size / --batch-timeout-ms.",
        SERVING_TEAM,
    ),
    Alert(
        "InferenceModelNotLoaded",
        "inference_model_version == 0",
        "10m",
        "critical",
        "The inference API {{ $labels.service }} has no model version loaded",
        "No version under the model's base path loads: check the training job's export and the "
        "server log for rejected versions (/readyz says which). On a new stack it fires until "
        "the training job exports the first version; the servers wait for it, unready.",
        SERVING_TEAM,
    ),
]

TRAINING = [
    Alert(
        "TrainingJobFailed",
        # The job's own Failed condition (infra/training_job_metrics.py): every way a TFJob or
        # PyTorchJob fails sets it, its backoffLimit and activeDeadlineSeconds included, which
        # the operator's training_operator_jobs_failed_total never counts
        # (kubeflow/trainer@v1.9.4:pkg/controller.v1/common/job.go L206-227).  Aggregated so the
        # alert carries the team (namespace), the kind and the job, not kube-state-metrics' pod.
        f'max by ({NAMESPACE_LABEL}, {KIND_LABEL}, {NAME_LABEL}) ({SERIES}{{type="Failed"}} == 1)',
        "0m",
        "warning",
        f"{{{{ $labels.{KIND_LABEL} }}}} {{{{ $labels.{NAMESPACE_LABEL} }}}}/"
        f"{{{{ $labels.{NAME_LABEL} }}}} failed",
        "kubectl describe the job: its Failed condition says whether it used up its "
        "backoffLimit (a worker kept failing: read the workers' logs) or ran past "
        "activeDeadlineSeconds. Finished jobs are kept, so the alert lasts until the job is "
        "fixed (a changed declaration replaces and reruns it) or removed from the stack.",
        # A team's jobs run in its namespace, named after the team (infra/namespaces.py).
        {"team": f"{{{{ $labels.{NAMESPACE_LABEL} }}}}"},
    ),
]

STORAGE = [
    Alert(
        "PersistentVolumeNearlyFull",
        "kubelet_volume_stats_available_bytes / kubelet_volume_stats_capacity_bytes < 0.10",
        "15m",
        "warning",
        "{{ $labels.namespace }}/{{ $labels.persistentvolumeclaim }} has under 10% free space",
        "Free space (old model versions, checkpoints) or grow the volume.",
        POD_TEAM,
    ),
]

LOGGING = [
    Alert(
        "LogsDropped",
        # Fluent Bit's own counters, per output.  Records are dropped four ways: retries run out,
        # a flush fails for good, an output without retries fails, and the oldest chunks are
        # evicted when storage.total_limit_size is full (a long outage).  All four add to
        # dropped_records_total; only the first moves retries_failed_total, which also counts a
        # chunk whose record count is unknown (fluent/fluent-bit@v4.1.1:src/flb_engine.c
        # L354-358, L381-395, L467-472; src/flb_input_chunk.c L204-216; both counters start at
        # 0, src/flb_output.c L1270-1284, so the first drop is seen).
        "sum by (namespace, pod, name) (increase(fluentbit_output_dropped_records_total[10m])) > 0"
        " or sum by (namespace, pod, name)"
        " (increase(fluentbit_output_retries_failed_total[10m])) > 0",
        "0m",
        "warning",
        "Fluent Bit {{ $labels.pod }} dropped logs bound for output {{ $labels.name }}",
        "Read the pod's log for the output's errors (credentials, throttling, an unreachable "
        "aggregator; 'cannot be retried' marks a chunk whose retries ran out). Logs buffer on "
        "the node's disk while an output fails; once that buffer (storage.total_limit_size) is "
        "full the oldest chunks are dropped, which Fluent Bit logs only at debug level.",
    ),
]

HEARTBEAT = [
    Alert(
        "Watchdog",
        # Always firing: the dead man's switch.  Alertmanager sends it to the heartbeat receiver
        # every few minutes (infra/alert_routing.py); silence from it means Prometheus, its rule
        # evaluation or Alertmanager is down, or notifications cannot leave the cluster.
        # kube-prometheus-stack's copy of this rule is switched off (infra/monitoring.py).
        "vector(1)",
        "0m",
        "none",
        "The alerting pipeline works: this alert always fires",
        "If the heartbeat service stops receiving it, check Prometheus and Alertmanager in "
        "namespace monitoring (pods, logs, the alertmanager-config Secret) and the receiver's "
        "credentials.",
    ),
]

# Alerts without a `team` label, for the platform's receivers: hardware, the log pipeline, the
# heartbeat.  Every other alert names the team it concerns (a test holds the two apart).
PLATFORM_ALERTS = frozenset({"GpuTooHot", "GpuXidErrors", "LogsDropped", "Watchdog"})

GROUPS = {
    "heartbeat": HEARTBEAT,
    "gpu": GPU,
    "serving": SERVING,
    "training": TRAINING,
    "storage": STORAGE,
    "logging": LOGGING,
}


def rule_groups() -> list[dict[str, Any]]:
    """The `groups` of a Prometheus rule file (and of the PrometheusRule's spec)."""
    return [
        {"name": f"ml-platform.{name}", "rules": [alert.rule() for alert in alerts]}
        for name, alerts in GROUPS.items()
    ]
