"""Access to a cluster the platform does not create (kind, minikube, on-prem, another EKS)."""

from __future__ import annotations

import os

import pulumi
import pulumi_kubernetes as k8s

from infra.settings import ClusterSettings


class ExistingCluster(pulumi.ComponentResource):
    """A Kubernetes provider for an existing cluster, chosen by kubeconfig context.

    The provider's identity is the context name (`cluster_identifier`), so moving the kubeconfig
    file or rotating its credentials does not replace every Kubernetes resource.
    """

    provider: k8s.Provider
    installer_provider: k8s.Provider

    def __init__(
        self, name: str, cluster: ClusterSettings, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("ml-platform:cluster:ExistingCluster", name, None, opts)
        if cluster.mode != "existing" or not cluster.context:
            raise ValueError("ExistingCluster needs cluster settings in mode `existing`")
        kubeconfig = os.path.expanduser(cluster.kubeconfig) if cluster.kubeconfig else None
        self.provider = k8s.Provider(
            f"{name}-k8s",
            kubeconfig=kubeconfig,
            context=cluster.context,
            cluster_identifier=cluster.context,
            opts=pulumi.ResourceOptions(parent=self),
        )
        # For upstream bundles that declare objects another bundle (or we) already made, such
        # as the `kubeflow` namespace: they adopt them instead of failing with AlreadyExists.
        self.installer_provider = k8s.Provider(
            f"{name}-k8s-installs",
            kubeconfig=kubeconfig,
            context=cluster.context,
            cluster_identifier=cluster.context,
            upsert_existing_objects=True,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.register_outputs({"context": cluster.context})
