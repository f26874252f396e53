"""The VPC the cluster runs in: public and private subnets per zone, NAT, routes and EKS tags."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from infra.settings import AwsSettings


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
