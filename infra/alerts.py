"""Alert rules, defined as data and rendered into PrometheusRule groups.

Each rule names the metric family it watches (DCGM exporter, TF Serving, the inference API,
kube-state-metrics and the training jobs' conditions through it, kubelet, Fluent Bit), carries a
severity, a summary and a runbook line, and is checked by `promtool` in the tests.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from infra import gpu_sharing
from infra.training_job_metrics import KIND_LABEL, NAME_LABEL, NAMESPACE_LABEL, SERIES


@dataclass(frozen=True)
class Alert:
    name: str
    expr: str
    duration: str
    severity: Literal["critical", "warning", "info"]
    summary: str
    runbook: str

    def rule(self) -> dict[str, Any]:
        return {
            "alert": self.name,
            "expr": self.expr,
            "for": self.duration,
            "labels": {"severity": self.severity},
            "annotations": {"summary": self.summary, "runbook": self.runbook},
        }


def _ksm_resource(name: str) -> str:
    """A resource name as kube-state-metrics' `resource` label spells it: every character outside
    [a-zA-Z0-9_] becomes "_" (kubernetes/kube-state-metrics@v2.20.0:internal/store/utils.go
    L38,148-150, applied in internal/store/pod.go L258-286)."""
    return re.sub(r"[^a-zA-Z0-9_]", "_", name)


# Every resource a GPU pool advertises: whole GPUs, time-sliced shares, MIG slices.
GPU_REQUESTS = "|".join(
    [
        _ksm_resource(gpu_sharing.GPU),
        _ksm_resource(gpu_sharing.SHARED_GPU),
        f"{_ksm_resource(gpu_sharing.MIG_PREFIX)}.*",
    ]
)

# dcgm-exporter (4.6.0-4.8.3, as GPU Operator v26.7.0 ships it) names the node `hostname`
# (NVIDIA/dcgm-exporter@d5e5f51:internal/pkg/rendermetrics/render_metrics.go L47; `Hostname`
# before #655).  Its pod/namespace/container labels exist only on GPUs a pod holds through
# nvidia.com/gpu or MIG; time-sliced shares and free GPUs carry none (infra/gpu_operator.py).
GPU = [
    Alert(
        "GpuIdleWhileAllocated",
        # Pods holding a whole GPU or a MIG slice.  Time-sliced pools (prod's serving) are out of
        # scope: the exporter cannot say which of a shared GPU's pods is idle, and a serving
        # pool's GPUs idle at low traffic by design (its minimum replicas).
        'avg_over_time(DCGM_FI_DEV_GPU_UTIL{pod!=""}[30m]) < 5',
        "15m",
        "warning",
        "GPU {{ $labels.gpu }} on {{ $labels.hostname }} is held by {{ $labels.namespace }}/"
        "{{ $labels.pod }} but has been under 5% busy for 30 minutes",
        "A pod holds a GPU it does not use (an idle notebook, a stuck job): the node cannot scale "
        "down. Check the pod; notebooks are culled after kubeflow.notebooks.cullIdleMinutes.",
    ),
    Alert(
        "GpuMemoryNearlyFull",
        "DCGM_FI_DEV_FB_USED / (DCGM_FI_DEV_FB_USED + DCGM_FI_DEV_FB_FREE) > 0.95",
        "10m",
        "warning",
        "GPU {{ $labels.gpu }} on {{ $labels.hostname }} has used over 95% of its memory for 10m",
        "Out-of-memory errors follow. On time-sliced pools check each server's "
        "--per_process_gpu_memory_fraction; otherwise lower the batch size.",
    ),
    Alert(
        "GpuTooHot",
        "DCGM_FI_DEV_GPU_TEMP > 85",
        "5m",
        "critical",
        "GPU {{ $labels.gpu }} on {{ $labels.hostname }} is at {{ $value }} C",
        "The GPU throttles and may fail. Drain the node (kubectl drain) and replace the instance.",
    ),
    Alert(
        "GpuXidErrors",
        # DCGM_FI_DEV_XID_ERRORS holds the last XID and keeps it until the driver resets
        # (etc/dcp-metrics-included.csv; NVIDIA/dcgm-exporter#500), and the exporter copies the
        # value into err_code (internal/pkg/collector/gpu_collector.go L323-331): a new XID is a
        # new series.  So the alert is "this GPU shows an XID it did not show 10 minutes ago",
        # per node and GPU only: the gauge outlives the pod that held the GPU, and the next
        # holder, another team, did not cause it.
        "max by (hostname, gpu, err_code, err_msg) (DCGM_FI_DEV_XID_ERRORS) > 0"
        " unless max by (hostname, gpu, err_code, err_msg) (DCGM_FI_DEV_XID_ERRORS offset 10m)",
        "0m",
        "critical",
        "GPU {{ $labels.gpu }} on {{ $labels.hostname }} reported XID {{ $labels.err_code }} "
        "({{ $labels.err_msg }})",
        "Look the XID up in NVIDIA's XID catalogue; most mean a driver or hardware fault: cordon "
        "and replace the node. The alert lasts 10 minutes per new XID; the same XID again is not "
        "seen until the driver resets (the exporter keeps the last one).",
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
    ),
]

SERVING = [
    Alert(
        "TfServingErrorRate",
        'sum by (namespace, model_name) (rate(:tensorflow:serving:request_count{status!="OK"}[5m]))'
        " / sum by (namespace, model_name) (rate(:tensorflow:serving:request_count[5m])) > 0.05",
        "10m",
        "critical",
        "TF Serving answers over 5% of {{ $labels.model_name }} requests with errors",
        "Check the model's newest version (a bad export?) and the server logs.",
    ),
    Alert(
        "TfServingSlow",
        "histogram_quantile(0.99, sum by (le, namespace, model_name) "
        "(rate(:tensorflow:serving:request_latency_bucket[5m]))) > 100000",
        "10m",
        "warning",
        "TF Serving's p99 latency for {{ $labels.model_name }} is over 100 ms",
        "The servers are saturated: check the HPA's replicas against its maximum and the "
        "batching settings.",
    ),
    Alert(
        "InferenceApiErrorRate",
        'sum by (namespace, service) (rate(inference_requests_total{status=~"5.."}[5m]))'
        " / sum by (namespace, service) (rate(inference_requests_total[5m])) > 0.05",
        "10m",
        "critical",
        "The inference API {{ $labels.service }} fails over 5% of requests",
        "5xx means the server failed, not the client: check /readyz and the logs.",
    ),
    Alert(
        "InferenceApiSlow",
        "histogram_quantile(0.99, sum by (le, namespace, service) "
        '(rate(inference_request_duration_seconds_bucket{route="predict"}[5m]))) > 0.1',
        "10m",
        "warning",
        "The inference API {{ $labels.service }} answers predictions in over 100 ms (p99)",
        "Check replicas against the HPA maximum and --max-batch-size / --batch-timeout-ms.",
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
    ),
]

LOGGING = [
    Alert(
        "LogsDropped",
        # Fluent Bit's own metrics: a chunk whose retries ran out is gone.
        "sum by (namespace, pod, name) (increase(fluentbit_output_retries_failed_total[10m])) > 0",
        "0m",
        "warning",
        "Fluent Bit {{ $labels.pod }} dropped logs: output {{ $labels.name }} kept failing",
        "Read the pod's log for the output's errors (credentials, throttling, an unreachable "
        "aggregator); logs keep buffering on the node's disk meanwhile.",
    ),
]

GROUPS = {
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
