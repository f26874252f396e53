"""no-public-load-balancers."""

from __future__ import annotations

from typing import Any

import pytest

from ml_platform_policy.network import (
    LEGACY_INTERNAL_ANNOTATION,
    PUBLIC_OPT_IN_ANNOTATION,
    SCHEME_ANNOTATION,
    public_load_balancers,
)
from tests.helpers import UNKNOWN, check

SERVICE = "kubernetes:core/v1:Service"

# What workloads/serving.py puts on an internalLoadBalancer model's Service.
SERVING_INTERNAL = {
    "service.beta.kubernetes.io/aws-load-balancer-type": "external",
    "service.beta.kubernetes.io/aws-load-balancer-nlb-target-type": "ip",
    SCHEME_ANNOTATION: "internal",
}


def service(service_type: str | None, annotations: Any = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "model", "namespace": "serving"}
    if annotations is not None:
        meta["annotations"] = annotations
    spec: dict[str, Any] = {"ports": [{"name": "http", "port": 80}]}
    if service_type is not None:
        spec["type"] = service_type
    return {"apiVersion": "v1", "kind": "Service", "metadata": meta, "spec": spec}


@pytest.mark.parametrize("service_type", [None, "ClusterIP", "NodePort", "ExternalName"])
def test_other_service_types_pass(service_type: str | None) -> None:
    assert check(public_load_balancers, SERVICE, service(service_type)) == []


@pytest.mark.parametrize(
    "annotations",
    [
        SERVING_INTERNAL,
        {LEGACY_INTERNAL_ANNOTATION: "true"},
        {LEGACY_INTERNAL_ANNOTATION: "0.0.0.0/0"},
        {PUBLIC_OPT_IN_ANNOTATION: "true"},
        {PUBLIC_OPT_IN_ANNOTATION: "True", SCHEME_ANNOTATION: "internet-facing"},
    ],
)
def test_internal_or_opted_in_load_balancers_pass(annotations: dict[str, str]) -> None:
    assert check(public_load_balancers, SERVICE, service("LoadBalancer", annotations)) == []


def test_a_load_balancer_without_annotations_is_a_violation() -> None:
    [message] = check(public_load_balancers, SERVICE, service("LoadBalancer"))
    assert SCHEME_ANNOTATION in message
    assert PUBLIC_OPT_IN_ANNOTATION in message


@pytest.mark.parametrize(
    "annotations",
    [
        {SCHEME_ANNOTATION: "internet-facing"},
        {LEGACY_INTERNAL_ANNOTATION: "false"},
        {LEGACY_INTERNAL_ANNOTATION: ""},
        {PUBLIC_OPT_IN_ANNOTATION: "false"},
        {PUBLIC_OPT_IN_ANNOTATION: "yes"},
        # The scheme annotation wins over the legacy one.
        {SCHEME_ANNOTATION: "internet-facing", LEGACY_INTERNAL_ANNOTATION: "true"},
        {"service.beta.kubernetes.io/aws-load-balancer-type": "external"},
    ],
)
def test_public_load_balancers_are_violations(annotations: dict[str, str]) -> None:
    assert check(public_load_balancers, SERVICE, service("LoadBalancer", annotations))


def test_unknown_annotations_are_left_for_the_update() -> None:
    assert check(public_load_balancers, SERVICE, service("LoadBalancer", UNKNOWN)) == []
    unknown_scheme = {SCHEME_ANNOTATION: UNKNOWN}
    assert check(public_load_balancers, SERVICE, service("LoadBalancer", unknown_scheme)) == []
    assert check(public_load_balancers, SERVICE, service(UNKNOWN)) == []


def test_odd_services_do_not_crash() -> None:
    for inputs in ({}, {"spec": UNKNOWN}, {"spec": {"type": "LoadBalancer"}, "metadata": "x"}):
        check(public_load_balancers, SERVICE, inputs)
