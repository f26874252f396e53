"""The root settings model: every `ml-platform:*` key of a stack, and how it is loaded.

Every key of `Pulumi.<stack>.yaml` is validated here before the program registers a single
resource.  A bad value stops the program with a message that names the stack file, the full key
path, what is wrong and what is allowed.
"""

from __future__ import annotations

import contextlib
import difflib
import json
import re
from collections.abc import Mapping
from typing import Any, get_args, get_origin

import pulumi
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator
from pydantic.alias_generators import to_snake

from infra import efs_paths, versions
from infra.settings.alerting import credential_paths
from infra.settings.base import (
    PROJECT,
    ConfigProblem,
    SettingsError,
    SettingsModel,
    refuse_duplicates,
)
from infra.settings.cluster import AwsSettings, ClusterSettings
from infra.settings.components import (
    ArtifactsSettings,
    GpuSettings,
    KubeflowSettings,
    LoggingSettings,
    MonitoringSettings,
    StorageSettings,
    TeamSettings,
)
from infra.settings.pools import NodePoolsSettings
from infra.settings.serving import ServingSettings
from infra.settings.workloads import TrainingSettings


class Settings(SettingsModel):
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
    serving: ServingSettings = Field(
        default_factory=ServingSettings, description="TF Serving and the inference API."
    )
    monitoring: MonitoringSettings = Field(
        default_factory=MonitoringSettings, description="Prometheus, Grafana and DCGM GPU metrics."
    )
    logging: LoggingSettings = Field(
        default_factory=LoggingSettings, description="Fluent Bit log shipping."
    )
    gpu: GpuSettings = Field(
        default_factory=GpuSettings, description="GPU drivers and GPU-aware scheduling."
    )
    training: TrainingSettings = Field(
        default_factory=TrainingSettings, description="The training image."
    )
    artifacts: ArtifactsSettings = Field(
        default_factory=ArtifactsSettings,
        description="The S3 artifact bucket of AWS stacks (pipelines, team prefixes).",
    )
    teams: list[TeamSettings] = Field(
        default_factory=list, description="ML teams, each with its own namespace."
    )

    @field_validator("aws", mode="before")
    @classmethod
    def _empty_aws_is_none(cls, value: Any) -> Any:
        """`{}`, Pulumi.yaml's default for `aws`, means no AWS section (as in mode `existing`)."""
        return None if value == {} else value

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
                cache = self.aws.pull_through_cache
                raise ConfigProblem(
                    ("aws", "pullThroughCache") if cache else ("aws",),
                    "mode `existing` creates no AWS resource; remove the `aws` section"
                    + ("; for a Docker Hub mirror use `cluster.dockerHubMirror`" if cache else ""),
                )
            if self.storage.mode in (None, "efs"):
                raise ConfigProblem(
                    ("storage", "mode"),
                    "an existing cluster has no EFS created by this program; set `nfs` (with "
                    "`nfs: {server, path}`) or `storageClass` (with `storageClassName`)",
                )
        self._check_docker_hub_source()
        logging = self.logging
        if logging.enabled and logging.destination == "cloudwatch" and self.cluster.mode != "eks":
            raise ConfigProblem(
                ("logging", "destination"),
                "CloudWatch needs the AWS identity this program creates in mode `eks`; on an "
                "existing cluster use `forward` (with `forward: {host: ...}`) or `stdout`, or set "
                "`enabled: false`",
            )
        self._check_block_storage()
        self._check_team_access()
        refuse_duplicates(self.teams, lambda t: t.name, ("teams",), "team name", field="name")
        if self.storage_mode == "efs":
            claim = self.storage.workspace.name
            for index, team in enumerate(self.teams):
                if efs_paths.workspace_path_length(team.name, claim) > efs_paths.PATH_LIMIT:
                    raise ConfigProblem(
                        ("teams", index, "name"),
                        f"{team.name!r} is too long for EFS: the workspace directory "
                        f"{efs_paths.WORKSPACE_BASE}/{team.name}/{claim}-<uuid> would exceed "
                        f"{efs_paths.PATH_LIMIT} characters; use a shorter team name",
                    )
        minor = self.cluster.kubernetes_version
        pinned = ", ".join(versions.KUBE_SCHEDULER_TAGS)
        if self.gpu.bin_packing_scheduler and minor not in versions.KUBE_SCHEDULER_TAGS:
            raise ConfigProblem(
                ("gpu", "binPackingScheduler"),
                f"no kube-scheduler image is pinned for Kubernetes {minor}; the scheduler must "
                f"match the cluster's minor version (pinned: {pinned})",
            )
        if self.training.build and self.cluster.mode != "eks":
            raise ConfigProblem(
                ("training", "build"),
                "building pushes to an ECR repository this stack creates, so it needs mode `eks`; "
                "on an existing cluster give `training.image`",
            )
        for index, team in enumerate(self.teams):
            self._check_workloads(index, team)
        self._check_serving()
        self._check_alerting()
        return self

    def _check_alerting(self) -> None:
        """Team routes name declared receivers; SNS needs the Pod Identity of an EKS stack."""
        alerting = self.monitoring.alerting
        for index, team in enumerate(self.teams):
            if team.alerts is not None:
                for key, name in team.alerts.receivers():
                    try:
                        alerting.check_receiver(name, ())
                    except ConfigProblem as problem:
                        raise ConfigProblem(
                            ("teams", index, "alerts", key), problem.message
                        ) from None
        try:
            alerting.check_usage([team.alerts for team in self.teams])
        except ConfigProblem as problem:
            raise ConfigProblem(("monitoring", "alerting", *problem.loc), problem.message) from None
        if self.cluster.mode != "eks":
            for name, receiver in alerting.receivers.items():
                if receiver.sns is not None:
                    raise ConfigProblem(
                        ("monitoring", "alerting", "receivers", name, "sns"),
                        "Alertmanager publishes to SNS with an IAM role it gets through EKS Pod "
                        "Identity, which an existing cluster lacks; use slack, pagerduty, email "
                        "or webhook here",
                    )

    def _check_docker_hub_source(self) -> None:
        """Docker Hub images are pulled through one mirror at most."""
        if self.aws and self.aws.pull_through_cache and self.cluster.docker_hub_mirror:
            raise ConfigProblem(
                ("cluster", "dockerHubMirror"),
                "Docker Hub images come from one place: `aws.pullThroughCache` already sends them "
                "through this stack's ECR cache; remove one of the two",
            )

    def _check_block_storage(self) -> None:
        """AWS stacks create the class of block volumes; an existing cluster must name its own."""
        where = ("storage", "blockStorageClassName")
        named = self.storage.block_storage_class_name
        if self.cluster.mode == "eks":
            if named is not None:
                raise ConfigProblem(
                    where,
                    "mode `eks` creates its own class for block volumes (`gp3-encrypted`, "
                    "encrypted gp3 EBS); remove this key",
                )
            return
        claimants = [
            what
            for what, on in (
                ("monitoring", self.monitoring.enabled),
                ("Kubeflow Pipelines", self.kubeflow.pipelines.enabled),
            )
            if on
        ]
        if claimants and named is None:
            raise ConfigProblem(
                where,
                f"the block volumes of {' and '.join(claimants)} need a StorageClass: name one "
                "of the cluster's (kind: `standard`; `kubectl get storageclass` lists them)",
            )

    def _check_team_access(self) -> None:
        """An IAM principal has one access entry: a cluster admin cannot also be a team member.

        Notebooks are reached by `kubectl port-forward`, which `exec: false` withholds: the
        notebook images run Jupyter without a token (kubeflow/kubeflow@v1.10.0:components/
        example-notebook-servers/jupyter/s6/services.d/jupyterlab/run), a shell in the pod.
        """
        admins = set(self.aws.access.admins) if self.aws else set()
        for index, team in enumerate(self.teams):
            if team.notebooks and not team.access.exec:
                raise ConfigProblem(
                    ("teams", index, "notebooks"),
                    f"notebooks are reached with `kubectl port-forward`, which "
                    f"`teams[{index}].access.exec: false` withholds (a notebook's Jupyter has no "
                    f"token: reaching it is a shell in the pod); set `teams[{index}].access.exec: "
                    "true` or remove the notebooks",
                )
            if team.access.pipelines and not self.kubeflow.pipelines.enabled:
                raise ConfigProblem(
                    ("teams", index, "access", "pipelines"),
                    "needs `kubeflow.pipelines.enabled: true` (it installs Kubeflow Pipelines)",
                )
            for key in ("engineers", "viewers"):
                for position, arn in enumerate(getattr(team.access, key)):
                    if arn in admins:
                        raise ConfigProblem(
                            ("teams", index, "access", key, position),
                            f"{arn} is a cluster admin (aws.access.admins) already; an IAM "
                            "principal has one access entry, so list it in one place",
                        )

    def _check_workloads(self, index: int, team: TeamSettings) -> None:
        """Declared jobs and notebooks need their operator, an image and a pool that fits them."""
        gpu_pools = {pool.name for pool in self.node_pools.gpu}
        pools = ", ".join(["system", *sorted(gpu_pools)])
        # (key, position, GPUs asked for, pool, the kubeflow component that runs it)
        declared: list[tuple[str, int, int, str, str]] = [
            ("trainingJobs", i, job.gpus_per_worker, job.pool, "trainingOperator")
            for i, job in enumerate(team.training_jobs)
        ] + [
            ("notebooks", i, server.gpus, server.pool, "notebooks")
            for i, server in enumerate(team.notebooks)
        ]
        for kind, position, gpus, pool, component in declared:
            where: tuple[str | int, ...] = ("teams", index, kind, position)
            if not getattr(self.kubeflow, to_snake(component)).enabled:
                raise ConfigProblem(
                    (*where, "name"),
                    f"needs `kubeflow.{component}.enabled: true` (it installs the controller)",
                )
            if pool != "system" and pool not in gpu_pools:
                raise ConfigProblem((*where, "pool"), f"no pool {pool!r}; pools: {pools}")
            if gpus and pool not in gpu_pools:
                names = ", ".join(sorted(gpu_pools)) or "none declared"
                raise ConfigProblem((*where, "pool"), f"GPU work needs a GPU pool ({names})")
            if not gpus and pool != "system":
                raise ConfigProblem(
                    (*where, "pool"),
                    "CPU-only work runs on the system pool; GPU nodes are kept for GPU pods",
                )
        if self.cluster.mode != "eks":
            access: list[tuple[tuple[str | int, ...], str]] = [
                ((), team.artifacts),
                *((("trainingJobs", i), job.artifacts) for i, job in enumerate(team.training_jobs)),
                *((("notebooks", i), server.artifacts) for i, server in enumerate(team.notebooks)),
            ]
            for where, mode in access:
                if mode != "none":
                    raise ConfigProblem(
                        ("teams", index, *where, "artifacts"),
                        "S3 access comes from an IAM role of the artifact bucket this program "
                        "creates in mode `eks`; on an existing cluster use `none`",
                    )
        for position, job in enumerate(team.training_jobs):
            where = ("teams", index, "trainingJobs", position)
            if job.bin_packing and not self.gpu.bin_packing_scheduler:
                raise ConfigProblem(
                    (*where, "binPacking"), "needs `gpu.binPackingScheduler: true` in this stack"
                )
            if job.image is None and not self.training.available:
                raise ConfigProblem(
                    (*where, "image"),
                    "no image to run: set `training.image` or `training.build: true` (or the "
                    "job's `image`)",
                )

    def _check_serving(self) -> None:
        serving = self.serving
        refuse_duplicates(
            serving.models, lambda m: m.name, ("serving", "models"), "model name", field="name"
        )
        if serving.models and not serving.enabled:
            raise ConfigProblem(("serving", "enabled"), "models are declared; set `enabled: true`")
        if serving.build_inference_image and serving.inference_image:
            raise ConfigProblem(
                ("serving", "inferenceImage"), "give either an image or `buildInferenceImage: true`"
            )
        if serving.build_inference_image and self.cluster.mode != "eks":
            raise ConfigProblem(
                ("serving", "buildInferenceImage"),
                "building pushes to an ECR repository this stack creates, so it needs mode `eks`",
            )
        teams = {team.name for team in self.teams}
        pools = {"system", *(pool.name for pool in self.node_pools.gpu)}
        for index, model in enumerate(serving.models):
            where: tuple[str | int, ...] = ("serving", "models", index)
            if model.team not in teams:
                raise ConfigProblem(
                    (*where, "team"),
                    f"no team {model.team!r}; teams: {', '.join(sorted(teams)) or 'none'}",
                )
            if model.pool not in pools:
                raise ConfigProblem(
                    (*where, "pool"), f"no pool {model.pool!r}; pools: {', '.join(sorted(pools))}"
                )
            if model.exposure == "internalLoadBalancer" and self.cluster.mode != "eks":
                raise ConfigProblem(
                    (*where, "exposure"), "an internal NLB is made by AWS: use `cluster` here"
                )
            api = model.inference_api
            if api.enabled and not (serving.inference_image or serving.build_inference_image):
                raise ConfigProblem(
                    (*where, "inferenceApi", "enabled"),
                    "no image for the inference API: set `serving.inferenceImage` or "
                    "`serving.buildInferenceImage: true`",
                )

    @property
    def storage_mode(self) -> str:
        """The storage mode in force: the stack's choice, else `efs` (only EKS stacks lack one)."""
        return self.storage.mode or "efs"


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
    stack = pulumi.get_stack()
    settings = parse_settings(raw_project_config(), stack)
    refuse_plain_credentials(
        settings, stack, pulumi.runtime.config.is_config_secret(f"{PROJECT}:monitoring")
    )
    return settings


def refuse_plain_credentials(settings: Settings, stack: str, monitoring_is_secret: bool) -> None:
    """Alert receivers' credentials must be Pulumi secrets.  `pulumi config set --secret --path`
    marks the whole `monitoring` key secret (the program cannot tell which leaf was encrypted), so
    credentials with the key not secret were written in plain text."""
    paths = credential_paths(settings.monitoring.alerting)
    if paths and not monitoring_is_secret:
        commands = "\n".join(
            f"    pulumi config set --secret --path '{path}' <value>" for path in paths
        )
        raise SettingsError(
            f"Pulumi.{stack}.yaml: {PROJECT}:{paths[0]}: a credential is in plain text in the "
            f"stack file; remove it and set each as a secret:\n{commands}"
        )


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
