"""Components that register the teams' Kubeflow custom resources.

Training jobs and Katib experiments are one-shot: a TFJob, PyTorchJob or Experiment runs once and
then stays, finished, as the record of its run (no `ttlSecondsAfterFinished`, see
`workloads/manifests.py`), so a refresh finds it and `pulumi up` never starts it again.  Changing
its declaration replaces it (deleted first, as its name is fixed) and so runs again: updating a
finished one in place would do nothing.
"""

from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s

from workloads.plan import PlannedWorkload

# Kinds that run to completion once, rather than keep running.
ONE_SHOT_KINDS = frozenset({"TFJob", "PyTorchJob", "Experiment"})


class TeamWorkload(pulumi.ComponentResource):
    """One declared TFJob, PyTorchJob, Experiment or Notebook, registered after its CRD and its
    volumes."""

    resource: k8s.apiextensions.CustomResource

    def __init__(
        self,
        name: str,
        workload: PlannedWorkload,
        *,
        installer: pulumi.Resource,
        needs: list[pulumi.Resource],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(f"ml-platform:workloads:{workload.kind}", name, None, opts)
        manifest = workload.manifest
        one_shot = workload.kind in ONE_SHOT_KINDS
        self.resource = k8s.apiextensions.CustomResource(
            f"{name}-{workload.kind.lower()}",
            api_version=manifest["apiVersion"],
            kind=manifest["kind"],
            metadata=manifest["metadata"],
            spec=manifest["spec"],
            # A custom resource waits for what installs its CRD (and its controller).
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=[installer, *needs],
                replace_on_changes=["spec"] if one_shot else None,
                delete_before_replace=one_shot,
            ),
        )
        self.register_outputs({"name": workload.name, "namespace": workload.team})
