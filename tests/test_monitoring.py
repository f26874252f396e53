"""The monitoring stack, its scrape objects, and a real Prometheus scraping the inference API."""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from harness.program import ProgramRun, run_program, stack_config, stack_settings
from harness.render import kubernetes_objects
from infra import alerts, gpu_cost, labels, training_job_metrics, versions
from tests import custom_resource_state
from tests.alert_pipeline import free_port
from tests.conftest import STACKS, stack_run
from tests.programs import PROMETHEUS, needs
from tests.servers import Running
from tests.upstream_facts import facts


def _release(run: ProgramRun, chart: str) -> dict[str, Any]:
    [release] = [
        r.inputs for r in run.of_type("kubernetes:helm.sh/v3:Release") if r.inputs["chart"] == chart
    ]
    return release


@pytest.mark.parametrize("stack", STACKS)
def test_stack_is_pinned_and_selects_every_namespace(stack: str) -> None:
    release = _release(stack_run(stack), "kube-prometheus-stack")
    assert release["version"] == versions.KUBE_PROMETHEUS_STACK_CHART.version
    assert release["namespace"] == "monitoring"
    spec = release["values"]["prometheus"]["prometheusSpec"]
    for selector in ("serviceMonitor", "podMonitor", "rule"):
        assert spec[f"{selector}SelectorNilUsesHelmValues"] is False
    assert spec["retention"] == "15d"
    assert spec["storageSpec"]["volumeClaimTemplate"]["spec"]["resources"]["requests"]["storage"]
    tolerations = release["values"]["prometheus-node-exporter"]["tolerations"]
    assert {"operator": "Exists", "effect": "NoSchedule"} in tolerations  # GPU nodes too


@pytest.mark.parametrize("stack", STACKS)
def test_grafana_admin_password_is_generated_and_secret(stack: str) -> None:
    run = stack_run(stack)
    grafana = _release(run, "kube-prometheus-stack")["values"]["grafana"]
    assert grafana["admin"]["existingSecret"] == "grafana-admin"
    assert "adminPassword" not in grafana
    [secret] = [
        r
        for r in run.of_type("kubernetes:core/v1:Secret")
        if r.inputs["metadata"]["name"] == "grafana-admin"
    ]
    # Never in resources.json: each value masked, the keys kept.
    assert secret.as_json()["inputs"]["stringData"] == {
        "admin-password": "[secret]",
        "admin-user": "[secret]",
    }
    assert "grafanaAdminPassword" in run.secret_outputs


@pytest.mark.parametrize("stack", STACKS)
def test_alert_rules_ship_as_a_prometheus_rule_after_the_crds(stack: str) -> None:
    run = stack_run(stack)
    [rule] = run.of_type("kubernetes:monitoring.coreos.com/v1:PrometheusRule")
    # The alerts, and the GPU cost rules with the stack's prices.
    settings = stack_settings(stack)
    assert rule.inputs["spec"] == {"groups": [*alerts.rule_groups(), gpu_cost.rule_group(settings)]}
    [release] = [
        r
        for r in run.of_type("kubernetes:helm.sh/v3:Release")
        if r.inputs["chart"] == "kube-prometheus-stack"
    ]
    assert release.urn in rule.dependencies


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_service_monitors_match_the_services_they_scrape(stack: str) -> None:
    objects = kubernetes_objects(stack_run(stack))
    services = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Service"}
    monitors = [o for o in objects if o["kind"] == "ServiceMonitor"]
    paths = {
        "tfserving-mnist": "/monitoring/prometheus/metrics",
        "inference-mnist": "/metrics",
        "training-operator-metrics": "/metrics",
    }
    if stack_settings(stack).gpu.bin_packing_scheduler:
        paths["gpu-binpack-scheduler"] = "/metrics"
    assert {m["metadata"]["name"] for m in monitors} == set(paths)
    for monitor in monitors:
        service = services[monitor["metadata"]["name"]]
        selector = monitor["spec"]["selector"]["matchLabels"]
        assert selector.items() <= service["metadata"]["labels"].items()
        [endpoint] = monitor["spec"]["endpoints"]
        assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
        assert endpoint["path"] == paths[monitor["metadata"]["name"]]
    for run_type in ("ServiceMonitor",):
        for resource in stack_run(stack).of_type(f"kubernetes:monitoring.coreos.com/v1:{run_type}"):
            assert any(
                "kube-prometheus-stack" in d or "monitoring" in d for d in resource.dependencies
            )


OPERATOR_SCRAPE = facts("prometheus-operator-scrape", pinned=versions.PROMETHEUS_OPERATOR_VERSION)


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_serving_series_carry_the_models_team(stack: str) -> None:
    """Serving's ServiceMonitors copy the team label of the Services they scrape onto every
    series, under the name the serving alerts read it by."""
    settings = stack_settings(stack)
    teams = {m.name: m.team for m in settings.serving.models}
    objects = kubernetes_objects(stack_run(stack))
    services = {
        o["metadata"]["name"]: o
        for o in objects
        if o["kind"] == "Service" and o["metadata"]["namespace"] == "serving"
    }
    monitors = [
        o
        for o in objects
        if o["kind"] == "ServiceMonitor" and o["metadata"]["namespace"] == "serving"
    ]
    assert monitors
    field = OPERATOR_SCRAPE["target_labels"]["service_field"]
    for monitor in monitors:
        service = services[monitor["metadata"]["name"]]
        model = service["metadata"]["labels"][f"{labels.PREFIX}/model"]
        assert monitor["spec"][field] == [labels.TEAM]
        assert service["metadata"]["labels"][labels.TEAM] == teams[model]
    series_label = re.sub(OPERATOR_SCRAPE["target_labels"]["invalid_label_chars"], "_", labels.TEAM)
    assert series_label == alerts.TEAM_SERIES_LABEL


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_dcgm_exporter_is_scraped(stack: str) -> None:
    values = _release(stack_run(stack), "gpu-operator")["values"]["dcgmExporter"]
    assert values["enabled"] is True
    assert values["serviceMonitor"]["enabled"] is True
    assert values["serviceMonitor"]["honorLabels"] is True  # keeps the holder's pod label


@needs("prometheus")
def test_a_real_prometheus_sees_the_inference_api_count_requests(
    tmp_path: Path, base: Path, exported: tuple[Path, Any, Path]
) -> None:
    assert PROMETHEUS is not None, "CI must install prometheus"
    _, images, _ = exported
    with Running(base) as api:
        target = str(api.client.base_url).removeprefix("http://")
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [
                {"job_name": "inference", "static_configs": [{"targets": [target]}]}
            ],
        }
        (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
        port = free_port()
        prometheus = subprocess.Popen(
            [
                PROMETHEUS,
                f"--config.file={tmp_path / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        query = f"http://127.0.0.1:{port}/api/v1/query"
        counter = 'sum(inference_requests_total{route="predict",status="200"})'

        def value() -> float:
            with httpx.Client(timeout=5) as client:
                # A starting Prometheus answers 503 until its TSDB is open: raise, retry.
                response = client.get(query, params={"query": counter}).raise_for_status()
                result = response.json()["data"]["result"]
            return float(result[0]["value"][1]) if result else -1.0

        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    before = value()
                except httpx.HTTPError:
                    before = -1.0
                if before >= 0:
                    break
                api.client.post(
                    "/v1/models/mnist:predict", json={"instances": [images[0].tolist()]}
                )
                assert time.monotonic() < deadline, "Prometheus never scraped the inference API"
                time.sleep(0.5)
            for _ in range(5):
                assert (
                    api.client.post(
                        "/v1/models/mnist:predict", json={"instances": [images[0].tolist()]}
                    ).status_code
                    == 200
                )
            while value() < before + 5:
                assert time.monotonic() < deadline, "the scraped counter did not grow"
                time.sleep(0.5)
        finally:
            prometheus.terminate()
            prometheus.wait(timeout=30)


@pytest.mark.parametrize("stack", STACKS)
def test_training_operator_metrics_reach_its_pods(stack: str) -> None:
    """The Service selects the operator's pods by their label, on the metrics port it listens on."""
    run = stack_run(stack)
    [service] = [
        o
        for o in kubernetes_objects(run)
        if o["kind"] == "Service" and o["metadata"]["name"] == "training-operator-metrics"
    ]
    assert service["metadata"]["namespace"] == "kubeflow"
    assert service["spec"]["selector"] == {"control-plane": "kubeflow-training-operator"}
    assert service["spec"]["ports"] == [{"name": "metrics", "port": 8080, "targetPort": 8080}]
    [resource] = [
        r
        for r in run.of_type("kubernetes:core/v1:Service")
        if r.inputs["metadata"]["name"] == "training-operator-metrics"
    ]
    assert any("training-operator" in d and "Directory" in d for d in resource.dependencies)


def test_the_bin_packing_scheduler_is_scraped_over_https_with_a_token() -> None:
    objects = kubernetes_objects(stack_run("prod"))
    [monitor] = [
        o
        for o in objects
        if o["kind"] == "ServiceMonitor" and o["metadata"]["name"] == "gpu-binpack-scheduler"
    ]
    [endpoint] = monitor["spec"]["endpoints"]
    assert endpoint["scheme"] == "https"
    assert endpoint["bearerTokenFile"].endswith("serviceaccount/token")
    [deployment] = [
        o
        for o in objects
        if o["kind"] == "Deployment" and o["metadata"]["name"] == "gpu-binpack-scheduler"
    ]
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert {"name": "https", "containerPort": 10259} in container["ports"]


TRAINER = facts("trainer-job-status", pinned=versions.TRAINING_OPERATOR.ref)
KSM = facts("kube-state-metrics-crs", pinned=versions.KUBE_STATE_METRICS_VERSION)
STACK_CHART = facts(
    "kube-prometheus-stack-chart",
    pinned=f"kube-prometheus-stack-{versions.KUBE_PROMETHEUS_STACK_CHART.version}",
)
KSM_CHART = facts(
    "kube-state-metrics-chart",
    pinned=f"kube-state-metrics-{versions.KUBE_STATE_METRICS_CHART_VERSION}",
)


def test_kube_state_metrics_versions_are_the_ones_the_stack_ships() -> None:
    assert STACK_CHART["kube_state_metrics_chart"] == versions.KUBE_STATE_METRICS_CHART_VERSION
    assert f"v{KSM_CHART['app_version']}" == versions.KUBE_STATE_METRICS_VERSION


def _ksm_values(stack: str) -> dict[str, Any]:
    values: dict[str, Any] = _release(stack_run(stack), "kube-prometheus-stack")["values"]
    subchart: dict[str, Any] = values[STACK_CHART["subchart_values_key"]]
    return subchart


@pytest.mark.parametrize("stack", STACKS)
def test_kube_state_metrics_reads_the_training_jobs_conditions(stack: str) -> None:
    """The custom-resource-state config parses as kube-state-metrics reads it, and every field it
    reads exists in the trainer's TFJob and PyTorchJob."""
    crs = _ksm_values(stack)["customResourceState"]
    assert crs["enabled"] is True
    assert set(crs) <= set(KSM_CHART["custom_resource_state"])
    # The chart writes `config` as YAML into the file kube-state-metrics is pointed at.
    config = yaml.safe_load(yaml.safe_dump(crs["config"]))
    assert custom_resource_state.schema_problems(config, KSM) == []
    resources = config["spec"]["resources"]
    kinds = [r["groupVersionKind"]["kind"] for r in resources]
    assert sorted(kinds) == sorted(TRAINER["kinds"])
    for resource in resources:
        gvk = resource["groupVersionKind"]
        assert (gvk["group"], gvk["version"]) == (TRAINER["group"], TRAINER["version"])
        missing = [
            path
            for path in custom_resource_state.read_paths(resource)
            if not custom_resource_state.field_exists(TRAINER["fields"], path)
        ]
        assert missing == [], f"{gvk['kind']}: no such field {missing}"
    # The alert's series: kube-state-metrics' default prefix and the configured name.
    names = {f"{KSM['default_metric_prefix']}_{m['name']}" for r in resources for m in r["metrics"]}
    assert names == {training_job_metrics.SERIES}


@pytest.mark.parametrize("stack", STACKS)
def test_kube_state_metrics_may_list_and_watch_the_jobs(stack: str) -> None:
    rbac = _ksm_values(stack)["rbac"]
    # The chart's defaults put extraRules into its ClusterRole and add the CRD rule itself.
    for key, default in KSM_CHART["rbac_defaults"].items():
        if key != "extraRules":
            assert rbac.get(key, default) == default, key
    granted = {
        (group, resource, verb)
        for rule in rbac["extraRules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    needed = {
        (TRAINER["group"], plural, verb)
        for plural in TRAINER["kinds"].values()
        for verb in KSM["verbs"]
    }
    assert needed <= granted
    assert all(verb in ("list", "watch") for _, _, verb in granted)  # read only


def test_without_the_training_operator_no_job_metrics() -> None:
    config = stack_config("local")
    config["ml-platform:kubeflow"] = {"trainingOperator": {"enabled": False}}
    values = _release(run_program("local", config), "kube-prometheus-stack")["values"]
    assert "customResourceState" not in values["kube-state-metrics"]


def test_the_config_checks_catch_a_misspelt_key_and_a_missing_field() -> None:
    config = training_job_metrics.custom_resource_state_config()
    [gauge, *_] = [m["each"]["gauge"] for r in config["spec"]["resources"] for m in r["metrics"]]
    gauge["valuefrom"] = gauge.pop("valueFrom")
    assert custom_resource_state.schema_problems(config, KSM) == [
        "config.spec.resources[0].metrics[0].each.gauge.valuefrom: no such field in MetricGauge"
    ]
    assert not custom_resource_state.field_exists(TRAINER["fields"], ["status", "condition"])
    assert custom_resource_state.field_exists(
        TRAINER["fields"], ["status", "conditions", "[]", "status"]
    )


GRAFANA_CHART = facts(
    "grafana-sidecar-rbac", pinned=f"grafana-{versions.KUBE_PROMETHEUS_STACK_GRAFANA_CHART}"
)
STACK_GRAFANA = facts(
    "kube-prometheus-stack-grafana",
    pinned=f"kube-prometheus-stack-{versions.KUBE_PROMETHEUS_STACK_CHART.version}",
)


def _dotted(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Helm values as the fixtures write them: `a.b.c` keys, lists and scalars as leaves."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat |= _dotted(value, f"{prefix}{key}.")
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _holds(condition: Any, values: dict[str, Any]) -> bool:
    """A template's `if`, as the fixture writes it, over merged values."""
    if isinstance(condition, str):
        return bool(values.get(condition))
    [(operator, operand)] = condition.items()
    if operator == "not":
        return not _holds(operand, values)
    if operator == "all":
        return all(_holds(part, values) for part in operand)
    assert operator == "any", condition
    return any(_holds(part, values) for part in operand)


def test_the_grafana_chart_is_the_one_the_stack_ships() -> None:
    assert STACK_GRAFANA["grafana_chart"] == versions.KUBE_PROMETHEUS_STACK_GRAFANA_CHART


@pytest.mark.parametrize("stack", STACKS)
def test_grafana_sidecars_read_configmaps_where_they_live_and_no_secret(stack: str) -> None:
    run = stack_run(stack)
    release = _release(run, "kube-prometheus-stack")
    namespace = release["namespace"]
    values = {
        **GRAFANA_CHART["defaults"],
        **STACK_GRAFANA["overrides"],
        **_dotted(release["values"]["grafana"]),
    }
    templates = GRAFANA_CHART["templates"]
    # The chart's ClusterRole and Role both read Secrets; neither may be rendered.
    assert "secrets" in templates["ClusterRole"]["resources"]
    assert "secrets" in templates["Role"]["resources"]
    assert not _holds(templates["ClusterRole"]["rendered_when"], values)
    assert not _holds(templates["ClusterRoleBinding"]["rendered_when"], values)
    assert not _holds(templates["Role"]["rendered_when"], values)
    # What the sidecars get instead: the chart's RoleBindings to the program's own Role.
    assert _holds(templates["RoleBinding"]["rendered_when"], values)
    role_name = values[templates["RoleBinding"]["role"]]
    bound = {*values["rbac.namespaces"], namespace}
    objects = kubernetes_objects(run)
    roles = {
        o["metadata"]["namespace"]: o
        for o in objects
        if o["kind"] == "Role" and o["metadata"]["name"] == role_name
    }
    assert set(roles) == bound
    for role in roles.values():
        assert role["rules"] == [
            {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "watch"]}
        ]
    # Each enabled sidecar watches ConfigMaps only, in namespaces the Role is bound in.
    assert values["sidecar.dashboards.enabled"]
    assert values["sidecar.datasources.enabled"]
    searched: set[str] = set()
    for sidecar in ("dashboards", "datasources", "alerts", "plugins"):
        if not values.get(f"sidecar.{sidecar}.enabled"):
            continue
        assert values[f"sidecar.{sidecar}.resource"] == "configmap"
        namespaces = values[f"sidecar.{sidecar}.searchNamespace"] or [namespace]
        assert GRAFANA_CHART["all_namespaces"] not in namespaces
        assert set(namespaces) <= bound
        searched |= set(namespaces)
    # ... and finds every ConfigMap it must load: the program's dashboards and the stack's own.
    assert STACK_GRAFANA["sidecar_configmaps_namespace"] == "release namespace"
    loaded = {
        o["metadata"]["namespace"]
        for o in objects
        if o["kind"] == "ConfigMap"
        and {"grafana_dashboard", "grafana_datasource"} & set(o["metadata"].get("labels", {}))
    }
    assert loaded
    assert loaded | {namespace} <= searched
