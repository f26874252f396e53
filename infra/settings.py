"""The stack's configuration, parsed once into typed, validated settings.

Every `ml-platform:*` key of `Pulumi.<stack>.yaml` is validated here before the program registers a
single resource.  A bad value stops the program with a message that names the stack file, the full
key path, what is wrong and what is allowed.
"""

from __future__ import annotations

import contextlib
import difflib
import ipaddress
import json
import re
from collections.abc import Iterable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Literal, get_args, get_origin

import pulumi
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)
from pydantic.alias_generators import to_camel

from infra import instances, names, versions

PROJECT = "ml-platform"


class SettingsError(pulumi.RunError):
    """A stack configuration problem; Pulumi prints it without a stack trace."""


class ConfigProblem(ValueError):
    """Raised by cross-field validators to point at a key below the model being validated."""

    def __init__(self, loc: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.loc = loc
        self.message = message


# --- reusable value types ---------------------------------------------------------------------

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_QUANTITY = re.compile(
    r"^(?P<num>\d+(\.\d+)?|\.\d+)(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E|[eE][+-]?\d+)?$"
)
_SUFFIX_FACTOR = {
    "": Decimal(1),
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "k": Decimal(10) ** 3,
    "M": Decimal(10) ** 6,
    "G": Decimal(10) ** 9,
    "T": Decimal(10) ** 12,
    "P": Decimal(10) ** 15,
    "E": Decimal(10) ** 18,
    "Ki": Decimal(2) ** 10,
    "Mi": Decimal(2) ** 20,
    "Gi": Decimal(2) ** 30,
    "Ti": Decimal(2) ** 40,
    "Pi": Decimal(2) ** 50,
    "Ei": Decimal(2) ** 60,
}


def quantity_value(quantity: str) -> Decimal:
    """The numeric value of a Kubernetes quantity ("500m" -> 0.5, "1Gi" -> 1073741824)."""
    match = _QUANTITY.match(quantity)
    if not match:
        raise ValueError(f"{quantity!r} is not a Kubernetes quantity")
    suffix = match["suffix"] or ""
    number = Decimal(match["num"])
    if suffix[:1] in ("e", "E"):
        return number * (Decimal(10) ** int(suffix[1:]))
    return number * _SUFFIX_FACTOR[suffix]


def _check_quantity(value: str) -> str:
    try:
        amount = quantity_value(value)
    except (ValueError, InvalidOperation):
        raise ValueError(
            f"{value!r} is not a Kubernetes quantity; write a number with an optional unit "
            "suffix, e.g. 500m, 4, 16Gi, 1Ti"
        ) from None
    if amount <= 0:
        raise ValueError(f"{value!r} must be greater than zero")
    return value


def _check_dns_label(value: str) -> str:
    if len(value) > 63 or not _DNS_LABEL.match(value):
        raise ValueError(
            f"{value!r} is not a valid name: use at most 63 lower-case letters, digits and '-', "
            "starting and ending with a letter or digit"
        )
    return value


def _reject_non_string_version(value: Any) -> Any:
    if isinstance(value, int | float) and not isinstance(value, bool):
        raise ValueError(
            f'write the version as a quoted string such as "1.35"; YAML read {value!r} as a '
            "number (1.30 would become 1.3)"
        )
    return value


Quantity = Annotated[str, AfterValidator(_check_quantity)]
DnsLabel = Annotated[str, AfterValidator(_check_dns_label)]
Size = Annotated[int, Field(ge=0)]


class _Settings(BaseModel):
    """Base for every settings model: camelCase keys, unknown keys rejected, immutable."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        strict=True,
        alias_generator=to_camel,
        validate_default=True,
    )


# --- cluster ------------------------------------------------------------------------------------

_EKS_CLUSTER_NAME = re.compile(r"^[0-9A-Za-z][A-Za-z0-9_-]{0,99}$")


class ClusterSettings(_Settings):
    mode: Literal["eks", "existing"] = Field(
        description="`eks` creates an EKS cluster; `existing` deploys onto a cluster reached "
        "through a kubeconfig context and creates no AWS resource."
    )
    name: str = Field(
        description="Cluster name: the EKS cluster name, or a label for the existing cluster.",
        min_length=1,
    )
    kubernetes_version: Annotated[str, BeforeValidator(_reject_non_string_version)] = Field(
        default=versions.DEFAULT_KUBERNETES_VERSION,
        description='Kubernetes minor version, quoted, e.g. "1.35".',
    )
    kubeconfig: str | None = Field(
        default=None,
        description="existing mode: path of the kubeconfig file (default: $KUBECONFIG or "
        "~/.kube/config).",
    )
    context: str | None = Field(
        default=None, description="existing mode: the kubeconfig context to deploy to."
    )

    @model_validator(mode="after")
    def _check_mode(self) -> ClusterSettings:
        if self.mode == "eks":
            if not _EKS_CLUSTER_NAME.match(self.name):
                raise ConfigProblem(
                    ("name",),
                    f"{self.name!r} is not a valid EKS cluster name: use 1-100 letters, digits, "
                    "'-' and '_', starting with a letter or digit",
                )
            allowed = versions.eks_versions()
            where = "EKS"
        else:
            allowed = versions.existing_cluster_versions()
            where = "existing clusters"
        if self.kubernetes_version not in allowed:
            raise ConfigProblem(
                ("kubernetesVersion",),
                f"Kubernetes {self.kubernetes_version!r} is not supported for {where}; "
                f"use one of {', '.join(allowed)}",
            )
        if self.mode == "eks":
            for key in ("kubeconfig", "context"):
                if getattr(self, key) is not None:
                    raise ConfigProblem(
                        (key,),
                        "only applies to mode `existing`; an EKS cluster's kubeconfig is "
                        "generated by the program, so remove this key",
                    )
        elif not self.context:
            raise ConfigProblem(
                ("context",),
                "mode `existing` needs the kubeconfig context to deploy to, e.g. `kind-ml`; "
                "`kubectl config get-contexts` lists them",
            )
        return self


# --- AWS ------------------------------------------------------------------------------------------

_REGION = re.compile(r"^[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-\d$")
_IAM_PRINCIPAL = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:(role|user)/[\w+=,.@/-]+$")
_CLOUDWATCH_RETENTION_DAYS = (
    1,
    3,
    5,
    7,
    14,
    30,
    60,
    90,
    120,
    150,
    180,
    365,
    400,
    545,
    731,
    1096,
    1827,
    2192,
    2557,
    2922,
    3288,
    3653,
)
MAX_ZONES = 6


def _check_cidr(value: str) -> str:
    try:
        ipaddress.IPv4Network(value)
    except ValueError as error:
        raise ValueError(
            f"{value!r} is not an IPv4 CIDR block such as 10.0.0.0/16 ({error})"
        ) from None
    return value


Cidr = Annotated[str, AfterValidator(_check_cidr)]


class EndpointSettings(_Settings):
    public_access: bool = Field(
        default=True,
        description="Serve the API endpoint publicly too (private access is always on).",
    )
    public_access_cidrs: list[Cidr] = Field(
        default_factory=lambda: ["0.0.0.0/0"],
        min_length=1,
        description="Networks allowed to reach the public endpoint (CI runners, VPN egress).",
    )


class ExistingVpcSettings(_Settings):
    vpc_id: str = Field(pattern=r"^vpc-[0-9a-f]{8,17}$", description="VPC to use.")
    private_subnet_ids: list[Annotated[str, Field(pattern=r"^subnet-[0-9a-f]{8,17}$")]] = Field(
        description="One private subnet per availability zone, in the zones' order."
    )
    public_subnet_ids: list[Annotated[str, Field(pattern=r"^subnet-[0-9a-f]{8,17}$")]] = Field(
        default_factory=list, description="Public subnets for internet-facing load balancers."
    )


class AccessSettings(_Settings):
    admins: list[str] = Field(
        default_factory=list,
        description="IAM role/user ARNs given cluster-admin through EKS access entries.",
    )
    include_deployer: bool = Field(
        default=True,
        description="Also give cluster-admin to the IAM role running `pulumi up` (turn off when "
        "several identities deploy and all are listed in `admins`).",
    )

    @model_validator(mode="after")
    def _check(self) -> AccessSettings:
        for index, arn in enumerate(self.admins):
            if not _IAM_PRINCIPAL.match(arn):
                raise ConfigProblem(
                    ("admins", index),
                    f"{arn!r} is not an IAM role or user ARN such as "
                    "arn:aws:iam::123456789012:role/platform-admin (use the role ARN, not an "
                    "assumed-role session ARN)",
                )
        _refuse_duplicates(self.admins, lambda a: a, ("admins",), "admin principal")
        if not self.admins and not self.include_deployer:
            raise ConfigProblem(
                ("admins",),
                "nobody would be able to reach the cluster: list admin principals or set "
                "includeDeployer: true",
            )
        return self


class AddonVersions(_Settings):
    vpc_cni: str | None = Field(default=None, description="vpc-cni add-on version.")
    coredns: str | None = Field(default=None, description="coredns add-on version.")
    kube_proxy: str | None = Field(default=None, description="kube-proxy add-on version.")
    pod_identity_agent: str | None = Field(
        default=None, description="eks-pod-identity-agent add-on version."
    )


class AwsSettings(_Settings):
    region: str = Field(description="AWS region, e.g. `us-east-1`.")
    availability_zones: list[str] = Field(
        description="Availability zones of the region to spread subnets and nodes over "
        f"(2 to {MAX_ZONES}, as EKS needs at least two)."
    )
    vpc_cidr: Cidr = Field(
        default="10.0.0.0/16",
        description="CIDR of the VPC the program creates (a /16 to /20).",
    )
    nat_gateways: Literal["single", "perZone"] = Field(
        default="single",
        description="`single` NAT gateway (cheaper) or one `perZone` (survives a zone outage).",
    )
    existing_vpc: ExistingVpcSettings | None = Field(
        default=None, description="Use this VPC and its subnets instead of creating one."
    )
    endpoint: EndpointSettings = Field(
        default_factory=EndpointSettings, description="Cluster API endpoint access."
    )
    access: AccessSettings = Field(
        default_factory=AccessSettings, description="Who administers the cluster."
    )
    deletion_protection: bool = Field(
        default=True,
        description="Refuse to delete the EKS cluster until this is turned off (dev may opt out).",
    )
    log_retention_days: int = Field(
        default=90, description="Retention of the control-plane logs in CloudWatch, in days."
    )
    addons: AddonVersions = Field(
        default_factory=AddonVersions,
        description="Managed add-on versions; default: the pins for the cluster's version.",
    )
    tags: dict[str, str] = Field(
        default_factory=dict, description="Extra tags on every AWS resource."
    )

    @model_validator(mode="after")
    def _check_zones(self) -> AwsSettings:
        if not _REGION.match(self.region):
            raise ConfigProblem(
                ("region",), f"{self.region!r} is not an AWS region name such as `us-east-1`"
            )
        zones = self.availability_zones
        if not 2 <= len(zones) <= MAX_ZONES:
            raise ConfigProblem(
                ("availabilityZones",),
                f"EKS needs subnets in at least two availability zones and the VPC plan has "
                f"room for {MAX_ZONES}; got {len(zones)}. List zones of {self.region}, e.g. "
                f"[{self.region}a, {self.region}b]",
            )
        for index, zone in enumerate(zones):
            if not re.fullmatch(re.escape(self.region) + r"[a-z]", zone):
                raise ConfigProblem(
                    ("availabilityZones", index),
                    f"{zone!r} is not an availability zone of region {self.region}; zones are "
                    f"named {self.region}a, {self.region}b, ...",
                )
        _refuse_duplicates(zones, lambda z: z, ("availabilityZones",), "availability zone")
        prefix = ipaddress.IPv4Network(self.vpc_cidr).prefixlen
        if not 16 <= prefix <= 20:
            raise ConfigProblem(
                ("vpcCidr",),
                f"a /{prefix} VPC does not fit the subnet plan (pods take VPC addresses); use a "
                "/16 to /20 block",
            )
        if self.existing_vpc and len(self.existing_vpc.private_subnet_ids) != len(zones):
            raise ConfigProblem(
                ("existingVpc", "privateSubnetIds"),
                f"give one private subnet per availability zone ({len(zones)}), in the same order",
            )
        if self.log_retention_days not in _CLOUDWATCH_RETENTION_DAYS:
            raise ConfigProblem(
                ("logRetentionDays",),
                f"CloudWatch does not offer {self.log_retention_days} days; use one of "
                f"{', '.join(map(str, _CLOUDWATCH_RETENTION_DAYS))}",
            )
        return self


# --- node pools ---------------------------------------------------------------------------------

# EKS node group names are at most 63 characters: "<pool>-" plus a 26-character unique suffix.
MAX_POOL_NAME = 63 - 26 - 1

CPU_AMI_TYPES = ("AL2023_x86_64_STANDARD", "BOTTLEROCKET_x86_64")
GPU_AMI_TYPES = ("AL2023_x86_64_NVIDIA", "BOTTLEROCKET_x86_64_NVIDIA")


class _PoolSettings(_Settings):
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
        _refuse_duplicates(self.instance_types, lambda t: t, ("instanceTypes",), "instance type")
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


class GpuPoolSettings(_PoolSettings):
    name: DnsLabel = Field(description="Pool name, used in node labels and resource names.")
    instance_types: list[str] = Field(
        min_length=1, description="GPU instance types from the supported catalogue."
    )
    ami_type: str = Field(default="AL2023_x86_64_NVIDIA", description="EKS NVIDIA AMI type.")

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
        return self

    @property
    def gpus_per_node(self) -> int:
        return instances.GPU_INSTANCE_TYPES[self.instance_types[0]].gpus


class NodePoolsSettings(_Settings):
    system: SystemPoolSettings = Field(
        default_factory=SystemPoolSettings, description="The CPU pool for platform controllers."
    )
    gpu: list[GpuPoolSettings] = Field(
        default_factory=list, description="GPU pools, each tainted and labelled for GPU work."
    )

    @model_validator(mode="after")
    def _check(self) -> NodePoolsSettings:
        _refuse_duplicates(self.gpu, lambda p: p.name, ("gpu",), "GPU pool name", field="name")
        for index, pool in enumerate(self.gpu):
            if pool.name == "system":
                raise ConfigProblem(
                    ("gpu", index, "name"), "`system` is the CPU pool's name; pick another"
                )
        return self


# --- storage --------------------------------------------------------------------------------------


class NfsSettings(_Settings):
    server: str = Field(min_length=1, description="NFS server host name or address.")
    path: str = Field(pattern=r"^/", description="Exported path on the server, e.g. /exports/ml.")


class VolumeSizes(_Settings):
    datasets: Quantity = Field(default="100Gi", description="Training data volume (RWX).")
    models: Quantity = Field(default="50Gi", description="Exported models volume (RWX).")
    workspace: Quantity = Field(default="20Gi", description="Per-team notebook workspace.")


class StorageSettings(_Settings):
    mode: Literal["efs", "nfs", "storageClass"] | None = Field(
        default=None,
        description="`efs` (AWS stacks; the default there), `nfs` (a static NFS export), or "
        "`storageClass` (an RWX class the cluster already has).",
    )
    nfs: NfsSettings | None = Field(default=None, description="Required for mode `nfs`.")
    storage_class_name: str | None = Field(
        default=None, description="Required for mode `storageClass`."
    )
    sizes: VolumeSizes = Field(default_factory=VolumeSizes, description="Volume sizes.")

    @model_validator(mode="after")
    def _check(self) -> StorageSettings:
        if self.mode == "nfs" and self.nfs is None:
            raise ConfigProblem(
                ("nfs",), "mode `nfs` needs `nfs: {server: <host>, path: /<export>}`"
            )
        if self.mode == "storageClass" and not self.storage_class_name:
            raise ConfigProblem(
                ("storageClassName",),
                "mode `storageClass` needs the name of an RWX StorageClass in the cluster",
            )
        return self


# --- Kubeflow, serving, observability -----------------------------------------------------------


class Switch(_Settings):
    enabled: bool = Field(default=True, description="Install this component.")


class NotebookSettings(Switch):
    cull_idle_minutes: Annotated[int, Field(ge=10)] = Field(
        default=60, description="Stop notebook servers idle this long (frees their GPUs)."
    )


class KubeflowSettings(_Settings):
    training_operator: Switch = Field(
        default_factory=Switch, description="Training operator v1 (TFJob, PyTorchJob)."
    )
    notebooks: NotebookSettings = Field(
        default_factory=NotebookSettings, description="Notebook controller."
    )
    pipelines: Switch = Field(default_factory=Switch, description="Kubeflow Pipelines v2.")

    @property
    def any_enabled(self) -> bool:
        return self.training_operator.enabled or self.notebooks.enabled or self.pipelines.enabled


# --- teams ----------------------------------------------------------------------------------------


class TeamQuota(_Settings):
    gpus: Size = Field(default=0, description="GPUs the team's pods may request in total.")
    cpu: Quantity = Field(default="32", description="Total cpu requests.")
    memory: Quantity = Field(default="128Gi", description="Total memory requests.")


class TeamSettings(_Settings):
    name: DnsLabel = Field(description="Team name; also its namespace.")
    pod_security: Literal["restricted", "baseline"] = Field(
        default="restricted",
        description="Pod Security Standard enforced on the namespace.",
    )
    pod_security_reason: str | None = Field(
        default=None, description="Why the team needs `baseline` (required with it)."
    )
    quota: TeamQuota = Field(default_factory=TeamQuota, description="Resource quota.")

    @model_validator(mode="after")
    def _check(self) -> TeamSettings:
        if self.name in names.RESERVED_NAMESPACES or self.name.startswith("kube-"):
            raise ConfigProblem(
                ("name",), f"{self.name!r} is a platform namespace; choose another team name"
            )
        if self.pod_security == "baseline" and not self.pod_security_reason:
            raise ConfigProblem(
                ("podSecurityReason",),
                "a `baseline` team must say why it cannot run `restricted` pods (e.g. an image "
                "that runs as root)",
            )
        return self


# --- the root -------------------------------------------------------------------------------------


class Settings(_Settings):
    """Everything a stack configures, keyed as `ml-platform:<key>` in `Pulumi.<stack>.yaml`."""

    cluster: ClusterSettings = Field(description="Which cluster to build or use.")
    aws: AwsSettings | None = Field(default=None, description="AWS placement (mode `eks`).")
    node_pools: NodePoolsSettings = Field(
        default_factory=NodePoolsSettings, description="System and GPU node pools."
    )
    storage: StorageSettings = Field(
        default_factory=StorageSettings, description="Shared datasets, models and workspaces."
    )
    kubeflow: KubeflowSettings = Field(
        default_factory=KubeflowSettings, description="Kubeflow components to install."
    )
    serving: Switch = Field(default_factory=Switch, description="TF Serving and inference API.")
    monitoring: Switch = Field(
        default_factory=Switch, description="Prometheus, Grafana and DCGM GPU metrics."
    )
    logging: Switch = Field(default_factory=Switch, description="Fluent Bit log shipping.")
    teams: list[TeamSettings] = Field(
        default_factory=list, description="ML teams, each with its own namespace."
    )

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if self.cluster.mode == "eks":
            if self.aws is None:
                raise ConfigProblem(
                    ("aws",),
                    "mode `eks` needs `aws: {region: ..., availabilityZones: [...]}`",
                )
        else:
            if self.aws is not None:
                raise ConfigProblem(
                    ("aws",),
                    "mode `existing` creates no AWS resource; remove the `aws` section",
                )
            if self.storage.mode in (None, "efs"):
                raise ConfigProblem(
                    ("storage", "mode"),
                    "an existing cluster has no EFS created by this program; set `nfs` (with "
                    "`nfs: {server, path}`) or `storageClass` (with `storageClassName`)",
                )
        _refuse_duplicates(self.teams, lambda t: t.name, ("teams",), "team name", field="name")
        return self


# --- loading and error reporting --------------------------------------------------------------


def _refuse_duplicates(
    items: Iterable[Any],
    key: Any,
    loc: tuple[str | int, ...],
    what: str,
    field: str | None = None,
) -> None:
    seen: dict[Any, int] = {}
    for index, item in enumerate(items):
        value = key(item)
        if value in seen:
            where = (*loc, index, field) if field else (*loc, index)
            raise ConfigProblem(
                where,
                f"duplicate {what} {value!r} (also at index {seen[value]}); names must be unique",
            )
        seen[value] = index


def raw_project_config() -> dict[str, Any]:
    """The stack's `ml-platform:*` config as plain data, keyed without the namespace."""
    merged: dict[str, Any] = dict(pulumi.runtime.config.get_config_env())
    merged.update(pulumi.runtime.config.CONFIG.get())
    prefix = f"{PROJECT}:"
    raw: dict[str, Any] = {}
    for full_key, value in merged.items():
        if not full_key.startswith(prefix):
            continue
        key = full_key[len(prefix) :]
        if isinstance(value, str):
            # Structured values arrive as JSON text; a plain string stays a string and the
            # model says whether that is allowed here.
            with contextlib.suppress(json.JSONDecodeError):
                value = json.loads(value)  # noqa: PLW2901
        raw[key] = value
    return raw


def parse_settings(raw: Mapping[str, Any], stack: str) -> Settings:
    """Validate raw config into Settings, or raise SettingsError naming every bad key."""
    try:
        return Settings.model_validate(dict(raw))
    except ValidationError as error:
        raise SettingsError(_describe(error, stack)) from None


def load_settings() -> Settings:
    """Parse the running stack's configuration; call this before registering any resource."""
    return parse_settings(raw_project_config(), pulumi.get_stack())


def _describe(error: ValidationError, stack: str) -> str:
    lines = [f"Pulumi.{stack}.yaml: invalid configuration ({error.error_count()} problem(s)):"]
    for detail in error.errors(include_url=False):
        loc: tuple[str | int, ...] = tuple(detail["loc"])
        cause = detail.get("ctx", {}).get("error")
        if isinstance(cause, ConfigProblem):
            loc = (*loc, *cause.loc)
            message = cause.message
        elif detail["type"] == "extra_forbidden":
            allowed = _allowed_keys(loc[:-1])
            guess = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
            hint = f" Did you mean `{guess[0]}`?" if guess else ""
            message = f"unknown key.{hint} Allowed keys here: {', '.join(allowed)}"
        else:
            message = re.sub(
                r" or instance of \w+", "", detail["msg"].removeprefix("Value error, ")
            )
            if detail["type"] not in ("missing", "value_error"):
                message += f" (got {detail['input']!r})"
            description = _field_description(loc)
            if description:
                message += f". This key: {description}"
        lines.append(f"  - {_key_path(loc)}: {message}")
    return "\n".join(lines)


def _key_path(loc: tuple[str | int, ...]) -> str:
    if not loc:
        return f"{PROJECT}:<root>"
    path = f"{PROJECT}:{loc[0]}"
    for part in loc[1:]:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


def _model_at(loc: tuple[str | int, ...]) -> tuple[type[BaseModel] | None, str | None]:
    """Walk the settings models along an error location; return (model, last field name)."""
    model: Any = Settings
    field_name: str | None = None
    for part in loc:
        if isinstance(part, int):
            continue
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return None, None
        field = next(
            (
                (name, info)
                for name, info in model.model_fields.items()
                if part in (name, info.alias)
            ),
            None,
        )
        if field is None:
            return None, None
        field_name = field[0]
        model = unwrap_annotation(field[1].annotation)
    last = model if isinstance(model, type) and issubclass(model, BaseModel) else None
    return last, field_name


def unwrap_annotation(annotation: Any) -> Any:
    """Strip Optional[...], list[...] and Annotated[...] down to the model class, if any."""
    while True:
        origin = get_origin(annotation)
        if origin is None:
            return annotation
        candidates = [arg for arg in get_args(annotation) if arg is not type(None)]
        models = [c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)]
        if models:
            return models[0]
        nested = [c for c in candidates if get_origin(c) is not None]
        if not nested:
            return annotation
        annotation = nested[0]


def _allowed_keys(loc: tuple[str | int, ...]) -> list[str]:
    model, _ = _model_at(loc) if loc else (Settings, None)
    if model is None:
        return []
    return [info.alias or name for name, info in model.model_fields.items()]


def _field_description(loc: tuple[str | int, ...]) -> str | None:
    parent, _ = _model_at(loc[:-1]) if len(loc) > 1 else (Settings, None)
    keys = [part for part in loc if isinstance(part, str)]
    if parent is None or not keys:
        return None
    for name, info in parent.model_fields.items():
        if keys[-1] in (name, info.alias):
            return info.description
    return None
