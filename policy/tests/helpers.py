"""Run the pack's policies the way the engine does, on hand-built resources."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from google.protobuf import json_format, struct_pb2
from pulumi_policy import (
    PolicyCustomTimeouts,
    PolicyResourceOptions,
    ResourceValidationArgs,
    ResourceValidationPolicy,
)
from pulumi_policy.deserialize import deserialize_properties
from pulumi_policy.proxy import UNKNOWN_STRING_VALUE, unknown_checking_proxy

UNKNOWN = UNKNOWN_STRING_VALUE  # what an output that is not known yet looks like in a preview

OPTIONS = PolicyResourceOptions(
    protect=False,
    ignore_changes=[],
    delete_before_replace=None,
    aliases=[],
    custom_timeouts=PolicyCustomTimeouts(0, 0, 0),
    additional_secret_outputs=[],
)


def engine_view(inputs: Mapping[str, Any]) -> Mapping[str, Any]:
    """The props a policy gets for these inputs: through a protobuf Struct (numbers become
    floats), deserialized, and wrapped in the proxy that raises on unknown values."""
    struct = struct_pb2.Struct()
    struct.update(dict(inputs))
    return unknown_checking_proxy(deserialize_properties(json_format.MessageToDict(struct)))


def default_config(policy: ResourceValidationPolicy) -> dict[str, Any]:
    """The config the engine passes when none is given: the schema's defaults."""
    schema = policy.config_schema
    if schema is None:
        return {}
    return {key: prop["default"] for key, prop in schema.properties.items() if "default" in prop}


def check(
    policy: ResourceValidationPolicy,
    resource_type: str,
    inputs: Mapping[str, Any],
    *,
    config: Mapping[str, Any] | None = None,
    engine: bool = True,
    name: str = "subject",
    urn: str | None = None,
) -> list[str]:
    """The violations `policy` reports for one resource (engine=False: plain dicts and ints)."""
    messages: list[str] = []

    def report_violation(message: str, urn: str | None = None) -> None:
        messages.append(message)

    props = engine_view(inputs) if engine else inputs
    args = ResourceValidationArgs(
        resource_type,
        props,
        urn or f"urn:pulumi:test::ml-platform::{resource_type}::{name}",
        name,
        OPTIONS,
        None,
        config,
        None,
    )
    assert policy.validate(args, report_violation) is None  # every rule is synchronous
    return messages


# --- builders --------------------------------------------------------------------------------


def container(
    name: str = "main",
    image: str | None = "registry.example.com/team/app:1.2.3",
    *,
    requests: Mapping[str, Any] | None = None,
    limits: Mapping[str, Any] | None = None,
    privileged: bool | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {"name": name}
    if image is not None:
        body["image"] = image
    resources: dict[str, Any] = {}
    if requests is not None:
        resources["requests"] = dict(requests)
    if limits is not None:
        resources["limits"] = dict(limits)
    if resources:
        body["resources"] = resources
    if privileged is not None:
        body["securityContext"] = {"privileged": privileged}
    return body


def pod_spec(*containers: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"containers": list(containers) or [container()], **extra}


def metadata(name: str = "subject", namespace: str | None = "research") -> dict[str, Any]:
    return {"name": name} if namespace is None else {"name": name, "namespace": namespace}


def pod(spec: dict[str, Any], namespace: str | None = "research") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata(namespace=namespace),
        "spec": spec,
    }


def deployment(spec: dict[str, Any], namespace: str | None = "research") -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(namespace=namespace),
        "spec": {"replicas": 1, "template": {"metadata": {}, "spec": spec}},
    }


def tfjob(replicas: Mapping[str, dict[str, Any]], namespace: str = "research") -> dict[str, Any]:
    return {
        "apiVersion": "kubeflow.org/v1",
        "kind": "TFJob",
        "metadata": metadata(namespace=namespace),
        "spec": {
            "tfReplicaSpecs": {
                role: {"replicas": 1, "template": {"spec": spec}} for role, spec in replicas.items()
            }
        },
    }


POD = "kubernetes:core/v1:Pod"
DEPLOYMENT = "kubernetes:apps/v1:Deployment"
TFJOB = "kubernetes:kubeflow.org/v1:TFJob"
