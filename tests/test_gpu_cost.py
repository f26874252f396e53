"""GPU hours and cost per team: the recording rules on the series the pinned exporters write
(promtool), the prices and their settings, kube-state-metrics' node labels, and the dashboard."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.program import raw_settings
from infra import gpu_cost, gpu_sharing, instances, label_names, versions
from infra.dashboards import GPU_COST_DASHBOARD, GPU_HOURS, USD
from infra.gpu_operator import operator_values
from infra.monitoring import kube_state_metrics_label_allowlist, stack_values
from infra.scheduling import POOL_LABEL, Placement
from infra.settings import Settings, parse_settings
from tests import gpu_series
from tests.promtool import needs_promtool, run
from tests.upstream_facts import facts
from tests.upstream_facts import source as upstream_source

KSM = facts("kube-state-metrics-gpu-accounting", pinned=versions.KUBE_STATE_METRICS_VERSION)
KSM_CHART = facts(
    "kube-state-metrics-chart",
    pinned=f"kube-state-metrics-{versions.KUBE_STATE_METRICS_CHART_VERSION}",
)
STACK_CHART = facts(
    "kube-prometheus-stack-chart",
    pinned=f"kube-prometheus-stack-{versions.KUBE_PROMETHEUS_STACK_CHART.version}",
)
GRAFANA = facts("grafana-units", pinned=versions.KUBE_PROMETHEUS_STACK_GRAFANA_CHART)
GRAFANA_PANELS = facts("grafana-panels", pinned=versions.KUBE_PROMETHEUS_STACK_GRAFANA_CHART)

HOUR = 60


def _settings(stack: str = "prod", prices: dict[str, float] | None = None) -> Settings:
    raw = raw_settings(stack)
    if prices is not None:
        raw.setdefault("gpu", {})["prices"] = prices
    return parse_settings(raw, stack)


def _rule_file(tmp_path: Path, settings: Settings) -> Path:
    path = tmp_path / "gpu-cost.yml"
    path.write_text(yaml.safe_dump({"groups": [gpu_cost.rule_group(settings)]}, sort_keys=False))
    return path


def _samples(metric: str, values: dict[tuple[str, str, str], float]) -> list[dict[str, Any]]:
    return [
        {
            "labels": f'{metric}{{namespace="{team}", pool="{pool}", instance_type="{itype}"}}',
            "value": value,
        }
        for (team, pool, itype), value in sorted(values.items())
    ]


def _instant(
    scenario: gpu_series.Scenario, minute: int
) -> dict[str, dict[tuple[str, str, str], float]]:
    """GPUs allocated, busy and idle at one minute, from the scenario's description."""
    truth = scenario.truth(minute, minute + 1)
    return {
        kind: {key: round(values[kind] * 60, 9) for key, values in truth.items() if values[kind]}
        for kind in ("allocated", "busy", "idle")
    }


@needs_promtool
def test_rules_attribute_gpus_to_the_teams_that_hold_them(tmp_path: Path) -> None:
    """At moments that cover each case: both teams busy, the notebook idle and the trainer
    restarting, the serving GPU idle, the trainer gone.  Every GPU nobody holds, the pod still
    Pending and the CPU-only pod count for nobody (promtool wants exactly these samples)."""
    scenario = gpu_series.two_days()
    settings = _settings()
    price = gpu_cost.prices(settings)
    tests = []
    for minute in (1 * HOUR, 11 * HOUR, 13 * HOUR, 20 * HOUR + 5, 31 * HOUR, 44 * HOUR):
        now = _instant(scenario, minute)
        cost = {key: gpus * price[key[2]] for key, gpus in now["allocated"].items()}
        tests += [
            {"expr": metric, "eval_time": f"{minute}m", "exp_samples": _samples(metric, values)}
            for metric, values in (
                (gpu_cost.ALLOCATED, now["allocated"]),
                (gpu_cost.BUSY, now["busy"]),
                (gpu_cost.IDLE, now["idle"]),
                (gpu_cost.COST, cost),
            )
        ]
    document = {
        "rule_files": [str(_rule_file(tmp_path, settings))],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": gpu_series.promtool_series(scenario),
                "promql_expr_test": tests,
            }
        ],
    }
    path = tmp_path / "tests.yml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    result = run("test", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_rules_count_a_pod_once_while_two_kube_state_metrics_report_it(tmp_path: Path) -> None:
    """During a kube-state-metrics rollout the old and the new pod both report every object:
    the same series but for the target's `instance`."""
    scenario = gpu_series.two_days()
    inputs = gpu_series.promtool_series(scenario)
    target = gpu_series.KSM_TARGET["instance"]
    inputs += [
        {**s, "series": s["series"].replace(target, "10.0.3.99:8080")}
        for s in inputs
        if target in s["series"]
    ]
    minute = 1 * HOUR
    now = _instant(scenario, minute)
    document = {
        "rule_files": [str(_rule_file(tmp_path, _settings()))],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": inputs,
                "promql_expr_test": [
                    {
                        "expr": gpu_cost.ALLOCATED,
                        "eval_time": f"{minute}m",
                        "exp_samples": _samples(gpu_cost.ALLOCATED, now["allocated"]),
                    }
                ],
            }
        ],
    }
    path = tmp_path / "tests.yml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    result = run("test", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_the_exporter_maps_no_time_sliced_gpu_to_a_pod(stack: str) -> None:
    """What the busy and idle rules assume of shares: dcgm-exporter, as the program runs it, maps
    only nvidia.com/gpu and MIG to pods (no extra resource names)."""
    values = operator_values(_settings(stack))["dcgmExporter"]
    names = {env["name"] for env in values.get("env", [])}
    assert gpu_series.DCGM["resource_names_env"] not in names
    assert gpu_sharing.SHARED_GPU not in gpu_series.DCGM["mapped_resources"]
    assert not gpu_sharing.SHARED_GPU.startswith(tuple(gpu_series.DCGM["mapped_resource_prefixes"]))


def test_a_share_weighs_one_gpu_over_its_replicas() -> None:
    """The scenario's shared node advertises 4 shares per GPU: two shares are half a GPU."""
    scenario = gpu_series.two_days()
    now = _instant(scenario, 1 * HOUR)["allocated"]
    assert now[("research", "serving", "g5.xlarge")] == 0.5
    assert now[("research", "training", "g5.12xlarge")] == 1


@needs_promtool
def test_rules_pass_promtool_check(tmp_path: Path) -> None:
    result = run("check", "rules", str(_rule_file(tmp_path, _settings())))
    assert result.returncode == 0, result.stdout + result.stderr


# --- prices --------------------------------------------------------------------------------


def test_every_price_is_for_a_catalogue_instance_type() -> None:
    assert set(instances.ON_DEMAND_PRICES) <= set(instances.GPU_INSTANCE_TYPES)
    assert all(p.usd_per_hour > 0 for p in instances.ON_DEMAND_PRICES.values())


def test_list_prices_are_the_aws_price_list_figures() -> None:
    """Each catalogue type has the price AWS's price list gives it in us-east-1, and a type the
    list does not price (p5e.48xlarge) has none rather than a guess."""
    listed = facts("aws-on-demand-prices", pinned=instances.PRICES_SOURCE_REF)
    assert listed["region"] == instances.PRICES_REGION
    assert set(listed["usd_per_hour"]) | set(listed["unpriced"]) == set(
        instances.GPU_INSTANCE_TYPES
    )
    ours = {name: price.usd_per_hour for name, price in instances.ON_DEMAND_PRICES.items()}
    assert ours == listed["usd_per_hour"]


def test_every_price_names_where_it_was_read() -> None:
    for name, price in instances.ON_DEMAND_PRICES.items():
        assert price.sources, name
        assert set(price.sources) <= set(instances.PRICE_SOURCES), (name, price.sources)
    assert all(re.search(r"\d{4}-\d{2}-\d{2}", page) for page in instances.PRICE_SOURCES.values())
    assert (
        upstream_source("aws-on-demand-prices")["repository"] == instances.PRICES_SOURCE_REPOSITORY
    )


def test_price_per_gpu_divides_the_instance_price_by_its_gpus() -> None:
    listed = instances.ON_DEMAND_PRICES["g5.12xlarge"].usd_per_hour
    assert instances.price_per_gpu_hour("g5.12xlarge", {}) == listed / 4
    assert instances.price_per_gpu_hour("g5.12xlarge", {"g5.12xlarge": 8.0}) == 2.0
    p5 = instances.ON_DEMAND_PRICES["p5.48xlarge"].usd_per_hour
    assert instances.price_per_gpu_hour("p5.48xlarge", {}) == p5 / 8
    assert instances.price_per_gpu_hour("p5e.48xlarge", {}) is None
    assert instances.price_per_gpu_hour("p5e.48xlarge", {"p5e.48xlarge": 80.0}) == 10.0


def test_stack_prices_override_the_list_and_become_price_series() -> None:
    settings = _settings("prod", {"g6.12xlarge": 3.2, "p4d.24xlarge": 20.0})
    rules = gpu_cost.rule_group(settings)["rules"]
    prices = {
        r["labels"]["instance_type"]: float(r["expr"].removeprefix("vector(").removesuffix(")"))
        for r in rules
        if r["record"] == gpu_cost.PRICE
    }
    # The stack's pools' types, each per GPU, and the priced type no pool uses yet.
    assert prices["g6.12xlarge"] == 3.2 / 4
    assert prices["g5.xlarge"] == instances.ON_DEMAND_PRICES["g5.xlarge"].usd_per_hour
    assert prices["p4d.24xlarge"] == 20.0 / 8
    assert set(prices) == {"g6.xlarge", "g5.xlarge", "g6.12xlarge", "g5.12xlarge", "p4d.24xlarge"}


# --- kube-state-metrics' node labels -------------------------------------------------------


def test_node_label_names_follow_kube_state_metrics() -> None:
    assert label_names.ksm_label(POOL_LABEL) == gpu_series.ksm_label(POOL_LABEL)
    assert label_names.ksm_label("node.kubernetes.io/instance-type") == (
        "label_node_kubernetes_io_instance_type"
    )
    assert (
        label_names.ksm_label("fooBar/baz")
        == gpu_series.ksm_label("fooBar/baz")
        == "label_foo_bar_baz"
    )


@pytest.mark.parametrize("stack", ["dev", "prod", "local"])
def test_kube_state_metrics_exports_the_pool_and_instance_type_of_nodes(stack: str) -> None:
    """kube_node_labels exists only for allowed labels: the stack's values allow both."""
    values = stack_values(_settings(stack), Placement({}, []), "gp3")[
        STACK_CHART["subchart_values_key"]
    ]
    allowlist = values["metricLabelsAllowlist"]
    assert allowlist == kube_state_metrics_label_allowlist()
    assert KSM_CHART["metric_labels_allowlist_default"] == []
    assert KSM["node_labels_need_allowlist"] is True
    # The chart joins the entries with "," into one argument; kube-state-metrics splits it back.
    entries = KSM_CHART["metric_labels_allowlist_separator"].join(allowlist)
    [match] = [re.fullmatch(KSM["allowlist_entry"], e) for e in [entries]]
    assert match is not None, entries
    assert match["resource"] == KSM["allowlist_node_resource"]
    assert set(match["labels"].split(",")) == set(gpu_cost.NODE_LABELS)
    # kube-prometheus-stack sets no allowlist of its own that ours would have to merge with.
    assert "metricLabelsAllowlist" not in STACK_CHART["kube_state_metrics_values"]


# --- dashboard -----------------------------------------------------------------------------


def _panel(title: str) -> dict[str, Any]:
    panels: list[dict[str, Any]] = GPU_COST_DASHBOARD["panels"]
    [panel] = [p for p in panels if p["title"] == title]
    return panel


def test_cost_dashboard_units() -> None:
    assert GRAFANA["units"]["USD"] == USD
    assert GPU_HOURS.startswith(GRAFANA["custom_suffix"])
    # Grafana puts its own separator before the text: one more would show as a double space.
    text = GPU_HOURS.removeprefix(GRAFANA["custom_suffix"])
    assert text, GPU_HOURS
    assert not text.startswith(GRAFANA["custom_suffix_separator"]), GPU_HOURS
    for panel in GPU_COST_DASHBOARD["panels"]:
        [target] = panel["targets"]
        unit = panel["fieldConfig"]["defaults"]["unit"]
        if gpu_cost.COST in target["expr"]:
            assert unit == USD, panel["title"]
        elif "[$__range" in target["expr"]:
            assert unit == GPU_HOURS, panel["title"]


def test_cost_dashboard_totals_over_the_chosen_range() -> None:
    assert GPU_COST_DASHBOARD["title"] == "ML platform / GPU cost"
    for title in (
        "Cost by team",
        "Cost by pool",
        "Idle GPU hours by team",
        "Idle GPU hours by pool",
    ):
        [target] = _panel(title)["targets"]
        assert "[$__range:1m]" in target["expr"], title
        assert target["instant"] is True


def test_cost_dashboard_range_totals_use_grafana_fields() -> None:
    """The bar gauges are Grafana's bargauge panel with option values it knows, their queries
    are instant (one total) and their window is Grafana's range variable."""
    totals = [p for p in GPU_COST_DASHBOARD["panels"] if "[$__range" in p["targets"][0]["expr"]]
    assert totals
    for panel in totals:
        assert panel["type"] == GRAFANA_PANELS["bar_gauge_panel"], panel["title"]
        options = panel["options"]
        assert options["displayMode"] in GRAFANA_PANELS["bar_gauge_display_modes"], panel["title"]
        assert options["orientation"] in GRAFANA_PANELS["orientations"], panel["title"]
        [target] = panel["targets"]
        assert target[GRAFANA_PANELS["prometheus_instant_field"]] is True, panel["title"]
        assert f"[{GRAFANA_PANELS['range_variable']}:" in target["expr"], panel["title"]


@needs_promtool
def test_cost_dashboard_totals_are_hours_of_the_recorded_rates(tmp_path: Path) -> None:
    """A team holding 2 GPUs at $1.5/GPU-hour for 3 hours: the panels say $9 and 6 GPU hours."""
    labels = 'namespace="research", pool="training", instance_type="g5.12xlarge"'

    def query(title: str) -> str:
        [target] = _panel(title)["targets"]
        # As Grafana renders the variable for a 3-hour range (tests/upstream/grafana-panels.yaml).
        rendered = f"{3 * 3600}s"
        assert re.fullmatch(GRAFANA_PANELS["range_rendered"], rendered)
        return str(target["expr"]).replace(GRAFANA_PANELS["range_variable"], rendered)

    document = {
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    # Samples at minutes 21-200: 3 hours up to the evaluation, none at its
                    # left edge, which Prometheus 2.42 includes in a range and 3.x does not.
                    {"series": f"{gpu_cost.COST}{{{labels}}}", "values": "_x21 3x179"},
                    {"series": f"{gpu_cost.IDLE}{{{labels}}}", "values": "_x21 2x179"},
                ],
                "promql_expr_test": [
                    {
                        "expr": query("Cost by team"),
                        "eval_time": "200m",
                        "exp_samples": [{"labels": '{namespace="research"}', "value": 9}],
                    },
                    {
                        "expr": query("Idle GPU hours by pool"),
                        "eval_time": "200m",
                        "exp_samples": [{"labels": '{pool="training"}', "value": 6}],
                    },
                ],
            }
        ],
    }
    path = tmp_path / "tests.yml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    result = run("test", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
