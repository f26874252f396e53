"""GPU hours and cost per team, as PromQL on the exporters' own series.

One definition serves the recording rules (evaluated continuously), the cost dashboard (which
sums the recorded series over its time range) and `python -m reports.gpu` (which sums the same
expressions over raw history, so it also covers time before the rules existed).

What counts (per team namespace, GPU pool and instance type, in GPUs at one instant):

* allocated: the GPU requests of Running pods, kube-state-metrics'
  `kube_pod_container_resource_requests` (every resource a pool advertises: `nvidia.com/gpu`,
  time-sliced `nvidia.com/gpu.shared`, MIG `nvidia.com/mig-*`), each unit weighed as the GPUs of
  its node divided by the units the node advertises (`kube_node_status_capacity`).  A whole GPU
  is 1, a time-sliced share 1/replicas, a MIG slice 1/slices-per-GPU.  The node's GPUs are the
  distinct `gpu` indices dcgm-exporter reports for it; when it reports none, a whole GPU still
  counts 1.  Pods that are Pending, finished, or CPU-only count nothing, and a GPU no pod
  requests is never anyone's.
* busy: utilisation-weighted GPUs.  On a node whose `nvidia.com/gpu` is one GPU per unit, a GPU
  dcgm-exporter maps to a pod (`namespace`/`pod` labels) counts its own DCGM_FI_DEV_GPU_UTIL / 100
  for that pod's team.  A share is any GPU request on a node that advertises more units of the
  resource than it has GPUs (GPUs per unit under 1): time-sliced `nvidia.com/gpu.shared`, and
  `nvidia.com/gpu` itself when a pool does not rename its shares (`renameShared: false`).
  dcgm-exporter does not map a renamed share to a pod, and maps an unrenamed shared GPU to only
  one of the pods sharing it (tests/upstream/dcgm-exporter.yaml `mapped_resources`,
  `shared_device_maps_to_one_pod`), so neither label says who used it: a share counts its weight
  times the mean utilisation of its node's GPUs, whatever pod they are mapped to, and the pods
  sharing a node split its busy time by their shares, not by who really ran the kernels (which
  nothing exports).  GPUs the exporter maps to a pod on such a node are not counted again.
* idle: allocated GPUs whose utilisation is under IDLE_BELOW percent (the GpuIdleWhileAllocated
  alert's threshold); a share is idle while its node's mean utilisation is.

MIG slices count as allocated (and cost), but not as busy or idle: DCGM_FI_DEV_GPU_UTIL is a
whole-GPU field, which the exporter does not report per MIG instance.  (Under the `single` MIG
strategy slices are advertised as `nvidia.com/gpu`, fewer than one GPU per unit, so they take
the share path, which finds no utilisation for them either.)
"""

from __future__ import annotations

from typing import Any

from infra import alerts, gpu_sharing, instances
from infra.label_names import ksm_label, sanitise
from infra.scheduling import POOL_LABEL
from infra.settings import Settings

# Percent utilisation under which an allocated GPU is idle (as GpuIdleWhileAllocated).
IDLE_BELOW = 5

# Recorded series, per team namespace, pool and instance type.
ALLOCATED = "ml_platform:gpus_allocated:by_team_pool"
BUSY = "ml_platform:gpus_busy:by_team_pool"
IDLE = "ml_platform:gpus_idle:by_team_pool"
COST = "ml_platform:gpu_cost_usd_per_hour:by_team_pool"
# USD per GPU-hour, per instance type (from the catalogue and `gpu.prices`).
PRICE = "ml_platform:gpu_price_usd_per_gpu_hour"
# The labels every series above is kept by.
BY = ("namespace", "pool", "instance_type")
GROUP = "ml-platform.gpu-cost"


# The node labels the rules read from kube_node_labels.  kube-state-metrics exports no node label
# unless allowed (monitoring.kube_state_metrics_label_allowlist).
INSTANCE_TYPE_NODE_LABEL = "node.kubernetes.io/instance-type"
NODE_LABELS = (POOL_LABEL, INSTANCE_TYPE_NODE_LABEL)

SHARED = sanitise(gpu_sharing.SHARED_GPU)
WHOLE = sanitise(gpu_sharing.GPU)


def _on_node(selector: str) -> str:
    """A dcgm-exporter series with its `hostname` (the node's name) also as `node`, the label
    kube-state-metrics names nodes by."""
    return f'label_replace({selector}, "node", "$1", "hostname", "(.+)")'


# A node's GPUs: distinct GPU indices dcgm-exporter reports (GPU_TEMP: a whole-GPU field present
# on every GPU, held or not).
_NODE_GPUS = f"count by (node) (count by (node, gpu) ({_on_node('DCGM_FI_DEV_GPU_TEMP')}))"
# GPUs per advertised unit of each GPU resource on each node.
_GPUS_PER_UNIT = (
    f"({_NODE_GPUS} / on (node) group_right ()"
    f' max by (node, resource) (kube_node_status_capacity{{resource=~"{alerts.GPU_REQUESTS}"}}))'
    " or on (node, resource)"
    f' (max by (node, resource) (kube_node_status_capacity{{resource="{WHOLE}"}}) * 0 + 1)'
)
# Nodes whose GPUs are shared: some GPU resource there is under one GPU per unit.
_SHARED_NODES = f"max by (node) (({_GPUS_PER_UNIT}) < 1)"
# Each node's pool and instance type, from its labels.
_NODE_INFO = (
    "max by (node, pool, instance_type) (label_replace(label_replace(kube_node_labels,"
    f' "pool", "$1", "{ksm_label(POOL_LABEL)}", "(.*)"),'
    f' "instance_type", "$1", "{ksm_label(INSTANCE_TYPE_NODE_LABEL)}", "(.*)"))'
)


def _pod_gpus(resources: str, per_unit: str = _GPUS_PER_UNIT) -> str:
    """GPUs each Running pod holds through `resources` (a regex of kube-state-metrics resource
    names), by namespace, pod, uid, node and resource; only where `per_unit` (GPUs per unit, by
    node and resource) has a value."""
    # `max by` first: while kube-state-metrics rolls over, two of its pods report the same pod
    # (series that differ only in their target labels), which must count once and must not
    # make the join many-to-many.
    requests = (
        "sum by (namespace, pod, uid, node, resource) (max by (namespace, pod, uid, container,"
        f' node, resource) (kube_pod_container_resource_requests{{resource=~"{resources}"}})'
        " * on (namespace, pod, uid) group_left ()"
        ' (max by (namespace, pod, uid) (kube_pod_status_phase{phase="Running"}) == 1))'
    )
    return f"({requests} * on (node, resource) group_left () ({per_unit}))"


def _by_team(per_node: str) -> str:
    """A vector with `namespace` and `node` labels, summed per team, pool and instance type."""
    return (
        f"sum by ({', '.join(BY)}) ({per_node} * on (node) group_left (pool, instance_type)"
        f" {_NODE_INFO})"
    )


def _both(mapped: str, shared: str) -> str:
    """The sum of two {namespace, node} vectors (`or` alone would drop a matching second)."""
    return (
        f'sum by (namespace, node) (label_replace({mapped}, "share", "mapped", "", "")'
        f' or label_replace({shared}, "share", "shared", "", ""))'
    )


# Utilisation of GPUs dcgm-exporter maps to a pod on nodes that do not share them, and the mean
# utilisation of each node's GPUs (one value per GPU: a GPU whose mapped pod just changed has a
# series per pod until the old one goes stale).
_MAPPED = _on_node('DCGM_FI_DEV_GPU_UTIL{pod!=""}')
_MAPPED_UTIL = f"({_MAPPED} unless on (node) {_SHARED_NODES})"
_NODE_UTIL = f"avg by (node) (max by (node, gpu) ({_on_node('DCGM_FI_DEV_GPU_UTIL')}))"
# Shares: requests of whole or time-sliced GPUs on nodes with under one GPU per unit.
_SHARES = _pod_gpus(f"{WHOLE}|{SHARED}", f"({_GPUS_PER_UNIT}) < 1")

ALLOCATED_EXPR = _by_team(f"sum by (namespace, node) ({_pod_gpus(alerts.GPU_REQUESTS)})")
BUSY_EXPR = _by_team(
    _both(
        f"sum by (namespace, node) ({_MAPPED_UTIL}) / 100",
        f"sum by (namespace, node) ({_SHARES} * on (node) group_left () ({_NODE_UTIL} / 100))",
    )
)
IDLE_EXPR = _by_team(
    _both(
        f"count by (namespace, node) ({_MAPPED_UTIL} < {IDLE_BELOW})",
        f"sum by (namespace, node) ({_SHARES} * on (node) group_left ()"
        f" (({_NODE_UTIL} < {IDLE_BELOW}) * 0 + 1))",
    )
)
# What each recorded series is, for the report to query raw.
EXPRESSIONS = {ALLOCATED: ALLOCATED_EXPR, BUSY: BUSY_EXPR, IDLE: IDLE_EXPR}


def prices(settings: Settings) -> dict[str, float]:
    """USD per GPU-hour for every instance type of the stack's GPU pools and of `gpu.prices`
    that has a price (list or the stack's)."""
    types = {t for pool in settings.node_pools.gpu for t in pool.instance_types}
    types |= set(settings.gpu.prices)
    found = {t: instances.price_per_gpu_hour(t, settings.gpu.prices) for t in sorted(types)}
    return {t: price for t, price in found.items() if price is not None}


def rule_group(settings: Settings) -> dict[str, Any]:
    """The recording rules: GPUs allocated, busy and idle per team, pool and instance type; one
    constant price series per priced instance type (a recording rule of `vector(<price>)`,
    generated from the settings, so a price change is a config change and needs no exporter);
    and the cost per hour, allocated GPUs times their instance type's price per GPU."""
    rules: list[dict[str, Any]] = [
        {"record": name, "expr": expr} for name, expr in EXPRESSIONS.items()
    ]
    rules += [
        {"record": PRICE, "expr": f"vector({price!r})", "labels": {"instance_type": itype}}
        for itype, price in prices(settings).items()
    ]
    rules.append(
        {
            "record": COST,
            "expr": f"{ALLOCATED} * on (instance_type) group_left () {PRICE}",
        }
    )
    return {"name": GROUP, "rules": rules}
