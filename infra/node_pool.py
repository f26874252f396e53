"""EKS managed node groups for the system pool and each GPU pool."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from infra import gpu_sharing
from infra.scheduling import (
    GPU_POOL_TAINTS,
    GPU_RESOURCE,
    Taint,
    gpu_pool_labels,
    system_pool_labels,
)
from infra.settings import GpuPoolSettings, SystemPoolSettings

AUTOSCALER_TEMPLATE = "k8s.io/cluster-autoscaler/node-template"


@dataclass(frozen=True)
class PoolSpec:
    """What a node pool is, whatever its kind: the settings plus its scheduling contract."""

    name: str
    settings: SystemPoolSettings | GpuPoolSettings
    labels: dict[str, str]
    taints: list[Taint]
    # The GPU extended resources one node offers, by name (none for the system pool).
    gpu_resources: dict[str, int]

    @staticmethod
    def system(settings: SystemPoolSettings) -> PoolSpec:
        return PoolSpec("system", settings, system_pool_labels(), [], {})

    @staticmethod
    def gpu(settings: GpuPoolSettings) -> PoolSpec:
        return PoolSpec(
            settings.name,
            settings,
            gpu_pool_labels(settings),
            list(GPU_POOL_TAINTS),
            template_gpu_resources(settings),
        )


def template_gpu_resources(pool: GpuPoolSettings) -> dict[str, int]:
    """What the autoscaler must be told a node of an empty pool offers in GPU resources.

    The resource and count the pool's nodes advertise, as the schedulability check and quotas
    count them (infra/gpu_sharing.py).  The autoscaler's template also starts with
    nvidia.com/gpu = the instance type's GPU count (kubernetes/autoscaler@cluster-autoscaler-1.35.2:
    cluster-autoscaler/cloudprovider/aws/aws_manager.go:285) and lets `resources/<name>` tags
    override it (:290-294), so a pool whose nodes offer shared or MIG resources instead says
    nvidia.com/gpu = 0.
    """
    resource = gpu_sharing.resource_name(pool)
    resources = {resource: gpu_sharing.units_per_node(pool)}
    if resource != GPU_RESOURCE:
        resources[GPU_RESOURCE] = 0
    return resources


def autoscaler_template_tags(spec: PoolSpec) -> dict[str, str]:
    """Tags that tell cluster-autoscaler what a node of an empty pool would look like.

    With a pool at zero nodes the autoscaler cannot inspect one, so it reads the labels, taints
    and extended resources a new node would have from these tags on the Auto Scaling group
    (kubernetes/autoscaler@cluster-autoscaler-1.35.2:cluster-autoscaler/cloudprovider/aws/
    README.md, `node-template/label/`, `taint/` and `resources/` tags).
    """
    tags = {f"{AUTOSCALER_TEMPLATE}/label/{key}": value for key, value in spec.labels.items()}
    for taint in spec.taints:
        tags[f"{AUTOSCALER_TEMPLATE}/taint/{taint.key}"] = f"{taint.value}:{taint.effect}"
    for resource, count in spec.gpu_resources.items():
        tags[f"{AUTOSCALER_TEMPLATE}/resources/{resource}"] = str(count)
    return tags


def _root_device(ami_type: str) -> str:
    # Bottlerocket keeps its OS on /dev/xvda and containers on /dev/xvdb; AL2023 uses one volume.
    return "/dev/xvdb" if ami_type.startswith("BOTTLEROCKET") else "/dev/xvda"


class NodePool(pulumi.ComponentResource):
    """One managed node group with a hardened launch template and autoscaler tags.

    `after`: what must exist before the first node boots (networking add-ons, the node role);
    a component's own `depends_on` would not hold its children back, so it is passed on here.
    """

    node_group: aws.eks.NodeGroup

    def __init__(
        self,
        name: str,
        spec: PoolSpec,
        *,
        cluster_name: pulumi.Input[str],
        node_role_arn: pulumi.Input[str],
        subnet_ids: list[pulumi.Output[str]],
        after: list[pulumi.Resource],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("ml-platform:nodes:NodePool", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        pool = spec.settings
        template_tags = autoscaler_template_tags(spec)

        launch_template = aws.ec2.LaunchTemplate(
            f"{name}-lt",
            description=f"Nodes of pool {spec.name}",
            metadata_options={
                "http_endpoint": "enabled",
                "http_tokens": "required",  # IMDSv2 only
                # One hop: pods cannot reach the node's instance profile; they get AWS
                # credentials through EKS Pod Identity instead.
                "http_put_response_hop_limit": 1,
            },
            block_device_mappings=[
                {
                    "device_name": _root_device(pool.ami_type),
                    "ebs": {
                        "volume_size": pool.disk_size_gib,
                        "volume_type": "gp3",
                        "encrypted": "true",
                        "delete_on_termination": "true",
                    },
                }
            ],
            tag_specifications=[
                {"resource_type": "instance", "tags": {"Name": f"{spec.name}-node"}},
                {"resource_type": "volume", "tags": {"Name": f"{spec.name}-node"}},
            ],
            update_default_version=True,
            opts=child,
        )
        self.node_group = aws.eks.NodeGroup(
            f"{name}-ng",
            cluster_name=cluster_name,
            node_group_name_prefix=f"{spec.name}-",
            node_role_arn=node_role_arn,
            subnet_ids=subnet_ids,
            ami_type=pool.ami_type,
            capacity_type=pool.capacity_type,
            instance_types=list(pool.instance_types),
            scaling_config=aws.eks.NodeGroupScalingConfigArgs(
                min_size=pool.min_size,
                max_size=pool.max_size,
                desired_size=pool.initial_size,
            ),
            update_config=aws.eks.NodeGroupUpdateConfigArgs(max_unavailable_percentage=33),
            labels=spec.labels,
            taints=[aws.eks.NodeGroupTaintArgs(**taint.eks()) for taint in spec.taints],
            launch_template=aws.eks.NodeGroupLaunchTemplateArgs(
                id=launch_template.id,
                version=launch_template.latest_version.apply(str),
            ),
            tags=template_tags,
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=after,
                # The autoscaler owns the node count once the pool exists.
                ignore_changes=["scalingConfig.desiredSize"],
            ),
        )
        # Node group tags do not reach its Auto Scaling group, where the autoscaler reads them.
        asg_name = self.node_group.resources.apply(
            lambda resources: resources[0].autoscaling_groups[0].name  # type: ignore[index]
        )
        for key, value in sorted(template_tags.items()):
            suffix = key.removeprefix(f"{AUTOSCALER_TEMPLATE}/").replace("/", "-")
            aws.autoscaling.Tag(
                f"{name}-asg-{suffix}",
                autoscaling_group_name=asg_name,
                tag={"key": key, "value": value, "propagate_at_launch": False},
                opts=child,
            )
        self.register_outputs({"node_group_name": self.node_group.node_group_name})
