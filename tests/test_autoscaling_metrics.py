"""Every HorizontalPodAutoscaler can read its metrics, and its pods give them a meaning.

An HPA on a `Resource` metric reads the resource metrics API (metrics.k8s.io), which only
metrics-server serves: EKS does not run one, so AWS stacks install the `metrics-server` add-on;
an existing cluster either runs one already (`cluster.metricsServer.source: existing`) or gets
the pinned chart.  `Pods`, `Object` and `External` metrics need a custom or external metrics
adapter, which the platform does not install.  And a utilization target is usage over the pods'
requests, so every container of the target must request the resource.
"""

from __future__ import annotations

import functools
from typing import Any

import pytest

from harness.program import (
    ProgramRun,
    RegisteredResource,
    run_program,
    stack_config,
    stack_settings,
)
from harness.render import kubernetes_objects
from infra import metrics_server, versions
from infra.scheduling import Placement
from infra.settings import Settings
from tests.conftest import AWS_STACKS, STACKS, stack_run
from tests.dependencies import waits_for
from tests.upstream_facts import facts

HPA = "kubernetes:autoscaling/v2:HorizontalPodAutoscaler"
ADDON = "aws:eks/addon:Addon"
RELEASE = "kubernetes:helm.sh/v3:Release"
NODE_GROUP = "aws:eks/nodeGroup:NodeGroup"

CHART = facts(
    "metrics-server-chart",
    pinned=f"metrics-server-helm-chart-{versions.METRICS_SERVER_CHART.version}",
)
HPA_FACTS = facts("kubernetes-hpa-resource-requests", pinned="master")
RESOURCE_METRICS = frozenset(HPA_FACTS["served_by_resource_metrics"])
ADAPTER_METRICS = frozenset(HPA_FACTS["served_by_an_adapter"])

# A model on the local stack, so an existing cluster renders HPAs too.
LOCAL_MODEL = {"name": "mnist", "team": "research"}
LOCAL_INFERENCE_IMAGE = "registry.example.com/ml/inference:1.0.0"


def _local_config(source: str | None, insecure: bool | None) -> dict[str, Any]:
    """local with a served model, and its metricsServer settings changed as given."""
    config = stack_config("local")
    config["ml-platform:serving"] = {
        "models": [LOCAL_MODEL],
        "inferenceImage": LOCAL_INFERENCE_IMAGE,
    }
    chosen = dict(config["ml-platform:cluster"].get("metricsServer") or {})
    if source is not None:
        chosen["source"] = source
    if insecure is not None:
        chosen["kubeletInsecureTls"] = insecure
    config["ml-platform:cluster"]["metricsServer"] = chosen
    return config


@functools.cache
def _local_run(source: str | None = None, insecure: bool | None = None) -> ProgramRun:
    return run_program("local", _local_config(source, insecure))


# The local stack with a served model: as its file sets metricsServer (the chart), and on a
# cluster that runs its own metrics server.
_VARIANTS: dict[str, tuple[str | None, bool | None]] = {
    "local+model": (None, None),
    "local+model, cluster's own metrics server": ("existing", False),
}
CASES = [*STACKS, *_VARIANTS]


def _case(label: str) -> tuple[ProgramRun, Settings]:
    if label in _VARIANTS:
        source, insecure = _VARIANTS[label]
        return _local_run(source, insecure), stack_settings(
            "local", _local_config(source, insecure)
        )
    return stack_run(label), stack_settings(label)


def metric_sources(run: ProgramRun) -> list[RegisteredResource]:
    """What serves the resource metrics API in this run: the EKS add-on or the chart."""
    return [r for r in run.of_type(ADDON) if r.inputs["addonName"] == metrics_server.ADDON] + [
        r for r in run.of_type(RELEASE) if r.inputs["chart"] == CHART["chart"]
    ]


def source_problems(
    hpas: list[tuple[str, dict[str, Any], set[str]]],
    sources: list[str],
    cluster_has_one: bool,
) -> list[str]:
    """Each HPA metric nothing serves, one line each.

    `hpas`: (name, spec, what the HPA waits for); `sources`: URNs of what installs metrics-server;
    `cluster_has_one`: the stack says the existing cluster runs one already.
    """
    problems = []
    for name, spec, waits in hpas:
        for metric in spec.get("metrics") or []:
            kind = metric.get("type")
            if kind in ADAPTER_METRICS:
                problems.append(
                    f"{name}: a {kind} metric needs a custom or external metrics adapter "
                    "(e.g. prometheus-adapter) and the platform installs none; scale on "
                    "Resource metrics or install an adapter first"
                )
            elif kind not in RESOURCE_METRICS:
                problems.append(f"{name}: unknown metric type {kind!r}")
            elif cluster_has_one:
                continue
            elif not sources:
                problems.append(
                    f"{name}: a {kind} metric needs metrics-server, and this stack neither "
                    "installs it nor says the cluster runs one (cluster.metricsServer.source)"
                )
            elif not waits & set(sources):
                problems.append(f"{name}: created before metrics-server, which serves its metric")
    return problems


def request_problems(objects: list[dict[str, Any]]) -> list[str]:
    """Each HPA on a resource metric whose target has a container without that request."""
    workloads = {
        (o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]): o
        for o in objects
        if o.get("kind") in ("Deployment", "StatefulSet", "ReplicaSet")
    }
    problems = []
    for hpa in (o for o in objects if o.get("kind") == "HorizontalPodAutoscaler"):
        meta, spec = hpa["metadata"], hpa["spec"]
        name = f"HorizontalPodAutoscaler {meta.get('namespace')}/{meta['name']}"
        ref = spec["scaleTargetRef"]
        target = workloads.get((ref["kind"], meta.get("namespace"), ref["name"]))
        if target is None:
            problems.append(f"{name}: its target {ref['kind']} {ref['name']} is not rendered")
            continue
        pod = target["spec"]["template"]["spec"]
        # Restartable init containers (sidecars) count as the pod's containers.
        containers = [
            *pod.get("containers", []),
            *(c for c in pod.get("initContainers", []) if c.get("restartPolicy") == "Always"),
        ]
        for metric in spec.get("metrics") or []:
            if metric.get("type") == "Resource":
                resource, only = metric["resource"]["name"], None
            elif metric.get("type") == "ContainerResource":
                resource = metric["containerResource"]["name"]
                only = metric["containerResource"]["container"]
            else:
                continue
            for container in containers:
                if only is not None and container["name"] != only:
                    continue
                requests = (container.get("resources") or {}).get("requests") or {}
                if resource not in requests:
                    problems.append(
                        f"{name}: container {container['name']} of {ref['kind']} {ref['name']} "
                        f"requests no {resource}, so its {resource} utilization is undefined"
                    )
    return problems


def _hpas(run: ProgramRun) -> list[tuple[str, dict[str, Any], set[str]]]:
    return [
        (
            f"HorizontalPodAutoscaler {h.inputs['metadata'].get('namespace')}/"
            f"{h.inputs['metadata']['name']}",
            h.inputs["spec"],
            waits_for(run, h),
        )
        for h in run.of_type(HPA)
    ]


def _cluster_has_one(settings: Settings) -> bool:
    return settings.cluster.mode == "existing" and not settings.cluster.installs_metrics_server


@pytest.mark.parametrize("case", CASES)
def test_every_hpa_metric_has_a_source(case: str) -> None:
    run, settings = _case(case)
    sources = [s.urn for s in metric_sources(run)]
    assert source_problems(_hpas(run), sources, _cluster_has_one(settings)) == []


@pytest.mark.parametrize("case", CASES)
def test_resource_metric_targets_request_the_resource(case: str) -> None:
    run, _ = _case(case)
    assert request_problems(kubernetes_objects(run)) == []


def test_the_stacks_and_variants_render_hpas() -> None:
    # The checks above would pass vacuously without HPAs: each AWS stack serves a model, and
    # the local variants do too.
    for stack in AWS_STACKS:
        assert stack_run(stack).of_type(HPA), stack
    for source, insecure in _VARIANTS.values():
        assert _local_run(source, insecure).of_type(HPA)


def test_the_checks_catch_a_metric_without_a_source_and_a_pod_without_requests() -> None:
    cpu = {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization"}}}
    custom = {"type": "Pods", "pods": {"metric": {"name": "requests_per_second"}}}
    hpas = [("hpa a", {"metrics": [cpu]}, set()), ("hpa b", {"metrics": [custom]}, {"urn:x"})]
    problems = source_problems(hpas, [], cluster_has_one=False)
    assert [p.split(":")[0] for p in problems] == ["hpa a", "hpa b"]
    assert "neither installs it" in problems[0]
    assert "adapter" in problems[1]
    # Installed, but the HPA does not wait for it.
    assert "created before" in source_problems(hpas[:1], ["urn:ms"], cluster_has_one=False)[0]
    # The adapter problem stands even where the cluster has a metrics server.
    assert len(source_problems(hpas, [], cluster_has_one=True)) == 1

    deployment = {
        "kind": "Deployment",
        "metadata": {"namespace": "ns", "name": "app"},
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {"name": "app", "resources": {"requests": {"cpu": "1"}}},
                        {"name": "proxy", "resources": {"requests": {"memory": "1Gi"}}},
                    ],
                    "initContainers": [
                        {"name": "sidecar", "restartPolicy": "Always"},
                        {"name": "setup"},
                    ],
                }
            }
        },
    }
    hpa = {
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"namespace": "ns", "name": "app"},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "app"},
            "metrics": [cpu],
        },
    }
    problems = request_problems([deployment, hpa])
    # The proxy and the sidecar lack a cpu request; a plain init container does not count.
    assert [p.split("container ")[1].split(" ")[0] for p in problems] == ["proxy", "sidecar"]


# --- AWS: the EKS add-on ---------------------------------------------------------------------


def _addon(run: ProgramRun) -> RegisteredResource:
    [addon] = [a for a in run.of_type(ADDON) if a.inputs["addonName"] == metrics_server.ADDON]
    return addon


def test_eks_addon_is_pinned_for_the_cluster_version(aws_run: ProgramRun) -> None:
    minor = stack_settings(aws_run.stack).cluster.kubernetes_version
    addon = _addon(aws_run)
    assert addon.inputs["addonVersion"] == versions.EKS_ADDON_VERSIONS[minor].metrics_server
    assert addon.inputs["addonVersion"].startswith(f"v{CHART['app_version']}-eksbuild.")
    assert addon.inputs["resolveConflictsOnUpdate"] == "OVERWRITE"


def test_eks_addon_version_can_be_overridden() -> None:
    config = stack_config("dev")
    config["ml-platform:aws"]["addons"] = {"metricsServer": "v0.8.1-eksbuild.11"}
    assert _addon(run_program("dev", config)).inputs["addonVersion"] == "v0.8.1-eksbuild.11"


def test_eks_addon_runs_on_the_system_nodes(aws_run: ProgramRun) -> None:
    addon = _addon(aws_run)
    groups = {g.inputs["labels"]["ml-platform.io/pool"]: g for g in aws_run.of_type(NODE_GROUP)}
    # Its Deployment needs a node: it waits for the system pool, as CoreDNS does.
    assert groups["system"].urn in addon.dependencies
    # The add-on is given no configuration (its schema could not be read; see infra/addons.py).
    # Every pool but the system pool is tainted, so a pod that tolerates nothing, as the
    # upstream chart's does (AWS's build is assumed to keep that default), lands on the system
    # nodes only.
    assert addon.inputs.get("configurationValues") is None
    assert CHART["default_tolerations"] == []
    for pool, group in groups.items():
        if pool != "system":
            assert group.inputs["taints"], pool
    assert not groups["system"].inputs.get("taints")


def test_served_models_wait_for_the_addon(aws_run: ProgramRun) -> None:
    addon = _addon(aws_run)
    hpas = aws_run.of_type(HPA)
    assert hpas
    assert all(addon.urn in waits_for(aws_run, h) for h in hpas)


def test_no_chart_on_eks(aws_run: ProgramRun) -> None:
    assert not [r for r in aws_run.of_type(RELEASE) if r.inputs["chart"] == CHART["chart"]]


# --- Existing clusters: the chart, or the cluster's own ----------------------------------------


def _release(run: ProgramRun) -> RegisteredResource:
    [release] = [r for r in run.of_type(RELEASE) if r.inputs["chart"] == CHART["chart"]]
    return release


def test_chart_is_the_pinned_upstream_release() -> None:
    pin = versions.METRICS_SERVER_CHART
    assert (pin.chart, pin.version, pin.repository) == (
        CHART["chart"],
        CHART["version"],
        CHART["repository"],
    )
    release = _release(stack_run("local")).inputs
    assert (release["chart"], release["version"], release["repositoryOpts"]["repo"]) == (
        pin.chart,
        pin.version,
        pin.repository,
    )
    assert (release["name"], release["namespace"]) == ("metrics-server", "kube-system")
    assert release["atomic"] is True


def test_local_stack_tells_the_chart_to_skip_kinds_kubelet_certificates() -> None:
    # kind's kubelets serve self-signed certificates; the project's own kind run passes the flag.
    assert CHART["kind_kubelet_flag"] in CHART["kind_test_args"]
    assert stack_settings("local").cluster.metrics_server.kubelet_insecure_tls is True
    values = _release(stack_run("local")).inputs["values"]
    assert values["args"] == [CHART["kind_kubelet_flag"]]


def test_kubelet_certificates_are_verified_unless_asked() -> None:
    values = _release(_local_run("install", False)).inputs["values"]
    assert CHART["kind_kubelet_flag"] not in values.get("args", [])
    assert (
        metrics_server.chart_values(kubelet_insecure_tls=False, placement=Placement({}, [])) == {}
    )


def test_an_existing_metrics_server_is_left_alone() -> None:
    run = _local_run("existing", False)
    assert metric_sources(run) == []
    assert run.of_type(HPA)


def test_served_models_wait_for_the_chart() -> None:
    run = _local_run()
    release = _release(run)
    hpas = run.of_type(HPA)
    assert hpas
    assert all(release.urn in waits_for(run, h) for h in hpas)


def test_chart_pod_meets_pod_security_restricted() -> None:
    # It lands in kube-system, whose Pod Security level is the cluster's (the program labels no
    # Kubernetes namespace); the chart's own defaults already meet `restricted`, and the program
    # changes none of them.
    values = _release(_local_run()).inputs["values"]
    assert set(values) <= set(CHART["settable"])
    context = CHART["security_context"]
    assert context["runAsNonRoot"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["seccompProfile"] == {"type": "RuntimeDefault"}
    assert context["capabilities"]["drop"] == ["ALL"]
    assert CHART["host_network"] is False
    assert CHART["volumes"] == ["emptyDir"]
    assert not any(
        r.inputs["metadata"]["name"] == "kube-system"
        for r in stack_run("local").of_type("kubernetes:core/v1:Namespace")
    )
