"""Grafana dashboards for GPUs, GPU cost and serving, as ConfigMaps the Grafana sidecar loads."""

from __future__ import annotations

import json
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from infra import gpu_cost, labels, names

SIDECAR_LABEL = "grafana_dashboard"


def _panel(title: str, queries: list[tuple[str, str]], unit: str, index: int) -> dict[str, Any]:
    return {
        "id": index + 1,
        "type": "timeseries",
        "title": title,
        "datasource": {"type": "prometheus", "uid": "prometheus"},
        "gridPos": {"h": 8, "w": 12, "x": (index % 2) * 12, "y": (index // 2) * 8},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "targets": [
            {"refId": chr(ord("A") + n), "expr": expr, "legendFormat": legend}
            for n, (expr, legend) in enumerate(queries)
        ],
    }


def _dashboard(
    uid: str, title: str, panels: list[tuple[str, list[tuple[str, str]], str]]
) -> dict[str, Any]:
    return {
        "uid": uid,
        "title": title,
        "tags": ["ml-platform"],
        "timezone": "browser",
        "schemaVersion": 39,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "panels": [_panel(t, q, u, i) for i, (t, q, u) in enumerate(panels)],
    }


TFS_REQUESTS = ":tensorflow:serving:request_count"
TFS_LATENCY = ":tensorflow:serving:request_latency_bucket"  # microseconds
# The status TF Serving counts a request under when its batch queue is full
# (tests/upstream/tf-serving-batching.yaml).
TFS_QUEUE_FULL = "UNAVAILABLE"
API_LATENCY = 'inference_request_duration_seconds_bucket{route="predict"}'


def _quantile(q: float, buckets: str) -> str:
    return f"histogram_quantile({q}, sum by (le) (rate({buckets}[5m])))"


GPU_DASHBOARD = _dashboard(
    "ml-platform-gpus",
    "ML platform / GPUs",
    [
        (
            "GPU utilisation by pod",
            # Only GPUs a pod holds carry pod labels (infra/gpu_operator.py); the rest would be
            # one unnamed line.
            [('avg by (namespace, pod) (DCGM_FI_DEV_GPU_UTIL{pod!=""})', "{{namespace}}/{{pod}}")],
            "percent",
        ),
        (
            "GPU utilisation by node",
            [("avg by (hostname) (DCGM_FI_DEV_GPU_UTIL)", "{{hostname}}")],
            "percent",
        ),
        (
            "GPU memory used",
            [("sum by (hostname, gpu) (DCGM_FI_DEV_FB_USED)", "{{hostname}} gpu {{gpu}}")],
            # DCGM_FI_DEV_FB_USED is in MiB (NVIDIA/dcgm-exporter etc/dcp-metrics-included.csv):
            # Grafana's mebibytes (grafana/grafana packages/grafana-data/src/valueFormats/
            # categories.ts), not decmbytes (SI megabytes).
            "mbytes",
        ),
        ("Power", [("sum by (hostname) (DCGM_FI_DEV_POWER_USAGE)", "{{hostname}}")], "watt"),
        (
            "Temperature",
            [("max by (hostname, gpu) (DCGM_FI_DEV_GPU_TEMP)", "{{hostname}} gpu {{gpu}}")],
            "celsius",
        ),
        (
            "Idle GPUs held by pods",
            [('count(avg_over_time(DCGM_FI_DEV_GPU_UTIL{pod!=""}[30m]) < 5)', "idle, allocated")],
            "short",
        ),
    ],
)

SERVING_DASHBOARD = _dashboard(
    "ml-platform-serving",
    "ML platform / serving",
    [
        (
            "Requests per second",
            [
                (
                    "sum by (model_name) (rate(:tensorflow:serving:request_count[5m]))",
                    "TF Serving {{model_name}}",
                ),
                ("sum by (service) (rate(inference_requests_total[5m]))", "API {{service}}"),
            ],
            "reqps",
        ),
        (
            "Errors per second",
            [
                (
                    f'sum by (model_name) (rate({TFS_REQUESTS}{{status!="OK"}}[5m]))',
                    "TF Serving {{model_name}}",
                ),
                (
                    'sum by (service) (rate(inference_requests_total{status=~"[45].."}[5m]))',
                    "API {{service}}",
                ),
            ],
            "reqps",
        ),
        (
            # Requests turned away because they could not start in time: counted in the errors
            # above too, shown apart because the fix is capacity (replicas), not the model.
            # TF Serving answers a full batch queue UNAVAILABLE (workloads/serving.py
            # batching_parameters); the API counts its 503s in inference_requests_shed_total.
            "Shed per second (queue full)",
            [
                (
                    f'sum by (model_name) (rate({TFS_REQUESTS}{{status="{TFS_QUEUE_FULL}"}}[5m]))',
                    "TF Serving {{model_name}}",
                ),
                ("sum by (service) (rate(inference_requests_shed_total[5m]))", "API {{service}}"),
            ],
            "reqps",
        ),
        (
            "Latency (p50, p99)",
            [
                (_quantile(0.5, API_LATENCY), "API p50"),
                (_quantile(0.99, API_LATENCY), "API p99"),
                (f"{_quantile(0.99, TFS_LATENCY)} / 1e6", "TF Serving p99"),
            ],
            "s",
        ),
        (
            "Batch size (mean)",
            [
                (
                    "sum(rate(inference_batch_size_sum[5m]))"
                    " / sum(rate(inference_batch_size_count[5m]))",
                    "API",
                )
            ],
            "short",
        ),
        (
            "Model version in service",
            [("max by (service) (inference_model_version)", "{{service}}")],
            "none",
        ),
    ],
)

# Grafana unit ids (grafana/grafana packages/grafana-data/src/valueFormats/categories.ts:
# "Dollars ($)" is currencyUSD; valueFormats.ts getValueFormat: an unknown id "suffix:<text>" is
# the value, a space and <text>: toFixedUnit adds the space, so <text> starts without one).
# Grafana has no GPU-hour unit.
USD = "currencyUSD"
GPU_HOURS = "suffix:GPU h"


def _over_range(series: str, by: str) -> str:
    """The total of a per-hour series over the dashboard's time range: its value each minute
    (a 1-minute subquery, whatever the rules' evaluation interval), summed, over 60."""
    return f"sum by ({by}) (sum_over_time({series}[$__range:1m])) / 60"


def _range_panel(title: str, expr: str, legend: str, unit: str, index: int) -> dict[str, Any]:
    """A bar gauge of one total per team or pool over the time range (one instant query).

    Grafana (tests/upstream/grafana-panels.yaml, read on main, not at the release chart 12.11.1
    runs): panel id `bargauge` (public/app/plugins/panel/bargauge/plugin.json), its options
    `displayMode` and `orientation` (panelcfg.cue L28-34; enums in packages/grafana-schema/src/
    common/mudball.cue); a Prometheus target's `instant` runs one query at the range's end, and
    `$__range` becomes the range in whole seconds, e.g. `604800s` (pkg/promlib/models/query.go
    PrometheusQueryProperties, InterpolateVariables).
    """
    panel = _panel(title, [(expr, legend)], unit, index)
    panel["type"] = "bargauge"
    panel["targets"][0]["instant"] = True
    panel["options"] = {"orientation": "horizontal", "displayMode": "basic"}
    return panel


_COST_PANELS = [
    ("Cost by team", _over_range(gpu_cost.COST, "namespace"), "{{namespace}}", USD),
    ("Cost by pool", _over_range(gpu_cost.COST, "pool"), "{{pool}}", USD),
    ("Idle GPU hours by team", _over_range(gpu_cost.IDLE, "namespace"), "{{namespace}}", GPU_HOURS),
    ("Idle GPU hours by pool", _over_range(gpu_cost.IDLE, "pool"), "{{pool}}", GPU_HOURS),
    (
        "Allocated GPU hours by team and pool",
        _over_range(gpu_cost.ALLOCATED, "namespace, pool"),
        "{{namespace}} / {{pool}}",
        GPU_HOURS,
    ),
    (
        "Busy GPU hours by team and pool",
        _over_range(gpu_cost.BUSY, "namespace, pool"),
        "{{namespace}} / {{pool}}",
        GPU_HOURS,
    ),
]

GPU_COST_DASHBOARD = {
    **_dashboard("ml-platform-gpu-cost", "ML platform / GPU cost", []),
    "time": {"from": "now-7d", "to": "now"},
    "refresh": "5m",
    "panels": [
        *(_range_panel(t, e, legend, u, i) for i, (t, e, legend, u) in enumerate(_COST_PANELS)),
        _panel(
            "Cost per hour by team",
            [(f"sum by (namespace) ({gpu_cost.COST})", "{{namespace}}")],
            USD,
            len(_COST_PANELS),
        ),
        _panel(
            "Idle GPUs by team",
            [(f"sum by (namespace) ({gpu_cost.IDLE})", "{{namespace}}")],
            "short",
            len(_COST_PANELS) + 1,
        ),
    ],
}

DASHBOARDS = {"gpus": GPU_DASHBOARD, "serving": SERVING_DASHBOARD, "gpu-cost": GPU_COST_DASHBOARD}


class Dashboards(pulumi.ComponentResource):
    def __init__(
        self, name: str, *, after: list[pulumi.Resource], opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("ml-platform:monitoring:Dashboards", name, None, opts)
        for key, dashboard in DASHBOARDS.items():
            k8s.core.v1.ConfigMap(
                f"{name}-{key}",
                metadata=k8s.meta.v1.ObjectMetaArgs(
                    name=f"dashboard-{key}",
                    namespace=names.MONITORING,
                    labels={**labels.common("monitoring"), SIDECAR_LABEL: "1"},
                ),
                data={f"{key}.json": json.dumps(dashboard, indent=2, sort_keys=True)},
                opts=pulumi.ResourceOptions(parent=self, depends_on=after),
            )
        self.register_outputs({"dashboards": sorted(DASHBOARDS)})
