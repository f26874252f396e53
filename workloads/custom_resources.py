"""Components that register the teams' Kubeflow custom resources."""

from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s

from workloads.plan import PlannedWorkload


class TeamWorkload(pulumi.ComponentResource):
    """One declared TFJob, PyTorchJob or Notebook, registered after its CRD and its volumes."""

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
        self.resource = k8s.apiextensions.CustomResource(
            f"{name}-{workload.kind.lower()}",
            api_version=manifest["apiVersion"],
            kind=manifest["kind"],
            metadata=manifest["metadata"],
            spec=manifest["spec"],
            # A custom resource waits for what installs its CRD (and its controller).
            opts=pulumi.ResourceOptions(parent=self, depends_on=[installer, *needs]),
        )
        self.register_outputs({"name": workload.name, "namespace": workload.team})
