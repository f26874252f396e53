"""The one scheduling contract between node pools and workloads.

A pool's labels and taints are defined here once, from its settings.  Node pools apply them
through the EKS API; workloads get their nodeSelector and tolerations from `placement()`, never
by hand, so the two cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from infra import gpu_sharing, instances, labels
from infra.settings import GpuPoolSettings, Settings

GPU_RESOURCE = "nvidia.com/gpu"

POOL_LABEL = f"{labels.PREFIX}/pool"
NODE_CLASS_LABEL = f"{labels.PREFIX}/node-class"
ACCELERATOR_LABEL = f"{labels.PREFIX}/accelerator"

SYSTEM_POOL = "system"

# cluster-autoscaler's GPU label on AWS (kubernetes/autoscaler@cluster-autoscaler-1.35.2:
# cluster-autoscaler/cloudprovider/aws/aws_cloud_provider.go:39, GPULabel; README.md "Special
# note on GPU instances").  A node carrying it that advertises no GPU yet counts as not ready
# (processors/customresources/gpu_processor.go, FilterOutNodesWithUnreadyResources), so while
# the device plugin starts the autoscaler waits instead of adding more GPU nodes for the same
# pending pods.  "Advertises a GPU" means a non-zero nvidia.com/gpu (or another vendor's
# resource; utils/gpu/gpu.go GPUVendorResourceNames, NodeHasGpuAllocatable): nodes that offer
# only nvidia.com/gpu.shared or nvidia.com/mig-<profile> would count as not ready for good, so
# those pools do not carry the label and the autoscaler cannot tell their GPUs are still coming.
AUTOSCALER_GPU_LABEL = "k8s.amazonaws.com/accelerator"
# A managed node group has one set of labels, so a pool of several GPU models (g5 and g6, say)
# cannot name each node's; it says so instead of naming one of them wrongly.
MIXED_GPU_MODELS = "nvidia-mixed"

_EKS_EFFECT = {
    "NoSchedule": "NO_SCHEDULE",
    "NoExecute": "NO_EXECUTE",
    "PreferNoSchedule": "PREFER_NO_SCHEDULE",
}


@dataclass(frozen=True)
class Taint:
    """A node taint, spelled for Kubernetes; `eks()` gives the EKS API spelling."""

    key: str
    value: str
    effect: Literal["NoSchedule", "NoExecute", "PreferNoSchedule"]

    def eks(self) -> dict[str, str]:
        return {"key": self.key, "value": self.value, "effect": _EKS_EFFECT[self.effect]}

    def toleration(self) -> dict[str, str]:
        return {"key": self.key, "operator": "Equal", "value": self.value, "effect": self.effect}


# Keeps CPU pods off expensive GPU nodes.  Pods that request nvidia.com/gpu get a matching
# toleration from EKS's ExtendedResourceToleration admission plugin, but we set it explicitly so
# the contract also holds on clusters without that plugin.
GPU_TAINT = Taint(GPU_RESOURCE, "present", "NoSchedule")


@dataclass(frozen=True)
class Placement:
    """Where a workload may run: the pod spec's nodeSelector and tolerations."""

    node_selector: dict[str, str]
    tolerations: list[dict[str, str]]

    def pod_fields(self) -> dict[str, Any]:
        """`nodeSelector` and `tolerations` as a pod spec (and the charts' values) spell them,
        each only when set."""
        fields: dict[str, Any] = {}
        if self.node_selector:
            fields["nodeSelector"] = dict(self.node_selector)
        if self.tolerations:
            fields["tolerations"] = list(self.tolerations)
        return fields


def system_pool_labels() -> dict[str, str]:
    return {POOL_LABEL: SYSTEM_POOL, NODE_CLASS_LABEL: "system"}


def autoscaler_gpu_labels(pool: GpuPoolSettings) -> dict[str, str]:
    """The autoscaler's GPU label with the pool's GPU type, where the label is safe (see above)."""
    if gpu_sharing.resource_name(pool) != gpu_sharing.GPU:
        return {}
    models = {instances.GPU_INSTANCE_TYPES[t].gpu_model for t in pool.instance_types}
    value = instances.autoscaler_gpu_type(*models) if len(models) == 1 else MIXED_GPU_MODELS
    return {AUTOSCALER_GPU_LABEL: value}


def gpu_pool_labels(pool: GpuPoolSettings) -> dict[str, str]:
    """The pool's identity, the labels that select its GPU sharing configuration, and the
    autoscaler's GPU label."""
    return {
        POOL_LABEL: pool.name,
        NODE_CLASS_LABEL: "gpu",
        ACCELERATOR_LABEL: "nvidia",
        **gpu_sharing.node_labels(pool),
        **autoscaler_gpu_labels(pool),
    }


# Every GPU pool carries the same taint, whatever its instance types.
GPU_POOL_TAINTS = (GPU_TAINT,)


def placement(settings: Settings, pool_name: str) -> Placement:
    """The nodeSelector and tolerations that land a workload on the named pool.

    On an existing cluster the program does not label the nodes, so platform controllers go
    wherever the scheduler puts them; its GPU nodes must carry the pool labels and taint (README).
    """
    if pool_name == SYSTEM_POOL:
        if settings.cluster.mode == "existing":
            return Placement({}, [])
        return Placement({POOL_LABEL: SYSTEM_POOL}, [])
    for pool in settings.node_pools.gpu:
        if pool.name == pool_name:
            return Placement(
                {POOL_LABEL: pool.name},
                [taint.toleration() for taint in GPU_POOL_TAINTS],
            )
    known = [SYSTEM_POOL, *(p.name for p in settings.node_pools.gpu)]
    raise KeyError(f"no node pool {pool_name!r} in this stack; pools: {', '.join(known)}")
