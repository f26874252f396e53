"""Node pools: the CPU system pool and the GPU pools."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from infra import instances
from infra.settings.base import (
    ConfigProblem,
    DnsLabel,
    SettingsModel,
    Size,
    refuse_duplicates,
)

# EKS node group names are at most 63 characters: "<pool>-" plus a 26-character unique suffix.
MAX_POOL_NAME = 63 - 26 - 1

CPU_AMI_TYPES = ("AL2023_x86_64_STANDARD", "BOTTLEROCKET_x86_64")
GPU_AMI_TYPES = ("AL2023_x86_64_NVIDIA", "BOTTLEROCKET_x86_64_NVIDIA")


class _PoolSettings(SettingsModel):
    instance_types: list[str] = Field(description="EC2 instance types, e.g. [g5.xlarge].")
    capacity_type: Literal["ON_DEMAND", "SPOT"] = Field(
        default="ON_DEMAND", description="`ON_DEMAND` or `SPOT`."
    )
    min_size: Size = Field(description="Fewest nodes the autoscaler keeps.")
    max_size: Annotated[int, Field(ge=1)] = Field(description="Most nodes the autoscaler adds.")
    desired_size: Size | None = Field(
        default=None,
        description="Nodes at creation (default: min size); the autoscaler owns it afterwards.",
    )
    disk_size_gib: Annotated[int, Field(ge=20, le=16384)] = Field(
        default=100,
        alias="diskSizeGiB",
        description="Root volume size in GiB (images of ML frameworks are large).",
    )
    ami_type: str = Field(description="EKS AMI type.")

    def _check_sizes(self) -> None:
        if self.min_size > self.max_size:
            raise ConfigProblem(
                ("minSize",),
                f"min size {self.min_size} is larger than max size {self.max_size}; "
                "make minSize <= maxSize",
            )
        desired = self.desired_size
        if desired is not None and not self.min_size <= desired <= self.max_size:
            raise ConfigProblem(
                ("desiredSize",),
                f"desired size {desired} must lie between minSize {self.min_size} and "
                f"maxSize {self.max_size}",
            )
        for index, instance_type in enumerate(self.instance_types):
            if not instances.is_instance_type_name(instance_type):
                raise ConfigProblem(
                    ("instanceTypes", index),
                    f"{instance_type!r} is not an EC2 instance type such as `m7i.large`",
                )
        refuse_duplicates(self.instance_types, lambda t: t, ("instanceTypes",), "instance type")
        if self.capacity_type == "SPOT" and len(self.instance_types) < 2:
            raise ConfigProblem(
                ("instanceTypes",),
                "a SPOT pool needs at least two instance types so EC2 can find spare capacity "
                "(e.g. [g5.xlarge, g6.xlarge]); use ON_DEMAND for a single type",
            )

    @property
    def initial_size(self) -> int:
        return self.min_size if self.desired_size is None else self.desired_size


class SystemPoolSettings(_PoolSettings):
    instance_types: list[str] = Field(
        default_factory=lambda: ["m7i.large", "m6i.large"],
        min_length=1,
        description="CPU instance types for platform controllers.",
    )
    min_size: Annotated[int, Field(ge=1)] = Field(
        default=2, description="Fewest nodes; at least one, since cluster add-ons run here."
    )
    max_size: Annotated[int, Field(ge=1)] = Field(default=4, description="Most nodes.")
    ami_type: str = Field(default="AL2023_x86_64_STANDARD", description="EKS AMI type.")

    @model_validator(mode="after")
    def _check(self) -> SystemPoolSettings:
        self._check_sizes()
        if self.ami_type not in CPU_AMI_TYPES:
            raise ConfigProblem(
                ("amiType",), f"the system pool needs a CPU AMI type: one of {CPU_AMI_TYPES}"
            )
        for index, instance_type in enumerate(self.instance_types):
            if instances.is_accelerated(instance_type):
                raise ConfigProblem(
                    ("instanceTypes", index),
                    f"{instance_type} has an accelerator; the system pool runs CPU-only "
                    "controllers, so use a general-purpose type such as m7i.large",
                )
        return self


class GpuSharingSettings(SettingsModel):
    mode: Literal["none", "time-slicing", "mig"] = Field(
        default="none",
        description="`none` (one pod per GPU), `time-slicing` (pods take turns on a GPU; no "
        "memory or fault isolation) or `mig` (hardware partitions; p4d, p4de, p5, p5e, p5en, "
        "p6-b200 only).",
    )
    replicas: Annotated[int, Field(ge=2, le=64)] | None = Field(
        default=None, description="time-slicing: pods that share one GPU."
    )
    rename_shared: bool = Field(
        default=True,
        description="time-slicing: advertise shares as `nvidia.com/gpu.shared`, so a pod asking "
        "for a whole `nvidia.com/gpu` never lands on a shared one.",
    )
    mig_profile: str | None = Field(
        default=None,
        description="mig: the profile every GPU is cut into, e.g. `1g.10gb` (7 per H100).",
    )
    mig_strategy: Literal["single", "mixed"] = Field(
        default="single",
        description="mig: `single` advertises slices as `nvidia.com/gpu`; `mixed` as "
        "`nvidia.com/mig-<profile>`.",
    )

    @model_validator(mode="after")
    def _check(self) -> GpuSharingSettings:
        given = self.model_fields_set
        own = {
            "none": set(),
            "time-slicing": {"replicas", "rename_shared"},
            "mig": {"mig_profile", "mig_strategy"},
        }[self.mode]
        for key in sorted(given - own - {"mode"}):
            alias = type(self).model_fields[key].alias or key
            raise ConfigProblem(
                (alias,), f"does not apply to sharing mode `{self.mode}`; remove it"
            )
        if self.mode == "time-slicing" and self.replicas is None:
            raise ConfigProblem(
                ("replicas",), "time-slicing needs the number of pods per GPU, e.g. replicas: 4"
            )
        if self.mode == "mig" and not self.mig_profile:
            raise ConfigProblem(
                ("migProfile",), "mig needs the profile to cut each GPU into, e.g. 1g.10gb"
            )
        return self


class GpuPoolSettings(_PoolSettings):
    name: DnsLabel = Field(description="Pool name, used in node labels and resource names.")
    instance_types: list[str] = Field(
        min_length=1, description="GPU instance types from the supported catalogue."
    )
    ami_type: str = Field(default="AL2023_x86_64_NVIDIA", description="EKS NVIDIA AMI type.")
    sharing: GpuSharingSettings = Field(
        default_factory=GpuSharingSettings, description="How pods share this pool's GPUs."
    )

    @model_validator(mode="after")
    def _check(self) -> GpuPoolSettings:
        if len(self.name) > MAX_POOL_NAME:
            raise ConfigProblem(
                ("name",),
                f"{self.name!r} is too long: the node group name is the pool name plus a "
                f"26-character suffix within EKS's 63, so use at most {MAX_POOL_NAME} characters",
            )
        self._check_sizes()
        if self.ami_type not in GPU_AMI_TYPES:
            raise ConfigProblem(
                ("amiType",),
                f"{self.ami_type!r} has no NVIDIA driver; GPU pools need one of {GPU_AMI_TYPES}",
            )
        supported = ", ".join(instances.supported_gpu_families())
        for index, instance_type in enumerate(self.instance_types):
            if instances.gpu_instance(instance_type) is not None:
                continue
            if instances.is_accelerated(instance_type):
                why = f"{instance_type} is not a supported GPU instance type"
            else:
                why = f"{instance_type} has no GPU"
            raise ConfigProblem(
                ("instanceTypes", index),
                f"{why}; GPU pools use the families {supported} (e.g. g5.xlarge, g6.xlarge)",
            )
        gpu_counts = {instances.GPU_INSTANCE_TYPES[t].gpus for t in self.instance_types}
        if len(gpu_counts) > 1:
            raise ConfigProblem(
                ("instanceTypes",),
                "all instance types of one pool must have the same number of GPUs (the "
                "autoscaler treats a pool's nodes as identical); got GPU counts "
                f"{sorted(gpu_counts)}",
            )
        if self.sharing.mode == "mig":
            self._check_mig()
        return self

    def _check_mig(self) -> None:
        capable = [f for f in instances.supported_gpu_families() if instances.family_mig_capable(f)]
        models = set()
        for index, instance_type in enumerate(self.instance_types):
            instance = instances.GPU_INSTANCE_TYPES[instance_type]
            if not instance.mig_capable:
                raise ConfigProblem(
                    ("sharing", "mode"),
                    f"pool {self.name!r}: {instance_type} ({instance.gpu_model}) cannot be "
                    f"partitioned with MIG (instanceTypes[{index}]); MIG needs one of "
                    f"{', '.join(capable)}, or use time-slicing",
                )
            models.add((instance.gpu_model, instance.gpu_memory_gib))
        if len(models) > 1:
            raise ConfigProblem(
                ("instanceTypes",),
                f"pool {self.name!r}: MIG profiles differ between GPU models; use instance types "
                f"with one GPU model (got {sorted(m for m, _ in models)})",
            )
        offered = instances.mig_profiles(instances.GPU_INSTANCE_TYPES[self.instance_types[0]])
        if self.sharing.mig_profile not in offered:
            raise ConfigProblem(
                ("sharing", "migProfile"),
                f"pool {self.name!r}: {self.sharing.mig_profile!r} is not a MIG profile of "
                f"{self.instance_types[0]}; use one of {', '.join(offered)}",
            )

    @property
    def gpus_per_node(self) -> int:
        return instances.GPU_INSTANCE_TYPES[self.instance_types[0]].gpus


class NodePoolsSettings(SettingsModel):
    system: SystemPoolSettings = Field(
        default_factory=SystemPoolSettings, description="The CPU pool for platform controllers."
    )
    gpu: list[GpuPoolSettings] = Field(
        default_factory=list, description="GPU pools, each tainted and labelled for GPU work."
    )

    @model_validator(mode="after")
    def _check(self) -> NodePoolsSettings:
        refuse_duplicates(self.gpu, lambda p: p.name, ("gpu",), "GPU pool name", field="name")
        strategies = {p.sharing.mig_strategy for p in self.gpu if p.sharing.mode == "mig"}
        if len(strategies) > 1:
            raise ConfigProblem(
                ("gpu",),
                "MIG pools must share one migStrategy (the GPU Operator applies it to every "
                f"node); got {sorted(strategies)}",
            )
        for index, pool in enumerate(self.gpu):
            if pool.name == "system":
                raise ConfigProblem(
                    ("gpu", index, "name"), "`system` is the CPU pool's name; pick another"
                )
        return self
