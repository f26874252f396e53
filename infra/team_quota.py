"""Each team namespace's ResourceQuota and LimitRange, and the check that declared work fits them.

GPUs are quota'd on `requests.<resource>`: Kubernetes does not overcommit extended resources, so a
request always equals its limit, and a `limits.` key for them is ignored.  The LimitRange gives
cpu and memory requests to containers that set none (a quota on requests rejects pods without
them) and deliberately says nothing about GPUs: a `max` without a `default` becomes every
container's default limit, which would hand a GPU to every container in the namespace.  It sets no
default limits either: one below a workload's own request would make the pod invalid.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from infra import gpu_sharing, labels
from infra.schedulability import pod_templates
from infra.settings import Settings, TeamSettings, quantity_value

DEFAULT_REQUESTS = {"cpu": "100m", "memory": "256Mi"}


def gpu_resource_caps(settings: Settings, gpus: int) -> dict[str, int]:
    """`gpus` GPUs' worth of each GPU resource: whole GPUs, or the shares or MIG slices they make.

    A time-sliced pool with 4 replicas makes 4 `nvidia.com/gpu.shared` per GPU, so a team with
    `quota.gpus: 2` may hold 8 shares, which is 2 GPUs of that pool.  Each resource is capped on
    its own: the quota bounds what a team holds of each kind, not the sum over kinds.
    """
    caps = {gpu_sharing.GPU: gpus}
    for pool in settings.node_pools.gpu:
        resource = gpu_sharing.resource_name(pool)
        caps[resource] = max(caps.get(resource, 0), gpus * gpu_sharing.units_per_gpu(pool))
    return caps


def volume_claim_sizes(settings: Settings) -> list[str]:
    """The shared volumes' claims every team namespace gets (datasets, models, workspace)."""
    storage = settings.storage
    return [storage.datasets.size, storage.models.size, storage.workspace.size]


def quota_hard(settings: Settings, team: TeamSettings) -> dict[str, str]:
    quota = team.quota
    return {
        "requests.cpu": quota.cpu,
        "requests.memory": quota.memory,
        **{
            f"requests.{resource}": str(cap)
            for resource, cap in sorted(gpu_resource_caps(settings, quota.gpus).items())
        },
        "persistentvolumeclaims": str(quota.volume_claims),
        "requests.storage": quota.storage,
    }


def limit_range_limits() -> list[k8s.core.v1.LimitRangeItemArgs]:
    return [k8s.core.v1.LimitRangeItemArgs(type="Container", default_request=DEFAULT_REQUESTS)]


# What Katib adds to an experiment's pods, from the defaults its katib-config leaves in place
# (kubeflow/katib@v0.19.0:pkg/apis/config/v1beta1/defaults.go L27-34 and L194-217: 50m cpu and
# 10Mi memory requested by each metrics-collector sidecar and by the suggestion's container;
# tests/upstream/kubeflow-katib-experiments.yaml).  The sidecar joins each trial's primary pod
# (pkg/webhook/v1beta1/pod/inject_webhook.go L131-250); one suggestion pod serves the experiment
# (pkg/controller.v1beta1/suggestion/composer/composer.go L86-110).
KATIB_SIDECAR_REQUESTS = {"cpu": Decimal("0.05"), "memory": Decimal(10 * 2**20)}
KATIB_SUGGESTION_REQUESTS = {"cpu": Decimal("0.05"), "memory": Decimal(10 * 2**20)}
# Katib's defaulting webhook sets an unset parallelTrialCount to 3
# (pkg/apis/controller/experiments/v1beta1/constants.go L21, experiment_defaults.go L36-41).
KATIB_DEFAULT_PARALLEL_TRIALS = 3


def experiment_requests(manifest: dict[str, Any]) -> dict[str, Decimal]:
    """What a Katib Experiment holds at once: `parallelTrialCount` trials, each with its
    metrics collector, and the suggestion pod."""
    spec = manifest.get("spec") or {}
    parallel = int(spec.get("parallelTrialCount", KATIB_DEFAULT_PARALLEL_TRIALS))
    trial = workload_requests((spec.get("trialTemplate") or {}).get("trialSpec") or {})
    totals: dict[str, Decimal] = {}
    for part, count in ((trial, parallel), (KATIB_SIDECAR_REQUESTS, parallel)):
        for resource, value in part.items():
            totals[resource] = totals.get(resource, Decimal(0)) + count * value
    for resource, value in KATIB_SUGGESTION_REQUESTS.items():
        totals[resource] = totals.get(resource, Decimal(0)) + value
    return totals


def workload_requests(manifest: dict[str, Any]) -> dict[str, Decimal]:
    """What all pods of one workload request together (replicas included; an Experiment's
    trials that run at once)."""
    if manifest.get("kind") == "Experiment":
        return experiment_requests(manifest)
    replicas = {
        replica: int((spec or {}).get("replicas", 1))
        for key in ("tfReplicaSpecs", "pytorchReplicaSpecs")
        for replica, spec in ((manifest.get("spec") or {}).get(key) or {}).items()
    }
    totals: dict[str, Decimal] = {}
    for template in pod_templates([manifest]):
        count = replicas.get(template.workload.rsplit(" ", 1)[-1], 1)
        for container in template.spec.get("containers") or []:
            resources = container.get("resources") or {}
            requests = {**(resources.get("limits") or {}), **(resources.get("requests") or {})}
            for resource, value in requests.items():
                totals[resource] = totals.get(resource, Decimal(0)) + count * quantity_value(
                    str(value)
                )
    return totals


def quota_shortfalls(settings: Settings, team: TeamSettings, manifest: dict[str, Any]) -> list[str]:
    """How one declared workload would exceed its team's quota (it could never start)."""
    quota = team.quota
    caps = {
        "cpu": ("cpu", quantity_value(quota.cpu)),
        "memory": ("memory", quantity_value(quota.memory)),
        **{
            resource: ("gpus", Decimal(cap))
            for resource, cap in gpu_resource_caps(settings, quota.gpus).items()
        },
    }
    problems = []
    experiment = manifest.get("kind") == "Experiment"
    for resource, needed in sorted(workload_requests(manifest).items()):
        if resource in caps and needed > caps[resource][1]:
            key, cap = caps[resource]
            how = ""
            if experiment:
                spec = manifest["spec"]
                per_trial = workload_requests(spec["trialTemplate"]["trialSpec"]).get(resource)
                how = (
                    f" (parallelTrialCount {spec['parallelTrialCount']} x "
                    f"{(per_trial or Decimal(0)).normalize():f} per trial, with Katib's "
                    "metrics collectors and suggestion)"
                )
            fix = (
                "raise the quota or lower parallelTrialCount (or the trial's size)"
                if experiment
                else "raise the quota or make the workload smaller"
            )
            problems.append(
                f"needs {needed.normalize():f} {resource} in total{how}, over the team's quota "
                f"(quota.{key}: {cap.normalize():f}); {fix}"
            )
    return problems


def storage_shortfall(settings: Settings, team: TeamSettings) -> str | None:
    sizes = volume_claim_sizes(settings)
    total = sum((quantity_value(s) for s in sizes), Decimal(0))
    if len(sizes) > team.quota.volume_claims:
        return (
            f"quota.volumeClaims is {team.quota.volume_claims}; the shared volumes alone need "
            f"{len(sizes)}"
        )
    if total > quantity_value(team.quota.storage):
        return (
            f"quota.storage {team.quota.storage} is below the shared volumes' claims "
            f"({' + '.join(sizes)}); raise it"
        )
    return None


class TeamQuota(pulumi.ComponentResource):
    """The ResourceQuota and LimitRange of one team namespace."""

    def __init__(
        self,
        name: str,
        *,
        settings: Settings,
        team: TeamSettings,
        namespace: k8s.core.v1.Namespace,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("ml-platform:tenancy:TeamQuota", name, None, opts)
        after = pulumi.ResourceOptions(parent=self, depends_on=[namespace])
        metadata = k8s.meta.v1.ObjectMetaArgs(
            name="team", namespace=team.name, labels=labels.common("tenancy")
        )
        k8s.core.v1.ResourceQuota(
            f"{name}-quota",
            metadata=metadata,
            spec=k8s.core.v1.ResourceQuotaSpecArgs(hard=quota_hard(settings, team)),
            opts=after,
        )
        k8s.core.v1.LimitRange(
            f"{name}-limits",
            metadata=metadata,
            spec=k8s.core.v1.LimitRangeSpecArgs(limits=limit_range_limits()),
            opts=after,
        )
        self.register_outputs({})
