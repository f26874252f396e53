"""gpu-whole-and-equal-to-limits: whole GPUs, in limits, request equal to limit."""

from __future__ import annotations

from typing import Any

import pytest

from ml_platform_policy.pods import gpu_quantities, whole_count
from tests.helpers import (
    DEPLOYMENT,
    POD,
    TFJOB,
    UNKNOWN,
    check,
    container,
    deployment,
    pod,
    pod_spec,
    tfjob,
)


def gpu_pod(*, requests: Any = None, limits: Any = None, init: bool = False) -> dict[str, Any]:
    gpu = container("trainer", requests=requests, limits=limits)
    if init:
        return pod(pod_spec(container("app"), initContainers=[gpu]))
    return pod(pod_spec(gpu))


@pytest.mark.parametrize(
    ("value", "count"),
    [
        (1, 1),
        (1.0, 1),  # what the engine sends for 1
        ("1", 1),
        ("8", 8),
        (0.5, None),
        ("0.5", None),
        ("500m", None),
        ("1e0", None),
        ("1Ki", None),
        (0, None),
        ("0", None),
        (-1, None),
        (True, None),
        (None, None),
        ([1], None),
    ],
)
def test_whole_count(value: object, count: int | None) -> None:
    assert whole_count(value) == count


@pytest.mark.parametrize("quantity", [1, "1", 2, "4"])
@pytest.mark.parametrize("engine", [True, False])
def test_whole_gpus_equal_to_limits_pass(quantity: object, engine: bool) -> None:
    inputs = gpu_pod(requests={"nvidia.com/gpu": quantity}, limits={"nvidia.com/gpu": quantity})
    assert check(gpu_quantities, POD, inputs, engine=engine) == []


def test_int_limit_and_string_request_of_the_same_count_pass() -> None:
    inputs = gpu_pod(requests={"nvidia.com/gpu": "2"}, limits={"nvidia.com/gpu": 2})
    assert check(gpu_quantities, POD, inputs) == []


def test_gpu_only_in_limits_passes() -> None:
    assert check(gpu_quantities, POD, gpu_pod(limits={"nvidia.com/gpu": 1})) == []


@pytest.mark.parametrize("quantity", [0.5, "0.5", "500m", 0, "1.5"])
def test_fractional_gpu_is_a_violation(quantity: object) -> None:
    inputs = gpu_pod(requests={"nvidia.com/gpu": quantity}, limits={"nvidia.com/gpu": quantity})
    messages = check(gpu_quantities, POD, inputs)
    assert messages
    assert all("not a whole positive number" in m for m in messages)
    assert "container 'trainer'" in messages[0]


def test_request_different_from_limit_is_a_violation() -> None:
    inputs = gpu_pod(requests={"nvidia.com/gpu": 1}, limits={"nvidia.com/gpu": 2})
    [message] = check(gpu_quantities, POD, inputs)
    assert "differs from its limit" in message


def test_gpu_only_in_requests_is_a_violation() -> None:
    [message] = check(gpu_quantities, POD, gpu_pod(requests={"nvidia.com/gpu": 1}))
    assert "has no limit" in message


@pytest.mark.parametrize(
    "resource", ["nvidia.com/gpu.shared", "nvidia.com/mig-1g.10gb", "nvidia.com/mig-3g.40gb"]
)
def test_shared_and_mig_resources_are_gpus(resource: str) -> None:
    assert check(gpu_quantities, POD, gpu_pod(limits={resource: "0.5"}))
    assert check(gpu_quantities, POD, gpu_pod(requests={resource: 1}))
    assert check(gpu_quantities, POD, gpu_pod(requests={resource: 1}, limits={resource: 1})) == []


def test_init_containers_are_checked() -> None:
    inputs = gpu_pod(requests={"nvidia.com/gpu": "0.5"}, limits={"nvidia.com/gpu": 1}, init=True)
    [message] = check(gpu_quantities, POD, inputs)
    assert "spec.initContainers[0]" in message
    assert "request '0.5'" in message


def test_fractional_cpu_is_not_a_gpu_concern() -> None:
    inputs = gpu_pod(requests={"cpu": "500m", "memory": "1Gi"}, limits={"cpu": 0.5})
    assert check(gpu_quantities, POD, inputs) == []


def test_deployment_template_is_checked() -> None:
    spec = pod_spec(container(limits={"nvidia.com/gpu": 0.5}))
    assert check(gpu_quantities, DEPLOYMENT, deployment(spec))


def test_tfjob_replica_templates_are_each_checked() -> None:
    inputs = tfjob(
        {
            "Worker": pod_spec(container("tensorflow", limits={"nvidia.com/gpu": 1})),
            "Chief": pod_spec(container("tensorflow", requests={"nvidia.com/gpu": 1})),
            "PS": pod_spec(container("tensorflow", limits={"nvidia.com/gpu": "500m"})),
        }
    )
    messages = check(gpu_quantities, TFJOB, inputs)
    assert len(messages) == 2
    assert any("spec.tfReplicaSpecs.Chief.template.spec" in m and "no limit" in m for m in messages)
    assert any("spec.tfReplicaSpecs.PS.template.spec" in m for m in messages)


def test_pytorchjob_and_notebook_are_checked() -> None:
    bad = pod_spec(container(requests={"nvidia.com/gpu": 1}))
    pytorchjob = {
        "metadata": {"name": "p", "namespace": "research"},
        "spec": {"pytorchReplicaSpecs": {"Master": {"template": {"spec": bad}}}},
    }
    notebook = {
        "metadata": {"name": "n", "namespace": "research"},
        "spec": {"template": {"spec": bad}},
    }
    assert check(gpu_quantities, "kubernetes:kubeflow.org/v1:PyTorchJob", pytorchjob)
    assert check(gpu_quantities, "kubernetes:kubeflow.org/v1:Notebook", notebook)


def test_a_patch_may_leave_the_limit_to_the_live_object() -> None:
    spec = pod_spec(container(requests={"nvidia.com/gpu": 1}))
    assert check(gpu_quantities, "kubernetes:apps/v1:DeploymentPatch", deployment(spec)) == []
    spec = pod_spec(container(limits={"nvidia.com/gpu": "0.5"}))
    assert check(gpu_quantities, "kubernetes:apps/v1:DeploymentPatch", deployment(spec))


def test_unknown_quantities_are_left_for_the_update() -> None:
    inputs = gpu_pod(requests={"nvidia.com/gpu": UNKNOWN}, limits={"nvidia.com/gpu": UNKNOWN})
    assert check(gpu_quantities, POD, inputs) == []
    inputs = gpu_pod(requests={"nvidia.com/gpu": 1}, limits=None)
    inputs["spec"]["containers"][0]["resources"]["limits"] = UNKNOWN
    assert check(gpu_quantities, POD, inputs) == []


def test_other_resource_types_are_ignored() -> None:
    inputs = gpu_pod(requests={"nvidia.com/gpu": "0.5"})
    assert check(gpu_quantities, "kubernetes:core/v1:ConfigMap", inputs) == []
    assert check(gpu_quantities, "aws:eks/nodeGroup:NodeGroup", inputs) == []
