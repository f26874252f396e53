"""metrics-server: the resource metrics API (metrics.k8s.io) the serving autoscalers read.

A HorizontalPodAutoscaler on cpu utilization reads pod usage from that API, which only
metrics-server serves; without it the autoscaler reports `FailedGetResourceMetric` and never
scales.  EKS does not run one: AWS stacks install the `metrics-server` community add-on
(infra/addons.py).  On an existing cluster, `cluster.metricsServer.source` says whether the
cluster has one already or the program installs the pinned kubernetes-sigs chart, here.
"""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from infra import versions
from infra.helm import pinned_release
from infra.scheduling import Placement

# The EKS add-on's name (EKS user guide, "Community add-ons", Kubernetes Metrics Server).
ADDON = "metrics-server"
# Where both the add-on and the chart put it.  The program labels no Kubernetes namespace, so
# its Pod Security level is the cluster's; the chart's pod meets `restricted` as it is
# (kubernetes-sigs/metrics-server@metrics-server-helm-chart-3.13.1:
# charts/metrics-server/values.yaml securityContext), and no value set here changes that.
NAMESPACE = "kube-system"
RELEASE = "metrics-server"
# Skips verifying the kubelets' serving certificates, which kind's kubelets sign themselves
# (@metrics-server-helm-chart-3.13.1: README.md "Requirements"; the project's own kind run passes
# it, test/chart-values.yaml).  Only when the stack asks for it.
KUBELET_INSECURE_TLS = "--kubelet-insecure-tls"


def chart_values(*, kubelet_insecure_tls: bool, placement: Placement) -> dict[str, Any]:
    """Helm values: the chart's defaults (one replica, 100m/200Mi requests, restricted-ready
    security context, system-cluster-critical), plus the kubelet flag and placement if any.

    `args` is appended after the chart's `defaultArgs`
    (@metrics-server-helm-chart-3.13.1:charts/metrics-server/templates/deployment.yaml).
    """
    values: dict[str, Any] = {}
    if kubelet_insecure_tls:
        values["args"] = [KUBELET_INSECURE_TLS]
    values.update(placement.pod_fields())
    return values


class MetricsServer(pulumi.ComponentResource):
    """The pinned metrics-server chart, for an existing cluster that runs none."""

    release: k8s.helm.v3.Release

    def __init__(
        self,
        name: str,
        *,
        kubelet_insecure_tls: bool,
        placement: Placement,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("ml-platform:autoscaling:MetricsServer", name, None, opts)
        self.release = pinned_release(
            name,
            versions.METRICS_SERVER_CHART,
            release_name=RELEASE,
            namespace=NAMESPACE,
            values=chart_values(kubelet_insecure_tls=kubelet_insecure_tls, placement=placement),
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.register_outputs({"release": self.release.name})
