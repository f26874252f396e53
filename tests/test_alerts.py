"""The alert rules: valid for promtool, and firing (or not) on synthetic series as intended."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from inference.metrics import CLIENT_GONE, PREDICTION_ROUTES
from infra import alerts, training_job_metrics, versions
from infra import labels as platform_labels
from tests import custom_resource_state
from tests.promtool import (
    assert_rule_tests_pass,
    expected,
    needs_promtool,
    rule_file,
    run,
    run_rule_tests,
    series,
)
from tests.upstream_facts import facts


@needs_promtool
def test_every_rule_group_passes_promtool_check(tmp_path: Path) -> None:
    result = run("check", "rules", str(rule_file(tmp_path)))
    assert result.returncode == 0, result.stdout + result.stderr
    total = sum(len(group) for group in alerts.GROUPS.values())
    assert f"SUCCESS: {total} rules found" in result.stdout


def test_every_alert_has_severity_summary_and_runbook() -> None:
    for group in alerts.rule_groups():
        for rule in group["rules"]:
            # `none` is the Watchdog's alone: it always fires and is no problem to page for.
            allowed = ("none",) if rule["alert"] == "Watchdog" else ("critical", "warning", "info")
            assert rule["labels"]["severity"] in allowed, rule["alert"]
            assert rule["annotations"]["summary"]
            assert rule["annotations"]["runbook"]


@needs_promtool
def test_gpu_idle_and_error_rate_alerts_fire_only_when_they_should(tmp_path: Path) -> None:
    # The labels dcgm-exporter emits (tests/test_gpu_monitoring.py): `hostname`, and no pod or
    # namespace on a GPU no pod holds.
    idle = {"gpu": "0", "hostname": "node-a", "namespace": "research", "pod": "notebook-0"}
    busy = {"gpu": "1", "hostname": "node-a", "namespace": "research", "pod": "trainer-0"}
    unallocated = {"gpu": "2", "hostname": "node-b"}
    failing = {"namespace": "serving", "service": "inference-mnist"}
    healthy = {"namespace": "serving", "service": "inference-other"}

    test = {
        "input_series": [
            series("DCGM_FI_DEV_GPU_UTIL", idle, "2x60"),
            series("DCGM_FI_DEV_GPU_UTIL", busy, "90x60"),
            series("DCGM_FI_DEV_GPU_UTIL", unallocated, "0x60"),
            series(
                "inference_requests_total",
                {**failing, "route": "predict", "status": "200"},
                "0+100x40",
            ),
            series(
                "inference_requests_total",
                {**failing, "route": "predict", "status": "500"},
                "0+10x40",
            ),
            series(
                "inference_requests_total",
                {**healthy, "route": "predict", "status": "200"},
                "0+1000x40",
            ),
            series(
                "inference_requests_total",
                {**healthy, "route": "predict", "status": "500"},
                "0+1x40",
            ),
        ],
        "alert_rule_test": [
            # Not yet: the window and `for` have not passed.
            {"eval_time": "5m", "alertname": "GpuIdleWhileAllocated", "exp_alerts": []},
            {"eval_time": "5m", "alertname": "InferenceApiErrorRate", "exp_alerts": []},
            # Only the allocated idle GPU, not the busy one or the unallocated one.
            {
                "eval_time": "50m",
                "alertname": "GpuIdleWhileAllocated",
                "exp_alerts": [expected("GpuIdleWhileAllocated", idle)],
            },
            # 9% errors fires; 0.1% does not.
            {
                "eval_time": "30m",
                "alertname": "InferenceApiErrorRate",
                "exp_alerts": [expected("InferenceApiErrorRate", failing)],
            },
        ],
    }
    assert "SUCCESS" in assert_rule_tests_pass(tmp_path, test).stdout


# What Prometheus adds to every series it scrapes from an inference API pod through its
# ServiceMonitor (prometheus-operator's target labels; values made up).
INFERENCE_TARGET = {
    "job": "inference-mnist",
    "namespace": "serving",
    "service": "inference-mnist",
    "endpoint": "http",
    "container": "inference",
}


@needs_promtool
def test_inference_error_rate_is_over_predictions_only(tmp_path: Path) -> None:
    """A quiet model failing 20% of its predictions alerts, whatever else the pods count.

    Per minute: 3 predictions (0.05 rps) of which 0.6 fail with 500, spread over two pods, and
    the readiness probe's /readyz every 10 s on each pod, as servers built before probes went
    uncounted report it (route="readyz"), plus model-status GETs with client errors.
    """
    pods = [
        {**INFERENCE_TARGET, "pod": f"inference-mnist-6c9f-{p}", "instance": f"10.0.1.{i}:8080"}
        for i, p in enumerate(("a", "b"), start=10)
    ]
    inputs = []
    for pod in pods:
        inputs += [
            series("inference_requests_total", {**pod, "route": "predict", "status": "200"},
                   "0+1.2x40"),
            series("inference_requests_total", {**pod, "route": "predict", "status": "500"},
                   "0+0.3x40"),
            series("inference_requests_total", {**pod, "route": "readyz", "status": "200"},
                   "0+6x40"),
            series("inference_requests_total", {**pod, "route": "status", "status": "404"},
                   "0+1x40"),
        ]  # fmt: skip
    labels = {"namespace": "serving", "service": "inference-mnist"}
    test = {
        "input_series": inputs,
        "alert_rule_test": [
            {"eval_time": "5m", "alertname": "InferenceApiErrorRate", "exp_alerts": []},
            {
                "eval_time": "30m",
                "alertname": "InferenceApiErrorRate",
                "exp_alerts": [expected("InferenceApiErrorRate", labels)],
            },
        ],
    }
    assert_rule_tests_pass(tmp_path, test)


def test_inference_error_rate_divides_the_routes_that_predict() -> None:
    [alert] = [a for a in alerts.SERVING if a.name == "InferenceApiErrorRate"]
    routes = set(re.findall(r'route=~"([^"]+)"', alert.expr))
    assert routes == {"|".join(PREDICTION_ROUTES)}, alert.expr


OPERATOR_SCRAPE = facts("prometheus-operator-scrape", pinned=versions.PROMETHEUS_OPERATOR_VERSION)
# The series label a ServiceMonitor's targetLabels makes of the team label on serving's Services.
TEAM_SERIES_LABEL = re.sub(
    OPERATOR_SCRAPE["target_labels"]["invalid_label_chars"], "_", platform_labels.TEAM
)


@needs_promtool
def test_serving_alerts_carry_the_models_team(tmp_path: Path) -> None:
    """Every serving alert is about one team's model: it says which, for routing by team."""
    team = {TEAM_SERIES_LABEL: "research"}
    tfs = {
        **INFERENCE_TARGET,
        **team,
        "job": "tfserving-mnist",
        "service": "tfserving-mnist",
        "container": "tfserving",
        "pod": "tfserving-mnist-7f-a",
        "instance": "10.0.1.9:8501",
    }
    api = {
        **INFERENCE_TARGET,
        **team,
        "pod": "inference-mnist-6c9f-a",
        "instance": "10.0.1.10:8080",
    }
    tfs_latency = {**tfs, "model_name": "mnist", "API": "predict", "entrypoint": "REST"}
    api_latency = {**api, "route": "predict", "status": "200"}
    inputs = [
        series(":tensorflow:serving:request_count", {**tfs, "model_name": "mnist",
               "status": "OK"}, "0+50x40"),
        series(":tensorflow:serving:request_count", {**tfs, "model_name": "mnist",
               "status": "INTERNAL"}, "0+50x40"),
        # Every request between 100 ms and 1 s (microseconds; seconds for the API).
        series(":tensorflow:serving:request_latency_bucket", {**tfs_latency, "le": "100000"},
               "0x40"),
        series(":tensorflow:serving:request_latency_bucket", {**tfs_latency, "le": "1e+06"},
               "0+100x40"),
        series(":tensorflow:serving:request_latency_bucket", {**tfs_latency, "le": "+Inf"},
               "0+100x40"),
        series("inference_requests_total", {**api, "route": "predict", "status": "500"},
               "0+10x40"),
        series("inference_request_duration_seconds_bucket", {**api_latency, "le": "0.1"},
               "0x40"),
        series("inference_request_duration_seconds_bucket", {**api_latency, "le": "1.0"},
               "0+100x40"),
        series("inference_request_duration_seconds_bucket", {**api_latency, "le": "+Inf"},
               "0+100x40"),
        series("inference_model_version", api, "0x40"),
    ]  # fmt: skip
    by_model = {"namespace": "serving", "model_name": "mnist", **team}
    by_service = {"namespace": "serving", "service": "inference-mnist", **team}
    alerted = {
        "TfServingErrorRate": by_model,
        "TfServingSlow": by_model,
        "InferenceApiErrorRate": by_service,
        "InferenceApiSlow": by_service,
        "InferenceModelNotLoaded": api,
    }
    test = {
        "input_series": inputs,
        "alert_rule_test": [
            {
                "eval_time": "30m",
                "alertname": name,
                "exp_alerts": [
                    {
                        **expected(name, labels),
                        "exp_labels": {
                            **expected(name, labels)["exp_labels"],
                            "team": "research",
                        },
                    }
                ],
            }
            for name, labels in alerted.items()
        ],
    }
    assert_rule_tests_pass(tmp_path, test)


@needs_promtool
def test_gpu_idle_leaves_out_gpus_shared_as_nvidia_gpu(tmp_path: Path) -> None:
    """With `renameShared: false` a node advertises its shares as nvidia.com/gpu and the exporter
    maps the shared GPU to one of its pods: the GPU is not that pod's, so no alert names it."""
    capacity = {"resource": "nvidia_com_gpu", "unit": "integer"}
    idle = {"gpu": "0", "hostname": "node-a", "namespace": "research", "pod": "notebook-0"}
    busy = {"gpu": "1", "hostname": "node-a", "namespace": "research", "pod": "trainer-0"}
    shared = {"gpu": "0", "hostname": "node-c", "namespace": "vision", "pod": "notebook-2"}
    test = {
        "input_series": [
            series("DCGM_FI_DEV_GPU_UTIL", idle, "2x60"),
            series("DCGM_FI_DEV_GPU_UTIL", busy, "90x60"),
            series("DCGM_FI_DEV_GPU_UTIL", shared, "2x60"),
            # node-a: two whole GPUs; node-c: one GPU advertised as four shares.
            series("kube_node_status_capacity", {**capacity, "node": "node-a"}, "2x60"),
            series("kube_node_status_capacity", {**capacity, "node": "node-c"}, "4x60"),
        ],
        "alert_rule_test": [
            {
                "eval_time": "50m",
                "alertname": "GpuIdleWhileAllocated",
                "exp_alerts": [expected("GpuIdleWhileAllocated", idle)],
            }
        ],
    }
    assert "SUCCESS" in assert_rule_tests_pass(tmp_path, test).stdout


@needs_promtool
def test_promtool_test_catches_a_wrong_expectation(tmp_path: Path) -> None:
    """A control: the harness above would notice an alert that does not fire."""
    test = {
        "input_series": [
            {
                "series": 'DCGM_FI_DEV_GPU_UTIL{gpu="0", pod="p", namespace="n"}',
                "values": "90x60",
            }
        ],
        "alert_rule_test": [
            {
                "eval_time": "50m",
                "alertname": "GpuIdleWhileAllocated",
                "exp_alerts": [{"exp_labels": {"severity": "warning"}}],
            }
        ],
    }
    assert run_rule_tests(tmp_path, test).returncode != 0


FLUENT_BIT = facts("fluent-bit-output-metrics", pinned=versions.FLUENT_BIT_VERSION)


def _fluent_bit_series(
    labels: dict[str, str], moving: list[str], minutes: int = 40
) -> list[dict[str, str]]:
    """Every output counter of one Fluent Bit pod: 0 from the start (the output sets them), and
    those in `moving` stepping up at minute 20, as one event of that kind makes them."""
    return [
        series(metric, labels, f"0x20 3x{minutes - 20}" if key in moving else f"0x{minutes}")
        for key, metric in FLUENT_BIT["counters"].items()
    ]


@needs_promtool
@pytest.mark.parametrize("drop", sorted(FLUENT_BIT["drops"]))
def test_logs_dropped_fires_for_every_way_fluent_bit_drops_records(
    tmp_path: Path, drop: str
) -> None:
    target = {"namespace": "logging", "pod": "fluent-bit-a"}
    dropping = {**target, FLUENT_BIT["label"]: "cloudwatch_logs.0"}
    retrying = {**target, "pod": "fluent-bit-b", FLUENT_BIT["label"]: "cloudwatch_logs.0"}
    fine = {**target, "pod": "fluent-bit-c", FLUENT_BIT["label"]: "cloudwatch_logs.0"}

    test = {
        "input_series": [
            *_fluent_bit_series(dropping, FLUENT_BIT["drops"][drop]),
            # A scheduled retry loses nothing.
            *_fluent_bit_series(retrying, FLUENT_BIT["not_a_drop"]),
            *_fluent_bit_series(fine, []),
        ],
        "alert_rule_test": [
            {"eval_time": "15m", "alertname": "LogsDropped", "exp_alerts": []},
            {
                "eval_time": "25m",
                "alertname": "LogsDropped",
                "exp_alerts": [expected("LogsDropped", dropping)],
            },
            # Ten minutes after the last drop the window no longer sees it.
            {"eval_time": "35m", "alertname": "LogsDropped", "exp_alerts": []},
        ],
    }
    assert_rule_tests_pass(tmp_path, test)


TRAINER = facts("trainer-job-status", pinned=versions.TRAINING_OPERATOR.ref)
KSM = facts("kube-state-metrics-crs", pinned=versions.KUBE_STATE_METRICS_VERSION)
STACK_CHART = facts(
    "kube-prometheus-stack-chart",
    pinned=f"kube-prometheus-stack-{versions.KUBE_PROMETHEUS_STACK_CHART.version}",
)
# What Prometheus adds to every series it scrapes from kube-state-metrics' target (names as
# prometheus-operator's ServiceMonitor relabelling sets them; values made up).  With honorLabels
# (kube-prometheus-stack's setting for kube-state-metrics) the series' own `namespace` wins.
KSM_TARGET = {
    "job": "kube-state-metrics",
    "instance": "10.0.3.17:8080",
    "namespace": "monitoring",
    "service": "prometheus-stack-kube-state-metrics",
    "pod": "prometheus-stack-kube-state-metrics-7d9c8-x2x9q",
    "container": "kube-state-metrics",
    "endpoint": "http",
}


def _scraped(labels: dict[str, str]) -> dict[str, str]:
    assert STACK_CHART["kube_state_metrics_honor_labels"] is True
    return {**KSM_TARGET, **labels}


def _job(
    kind: str, namespace: str, name: str, conditions: list[tuple[str, str, str]]
) -> dict[str, Any]:
    """A TFJob/PyTorchJob as the API server holds it: the fields the trainer fixture lists."""
    return {
        "apiVersion": f"{TRAINER['group']}/{TRAINER['version']}",
        "kind": kind,
        "metadata": {"name": name, "namespace": namespace},
        "status": {
            "conditions": [
                {"type": t, "status": s, "reason": f"{kind}{r}", "message": "..."}
                for t, s, r in conditions
            ]
        },
    }


def _job_series(
    kind: str, before: dict[str, Any], after: dict[str, Any], change_at: int, minutes: int
) -> list[dict[str, str]]:
    """promtool input series for one job: its state `before`, then `after` from `change_at`."""
    [resource] = [
        r
        for r in training_job_metrics.custom_resource_state_config()["spec"]["resources"]
        if r["groupVersionKind"]["kind"] == kind
    ]
    samples: dict[str, dict[int, float]] = {}
    keys: dict[str, tuple[str, dict[str, str]]] = {}
    for minute in range(minutes + 1):
        obj = before if minute < change_at else after
        for name, labels, value in custom_resource_state.emitted(resource, obj, KSM):
            key = name + repr(sorted(labels.items()))
            keys[key] = (name, labels)
            samples.setdefault(key, {})[minute] = value
    return [
        series(
            keys[key][0],
            _scraped(keys[key][1]),
            " ".join(f"{by_minute[m]:g}" if m in by_minute else "_" for m in range(minutes + 1)),
        )
        for key, by_minute in samples.items()
    ]


@needs_promtool
def test_training_job_failed_fires_for_every_way_a_job_fails(tmp_path: Path) -> None:
    """Series as kube-state-metrics gives them for jobs that fail (or succeed) at minute 10."""
    reasons = TRAINER["reasons"]
    started = [(t, "True", reasons[t]) for t in TRAINER["started"]]

    def finished(condition: str) -> list[tuple[str, str, str]]:
        running = TRAINER["running_on_finish"]
        return [
            *[(t, running if t == "Running" else s, r) for t, s, r in started],
            (condition, "True", reasons[condition]),
        ]

    # Backoff limit and deadline above all: the ways our OnFailure jobs fail.
    assert {"backoff_limit", "active_deadline"} <= set(TRAINER["failures"])
    kinds = list(TRAINER["kinds"])
    failing = [
        (kinds[i % len(kinds)], f"team-{i}", f"job-{path.replace('_', '-')}")
        for i, path in enumerate(TRAINER["failures"])
    ]
    succeeding = [(kind, "research", f"done-{kind.lower()}") for kind in kinds]
    inputs: list[dict[str, str]] = []
    for kind, namespace, name in failing:
        inputs += _job_series(
            kind,
            _job(kind, namespace, name, started),
            _job(kind, namespace, name, finished("Failed")),
            change_at=10,
            minutes=40,
        )
    for kind, namespace, name in succeeding:
        inputs += _job_series(
            kind,
            _job(kind, namespace, name, started),
            _job(kind, namespace, name, finished(TRAINER["success"])),
            change_at=10,
            minutes=40,
        )

    def fired(kind: str, namespace: str, name: str) -> dict[str, Any]:
        return expected(
            "TrainingJobFailed",
            {
                training_job_metrics.NAMESPACE_LABEL: namespace,
                training_job_metrics.KIND_LABEL: kind,
                training_job_metrics.NAME_LABEL: name,
            },
        )

    test = {
        "input_series": inputs,
        "alert_rule_test": [
            # Running: nothing.
            {"eval_time": "5m", "alertname": "TrainingJobFailed", "exp_alerts": []},
            # Failed: each failed job once, with its team's namespace; succeeded jobs never.
            {
                "eval_time": "12m",
                "alertname": "TrainingJobFailed",
                "exp_alerts": [fired(*job) for job in failing],
            },
            {
                "eval_time": "40m",
                "alertname": "TrainingJobFailed",
                "exp_alerts": [fired(*job) for job in failing],
            },
        ],
    }
    assert_rule_tests_pass(tmp_path, test)


@needs_promtool
def test_shed_requests_count_as_errors_and_abandoned_ones_do_not(tmp_path: Path) -> None:
    """Under overload the API sheds 10% of predictions with 503 (inference_requests_total and
    inference_requests_shed_total both count them): InferenceApiErrorRate fires.  Requests whose
    clients went away (counted as 499, never sent) are not the server's errors: alone, they do
    not make it fire."""
    overloaded = {**INFERENCE_TARGET, "pod": "inference-mnist-6c9f-a", "instance": "10.0.1.10:8080"}
    abandoned = {**overloaded, "service": "inference-other", "pod": "inference-other-1"}
    inputs = [
        series("inference_requests_total", {**overloaded, "route": "predict", "status": "200"},
               "0+540x40"),
        series("inference_requests_total", {**overloaded, "route": "predict", "status": "503"},
               "0+60x40"),
        series("inference_requests_shed_total", {**overloaded, "route": "predict"}, "0+60x40"),
        series("inference_requests_total", {**abandoned, "route": "predict", "status": "200"},
               "0+540x40"),
        series("inference_requests_total",
               {**abandoned, "route": "predict", "status": str(CLIENT_GONE)}, "0+60x40"),
    ]  # fmt: skip
    labels = {"namespace": "serving", "service": "inference-mnist"}
    test = {
        "input_series": inputs,
        "alert_rule_test": [
            {
                "eval_time": "30m",
                "alertname": "InferenceApiErrorRate",
                "exp_alerts": [expected("InferenceApiErrorRate", labels)],
            },
        ],
    }
    assert_rule_tests_pass(tmp_path, test)
