"""The AWS Load Balancer Controller, for served models behind an internal NLB.

A model with `exposure: internalLoadBalancer` gets a `LoadBalancer` Service annotated for this
controller (`aws-load-balancer-type: external`, IP targets, internal scheme).  EKS does not run
the controller itself, so the program installs it, in `kube-system` on the system pool, with an
EKS Pod Identity role holding the controller's reference IAM policy.  It finds the subnets for an
internal NLB by their `kubernetes.io/role/internal-elb` tag (infra/network.py sets it).
"""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from infra import versions
from infra.helm import pinned_release
from infra.iam import policy_document
from infra.scheduling import Placement
from infra.settings import Settings
from infra.workload_identity import pod_identity_role

NAMESPACE = "kube-system"
SERVICE_ACCOUNT = "aws-load-balancer-controller"
RELEASE = "aws-load-balancer-controller"

# The controller tags every load balancer, target group and security group it creates with this
# key; the policy lets it delete them, or change their attributes, only when they carry it.
CLUSTER_TAG = "elbv2.k8s.aws/cluster"

# The controller's reference IAM policy for v3.5.0 (docs/install/iam_policy.json at tag v3.5.0 of
# kubernetes-sigs/aws-load-balancer-controller), statement for statement, as data.  Transcribed
# from the v3.5 documentation's copy for the aws-eusc partition (gh-pages commit
# ce44beeaee2dd0b54b04220a178da1c46aea3eea, v3.5/install/iam_policy_eusc.json) with the partition
# set to `aws`, as in the rest of this program.  Check it again when the chart pin moves.
# Reads, creates and the listener, rule and security-group-rule changes are on Resource "*", as
# upstream has them (the resource does not exist yet, or the action takes no narrower ARN);
# deleting a load balancer, target group or security group, or changing its attributes, needs
# the cluster tag.
_SECURITY_GROUPS = "arn:aws:ec2:*:*:security-group/*"
_TAGGABLE_LOAD_BALANCING = [
    "arn:aws:elasticloadbalancing:*:*:targetgroup/*/*",
    "arn:aws:elasticloadbalancing:*:*:loadbalancer/net/*/*",
    "arn:aws:elasticloadbalancing:*:*:loadbalancer/app/*/*",
]
CONTROLLER_STATEMENTS: list[dict[str, Any]] = [
    {
        "Effect": "Allow",
        "Action": ["iam:CreateServiceLinkedRole"],
        "Resource": "*",
        "Condition": {"StringEquals": {"iam:AWSServiceName": "elasticloadbalancing.amazonaws.com"}},
    },
    {
        "Effect": "Allow",
        "Action": [
            "ec2:DescribeAccountAttributes",
            "ec2:DescribeAddresses",
            "ec2:DescribeAvailabilityZones",
            "ec2:DescribeInternetGateways",
            "ec2:DescribeVpcs",
            "ec2:DescribeVpcPeeringConnections",
            "ec2:DescribeSubnets",
            "ec2:DescribeSecurityGroups",
            "ec2:DescribeInstances",
            "ec2:DescribeNetworkInterfaces",
            "ec2:DescribeTags",
            "ec2:GetCoipPoolUsage",
            "ec2:DescribeCoipPools",
            "ec2:GetSecurityGroupsForVpc",
            "ec2:DescribeIpamPools",
            "ec2:DescribeRouteTables",
            "elasticloadbalancing:DescribeLoadBalancers",
            "elasticloadbalancing:DescribeLoadBalancerAttributes",
            "elasticloadbalancing:DescribeListeners",
            "elasticloadbalancing:DescribeListenerCertificates",
            "elasticloadbalancing:DescribeSSLPolicies",
            "elasticloadbalancing:DescribeRules",
            "elasticloadbalancing:DescribeTargetGroups",
            "elasticloadbalancing:DescribeTargetGroupAttributes",
            "elasticloadbalancing:DescribeTargetHealth",
            "elasticloadbalancing:DescribeTags",
            "elasticloadbalancing:DescribeTrustStores",
            "elasticloadbalancing:DescribeListenerAttributes",
            "elasticloadbalancing:DescribeCapacityReservation",
        ],
        "Resource": "*",
    },
    {
        "Effect": "Allow",
        "Action": [
            "cognito-idp:DescribeUserPoolClient",
            "acm:ListCertificates",
            "acm:DescribeCertificate",
            "iam:ListServerCertificates",
            "iam:GetServerCertificate",
            "waf-regional:GetWebACL",
            "waf-regional:GetWebACLForResource",
            "waf-regional:AssociateWebACL",
            "waf-regional:DisassociateWebACL",
            "wafv2:GetWebACL",
            "wafv2:GetWebACLForResource",
            "wafv2:AssociateWebACL",
            "wafv2:DisassociateWebACL",
            "shield:GetSubscriptionState",
            "shield:DescribeProtection",
            "shield:CreateProtection",
            "shield:DeleteProtection",
        ],
        "Resource": "*",
    },
    {
        "Effect": "Allow",
        "Action": ["ec2:AuthorizeSecurityGroupIngress", "ec2:RevokeSecurityGroupIngress"],
        "Resource": "*",
    },
    {"Effect": "Allow", "Action": ["ec2:CreateSecurityGroup"], "Resource": "*"},
    {
        "Effect": "Allow",
        "Action": ["ec2:CreateTags"],
        "Resource": _SECURITY_GROUPS,
        "Condition": {
            "StringEquals": {"ec2:CreateAction": "CreateSecurityGroup"},
            "Null": {f"aws:RequestTag/{CLUSTER_TAG}": "false"},
        },
    },
    {
        "Effect": "Allow",
        "Action": ["ec2:CreateTags", "ec2:DeleteTags"],
        "Resource": _SECURITY_GROUPS,
        "Condition": {
            "Null": {
                f"aws:RequestTag/{CLUSTER_TAG}": "true",
                f"aws:ResourceTag/{CLUSTER_TAG}": "false",
            }
        },
    },
    {
        "Effect": "Allow",
        "Action": [
            "ec2:AuthorizeSecurityGroupIngress",
            "ec2:RevokeSecurityGroupIngress",
            "ec2:DeleteSecurityGroup",
        ],
        "Resource": "*",
        "Condition": {"Null": {f"aws:ResourceTag/{CLUSTER_TAG}": "false"}},
    },
    {
        "Effect": "Allow",
        "Action": [
            "elasticloadbalancing:CreateLoadBalancer",
            "elasticloadbalancing:CreateTargetGroup",
        ],
        "Resource": "*",
        "Condition": {"Null": {f"aws:RequestTag/{CLUSTER_TAG}": "false"}},
    },
    {
        "Effect": "Allow",
        "Action": [
            "elasticloadbalancing:CreateListener",
            "elasticloadbalancing:DeleteListener",
            "elasticloadbalancing:CreateRule",
            "elasticloadbalancing:DeleteRule",
        ],
        "Resource": "*",
    },
    {
        "Effect": "Allow",
        "Action": ["elasticloadbalancing:AddTags", "elasticloadbalancing:RemoveTags"],
        "Resource": _TAGGABLE_LOAD_BALANCING,
        "Condition": {
            "Null": {
                f"aws:RequestTag/{CLUSTER_TAG}": "true",
                f"aws:ResourceTag/{CLUSTER_TAG}": "false",
            }
        },
    },
    {
        "Effect": "Allow",
        "Action": ["elasticloadbalancing:AddTags", "elasticloadbalancing:RemoveTags"],
        "Resource": [
            "arn:aws:elasticloadbalancing:*:*:listener/net/*/*/*",
            "arn:aws:elasticloadbalancing:*:*:listener/app/*/*/*",
            "arn:aws:elasticloadbalancing:*:*:listener-rule/net/*/*/*",
            "arn:aws:elasticloadbalancing:*:*:listener-rule/app/*/*/*",
        ],
    },
    {
        "Effect": "Allow",
        "Action": [
            "elasticloadbalancing:ModifyLoadBalancerAttributes",
            "elasticloadbalancing:SetIpAddressType",
            "elasticloadbalancing:SetSecurityGroups",
            "elasticloadbalancing:SetSubnets",
            "elasticloadbalancing:DeleteLoadBalancer",
            "elasticloadbalancing:ModifyTargetGroup",
            "elasticloadbalancing:ModifyTargetGroupAttributes",
            "elasticloadbalancing:DeleteTargetGroup",
            "elasticloadbalancing:ModifyListenerAttributes",
            "elasticloadbalancing:ModifyCapacityReservation",
            "elasticloadbalancing:ModifyIpPools",
        ],
        "Resource": "*",
        "Condition": {"Null": {f"aws:ResourceTag/{CLUSTER_TAG}": "false"}},
    },
    {
        "Effect": "Allow",
        "Action": ["elasticloadbalancing:AddTags"],
        "Resource": _TAGGABLE_LOAD_BALANCING,
        "Condition": {
            "StringEquals": {
                "elasticloadbalancing:CreateAction": ["CreateTargetGroup", "CreateLoadBalancer"]
            },
            "Null": {f"aws:RequestTag/{CLUSTER_TAG}": "false"},
        },
    },
    {
        "Effect": "Allow",
        "Action": [
            "elasticloadbalancing:RegisterTargets",
            "elasticloadbalancing:DeregisterTargets",
        ],
        "Resource": "arn:aws:elasticloadbalancing:*:*:targetgroup/*/*",
    },
    {
        "Effect": "Allow",
        "Action": [
            "elasticloadbalancing:SetWebAcl",
            "elasticloadbalancing:ModifyListener",
            "elasticloadbalancing:AddListenerCertificates",
            "elasticloadbalancing:RemoveListenerCertificates",
            "elasticloadbalancing:ModifyRule",
            "elasticloadbalancing:SetRulePriorities",
        ],
        "Resource": "*",
    },
]


def controller_policy() -> dict[str, Any]:
    return policy_document(CONTROLLER_STATEMENTS)


def needs_controller(settings: Settings) -> bool:
    """Whether any served model asks for an internal NLB.

    Only then is the controller installed: without such a model it would sit idle, holding two
    pods on the system pool and an IAM role that may create load balancers.
    """
    return any(model.exposure == "internalLoadBalancer" for model in settings.serving.models)


def controller_values(
    *,
    cluster_name: str,
    region: str,
    vpc_id: pulumi.Input[str],
    placement: Placement,
    service_monitor: bool,
) -> dict[str, Any]:
    """Helm values: this cluster, region and VPC, two replicas on the system pool."""
    values: dict[str, Any] = {
        "clusterName": cluster_name,
        # Nodes require IMDSv2 with a hop limit of 1, so the controller cannot read its region
        # and VPC from instance metadata: both are given.
        "region": region,
        "vpcId": vpc_id,
        "serviceAccount": {"create": True, "name": SERVICE_ACCOUNT},
        # Leader election: one replica reconciles, the other stands by; both serve the webhooks.
        "replicaCount": 2,
        "podDisruptionBudget": {"maxUnavailable": 1},
        "priorityClassName": "system-cluster-critical",
        "resources": {
            "requests": {"cpu": "100m", "memory": "256Mi"},
            "limits": {"memory": "512Mi"},
        },
        # The chart's Service webhook would otherwise reject every Service created in the cluster
        # while no controller pod answers.  Our internal Services name this controller through
        # their `aws-load-balancer-type: external` annotation, which the in-tree controller
        # leaves alone, so skipping the webhook never hands them to another controller.
        "serviceMutatorWebhookConfig": {"failurePolicy": "Ignore"},
        "serviceMonitor": {"enabled": service_monitor},
    }
    values.update(placement.pod_fields())
    return values


class LoadBalancerController(pulumi.ComponentResource):
    """The controller's Pod Identity role and association, and its Helm release."""

    release: k8s.helm.v3.Release

    def __init__(
        self,
        name: str,
        *,
        cluster: aws.eks.Cluster,
        cluster_name: str,
        region: str,
        vpc_id: pulumi.Input[str],
        placement: Placement,
        monitoring: pulumi.Resource | None,
        after: list[pulumi.Resource],
        kubernetes: k8s.Provider,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("ml-platform:network:LoadBalancerController", name, None, opts)
        _, association = pod_identity_role(
            name,
            namespace=NAMESPACE,
            service_account=SERVICE_ACCOUNT,
            policy=controller_policy(),
            cluster_name=cluster.name,
            description=f"AWS Load Balancer Controller of {cluster_name}",
            parent=self,
        )
        # Credentials reach only pods created after the association; the ServiceMonitor needs
        # the monitoring stack's CRD.
        needs: list[pulumi.Resource] = [association, *after]
        if monitoring is not None:
            needs.append(monitoring)
        self.release = pinned_release(
            name,
            versions.AWS_LOAD_BALANCER_CONTROLLER_CHART,
            release_name=RELEASE,
            namespace=NAMESPACE,
            values=controller_values(
                cluster_name=cluster_name,
                region=region,
                vpc_id=vpc_id,
                placement=placement,
                service_monitor=monitoring is not None,
            ),
            opts=pulumi.ResourceOptions(parent=self, provider=kubernetes, depends_on=needs),
        )
        self.register_outputs({"release": self.release.name})
