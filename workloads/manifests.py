"""The custom resources teams declare, built as plain API objects from the stack settings.

Pure functions, so the program can check every workload (schedulability) before it registers a
single resource, and the tests can validate them against the Kubeflow models.
"""

from __future__ import annotations

from typing import Any

from infra import gpu_sharing, labels, versions
from infra.binpack_scheduler import SCHEDULER_NAME
from infra.image_mirror import mirrored
from infra.pod_security import restricted_container, restricted_pod
from infra.priorities import BATCH, TRAINING
from infra.scheduling import SYSTEM_POOL, placement
from infra.settings import NotebookServerSettings, Settings, TrainingJobSettings
from infra.workload_identity import service_account_name

DATA_DIR = "/data"
MODELS_DIR = "/models"
HOME_DIR = "/home/jovyan"
# The Kubeflow notebook images run as jovyan (uid 1000) with primary group 0: "the primary GID of
# 'jovyan' MUST be 0" (kubeflow/notebooks@v1.11.0:components/example-notebook-servers/base/
# Dockerfile), and their s6-overlay /init exits 100 for a non-root process outside group 0, as /run
# is root's and only group-writable (just-containers/s6-overlay@v3.2.3.0:layout/rootfs-overlay/
# package/admin/s6-overlay-@VERSION@/libexec/preinit; v3.2.0.2 in Kubeflow 1.10's images alike).
# Group 0 grants no privilege by itself.
NOTEBOOK_GROUP = 0
TF_PORT = ("tfjob-port", 2222)  # the name and port the operator's TF_CONFIG points at
PYTORCH_PORT = ("pytorchjob-port", 23456)
# Kubeflow's profile namespaces inject Istio sidecars, which keep job pods from ever completing.
NO_SIDECAR = {"sidecar.istio.io/inject": "false"}
# Set to the GPU count in training containers that request GPUs, and only there: the trainer then
# fails instead of training on the CPU when TensorFlow finds no GPU (training/devices.py).
EXPECTED_GPUS_ENV = "EXPECTED_GPUS"


def export_dir(team: str, job: str) -> str:
    """Where a team's job exports its model versions (TF Serving's base path for the model)."""
    return f"{MODELS_DIR}/{team}/{job}"


def checkpoint_dir(team: str, job: str) -> str:
    return f"{MODELS_DIR}/.checkpoints/{team}/{job}"


def _gpu_resources(settings: Settings, pool: str, gpus: int) -> dict[str, int]:
    if not gpus:
        return {}
    [gpu_pool] = [p for p in settings.node_pools.gpu if p.name == pool]
    return {gpu_sharing.resource_name(gpu_pool): gpus}


def _resources(settings: Settings, pool: str, gpus: int, cpu: str, memory: str) -> dict[str, Any]:
    """cpu and memory requests, memory limited to its request, GPUs whole and requests = limits."""
    devices = _gpu_resources(settings, pool, gpus)
    return {
        "requests": {"cpu": cpu, "memory": memory, **devices},
        "limits": {"memory": memory, **devices},
    }


def _volume(name: str, claim: str, read_only: bool = False) -> dict[str, Any]:
    source: dict[str, Any] = {"claimName": claim}
    if read_only:
        source["readOnly"] = True
    return {"name": name, "persistentVolumeClaim": source}


def _pod_spec(
    settings: Settings,
    *,
    pool: str,
    containers: list[dict[str, Any]],
    volumes: list[dict[str, Any]],
    priority: str,
    service_account: str,
    scheduler: str | None = None,
    group: int | None = None,
) -> dict[str, Any]:
    """`group`: the primary group, when the image needs another than the file owner's."""
    where = placement(settings, pool)
    owner = settings.storage.file_owner
    spec: dict[str, Any] = {
        "serviceAccountName": service_account,
        "priorityClassName": priority,
        "securityContext": {
            **restricted_pod(owner, group),
            # "A special supplemental group that applies to all containers in a pod" (k8s.io/api
            # core/v1 PodSecurityContext.fsGroup): the owner's gid joins the processes' groups
            # even where the volume's ownership is not changed ("NFS volumes do not support
            # ownership management", NFSVolumeSource); EFS access points act as the owner.
            "fsGroup": owner,
        },
        "automountServiceAccountToken": False,
        "containers": containers,
        "volumes": volumes,
    }
    spec.update(where.pod_fields())
    if scheduler:
        spec["schedulerName"] = scheduler
    return spec


def job_kind(job: TrainingJobSettings) -> str:
    return "TFJob" if job.framework == "tensorflow" else "PyTorchJob"


def _job_labels(team: str, job: str) -> dict[str, str]:
    return {**labels.common("training"), labels.TEAM: team, "app.kubernetes.io/name": job}


def _replica(
    settings: Settings,
    team: str,
    job: TrainingJobSettings,
    *,
    image: Any,
    container_name: str,
    port: tuple[str, int],
    replicas: int,
    gpus: int,
) -> dict[str, Any]:
    """One replica type: its count, restart policy and pod template."""
    storage = settings.storage
    pool = job.pool if gpus else SYSTEM_POOL
    command = job.command or [
        "python",
        "-m",
        "training.train",
        "--data",
        f"{DATA_DIR}/mnist.npz",
        "--export-dir",
        export_dir(team, job.name),
        "--epochs",
        str(job.epochs),
        "--batch-size",
        str(job.batch_size),
        "--checkpoint-dir",
        checkpoint_dir(team, job.name),
        "--metrics-file",
        f"{export_dir(team, job.name)}.metrics.json",
    ]
    container = {
        "name": container_name,
        "image": mirrored(settings, job.image or image),
        "command": command,
        "ports": [{"name": port[0], "containerPort": port[1]}],
        "resources": _resources(settings, pool, gpus, job.cpu, job.memory),
        "securityContext": restricted_container(),
        "env": [
            {"name": "HOME", "value": "/tmp"},
            *([{"name": EXPECTED_GPUS_ENV, "value": str(gpus)}] if gpus else []),
        ],
        "volumeMounts": [
            {"name": "datasets", "mountPath": DATA_DIR, "readOnly": True},
            {"name": "models", "mountPath": MODELS_DIR},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
    }
    spec = _pod_spec(
        settings,
        pool=pool,
        containers=[container],
        volumes=[
            _volume("datasets", storage.datasets.name, read_only=True),
            _volume("models", storage.models.name),
            {"name": "tmp", "emptyDir": {}},
        ],
        priority=TRAINING,
        service_account=service_account_name(job_kind(job), job.name),
        scheduler=SCHEDULER_NAME if job.bin_packing else None,
    )
    return {
        "replicas": replicas,
        "restartPolicy": job.restart_policy,
        "template": {
            "metadata": {"labels": _job_labels(team, job.name), "annotations": dict(NO_SIDECAR)},
            "spec": spec,
        },
    }


def _run_policy(job: TrainingJobSettings) -> dict[str, Any]:
    return {
        # Never `None`: a parameter server never exits, and would hold its node after the job.
        "cleanPodPolicy": job.clean_pod_policy,
        # No ttlSecondsAfterFinished: the operator would delete the finished job
        # (kubeflow/trainer@v1.9.4:pkg/controller.v1/common/job.go, CleanupJob; unset means never),
        # and the next refresh and `up` would recreate it and train again.
        "backoffLimit": job.backoff_limit,
        "activeDeadlineSeconds": job.active_deadline_seconds,
    }


def tfjob(
    settings: Settings, team: str, job: TrainingJobSettings, image: Any = None
) -> dict[str, Any]:
    """A TFJob: workers for MultiWorkerMirroredStrategy; Chief, PS and Evaluator when asked.

    `image`: the training image (a string, or the reference the stack builds); default
    `training.image`.
    """

    def replica(replicas: int, gpus: int) -> dict[str, Any]:
        return _replica(
            settings,
            team,
            job,
            image=image or settings.training.image,
            container_name="tensorflow",  # the operator finds the training container by name
            port=TF_PORT,
            replicas=replicas,
            gpus=gpus,
        )

    specs = {"Worker": replica(job.workers, job.gpus_per_worker)}
    if job.chief:
        # Task 0 of MultiWorkerMirroredStrategy's collective: it trains like a worker
        # (tensorflow/tensorflow@v2.20.0:tensorflow/python/distribute/multi_worker_util.py,
        # worker_count), so it gets a worker's GPUs.
        specs["Chief"] = replica(1, job.gpus_per_worker)
    # PS and Evaluator replicas exist only for a job's own `command` (settings refuse them for
    # the built-in trainer, which has no such roles; training/roles.py).
    if job.parameter_servers:
        specs["PS"] = replica(job.parameter_servers, 0)  # a PS holds variables, never a GPU
    if job.evaluator:
        specs["Evaluator"] = replica(1, 0)
    return {
        "apiVersion": "kubeflow.org/v1",
        "kind": job_kind(job),
        "metadata": {"name": job.name, "namespace": team, "labels": _job_labels(team, job.name)},
        "spec": {"runPolicy": _run_policy(job), "tfReplicaSpecs": specs},
    }


def pytorchjob(
    settings: Settings, team: str, job: TrainingJobSettings, image: Any = None
) -> dict[str, Any]:
    """A PyTorchJob: one Master plus workers-1 Workers, torchrun processes per node."""

    def replica(replicas: int) -> dict[str, Any]:
        return _replica(
            settings,
            team,
            job,
            image=image or settings.training.image,
            container_name="pytorch",
            port=PYTORCH_PORT,
            replicas=replicas,
            gpus=job.gpus_per_worker,
        )

    specs = {"Master": replica(1)}
    if job.workers > 1:
        specs["Worker"] = replica(job.workers - 1)
    return {
        "apiVersion": "kubeflow.org/v1",
        "kind": job_kind(job),
        "metadata": {"name": job.name, "namespace": team, "labels": _job_labels(team, job.name)},
        "spec": {
            "runPolicy": _run_policy(job),
            "nprocPerNode": job.nproc_per_node,
            "pytorchReplicaSpecs": specs,
        },
    }


def training_job(
    settings: Settings, team: str, job: TrainingJobSettings, image: Any = None
) -> dict[str, Any]:
    build = tfjob if job.framework == "tensorflow" else pytorchjob
    return build(settings, team, job, image)


def notebook(settings: Settings, team: str, server: NotebookServerSettings) -> dict[str, Any]:
    """A Kubeflow Notebook: a notebook-server image with the team workspace as its home."""
    storage = settings.storage
    default_image = versions.NOTEBOOK_IMAGE_GPU if server.gpus else versions.NOTEBOOK_IMAGE_CPU
    pool = server.pool if server.gpus else SYSTEM_POOL
    container = {
        "name": server.name,  # the controller finds the server container by the notebook's name
        "image": mirrored(settings, server.image or default_image),
        "resources": _resources(settings, pool, server.gpus, server.cpu, server.memory),
        # Jupyter writes under its home and /tmp; the root file system cannot be read-only.
        "securityContext": restricted_container(read_only_root=False),
        "volumeMounts": [
            {"name": "workspace", "mountPath": HOME_DIR},
            {"name": "datasets", "mountPath": DATA_DIR, "readOnly": True},
        ],
    }
    spec = _pod_spec(
        settings,
        pool=pool,
        containers=[container],
        volumes=[
            _volume("workspace", storage.workspace.name),
            _volume("datasets", storage.datasets.name, read_only=True),
        ],
        priority=BATCH,
        service_account=service_account_name("Notebook", server.name),
        # The workspace is written as the file owner's uid (the images' jovyan by default), in
        # the group the images' start-up requires.
        group=NOTEBOOK_GROUP,
    )
    return {
        "apiVersion": "kubeflow.org/v1",
        "kind": "Notebook",
        "metadata": {
            "name": server.name,
            "namespace": team,
            "labels": {**labels.common("notebooks"), labels.TEAM: team},
        },
        # The Notebook CRD's template has only a pod spec; metadata there would be pruned.
        "spec": {"template": {"spec": spec}},
    }
