"""Assembles the platform's components from the stack settings, in dependency order."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from infra.existing_cluster import ExistingCluster
from infra.namespaces import PlatformNamespaces, namespace_specs
from infra.settings import Settings


@dataclass(frozen=True)
class Platform:
    """Handles on the components, for stack outputs and for tests."""

    settings: Settings
    kubernetes: k8s.Provider
    namespaces: PlatformNamespaces


def build_platform(settings: Settings) -> Platform:
    """Register every component of the platform for one stack."""
    name = settings.cluster.name
    if settings.cluster.mode == "existing":
        kubernetes = ExistingCluster(name, settings.cluster).provider
    else:
        raise NotImplementedError("the EKS cluster layer is not built yet")

    namespaces = PlatformNamespaces(
        f"{name}-namespaces",
        namespace_specs(settings),
        settings.cluster.kubernetes_version,
        opts=pulumi.ResourceOptions(provider=kubernetes),
    )
    return Platform(settings=settings, kubernetes=kubernetes, namespaces=namespaces)
