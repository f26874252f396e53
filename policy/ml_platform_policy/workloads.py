"""Every pod spec a Kubernetes resource carries, whatever its kind.

Pods, PodTemplates, ReplicationControllers, Deployments, StatefulSets, DaemonSets, ReplicaSets,
Jobs and CronJobs, Kubeflow Notebooks and every Kubeflow training job (TFJob, PyTorchJob and the
other `*Job` kinds of `kubeflow.org`, whose pods sit under `spec.<kind>ReplicaSpecs.<role>`), Katib
Experiments (the pods of the job each trial runs, `spec.trialTemplate.trialSpec`: a batch Job or
a Kubeflow training job), and the server-side patches of all of these (`...Patch` types), matched
by API group and kind so any API version counts.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from .props import elements, field, is_unknown_field, keys

DEFAULT_NAMESPACE = "default"

# (API group, kind) -> path from the object to its pod spec.
_POD_SPEC_PATHS: dict[tuple[str, str], tuple[str, ...]] = {
    ("core", "Pod"): ("spec",),
    ("core", "PodTemplate"): ("template", "spec"),
    ("core", "ReplicationController"): ("spec", "template", "spec"),
    ("apps", "Deployment"): ("spec", "template", "spec"),
    ("apps", "StatefulSet"): ("spec", "template", "spec"),
    ("apps", "DaemonSet"): ("spec", "template", "spec"),
    ("apps", "ReplicaSet"): ("spec", "template", "spec"),
    ("batch", "Job"): ("spec", "template", "spec"),
    ("batch", "CronJob"): ("spec", "jobTemplate", "spec", "template", "spec"),
    ("kubeflow.org", "Notebook"): ("spec", "template", "spec"),
}
_KUBEFLOW = "kubeflow.org"
_CONTAINER_LISTS = ("initContainers", "containers", "ephemeralContainers")


@dataclass(frozen=True)
class KubernetesType:
    group: str
    version: str
    kind: str
    patch: bool


def kubernetes_type(resource_type: str) -> KubernetesType | None:
    """Parse `kubernetes:<group>/<version>:<Kind>` (a `...Patch` kind is the patched kind)."""
    package, _, rest = resource_type.partition(":")
    module, _, kind = rest.partition(":")
    group, _, version = module.rpartition("/")
    if package != "kubernetes" or not group or not version or not kind:
        return None
    patch = kind.endswith("Patch") and kind != "Patch"
    return KubernetesType(group, version, kind.removesuffix("Patch") if patch else kind, patch)


@dataclass(frozen=True)
class PodSpec:
    """One pod spec of a resource: where it is, what it says, and where its pods run."""

    path: str  # e.g. "spec.tfReplicaSpecs.Worker.template.spec"
    spec: Mapping[str, Any]
    namespace: str | None  # None: not known yet (during preview)
    patch: bool  # from a server-side patch: fields it leaves out keep their live values


@dataclass(frozen=True)
class Container:
    path: str  # e.g. "spec.template.spec.initContainers[0]"
    name: str
    body: Mapping[str, Any]
    list_name: str  # "containers", "initContainers" or "ephemeralContainers"


def namespace_of(props: Mapping[str, Any]) -> str | None:
    """The object's namespace (`default` when it names none); None while not known."""
    metadata = field(props, "metadata")
    if is_unknown_field(props, "metadata") or is_unknown_field(metadata, "namespace"):
        return None
    namespace = field(metadata, "namespace")
    return namespace if isinstance(namespace, str) and namespace else DEFAULT_NAMESPACE


def _spec_at(obj: object, path: tuple[str, ...]) -> Mapping[str, Any] | None:
    spec = field(obj, *path)
    return spec if isinstance(spec, Mapping) else None


def pod_specs(resource_type: str, props: Mapping[str, Any]) -> Iterator[PodSpec]:
    """Every pod spec in a resource's inputs; nothing for kinds that carry none."""
    parsed = kubernetes_type(resource_type)
    if parsed is None:
        return
    namespace = namespace_of(props)
    path = _POD_SPEC_PATHS.get((parsed.group, parsed.kind))
    if path is not None:
        spec = _spec_at(props, path)
        if spec is not None:
            yield PodSpec(".".join(path), spec, namespace, parsed.patch)
        return
    if parsed.group == _KUBEFLOW and parsed.kind == "Experiment":
        trial_path = ("spec", "trialTemplate", "trialSpec")
        trial = field(props, *trial_path)
        trial_kind = field(trial, "kind")
        group = str(field(trial, "apiVersion") or "").rpartition("/")[0]
        if trial_kind == "Job" and group == "batch":
            spec = _spec_at(trial, ("spec", "template", "spec"))
            if spec is not None:
                where = ".".join((*trial_path, "spec.template.spec"))
                yield PodSpec(where, spec, namespace, parsed.patch)
        elif group == _KUBEFLOW and isinstance(trial_kind, str) and trial_kind.endswith("Job"):
            prefix = ".".join(trial_path) + "."
            yield from _replica_pod_specs(trial, prefix, namespace, parsed.patch)
        return
    if parsed.group == _KUBEFLOW and parsed.kind.endswith("Job"):
        yield from _replica_pod_specs(props, "", namespace, parsed.patch)


def _replica_pod_specs(
    job: object, prefix: str, namespace: str | None, patch: bool
) -> Iterator[PodSpec]:
    """The pod specs of a Kubeflow training job, under `spec.<kind>ReplicaSpecs.<role>`."""
    job_spec = field(job, "spec")
    for replica_specs_key in keys(job_spec):
        if not replica_specs_key.endswith("ReplicaSpecs"):
            continue
        replica_specs = field(job_spec, replica_specs_key)
        for role in keys(replica_specs):
            spec = _spec_at(field(replica_specs, role), ("template", "spec"))
            if spec is not None:
                where = f"{prefix}spec.{replica_specs_key}.{role}.template.spec"
                yield PodSpec(where, spec, namespace, patch)


def containers(pod: PodSpec, *, ephemeral: bool = True) -> Iterator[Container]:
    """The pod's init containers, containers and (unless told not to) ephemeral containers."""
    for list_name in _CONTAINER_LISTS:
        if list_name == "ephemeralContainers" and not ephemeral:
            continue
        for index, body in elements(field(pod.spec, list_name)):
            if not isinstance(body, Mapping):
                continue
            name = field(body, "name")
            yield Container(
                f"{pod.path}.{list_name}[{index}]",
                name if isinstance(name, str) else f"#{index}",
                body,
                list_name,
            )
