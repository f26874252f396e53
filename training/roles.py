"""This process's role in a TFJob, from the TF_CONFIG the training operator injects.

The trainer runs MultiWorkerMirroredStrategy, whose collective is the `chief` and `worker` tasks
(tensorflow/tensorflow@v2.20.0:tensorflow/python/distribute/multi_worker_util.py, `worker_count`).
Exactly one of them is the chief, which alone writes where others read (the checkpoint directory,
the export directory, the metrics file); TensorFlow's rule (`is_chief`, same file) is the `chief`
task when the cluster has one, else worker 0.  The operator lists every replica type of the job in
the cluster spec, lower-cased (kubeflow/trainer@v1.9.4:pkg/controller.v1/tensorflow/tensorflow.go,
`genClusterSpec`), so a TFJob with a Chief gives both `chief/0` and `worker/0` an index 0.

A parameter server cannot join that collective (`id_in_cluster` has no id for `ps`), and an
evaluator would build a one-replica strategy and train on its own; both are refused here, before
anything is loaded, so such a replica never trains.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

# The task types that make up MultiWorkerMirroredStrategy's collective.
COLLECTIVE = ("chief", "worker")
# Task types TensorFlow knows that the built-in trainer has no role for, and why.
UNSUPPORTED = {
    "ps": "a parameter server cannot join MultiWorkerMirroredStrategy's collective, which the "
    "trainer uses",
    "evaluator": "the trainer has no evaluator role: the chief evaluates the final model on the "
    "test set itself",
}
EXAMPLE = '{"cluster": {"worker": ["host:port", ...]}, "task": {"type": "worker", "index": 0}}'


class RoleError(ValueError):
    """TF_CONFIG names no role the trainer can play; the message says what to change."""


@dataclass(frozen=True)
class Cluster:
    """This process's place in the training cluster."""

    task_type: str
    task_index: int
    num_workers: int  # the collective: chief and workers
    is_chief: bool

    @property
    def name(self) -> str:
        return f"{self.task_type}/{self.task_index}"


SINGLE = Cluster("worker", 0, 1, is_chief=True)


def is_chief(cluster: dict[str, list[str]], task_type: str, task_index: int) -> bool:
    """TensorFlow's rule: the `chief` task, or worker 0 when the cluster has no `chief`."""
    if task_type == "chief":
        return True
    return "chief" not in cluster and task_type == "worker" and task_index == 0


def from_tf_config(raw: str) -> Cluster:
    """The role TF_CONFIG gives this process (one process alone when it is empty)."""
    if not raw:
        return SINGLE
    try:
        config = json.loads(raw)
        cluster = {str(key): list(value) for key, value in config["cluster"].items()}
        task_type, task_index = str(config["task"]["type"]), int(config["task"]["index"])
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise RoleError(f"TF_CONFIG is not valid ({error!r}); expected {EXAMPLE}") from None
    if task_type in UNSUPPORTED:
        raise RoleError(
            f"this process is task {task_type}/{task_index}, but {UNSUPPORTED[task_type]}; "
            "run the TFJob with Chief and Worker replicas only (remove `parameterServers` and "
            "`evaluator` from its trainingJobs entry), or give the job a `command` of its own"
        )
    if task_type not in COLLECTIVE:
        raise RoleError(
            f"TF_CONFIG task type {task_type!r} is not one of {', '.join(COLLECTIVE)}; "
            f"expected {EXAMPLE}"
        )
    members = cluster.get(task_type, [])
    if not 0 <= task_index < len(members):
        raise RoleError(
            f"TF_CONFIG task {task_type}/{task_index} is not in its cluster, which has "
            f"{len(members)} {task_type} task(s); expected {EXAMPLE}"
        )
    if len(cluster.get("chief", [])) > 1:
        raise RoleError("TF_CONFIG names more than one chief; a TFJob has at most one Chief")
    size = sum(len(cluster.get(kind, [])) for kind in COLLECTIVE)
    return Cluster(task_type, task_index, size, is_chief=is_chief(cluster, task_type, task_index))
