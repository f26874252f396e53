"""Rules on what the platform exposes: no internet-facing load balancer without an opt-in."""

from __future__ import annotations

from pulumi_policy import (
    EnforcementLevel,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
)

from .props import field, is_unknown_field
from .workloads import kubernetes_type

# The AWS Load Balancer Controller's scheme annotation (what workloads/serving.py sets).
SCHEME_ANNOTATION = "service.beta.kubernetes.io/aws-load-balancer-scheme"
# The in-tree AWS cloud provider's older switch, still honoured when the scheme is not given.
LEGACY_INTERNAL_ANNOTATION = "service.beta.kubernetes.io/aws-load-balancer-internal"
# The explicit opt-in for a load balancer that is meant to face the internet.
PUBLIC_OPT_IN_ANNOTATION = "ml-platform.io/public-load-balancer"


def _truthy(value: object) -> bool:
    """The in-tree provider's reading of the legacy annotation: anything but empty or false."""
    if isinstance(value, bool):
        return value
    return isinstance(value, str) and value.strip().lower() not in ("", "false")


def _is_true(value: object) -> bool:
    return value is True or (isinstance(value, str) and value.strip().lower() == "true")


def _is_internal(annotations: object) -> bool | None:
    """Whether the load balancer is internal; None while the annotation deciding it is unknown.

    The scheme annotation decides when present; otherwise the legacy internal annotation does.
    """
    for annotation in (SCHEME_ANNOTATION, LEGACY_INTERNAL_ANNOTATION):
        if is_unknown_field(annotations, annotation):
            return None
        value = field(annotations, annotation)
        if value is not None:
            return value == "internal" if annotation == SCHEME_ANNOTATION else _truthy(value)
    return False


def exposure_problem(annotations: object) -> str | None:
    """Why a LoadBalancer Service with these annotations is public, or None if it is not."""
    if _is_true(field(annotations, PUBLIC_OPT_IN_ANNOTATION)):
        return None
    if _is_internal(annotations) is not False:
        return None
    scheme = field(annotations, SCHEME_ANNOTATION)
    opt_in = f'annotate {PUBLIC_OPT_IN_ANNOTATION}: "true" if it must be public'
    if scheme is not None:
        return (
            f"{SCHEME_ANNOTATION} is {scheme!r}, so the load balancer faces the internet; {opt_in}"
        )
    return (
        f"a LoadBalancer Service without {SCHEME_ANNOTATION}: internal may get an "
        "internet-facing load balancer (the in-tree AWS provider's default); make it internal, "
        f"or {opt_in}"
    )


def validate_load_balancers(
    args: ResourceValidationArgs, report_violation: ReportViolation
) -> None:
    parsed = kubernetes_type(args.resource_type)
    if parsed is None or parsed.group != "core" or parsed.kind != "Service":
        return
    if field(args.props, "spec", "type") != "LoadBalancer":
        return
    metadata = field(args.props, "metadata")
    if is_unknown_field(args.props, "metadata") or is_unknown_field(metadata, "annotations"):
        return
    problem = exposure_problem(field(metadata, "annotations"))
    if problem is not None:
        report_violation(problem, None)


public_load_balancers = ResourceValidationPolicy(
    name="no-public-load-balancers",
    description=(
        "A LoadBalancer Service must be internal (aws-load-balancer-scheme: internal) unless "
        f'it opts in with {PUBLIC_OPT_IN_ANNOTATION}: "true": without an explicit scheme the '
        "in-tree AWS provider makes it internet-facing, which would put a model server or "
        "notebook on the internet by accident."
    ),
    validate=validate_load_balancers,
    enforcement_level=EnforcementLevel.MANDATORY,
)
