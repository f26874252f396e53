"""Platform components and tenants: storage, Kubeflow, serving, observability, teams."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from infra import instances, names
from infra.settings.alerting import AlertingSettings, TeamAlerts
from infra.settings.base import (
    ConfigProblem,
    DnsLabel,
    DnsSubdomain,
    Quantity,
    SettingsModel,
    Size,
    refuse_duplicates,
)
from infra.settings.cluster import IAM_PRINCIPAL
from infra.settings.experiments import ExperimentSettings
from infra.settings.workloads import ArtifactAccess, NotebookServerSettings, TrainingJobSettings


def cluster_service_name(host: str) -> bool:
    """Whether `host` is a cluster-internal DNS name: `<service>.<namespace>.svc[.<domain>]`, or
    any name under `cluster.local` (the default cluster domain)."""
    labels = host.lower().rstrip(".").split(".")
    return "svc" in labels[2:] or labels[-2:] == ["cluster", "local"]


class NfsSettings(SettingsModel):
    server: str = Field(
        min_length=1,
        description="NFS server host name or address, as the nodes resolve it (the kubelet "
        "mounts NFS from the node, outside any pod): an IP address (a Service's ClusterIP "
        "works) or a name the nodes' own resolver knows; never a cluster DNS name "
        "(`*.svc`, `*.svc.<clusterDomain>`).",
    )
    path: str = Field(pattern=r"^/", description="Exported path on the server, e.g. /exports/ml.")

    @model_validator(mode="after")
    def _check(self) -> NfsSettings:
        # The kubelet runs `mount -t nfs <server>:<path>` in the node's namespaces, with the
        # node's resolv.conf, which does not point at the cluster DNS (kubernetes/kubernetes#8735;
        # kubernetes/examples#390: "mount.nfs: Failed to resolve server
        # nfs-server.default.svc.cluster.local").
        if cluster_service_name(self.server):
            raise ConfigProblem(
                ("server",),
                f"{self.server!r} is a cluster-internal DNS name, but the node mounts NFS and "
                "the node's resolver does not know cluster names; use the Service's ClusterIP "
                "(fixed with `spec.clusterIP`; nodes reach it through kube-proxy) or a host name "
                "the nodes resolve",
            )
        return self


class VolumeSettings(SettingsModel):
    name: DnsLabel = Field(description="Claim name in every namespace that mounts the volume.")
    size: Quantity = Field(description="Requested size (nominal on EFS, which grows as needed).")


class StagingSettings(SettingsModel):
    enabled: bool = Field(
        default=True, description="Run a Job that stages mnist.npz in the datasets volume."
    )
    source: str = Field(
        default="https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz",
        description="Where the Job fetches MNIST from (an http(s) URL reachable from the cluster).",
    )


class StorageSettings(SettingsModel):
    mode: Literal["efs", "nfs", "storageClass"] | None = Field(
        default=None,
        description="`efs` (AWS stacks; the default there), `nfs` (a static NFS export, shared "
        "by every namespace), or `storageClass` (an RWX class the cluster already has; each "
        "namespace then gets volumes of its own).",
    )
    nfs: NfsSettings | None = Field(default=None, description="Required for mode `nfs`.")
    storage_class_name: str | None = Field(
        default=None, description="Required for mode `storageClass`."
    )
    block_storage_class_name: DnsSubdomain | None = Field(
        default=None,
        description="Existing clusters: the cluster's StorageClass for block (ReadWriteOnce) "
        "volumes, which every such claim names: Prometheus's, Alertmanager's, and Kubeflow "
        "Pipelines' MySQL and SeaweedFS volumes. Required there when monitoring or pipelines are "
        "on (kind: `standard`); claims never fall back to an unnamed default class. AWS stacks "
        "create their own (`gp3-encrypted`: encrypted gp3 EBS volumes, also the cluster's "
        "default class) and refuse this key.",
    )
    datasets: VolumeSettings = Field(
        default_factory=lambda: VolumeSettings(name="datasets", size="100Gi"),
        description="Training data, shared read-only with training jobs.",
    )
    models: VolumeSettings = Field(
        default_factory=lambda: VolumeSettings(name="models", size="50Gi"),
        description="Exported models: training writes, serving reads (read-only).",
    )
    workspace: VolumeSettings = Field(
        default_factory=lambda: VolumeSettings(name="workspace", size="20Gi"),
        description="Each team's notebook workspace.",
    )
    file_owner: Annotated[int, Field(ge=1)] = Field(
        default=1000,
        description="POSIX uid and gid that own the shared files (non-root workloads run as it; "
        "notebooks as its uid with group 0, which the Kubeflow images need; 1000 is their "
        "jovyan).",
    )
    staging: StagingSettings = Field(
        default_factory=StagingSettings, description="Dataset staging Job."
    )

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
        seen: dict[str, str] = {}
        for key in ("datasets", "models", "workspace"):
            volume_name = getattr(self, key).name
            if volume_name in seen:
                raise ConfigProblem(
                    (key, "name"),
                    f"duplicate volume name {volume_name!r} (also used by {seen[volume_name]}); "
                    "each volume needs its own claim name",
                )
            seen[volume_name] = key
        return self


class ArtifactsSettings(SettingsModel):
    """The stack's S3 bucket for pipeline artifacts and the teams' prefixes (AWS stacks)."""

    noncurrent_version_days: Annotated[int, Field(ge=1)] = Field(
        default=30,
        description="Keep overwritten or deleted object versions this many days, then expire them.",
    )
    force_destroy: bool = Field(
        default=False,
        description="Let `pulumi destroy` delete the bucket while it still holds objects "
        "(throwaway stacks only).",
    )


class Switch(SettingsModel):
    enabled: bool = Field(default=True, description="Install this component.")


class NotebookSettings(Switch):
    cull_idle_minutes: Annotated[int, Field(ge=10)] = Field(
        default=60, description="Stop notebook servers idle this long (frees their GPUs)."
    )


class KatibSettings(SettingsModel):
    enabled: bool = Field(
        default=False,
        description="Install Katib (off by default: while its controller is down no trial pod "
        "can be created).",
    )


class KubeflowSettings(SettingsModel):
    training_operator: Switch = Field(
        default_factory=Switch, description="Training operator v1 (TFJob, PyTorchJob)."
    )
    notebooks: NotebookSettings = Field(
        default_factory=NotebookSettings, description="Notebook controller."
    )
    pipelines: Switch = Field(default_factory=Switch, description="Kubeflow Pipelines v2.")
    katib: KatibSettings = Field(
        default_factory=KatibSettings,
        description="Katib (hyperparameter search: controller, UI and its MySQL database); "
        "needed by the teams' `experiments`.",
    )


class TeamQuota(SettingsModel):
    gpus: Size = Field(
        default=0,
        description="GPUs the team's pods may request in total (of time-sliced or MIG pools: "
        "the shares or slices that many GPUs make).",
    )
    cpu: Quantity = Field(default="32", description="Total cpu requests.")
    memory: Quantity = Field(default="128Gi", description="Total memory requests.")
    volume_claims: Size = Field(default=10, description="PersistentVolumeClaims in the namespace.")
    storage: Quantity = Field(default="2Ti", description="Total storage the claims request.")


class TeamAccess(SettingsModel):
    engineers: list[str] = Field(
        default_factory=list,
        description="IAM role/user ARNs that run the team's jobs and notebooks (role ml-engineer).",
    )
    viewers: list[str] = Field(
        default_factory=list, description="IAM role/user ARNs with read-only access (role viewer)."
    )
    exec: bool = Field(
        default=True,
        description="Engineers may `kubectl exec` into the team's pods and `kubectl port-forward` "
        "to them (a notebook's Jupyter is a shell too); `false` allows no declared notebooks.",
    )
    pipelines: bool = Field(
        default=False,
        description="The team may use Kubeflow Pipelines: its pods reach the Pipelines API and UI "
        "in `kubeflow`, its engineers reach both through the Kubernetes API. Standalone Pipelines "
        "is single-user: every team given access sees, runs and deletes every pipeline and run "
        "of the others, and all runs execute in `kubeflow`.",
    )

    @model_validator(mode="after")
    def _check(self) -> TeamAccess:
        for key, arns in (("engineers", self.engineers), ("viewers", self.viewers)):
            for index, arn in enumerate(arns):
                if not IAM_PRINCIPAL.match(arn):
                    raise ConfigProblem(
                        (key, index),
                        f"{arn!r} is not an IAM role or user ARN such as "
                        "arn:aws:iam::123456789012:role/ml-research",
                    )
        both = sorted(set(self.engineers) & set(self.viewers))
        if both:
            raise ConfigProblem(
                ("viewers",), f"{both[0]} is also an engineer; list each principal once"
            )
        return self


class TeamNetwork(SettingsModel):
    https_egress: bool = Field(
        default=True,
        description="Pods may open HTTPS connections out of the cluster (package indexes, S3, "
        "model hubs); needed by any S3 access (`artifacts` of the team, its jobs, notebooks).",
    )


class TeamSettings(SettingsModel):
    name: DnsLabel = Field(description="Team name; also its namespace.")
    pod_security: Literal["restricted", "baseline"] = Field(
        default="restricted",
        description="Pod Security Standard enforced on the namespace.",
    )
    pod_security_reason: str | None = Field(
        default=None, description="Why the team needs `baseline` (required with it)."
    )
    quota: TeamQuota = Field(default_factory=TeamQuota, description="Resource quota.")
    access: TeamAccess = Field(
        default_factory=TeamAccess, description="Who may use the namespace (EKS access entries)."
    )
    network: TeamNetwork = Field(
        default_factory=TeamNetwork, description="What the namespace's network policies allow."
    )
    artifacts: ArtifactAccess = Field(
        default="none",
        description="S3 access of the team's own account `ml-workloads` (for jobs engineers "
        "start themselves): `none`, `read` or `readwrite` on `teams/<team>/` of the artifact "
        "bucket. AWS stacks only.",
    )
    training_jobs: list[TrainingJobSettings] = Field(
        default_factory=list, description="TFJobs and PyTorchJobs the team runs."
    )
    notebooks: list[NotebookServerSettings] = Field(
        default_factory=list, description="Notebook servers of the team."
    )
    experiments: list[ExperimentSettings] = Field(
        default_factory=list,
        description="Katib experiments: hyperparameter searches over the built-in trainer.",
    )
    alerts: TeamAlerts

    @model_validator(mode="after")
    def _check(self) -> TeamSettings:
        if self.name in names.RESERVED_NAMESPACES or self.name.startswith("kube-"):
            raise ConfigProblem(
                ("name",), f"{self.name!r} is a platform namespace; choose another team name"
            )
        refuse_duplicates(
            self.training_jobs, lambda j: j.name, ("trainingJobs",), "job name", field="name"
        )
        refuse_duplicates(
            self.notebooks, lambda n: n.name, ("notebooks",), "notebook name", field="name"
        )
        refuse_duplicates(
            self.experiments, lambda e: e.name, ("experiments",), "experiment name", field="name"
        )
        self._check_https_for_artifacts()
        if self.pod_security == "baseline" and not self.pod_security_reason:
            raise ConfigProblem(
                ("podSecurityReason",),
                "a `baseline` team must say why it cannot run `restricted` pods (e.g. an image "
                "that runs as root)",
            )
        return self

    def _check_https_for_artifacts(self) -> None:
        """S3 is reached over HTTPS on public addresses (the program creates no VPC endpoint, and
        a gateway endpoint would still be reached on S3's public ranges), which `httpsEgress:
        false` denies: S3 access would fail at the first call, so the pair is refused."""
        if self.network.https_egress:
            return
        access = [
            ("artifacts", self.artifacts),
            *(
                (f"trainingJobs[{i}].artifacts", job.artifacts)
                for i, job in enumerate(self.training_jobs)
            ),
            *(
                (f"notebooks[{i}].artifacts", server.artifacts)
                for i, server in enumerate(self.notebooks)
            ),
            *(
                (f"experiments[{i}].trial.artifacts", experiment.trial.artifacts)
                for i, experiment in enumerate(self.experiments)
            ),
        ]
        for key, mode in access:
            if mode != "none":
                raise ConfigProblem(
                    ("network", "httpsEgress"),
                    f"`{key}: {mode}` reaches S3 over HTTPS, which `httpsEgress: false` denies; "
                    f"set `httpsEgress: true` or `{key}: none`",
                )


class GpuSettings(SettingsModel):
    driver: Literal["preinstalled", "operator"] = Field(
        default="preinstalled",
        description="`preinstalled`: the node image has the NVIDIA driver and container toolkit "
        "(EKS NVIDIA AMIs); `operator`: the GPU Operator installs them (other clusters).",
    )
    bin_packing_scheduler: bool = Field(
        default=False,
        description="Run the `gpu-binpack` scheduler, which packs GPU pods onto the fewest nodes; "
        "workloads opt in with `schedulerName: gpu-binpack`.",
    )
    prices: dict[str, float] = Field(
        default_factory=dict,
        description="USD per instance-hour by GPU instance type (e.g. `g5.xlarge: 1.006`), for "
        "the GPU cost rules, dashboard and report; overrides the catalogue's on-demand list "
        "price (us-east-1, `infra/instances.py`), e.g. with your discounted or regional price.",
    )

    @model_validator(mode="after")
    def _check_prices(self) -> GpuSettings:
        supported = ", ".join(instances.supported_gpu_families())
        for instance_type, price in self.prices.items():
            if instances.gpu_instance(instance_type) is None:
                raise ConfigProblem(
                    ("prices", instance_type),
                    f"{instance_type!r} is not a GPU instance type of the catalogue; prices are "
                    f"for the families {supported} (e.g. g5.xlarge)",
                )
            if not price > 0:
                raise ConfigProblem(
                    ("prices", instance_type),
                    f"{price} is not a price; give USD per instance-hour, greater than zero",
                )
        return self


# The retention periods CloudWatch Logs accepts.
LOG_RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827,
                      2192, 2557, 2922, 3288, 3653)  # fmt: skip


class ForwardSettings(SettingsModel):
    host: str = Field(min_length=1, description="Fluentd or Fluent Bit aggregator to forward to.")
    port: Annotated[int, Field(ge=1, le=65535)] = Field(default=24224, description="Its port.")
    tls: bool = Field(default=True, description="Forward over TLS.")


class LoggingSettings(Switch):
    destination: Literal["cloudwatch", "forward", "stdout"] = Field(
        default="cloudwatch",
        description="Where container and kubelet logs go: CloudWatch Logs (mode `eks`), a "
        "Fluentd/Fluent Bit aggregator (`forward`), or Fluent Bit's own output (`stdout`, to try "
        "it on a local cluster).",
    )
    retention_days: int = Field(
        default=30, description="How long CloudWatch keeps the logs (a CloudWatch period)."
    )
    forward: ForwardSettings | None = Field(
        default=None, description="The aggregator, for destination `forward`."
    )

    @model_validator(mode="after")
    def _check(self) -> LoggingSettings:
        if self.retention_days not in LOG_RETENTION_DAYS:
            allowed = ", ".join(map(str, LOG_RETENTION_DAYS))
            raise ConfigProblem(
                ("retentionDays",),
                f"CloudWatch cannot keep logs {self.retention_days} days; use one of {allowed}",
            )
        if self.destination == "forward" and self.forward is None:
            raise ConfigProblem(
                ("forward",), "destination `forward` needs `forward: {host: ..., port: 24224}`"
            )
        return self


class MonitoringSettings(Switch):
    retention: str = Field(
        default="15d",
        pattern=r"^[0-9]+(h|d|w|y)$",
        description="How long Prometheus keeps samples, e.g. 15d.",
    )
    storage_size: Quantity = Field(default="50Gi", description="Prometheus's volume.")
    alertmanager_storage_size: Quantity = Field(
        default="2Gi",
        description="Alertmanager's volume (silences and notification state: small).",
    )
    alertmanager_replicas: Annotated[int, Field(ge=1, le=5)] = Field(
        default=1,
        description="Alertmanager pods; two or more form a cluster that shares silences and "
        "sends each notification once, and keeps alerting through a node's loss.",
    )
    alerting: AlertingSettings = Field(
        default_factory=AlertingSettings,
        description="Receivers and who gets which alerts (README: Alert routing).",
    )
