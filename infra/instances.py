"""The catalogue of EC2 GPU instance types the platform supports.

One table used by settings validation (is this a GPU instance? can it do MIG?) and by scheduling
checks (how many GPUs, how much cpu and memory a node offers).  p2 and p3 are left out on purpose:
the EKS AL2023 NVIDIA AMIs no longer support Kepler, and Volta is not worth new work.

Source: the EC2 accelerated-computing instance pages and the EKS "ML AMI" page (AL2023 NVIDIA
supports g4dn, g5, g6, g6e, p4d, p4de, p5, p5e, p5en, p6-b200), checked 2026-11-28.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class GpuInstanceType:
    """What one EC2 GPU instance type offers."""

    name: str
    gpus: int
    gpu_model: str
    gpu_memory_gib: int
    mig_capable: bool
    vcpus: int
    memory_gib: int


@dataclass(frozen=True)
class _Family:
    gpu_model: str
    gpu_memory_gib: int
    mig_capable: bool
    sizes: tuple[tuple[str, int, int, int], ...]  # (size, gpus, vcpus, memory GiB)


# g-families share a size ladder; the GPU count only grows at 12xlarge and up.
_G_LADDER = (
    ("xlarge", 1, 4, 16),
    ("2xlarge", 1, 8, 32),
    ("4xlarge", 1, 16, 64),
    ("8xlarge", 1, 32, 128),
    ("12xlarge", 4, 48, 192),
    ("16xlarge", 1, 64, 256),
    ("24xlarge", 4, 96, 384),
    ("48xlarge", 8, 192, 768),
)

_FAMILIES: dict[str, _Family] = {
    "g4dn": _Family(
        "NVIDIA T4",
        16,
        False,
        (
            ("xlarge", 1, 4, 16),
            ("2xlarge", 1, 8, 32),
            ("4xlarge", 1, 16, 64),
            ("8xlarge", 1, 32, 128),
            ("12xlarge", 4, 48, 192),
            ("16xlarge", 1, 64, 256),
            ("metal", 8, 96, 384),
        ),
    ),
    "g5": _Family("NVIDIA A10G", 24, False, _G_LADDER),
    "g6": _Family("NVIDIA L4", 24, False, _G_LADDER),
    "g6e": _Family(
        "NVIDIA L40S",
        48,
        False,
        tuple((size, gpus, vcpus, mem * 2) for size, gpus, vcpus, mem in _G_LADDER),
    ),
    "p4d": _Family("NVIDIA A100", 40, True, (("24xlarge", 8, 96, 1152),)),
    "p4de": _Family("NVIDIA A100", 80, True, (("24xlarge", 8, 96, 1152),)),
    "p5": _Family("NVIDIA H100", 80, True, (("4xlarge", 1, 16, 256), ("48xlarge", 8, 192, 2048))),
    "p5e": _Family("NVIDIA H200", 141, True, (("48xlarge", 8, 192, 2048),)),
    "p5en": _Family("NVIDIA H200", 141, True, (("48xlarge", 8, 192, 2048),)),
    "p6-b200": _Family("NVIDIA B200", 179, True, (("48xlarge", 8, 192, 2048),)),
}

GPU_INSTANCE_TYPES: dict[str, GpuInstanceType] = {
    f"{family}.{size}": GpuInstanceType(
        name=f"{family}.{size}",
        gpus=gpus,
        gpu_model=spec.gpu_model,
        gpu_memory_gib=spec.gpu_memory_gib,
        mig_capable=spec.mig_capable,
        vcpus=vcpus,
        memory_gib=memory,
    )
    for family, spec in _FAMILIES.items()
    for size, gpus, vcpus, memory in spec.sizes
}

# Families that carry an accelerator and must therefore not back a CPU pool; includes families we
# do not support for GPU pools (p2, p3, inf, trn, dl) so they are refused with a clear message.
_ACCELERATED_FAMILY = re.compile(r"^(p\d|g\d|inf\d|trn\d|dl\d|f\d|vt\d)")
_INSTANCE_TYPE = re.compile(r"^[a-z][a-z0-9-]*\.(nano|micro|small|medium|large|metal|\d*xlarge)$")


# MIG profiles per GPU model and memory: profile -> most instances of it one GPU holds.  Only
# whole-GPU-uniform layouts are offered (every GPU of a node cut into one profile), so a pool's
# capacity is simply GPUs x instances.  Sources: NVIDIA MIG user guide, "Supported MIG Profiles"
# (A100-40GB) and NVIDIA/mig-parted's default config (80GB A100/H100, H200, B200).
# The 80 GB A100 and the H100 cut into the same slices.
_EIGHTY_GB_PROFILES = {
    "1g.10gb": 7,
    "1g.20gb": 4,
    "2g.20gb": 3,
    "3g.40gb": 2,
    "4g.40gb": 1,
    "7g.80gb": 1,
}
MIG_PROFILES: dict[tuple[str, int], dict[str, int]] = {
    ("NVIDIA A100", 40): {
        "1g.5gb": 7,
        "1g.10gb": 4,
        "2g.10gb": 3,
        "3g.20gb": 2,
        "4g.20gb": 1,
        "7g.40gb": 1,
    },
    ("NVIDIA A100", 80): _EIGHTY_GB_PROFILES,
    ("NVIDIA H100", 80): _EIGHTY_GB_PROFILES,
    ("NVIDIA H200", 141): {
        "1g.18gb": 7,
        "1g.35gb": 4,
        "2g.35gb": 3,
        "3g.71gb": 2,
        "4g.71gb": 1,
        "7g.141gb": 1,
    },
    ("NVIDIA B200", 179): {
        "1g.23gb": 7,
        "1g.45gb": 4,
        "2g.45gb": 3,
        "3g.90gb": 2,
        "4g.90gb": 1,
        "7g.180gb": 1,
    },
}


# cluster-autoscaler's names for the GPU models it knows on AWS, the values of its GPU label it
# reports metrics by (kubernetes/autoscaler@cluster-autoscaler-1.35.2:cluster-autoscaler/
# cloudprovider/aws/aws_cloud_provider.go, availableGPUTypes).  Models it does not list get the
# same spelling, `nvidia-<model>`; the autoscaler reports those as "not-listed" in its metrics
# (utils/gpu/gpu.go validateGpuType).  The value has no other use on AWS: per-type limits
# (`--gpu-total`) work on GKE only (config/flags/flags.go).
_AUTOSCALER_GPU_TYPES = {
    "NVIDIA T4": "nvidia-tesla-t4",
    "NVIDIA A10G": "nvidia-a10g",
    "NVIDIA L4": "nvidia-l4",
    "NVIDIA L40S": "nvidia-l40s",
    "NVIDIA A100": "nvidia-tesla-a100",
}


def autoscaler_gpu_type(gpu_model: str) -> str:
    """The GPU type cluster-autoscaler knows this model by (`nvidia-a10g` for an A10G)."""
    known = _AUTOSCALER_GPU_TYPES.get(gpu_model)
    return known or "nvidia-" + gpu_model.removeprefix("NVIDIA ").lower()


def mig_profiles(instance: GpuInstanceType) -> dict[str, int]:
    """The uniform MIG profiles one GPU of this instance type can be cut into ({} if none)."""
    if not instance.mig_capable:
        return {}
    return MIG_PROFILES.get((instance.gpu_model, instance.gpu_memory_gib), {})


# On-demand list prices, USD per instance-hour, Linux, shared tenancy, us-east-1, as of
# PRICES_DATED.  Every figure is AWS's Price List API as mirrored in Karpenter's generated price
# table, PRICES_SOURCE_REPOSITORY@PRICES_SOURCE_REF:pkg/providers/pricing/
# zz_generated.pricing_aws.go (L19 "generated at 2026-07-20T13:44:30Z for us-east-1", g families
# L186-199, p families L418-427); its query, pricing.go L210-222 and L258-290: regionCode,
# operatingSystem Linux, tenancy Shared, capacitystatus Used, preInstalledSw NA, marketoption
# OnDemand.  g4dn.metal comes from the mirror's bare-metal query (pricing.go L224-237:
# productFamily "Compute Instance (bare metal)", tenancy Dedicated).  Each price also names where
# else it was seen (PRICE_SOURCES).  The p prices are those after AWS's June 2025 cut: the
# mirror's regeneration of 2025-06-23 is the first with them (p5.48xlarge 98.32 -> 55.04,
# p4d.24xlarge 32.7726 -> 21.957642), unchanged through 2026-07-20.  A type with no confirmed
# price is left out rather than guessed: the mirror lists no on-demand price for p5e.48xlarge in
# this or any earlier regeneration (AWS offers it through EC2 Capacity Blocks), so a stack running
# it sets `ml-platform:gpu.prices`, as any stack may to replace these with its region's or
# discounted price.
PRICES_DATED = "2026-12-02"
PRICES_REGION = "us-east-1"
PRICES_SOURCE_REPOSITORY = "aws/karpenter-provider-aws"
# "chore: Update data from AWS APIs (#9435)", 2026-07-20, the file's newest regeneration.
PRICES_SOURCE_REF = "6fc13b5236fd04fd16ff3f9dc7490d0813994099"

# The published pages each price was read from (site, and the date the page gives).
PRICE_SOURCES = {
    "aws-price-list": (
        "AWS Price List API, as generated into aws/karpenter-provider-aws "
        "pkg/providers/pricing/zz_generated.pricing_aws.go, generated 2026-07-20"
    ),
    "factualminds": (
        "factualminds.com, 'Amazon EC2 On-Demand Pricing: Instance Families, Regional "
        "Multipliers, and the Graviton Crossover (2026)', 2026-06-17"
    ),
    "datareceipts": (
        "raw.githubusercontent.com/datareceipts/data-receipts 109-gpu-pricing/hyperscalers.json, "
        "retrieved 2026-11-09"
    ),
    "dstack": (
        "github.com/dstackai/dstack pull 4110 'Add AWS p5en.48xlarge', `dstack offer` output, "
        "2026-08-06"
    ),
}


@dataclass(frozen=True)
class ListPrice:
    usd_per_hour: float
    # Keys of PRICE_SOURCES that give this figure.
    sources: tuple[str, ...] = ("aws-price-list",)


ON_DEMAND_PRICES: dict[str, ListPrice] = {
    "g4dn.xlarge": ListPrice(0.526),
    "g4dn.2xlarge": ListPrice(0.752),
    "g4dn.4xlarge": ListPrice(1.204),
    "g4dn.8xlarge": ListPrice(2.176),
    "g4dn.12xlarge": ListPrice(3.912),
    "g4dn.16xlarge": ListPrice(4.352),
    "g4dn.metal": ListPrice(7.824),
    "g5.xlarge": ListPrice(1.006, ("aws-price-list", "factualminds")),
    "g5.2xlarge": ListPrice(1.212),
    "g5.4xlarge": ListPrice(1.624),
    "g5.8xlarge": ListPrice(2.448),
    "g5.12xlarge": ListPrice(5.672),
    "g5.16xlarge": ListPrice(4.096),
    "g5.24xlarge": ListPrice(8.144),
    "g5.48xlarge": ListPrice(16.288),
    "g6.xlarge": ListPrice(0.8048),
    "g6.2xlarge": ListPrice(0.9776),
    "g6.4xlarge": ListPrice(1.3232),
    "g6.8xlarge": ListPrice(2.0144),
    "g6.12xlarge": ListPrice(4.6016),
    "g6.16xlarge": ListPrice(3.3968),
    "g6.24xlarge": ListPrice(6.6752),
    "g6.48xlarge": ListPrice(13.3504),
    "g6e.xlarge": ListPrice(1.861),
    "g6e.2xlarge": ListPrice(2.24208),
    "g6e.4xlarge": ListPrice(3.00424),
    "g6e.8xlarge": ListPrice(4.52856),
    "g6e.12xlarge": ListPrice(10.49264),
    "g6e.16xlarge": ListPrice(7.57719),
    "g6e.24xlarge": ListPrice(15.06559),
    "g6e.48xlarge": ListPrice(30.13118),
    "p4d.24xlarge": ListPrice(21.957642, ("aws-price-list", "datareceipts")),
    "p4de.24xlarge": ListPrice(27.44705, ("aws-price-list", "datareceipts")),
    "p5.4xlarge": ListPrice(6.88),
    "p5.48xlarge": ListPrice(55.04, ("aws-price-list", "datareceipts")),
    "p5en.48xlarge": ListPrice(63.296, ("aws-price-list", "dstack")),
    "p6-b200.48xlarge": ListPrice(113.9328),
}


def price_per_gpu_hour(instance_type: str, overrides: dict[str, float]) -> float | None:
    """USD per GPU-hour on this instance type: the stack's price if it sets one, else the list
    price, divided by the instance's GPUs; None when neither is known."""
    instance = GPU_INSTANCE_TYPES[instance_type]
    listed = ON_DEMAND_PRICES.get(instance_type)
    price = overrides.get(instance_type, listed.usd_per_hour if listed else None)
    return None if price is None else price / instance.gpus


def is_instance_type_name(name: str) -> bool:
    """True if `name` looks like an EC2 instance type (family.size)."""
    return bool(_INSTANCE_TYPE.match(name))


def is_accelerated(name: str) -> bool:
    """True for any instance type with a GPU or other accelerator, supported or not."""
    return bool(_ACCELERATED_FAMILY.match(name))


def gpu_instance(name: str) -> GpuInstanceType | None:
    """The catalogue entry for a GPU instance type, or None if we do not support it."""
    return GPU_INSTANCE_TYPES.get(name)


def supported_gpu_families() -> list[str]:
    return list(_FAMILIES)


def family_mig_capable(family: str) -> bool:
    return _FAMILIES[family].mig_capable
