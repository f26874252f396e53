"""Helm releases of pinned charts, installed the same way everywhere."""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from infra.versions import HelmChart


def pinned_release(
    resource_name: str,
    chart: HelmChart,
    *,
    release_name: str,
    namespace: pulumi.Input[str],
    values: dict[str, Any],
    opts: pulumi.ResourceOptions,
    timeout: int | None = None,
) -> k8s.helm.v3.Release:
    """One release of `chart` at its pinned version.

    Atomic, and cleaned up on failure: a release that does not become ready is rolled back instead
    of being left half-installed for the next `pulumi up` to trip over.  Charts' CRDs are installed.
    """
    return k8s.helm.v3.Release(
        resource_name,
        name=release_name,
        chart=chart.chart,
        version=chart.version,
        repository_opts={"repo": chart.repository},
        namespace=namespace,
        values=values,
        atomic=True,
        cleanup_on_fail=True,
        skip_crds=False,
        timeout=timeout,
        opts=opts,
    )
