"""cluster-autoscaler for the managed node groups, with a Pod Identity role scoped to this cluster.

Why cluster-autoscaler rather than Karpenter: every pool is an EKS managed node group whose
labels, taints, AMI and update policy are defined once in the stack settings.  cluster-autoscaler
scales those groups (including from zero, through the node-template tags the node pools set);
Karpenter would replace them with a second definition of each pool (NodePool + EC2NodeClass).
"""

from __future__ import annotations

import json

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from infra import versions
from infra.helm import pinned_release
from infra.iam import POD_IDENTITY_PRINCIPAL, ServiceRole, policy_document
from infra.scheduling import system_pool_labels

NAMESPACE = "kube-system"
SERVICE_ACCOUNT = "cluster-autoscaler"


def autoscaler_policy(cluster_name: str, region: str, account_id: str) -> str:
    """Read what it needs everywhere; resize and terminate only this cluster's groups."""
    return json.dumps(
        policy_document(
            [
                {
                    "Sid": "Discover",
                    "Effect": "Allow",
                    "Action": [
                        "autoscaling:DescribeAutoScalingGroups",
                        "autoscaling:DescribeAutoScalingInstances",
                        "autoscaling:DescribeLaunchConfigurations",
                        "autoscaling:DescribeScalingActivities",
                        "autoscaling:DescribeTags",
                        "ec2:DescribeImages",
                        "ec2:DescribeInstanceTypes",
                        "ec2:DescribeLaunchTemplateVersions",
                        "ec2:GetInstanceTypesFromInstanceRequirements",
                    ],
                    "Resource": "*",
                },
                {
                    "Sid": "ReadNodeGroupTemplates",
                    "Effect": "Allow",
                    "Action": ["eks:DescribeNodegroup"],
                    "Resource": f"arn:aws:eks:{region}:{account_id}:nodegroup/{cluster_name}/*",
                },
                {
                    "Sid": "ScaleOwnGroups",
                    "Effect": "Allow",
                    "Action": [
                        "autoscaling:SetDesiredCapacity",
                        "autoscaling:TerminateInstanceInAutoScalingGroup",
                    ],
                    "Resource": "*",
                    # EKS tags every managed node group's Auto Scaling group with this.
                    "Condition": {
                        "StringEquals": {
                            f"aws:ResourceTag/k8s.io/cluster-autoscaler/{cluster_name}": "owned"
                        }
                    },
                },
            ]
        )
    )


def autoscaler_values(cluster_name: str, region: str, kubernetes_minor: str) -> dict[str, object]:
    """Helm values: auto-discovery of this cluster's groups, hardened pod, on the system pool."""
    return {
        "cloudProvider": "aws",
        "awsRegion": region,
        "autoDiscovery": {"clusterName": cluster_name},
        "fullnameOverride": SERVICE_ACCOUNT,
        "rbac": {"serviceAccount": {"create": True, "name": SERVICE_ACCOUNT}},
        "image": {
            "repository": versions.CLUSTER_AUTOSCALER_IMAGE,
            "tag": versions.CLUSTER_AUTOSCALER_TAGS[kubernetes_minor],
        },
        "extraArgs": {
            # Pools of the same shape in several zones grow together.
            "balance-similar-node-groups": True,
            "expander": "least-waste",
            "skip-nodes-with-system-pods": False,
            "scale-down-unneeded-time": "10m",
            "scale-down-delay-after-add": "10m",
        },
        "nodeSelector": system_pool_labels(),
        "priorityClassName": "system-cluster-critical",
        "podDisruptionBudget": {"maxUnavailable": 1},
        "resources": {
            "requests": {"cpu": "100m", "memory": "300Mi"},
            "limits": {"memory": "600Mi"},
        },
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 65534,
            "runAsGroup": 65534,
            "fsGroup": 65534,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containerSecurityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
    }


class ClusterAutoscaler(pulumi.ComponentResource):
    release: k8s.helm.v3.Release

    def __init__(
        self,
        name: str,
        *,
        cluster: aws.eks.Cluster,
        cluster_name: str,
        region: str,
        kubernetes_minor: str,
        kubernetes: k8s.Provider,
        depends_on: list[pulumi.Resource],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("ml-platform:nodes:ClusterAutoscaler", name, None, opts)
        account_id = aws.get_caller_identity_output(
            opts=pulumi.InvokeOutputOptions(parent=self)
        ).account_id
        role = ServiceRole(
            name,
            service=POD_IDENTITY_PRINCIPAL,
            managed_policies=[],
            inline_policy=account_id.apply(
                lambda account: autoscaler_policy(cluster_name, region, account)
            ),
            description=f"cluster-autoscaler of {cluster_name}",
            opts=pulumi.ResourceOptions(parent=self),
        )
        association = aws.eks.PodIdentityAssociation(
            name,
            cluster_name=cluster.name,
            namespace=NAMESPACE,
            service_account=SERVICE_ACCOUNT,
            role_arn=role.role.arn,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.release = pinned_release(
            name,
            versions.CLUSTER_AUTOSCALER_CHART,
            release_name="cluster-autoscaler",
            namespace=NAMESPACE,
            values=autoscaler_values(cluster_name, region, kubernetes_minor),
            opts=pulumi.ResourceOptions(
                parent=self, provider=kubernetes, depends_on=[association, *depends_on]
            ),
        )
        self.register_outputs({"release": self.release.name})
