"""Rules on pod specs: whole GPUs, no privilege outside node agents, no `latest` images."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
)

from .props import field, is_true, is_unknown_field, keys, strings
from .workloads import Container, PodSpec, containers, pod_specs

GPU_PREFIX = "nvidia.com/"
_DIGITS = re.compile(r"[0-9]+")


def is_gpu_resource(name: str) -> bool:
    """nvidia.com/gpu, nvidia.com/gpu.shared, nvidia.com/mig-1g.10gb, ...: any NVIDIA resource."""
    return name.startswith(GPU_PREFIX)


def whole_count(value: object) -> int | None:
    """The quantity as a whole positive count, or None if it is not one.

    The engine sends numbers as floats, so 1 arrives as 1.0; "1" is a quantity string. 0.5,
    "0.5", "500m", "1e0", 0 and booleans are not whole positive counts.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value > 0 else None
    if isinstance(value, float):
        return int(value) if value.is_integer() and value > 0 else None
    if isinstance(value, str) and _DIGITS.fullmatch(value):
        count = int(value)
        return count if count > 0 else None
    return None


def _gpu_problems(container: Container, patch: bool) -> list[str]:
    resources = field(container.body, "resources")
    requests = field(resources, "requests")
    limits = field(resources, "limits")
    # A patch leaves the live limits alone; an unknown limits map is checked by `pulumi up`.
    limits_may_exist = patch or is_unknown_field(resources, "limits")
    problems: list[str] = []
    gpu_keys = sorted({k for k in (*keys(requests), *keys(limits)) if is_gpu_resource(k)})
    for resource in gpu_keys:
        request = field(requests, resource)
        limit = field(limits, resource)
        in_limits = resource in keys(limits)
        for side, value in (("request", request), ("limit", limit)):
            if value is not None and whole_count(value) is None:
                problems.append(
                    f"{resource} {side} {value!r} is not a whole positive number of devices"
                )
        if request is not None and not in_limits and not limits_may_exist:
            problems.append(
                f"{resource} is requested ({request!r}) but has no limit: Kubernetes requires "
                "an extended resource in limits (the request defaults to the limit)"
            )
        request_count, limit_count = whole_count(request), whole_count(limit)
        if request_count is not None and limit_count is not None and request_count != limit_count:
            problems.append(
                f"{resource} request {request!r} differs from its limit {limit!r}: "
                "extended resources cannot be overcommitted"
            )
    return problems


def validate_gpu_quantities(
    args: ResourceValidationArgs, report_violation: ReportViolation
) -> None:
    for pod in pod_specs(args.resource_type, args.props):
        for container in containers(pod, ephemeral=False):
            for problem in _gpu_problems(container, pod.patch):
                report_violation(
                    f"container '{container.name}' ({container.path}): {problem}", None
                )


gpu_quantities = ResourceValidationPolicy(
    name="gpu-whole-and-equal-to-limits",
    description=(
        "GPU resources (any nvidia.com/ resource: gpu, gpu.shared, mig-*) in a pod's containers "
        "and init containers must be whole positive counts, set in limits, and equal to the "
        "request when both are given: devices cannot be split or overcommitted, and Kubernetes "
        "rejects an extended resource that is only requested."
    ),
    validate=validate_gpu_quantities,
    enforcement_level=EnforcementLevel.MANDATORY,
)


# --- privileged pods -------------------------------------------------------------------------

NODE_AGENT_NAMESPACES_KEY = "nodeAgentNamespaces"
DEFAULT_NODE_AGENT_NAMESPACES = ("kube-system", "gpu-system", "logging", "monitoring")
_HOST_NAMESPACES = ("hostNetwork", "hostPID", "hostIPC")


def node_agent_namespaces(config: Mapping[str, object]) -> frozenset[str]:
    """The configured namespaces where node agents may run privileged (default if unset)."""
    configured = config.get(NODE_AGENT_NAMESPACES_KEY)
    if isinstance(configured, Sequence) and not isinstance(configured, str):
        return frozenset(strings(configured))
    return frozenset(DEFAULT_NODE_AGENT_NAMESPACES)


def _privileges(pod: PodSpec) -> list[str]:
    found = [
        f"{pod.path}.{name}: true" for name in _HOST_NAMESPACES if is_true(field(pod.spec, name))
    ]
    for container in containers(pod):
        if is_true(field(container.body, "securityContext", "privileged")):
            found.append(
                f"container '{container.name}' ({container.path}): securityContext.privileged: true"
            )
    return found


def validate_privileged_pods(
    args: ResourceValidationArgs, report_violation: ReportViolation
) -> None:
    allowed = node_agent_namespaces(args.get_config())
    for pod in pod_specs(args.resource_type, args.props):
        if pod.namespace is None or pod.namespace in allowed:
            continue
        for privilege in _privileges(pod):
            report_violation(
                f"{privilege} in namespace '{pod.namespace}', which is not a node-agent namespace "
                f"({', '.join(sorted(allowed))})",
                None,
            )


privileged_pods = ResourceValidationPolicy(
    name="no-privileged-pods-outside-node-agents",
    description=(
        "Privileged containers and pods sharing the host's network, PID or IPC namespaces may "
        "only run in the node-agent namespaces (policy config nodeAgentNamespaces): anywhere "
        "else they hand a workload the node and every other tenant's pods on it."
    ),
    validate=validate_privileged_pods,
    enforcement_level=EnforcementLevel.MANDATORY,
    config_schema=PolicyConfigSchema(
        properties={
            NODE_AGENT_NAMESPACES_KEY: {
                "type": "array",
                "items": {"type": "string"},
                "default": list(DEFAULT_NODE_AGENT_NAMESPACES),
                "description": "Namespaces whose pods may be privileged or use host namespaces.",
            }
        }
    ),
)


# --- image tags ------------------------------------------------------------------------------


def mutable_tag_problem(image: str) -> str | None:
    """Why an image reference is not pinned; None for a tag other than latest, or a digest.

    The tag is after the last ':' of the last path component, so a registry port
    (`registry:5000/x`) is not mistaken for one.
    """
    if "@" in image:
        return None
    last = image.rsplit("/", 1)[-1]
    _, colon, tag = last.partition(":")
    if not colon or not tag:
        return f"image '{image}' has no tag, so it runs whatever 'latest' is when pulled"
    if tag == "latest":
        return f"image '{image}' uses the mutable tag 'latest'"
    return None


def validate_image_tags(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    for pod in pod_specs(args.resource_type, args.props):
        for container in containers(pod):
            image = field(container.body, "image")
            if not isinstance(image, str):
                continue
            problem = mutable_tag_problem(image)
            if problem is not None:
                report_violation(
                    f"container '{container.name}' ({container.path}): {problem}", None
                )


image_tags = ResourceValidationPolicy(
    name="no-latest-image-tags",
    description=(
        "Container images must name a tag other than 'latest' or a digest: an untagged or "
        "'latest' image changes under a running workload, so replicas and restarts run "
        "different code and a rollback cannot go back."
    ),
    validate=validate_image_tags,
    enforcement_level=EnforcementLevel.MANDATORY,
)
