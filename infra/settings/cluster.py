"""Which cluster the stack builds or uses, and where on AWS."""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, Field, model_validator

from infra import aws_names, versions
from infra.settings.base import ConfigProblem, SettingsModel, refuse_duplicates


def _reject_non_string_version(value: Any) -> Any:
    if isinstance(value, int | float) and not isinstance(value, bool):
        raise ValueError(
            f'write the version as a quoted string such as "1.35"; YAML read {value!r} as a '
            "number (1.30 would become 1.3)"
        )
    return value


# A registry host (with a port, optionally) and a path below it, as image references write them.
_MIRROR = re.compile(r"^[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:\d+)?(/[a-z0-9]+([._-][a-z0-9]+)*)*$")


class MetricsServerSettings(SettingsModel):
    """Where the HorizontalPodAutoscalers' resource metrics come from (infra/metrics_server.py)."""

    source: Literal["install", "existing"] | None = Field(
        default=None,
        description="Where the resource metrics API (metrics.k8s.io) that the serving "
        "autoscalers read comes from. `install`: the program installs metrics-server (on EKS the "
        "`metrics-server` add-on, elsewhere the pinned kubernetes-sigs chart in `kube-system`). "
        "`existing`: the cluster already runs one (k3s and most managed clusters do; kind does "
        "not; `kubectl get apiservice v1beta1.metrics.k8s.io` shows it). Default: `install` in "
        "mode `eks`, `existing` in mode `existing`.",
    )
    kubelet_insecure_tls: bool = Field(
        default=False,
        description="existing mode with `source: install`: pass `--kubelet-insecure-tls`, so "
        "metrics-server accepts kubelet serving certificates not signed by the cluster CA. kind "
        "needs it (its kubelets serve self-signed certificates); metrics-server calls it for "
        "testing only, so leave it off on real clusters.",
    )


class ClusterSettings(SettingsModel):
    mode: Literal["eks", "existing"] = Field(
        description="`eks` creates an EKS cluster; `existing` deploys onto a cluster reached "
        "through a kubeconfig context and creates no AWS resource."
    )
    name: str = Field(
        description="Cluster name: the EKS cluster name, or a label for the existing cluster. "
        "An EKS cluster's name also names its S3 bucket, ECR repositories and IAM roles, so it "
        f"takes lower-case letters, digits and single '-', at most {aws_names.MAX_CLUSTER_NAME} "
        "characters, starting with a letter.",
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
    metrics_server: MetricsServerSettings = Field(
        default_factory=MetricsServerSettings,
        description="The metrics server behind the CPU autoscalers of served models.",
    )
    docker_hub_mirror: str | None = Field(
        default=None,
        description="A registry that mirrors Docker Hub (a Harbor proxy-cache project, a "
        "`registry:2` in proxy mode, ...), as `host[:port][/path]`: the Docker Hub images the "
        "program renders are pulled as `<mirror>/<repository>:<tag>` (official images under "
        "`<mirror>/library/`), images of other registries unchanged. The nodes must be able to "
        "pull from it. AWS stacks can have `aws.pullThroughCache` create an ECR cache instead.",
    )

    @model_validator(mode="after")
    def _check_mode(self) -> ClusterSettings:
        if self.mode == "eks":
            problems = aws_names.cluster_name_problems(self.name)
            if problems:
                raise ConfigProblem(
                    ("name",),
                    f"{self.name!r} cannot name the EKS cluster and what the program names after "
                    f"it: {'; '.join(problems)}",
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
        self._check_metrics_server()
        self._check_mirror()
        return self

    def _check_mirror(self) -> None:
        mirror = self.docker_hub_mirror
        if mirror is None:
            return
        host = mirror.split("/", 1)[0]
        if not _MIRROR.match(mirror) or not ("." in host or ":" in host or host == "localhost"):
            raise ConfigProblem(
                ("dockerHubMirror",),
                f"{mirror!r} is not a registry host with an optional path, such as "
                "`harbor.example.com/dockerhub` or `registry.local:5000`: lower-case, no scheme, "
                "no tag, and a host with a '.' or a port (a bare word would be read as a Docker "
                "Hub namespace)",
            )

    @property
    def installs_metrics_server(self) -> bool:
        """Whether the program installs metrics-server (the default on EKS only)."""
        source = self.metrics_server.source
        return source == "install" or (source is None and self.mode == "eks")

    def _check_metrics_server(self) -> None:
        """Refuse metrics-server settings that cannot apply to the mode."""
        chosen = self.metrics_server
        where = ("metricsServer",)
        if self.mode == "eks":
            if chosen.source == "existing":
                raise ConfigProblem(
                    (*where, "source"),
                    "an EKS cluster runs no metrics server of its own; the program installs the "
                    "EKS add-on `metrics-server`, so remove this key or set `install`",
                )
            if chosen.kubelet_insecure_tls:
                raise ConfigProblem(
                    (*where, "kubeletInsecureTls"),
                    "only applies to the chart the program installs on an existing cluster; on "
                    "EKS the add-on's kubelet connection is EKS's, so remove this key",
                )
            return
        if chosen.kubelet_insecure_tls and not self.installs_metrics_server:
            raise ConfigProblem(
                (*where, "kubeletInsecureTls"),
                "configures the metrics server the program installs, and `source: existing` "
                "installs none; set `source: install` (kind needs both) or remove this key",
            )


_REGION = re.compile(r"^[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-\d$")
IAM_PRINCIPAL = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:(role|user)/[\w+=,.@/-]+$")
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


class EndpointSettings(SettingsModel):
    public_access: bool = Field(
        default=True,
        description="Serve the API endpoint publicly too (private access is always on).",
    )
    public_access_cidrs: list[Cidr] = Field(
        default_factory=lambda: ["0.0.0.0/0"],
        min_length=1,
        description="Networks allowed to reach the public endpoint (CI runners, VPN egress).",
    )


class ExistingVpcSettings(SettingsModel):
    vpc_id: str = Field(pattern=r"^vpc-[0-9a-f]{8,17}$", description="VPC to use.")
    private_subnet_ids: list[Annotated[str, Field(pattern=r"^subnet-[0-9a-f]{8,17}$")]] = Field(
        description="One private subnet per availability zone, in the zones' order."
    )
    public_subnet_ids: list[Annotated[str, Field(pattern=r"^subnet-[0-9a-f]{8,17}$")]] = Field(
        default_factory=list, description="Public subnets for internet-facing load balancers."
    )


class AccessSettings(SettingsModel):
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
            if not IAM_PRINCIPAL.match(arn):
                raise ConfigProblem(
                    ("admins", index),
                    f"{arn!r} is not an IAM role or user ARN such as "
                    "arn:aws:iam::123456789012:role/platform-admin (use the role ARN, not an "
                    "assumed-role session ARN)",
                )
        refuse_duplicates(self.admins, lambda a: a, ("admins",), "admin principal")
        if not self.admins and not self.include_deployer:
            raise ConfigProblem(
                ("admins",),
                "nobody would be able to reach the cluster: list admin principals or set "
                "includeDeployer: true",
            )
        return self


class AddonVersions(SettingsModel):
    vpc_cni: str | None = Field(default=None, description="vpc-cni add-on version.")
    coredns: str | None = Field(default=None, description="coredns add-on version.")
    kube_proxy: str | None = Field(default=None, description="kube-proxy add-on version.")
    pod_identity_agent: str | None = Field(
        default=None, description="eks-pod-identity-agent add-on version."
    )
    efs_csi_driver: str | None = Field(
        default=None, description="aws-efs-csi-driver add-on version."
    )
    ebs_csi_driver: str | None = Field(
        default=None, description="aws-ebs-csi-driver add-on version."
    )
    metrics_server: str | None = Field(
        default=None, description="metrics-server (community) add-on version."
    )


# The Secrets Manager secret of an ECR pull-through cache rule (boto/botocore ECR API model, shape
# CredentialArn: `^arn:aws(-\w+)*:secretsmanager:[a-zA-Z0-9-:]+:secret:ecr\-pullthroughcache\/...`,
# 50-612 characters; tests/upstream/ecr-pull-through-cache.yaml), with its region and account
# captured: the secret must be in the rule's account and region (Amazon ECR user guide, "Creating a
# pull through cache rule in Amazon ECR", prerequisites).
PULL_THROUGH_CACHE_SECRET_PREFIX = "ecr-pullthroughcache/"
_CACHE_CREDENTIAL = re.compile(
    r"^arn:(?P<partition>aws(-\w+)*):secretsmanager:(?P<region>[a-z0-9-]+):(?P<account>\d{12}):secret:"
    r"ecr\-pullthroughcache\/[a-zA-Z0-9\/_+=.@-]+$"
)
# ECR's repository prefix of a rule (shape PullThroughCacheRuleRepositoryPrefix, 2-30
# characters); `ROOT`, which the API also accepts, would put Docker Hub at the registry's root.
_CACHE_PREFIX = re.compile(
    r"^[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*$"
)


class PullThroughCacheSettings(SettingsModel):
    """An ECR pull-through cache of Docker Hub, so nodes stop pulling anonymously from it."""

    credential_arn: str = Field(
        description="ARN of the Secrets Manager secret holding the Docker Hub credentials ECR "
        "pulls with (ECR's Docker Hub upstream requires them): a secret named "
        f"`{PULL_THROUGH_CACHE_SECRET_PREFIX}...`, in this stack's account and region, whose "
        'value is `{"username": ..., "accessToken": ...}`. Only the ARN goes in the stack '
        "file, never the credential.",
    )
    repository_prefix: str = Field(
        default="docker-hub",
        description="The ECR repository prefix the cached images live under: "
        "`<account>.dkr.ecr.<region>.amazonaws.com/<prefix>/<repository>:<tag>` (official "
        "images under `<prefix>/library/`).",
    )

    @model_validator(mode="after")
    def _check(self) -> PullThroughCacheSettings:
        arn = self.credential_arn
        if not _CACHE_CREDENTIAL.match(arn) or not 50 <= len(arn) <= 612:
            raise ConfigProblem(
                ("credentialArn",),
                f"{arn!r} is not the ARN of a pull-through cache secret: ECR accepts only "
                "Secrets Manager secrets named "
                f"`{PULL_THROUGH_CACHE_SECRET_PREFIX}<name>`, e.g. arn:aws:secretsmanager:"
                "us-east-1:123456789012:secret:ecr-pullthroughcache/docker-hub-AbCdEf; create "
                "one with keys `username` and `accessToken` and give its ARN",
            )
        prefix = self.repository_prefix
        if not 2 <= len(prefix) <= 30 or not _CACHE_PREFIX.match(prefix):
            raise ConfigProblem(
                ("repositoryPrefix",),
                f"{prefix!r} is not an ECR repository prefix: 2 to 30 lower-case letters and "
                "digits, with '.', '_', '__' or dashes between them and '/' between parts, e.g. "
                "`docker-hub`",
            )
        return self

    def _arn_part(self, part: str) -> str:
        match = _CACHE_CREDENTIAL.match(self.credential_arn)
        assert match is not None  # validated above
        return match[part]

    @property
    def account(self) -> str:
        return self._arn_part("account")

    @property
    def secret_region(self) -> str:
        return self._arn_part("region")

    @property
    def partition(self) -> str:
        return self._arn_part("partition")

    def base(self, region: str) -> str:
        """The cache's repositories in the registry: `<account>.dkr.ecr.<region>.<suffix>/
        <prefix>` (the secret's account is the rule's, and so the registry's)."""
        suffix = "amazonaws.com.cn" if self.partition == "aws-cn" else "amazonaws.com"
        return f"{self.account}.dkr.ecr.{region}.{suffix}/{self.repository_prefix}"


class AwsSettings(SettingsModel):
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
        default=90,
        description="Retention of the control-plane and VPC flow logs in CloudWatch, in days.",
    )
    addons: AddonVersions = Field(
        default_factory=AddonVersions,
        description="Managed add-on versions; default: the pins for the cluster's version.",
    )
    tags: dict[str, str] = Field(
        default_factory=dict, description="Extra tags on every AWS resource."
    )
    pull_through_cache: PullThroughCacheSettings | None = Field(
        default=None,
        description="Pull the Docker Hub images the program renders (TF Serving, TensorFlow, and "
        "teams' images from Docker Hub) through an ECR pull-through cache this stack creates, "
        "with the credentials of the given secret, instead of anonymously from Docker Hub "
        "through the NAT address (which Docker Hub rate-limits). References pinned by digest "
        "stay on Docker Hub: the cache does not fetch an image it lacks by digest.",
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
        refuse_duplicates(zones, lambda z: z, ("availabilityZones",), "availability zone")
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
        cache = self.pull_through_cache
        if cache and cache.secret_region != self.region:
            raise ConfigProblem(
                ("pullThroughCache", "credentialArn"),
                f"the secret is in {cache.secret_region}, but ECR needs it in the region of the "
                f"cache rule, this stack's ({self.region}); create the secret in {self.region}",
            )
        if self.log_retention_days not in _CLOUDWATCH_RETENTION_DAYS:
            raise ConfigProblem(
                ("logRetentionDays",),
                f"CloudWatch does not offer {self.log_retention_days} days; use one of "
                f"{', '.join(map(str, _CLOUDWATCH_RETENTION_DAYS))}",
            )
        return self
