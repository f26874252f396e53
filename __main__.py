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
