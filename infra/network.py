"""The VPC the cluster runs in: public and private subnets per zone, NAT, routes and EKS tags.

A VPC the program creates also gets flow logs of all its traffic (to an encrypted CloudWatch Logs
group, written by a role only the flow-logs service of this account may assume) and a default
security group without any rule, so nothing that lands in it by default can talk to anything.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from infra.iam import log_group_statement, policy_document
from infra.log_encryption import encrypted_log_group
from infra.settings import AwsSettings

FLOW_LOGS_PRINCIPAL = "vpc-flow-logs.amazonaws.com"


@dataclass(frozen=True)
class SubnetPlan:
    """CIDRs for one zone: a large private subnet (pods use VPC addresses), a small public one."""

    zone: str
    private_cidr: str
    public_cidr: str


def subnet_plan(vpc_cidr: str, zones: list[str]) -> list[SubnetPlan]:
    """Split the VPC into eighths: one eighth of private space per zone, the last eighth public.

    A /16 gives /19 private subnets (8,190 addresses each, room for thousands of pods) and /22
    public subnets (load balancers and NAT gateways only).
    """
    eighths = list(ipaddress.IPv4Network(vpc_cidr).subnets(prefixlen_diff=3))
    public = list(eighths[-1].subnets(prefixlen_diff=3))
    return [
        SubnetPlan(zone, str(eighths[index]), str(public[index]))
        for index, zone in enumerate(zones)
    ]


def flow_logs_group_name(cluster_name: str) -> str:
    return f"/aws/vpc/{cluster_name}/flow-logs"


# What the flow logs service does with the role (VPC user guide, "IAM role for publishing flow
# logs to CloudWatch Logs", https://docs.aws.amazon.com/vpc/latest/userguide/flow-logs-iam-role.html):
# the policy "must include at least" logs:CreateLogGroup, CreateLogStream, PutLogEvents,
# DescribeLogGroups and DescribeLogStreams.  All of them, as the guide gives no smaller set for a
# group that already exists, but on this group only: the service can create no other group, and
# should it re-create this one after someone deleted it, the nightly drift check reports it.
FLOW_LOGS_GROUP_ACTIONS = [
    "logs:CreateLogGroup",
    "logs:CreateLogStream",
    "logs:DescribeLogStreams",
    "logs:PutLogEvents",
]
# DescribeLogGroups has no resource type in the Service Authorization Reference (CloudWatch Logs),
# so it can only be granted on "*"; it lists group names and settings, nothing in them.
FLOW_LOGS_ACCOUNT_ACTIONS = ["logs:DescribeLogGroups"]


def flow_logs_delivery_policy(log_group_arn: str) -> str:
    """Deliver to the flow-logs group (its streams) and find it; nothing else."""
    return json.dumps(
        policy_document(
            [
                log_group_statement(log_group_arn, "WriteFlowLogs", FLOW_LOGS_GROUP_ACTIONS),
                {
                    "Sid": "FindFlowLogsGroup",
                    "Effect": "Allow",
                    "Action": FLOW_LOGS_ACCOUNT_ACTIONS,
                    "Resource": "*",
                },
            ]
        )
    )


def flow_logs_trust_policy(*, partition: str, region: str, account_id: str) -> str:
    """Only the flow-logs service, for flow logs of this account in this region (no confused
    deputy: another account's flow log cannot make the service assume this role)."""
    return json.dumps(
        policy_document(
            [
                {
                    "Effect": "Allow",
                    "Principal": {"Service": FLOW_LOGS_PRINCIPAL},
                    "Action": ["sts:AssumeRole"],
                    "Condition": {
                        "StringEquals": {"aws:SourceAccount": account_id},
                        # The flow log's id is not known before the role exists.
                        "ArnLike": {
                            "aws:SourceArn": (
                                f"arn:{partition}:ec2:{region}:{account_id}:vpc-flow-log/*"
                            )
                        },
                    },
                }
            ]
        )
    )


class Network(pulumi.ComponentResource):
    """Private subnets for nodes and internal load balancers, public ones for NAT and public LBs.

    Subnets are named by index, not by zone name, so their URNs do not depend on zone names.
    """

    vpc_id: pulumi.Output[str]
    private_subnet_ids: list[pulumi.Output[str]]
    public_subnet_ids: list[pulumi.Output[str]]

    def __init__(
        self,
        name: str,
        aws_settings: AwsSettings,
        cluster_name: str,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("ml-platform:network:Network", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        existing = aws_settings.existing_vpc
        if existing is not None:
            self.vpc_id = pulumi.Output.from_input(existing.vpc_id)
            self.private_subnet_ids = [
                pulumi.Output.from_input(s) for s in existing.private_subnet_ids
            ]
            self.public_subnet_ids = [
                pulumi.Output.from_input(s) for s in existing.public_subnet_ids
            ]
            self.register_outputs({"vpc_id": self.vpc_id})
            return

        # Load balancer controllers and autoscalers find subnets through these tags.
        cluster_tag = {f"kubernetes.io/cluster/{cluster_name}": "shared"}
        vpc = aws.ec2.Vpc(
            f"{name}-vpc",
            cidr_block=aws_settings.vpc_cidr,
            enable_dns_hostnames=True,
            enable_dns_support=True,
            tags={"Name": f"{cluster_name}-vpc"},
            opts=child,
        )
        gateway = aws.ec2.InternetGateway(
            f"{name}-igw", vpc_id=vpc.id, tags={"Name": f"{cluster_name}-igw"}, opts=child
        )
        public_routes = aws.ec2.RouteTable(
            f"{name}-public",
            vpc_id=vpc.id,
            routes=[{"cidr_block": "0.0.0.0/0", "gateway_id": gateway.id}],
            tags={"Name": f"{cluster_name}-public"},
            opts=child,
        )

        plan = subnet_plan(aws_settings.vpc_cidr, aws_settings.availability_zones)
        public_subnets: list[aws.ec2.Subnet] = []
        private_subnets: list[aws.ec2.Subnet] = []
        for index, zone in enumerate(plan):
            public_subnet = aws.ec2.Subnet(
                f"{name}-public-{index}",
                vpc_id=vpc.id,
                cidr_block=zone.public_cidr,
                availability_zone=zone.zone,
                map_public_ip_on_launch=False,
                tags={
                    "Name": f"{cluster_name}-public-{zone.zone}",
                    "kubernetes.io/role/elb": "1",
                    **cluster_tag,
                },
                opts=child,
            )
            aws.ec2.RouteTableAssociation(
                f"{name}-public-{index}",
                subnet_id=public_subnet.id,
                route_table_id=public_routes.id,
                opts=child,
            )
            private_subnet = aws.ec2.Subnet(
                f"{name}-private-{index}",
                vpc_id=vpc.id,
                cidr_block=zone.private_cidr,
                availability_zone=zone.zone,
                tags={
                    "Name": f"{cluster_name}-private-{zone.zone}",
                    "kubernetes.io/role/internal-elb": "1",
                    **cluster_tag,
                },
                opts=child,
            )
            public_subnets.append(public_subnet)
            private_subnets.append(private_subnet)

        nat_count = 1 if aws_settings.nat_gateways == "single" else len(plan)
        nat_gateways = []
        for index in range(nat_count):
            address = aws.ec2.Eip(
                f"{name}-nat-{index}",
                domain="vpc",
                tags={"Name": f"{cluster_name}-nat-{index}"},
                opts=child,
            )
            nat_gateways.append(
                aws.ec2.NatGateway(
                    f"{name}-nat-{index}",
                    allocation_id=address.id,
                    subnet_id=public_subnets[index].id,
                    tags={"Name": f"{cluster_name}-nat-{index}"},
                    opts=pulumi.ResourceOptions(parent=self, depends_on=[gateway]),
                )
            )
        for index, private_subnet in enumerate(private_subnets):
            # One NAT gateway serves every zone; with one per zone, each zone stays local.
            nat = nat_gateways[index % nat_count]
            routes = aws.ec2.RouteTable(
                f"{name}-private-{index}",
                vpc_id=vpc.id,
                routes=[{"cidr_block": "0.0.0.0/0", "nat_gateway_id": nat.id}],
                tags={"Name": f"{cluster_name}-private-{plan[index].zone}"},
                opts=child,
            )
            aws.ec2.RouteTableAssociation(
                f"{name}-private-{index}",
                subnet_id=private_subnet.id,
                route_table_id=routes.id,
                opts=child,
            )

        self._lock_default_security_group(name, vpc, cluster_name)
        self._log_flows(name, vpc, aws_settings, cluster_name)

        self.vpc_id = vpc.id
        self.private_subnet_ids = [s.id for s in private_subnets]
        self.public_subnet_ids = [s.id for s in public_subnets]
        self.register_outputs(
            {
                "vpc_id": self.vpc_id,
                "private_subnet_ids": self.private_subnet_ids,
                "public_subnet_ids": self.public_subnet_ids,
            }
        )

    def _lock_default_security_group(self, name: str, vpc: aws.ec2.Vpc, cluster_name: str) -> None:
        """Manage the VPC's default security group with no rules: it admits and sends nothing.

        Nothing here uses it: the cluster and its managed node groups use the security group
        EKS creates, EFS mount targets their own.  Something launched into the VPC without a
        security group (and so in this one) stays isolated until it is given one.
        """
        aws.ec2.DefaultSecurityGroup(
            f"{name}-default-sg",
            vpc_id=vpc.id,
            tags={"Name": f"{cluster_name}-default-deny-all"},
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _log_flows(
        self, name: str, vpc: aws.ec2.Vpc, aws_settings: AwsSettings, cluster_name: str
    ) -> None:
        """Flow logs of all traffic (accepted and rejected) to an encrypted log group."""
        child = pulumi.ResourceOptions(parent=self)
        group_name = flow_logs_group_name(cluster_name)
        group = encrypted_log_group(
            f"{name}-flow-logs",
            log_group_name=group_name,
            retention_days=aws_settings.log_retention_days,
            region=aws_settings.region,
            alias=f"eks/{cluster_name}-flow-logs",
            description=f"Encryption of the VPC flow logs of EKS cluster {cluster_name}",
            parent=self,
        )
        invoke = pulumi.InvokeOutputOptions(parent=self)
        account_id = aws.get_caller_identity_output(opts=invoke).account_id
        partition = aws.get_partition_output(opts=invoke).partition
        role = aws.iam.Role(
            f"{name}-flow-logs",
            assume_role_policy=pulumi.Output.all(account_id, partition).apply(
                lambda values: flow_logs_trust_policy(
                    partition=values[1], region=aws_settings.region, account_id=values[0]
                )
            ),
            description=f"VPC flow logs of {cluster_name}: writes the flow-logs group",
            opts=child,
        )
        writer = aws.iam.RolePolicy(
            f"{name}-flow-logs",
            role=role.id,
            policy=group.arn.apply(flow_logs_delivery_policy),
            opts=child,
        )
        aws.ec2.FlowLog(
            f"{name}-flow-logs",
            vpc_id=vpc.id,
            traffic_type="ALL",
            log_destination_type="cloud-watch-logs",
            log_destination=group.arn,
            iam_role_arn=role.arn,
            tags={"Name": f"{cluster_name}-vpc"},
            # The role may write before the service first delivers.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[writer]),
        )
