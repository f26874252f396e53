"""Before a model's first version: the stack comes up, the servers wait, nothing gets traffic.

On a new stack the training job that exports a model's first version runs in the same
`pulumi up` that creates its servers, so the servers start with an empty base path.  TF Serving
cannot be run here: its rendered probes and annotations are checked against what its source says
it does before a version loads (tests/upstream/tf-serving-first-version.yaml).  The inference API
is run for real on loopback with an empty model directory, probed the way its rendered
Deployment probes it, and then given a version.
"""

from __future__ import annotations

import importlib.metadata
import re
import shutil
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from harness.program import stack_config
from harness.render import kubernetes_objects
from harness.schema import definitions
from infra import versions
from tests.conftest import stack_run
from tests.promtool import (
    assert_rule_tests_pass,
    expected,
    needs_promtool,
    series,
)
from tests.servers import Running
from tests.test_serving import _objects, _one
from tests.upstream_facts import facts

SERVING_STACKS = ["dev", "prod"]
TF_SERVING = facts("tf-serving-first-version", pinned=versions.TF_SERVING_VERSION)
STACK_CHART = facts(
    "kube-prometheus-stack-chart",
    pinned=f"kube-prometheus-stack-{versions.KUBE_PROMETHEUS_STACK_CHART.version}",
)
OPERATOR_SCRAPE = facts("prometheus-operator-scrape", pinned=versions.PROMETHEUS_OPERATOR_VERSION)
KUBERNETES_SD = facts("prometheus-kubernetes-sd", pinned=STACK_CHART["prometheus_version"])
AWAIT = facts("pulumi-kubernetes-await", pinned=importlib.metadata.version("pulumi-kubernetes"))
DEPLOYMENTS = ("tfserving-mnist", "inference-mnist")
# The least time a server may wait for its first version without being restarted.
WEEK_S = 7 * 24 * 3600


def _container(objects: list[dict[str, Any]], name: str) -> dict[str, Any]:
    [container] = _one(objects, "Deployment", name)["spec"]["template"]["spec"]["containers"]
    assert isinstance(container, dict)
    return container


def _window(probe: dict[str, Any]) -> int:
    """How long a failing probe runs before the kubelet acts (defaults: 10 s, 3 failures)."""
    return int(probe.get("periodSeconds", 10)) * int(probe.get("failureThreshold", 3))


@pytest.mark.parametrize("stack", SERVING_STACKS)
def test_tf_serving_waits_for_its_first_version_without_restarts(stack: str) -> None:
    """TF Serving opens no port before a version loads and waits for one without limit, so any
    probe would fail until then: the startup probe, which holds liveness back, must outlast a
    first training rather than restart the server every few minutes."""
    assert TF_SERVING["ports_open_after_first_version"] is True
    assert TF_SERVING["first_version_wait"] == "unbounded"
    assert TF_SERVING["no_version_is_fatal"] is False
    container = _container(_objects(stack), "tfserving-mnist")
    startup = container["startupProbe"]
    assert _window(startup) >= WEEK_S, f"restarted after {_window(startup)} s without a version"
    # A broken first version ends the process itself, after the manager's retries, well inside
    # that window: the kubelet restarts it rather than killing it mid-retry.
    assert TF_SERVING["failed_first_load"] == "the server exits"
    retrying = TF_SERVING["load_retries"] * TF_SERVING["load_retry_interval_seconds"]
    assert _window(startup) > retrying
    # Liveness connects to the port too: only the startup probe keeps it from running early.
    assert "tcpSocket" in container["livenessProbe"] or "grpc" in container["livenessProbe"]
    # Nothing routes to a server without a version: readiness asks for the loaded model.
    assert container["readinessProbe"]["grpc"]["service"] == "PredictionService"
    # No flag bounds the wait or makes a missing version fatal.
    flags = {arg.removeprefix("--").partition("=")[0] for arg in container["args"]}
    assert not flags & {"fail_if_no_model_versions_found", "servable_versions_always_present"}


@pytest.mark.parametrize("stack", SERVING_STACKS)
def test_pulumi_up_does_not_wait_for_a_first_version_by_default(stack: str) -> None:
    """The provider's Deployment await needs every pod Ready, which needs a loaded version; on
    a new stack none exists before the training job ends, so the await would fail the update."""
    assert AWAIT["deployment_done_when"] == "every pod of the new ReplicaSet is Ready"
    objects = _objects(stack)
    for name in DEPLOYMENTS:
        annotations = _one(objects, "Deployment", name)["metadata"].get("annotations", {})
        assert annotations.get(AWAIT["skip_await_annotation"]) == AWAIT["skip_await_value"], name
    # Only the Deployments: the Services, budgets and autoscalers are awaited as usual.
    for obj in objects:
        if obj["kind"] != "Deployment":
            assert AWAIT["skip_await_annotation"] not in obj["metadata"].get("annotations", {})


def test_await_ready_has_pulumi_up_wait_for_the_servers() -> None:
    config = stack_config("dev")
    config["ml-platform:serving"]["models"][0]["awaitReady"] = True
    objects = _objects("dev", config)
    for name in DEPLOYMENTS:
        annotations = _one(objects, "Deployment", name)["metadata"].get("annotations", {})
        assert AWAIT["skip_await_annotation"] not in annotations, name


def _model_version(client: httpx.Client) -> float:
    [line] = [
        line
        for line in client.get("/metrics").text.splitlines()
        if line.startswith("inference_model_version ")
    ]
    return float(line.split()[-1])


def _get(client: httpx.Client, probe: dict[str, Any]) -> httpx.Response:
    assert probe["httpGet"]["port"] == "http", probe
    return client.get(probe["httpGet"]["path"])


def test_inference_api_stays_up_without_a_version_and_becomes_ready_with_the_first(
    tmp_path: Path, exported: tuple[Path, np.ndarray, Path]
) -> None:
    """The rendered probes against the real server: with an empty model directory the startup
    and liveness probes pass (no restarts) and readiness fails with a reason (no traffic); when
    the trainer's first version lands, readiness passes by itself and predictions work."""
    first, images, _ = exported
    container = _container(
        [o for o in kubernetes_objects(stack_run("dev")) if o["kind"] == "Deployment"],
        "inference-mnist",
    )
    base = tmp_path / "mnist"  # not even created yet: the trainer creates it
    instance = {"instances": [images[0].tolist()]}
    with Running(base, poll_seconds=0.2) as api:
        for kind in ("startupProbe", "livenessProbe"):
            response = _get(api.client, container[kind])
            assert response.status_code == 200, f"{kind}: {response.text}"
        ready = _get(api.client, container["readinessProbe"])
        assert ready.status_code == 503
        reason = ready.json()["error"]
        assert "no version of 'mnist'" in reason
        assert str(base) in reason
        predict = api.client.post("/v1/models/mnist:predict", json=instance)
        assert predict.status_code == 503
        # What InferenceModelNotLoaded watches (see the alert test below).
        assert _model_version(api.client) == 0

        # Published the way the trainer does: written aside, then renamed into place.
        staging = tmp_path / f".tmp-{first.name}"
        shutil.copytree(first, staging)
        base.mkdir()
        staging.rename(base / first.name)
        deadline = time.monotonic() + 120
        while _get(api.client, container["readinessProbe"]).status_code != 200:
            assert time.monotonic() < deadline, "the first version was never picked up"
            time.sleep(0.1)
        assert _get(api.client, container["livenessProbe"]).status_code == 200
        predict = api.client.post("/v1/models/mnist:predict", json=instance)
        assert predict.status_code == 200, predict.text
        assert predict.headers["x-model-version"] == first.name
        assert _model_version(api.client) == int(first.name)


def test_readiness_names_versions_that_failed_to_load(tmp_path: Path) -> None:
    base = tmp_path / "mnist"
    (base / "1").mkdir(parents=True)
    (base / "1" / "saved_model.pb").write_bytes(b"not a SavedModel")
    with Running(base, poll_seconds=0.2) as api:
        ready = api.client.get("/readyz")
        assert ready.status_code == 503
        assert "version(s) 1 under" in ready.json()["error"]
        assert api.client.get("/healthz").status_code == 200


@needs_promtool
def test_model_not_loaded_fires_while_a_server_waits_and_clears_with_the_first_version(
    tmp_path: Path,
) -> None:
    """Waiting unready is silent to Kubernetes (no restarts): the alert is what says so."""
    labels = {"namespace": "serving", "service": "inference-mnist"}
    test = {
        # 30 minutes without a version, then version 1 for 30 minutes.
        "input_series": [series("inference_model_version", labels, "0x30 1x30")],
        "alert_rule_test": [
            {"eval_time": "5m", "alertname": "InferenceModelNotLoaded", "exp_alerts": []},
            {
                "eval_time": "20m",
                "alertname": "InferenceModelNotLoaded",
                "exp_alerts": [expected("InferenceModelNotLoaded", labels)],
            },
            {"eval_time": "45m", "alertname": "InferenceModelNotLoaded", "exp_alerts": []},
        ],
    }
    assert_rule_tests_pass(tmp_path, test)


@pytest.mark.parametrize("stack", SERVING_STACKS)
def test_a_server_waiting_unready_is_still_scraped(stack: str) -> None:
    """InferenceModelNotLoaded reads the waiting server's own gauge, so Prometheus must scrape a
    pod that is Running but not Ready: Kubernetes lists it under notReadyAddresses (or as a
    not-ready endpoint of the slice), Prometheus makes a target of it all the same, and nothing
    in the generated relabelling, or in our ServiceMonitor, drops it for being unready."""
    api = definitions(versions.DEFAULT_KUBERNETES_VERSION)
    not_ready = api["io.k8s.api.core.v1.EndpointSubset"]["properties"]["notReadyAddresses"]
    assert "have recently failed a readiness check" in not_ready["description"]
    assert KUBERNETES_SD["endpoints"]["not_ready_addresses_are_targets"] is True
    assert KUBERNETES_SD["endpointslice"]["not_ready_endpoints_are_targets"] is True
    ready_labels = {KUBERNETES_SD[role]["ready_label"] for role in ("endpoints", "endpointslice")}
    assert not ready_labels & set(OPERATOR_SCRAPE["relabel_source_labels"])
    # The one state-based drop is the pod's phase; a waiting server's is Running: its startup
    # and liveness probes ask /healthz, which answers without a version (tested above).
    phase = OPERATOR_SCRAPE["phase_drop"]
    assert not re.fullmatch(phase["regex"], "Running")
    container = _container(_objects(stack), "inference-mnist")
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"

    [monitor] = [
        o
        for o in _objects(stack)
        if o["kind"] == "ServiceMonitor" and o["metadata"]["name"] == "inference-mnist"
    ]
    for endpoint in monitor["spec"]["endpoints"]:
        assert endpoint.get(phase["field"], True) is True
        for relabeling in endpoint.get("relabelings", []):
            assert not ready_labels & set(relabeling.get("sourceLabels", [])), relabeling
