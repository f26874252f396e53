"""The pod-spec walk every pod rule relies on, and the never-crash contract of every rule."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest

from ml_platform_policy import POLICIES
from ml_platform_policy.props import elements, field, is_unknown_field, keys, strings
from ml_platform_policy.workloads import (
    KubernetesType,
    containers,
    kubernetes_type,
    namespace_of,
    pod_specs,
)
from tests.helpers import UNKNOWN, check, container, engine_view, pod_spec

SPEC = pod_spec(container("c"))
TEMPLATE = {"metadata": {"labels": {"a": "b"}}, "spec": SPEC}
META = {"name": "x", "namespace": "research"}


@pytest.mark.parametrize(
    ("resource_type", "inputs", "paths"),
    [
        ("kubernetes:core/v1:Pod", {"spec": SPEC}, ["spec"]),
        ("kubernetes:core/v1:PodTemplate", {"template": TEMPLATE}, ["template.spec"]),
        (
            "kubernetes:core/v1:ReplicationController",
            {"spec": {"template": TEMPLATE}},
            ["spec.template.spec"],
        ),
        ("kubernetes:apps/v1:Deployment", {"spec": {"template": TEMPLATE}}, ["spec.template.spec"]),
        (
            "kubernetes:apps/v1:StatefulSet",
            {"spec": {"template": TEMPLATE}},
            ["spec.template.spec"],
        ),
        ("kubernetes:apps/v1:DaemonSet", {"spec": {"template": TEMPLATE}}, ["spec.template.spec"]),
        ("kubernetes:apps/v1:ReplicaSet", {"spec": {"template": TEMPLATE}}, ["spec.template.spec"]),
        ("kubernetes:batch/v1:Job", {"spec": {"template": TEMPLATE}}, ["spec.template.spec"]),
        (
            "kubernetes:batch/v1:CronJob",
            {"spec": {"jobTemplate": {"spec": {"template": TEMPLATE}}}},
            ["spec.jobTemplate.spec.template.spec"],
        ),
        (
            "kubernetes:kubeflow.org/v1:Notebook",
            {"spec": {"template": TEMPLATE}},
            ["spec.template.spec"],
        ),
        (
            "kubernetes:kubeflow.org/v1:TFJob",
            {
                "spec": {
                    "runPolicy": {"cleanPodPolicy": "Running"},
                    "tfReplicaSpecs": {
                        "Chief": {"template": TEMPLATE},
                        "Worker": {"template": TEMPLATE},
                    },
                }
            },
            ["spec.tfReplicaSpecs.Chief.template.spec", "spec.tfReplicaSpecs.Worker.template.spec"],
        ),
        (
            "kubernetes:kubeflow.org/v1:PyTorchJob",
            {"spec": {"pytorchReplicaSpecs": {"Master": {"template": TEMPLATE}}}},
            ["spec.pytorchReplicaSpecs.Master.template.spec"],
        ),
        (
            "kubernetes:kubeflow.org/v2beta1:MPIJob",
            {"spec": {"mpiReplicaSpecs": {"Launcher": {"template": TEMPLATE}}}},
            ["spec.mpiReplicaSpecs.Launcher.template.spec"],
        ),
        (
            "kubernetes:kubeflow.org/v1beta1:Experiment",
            {
                "spec": {
                    "trialTemplate": {
                        "trialSpec": {
                            "apiVersion": "kubeflow.org/v1",
                            "kind": "TFJob",
                            "spec": {"tfReplicaSpecs": {"Worker": {"template": TEMPLATE}}},
                        }
                    }
                }
            },
            ["spec.trialTemplate.trialSpec.spec.tfReplicaSpecs.Worker.template.spec"],
        ),
        (
            "kubernetes:kubeflow.org/v1beta1:Experiment",
            {
                "spec": {
                    "trialTemplate": {
                        "trialSpec": {
                            "apiVersion": "batch/v1",
                            "kind": "Job",
                            "spec": {"template": TEMPLATE},
                        }
                    }
                }
            },
            ["spec.trialTemplate.trialSpec.spec.template.spec"],
        ),
        (
            "kubernetes:apps/v1:DeploymentPatch",
            {"spec": {"template": TEMPLATE}},
            ["spec.template.spec"],
        ),
        ("kubernetes:core/v1:Service", {"spec": SPEC}, []),
        ("kubernetes:helm.sh/v3:Release", {"values": {"spec": SPEC}}, []),
        ("aws:eks/nodeGroup:NodeGroup", {"spec": SPEC}, []),
    ],
)
def test_pod_specs_of_every_kind(
    resource_type: str, inputs: dict[str, Any], paths: list[str]
) -> None:
    props = engine_view({"metadata": META, **inputs})
    found = list(pod_specs(resource_type, props))
    assert sorted(p.path for p in found) == paths
    for found_pod in found:
        assert found_pod.namespace == "research"
        assert [c.name for c in containers(found_pod)] == ["c"]
        assert found_pod.patch == resource_type.endswith("Patch")


def test_kubernetes_type() -> None:
    assert kubernetes_type("kubernetes:core/v1:Pod") == KubernetesType("core", "v1", "Pod", False)
    assert kubernetes_type("kubernetes:apps/v1:DeploymentPatch") == KubernetesType(
        "apps", "v1", "Deployment", True
    )
    assert kubernetes_type("kubernetes:kubeflow.org/v1:TFJob") == KubernetesType(
        "kubeflow.org", "v1", "TFJob", False
    )
    for other in ("aws:iam/role:Role", "pulumi:providers:kubernetes", "kubernetes", ""):
        assert kubernetes_type(other) is None


def test_namespace_of() -> None:
    assert namespace_of(engine_view({"metadata": {"namespace": "a"}})) == "a"
    assert namespace_of(engine_view({"metadata": {"name": "x"}})) == "default"
    assert namespace_of(engine_view({})) == "default"
    assert namespace_of(engine_view({"metadata": {"namespace": UNKNOWN}})) is None
    assert namespace_of(engine_view({"metadata": UNKNOWN})) is None


def test_props_helpers_never_raise_on_unknowns() -> None:
    props = engine_view({"a": {"b": UNKNOWN, "c": [1, UNKNOWN, "x"]}, "d": UNKNOWN})
    assert field(props, "a", "b") is None
    assert field(props, "d", "e") is None
    assert is_unknown_field(props, "d")
    assert is_unknown_field(field(props, "a"), "b")
    assert not is_unknown_field(props, "missing")
    assert [v for _, v in elements(field(props, "a", "c"))] == [1.0, "x"]
    assert keys(field(props, "a")) == ["b", "c"]
    assert strings(field(props, "a", "c")) == ["x"]
    assert strings(UNKNOWN) == []
    assert list(elements("abc")) == []


# --- every rule, every shape -----------------------------------------------------------------

SAMPLES: list[tuple[str, dict[str, Any]]] = [
    (
        "kubernetes:kubeflow.org/v1:TFJob",
        {
            "metadata": {"name": "j", "namespace": "research", "annotations": {"a": "b"}},
            "spec": {
                "tfReplicaSpecs": {
                    "Worker": {
                        "replicas": 2,
                        "template": {
                            "spec": {
                                "hostNetwork": True,
                                "initContainers": [
                                    container("i", image="busybox", privileged=True)
                                ],
                                "containers": [
                                    container(
                                        "tensorflow",
                                        requests={"nvidia.com/gpu": "0.5", "cpu": "1"},
                                        limits={"nvidia.com/gpu": 1},
                                    )
                                ],
                            }
                        },
                    }
                }
            },
        },
    ),
    (
        "kubernetes:core/v1:Service",
        {
            "metadata": {"name": "s", "annotations": {"x": "y"}},
            "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]},
        },
    ),
    (
        "kubernetes:core/v1:LimitRange",
        {"metadata": {"name": "l"}, "spec": {"limits": [{"default": {"nvidia.com/gpu": 1}}]}},
    ),
    (
        "kubernetes:core/v1:ResourceQuota",
        {"metadata": {"name": "q"}, "spec": {"hard": {"limits.nvidia.com/gpu": "1"}}},
    ),
    ("aws:efs/fileSystem:FileSystem", {"encrypted": False, "tags": {"Name": "x"}}),
    (
        "aws:iam/role:Role",
        {
            "inlinePolicies": [
                {"policy": {"Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}}
            ],
            "managedPolicyArns": ["arn:aws:iam::aws:policy/AdministratorAccess"],
        },
    ),
]


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every path to a value inside nested dicts and lists."""
    if isinstance(value, dict):
        for key, child in value.items():
            yield (*prefix, key)
            yield from paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield (*prefix, index)
            yield from paths(child, (*prefix, index))


def replaced(value: dict[str, Any], path: tuple[Any, ...], new: Any) -> dict[str, Any]:
    result = copy.deepcopy(value)
    target: Any = result
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = new
    return result


@pytest.mark.parametrize(("resource_type", "inputs"), SAMPLES)
def test_every_sample_violates_its_rule(resource_type: str, inputs: dict[str, Any]) -> None:
    assert any(check(policy, resource_type, inputs) for policy in POLICIES)


@pytest.mark.parametrize(("resource_type", "inputs"), SAMPLES)
@pytest.mark.parametrize("odd", [UNKNOWN, None, "text", 3, [], {}, [UNKNOWN]])
def test_no_rule_crashes_whatever_any_value_is(
    resource_type: str, inputs: dict[str, Any], odd: Any
) -> None:
    for path in paths(inputs):
        variant = replaced(inputs, path, odd)
        for policy in POLICIES:
            check(policy, resource_type, variant)
            check(policy, resource_type, variant, engine=False)
