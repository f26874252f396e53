"""`gpu-binpack`: a second kube-scheduler that packs GPU pods onto as few nodes as possible.

The default scheduler scores nodes with LeastAllocated, which spreads pods and leaves every GPU
node partly used, so none can scale down and large jobs find no whole node.  This profile scores
NodeResourcesFit with MostAllocated and weighs GPUs above cpu and memory.  EKS does not let us
reconfigure its own scheduler, so this one runs beside it; workloads opt in with
`schedulerName: gpu-binpack`.
"""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import yaml

from infra import labels, versions
from infra.monitoring import register_scrape_object, service_monitor
from infra.pod_security import restricted_container_args, restricted_pod_args
from infra.scheduling import Placement

SCHEDULER_NAME = "gpu-binpack"
NAMESPACE = "kube-system"
APP = "gpu-binpack-scheduler"
CONFIG_DIR = "/etc/kubernetes/gpu-binpack"
SECURE_PORT = 10259


def scheduler_config(gpu_resources: list[str]) -> dict[str, Any]:
    """KubeSchedulerConfiguration (kubescheduler.config.k8s.io/v1) with the bin-packing profile."""
    weights = [{"name": "cpu", "weight": 1}, {"name": "memory", "weight": 1}]
    weights += [{"name": resource, "weight": 5} for resource in sorted(set(gpu_resources))]
    return {
        "apiVersion": "kubescheduler.config.k8s.io/v1",
        "kind": "KubeSchedulerConfiguration",
        # No /debug/pprof on the metrics port (the --profiling flag is ignored with --config).
        "enableProfiling": False,
        "enableContentionProfiling": False,
        "leaderElection": {
            "leaderElect": True,
            "resourceNamespace": NAMESPACE,
            "resourceName": SCHEDULER_NAME,
        },
        "profiles": [
            {
                "schedulerName": SCHEDULER_NAME,
                "pluginConfig": [
                    {
                        "name": "NodeResourcesFit",
                        "args": {
                            "scoringStrategy": {"type": "MostAllocated", "resources": weights}
                        },
                    }
                ],
            }
        ],
    }


class BinPackingScheduler(pulumi.ComponentResource):
    deployment: k8s.apps.v1.Deployment

    def __init__(
        self,
        name: str,
        *,
        kubernetes_minor: str,
        gpu_resources: list[str],
        placement: Placement,
        after: list[pulumi.Resource],
        monitoring: pulumi.Resource | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        """`after`: what the Deployment waits for (the system nodes it runs on; a component's own
        `depends_on` would not hold it back).  `monitoring`: the monitoring release; when given,
        Prometheus scrapes the scheduler."""
        super().__init__("ml-platform:scheduling:BinPackingScheduler", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        meta_labels = {**labels.common("scheduling"), "app.kubernetes.io/name": APP}

        def meta(object_name: str, namespace: str | None = NAMESPACE) -> k8s.meta.v1.ObjectMetaArgs:
            return k8s.meta.v1.ObjectMetaArgs(
                name=object_name, namespace=namespace, labels=meta_labels
            )

        account = k8s.core.v1.ServiceAccount(f"{name}-sa", metadata=meta(APP), opts=child)
        subject = [k8s.rbac.v1.SubjectArgs(kind="ServiceAccount", name=APP, namespace=NAMESPACE)]
        # What every kube-scheduler needs (the "configure multiple schedulers" guide).
        for role in ("system:kube-scheduler", "system:volume-scheduler"):
            k8s.rbac.v1.ClusterRoleBinding(
                f"{name}-{role.split(':')[1]}",
                metadata=meta(f"{APP}-{role.split(':')[1]}", None),
                role_ref=k8s.rbac.v1.RoleRefArgs(
                    api_group="rbac.authorization.k8s.io", kind="ClusterRole", name=role
                ),
                subjects=subject,
                opts=child,
            )
        k8s.rbac.v1.RoleBinding(
            f"{name}-authentication-reader",
            metadata=meta(f"{APP}-authentication-reader"),
            role_ref=k8s.rbac.v1.RoleRefArgs(
                api_group="rbac.authorization.k8s.io",
                kind="Role",
                name="extension-apiserver-authentication-reader",
            ),
            subjects=subject,
            opts=child,
        )
        # system:kube-scheduler only lets a scheduler renew the lease named kube-scheduler; this
        # grants ours instead of editing the system role.
        lease_role = k8s.rbac.v1.Role(
            f"{name}-lease",
            metadata=meta(f"{APP}-lease"),
            rules=[
                k8s.rbac.v1.PolicyRuleArgs(
                    api_groups=["coordination.k8s.io"], resources=["leases"], verbs=["create"]
                ),
                k8s.rbac.v1.PolicyRuleArgs(
                    api_groups=["coordination.k8s.io"],
                    resources=["leases"],
                    resource_names=[SCHEDULER_NAME],
                    verbs=["get", "update"],
                ),
            ],
            opts=child,
        )
        k8s.rbac.v1.RoleBinding(
            f"{name}-lease",
            metadata=meta(f"{APP}-lease"),
            role_ref=k8s.rbac.v1.RoleRefArgs(
                api_group="rbac.authorization.k8s.io", kind="Role", name=f"{APP}-lease"
            ),
            subjects=subject,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[lease_role]),
        )
        config = k8s.core.v1.ConfigMap(
            f"{name}-config",
            metadata=meta(f"{APP}-config"),
            data={"config.yaml": yaml.safe_dump(scheduler_config(gpu_resources), sort_keys=False)},
            opts=child,
        )
        probe = k8s.core.v1.ProbeArgs(
            http_get=k8s.core.v1.HTTPGetActionArgs(
                path="/healthz", port=SECURE_PORT, scheme="HTTPS"
            ),
            initial_delay_seconds=15,
            period_seconds=10,
        )
        selector = {"app.kubernetes.io/name": APP}
        self.deployment = k8s.apps.v1.Deployment(
            f"{name}-deployment",
            metadata=meta(APP),
            spec=k8s.apps.v1.DeploymentSpecArgs(
                replicas=2,  # one leads, one waits: scheduling survives a node loss
                selector=k8s.meta.v1.LabelSelectorArgs(match_labels=selector),
                template=k8s.core.v1.PodTemplateSpecArgs(
                    metadata=k8s.meta.v1.ObjectMetaArgs(labels={**meta_labels, **selector}),
                    spec=k8s.core.v1.PodSpecArgs(
                        service_account_name=APP,
                        priority_class_name="system-cluster-critical",
                        node_selector=placement.node_selector,
                        tolerations=[
                            k8s.core.v1.TolerationArgs(
                                key=t["key"],
                                operator=t["operator"],
                                value=t.get("value"),
                                effect=t["effect"],
                            )
                            for t in placement.tolerations
                        ],
                        topology_spread_constraints=[
                            k8s.core.v1.TopologySpreadConstraintArgs(
                                max_skew=1,
                                topology_key="kubernetes.io/hostname",
                                when_unsatisfiable="ScheduleAnyway",
                                label_selector=k8s.meta.v1.LabelSelectorArgs(match_labels=selector),
                            )
                        ],
                        security_context=restricted_pod_args(65532),
                        containers=[
                            k8s.core.v1.ContainerArgs(
                                name="kube-scheduler",
                                image=f"{versions.KUBE_SCHEDULER_IMAGE}:"
                                f"{versions.KUBE_SCHEDULER_TAGS[kubernetes_minor]}",
                                command=["kube-scheduler", f"--config={CONFIG_DIR}/config.yaml"],
                                ports=[
                                    k8s.core.v1.ContainerPortArgs(
                                        name="https", container_port=SECURE_PORT
                                    )
                                ],
                                liveness_probe=probe,
                                readiness_probe=probe,
                                resources=k8s.core.v1.ResourceRequirementsArgs(
                                    requests={"cpu": "100m", "memory": "128Mi"},
                                    limits={"cpu": "1", "memory": "512Mi"},
                                ),
                                security_context=restricted_container_args(),
                                volume_mounts=[
                                    k8s.core.v1.VolumeMountArgs(
                                        name="config", mount_path=CONFIG_DIR, read_only=True
                                    )
                                ],
                            )
                        ],
                        volumes=[
                            k8s.core.v1.VolumeArgs(
                                name="config",
                                config_map=k8s.core.v1.ConfigMapVolumeSourceArgs(
                                    name=f"{APP}-config"
                                ),
                            )
                        ],
                    ),
                ),
            ),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[config, account, *after]),
        )
        k8s.policy.v1.PodDisruptionBudget(
            f"{name}-pdb",
            metadata=meta(APP),
            spec=k8s.policy.v1.PodDisruptionBudgetSpecArgs(
                min_available=1,
                selector=k8s.meta.v1.LabelSelectorArgs(match_labels=selector),
            ),
            opts=child,
        )
        if monitoring is not None:
            self._scrape(name, meta(APP), selector, monitoring)
        self.register_outputs({"scheduler_name": SCHEDULER_NAME})

    def _scrape(
        self,
        name: str,
        metadata: k8s.meta.v1.ObjectMetaArgs,
        selector: dict[str, str],
        monitoring: pulumi.Resource,
    ) -> None:
        """A Service on the secure port and its ServiceMonitor.

        kube-scheduler serves /metrics only over HTTPS to authorised callers: Prometheus presents
        its service-account token (its ClusterRole may GET /metrics) and the scheduler checks it
        with the API server; the serving certificate is self-signed, as on every kube-scheduler.
        """
        service = k8s.core.v1.Service(
            f"{name}-metrics",
            metadata=metadata,
            spec=k8s.core.v1.ServiceSpecArgs(
                selector=selector,
                ports=[
                    k8s.core.v1.ServicePortArgs(name="https", port=SECURE_PORT, target_port="https")
                ],
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )
        monitor = service_monitor(APP, NAMESPACE, selector, "https", "/metrics")
        [endpoint] = monitor["spec"]["endpoints"]
        endpoint.update(
            scheme="https",
            bearerTokenFile="/var/run/secrets/kubernetes.io/serviceaccount/token",
            tlsConfig={"insecureSkipVerify": True},
        )
        register_scrape_object(
            f"{name}-servicemonitor",
            monitor,
            pulumi.ResourceOptions(parent=self, depends_on=[service, monitoring]),
        )
