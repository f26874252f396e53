"""Rules on namespace-wide GPU settings: LimitRanges and ResourceQuotas."""

from __future__ import annotations

from pulumi_policy import (
    EnforcementLevel,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
)

from .pods import is_gpu_resource
from .props import elements, field, keys
from .workloads import kubernetes_type

# A LimitRange item's settings that would give a container a GPU it never asked for.
_INJECTING_SETTINGS = ("default", "defaultRequest", "min")


def _is(resource_type: str, kind: str) -> bool:
    parsed = kubernetes_type(resource_type)
    return parsed is not None and parsed.group == "core" and parsed.kind == kind


def validate_limit_range(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    if not _is(args.resource_type, "LimitRange"):
        return
    for index, item in elements(field(args.props, "spec", "limits")):
        for setting in _INJECTING_SETTINGS:
            for resource in keys(field(item, setting)):
                if is_gpu_resource(resource):
                    report_violation(
                        f"spec.limits[{index}].{setting} names {resource}: every container in "
                        "the namespace would get (or have to ask for) GPUs it did not ask for",
                        None,
                    )


limit_range_gpus = ResourceValidationPolicy(
    name="no-gpu-defaults-in-limit-ranges",
    description=(
        "A LimitRange may not set a default, defaultRequest or min for a GPU resource: it would "
        "attach GPUs to every container of the namespace. A max alone passes this rule, but a "
        "max without a default becomes the default limit, so the platform never sets one."
    ),
    validate=validate_limit_range,
    enforcement_level=EnforcementLevel.MANDATORY,
)


def quota_key_problem(key: str) -> str | None:
    """Why a ResourceQuota hard key for a GPU resource is wrong, or None if it is right."""
    if key.startswith("limits.") and is_gpu_resource(key.removeprefix("limits.")):
        return (
            f"'{key}': Kubernetes applies only requests.* quota items to extended "
            f"resources; use 'requests.{key.removeprefix('limits.')}'"
        )
    if is_gpu_resource(key):
        return (
            f"'{key}': Kubernetes applies only requests.* quota items to extended resources; "
            f"use 'requests.{key}'"
        )
    return None


def validate_resource_quota(
    args: ResourceValidationArgs, report_violation: ReportViolation
) -> None:
    if not _is(args.resource_type, "ResourceQuota"):
        return
    for key in keys(field(args.props, "spec", "hard")):
        problem = quota_key_problem(key)
        if problem is not None:
            report_violation(f"spec.hard {problem}", None)


resource_quota_gpus = ResourceValidationPolicy(
    name="gpu-quotas-on-requests",
    description=(
        "A ResourceQuota must cap GPUs with 'requests.<resource>' keys (e.g. "
        "requests.nvidia.com/gpu): for extended resources Kubernetes applies only requests.* "
        "quota items, so a limits.* or bare nvidia.com/* key leaves GPUs uncapped."
    ),
    validate=validate_resource_quota,
    enforcement_level=EnforcementLevel.MANDATORY,
)
