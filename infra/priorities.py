"""PriorityClasses: serving outranks training, which outranks notebooks and batch work.

When GPUs run out, the scheduler evicts lower-priority pods to place higher ones: a serving
replica can take a training worker's GPU (training restarts from its checkpoint), while
notebooks and batch jobs never evict anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pulumi
import pulumi_kubernetes as k8s

from infra import labels

SERVING = "ml-serving"
TRAINING = "ml-training"
BATCH = "ml-batch"


@dataclass(frozen=True)
class Priority:
    name: str
    value: int
    preemption: Literal["PreemptLowerPriority", "Never"]
    description: str


PRIORITIES = (
    Priority(
        SERVING,
        100_000,
        "PreemptLowerPriority",
        "Model servers: may evict training and batch pods.",
    ),
    Priority(
        TRAINING,
        10_000,
        "PreemptLowerPriority",
        "Training jobs: evicted by serving, may evict batch.",
    ),
    Priority(BATCH, 1_000, "Never", "Notebooks and batch jobs: wait for capacity, evict nothing."),
)


class PriorityClasses(pulumi.ComponentResource):
    classes: dict[str, k8s.scheduling.v1.PriorityClass]

    def __init__(self, name: str, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("ml-platform:scheduling:PriorityClasses", name, None, opts)
        self.classes = {
            priority.name: k8s.scheduling.v1.PriorityClass(
                f"{name}-{priority.name}",
                metadata=k8s.meta.v1.ObjectMetaArgs(
                    name=priority.name, labels=labels.common("scheduling")
                ),
                value=priority.value,
                preemption_policy=priority.preemption,
                global_default=False,
                description=priority.description,
                opts=pulumi.ResourceOptions(parent=self),
            )
            for priority in PRIORITIES
        }
        self.register_outputs({"names": sorted(self.classes)})
