"""What cluster-autoscaler is told about GPU pools: its GPU label, and what an empty pool offers.

Both are read from upstream: the autoscaler's AWS provider at the image tag the program runs
(tests/upstream/cluster-autoscaler-aws-gpu.yaml) and the device plugin the GPU Operator deploys
(tests/upstream/k8s-device-plugin-resources.yaml).  The expectations here are built from those
facts, not from the program's own functions, and then compared with what the program registers
and with what its schedulability check and quotas count.
"""

from __future__ import annotations

from typing import Any

import pytest

from harness.program import ProgramRun, run_program, stack_config, stack_settings
from infra import instances, schedulability, team_quota, versions
from infra.scheduling import MIXED_GPU_MODELS
from infra.settings import GpuPoolSettings, Settings
from tests.conftest import AWS_STACKS, stack_run
from tests.upstream_facts import facts


def autoscaler(settings: Settings) -> dict[str, Any]:
    tag = versions.CLUSTER_AUTOSCALER_TAGS[settings.cluster.kubernetes_version]
    pinned = f"cluster-autoscaler-{tag.removeprefix('v')}"
    found: dict[str, Any] = facts("cluster-autoscaler-aws-gpu", pinned=pinned)
    return found


def device_plugin() -> dict[str, Any]:
    found: dict[str, Any] = facts(
        "k8s-device-plugin-resources", pinned=versions.GPU_OPERATOR_DEVICE_PLUGIN_VERSION
    )
    return found


def advertised(pool: GpuPoolSettings) -> tuple[str, int]:
    """The resource and count one node of `pool` advertises, by the device plugin's rules."""
    plugin = device_plugin()
    sharing = pool.sharing
    gpus = instances.GPU_INSTANCE_TYPES[pool.instance_types[0]].gpus
    if sharing.mode == "none":
        return plugin["gpu"], gpus
    if sharing.mode == "time-slicing":
        assert plugin["units_per_gpu_time_sliced"] == "replicas"
        assert sharing.replicas is not None
        name = plugin["gpu"] + (plugin["shared_suffix"] if sharing.rename_shared else "")
        return name, gpus * sharing.replicas
    profile = sharing.mig_profile or ""
    slices = instances.mig_profiles(instances.GPU_INSTANCE_TYPES[pool.instance_types[0]])[profile]
    if sharing.mig_strategy == "single":
        return plugin["mig_single"], gpus * slices
    return plugin["mig_mixed_prefix"] + profile, gpus * slices


# --- stacks with a pool of every sharing mode --------------------------------------------------

# name -> the pool's settings (on top of minSize 0); MIG's two strategies cannot share a stack.
SHARING_POOLS: dict[str, dict[str, Any]] = {
    "whole": {"instanceTypes": ["g6e.xlarge"]},
    "sliced": {
        "instanceTypes": ["g5.12xlarge"],
        "sharing": {"mode": "time-slicing", "replicas": 4},
    },
    "sliced-plain": {
        "instanceTypes": ["g6.xlarge"],
        "sharing": {"mode": "time-slicing", "replicas": 3, "renameShared": False},
    },
    "mig-single": {
        "instanceTypes": ["p5.48xlarge"],
        "sharing": {"mode": "mig", "migProfile": "2g.20gb", "migStrategy": "single"},
    },
    "mig-mixed": {
        "instanceTypes": ["p4d.24xlarge"],
        "sharing": {"mode": "mig", "migProfile": "1g.5gb", "migStrategy": "mixed"},
    },
}
SHARING_STACKS = {
    "single": ["whole", "sliced", "sliced-plain", "mig-single"],
    "mixed": ["mig-mixed"],
}


def _sharing_config(pools: list[str]) -> dict[str, Any]:
    config = stack_config("dev")
    config["ml-platform:nodePools"]["gpu"] += [
        {"name": name, "minSize": 0, "maxSize": 2, **SHARING_POOLS[name]} for name in pools
    ]
    return config


_runs: dict[str, tuple[ProgramRun, Settings]] = {}


def sharing_run(variant: str) -> tuple[ProgramRun, Settings]:
    if variant not in _runs:
        config = _sharing_config(SHARING_STACKS[variant])
        _runs[variant] = (run_program("dev", config), stack_settings("dev", config))
    return _runs[variant]


def _asg_tags(run: ProgramRun, settings: Settings, pool: str) -> dict[str, str]:
    component = f"{settings.cluster.name}-{pool}"
    by_urn = {r.urn: r for r in run.resources}
    return {
        tag.inputs["tag"]["key"]: tag.inputs["tag"]["value"]
        for tag in run.of_type("aws:autoscaling/tag:Tag")
        if by_urn[tag.parent or ""].name == component
    }


def _node_group(run: ProgramRun, pool: str) -> dict[str, Any]:
    [group] = [
        g.inputs
        for g in run.of_type("aws:eks/nodeGroup:NodeGroup")
        if g.inputs["labels"]["ml-platform.io/pool"] == pool
    ]
    return group


def _runs_and_pools() -> list[tuple[str, str]]:
    cases = [
        (stack, pool.name) for stack in AWS_STACKS for pool in stack_settings(stack).node_pools.gpu
    ]
    cases += [(f"sharing-{v}", name) for v, names in SHARING_STACKS.items() for name in names]
    return cases


def _run(stack: str) -> tuple[ProgramRun, Settings]:
    if stack.startswith("sharing-"):
        return sharing_run(stack.removeprefix("sharing-"))
    return stack_run(stack), stack_settings(stack)


def _pool(settings: Settings, name: str) -> GpuPoolSettings:
    return next(p for p in settings.node_pools.gpu if p.name == name)


# --- scale from zero ---------------------------------------------------------------------------


@pytest.mark.parametrize(("stack", "pool_name"), _runs_and_pools())
def test_empty_pool_offers_what_its_nodes_advertise(stack: str, pool_name: str) -> None:
    run, settings = _run(stack)
    pool = _pool(settings, pool_name)
    ca = autoscaler(settings)
    prefix = f"{ca['template_tag_prefix']}/resources/"
    resource, count = advertised(pool)
    expected = {resource: str(count)}
    # The template starts with the instance type's GPUs as nvidia.com/gpu; a pool whose nodes
    # advertise none says so.
    if resource != ca["template_gpus_from_instance_type"]:
        expected[ca["template_gpus_from_instance_type"]] = "0"
    tags = _asg_tags(run, settings, pool_name)
    resources = {k.removeprefix(prefix): v for k, v in tags.items() if k.startswith(prefix)}
    assert resources == expected
    # The node group carries the same template tags (the autoscaler reads those too).
    group_tags = _node_group(run, pool_name)["tags"]
    assert {k: v for k, v in group_tags.items() if k.startswith(prefix)} == {
        prefix + k: v for k, v in expected.items()
    }
    # What the schedulability check and the quotas count is the same resource and number.
    [capacity] = [c for c in schedulability.pool_capacities(settings) if c.name == pool_name]
    assert (capacity.resource, capacity.units) == (resource, count)
    gpus = instances.GPU_INSTANCE_TYPES[pool.instance_types[0]].gpus
    caps = team_quota.gpu_resource_caps(settings, gpus)
    assert caps[resource] >= count


# --- the autoscaler's GPU label ----------------------------------------------------------------


def expected_gpu_type(pool: GpuPoolSettings, ca: dict[str, Any]) -> str:
    """One model: the autoscaler's name for it (`nvidia-<model>` where it has none); several:
    a node group cannot label each node with its own, so `nvidia-mixed`."""
    known: dict[str, str] = {name.rsplit("-", 1)[1]: name for name in ca["gpu_types"]}
    models = {
        instances.GPU_INSTANCE_TYPES[t].gpu_model.removeprefix("NVIDIA ").lower()
        for t in pool.instance_types
    }
    if len(models) > 1:
        return MIXED_GPU_MODELS
    [model] = models
    return known.get(model, f"nvidia-{model}")


@pytest.mark.parametrize(("stack", "pool_name"), _runs_and_pools())
def test_pools_advertising_whole_gpus_carry_the_autoscaler_gpu_label(
    stack: str, pool_name: str
) -> None:
    run, settings = _run(stack)
    pool = _pool(settings, pool_name)
    ca = autoscaler(settings)
    label = ca["gpu_label"]
    labels = _node_group(run, pool_name)["labels"]
    tag = _asg_tags(run, settings, pool_name).get(f"{ca['template_tag_prefix']}/label/{label}")
    resource, _ = advertised(pool)
    if resource in ca["gpu_resources"]:
        assert labels.get(label) == expected_gpu_type(pool, ca)
        assert tag == labels[label], "node group label and ASG template tag differ"
    else:
        # Its nodes never show a GPU the autoscaler counts, so with the label they would stay
        # "not ready" for good.
        assert label not in labels
        assert tag is None


@pytest.mark.parametrize("stack", AWS_STACKS)
def test_every_whole_gpu_pool_of_the_stacks_is_labelled(stack: str) -> None:
    run, settings = _run(stack)
    label = autoscaler(settings)["gpu_label"]
    whole = [p for p in settings.node_pools.gpu if p.sharing.mode == "none"]
    assert whole
    for pool in whole:
        assert label in _node_group(run, pool.name)["labels"]


def test_gpu_types_use_the_autoscaler_spelling() -> None:
    ca = autoscaler(stack_settings("prod"))
    known = {name.rsplit("-", 1)[1]: name for name in ca["gpu_types"]}
    for instance in instances.GPU_INSTANCE_TYPES.values():
        model = instance.gpu_model.removeprefix("NVIDIA ").lower()
        assert instances.autoscaler_gpu_type(instance.gpu_model) == known.get(
            model, f"nvidia-{model}"
        )
    # The catalogue's A10G, L4, L40S, T4 and A100 are ones the autoscaler knows by name.
    named = {
        instances.autoscaler_gpu_type(i.gpu_model) for i in instances.GPU_INSTANCE_TYPES.values()
    }
    assert {"nvidia-a10g", "nvidia-l4", "nvidia-l40s", "nvidia-tesla-t4", "nvidia-tesla-a100"} <= (
        named & set(ca["gpu_types"])
    )
