"""TF Serving and the inference API as the stacks render them."""

from __future__ import annotations

import math
import re
from typing import Any

import pytest

from harness.program import run_program, stack_config, stack_settings
from harness.render import kubernetes_objects
from harness.schema import definitions
from inference import server as inference_cli
from infra import alerts, versions
from infra.monitoring import PROMETHEUS_PODS
from infra.settings.base import quantity_value
from tests.conftest import stack_run
from tests.upstream_facts import facts
from workloads.manifests import export_dir
from workloads.serving import HPA_TOLERANCE

SERVING_STACKS = ["dev", "prod"]


def _objects(stack: str, config: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    run = stack_run(stack) if config is None else run_program(stack, config)
    return [o for o in kubernetes_objects(run) if o["metadata"].get("namespace") == "serving"]


def _one(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    [obj] = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    return obj


@pytest.mark.parametrize("stack", SERVING_STACKS)
def test_ports_are_named_for_what_they_carry(stack: str) -> None:
    objects = _objects(stack)
    deployment = _one(objects, "Deployment", "tfserving-mnist")
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {
        "grpc": 8500,
        "http": 8501,
    }
    service = _one(objects, "Service", "tfserving-mnist")
    assert service["spec"]["type"] == "ClusterIP"
    ports = {p["name"]: p for p in service["spec"]["ports"]}
    assert (ports["grpc"]["port"], ports["grpc"]["targetPort"]) == (8500, "grpc")
    assert ports["grpc"]["appProtocol"] == "kubernetes.io/h2c"
    assert (ports["http"]["port"], ports["http"]["targetPort"]) == (8501, "http")


@pytest.mark.parametrize("stack", SERVING_STACKS)
def test_probes_mounts_rollout_and_spread(stack: str) -> None:
    deployment = _one(_objects(stack), "Deployment", "tfserving-mnist")
    pod = deployment["spec"]["template"]["spec"]
    [container] = pod["containers"]
    health = {"port": 8500, "service": "PredictionService"}
    assert container["startupProbe"]["grpc"] == health
    assert (
        container["startupProbe"]["failureThreshold"] * container["startupProbe"]["periodSeconds"]
        >= 300
    )
    assert container["readinessProbe"]["grpc"] == health
    assert container["livenessProbe"] == {"tcpSocket": {"port": "grpc"}, "periodSeconds": 20}
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert mounts["/models"]["readOnly"] is True
    assert deployment["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}
    assert "replicas" not in deployment["spec"]  # the HPA owns it
    assert {c["topologyKey"] for c in pod["topologySpreadConstraints"]} == {
        "topology.kubernetes.io/zone",
        "kubernetes.io/hostname",
    }
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["resources"]["requests"]["cpu"]
    assert container["resources"]["limits"]["memory"]
    args = dict(arg.removeprefix("--").split("=", 1) for arg in container["args"])
    assert args["port"] == "8500"
    assert args["rest_api_port"] == "8501"
    assert args["enable_batching"] == "true"
    assert args["model_config_file_poll_wait_seconds"] == "60"


@pytest.mark.parametrize("stack", SERVING_STACKS)
def test_model_path_is_where_the_trainer_exports(stack: str) -> None:
    settings = stack_settings(stack)
    [model] = settings.serving.models
    config = _one(_objects(stack), "ConfigMap", "tfserving-mnist")["data"]
    assert f"base_path: '{export_dir(model.team, model.export_job)}'" in config["models.config"]
    assert "name: 'mnist'" in config["models.config"]
    assert 'path: "/monitoring/prometheus/metrics"' in config["monitoring.config"]
    assert "max_batch_size { value: 64 }" in config["batching.config"]


@pytest.mark.parametrize("stack", SERVING_STACKS)
def test_disruption_budget_and_autoscaler(stack: str) -> None:
    objects = _objects(stack)
    model = stack_settings(stack).serving.models[0]
    for name, replicas in (
        ("tfserving-mnist", model.replicas),
        ("inference-mnist", model.inference_api.replicas),
    ):
        budget = _one(objects, "PodDisruptionBudget", name)["spec"]
        assert budget["minAvailable"] == 1
        # Unready servers (no model version yet) never hold up a node drain.
        assert budget["unhealthyPodEvictionPolicy"] == "AlwaysAllow"
        hpa = _one(objects, "HorizontalPodAutoscaler", name)["spec"]
        assert (hpa["minReplicas"], hpa["maxReplicas"]) == (replicas.min, replicas.max)
        assert hpa["scaleTargetRef"] == {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": name,
        }


def test_dev_serves_on_the_cpu_image() -> None:
    [container] = _one(_objects("dev"), "Deployment", "tfserving-mnist")["spec"]["template"][
        "spec"
    ]["containers"]
    assert container["image"] == versions.TF_SERVING_IMAGE
    assert not any("nvidia.com" in key for key in container["resources"]["limits"])


def test_prod_serves_on_a_shared_gpu_with_a_memory_cap() -> None:
    pod = _one(_objects("prod"), "Deployment", "tfserving-mnist")["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert container["image"] == versions.TF_SERVING_GPU_IMAGE
    assert container["resources"]["limits"]["nvidia.com/gpu.shared"] == 1
    assert container["resources"]["requests"]["nvidia.com/gpu.shared"] == 1
    fraction = next(
        a for a in container["args"] if a.startswith("--per_process_gpu_memory_fraction=")
    )
    assert 0 < float(fraction.split("=")[1]) <= 0.25  # 4 servers share a GPU
    assert pod["nodeSelector"] == {"ml-platform.io/pool": "serving"}


@pytest.mark.parametrize("stack", SERVING_STACKS)
def test_inference_api_runs_the_built_image_on_the_models_volume(stack: str) -> None:
    objects = _objects(stack)
    [container] = _one(objects, "Deployment", "inference-mnist")["spec"]["template"]["spec"][
        "containers"
    ]
    [image] = [
        i for i in stack_run(stack).of_type("docker-build:index:Image") if "inference" in i.name
    ]
    assert container["image"] == image.outputs["ref"]
    model = stack_settings(stack).serving.models[0]
    command = container["command"]
    assert command[:3] == ["python", "-m", "inference.server"]
    assert command[command.index("--model-base-path") + 1] == export_dir(
        model.team, model.export_job
    )
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert {m["mountPath"]: m.get("readOnly") for m in container["volumeMounts"]}["/models"] is True
    assert _one(objects, "Service", "inference-mnist")["spec"]["type"] == "ClusterIP"


@pytest.mark.parametrize("stack", ["dev", "prod", "local"])
def test_no_public_load_balancer(stack: str) -> None:
    for service in (o for o in kubernetes_objects(stack_run(stack)) if o["kind"] == "Service"):
        if service["spec"].get("type") == "LoadBalancer":
            annotations = service["metadata"].get("annotations", {})
            assert (
                annotations.get("service.beta.kubernetes.io/aws-load-balancer-scheme") == "internal"
            )


def _selects(selector: dict[str, Any], pod_labels: dict[str, str]) -> bool:
    """A label selector's verdict on a pod's labels (matchLabels, and In expressions)."""
    for key, value in selector.get("matchLabels", {}).items():
        if pod_labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions", []):
        assert expression["operator"] == "In", expression
        if pod_labels.get(expression["key"]) not in expression["values"]:
            return False
    return True


@pytest.mark.parametrize("stack", SERVING_STACKS)
def test_the_serving_namespace_admits_only_callers_of_the_models(stack: str) -> None:
    objects = _objects(stack)
    policies = {o["metadata"]["name"]: o["spec"] for o in objects if o["kind"] == "NetworkPolicy"}
    assert {"default-deny", "same-namespace", "dns", "prometheus", "serving-ingress"} <= set(
        policies
    )
    # Prometheus's own pods, on the ports the ServiceMonitors scrape (TF Serving's REST port,
    # the inference API's), nothing else from `monitoring`.
    [scrape] = policies["prometheus"]["ingress"]
    [prometheus] = scrape["from"]
    assert prometheus["podSelector"] == {"matchLabels": PROMETHEUS_PODS}
    assert {p["port"] for p in scrape["ports"]} == {8501, 8080}
    ingress = policies["serving-ingress"]
    [rule] = ingress["ingress"]
    assert rule["from"] == [{"namespaceSelector": {}}]
    assert {p["port"] for p in rule["ports"]} == {8500, 8501, 8080}
    deployments = [o for o in objects if o["kind"] == "Deployment"]
    assert deployments
    for deployment in deployments:
        pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert _selects(ingress["podSelector"], pod_labels), deployment["metadata"]["name"]
        # Every port a container serves is one the policy opens.
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            for port in container["ports"]:
                assert port["containerPort"] in {p["port"] for p in rule["ports"]}


def test_an_internal_load_balancer_when_asked() -> None:
    config = stack_config("dev")
    config["ml-platform:serving"]["models"][0]["exposure"] = "internalLoadBalancer"
    objects = _objects("dev", config)
    [policy] = [
        o["spec"]
        for o in objects
        if o["kind"] == "NetworkPolicy" and o["metadata"]["name"] == "tfserving-mnist-load-balancer"
    ]
    [rule] = policy["ingress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": 8501}]
    assert policy["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": "tfserving-mnist"}}
    service = _one(objects, "Service", "tfserving-mnist-internal")
    assert service["spec"]["type"] == "LoadBalancer"
    assert [p["name"] for p in service["spec"]["ports"]] == ["http"]
    annotations = service["metadata"]["annotations"]
    assert annotations["service.beta.kubernetes.io/aws-load-balancer-scheme"] == "internal"
    assert annotations["service.beta.kubernetes.io/aws-load-balancer-nlb-target-type"] == "ip"


TF_SERVING = facts("tf-serving", pinned=versions.TF_SERVING_VERSION)


def _probes(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        kind: container[kind]
        for kind in ("startupProbe", "readinessProbe", "livenessProbe")
        if kind in container
    }


@pytest.mark.parametrize("stack", SERVING_STACKS)  # dev on the CPU image, prod on the GPU one
def test_probes_stay_out_of_tf_servings_request_metrics(stack: str) -> None:
    """No probe sends TF Serving a REST request it counts; startup and readiness ask gRPC health
    for a service the server marks SERVING once its models are loaded."""
    deployment = _one(_objects(stack), "Deployment", "tfserving-mnist")
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    args = dict(arg.removeprefix("--").partition("=")[::2] for arg in container["args"])
    counted = re.compile(TF_SERVING["counted_rest_paths"])
    for kind, probe in _probes(container).items():
        if "httpGet" in probe:
            assert not counted.fullmatch(probe["httpGet"]["path"]), f"{kind} is counted traffic"
    assert args[TF_SERVING["health_flag"]] == "true"
    assert TF_SERVING["serving_after_models_load"] is True
    for kind in ("startupProbe", "readinessProbe"):
        grpc = container[kind].get("grpc")
        assert grpc is not None, f"{kind} does not ask gRPC health"
        assert grpc["port"] == int(args[TF_SERVING["grpc_port_flag"]]) == ports["grpc"]
        assert grpc["service"] in TF_SERVING["serving_services"]


def test_the_counted_paths_include_the_model_status_api() -> None:
    counted = re.compile(TF_SERVING["counted_rest_paths"])
    assert counted.fullmatch("/v1/models/mnist")
    assert counted.fullmatch("/V1/models/mnist/versions/3")
    assert not counted.fullmatch("/monitoring/prometheus/metrics")


def test_unready_pods_are_evicted_regardless_of_the_budget_under_always_allow() -> None:
    """What AlwaysAllow means, and that the default would keep unready servers (API reference)."""
    spec = definitions(versions.DEFAULT_KUBERNETES_VERSION)[
        "io.k8s.api.policy.v1.PodDisruptionBudgetSpec"
    ]
    text = spec["properties"]["unhealthyPodEvictionPolicy"]["description"]
    assert "which corresponds to the IfHealthyBudget policy" in text
    assert (
        'IfHealthyBudget policy means that running pods (status.phase="Running"), but not yet '
        "healthy can be evicted only if the guarded application is not disrupted"
    ) in text
    assert (
        'AlwaysAllow policy means that all running pods (status.phase="Running"), but not yet '
        "healthy are considered disrupted and can be evicted regardless of whether the criteria "
        "in a PDB is met"
    ) in text
    assert "Healthy pods will be subject to the PDB for eviction." in text


def test_tf_serving_error_rate_reads_labels_its_request_count_has() -> None:
    """TfServingErrorRate divides request_count by status per model: labels that counter has
    (plus target labels), and the gRPC health checks the probes send are not in it."""
    [alert] = [a for a in alerts.SERVING if a.name == "TfServingErrorRate"]
    assert "grpc_health" not in TF_SERVING["request_count_recorded_by"]
    # The target's namespace and the team label its ServiceMonitor copies from the Service.
    allowed = {*TF_SERVING["request_count_labels"], "namespace", alerts.TEAM_SERIES_LABEL}
    matchers = set(re.findall(r"(\w+)\s*!?=~?\s*\"", alert.expr))
    grouping = {
        label.strip()
        for labels in re.findall(r"\bby \(([^)]*)\)", alert.expr)
        for label in labels.split(",")
    }
    assert matchers | grouping <= allowed, alert.expr
    assert ":tensorflow:serving:request_count" in alert.expr


BATCHING = facts("tf-serving-batching", pinned=versions.TF_SERVING_VERSION)


def _batching(objects: list[dict[str, Any]]) -> dict[str, int]:
    text = _one(objects, "ConfigMap", "tfserving-mnist")["data"]["batching.config"]
    return {field: int(value) for field, value in re.findall(r"(\w+) \{ value: (\d+) \}", text)}


@pytest.mark.parametrize("stack", SERVING_STACKS)
def test_tf_servings_batch_queue_is_bounded_by_its_cores(stack: str) -> None:
    """One batch thread per core the server may use, and no more batches queued than threads:
    past that a request gets UNAVAILABLE (503) at once instead of a place in a backlog."""
    objects = _objects(stack)
    parameters = _batching(objects)
    assert set(parameters) <= set(BATCHING["batching_parameters_fields"])
    [container] = _one(objects, "Deployment", "tfserving-mnist")["spec"]["template"]["spec"][
        "containers"
    ]
    cores = math.ceil(quantity_value(container["resources"]["limits"]["cpu"]))
    assert BATCHING["num_batch_threads"] == "cpu_cores"
    assert parameters["num_batch_threads"] == cores
    assert BATCHING["online_max_enqueued_batches"] == "num_batch_threads"
    assert parameters["max_enqueued_batches"] == parameters["num_batch_threads"]
    assert BATCHING["queue_full_status"] != "OK"  # counted by TfServingErrorRate
    assert 'status!="OK"' in next(a.expr for a in alerts.SERVING if a.name == "TfServingErrorRate")


def test_tf_serving_batching_can_be_set_explicitly() -> None:
    config = stack_config("dev")
    model = config["ml-platform:serving"]["models"][0]
    model["cpuLimit"] = "2500m"
    assert _batching(_objects("dev", config))["num_batch_threads"] == 3
    model["batching"] = {"numBatchThreads": 2, "maxEnqueuedBatches": 8}
    parameters = _batching(_objects("dev", config))
    assert (parameters["num_batch_threads"], parameters["max_enqueued_batches"]) == (2, 8)


@pytest.mark.parametrize("stack", SERVING_STACKS)
def test_the_inference_api_gets_its_queue_budget(stack: str) -> None:
    [container] = _one(_objects(stack), "Deployment", "inference-mnist")["spec"]["template"][
        "spec"
    ]["containers"]
    command = container["command"]
    assert command[:3] == ["python", "-m", "inference.server"]
    args = inference_cli.parse_args(command[3:])
    model = stack_settings(stack).serving.models[0]
    assert args.max_queue_ms == model.inference_api.max_queue_ms
    # Admitted requests are answered within the slow-prediction alert's threshold.
    slow = next(a for a in alerts.SERVING if a.name == "InferenceApiSlow")
    threshold_s = float(slow.expr.rsplit(">", 1)[1])
    assert (args.max_queue_ms + args.batch_timeout_ms) / 1000 < threshold_s


@pytest.mark.parametrize("stack", SERVING_STACKS)
@pytest.mark.parametrize("name", ["tfserving-mnist", "inference-mnist"])
def test_autoscalers_add_replicas_before_a_replica_sheds(stack: str, name: str) -> None:
    """Shedding can start at 100% of the CPU request (all a pod is sure to get).  The controller
    scales out only 10% past its target; from there a third of headroom must remain (1.5x), for
    traffic growth while new replicas start or for replicas hotter than the average: one of the
    two, not both at once."""
    hpa = _one(_objects(stack), "HorizontalPodAutoscaler", name)["spec"]
    [metric] = hpa["metrics"]
    assert metric["resource"]["name"] == "cpu"
    target = metric["resource"]["target"]["averageUtilization"]
    assert target * (1 + HPA_TOLERANCE) <= 100 / 1.5
