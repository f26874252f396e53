"""The one table of pinned versions, each with the source it was checked against.

Charts, images, manifests and add-ons that later components install add their pins here, so an
upgrade is a reviewed change to this file and nowhere else.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass


@dataclass(frozen=True)
class KubernetesRelease:
    """One Kubernetes minor version and how long the platform may run it."""

    minor: str
    # Amazon EKS: end of standard support (docs.aws.amazon.com/eks/latest/userguide/kubernetes-versions.html).
    # None: not offered by EKS, so only allowed for existing clusters.
    eks_standard_support_ends: dt.date | None
    eks_extended_support_ends: dt.date | None


# Every minor here has a strict OpenAPI schema in kubernetes-validate 1.37.0, which the tests use to
# validate the rendered manifests.  Dates: EKS release calendar, checked 2026-11-28.
KUBERNETES_RELEASES: tuple[KubernetesRelease, ...] = (
    KubernetesRelease("1.30", None, None),
    KubernetesRelease("1.31", None, None),
    KubernetesRelease("1.32", dt.date(2026, 3, 23), dt.date(2027, 3, 23)),
    KubernetesRelease("1.33", dt.date(2026, 7, 29), dt.date(2027, 7, 29)),
    KubernetesRelease("1.34", dt.date(2026, 12, 2), dt.date(2027, 12, 2)),
    KubernetesRelease("1.35", dt.date(2027, 3, 27), dt.date(2028, 3, 27)),
)

# New EKS clusters default to the newest minor in EKS standard support.
DEFAULT_KUBERNETES_VERSION = "1.35"


def kubernetes_release(minor: str) -> KubernetesRelease | None:
    """The release entry for a minor version such as "1.35", or None if we do not support it."""
    return next((r for r in KUBERNETES_RELEASES if r.minor == minor), None)


def eks_versions() -> list[str]:
    """Minor versions that EKS offers (standard or extended support) and that we support."""
    return [r.minor for r in KUBERNETES_RELEASES if r.eks_extended_support_ends is not None]


def existing_cluster_versions() -> list[str]:
    """Minor versions an existing cluster may run."""
    return [r.minor for r in KUBERNETES_RELEASES]


def pod_security_version(kubernetes_minor: str) -> str:
    """The Pod Security Standards version to pin on namespaces: the cluster's own minor.

    Pinning (rather than `latest`) keeps a control-plane upgrade from tightening the policy under
    running workloads; the pin moves when the stack's Kubernetes version moves.
    """
    return f"v{kubernetes_minor}"
