"""no-gpu-defaults-in-limit-ranges and gpu-quotas-on-requests."""

from __future__ import annotations

from typing import Any

import pytest

from ml_platform_policy.quotas import limit_range_gpus, resource_quota_gpus
from tests.helpers import UNKNOWN, check, metadata

LIMIT_RANGE = "kubernetes:core/v1:LimitRange"
RESOURCE_QUOTA = "kubernetes:core/v1:ResourceQuota"


def limit_range(*items: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "LimitRange",
        "metadata": metadata(),
        "spec": {"limits": list(items)},
    }


def quota(hard: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": metadata(),
        "spec": {"hard": hard},
    }


def test_the_platforms_limit_range_passes() -> None:
    inputs = limit_range(
        {"type": "Container", "defaultRequest": {"cpu": "100m", "memory": "256Mi"}}
    )
    assert check(limit_range_gpus, LIMIT_RANGE, inputs) == []


@pytest.mark.parametrize("setting", ["default", "defaultRequest", "min"])
@pytest.mark.parametrize(
    "resource", ["nvidia.com/gpu", "nvidia.com/gpu.shared", "nvidia.com/mig-1g.10gb"]
)
def test_gpu_defaults_are_violations(setting: str, resource: str) -> None:
    inputs = limit_range({"type": "Container", setting: {"cpu": "1", resource: 1}})
    [message] = check(limit_range_gpus, LIMIT_RANGE, inputs)
    assert f"spec.limits[0].{setting} names {resource}" in message


def test_a_gpu_max_alone_is_tolerated() -> None:
    inputs = limit_range({"type": "Container", "max": {"nvidia.com/gpu": 8}})
    assert check(limit_range_gpus, LIMIT_RANGE, inputs) == []
    assert "becomes the default limit" in limit_range_gpus.description


def test_every_item_is_checked() -> None:
    inputs = limit_range(
        {"type": "Pod", "max": {"cpu": "64"}},
        {"type": "Container", "default": {"nvidia.com/gpu": 1}},
    )
    [message] = check(limit_range_gpus, LIMIT_RANGE, inputs)
    assert "spec.limits[1]" in message


def test_odd_limit_ranges_do_not_crash() -> None:
    for spec in ({}, {"limits": UNKNOWN}, {"limits": [UNKNOWN, "x", {"default": UNKNOWN}]}):
        inputs = {"metadata": metadata(), "spec": spec}
        assert check(limit_range_gpus, LIMIT_RANGE, inputs) == []


def test_the_platforms_quota_passes() -> None:
    hard = {
        "persistentvolumeclaims": "10",
        "requests.cpu": "128",
        "limits.cpu": "256",
        "requests.memory": "512Gi",
        "requests.nvidia.com/gpu": "16",
        "requests.nvidia.com/gpu.shared": "16",
        "requests.nvidia.com/mig-1g.10gb": "4",
        "requests.storage": "2Ti",
    }
    assert check(resource_quota_gpus, RESOURCE_QUOTA, quota(hard)) == []


@pytest.mark.parametrize(
    "key",
    ["limits.nvidia.com/gpu", "limits.nvidia.com/gpu.shared", "limits.nvidia.com/mig-2g.20gb"],
)
def test_limits_gpu_quota_keys_are_violations(key: str) -> None:
    [message] = check(resource_quota_gpus, RESOURCE_QUOTA, quota({key: "4"}))
    assert f"use 'requests.{key.removeprefix('limits.')}'" in message


def test_a_bare_gpu_quota_key_is_a_violation() -> None:
    [message] = check(resource_quota_gpus, RESOURCE_QUOTA, quota({"nvidia.com/gpu": 4}))
    assert "use 'requests.nvidia.com/gpu'" in message


def test_odd_quotas_do_not_crash() -> None:
    odd: tuple[Any, ...] = (UNKNOWN, None, [], "x", {"requests.nvidia.com/gpu": UNKNOWN})
    for hard in odd:
        assert check(resource_quota_gpus, RESOURCE_QUOTA, quota(hard)) == []
    assert (
        check(resource_quota_gpus, "kubernetes:core/v1:ConfigMap", quota({"nvidia.com/gpu": 1}))
        == []
    )
