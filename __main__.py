"""ml-platform: a machine-learning platform on Kubernetes, one Pulumi stack per environment."""

import pulumi

from infra.platform import build_platform
from infra.settings import load_settings

# Parse and validate the whole stack configuration before any resource is registered.
settings = load_settings()
platform = build_platform(settings)

pulumi.export("clusterName", settings.cluster.name)
pulumi.export("kubernetesVersion", settings.cluster.kubernetes_version)
pulumi.export("namespaces", sorted(platform.namespaces.namespaces))
if platform.monitoring is not None:
    pulumi.export("grafanaAdminPassword", platform.monitoring.grafana_password)
if platform.aws is not None:
    eks = platform.aws.cluster
    pulumi.export("clusterEndpoint", eks.cluster.endpoint)
    pulumi.export("kubeconfig", eks.kubeconfig)
    pulumi.export("vpcId", platform.aws.network.vpc_id)
    pulumi.export("privateSubnetIds", platform.aws.network.private_subnet_ids)
    pulumi.export("publicSubnetIds", platform.aws.network.public_subnet_ids)
    pulumi.export(
        "nodePools",
        {pool: group.node_group.node_group_name for pool, group in platform.aws.node_pools.items()},
    )
    if platform.aws.artifacts is not None:
        pulumi.export("artifactBucket", platform.aws.artifacts.bucket.bucket)
    if platform.aws.training_image is not None:
        pulumi.export("trainingImage", platform.aws.training_image)
