"""The ml-platform policy pack's rules: what must never ship, whichever stack deploys it."""

from __future__ import annotations

from pulumi_policy import ResourceValidationPolicy

from .aws import efs_encryption, iam_admin
from .network import public_load_balancers
from .pods import gpu_quantities, image_tags, privileged_pods
from .quotas import limit_range_gpus, resource_quota_gpus

PACK_NAME = "ml-platform"

POLICIES: list[ResourceValidationPolicy] = [
    gpu_quantities,
    limit_range_gpus,
    resource_quota_gpus,
    public_load_balancers,
    privileged_pods,
    efs_encryption,
    image_tags,
    iam_admin,
]

__all__ = ["PACK_NAME", "POLICIES"]
