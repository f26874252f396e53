"""A Job that stages the MNIST data set into the datasets volume once.

It runs `training/prepare_data.py`, shipped in a ConfigMap, in TensorFlow's CPU image (which has
Python and NumPy), as the files' owner and with nothing writable but the volume.  The script
validates before it writes and recognises an already staged file by its checksum, so running the
Job again (a changed template replaces it) only confirms the data.  It is kept once finished, so
refreshes find it and `pulumi up` does not run it again.
"""

from __future__ import annotations

from pathlib import Path

import pulumi
import pulumi_kubernetes as k8s

from infra import labels, names, versions
from infra.pod_security import restricted_container_args, restricted_pod_args
from infra.scheduling import Placement
from infra.settings import StorageSettings

SCRIPT = Path(__file__).resolve().parents[1] / "training" / "prepare_data.py"
APP = "stage-mnist"
DATA_DIR = "/data"
SCRIPT_DIR = "/opt/ml-platform"


# How long staging may take, a cold node's image pull and the download included.
DEADLINE_SECONDS = 1800
# The apply's wait: the deadline plus time for the Job controller to mark the Job failed.
AWAIT_SECONDS = DEADLINE_SECONDS + 300


class DatasetStaging(pulumi.ComponentResource):
    job: k8s.batch.v1.Job

    def __init__(
        self,
        name: str,
        *,
        storage: StorageSettings,
        claim: k8s.core.v1.PersistentVolumeClaim,
        placement: Placement,
        after: list[pulumi.Resource],
        image: str = versions.TENSORFLOW_IMAGE,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        """`after`: what the Job waits for besides its claim (the nodes it runs on); `image`:
        TensorFlow's CPU image as the nodes pull it (through the stack's Docker Hub mirror)."""
        super().__init__("ml-platform:storage:DatasetStaging", name, None, opts)
        meta_labels = {**labels.common("storage"), "app.kubernetes.io/name": APP}
        script = k8s.core.v1.ConfigMap(
            f"{name}-script",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=f"{APP}-script", namespace=names.PLATFORM, labels=meta_labels
            ),
            data={"prepare_data.py": SCRIPT.read_text()},
            opts=pulumi.ResourceOptions(parent=self),
        )
        owner = storage.file_owner
        self.job = k8s.batch.v1.Job(
            f"{name}-job",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=APP,
                namespace=names.PLATFORM,
                labels=meta_labels,
                # The apply waits for the Job to complete and fails at once when it fails,
                # DeadlineExceeded included (tests/upstream/pulumi-kubernetes-job-await.yaml), so
                # it waits past the Job's own deadline: the Job's verdict, never the await's
                # timeout, ends it, and training jobs (which wait for it) start on real data.
                annotations={"pulumi.com/timeoutSeconds": str(AWAIT_SECONDS)},
            ),
            spec=k8s.batch.v1.JobSpecArgs(
                backoff_limit=3,
                # No ttlSecondsAfterFinished: a Job the TTL controller deletes is recreated (and
                # rerun) by the next refresh and `up`; finished, it holds nothing but its record.
                active_deadline_seconds=DEADLINE_SECONDS,
                template=k8s.core.v1.PodTemplateSpecArgs(
                    metadata=k8s.meta.v1.ObjectMetaArgs(labels=meta_labels),
                    spec=k8s.core.v1.PodSpecArgs(
                        restart_policy="Never",
                        automount_service_account_token=False,
                        node_selector=placement.node_selector or None,
                        security_context=restricted_pod_args(owner),
                        containers=[
                            k8s.core.v1.ContainerArgs(
                                name="prepare-data",
                                image=image,
                                command=[
                                    "python3",
                                    f"{SCRIPT_DIR}/prepare_data.py",
                                    "--out",
                                    f"{DATA_DIR}/mnist.npz",
                                    "--source",
                                    storage.staging.source,
                                ],
                                env=[
                                    k8s.core.v1.EnvVarArgs(
                                        name="PYTHONDONTWRITEBYTECODE", value="1"
                                    )
                                ],
                                resources=k8s.core.v1.ResourceRequirementsArgs(
                                    requests={"cpu": "250m", "memory": "512Mi"},
                                    limits={"cpu": "1", "memory": "1Gi"},
                                ),
                                security_context=restricted_container_args(),
                                volume_mounts=[
                                    k8s.core.v1.VolumeMountArgs(
                                        name="datasets", mount_path=DATA_DIR
                                    ),
                                    k8s.core.v1.VolumeMountArgs(
                                        name="script", mount_path=SCRIPT_DIR, read_only=True
                                    ),
                                ],
                            )
                        ],
                        volumes=[
                            k8s.core.v1.VolumeArgs(
                                name="datasets",
                                persistent_volume_claim=k8s.core.v1.PersistentVolumeClaimVolumeSourceArgs(
                                    claim_name=storage.datasets.name
                                ),
                            ),
                            k8s.core.v1.VolumeArgs(
                                name="script",
                                config_map=k8s.core.v1.ConfigMapVolumeSourceArgs(
                                    name=f"{APP}-script"
                                ),
                            ),
                        ],
                    ),
                ),
            ),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[script, claim, *after]),
        )
        self.register_outputs({"job": APP})
