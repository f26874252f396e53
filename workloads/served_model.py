"""The component that registers one served model's objects with typed Kubernetes resources."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from infra.monitoring import register_scrape_object
from infra.settings import Settings
from infra.settings.serving import ServedModelSettings
from workloads.serving import inference_objects, scrape_objects, tfserving_objects

Register = Callable[[str, dict[str, Any], pulumi.ResourceOptions], pulumi.CustomResource]

# Built-in kinds registered as first-class resources, so previews, policies and tests see them.
REGISTER: dict[str, Register] = {
    "ConfigMap": lambda n, o, opts: k8s.core.v1.ConfigMap(
        n, metadata=o["metadata"], data=o["data"], opts=opts
    ),
    "Deployment": lambda n, o, opts: k8s.apps.v1.Deployment(
        n, metadata=o["metadata"], spec=o["spec"], opts=opts
    ),
    "Service": lambda n, o, opts: k8s.core.v1.Service(
        n, metadata=o["metadata"], spec=o["spec"], opts=opts
    ),
    "PodDisruptionBudget": lambda n, o, opts: k8s.policy.v1.PodDisruptionBudget(
        n, metadata=o["metadata"], spec=o["spec"], opts=opts
    ),
    "HorizontalPodAutoscaler": lambda n, o, opts: k8s.autoscaling.v2.HorizontalPodAutoscaler(
        n, metadata=o["metadata"], spec=o["spec"], opts=opts
    ),
}


class ServedModel(pulumi.ComponentResource):
    """TF Serving for one model, and its inference API when enabled."""

    def __init__(
        self,
        name: str,
        *,
        settings: Settings,
        model: ServedModelSettings,
        inference_image: Any,
        needs: list[pulumi.Resource],
        monitoring: pulumi.Resource | None = None,
        load_balancer: pulumi.Resource | None = None,
        metrics_server: pulumi.Resource | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("ml-platform:serving:ServedModel", name, None, opts)
        objects = tfserving_objects(settings, model)
        if model.inference_api.enabled:
            objects += inference_objects(settings, model, inference_image)
        config_maps: list[pulumi.Resource] = []
        for obj in objects:
            kind, object_name = obj["kind"], obj["metadata"]["name"]
            depends = [*needs, *(config_maps if kind == "Deployment" else [])]
            if load_balancer is not None and obj.get("spec", {}).get("type") == "LoadBalancer":
                # The load balancer controller (and its Service webhook) runs first.
                depends.append(load_balancer)
            if metrics_server is not None and kind == "HorizontalPodAutoscaler":
                # Its cpu metric comes from metrics-server (None: the cluster runs its own).
                depends.append(metrics_server)
            resource = REGISTER[kind](
                f"{name}-{object_name}-{kind.lower()}",
                obj,
                pulumi.ResourceOptions(parent=self, depends_on=depends),
            )
            if kind == "ConfigMap":
                config_maps.append(resource)
        if monitoring is not None:
            # Scrape objects wait for the monitoring stack, which installs their CRD.
            for scrape in scrape_objects(model):
                register_scrape_object(
                    f"{name}-{scrape['metadata']['name']}-servicemonitor",
                    scrape,
                    pulumi.ResourceOptions(parent=self, depends_on=[monitoring]),
                )
        self.register_outputs({"model": model.name})
