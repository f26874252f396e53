"""What a GPU pool's nodes offer, given its sharing mode, and how the GPU Operator is told.

Each pool with sharing gets a named device-plugin configuration; the pool's nodes select it with
the `nvidia.com/device-plugin.config` label, MIG pools their partition layout with
`nvidia.com/mig.config`.  The same functions give the schedulability check each node's capacity.
"""

from __future__ import annotations

from typing import Any

import yaml

from infra import instances
from infra.settings import GpuPoolSettings

GPU = "nvidia.com/gpu"
SHARED_GPU = "nvidia.com/gpu.shared"
MIG_PREFIX = "nvidia.com/mig-"
DEVICE_PLUGIN_CONFIG_LABEL = "nvidia.com/device-plugin.config"
MIG_CONFIG_LABEL = "nvidia.com/mig.config"
DEFAULT_CONFIG = "default"


def is_gpu_resource(name: str) -> bool:
    """True for every resource name a GPU pool may advertise."""
    return name in (GPU, SHARED_GPU) or name.startswith(MIG_PREFIX)


def config_name(pool: GpuPoolSettings) -> str:
    return DEFAULT_CONFIG if pool.sharing.mode == "none" else pool.name


def resource_name(pool: GpuPoolSettings) -> str:
    """The extended resource a pod requests to get a GPU (or a share of one) on this pool."""
    sharing = pool.sharing
    if sharing.mode == "time-slicing" and sharing.rename_shared:
        return SHARED_GPU
    if sharing.mode == "mig" and sharing.mig_strategy == "mixed":
        return f"{MIG_PREFIX}{sharing.mig_profile}"
    return GPU


def units_per_node(pool: GpuPoolSettings) -> int:
    """How many of `resource_name(pool)` one node of the pool advertises."""
    sharing = pool.sharing
    if sharing.mode == "time-slicing":
        return pool.gpus_per_node * (sharing.replicas or 1)
    if sharing.mode == "mig":
        instance = instances.GPU_INSTANCE_TYPES[pool.instance_types[0]]
        per_gpu = instances.mig_profiles(instance)[sharing.mig_profile or ""]
        return pool.gpus_per_node * per_gpu
    return pool.gpus_per_node


def units_per_gpu(pool: GpuPoolSettings) -> int:
    """How many of `resource_name(pool)` one physical GPU of the pool makes."""
    return units_per_node(pool) // pool.gpus_per_node


def max_per_container(pool: GpuPoolSettings) -> int | None:
    """A cap on one container's request: time-sliced shares are handed out one at a time."""
    return 1 if pool.sharing.mode == "time-slicing" else None


def node_labels(pool: GpuPoolSettings) -> dict[str, str]:
    """Labels the pool's nodes carry so the GPU Operator applies the pool's configuration."""
    labels = {DEVICE_PLUGIN_CONFIG_LABEL: config_name(pool)}
    if pool.sharing.mode == "mig":
        labels[MIG_CONFIG_LABEL] = f"all-{pool.sharing.mig_profile}"
    return labels


def mig_strategy(pools: list[GpuPoolSettings]) -> str:
    """The one MIG strategy of the stack (settings refuse mixed strategies)."""
    return next((p.sharing.mig_strategy for p in pools if p.sharing.mode == "mig"), "single")


def _plugin_config(pool: GpuPoolSettings | None, strategy: str) -> dict[str, Any]:
    config: dict[str, Any] = {"version": "v1", "flags": {"migStrategy": "none"}}
    if pool is None:
        return config
    if pool.sharing.mode == "mig":
        config["flags"]["migStrategy"] = strategy
    elif pool.sharing.mode == "time-slicing":
        config["sharing"] = {
            "timeSlicing": {
                "renameByDefault": pool.sharing.rename_shared,
                # A request for two shares would get two slices of one GPU, not two GPUs.
                "failRequestsGreaterThanOne": True,
                "resources": [{"name": GPU, "replicas": pool.sharing.replicas}],
            }
        }
    return config


def device_plugin_configs(pools: list[GpuPoolSettings]) -> dict[str, str]:
    """Named device-plugin configurations (YAML text), one per sharing pool plus `default`."""
    strategy = mig_strategy(pools)
    configs = {DEFAULT_CONFIG: _plugin_config(None, strategy)}
    for pool in pools:
        if pool.sharing.mode != "none":
            configs[config_name(pool)] = _plugin_config(pool, strategy)
    return {name: yaml.safe_dump(config, sort_keys=True) for name, config in configs.items()}
