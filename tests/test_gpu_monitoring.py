"""The GPU alerts and panels, on series shaped as the pinned exporters emit them and Prometheus
stores them: dcgm-exporter as the GPU Operator runs it, scraped through the ServiceMonitor the
program configures, and kube-state-metrics' pod resource requests."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from harness.program import raw_settings
from infra import alerts, gpu_sharing, versions
from infra.dashboards import GPU_DASHBOARD
from infra.gpu_operator import operator_values
from infra.settings import parse_settings
from tests.gpu_series import DCGM, DCGM_TARGET, GPU_OPERATOR, SERVICE_MONITOR
from tests.promtool import (
    assert_rule_tests_pass,
    expand,
    expected,
    needs_promtool,
    series,
)
from tests.upstream_facts import facts

KSM = facts("kube-state-metrics-pod-resources", pinned=versions.KUBE_STATE_METRICS_VERSION)
GRAFANA = facts("grafana-units", pinned=versions.KUBE_PROMETHEUS_STACK_GRAFANA_CHART)
# The labels Prometheus gives the exporter's target: the exporter's own pod in gpu-system.
EXPORTER_TARGET = DCGM_TARGET
assert set(EXPORTER_TARGET) == set(SERVICE_MONITOR["target_labels"])


def _exporter_values() -> dict[str, Any]:
    """prod's dcgmExporter values: the stack with a time-sliced (serving) pool."""
    values: dict[str, Any] = operator_values(parse_settings(raw_settings("prod"), "prod"))[
        "dcgmExporter"
    ]
    return values


def _maps_to_pod(resource: str) -> bool:
    """Whether the exporter, as configured, links a GPU of this resource to its pod."""
    extra = {
        name.strip()
        for env in _exporter_values().get("env", [])
        if env["name"] == DCGM["resource_names_env"]
        for name in env["value"].split(",")
    }
    return (
        resource in DCGM["mapped_resources"]
        or resource.startswith(tuple(DCGM["mapped_resource_prefixes"]))
        or resource in extra
    )


def gpu(node: str, index: int, held_by: tuple[str, str, str, str] | None = None) -> dict[str, str]:
    """One GPU's labels as Prometheus stores them.  `held_by`: (resource, namespace, pod,
    container) of the container the kubelet gave it to, if any."""
    exporter = {
        "gpu": str(index),
        "UUID": f"GPU-{node}-{index}",
        "pci_bus_id": f"00000000:00:1{index}.0",
        "device": f"nvidia{index}",
        "modelName": "NVIDIA A10G",
        "hostname": node,
    }
    assert set(exporter) == set(DCGM["gpu_labels"])
    if held_by is not None and _maps_to_pod(held_by[0]):
        holder = dict(zip(("namespace", "pod", "container"), held_by[1:], strict=True))
        assert set(holder) == set(DCGM["pod_labels"])
        exporter.update(holder)
    return _scraped(exporter)


def _scraped(exporter: dict[str, str]) -> dict[str, str]:
    """The exporter's labels after the scrape: target relabelling, then honorLabels."""
    monitor = _exporter_values()["serviceMonitor"]
    assert SERVICE_MONITOR["endpoint_relabelings_after_target_labels"] is True
    target = dict(EXPORTER_TARGET)
    for relabel in monitor.get("relabelings", []):
        assert relabel["action"] == "labeldrop", "this model applies labeldrop only"
        target = {k: v for k, v in target.items() if not re.fullmatch(relabel["regex"], k)}
    if monitor.get("honorLabels", GPU_OPERATOR["honor_labels_default"]):
        return {**target, **exporter}
    renamed = {(f"exported_{k}" if k in target else k): v for k, v in exporter.items()}
    return {**renamed, **target}


def _alert(name: str) -> alerts.Alert:
    [alert] = [a for a in alerts.GPU if a.name == name]
    return alert


# A notebook idling on a whole GPU, a busy trainer, a GPU nobody holds, and a time-sliced GPU
# TF Serving holds a share of (prod's serving pool).
NOTEBOOK = gpu("node-a", 0, (gpu_sharing.GPU, "research", "notebook-0", "notebook"))
TRAINER = gpu("node-a", 1, (gpu_sharing.GPU, "research", "trainer-0", "tensorflow"))
FREE = gpu("node-b", 0)
SHARED = gpu("node-c", 0, (gpu_sharing.SHARED_GPU, "serving", "tfserving-mnist-5d9f", "tfs"))


@pytest.mark.parametrize("name", ["GpuIdleWhileAllocated", "GpuMemoryNearlyFull", "GpuTooHot"])
def test_gpu_alert_summaries_name_the_node(name: str) -> None:
    assert "on node-a " in expand(_alert(name).summary, NOTEBOOK)


def test_xid_summary_names_the_node_and_the_xid() -> None:
    labels = {"hostname": "node-a", "gpu": "0", "err_code": "79", "err_msg": "fallen off bus"}
    summary = expand(_alert("GpuXidErrors").summary, labels)
    assert "on node-a " in summary
    assert "XID 79 " in summary


def test_unallocated_and_shared_gpus_carry_no_pod() -> None:
    """What the exporter does not map keeps no holder, not the exporter's own pod."""
    assert NOTEBOOK["pod"] == "notebook-0"
    assert NOTEBOOK["namespace"] == "research"
    for labels in (FREE, SHARED):
        assert not {"pod", "namespace", "container"} & set(labels), labels


@needs_promtool
def test_gpu_idle_fires_only_for_gpus_a_pod_holds(tmp_path: Path) -> None:
    assert_rule_tests_pass(
        tmp_path,
        {
            "input_series": [
                series("DCGM_FI_DEV_GPU_UTIL", NOTEBOOK, "2x60"),
                series("DCGM_FI_DEV_GPU_UTIL", TRAINER, "90x60"),
                series("DCGM_FI_DEV_GPU_UTIL", FREE, "0x60"),
                series("DCGM_FI_DEV_GPU_UTIL", SHARED, "0x60"),
            ],
            "alert_rule_test": [
                {"eval_time": "5m", "alertname": "GpuIdleWhileAllocated", "exp_alerts": []},
                {
                    "eval_time": "50m",
                    "alertname": "GpuIdleWhileAllocated",
                    "exp_alerts": [expected("GpuIdleWhileAllocated", NOTEBOOK)],
                },
            ],
        },
    )


def _ksm(namespace: str, pod: str, resource: str) -> list[dict[str, str]]:
    """kube-state-metrics' series for a Pending pod requesting one `resource`."""
    sanitised = re.sub(KSM["resource_invalid_chars"], KSM["resource_replacement"], resource)
    target = {"job": "kube-state-metrics", "instance": "10.0.3.17:8080"}
    request = {
        "namespace": namespace,
        "pod": pod,
        "uid": f"uid-{pod}",
        "container": "main",
        "node": "",
        "resource": sanitised,
        "unit": "integer",
    }
    assert set(request) == set(KSM["requests_labels"])
    phase = {"namespace": namespace, "pod": pod, "uid": f"uid-{pod}"}
    return [
        series("kube_pod_container_resource_requests", {**target, **request}, "1x30"),
        series("kube_pod_status_phase", {**target, **phase, "phase": "Pending"}, "1x30"),
        series("kube_pod_status_phase", {**target, **phase, "phase": "Running"}, "0x30"),
    ]


@needs_promtool
def test_gpu_pods_pending_sees_every_gpu_resource(tmp_path: Path) -> None:
    waiting = {
        gpu_sharing.GPU: ("research", "trainer-worker-0"),
        gpu_sharing.SHARED_GPU: ("serving", "tfserving-mnist-7c4b"),
        f"{gpu_sharing.MIG_PREFIX}1g.10gb": ("vision", "notebook-1"),
    }
    assert all(gpu_sharing.is_gpu_resource(r) for r in waiting)
    inputs = [s for r, (ns, pod) in waiting.items() for s in _ksm(ns, pod, r)]
    # A pod waiting for CPU only is not a GPU alert.
    inputs += _ksm("research", "cpu-only", "cpu")
    assert_rule_tests_pass(
        tmp_path,
        {
            "input_series": inputs,
            "alert_rule_test": [
                {
                    "eval_time": "20m",
                    "alertname": "GpuPodsPending",
                    "exp_alerts": [
                        expected("GpuPodsPending", {"namespace": ns, "pod": pod})
                        for ns, pod in waiting.values()
                    ],
                }
            ],
        },
    )


@needs_promtool
def test_xid_alert_fires_once_per_new_xid_and_never_for_the_next_holder(tmp_path: Path) -> None:
    """The exporter labels the field's value as err_code: a new XID is a new series, and the
    value stays until the exporter restarts (dcgm-exporter fixture)."""

    def xid(labels: dict[str, str], code: int) -> dict[str, str]:
        value_labels = {"err_code": str(code), "err_msg": "Unknown Error" if code else "No Error"}
        assert list(value_labels) == DCGM["xid_value_labels"]
        return {**labels, **value_labels}

    trainer = gpu("node-a", 0, (gpu_sharing.GPU, "research", "trainer-0", "tensorflow"))
    next_team = gpu("node-a", 0, (gpu_sharing.GPU, "vision", "trainer-1", "tensorflow"))
    other = gpu("node-b", 0)
    metric = "DCGM_FI_DEV_XID_ERRORS"
    fired = {"hostname": "node-a", "gpu": "0", "err_code": "79", "err_msg": "Unknown Error"}
    assert_rule_tests_pass(
        tmp_path,
        {
            # XID 79 at minute 20 while research holds the GPU; vision gets it at minute 60 and
            # the gauge still says 79; another node never has one.
            "input_series": [
                series(metric, xid(trainer, 0), "0x19"),
                series(metric, xid(trainer, 79), "_x19 79x40"),
                series(metric, xid(next_team, 79), "_x60 79x300"),
                series(metric, xid(other, 0), "0x360"),
            ],
            "alert_rule_test": [
                {"eval_time": "15m", "alertname": "GpuXidErrors", "exp_alerts": []},
                {
                    "eval_time": "22m",
                    "alertname": "GpuXidErrors",
                    "exp_alerts": [expected("GpuXidErrors", fired)],
                },
                {"eval_time": "45m", "alertname": "GpuXidErrors", "exp_alerts": []},
                {"eval_time": "62m", "alertname": "GpuXidErrors", "exp_alerts": []},
                {"eval_time": "300m", "alertname": "GpuXidErrors", "exp_alerts": []},
            ],
        },
    )


@needs_promtool
def test_xid_alert_does_not_fire_again_after_a_failed_scrape_or_a_gap(tmp_path: Path) -> None:
    """A failed scrape writes stale markers for the target's series (Prometheus 3.14
    scrape.go), and an outage leaves a gap longer than the lookback: neither makes a standing
    XID look new."""
    labels = {**gpu("node-a", 0), "err_code": "43", "err_msg": "Unknown Error"}
    metric = "DCGM_FI_DEV_XID_ERRORS"
    assert_rule_tests_pass(
        tmp_path,
        {
            # XID 43 since minute 0 on both GPUs; one scrape fails at minute 101 on the first,
            # the second's exporter is away for 10 minutes from minute 101.
            "input_series": [
                series(metric, labels, "43x100 stale 43x200"),
                series(metric, {**labels, "hostname": "node-b"}, "43x100 _x10 43x200"),
            ],
            "alert_rule_test": [
                {"eval_time": "111m", "alertname": "GpuXidErrors", "exp_alerts": []},
                {"eval_time": "115m", "alertname": "GpuXidErrors", "exp_alerts": []},
                {"eval_time": "121m", "alertname": "GpuXidErrors", "exp_alerts": []},
            ],
        },
    )


def _panel(title: str) -> dict[str, Any]:
    panels: list[dict[str, Any]] = GPU_DASHBOARD["panels"]
    [panel] = [p for p in panels if p["title"] == title]
    return panel


@needs_promtool
def test_gpu_panels_keep_nodes_apart_and_count_only_held_gpus(tmp_path: Path) -> None:
    node_a = gpu("node-a", 0)
    node_b = gpu("node-b", 0)

    def query(title: str) -> str:
        [target] = _panel(title)["targets"]
        expr: str = target["expr"]
        return expr

    assert_rule_tests_pass(
        tmp_path,
        {
            "input_series": [
                series("DCGM_FI_DEV_FB_USED", node_a, "20000x40"),
                series("DCGM_FI_DEV_FB_USED", node_b, "3000x40"),
                series("DCGM_FI_DEV_GPU_TEMP", node_a, "80x40"),
                series("DCGM_FI_DEV_GPU_TEMP", node_b, "40x40"),
                series("DCGM_FI_DEV_GPU_UTIL", NOTEBOOK, "2x40"),
                series("DCGM_FI_DEV_GPU_UTIL", FREE, "0x40"),
                series("DCGM_FI_DEV_GPU_UTIL", SHARED, "0x40"),
            ],
            "promql_expr_test": [
                {
                    "expr": query("GPU memory used"),
                    "eval_time": "35m",
                    "exp_samples": [
                        {"labels": '{hostname="node-a", gpu="0"}', "value": 20000},
                        {"labels": '{hostname="node-b", gpu="0"}', "value": 3000},
                    ],
                },
                {
                    "expr": query("Temperature"),
                    "eval_time": "35m",
                    "exp_samples": [
                        {"labels": '{hostname="node-a", gpu="0"}', "value": 80},
                        {"labels": '{hostname="node-b", gpu="0"}', "value": 40},
                    ],
                },
                {
                    "expr": query("Idle GPUs held by pods"),
                    "eval_time": "35m",
                    "exp_samples": [{"labels": "{}", "value": 1}],
                },
                {
                    "expr": query("GPU utilisation by pod"),
                    "eval_time": "35m",
                    "exp_samples": [
                        {"labels": '{namespace="research", pod="notebook-0"}', "value": 2},
                    ],
                },
            ],
        },
    )


def test_gpu_panels_group_by_labels_the_exporter_emits() -> None:
    emitted = set(DCGM["gpu_labels"]) | set(DCGM["pod_labels"])
    for panel in GPU_DASHBOARD["panels"]:
        for target in panel["targets"]:
            grouped = {
                label.strip()
                for labels in re.findall(r"\bby \(([^)]*)\)", target["expr"])
                for label in labels.split(",")
            }
            assert grouped <= emitted, (panel["title"], grouped - emitted)
            legend = set(re.findall(r"\{\{(\w+)\}\}", target["legendFormat"]))
            assert legend <= emitted, (panel["title"], legend - emitted)


def test_gpu_memory_panel_unit_is_mebibytes() -> None:
    assert DCGM["fields"]["DCGM_FI_DEV_FB_USED"]["unit"] == "MiB"
    assert _panel("GPU memory used")["fieldConfig"]["defaults"]["unit"] == GRAFANA["units"]["MiB"]
