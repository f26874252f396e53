"""What ML engineers declare per team (training jobs, notebook servers) and the training image."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, model_validator

from infra.settings.base import ConfigProblem, DnsLabel, Quantity, SettingsModel

_IMAGE_NAME = re.compile(r"^[a-z0-9][a-z0-9._/:-]*$")
_TAG = re.compile(r"^\w[\w.-]{0,127}$")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


def _check_image(value: str) -> str:
    """An image reference pinned by tag (not `latest`) or by digest."""
    name, _, digest = value.partition("@")
    tag = ""
    if not digest and ":" in name.rsplit("/", 1)[-1]:
        name, tag = name.rsplit(":", 1)
    pinned = bool(digest and _DIGEST.match(digest)) or bool(tag and _TAG.match(tag))
    if not _IMAGE_NAME.match(name) or not pinned:
        raise ValueError(
            f"{value!r} is not a pinned image reference; write registry/repository:tag or "
            "registry/repository@sha256:<digest>"
        )
    if tag == "latest":
        raise ValueError(f"{value!r} uses the `latest` tag; pin a version or a digest")
    return value


PinnedImage = Annotated[str, AfterValidator(_check_image)]

# What a workload may do in the stack's artifact bucket (AWS stacks): nothing; read its team's
# prefix; or also write below its own prefix there.
ArtifactAccess = Literal["none", "read", "readwrite"]
ARTIFACT_ACCESS_HELP = (
    "S3 access through the workload's own IAM role (EKS Pod Identity): `none`, `read` (the "
    "team's prefix `teams/<team>/` of the artifact bucket) or `readwrite` (also write below "
    "`teams/<team>/<name>/`). AWS stacks only."
)


class TrainingSettings(SettingsModel):
    image: PinnedImage | None = Field(
        default=None,
        description="The training image (built from training/), pinned by tag or digest.",
    )
    build: bool = Field(
        default=False,
        description="Build training/ and push it to an ECR repository of this stack instead "
        "(AWS stacks; needs Docker with buildx where `pulumi up` runs).",
    )

    @model_validator(mode="after")
    def _check(self) -> TrainingSettings:
        if self.build and self.image:
            raise ConfigProblem(("image",), "give either an image or `build: true`, not both")
        return self

    @property
    def available(self) -> bool:
        return self.build or self.image is not None


class TrainingJobSettings(SettingsModel):
    name: DnsLabel = Field(description="Job name (the TFJob/PyTorchJob object).")
    framework: Literal["tensorflow", "pytorch"] = Field(
        default="tensorflow", description="`tensorflow` (TFJob) or `pytorch` (PyTorchJob)."
    )
    workers: Annotated[int, Field(ge=1, le=64)] = Field(
        default=2,
        description="Worker replicas (TF: MultiWorkerMirroredStrategy; worker 0 leads unless "
        "there is a Chief).",
    )
    gpus_per_worker: Annotated[int, Field(ge=0, le=8)] = Field(
        default=1, description="Whole GPUs per worker (0 for a CPU job)."
    )
    pool: str = Field(
        default="system", description="Node pool the workers run on (a GPU pool for GPU jobs)."
    )
    cpu: Quantity = Field(default="2", description="cpu request per worker.")
    memory: Quantity = Field(default="8Gi", description="Memory request and limit per worker.")
    epochs: Annotated[int, Field(ge=1)] = Field(default=10, description="Training epochs.")
    batch_size: Annotated[int, Field(ge=1)] = Field(
        default=256, description="Per-replica batch size."
    )
    chief: bool = Field(
        default=False,
        description="tensorflow: add a Chief replica, which trains like a worker (with its GPUs) "
        "and, instead of worker 0, writes the checkpoints, the export and the metrics.",
    )
    parameter_servers: Annotated[int, Field(ge=0, le=16)] = Field(
        default=0,
        description="tensorflow, with your own `command` only: PS replicas (never given a GPU). "
        "The built-in trainer (MultiWorkerMirroredStrategy) has no parameter servers.",
    )
    evaluator: bool = Field(
        default=False,
        description="tensorflow, with your own `command` only: add an Evaluator replica. The "
        "built-in trainer evaluates on the chief.",
    )
    nproc_per_node: str = Field(
        default="auto", description="pytorch: processes per node (auto, gpu, cpu or a number)."
    )
    clean_pod_policy: Literal["Running", "All"] = Field(
        default="Running",
        description="What to delete when the job ends: still-running pods (`Running`) or all.",
    )
    restart_policy: Literal["OnFailure", "ExitCode"] = Field(
        default="OnFailure",
        description="How failed workers restart (they resume from checkpoints).",
    )
    backoff_limit: Annotated[int, Field(ge=0)] = Field(default=3, description="Restarts allowed.")
    active_deadline_seconds: Annotated[int, Field(ge=60)] = Field(
        default=86400, description="Stop the job after this long."
    )
    bin_packing: bool = Field(
        default=False, description="Schedule with `gpu-binpack` (needs gpu.binPackingScheduler)."
    )
    image: PinnedImage | None = Field(
        default=None, description="Image to run (default: `training.image`; required for pytorch)."
    )
    artifacts: ArtifactAccess = Field(default="none", description=ARTIFACT_ACCESS_HELP)
    command: list[str] | None = Field(
        default=None,
        description="Command to run (default for tensorflow: `python -m training.train` with the "
        "data, export and checkpoint paths; required for pytorch).",
    )

    @model_validator(mode="before")
    @classmethod
    def _no_ttl(cls, data: object) -> object:
        if isinstance(data, dict) and "ttlSecondsAfterFinished" in data:
            raise ConfigProblem(
                ("ttlSecondsAfterFinished",),
                "finished jobs are kept, not expired: a job deleted after its TTL would be "
                "recreated and retrained by the next `pulumi up`; remove this key (to free "
                "resources, cleanPodPolicy already deletes the pods; to drop the job, remove it "
                "from the stack)",
            )
        return data

    @model_validator(mode="after")
    def _check(self) -> TrainingJobSettings:
        if self.framework == "pytorch":
            for key, value in (
                ("chief", self.chief),
                ("parameterServers", self.parameter_servers),
                ("evaluator", self.evaluator),
            ):
                if value:
                    raise ConfigProblem((key,), "only applies to tensorflow jobs; remove it")
        if self.framework == "tensorflow" and not self.command:
            self._check_builtin_trainer_roles()
        if self.framework == "pytorch" and (self.image is None or not self.command):
            raise ConfigProblem(
                ("command",), "a pytorch job needs its own `image` and `command` to run"
            )
        if not re.fullmatch(r"auto|gpu|cpu|[1-9][0-9]*", self.nproc_per_node):
            raise ConfigProblem(
                ("nprocPerNode",), "use auto, gpu, cpu or a whole number of processes"
            )
        return self

    def _check_builtin_trainer_roles(self) -> None:
        """Replicas `python -m training.train` cannot play (training/roles.py says why).

        The operator starts every replica type with the same command and lists it in TF_CONFIG
        (kubeflow/trainer@v1.9.4:pkg/controller.v1/tensorflow/tensorflow.go, genClusterSpec).
        """
        if self.parameter_servers:
            raise ConfigProblem(
                ("parameterServers",),
                "the built-in trainer uses MultiWorkerMirroredStrategy, which has no parameter "
                "servers (a PS task cannot join its collective and would crash); remove it, or "
                "give the job a `command` of your own that runs ParameterServerStrategy",
            )
        if self.evaluator:
            raise ConfigProblem(
                ("evaluator",),
                "the built-in trainer has no evaluator role (the chief evaluates the final model "
                "on the test set and writes the metrics file); remove it, or give the job a "
                "`command` of your own",
            )


class NotebookServerSettings(SettingsModel):
    name: DnsLabel = Field(description="Notebook server name.")
    image: PinnedImage | None = Field(
        default=None,
        description="A Kubeflow notebook-server image (default: the pinned TensorFlow one, the "
        "CUDA variant when GPUs are asked for). Its TensorFlow must not be older than the "
        "training's (2.20) to load the SavedModels training exports.",
    )
    gpus: Annotated[int, Field(ge=0, le=8)] = Field(default=0, description="Whole GPUs.")
    pool: str = Field(default="system", description="Node pool (a GPU pool when gpus > 0).")
    cpu: Quantity = Field(default="1", description="cpu request.")
    memory: Quantity = Field(default="4Gi", description="Memory request and limit.")
    artifacts: ArtifactAccess = Field(default="none", description=ARTIFACT_ACCESS_HELP)
