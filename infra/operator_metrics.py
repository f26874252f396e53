"""Scraping the training operator's job counters (created, deleted, successful, failed, restarted).

They are not what TrainingJobFailed reads: the failed counter moves only when a replica pod
reaches phase Failed, never for a job that fails through its backoffLimit or deadline, so the
alert reads the jobs' Failed condition instead (infra/training_job_metrics.py).

The upstream kustomization's own Service is not relied on (its name, labels and ports changed
between releases); a Service of ours selects the operator's pods by the label its Deployment has
carried since v1.7 and names the metrics port, so the ServiceMonitor has a stable target.
"""

from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s

from infra import labels, names
from infra.monitoring import register_scrape_object, service_monitor

OPERATOR_POD_LABELS = {"control-plane": "kubeflow-training-operator"}
METRICS_PORT = 8080
SERVICE = "training-operator-metrics"


class TrainingOperatorMetrics(pulumi.ComponentResource):
    def __init__(
        self,
        name: str,
        *,
        operator: pulumi.Resource,
        monitoring: pulumi.Resource,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("ml-platform:monitoring:TrainingOperatorMetrics", name, None, opts)
        own_labels = {**labels.common("monitoring"), "app.kubernetes.io/name": SERVICE}
        service = k8s.core.v1.Service(
            f"{name}-service",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=SERVICE, namespace=names.KUBEFLOW, labels=own_labels
            ),
            spec=k8s.core.v1.ServiceSpecArgs(
                selector=OPERATOR_POD_LABELS,
                ports=[
                    k8s.core.v1.ServicePortArgs(
                        name="metrics", port=METRICS_PORT, target_port=METRICS_PORT
                    )
                ],
            ),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[operator]),
        )
        monitor = service_monitor(
            SERVICE, names.KUBEFLOW, {"app.kubernetes.io/name": SERVICE}, "metrics", "/metrics"
        )
        register_scrape_object(
            f"{name}-servicemonitor",
            monitor,
            pulumi.ResourceOptions(parent=self, depends_on=[service, monitoring]),
        )
        self.register_outputs({})
