"""Dashboards and alert rules: valid JSON, and every query names a metric something emits."""

from __future__ import annotations

import json
import re

import pytest

from harness.render import kubernetes_objects
from inference.metrics import Metrics
from infra import alerts, gpu_cost, training_job_metrics, versions
from infra.dashboards import DASHBOARDS, SIDECAR_LABEL
from tests.conftest import STACKS, stack_run
from tests.upstream_facts import facts

# The DCGM exporter's default counters (NVIDIA/dcgm-exporter etc/default-counters.csv).
DCGM = {
    "DCGM_FI_DEV_GPU_UTIL",
    "DCGM_FI_DEV_FB_USED",
    "DCGM_FI_DEV_FB_FREE",
    "DCGM_FI_DEV_POWER_USAGE",
    "DCGM_FI_DEV_GPU_TEMP",
    "DCGM_FI_DEV_XID_ERRORS",
}
# TF Serving's Prometheus metrics (monitoring.config), kube-state-metrics, kubelet, and the
# training operator's job counters.
TF_SERVING = {":tensorflow:serving:request_count", ":tensorflow:serving:request_latency_bucket"}
KUBE = {
    "kube_pod_container_resource_requests",
    "kube_pod_status_phase",
    "kube_node_status_capacity",
    "kube_node_labels",
    "kubelet_volume_stats_available_bytes",
    "kubelet_volume_stats_capacity_bytes",
}
TRAINING = {"training_operator_jobs_failed_total"}
# kube-state-metrics' custom-resource-state series for the training jobs' conditions
# (infra/training_job_metrics.py; tests/test_monitoring.py derives the name from kube-state-metrics'
# own naming rule at the pinned version).
CUSTOM_RESOURCES = {training_job_metrics.SERIES}
# Fluent Bit's /api/v2/metrics/prometheus (output counters, tests/upstream).
FLUENT_BIT = set(
    facts("fluent-bit-output-metrics", pinned=versions.FLUENT_BIT_VERSION)["counters"].values()
)
PROMQL_WORDS = {
    "sum", "avg", "max", "min", "count", "rate", "increase", "by", "on", "group_left", "or",
    "histogram_quantile", "avg_over_time", "max_over_time", "last_over_time", "le", "e6",
    "unless", "offset", "sum_over_time", "label_replace", "vector", "group_right",
}  # fmt: skip
# The platform's own recorded series (infra/gpu_cost.py).
RECORDED = {gpu_cost.ALLOCATED, gpu_cost.BUSY, gpu_cost.IDLE, gpu_cost.COST, gpu_cost.PRICE}


def _inference_metrics() -> set[str]:
    """Series names the inference API exposes, including labelled families not yet observed."""
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
    names: set[str] = set()
    for family in Metrics().registry.collect():
        names.update(family.name + suffix for suffix in suffixes[family.type])
    return names


KNOWN = DCGM | TF_SERVING | KUBE | TRAINING | CUSTOM_RESOURCES | FLUENT_BIT | _inference_metrics()


def metric_names(expr: str) -> set[str]:
    """Identifiers in a PromQL expression that are neither labels, functions nor keywords."""
    without_strings = re.sub(r'"[^"]*"', "", expr)
    without_matchers = re.sub(r"\{[^}]*\}|\[[^\]]*\]", "", without_strings)
    without_grouping = re.sub(r"\b(by|on|group_left|group_right)\s*\([^)]*\)", "", without_matchers)
    tokens = set(re.findall(r"[:a-zA-Z_][:a-zA-Z0-9_]*", without_grouping))
    return {t for t in tokens if t not in PROMQL_WORDS and not re.fullmatch(r"\d*[smhdw]", t)}


def _queries() -> list[tuple[str, str]]:
    found = []
    for key, dashboard in DASHBOARDS.items():
        for panel in dashboard["panels"]:
            found += [(f"dashboard {key} / {panel['title']}", t["expr"]) for t in panel["targets"]]
    for group in alerts.GROUPS.values():
        # The Watchdog reads no metric on purpose: it always fires (vector(1)).
        found += [(f"alert {a.name}", a.expr) for a in group if a.name != "Watchdog"]
    found += [(f"rule {name}", expr) for name, expr in gpu_cost.EXPRESSIONS.items()]
    return found


def _known(where: str) -> set[str]:
    """Dashboards may read the recorded series too; rules read only what exporters emit."""
    return KNOWN | RECORDED if where.startswith("dashboard") else KNOWN


@pytest.mark.parametrize(("where", "expr"), _queries())
def test_queries_name_only_emitted_metrics(where: str, expr: str) -> None:
    names = metric_names(expr)
    assert names, f"{where}: no metric in {expr!r}"
    known = _known(where)
    assert names <= known, f"{where}: unknown metric(s) {sorted(names - known)}"


def test_the_check_catches_a_misspelt_metric() -> None:
    assert metric_names("sum by (pod) (rate(inference_request_total[5m]))") - KNOWN == {
        "inference_request_total"
    }


@pytest.mark.parametrize("stack", STACKS)
def test_dashboards_ship_as_sidecar_config_maps_of_valid_json(stack: str) -> None:
    maps = [
        o
        for o in kubernetes_objects(stack_run(stack))
        if o["kind"] == "ConfigMap" and o["metadata"].get("labels", {}).get(SIDECAR_LABEL) == "1"
    ]
    assert {m["metadata"]["name"] for m in maps} == {f"dashboard-{key}" for key in DASHBOARDS}
    for config_map in maps:
        [(filename, text)] = config_map["data"].items()
        dashboard = json.loads(text)
        assert filename.endswith(".json")
        assert dashboard["uid"].startswith("ml-platform-")
        assert dashboard["panels"]
        assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])


def test_the_serving_dashboard_shows_shed_requests_as_errors_and_apart() -> None:
    """Shed requests are errors (a 503, TF Serving's UNAVAILABLE) and have a panel of their own,
    from the API's shed counter and TF Serving's count under the status a full queue gets."""
    panels = {
        p["title"]: [t["expr"] for t in p["targets"]] for p in DASHBOARDS["serving"]["panels"]
    }
    shed = panels["Shed per second (queue full)"]
    assert Metrics().shed._name == "inference_requests_shed"
    assert any("inference_requests_shed_total" in expr for expr in shed)
    status = facts("tf-serving-batching", pinned=versions.TF_SERVING_VERSION)["queue_full_status"]
    assert any(f'status="{status}"' in expr for expr in shed)
    errors = panels["Errors per second"]
    api_errors = next(e for e in errors if "inference_requests_total" in e)
    [pattern] = re.findall(r'status=~"([^"]+)"', api_errors)
    assert re.fullmatch(pattern, "503")
    tf_errors = next(e for e in errors if ":tensorflow:serving:request_count" in e)
    assert 'status!="OK"' in tf_errors
