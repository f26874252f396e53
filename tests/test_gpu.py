"""GPU enablement and scheduling: operator values, sharing, scheduler, priorities, placement."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness import render
from harness.program import ProgramRun, raw_settings, stack_settings
from harness.render import kubernetes_objects
from infra import gpu_sharing, instances, schedulability, versions
from infra.binpack_scheduler import SCHEDULER_NAME
from infra.gpu_operator import operator_values
from infra.priorities import BATCH, SERVING, TRAINING
from infra.scheduling import GPU_TAINT, placement
from infra.settings import Settings, parse_settings
from tests.conftest import STACKS, stack_run

GPU_STACKS = ["dev", "prod"]


def _operator(run: ProgramRun) -> dict[str, Any]:
    [release] = [
        r.inputs
        for r in run.of_type("kubernetes:helm.sh/v3:Release")
        if r.inputs["chart"] == "gpu-operator"
    ]
    return release


@pytest.mark.parametrize("stack", GPU_STACKS)
def test_gpu_operator_is_pinned_and_reaches_tainted_gpu_nodes(stack: str) -> None:
    release = _operator(stack_run(stack))
    assert release["version"] == versions.GPU_OPERATOR_CHART.version
    assert release["namespace"] == "gpu-system"
    values = release["values"]
    # EKS NVIDIA AMIs bring the driver and toolkit; the operator must not fight them.
    assert values["driver"]["enabled"] is False
    assert values["toolkit"]["enabled"] is False
    for tolerations in (
        values["daemonsets"]["tolerations"],
        values["node-feature-discovery"]["worker"]["tolerations"],
    ):
        assert {
            "key": "nvidia.com/gpu",
            "operator": "Exists",
            "effect": "NoSchedule",
        } in tolerations
    assert values["gfd"]["enabled"] is True
    assert values["devicePlugin"]["config"]["default"] == "default"


def test_local_stack_without_gpu_pools_installs_no_operator() -> None:
    charts = [
        r.inputs["chart"] for r in stack_run("local").of_type("kubernetes:helm.sh/v3:Release")
    ]
    assert "gpu-operator" not in charts


def test_prod_time_slices_its_serving_pool() -> None:
    values = _operator(stack_run("prod"))["values"]
    configs = {
        name: yaml.safe_load(text)
        for name, text in values["devicePlugin"]["config"]["data"].items()
    }
    assert set(configs) == {"default", "serving"}
    slicing = configs["serving"]["sharing"]["timeSlicing"]
    assert slicing == {
        "renameByDefault": True,
        "failRequestsGreaterThanOne": True,
        "resources": [{"name": "nvidia.com/gpu", "replicas": 4}],
    }
    assert configs["default"] == {"version": "v1", "flags": {"migStrategy": "none"}}
    groups = {
        g.inputs["labels"]["ml-platform.io/pool"]: g.inputs["labels"]
        for g in stack_run("prod").of_type("aws:eks/nodeGroup:NodeGroup")
    }
    assert groups["serving"]["nvidia.com/device-plugin.config"] == "serving"
    assert groups["training"]["nvidia.com/device-plugin.config"] == "default"
    assert "nvidia.com/device-plugin.config" not in groups["system"]


def _with_pool(stack: str, **pool: Any) -> Settings:
    raw = raw_settings(stack)
    base = {"name": "extra", "minSize": 0, "maxSize": 2}
    raw["nodePools"]["gpu"].append({**base, **pool})
    return parse_settings(raw, stack)


def test_mig_pool_labels_capacity_and_strategy() -> None:
    settings = _with_pool(
        "prod",
        instanceTypes=["p5.48xlarge"],
        sharing={"mode": "mig", "migProfile": "1g.10gb", "migStrategy": "mixed"},
    )
    pool = settings.node_pools.gpu[-1]
    assert gpu_sharing.node_labels(pool) == {
        "nvidia.com/device-plugin.config": "extra",
        "nvidia.com/mig.config": "all-1g.10gb",
    }
    assert gpu_sharing.resource_name(pool) == "nvidia.com/mig-1g.10gb"
    assert gpu_sharing.units_per_node(pool) == 8 * 7
    configs = {
        k: yaml.safe_load(v)
        for k, v in gpu_sharing.device_plugin_configs(settings.node_pools.gpu).items()
    }
    assert configs["extra"]["flags"]["migStrategy"] == "mixed"
    assert gpu_sharing.mig_strategy(settings.node_pools.gpu) == "mixed"


def test_time_sliced_capacity() -> None:
    prod = stack_settings("prod")
    serving = next(p for p in prod.node_pools.gpu if p.name == "serving")
    assert gpu_sharing.resource_name(serving) == "nvidia.com/gpu.shared"
    assert gpu_sharing.units_per_node(serving) == 4
    assert gpu_sharing.max_per_container(serving) == 1


# --- the bin-packing scheduler and priority classes ------------------------------------------


def _objects(stack: str) -> list[dict[str, Any]]:
    return kubernetes_objects(stack_run(stack))


def test_prod_runs_the_bin_packing_scheduler() -> None:
    objects = _objects("prod")
    [config_map] = [
        o for o in objects if o["kind"] == "ConfigMap" and "gpu-binpack" in o["metadata"]["name"]
    ]
    config = yaml.safe_load(config_map["data"]["config.yaml"])
    assert config["apiVersion"] == "kubescheduler.config.k8s.io/v1"
    assert config["leaderElection"]["leaderElect"] is True
    # Profiling endpoints stay off on the port Prometheus scrapes.
    assert config["enableProfiling"] is False
    [profile] = config["profiles"]
    assert profile["schedulerName"] == SCHEDULER_NAME
    [fit] = profile["pluginConfig"]
    strategy = fit["args"]["scoringStrategy"]
    assert strategy["type"] == "MostAllocated"
    weights = {r["name"]: r["weight"] for r in strategy["resources"]}
    assert weights["nvidia.com/gpu"] > weights["cpu"]
    assert weights["nvidia.com/gpu.shared"] > weights["memory"]
    [deployment] = [
        o
        for o in objects
        if o["kind"] == "Deployment" and o["metadata"]["name"] == "gpu-binpack-scheduler"
    ]
    pod = deployment["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert (
        container["image"]
        == f"registry.k8s.io/kube-scheduler:{versions.KUBE_SCHEDULER_TAGS['1.35']}"
    )
    assert pod["nodeSelector"] == {"ml-platform.io/pool": "system"}
    bindings = {
        o["roleRef"]["name"]
        for o in objects
        if o["kind"] in ("ClusterRoleBinding", "RoleBinding")
        and "gpu-binpack" in o["metadata"]["name"]
    }
    assert {
        "system:kube-scheduler",
        "system:volume-scheduler",
        "extension-apiserver-authentication-reader",
        "gpu-binpack-scheduler-lease",
    } <= bindings


def test_dev_leaves_the_scheduler_off() -> None:
    assert not [o for o in _objects("dev") if "gpu-binpack" in o["metadata"]["name"]]


@pytest.mark.parametrize("stack", STACKS)
def test_no_removed_scheduler_api_or_master_taint(stack: str) -> None:
    rendered = json.dumps(_objects(stack)) + json.dumps(
        [r.as_json() for r in stack_run(stack).resources]
    )
    assert "kubescheduler.config.k8s.io/v1beta" not in rendered
    assert "node-role.kubernetes.io/master" not in rendered
    assert "PodSecurityPolicy" not in rendered


@pytest.mark.parametrize("stack", STACKS)
def test_priority_classes_order_serving_over_training_over_batch(stack: str) -> None:
    classes = {o["metadata"]["name"]: o for o in _objects(stack) if o["kind"] == "PriorityClass"}
    assert classes[SERVING]["value"] > classes[TRAINING]["value"] > classes[BATCH]["value"]
    assert classes[TRAINING]["preemptionPolicy"] == "PreemptLowerPriority"
    assert classes[BATCH]["preemptionPolicy"] == "Never"
    assert not any(c["globalDefault"] for c in classes.values())


# --- the static schedulability check -------------------------------------------------------------


@pytest.mark.parametrize("stack", STACKS)
def test_every_stack_is_schedulable(stack: str) -> None:
    assert schedulability.check(_objects(stack), stack_settings(stack)) == []


def _gpu_deployment(
    *,
    pool: str = "gpu",
    gpus: Any = 1,
    requests: Any = None,
    resource: str = "nvidia.com/gpu",
    cpu: str = "2",
    settings_stack: str = "dev",
) -> dict[str, Any]:
    where = placement(stack_settings(settings_stack), pool)
    resources: dict[str, Any] = {
        "limits": {resource: gpus, "cpu": cpu, "memory": "8Gi"},
        "requests": {"cpu": cpu},
    }
    if requests is not None:
        resources["requests"][resource] = requests
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "trainer", "namespace": "research"},
        "spec": {
            "template": {
                "spec": {
                    "nodeSelector": dict(where.node_selector),
                    "tolerations": list(where.tolerations),
                    "containers": [{"name": "main", "resources": resources}],
                }
            }
        },
    }


def test_a_workload_placed_by_the_contract_passes() -> None:
    assert schedulability.check([_gpu_deployment()], stack_settings("dev")) == []


def _pod(obj: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = obj["spec"]["template"]["spec"]
    return spec


def _problem(obj: dict[str, Any], stack: str = "dev") -> str:
    problems = schedulability.check([obj], stack_settings(stack))
    assert len(problems) == 1, problems
    return problems[0]


def test_fractional_gpu_is_refused() -> None:
    message = _problem(_gpu_deployment(gpus="0.5"))
    assert "Deployment research/trainer container main: nvidia.com/gpu" in message
    assert "'0.5' is not a whole number" in message


def test_requests_must_equal_limits() -> None:
    message = _problem(_gpu_deployment(gpus=2, requests=1))
    assert "requests (1) must equal limits (2)" in message


def test_gpu_only_in_requests_is_refused() -> None:
    obj = _gpu_deployment()
    resources = _pod(obj)["containers"][0]["resources"]
    resources["requests"]["nvidia.com/gpu"] = resources["limits"].pop("nvidia.com/gpu")
    assert "set in requests only" in _problem(obj)


def test_missing_toleration_names_the_pool_and_taint() -> None:
    obj = _gpu_deployment()
    del _pod(obj)["tolerations"]
    message = _problem(obj)
    assert "no node pool accepts it" in message
    assert "pool 'gpu': no toleration for its taint nvidia.com/gpu=present:NoSchedule" in message


def test_node_selector_no_pool_satisfies() -> None:
    obj = _gpu_deployment()
    _pod(obj)["nodeSelector"] = {"ml-platform.io/pool": "a100"}
    assert (
        "pool 'gpu': its nodes lack the nodeSelector label(s) ml-platform.io/pool=a100"
        in _problem(obj)
    )


def test_more_gpus_than_any_instance_has() -> None:
    message = _problem(_gpu_deployment(gpus=2))
    assert "2 nvidia.com/gpu > 1 per node (g5.xlarge, g6.xlarge)" in message


def test_cpu_request_larger_than_the_instance() -> None:
    message = _problem(_gpu_deployment(cpu="16"))
    assert "cpu request 16 > 3.60 allocatable per node" in message


def test_memory_request_larger_than_the_instance() -> None:
    obj = _gpu_deployment()
    _pod(obj)["containers"][0]["resources"]["requests"]["memory"] = "64Gi"
    assert "memory request 64.0Gi > 14.4Gi allocatable" in _problem(obj)


def test_required_node_affinity_is_honoured() -> None:
    obj = _gpu_deployment()
    del _pod(obj)["nodeSelector"]
    _pod(obj)["affinity"] = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {
                        "matchExpressions": [
                            {"key": "ml-platform.io/pool", "operator": "In", "values": ["gpu"]}
                        ]
                    }
                ]
            }
        }
    }
    assert schedulability.check([obj], stack_settings("dev")) == []
    terms = _pod(obj)["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    terms["nodeSelectorTerms"][0]["matchExpressions"][0]["operator"] = "NotIn"
    assert "match no required node affinity term" in _problem(obj)


def test_shared_gpus_are_granted_one_per_container() -> None:
    good = _gpu_deployment(pool="serving", resource="nvidia.com/gpu.shared", settings_stack="prod")
    assert schedulability.check([good], stack_settings("prod")) == []
    greedy = _gpu_deployment(
        pool="serving", resource="nvidia.com/gpu.shared", gpus=2, settings_stack="prod"
    )
    assert "time-sliced shares are granted 1 per container" in _problem(greedy, "prod")
    whole = _gpu_deployment(pool="serving", settings_stack="prod")
    assert "it offers nvidia.com/gpu.shared, not nvidia.com/gpu" in _problem(whole, "prod")


def test_tfjob_replicas_are_checked_one_by_one() -> None:
    pod = _pod(_gpu_deployment())
    bad_ps = copy.deepcopy(pod)
    del bad_ps["tolerations"]
    tfjob = {
        "apiVersion": "kubeflow.org/v1",
        "kind": "TFJob",
        "metadata": {"name": "mnist", "namespace": "research"},
        "spec": {
            "tfReplicaSpecs": {
                "Worker": {"template": {"spec": pod}},
                "Chief": {"template": {"spec": bad_ps}},
            }
        },
    }
    message = _problem(tfjob)
    assert message.startswith("TFJob research/mnist Chief (asks for 1 nvidia.com/gpu)")


def test_cpu_pods_may_not_tolerate_the_gpu_taint() -> None:
    daemon: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": "agent", "namespace": "research"},
        "spec": {
            "template": {
                "spec": {"tolerations": [GPU_TAINT.toleration()], "containers": [{"name": "a"}]}
            }
        },
    }
    assert "requests no GPU but tolerates the nvidia.com/gpu taint" in _problem(daemon)
    daemon["metadata"]["namespace"] = "gpu-system"  # a node agent meant for GPU nodes
    assert schedulability.check([daemon], stack_settings("dev")) == []
    wildcard = copy.deepcopy(daemon)
    wildcard["kind"] = "Deployment"
    _pod(wildcard)["tolerations"] = [{"operator": "Exists"}]
    assert "tolerates the nvidia.com/gpu taint" in _problem(wildcard)


def test_a_stack_without_gpu_pools_rejects_gpu_work() -> None:
    message = _problem(_gpu_deployment(), "local")
    assert message.endswith("no node pool accepts it: the stack has no GPU pool")


def test_render_reports_unschedulable_workloads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    real = render.kubernetes_objects

    def with_a_bad_job(run: ProgramRun) -> list[dict[str, Any]]:
        return [*real(run), _gpu_deployment(gpus="0.5")]

    monkeypatch.setattr(render, "kubernetes_objects", with_a_bad_job)
    assert render.main(["dev", "--out", str(tmp_path)]) == 1
    assert "is not a whole number of devices" in capsys.readouterr().out


def test_operator_installs_drivers_only_when_asked() -> None:
    raw = raw_settings("local")
    raw["nodePools"] = {
        "gpu": [{"name": "onprem", "instanceTypes": ["g5.xlarge"], "minSize": 1, "maxSize": 1}]
    }
    raw["gpu"] = {"driver": "operator"}
    values = operator_values(parse_settings(raw, "local"))
    assert values["driver"]["enabled"] is True
    assert values["toolkit"]["enabled"] is True
    assert values["migManager"]["enabled"] is False


def test_instance_catalogue_is_consistent() -> None:
    assert not [name for name in instances.GPU_INSTANCE_TYPES if name.startswith(("p2.", "p3."))]
    for instance in instances.GPU_INSTANCE_TYPES.values():
        assert instance.gpus >= 1
        assert instance.vcpus >= 4 * instance.gpus or instance.name.startswith("p")
        assert bool(instances.mig_profiles(instance)) == instance.mig_capable
