"""A static check that every GPU workload in the rendered platform can land on some node pool.

Reads the Kubernetes objects as the API server would receive them (built-in workloads and the
Kubeflow custom resources that carry pod templates) and, for every pod template that asks for a
GPU resource, checks what the scheduler and the API server would: quantities are whole numbers,
requests equal limits, and at least one configured pool accepts the pod (labels satisfy its
nodeSelector and required node affinity, tolerations cover the pool's taints, the GPU count fits a
node after sharing, cpu and memory fit a node's allocatable).  It also refuses CPU-only pods that
tolerate the GPU taint, except node agents meant for GPU nodes.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from infra import gpu_sharing, instances, names
from infra.scheduling import GPU_POOL_TAINTS, GPU_TAINT, Taint, gpu_pool_labels
from infra.settings import Settings, quantity_value

# Node agents (DaemonSets) in these namespaces are meant to run on GPU nodes.
NODE_AGENT_NAMESPACES = frozenset({names.GPU, names.MONITORING, names.LOGGING})

# Labels GPU feature discovery puts on every GPU node, which selectors may use.
DISCOVERED_GPU_LABELS = {"nvidia.com/gpu.present": "true"}

# Share of an instance's cpu and memory left to pods after the kubelet, system reservations and
# eviction threshold (EKS AL2023 reserves roughly 6% of cpu and 8-10% of memory on GPU sizes).
ALLOCATABLE_SHARE = Decimal("0.9")

_REPLICA_SPECS = {
    "TFJob": "tfReplicaSpecs",
    "PyTorchJob": "pytorchReplicaSpecs",
    "MPIJob": "mpiReplicaSpecs",
    "XGBoostJob": "xgbReplicaSpecs",
}


@dataclass(frozen=True)
class PoolCapacity:
    """What one node of a GPU pool offers to pods."""

    name: str
    labels: dict[str, str]
    taints: tuple[Taint, ...]
    resource: str
    units: int
    max_per_container: int | None
    cpu: Decimal
    memory: Decimal
    instance_types: tuple[str, ...]


@dataclass(frozen=True)
class PodTemplate:
    workload: str  # e.g. "Deployment serving/tfserving-mnist" or "TFJob research/mnist Worker"
    namespace: str
    kind: str
    spec: dict[str, Any]


def pool_capacities(settings: Settings) -> list[PoolCapacity]:
    """Each GPU pool's node, sized by the smallest instance type in the pool."""
    capacities = []
    for pool in settings.node_pools.gpu:
        smallest = min(
            (instances.GPU_INSTANCE_TYPES[t] for t in pool.instance_types),
            key=lambda i: (i.vcpus, i.memory_gib),
        )
        capacities.append(
            PoolCapacity(
                name=pool.name,
                labels={**gpu_pool_labels(pool), **DISCOVERED_GPU_LABELS},
                taints=GPU_POOL_TAINTS,
                resource=gpu_sharing.resource_name(pool),
                units=gpu_sharing.units_per_node(pool),
                max_per_container=gpu_sharing.max_per_container(pool),
                cpu=Decimal(smallest.vcpus) * ALLOCATABLE_SHARE,
                memory=Decimal(smallest.memory_gib) * Decimal(2**30) * ALLOCATABLE_SHARE,
                instance_types=tuple(pool.instance_types),
            )
        )
    return capacities


def pod_templates(objects: list[dict[str, Any]]) -> Iterator[PodTemplate]:
    """Every pod template in the objects, wherever its kind keeps it."""
    for obj in objects:
        kind = obj.get("kind", "")
        metadata = obj.get("metadata", {})
        namespace = metadata.get("namespace", "default")
        where = f"{kind} {namespace}/{metadata.get('name')}"
        spec = obj.get("spec") or {}
        if kind == "Pod":
            yield PodTemplate(where, namespace, kind, spec)
        elif kind in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "Notebook"):
            yield PodTemplate(where, namespace, kind, (spec.get("template") or {}).get("spec", {}))
        elif kind == "CronJob":
            job = (spec.get("jobTemplate") or {}).get("spec", {})
            yield PodTemplate(where, namespace, kind, (job.get("template") or {}).get("spec", {}))
        elif kind == "Experiment":
            # Katib: every trial runs the template's job (its pods are checked like any job's).
            trial = ((spec.get("trialTemplate") or {}).get("trialSpec")) or {}
            for inner in pod_templates([{**trial, "metadata": metadata}]):
                replica = inner.workload.split(" ", 2)[2:]  # a TFJob's replica type
                yield PodTemplate(
                    " ".join([where, "trial", inner.kind, *replica]),
                    namespace,
                    inner.kind,
                    inner.spec,
                )
        elif kind in _REPLICA_SPECS:
            for replica, replica_spec in (spec.get(_REPLICA_SPECS[kind]) or {}).items():
                template = (replica_spec or {}).get("template") or {}
                yield PodTemplate(f"{where} {replica}", namespace, kind, template.get("spec", {}))


def check(objects: list[dict[str, Any]], settings: Settings) -> list[str]:
    """Every scheduling problem in the objects, one line each; [] when all can be placed."""
    pools = pool_capacities(settings)
    problems: list[str] = []
    for template in pod_templates(objects):
        problems += _check_template(template, pools)
    return problems


def _containers(spec: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [
        (f"{key[:-1]} {c.get('name')}" if key == "initContainers" else str(c.get("name")), c)
        for key in ("initContainers", "containers")
        for c in spec.get(key) or []
    ]


def _whole_number(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def _check_template(template: PodTemplate, pools: list[PoolCapacity]) -> list[str]:
    problems: list[str] = []
    totals: dict[str, int] = {}  # GPU resource -> devices the pod's containers ask for
    largest: dict[str, int] = {}  # GPU resource -> most any one container asks for
    for label, container in _containers(template.spec):
        resources = container.get("resources") or {}
        limits, requests = resources.get("limits") or {}, resources.get("requests") or {}
        for resource in sorted(set(limits) | set(requests)):
            if not gpu_sharing.is_gpu_resource(resource):
                continue
            where = f"{template.workload} container {label}: {resource}"
            limit, request = limits.get(resource), requests.get(resource)
            if limit is None:
                problems.append(f"{where}: set in requests only; GPUs go in limits")
                continue
            count = _whole_number(limit)
            if count is None or count < 0:
                problems.append(f"{where}: {limit!r} is not a whole number of devices")
                continue
            if request is not None and _whole_number(request) != count:
                problems.append(f"{where}: requests ({request!r}) must equal limits ({limit!r})")
                continue
            if count and not label.startswith("initContainer"):
                totals[resource] = totals.get(resource, 0) + count
                largest[resource] = max(largest.get(resource, 0), count)
    if problems:
        return problems
    if not totals:
        return _check_cpu_pod(template)
    reasons = [
        f"pool {pool.name!r}: {why}"
        for pool in pools
        if (why := _rejects(template, totals, largest, pool)) is not None
    ]
    if len(reasons) < len(pools):
        return []
    asked = ", ".join(f"{count} {name}" for name, count in sorted(totals.items()))
    detail = "; ".join(reasons) if reasons else "the stack has no GPU pool"
    return [f"{template.workload} (asks for {asked}): no node pool accepts it: {detail}"]


def _check_cpu_pod(template: PodTemplate) -> list[str]:
    node_agent = template.kind == "DaemonSet" and template.namespace in NODE_AGENT_NAMESPACES
    if node_agent:
        return []
    for toleration in template.spec.get("tolerations") or []:
        if tolerates(toleration, GPU_TAINT):
            return [
                f"{template.workload}: requests no GPU but tolerates the {GPU_TAINT.key} taint, "
                "so it could take a GPU node's cpu and memory; drop the toleration"
            ]
    return []


def _rejects(
    template: PodTemplate, totals: dict[str, int], largest: dict[str, int], pool: PoolCapacity
) -> str | None:
    """Why `pool` cannot run the pod, or None if it can."""
    return (
        _placement_mismatch(template.spec, pool)
        or _gpu_shortfall(totals, largest, pool)
        or _size_shortfall(template.spec, pool)
    )


def _placement_mismatch(spec: dict[str, Any], pool: PoolCapacity) -> str | None:
    selector = spec.get("nodeSelector") or {}
    missing = {k: v for k, v in selector.items() if pool.labels.get(k) != v}
    if missing:
        pairs = ", ".join(f"{k}={v}" for k, v in sorted(missing.items()))
        return f"its nodes lack the nodeSelector label(s) {pairs}"
    affinity = ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    )
    terms = (affinity or {}).get("nodeSelectorTerms") or []
    if affinity and not any(_term_matches(term, pool.labels) for term in terms):
        return "its nodes match no required node affinity term"
    tolerations = spec.get("tolerations") or []
    untolerated = [t for t in pool.taints if not any(tolerates(x, t) for x in tolerations)]
    if untolerated:
        taint = untolerated[0]
        return (
            f"no toleration for its taint {taint.key}={taint.value}:{taint.effect} (take "
            "tolerations from infra.scheduling.placement())"
        )
    return None


def _gpu_shortfall(
    totals: dict[str, int], largest: dict[str, int], pool: PoolCapacity
) -> str | None:
    for resource, count in totals.items():
        if resource != pool.resource:
            return f"it offers {pool.resource}, not {resource}"
        if count > pool.units:
            return f"{count} {resource} > {pool.units} per node ({', '.join(pool.instance_types)})"
        cap = pool.max_per_container
        if cap is not None and largest[resource] > cap:
            return f"time-sliced shares are granted {cap} per container"
    return None


def _size_shortfall(spec: dict[str, Any], pool: PoolCapacity) -> str | None:
    cpu, memory = _pod_requests(spec)
    if cpu > pool.cpu:
        return f"cpu request {cpu} > {pool.cpu:.2f} allocatable per node"
    if memory > pool.memory:
        gib = Decimal(2**30)
        return (
            f"memory request {memory / gib:.1f}Gi > {pool.memory / gib:.1f}Gi allocatable per node"
        )
    return None


def _pod_requests(spec: dict[str, Any]) -> tuple[Decimal, Decimal]:
    """The pod's effective cpu and memory requests: sum of containers, or the largest init one."""

    def request(container: dict[str, Any], resource: str) -> Decimal:
        resources = container.get("resources") or {}
        value = (resources.get("requests") or {}).get(resource) or (
            resources.get("limits") or {}
        ).get(resource)
        return quantity_value(str(value)) if value is not None else Decimal(0)

    totals = []
    for resource in ("cpu", "memory"):
        running = sum((request(c, resource) for c in spec.get("containers") or []), Decimal(0))
        init = max(
            (request(c, resource) for c in spec.get("initContainers") or []), default=Decimal(0)
        )
        totals.append(max(running, init))
    return totals[0], totals[1]


def tolerates(toleration: dict[str, Any], taint: Taint) -> bool:
    operator = toleration.get("operator", "Equal")
    key = toleration.get("key")
    if toleration.get("effect") not in (None, "", taint.effect):
        return False
    if operator == "Exists":
        return key in (None, "", taint.key)
    return key == taint.key and toleration.get("value", "") == taint.value


def _term_matches(term: dict[str, Any], node_labels: dict[str, str]) -> bool:
    """A nodeSelectorTerm matches when all its label expressions hold (matchFields ignored)."""
    for expression in term.get("matchExpressions") or []:
        key, operator = expression.get("key"), expression.get("operator")
        values = [str(v) for v in expression.get("values") or []]
        present = key in node_labels
        value = node_labels.get(key, "")
        holds = {
            "In": present and value in values,
            "NotIn": not present or value not in values,
            "Exists": present,
            "DoesNotExist": not present,
            "Gt": present and value.isdigit() and bool(values) and int(value) > int(values[0]),
            "Lt": present and value.isdigit() and bool(values) and int(value) < int(values[0]),
        }.get(str(operator), False)
        if not holds:
            return False
    return True
