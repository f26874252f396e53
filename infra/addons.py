"""EKS managed add-ons: networking, DNS, kube-proxy, the Pod Identity agent, storage drivers
and metrics-server."""

from __future__ import annotations

import json

import pulumi
import pulumi_aws as aws

from infra import metrics_server, versions
from infra.iam import POD_IDENTITY_PRINCIPAL, ServiceRole, managed_policy
from infra.settings import AwsSettings


def addon_versions(aws_settings: AwsSettings, kubernetes_minor: str) -> dict[str, str]:
    """Add-on name -> version: the stack's pins, else the table's for the cluster version."""
    pinned = versions.EKS_ADDON_VERSIONS[kubernetes_minor]
    chosen = aws_settings.addons
    return {
        "vpc-cni": chosen.vpc_cni or pinned.vpc_cni,
        "kube-proxy": chosen.kube_proxy or pinned.kube_proxy,
        "eks-pod-identity-agent": chosen.pod_identity_agent or pinned.pod_identity_agent,
        "coredns": chosen.coredns or pinned.coredns,
        "aws-efs-csi-driver": chosen.efs_csi_driver or pinned.efs_csi_driver,
        "aws-ebs-csi-driver": chosen.ebs_csi_driver or pinned.ebs_csi_driver,
        metrics_server.ADDON: chosen.metrics_server or pinned.metrics_server,
    }


class ClusterAddons(pulumi.ComponentResource):
    """Add-ons in two waves: what nodes need to join (`before_nodes`), then CoreDNS.

    CoreDNS is a Deployment and only becomes healthy once nodes exist, so it is created after
    the system pool (`add_coredns`); the others must be there before the first node boots.
    """

    before_nodes: list[aws.eks.Addon]

    def __init__(
        self,
        name: str,
        cluster: aws.eks.Cluster,
        addon_versions: dict[str, str],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("ml-platform:cluster:ClusterAddons", name, None, opts)
        self._name = name
        self._cluster = cluster
        self._versions = addon_versions
        pod_identity = self._addon("eks-pod-identity-agent")
        # The CNI gets its AWS permissions through Pod Identity rather than the node role, so
        # workloads on the node cannot use them.
        cni_role = ServiceRole(
            f"{name}-vpc-cni",
            service=POD_IDENTITY_PRINCIPAL,
            managed_policies=[managed_policy("AmazonEKS_CNI_Policy")],
            description="Amazon VPC CNI (aws-node) through EKS Pod Identity",
            opts=pulumi.ResourceOptions(parent=self),
        )
        vpc_cni = self._addon(
            "vpc-cni",
            pod_identity_associations=[
                aws.eks.AddonPodIdentityAssociationArgs(
                    role_arn=cni_role.role.arn, service_account="aws-node"
                )
            ],
            depends_on=[pod_identity],
            # The CNI's network policy agent enforces NetworkPolicies (team isolation); without
            # it they are accepted and ignored.
            configuration={"enableNetworkPolicy": "true"},
        )
        self.before_nodes = [pod_identity, vpc_cni, self._addon("kube-proxy")]
        self.coredns: aws.eks.Addon | None = None
        self.register_outputs({"versions": addon_versions})

    def add_coredns(self, after: list[pulumi.Resource]) -> aws.eks.Addon:
        self.coredns = self._addon("coredns", depends_on=after)
        return self.coredns

    def add_ebs_csi(self, after: list[pulumi.Resource]) -> aws.eks.Addon:
        """Block volumes (gp2/gp3) for stateful platform pieces such as Prometheus."""
        role = ServiceRole(
            f"{self._name}-ebs-csi",
            service=POD_IDENTITY_PRINCIPAL,
            managed_policies=[managed_policy("AmazonEBSCSIDriverPolicy", service_role=True)],
            description="EBS CSI driver controller through EKS Pod Identity",
            opts=pulumi.ResourceOptions(parent=self),
        )
        return self._addon(
            "aws-ebs-csi-driver",
            pod_identity_associations=[
                aws.eks.AddonPodIdentityAssociationArgs(
                    role_arn=role.role.arn, service_account="ebs-csi-controller-sa"
                )
            ],
            depends_on=after,
        )

    def add_metrics_server(self, after: list[pulumi.Resource]) -> aws.eks.Addon:
        """The resource metrics API for HorizontalPodAutoscalers; EKS runs none by default.

        A Deployment, so it waits for the system pool.  The add-on is AWS's own build of
        metrics-server, not the kubernetes-sigs chart with its defaults: the EKS user guide
        (metrics-server page, "Considerations") says it is "pre-configured to use port 10251"
        (the chart's default is 10250), so the control plane must reach the nodes on 10251;
        our node groups' launch templates name no security group, so the nodes carry the
        cluster security group, which admits all traffic from the control plane.  AWS publishes
        neither its default tolerations nor its configuration schema (`aws eks
        describe-addon-configuration` could not be run here), so nothing is configured: with
        no toleration for the GPU pools' taint it lands on the system nodes, which is what the
        upstream chart does (kubernetes-sigs/metrics-server@metrics-server-helm-chart-3.13.1:
        charts/metrics-server/values.yaml `tolerations: []`); that AWS's build keeps that
        default is not verified.
        """
        return self._addon(metrics_server.ADDON, depends_on=after)

    def _addon(
        self,
        addon: str,
        pod_identity_associations: list[aws.eks.AddonPodIdentityAssociationArgs] | None = None,
        depends_on: list[pulumi.Resource] | None = None,
        configuration: dict[str, object] | None = None,
    ) -> aws.eks.Addon:
        return aws.eks.Addon(
            f"{self._name}-{addon}",
            cluster_name=self._cluster.name,
            addon_name=addon,
            addon_version=self._versions[addon],
            pod_identity_associations=pod_identity_associations,
            configuration_values=json.dumps(configuration) if configuration else None,
            # The add-on owns its objects: settings changed by hand are put back.
            resolve_conflicts_on_create="OVERWRITE",
            resolve_conflicts_on_update="OVERWRITE",
            opts=pulumi.ResourceOptions(parent=self, depends_on=depends_on or []),
        )
