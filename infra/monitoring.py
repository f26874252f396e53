"""Prometheus, Alertmanager and Grafana (kube-prometheus-stack), the alert rules, and scraping.

Every ServiceMonitor, PodMonitor and PrometheusRule in any namespace is picked up: the chart's
`*SelectorNilUsesHelmValues` switches are off, so no object needs a `release` label (one rule,
used everywhere).  Grafana's admin password is generated and kept as a Pulumi secret.

Prometheus and Alertmanager keep their data on volumes of the stack's block StorageClass
(infra/block_storage.py), named in their claim templates.  Grafana keeps none: the grafana chart
12.11.1 that kube-prometheus-stack 88.5.3 ships defaults `persistence.enabled: false`
(grafana-community/helm-charts@grafana-12.11.1:charts/grafana/values.yaml), and everything it
needs comes back on restart (dashboards from ConfigMaps, the admin login from its Secret).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s
import pulumi_random as random

from infra import alert_routing, alerts, gpu_cost, labels, names, training_job_metrics, versions
from infra.alert_delivery import AlertDelivery
from infra.block_storage import BlockStorage
from infra.dashboards import Dashboards
from infra.helm import pinned_release
from infra.scheduling import Placement
from infra.settings import Settings

RELEASE = "kube-prometheus-stack"
GRAFANA_SECRET = "grafana-admin"
# The chart's fullnameOverride: its objects' names, and the Prometheus resource's name
# `<fullname>-prometheus` (prometheus-community/helm-charts@kube-prometheus-stack-88.5.3:
# charts/kube-prometheus-stack/templates/_helpers.tpl L14-16, L38-44).
FULLNAME = "prometheus-stack"
# Prometheus's own pods, as the chart's NetworkPolicy selects them (@kube-prometheus-stack-88.5.3:
# charts/kube-prometheus-stack/templates/prometheus/networkpolicy.yaml L22-33): labels the operator
# puts on every Prometheus pod (prometheus-operator/prometheus-operator@v0.93.0, the newest tag
# read for the v0.93.1 the chart ships: pkg/prometheus/server/operator.go L1696-1704,
# pkg/prometheus/server/statefulset.go L223-229).  Grafana, Alertmanager and the rest of
# `monitoring` do not carry them.
# The chart's Alertmanager ServiceAccount, `<fullname>-alertmanager` while
# `alertmanager.serviceAccount.create` (default true) and no name is given
# (@kube-prometheus-stack-88.5.3:charts/kube-prometheus-stack/templates/_helpers.tpl L117-123).
ALERTMANAGER_SERVICE_ACCOUNT = f"{FULLNAME}-alertmanager"
PROMETHEUS_PODS = {
    "app.kubernetes.io/name": "prometheus",
    "operator.prometheus.io/name": f"{FULLNAME}-prometheus",
}


def claim_template(size: str, storage_class: str) -> dict[str, Any]:
    """A StorageSpec with one ReadWriteOnce claim of the named class.

    kube-prometheus-stack 88.5.3 copies `prometheus.prometheusSpec.storageSpec` and
    `alertmanager.alertmanagerSpec.storage` into the custom resources' `spec.storage`
    (prometheus-community/helm-charts@kube-prometheus-stack-88.5.3:charts/kube-prometheus-stack/
    templates/prometheus/prometheus.yaml, templates/alertmanager/alertmanager.yaml); the operator
    turns `volumeClaimTemplate` into the StatefulSet's claim template with its spec, class
    included, and refuses to reconcile while that class does not exist
    (prometheus-operator/prometheus-operator@v0.93.0:pkg/operator/types.go, storageclass.go; read
    at v0.93.0, the newest tag available: the chart ships v0.93.1).
    """
    return {
        "volumeClaimTemplate": {
            "spec": {
                "storageClassName": storage_class,
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": size}},
            }
        }
    }


# The Role Grafana's sidecars get instead of the chart's own, which reads Secrets too.
GRAFANA_SIDECAR_ROLE = "grafana-sidecar"
# Where every ConfigMap the sidecars load lives: ours (infra/dashboards.py) and the chart's own
# dashboards and datasources, which kube-prometheus-stack 88.5.3 puts in Grafana's namespace
# (prometheus-community/helm-charts@kube-prometheus-stack-88.5.3:charts/kube-prometheus-stack/
# templates/grafana/configmaps-datasources.yaml, dashboards-1.14/*.yaml, _helpers.tpl
# `kube-prometheus-stack-grafana.namespace`; tests/upstream/kube-prometheus-stack-grafana.yaml).
GRAFANA_SIDECAR_NAMESPACES = [names.MONITORING]


def grafana_sidecar_values() -> dict[str, Any]:
    """Grafana's RBAC and sidecars: dashboard and datasource ConfigMaps of its namespace, no Secret.

    In grafana-community/helm-charts@grafana-12.11.1:charts/grafana (the chart
    kube-prometheus-stack 88.5.3 ships) every Role or ClusterRole the chart writes for its
    sidecars grants `configmaps` and `secrets` (templates/clusterrole.yaml, role.yaml), and the
    default `rbac.namespaced: false` makes it a ClusterRole: Grafana could read every Secret in
    the cluster.  With `rbac.namespaced` the chart writes no ClusterRole or ClusterRoleBinding
    (unless `rbac.extraClusterRoleRules`), and with `rbac.useExistingRole` no Role either: it only
    binds the named Role, which this program writes, in its own namespace and those of
    `rbac.namespaces` (rolebinding.yaml).
    The sidecars (kiwigrid/k8s-sidecar@2.10.1:src/sidecar.py, resources.py) watch what `RESOURCE`
    names (`both` by default: Secrets too) in the namespaces of `NAMESPACE` (kube-prometheus-stack
    sets `ALL`: a cluster-wide list); both are narrowed to ConfigMaps of the namespaces that hold
    them.  tests/upstream/grafana-sidecar-rbac.yaml records the templates' conditions.
    """
    searched = {"resource": "configmap", "searchNamespace": GRAFANA_SIDECAR_NAMESPACES}
    return {
        "rbac": {
            "namespaced": True,
            "useExistingRole": GRAFANA_SIDECAR_ROLE,
            # Where the chart binds that Role: these namespaces and Grafana's own
            # (@grafana-12.11.1:charts/grafana/templates/rolebinding.yaml:2); it does not follow
            # `searchNamespace`, so every other searched namespace is named here.
            "namespaces": [n for n in GRAFANA_SIDECAR_NAMESPACES if n != names.MONITORING],
        },
        "sidecar": {
            # Dashboards are ConfigMaps labelled grafana_dashboard (infra/dashboards.py).
            "dashboards": {"enabled": True, "label": "grafana_dashboard", **searched},
            "datasources": searched,
        },
    }


def grafana_sidecar_rules() -> list[k8s.rbac.v1.PolicyRuleArgs]:
    """What the sidecars need to load ConfigMaps: read and watch them, nothing else."""
    return [
        k8s.rbac.v1.PolicyRuleArgs(
            api_groups=[""], resources=["configmaps"], verbs=["get", "list", "watch"]
        )
    ]


def alertmanager_values(
    settings: Settings,
    on_system: dict[str, Any],
    storage_class: str,
    pod_annotations: Mapping[str, pulumi.Input[str]] | None = None,
) -> dict[str, Any]:
    """Alertmanager: its configuration from the Secret this program writes, the receivers'
    credentials mounted from theirs, its volume and its replicas.

    kube-prometheus-stack 88.5.3 (tests/upstream/kube-prometheus-stack-alertmanager.yaml):
    `useExistingSecret` stops the chart writing its own configuration Secret (templates/
    alertmanager/secret.yaml L1), `configSecret` names ours and `secrets` lists the Secrets
    mounted at /etc/alertmanager/secrets/<name> (templates/alertmanager/alertmanager.yaml L35,
    L63-69).  The operator, v0.93.x, reads key `alertmanager.yaml` of the configSecret, checks it
    with the loader of the Alertmanager module it imports, v0.33.1, not the v0.34.0 that runs
    (prometheus-operator@v0.93.0:go.mod L24; pkg/alertmanager/amcfg.go L29, L55), refuses unknown
    fields (amcfg.go L53-99), and with several replicas joins them into one cluster itself.

    `pod_annotations` (AlertDelivery's) go on the pods: the chart copies
    `alertmanagerSpec.podMetadata` into the Alertmanager resource (templates/alertmanager/
    alertmanager.yaml L123-126) and the operator its annotations onto the StatefulSet's pod
    template (prometheus-operator@v0.93.0:pkg/alertmanager/statefulset.go L407-410, L810-814).
    """
    monitoring = settings.monitoring
    credentials = alert_routing.credentials(monitoring.alerting)
    spec: dict[str, Any] = {
        "storage": claim_template(monitoring.alertmanager_storage_size, storage_class),
        "useExistingSecret": True,
        "configSecret": alert_routing.CONFIG_SECRET,
        "replicas": monitoring.alertmanager_replicas,
        **({"secrets": [alert_routing.CREDENTIALS_SECRET]} if credentials else {}),
        **({"podMetadata": {"annotations": pod_annotations}} if pod_annotations else {}),
        **on_system,
    }
    values: dict[str, Any] = {"alertmanagerSpec": spec}
    if monitoring.alertmanager_replicas > 1:
        # A drain takes one replica at a time; the others keep notifying (values.yaml L512-516).
        # The chart's default soft anti-affinity already spreads them over nodes (values.yaml
        # L1169-1179: podAntiAffinity "soft" L1174, topology key L1179; applied in
        # templates/alertmanager/alertmanager.yaml L127-150).
        values["podDisruptionBudget"] = {"enabled": True, "minAvailable": 1}
    return values


def kube_state_metrics_label_allowlist() -> list[str]:
    """The node labels kube_node_labels carries, for the GPU cost rules (infra/gpu_cost.py): the
    pool and the instance type.  kube-state-metrics exports no Kubernetes label unless allowed
    (kubernetes/kube-state-metrics@v2.20.0:internal/store/node.go L210-233), per resource as
    `<resource>=[<label>,...]` (pkg/options/types.go L240-300); its chart 8.4.0 passes the list
    `metricLabelsAllowlist` (default empty) as `--metric-labels-allowlist`, joined with ","
    (prometheus-community/helm-charts@kube-state-metrics-8.4.0:charts/kube-state-metrics/
    values.yaml L416, templates/deployment.yaml L100-102), and kube-prometheus-stack 88.5.3 sets
    none of it (charts/kube-prometheus-stack/values.yaml L2684-2708)."""
    return [f"nodes=[{','.join(gpu_cost.NODE_LABELS)}]"]


def stack_values(
    settings: Settings,
    placement: Placement,
    storage_class: str,
    alertmanager_pod_annotations: Mapping[str, pulumi.Input[str]] | None = None,
) -> dict[str, Any]:
    monitoring = settings.monitoring
    on_system = {"nodeSelector": placement.node_selector} if placement.node_selector else {}
    # The training jobs' conditions, which the TrainingJobFailed alert reads.
    job_conditions = (
        training_job_metrics.kube_state_metrics_values()
        if settings.kubeflow.training_operator.enabled
        else {}
    )
    return {
        "fullnameOverride": FULLNAME,
        "prometheus": {
            "prometheusSpec": {
                "serviceMonitorSelectorNilUsesHelmValues": False,
                "podMonitorSelectorNilUsesHelmValues": False,
                "ruleSelectorNilUsesHelmValues": False,
                "retention": monitoring.retention,
                "storageSpec": claim_template(monitoring.storage_size, storage_class),
                **on_system,
            }
        },
        # The chart's default is no storage (an emptyDir): silences would not survive a restart.
        "alertmanager": alertmanager_values(
            settings, on_system, storage_class, alertmanager_pod_annotations
        ),
        # The chart's own Watchdog would be a second one: ours is in infra/alerts.py, where the
        # rule tests load it (@kube-prometheus-stack-88.5.3:charts/kube-prometheus-stack/
        # templates/prometheus/rules-1.14/general.rules.yaml L61; values.yaml L322).
        "defaultRules": {"disabled": {alert_routing.WATCHDOG: True}},
        "prometheusOperator": {**on_system},
        "kube-state-metrics": {
            **on_system,
            **job_conditions,
            "metricLabelsAllowlist": kube_state_metrics_label_allowlist(),
        },
        "grafana": {
            # A fixed Service name (`grafana`) that docs and port-forwards can rely on.
            "fullnameOverride": "grafana",
            "admin": {
                "existingSecret": GRAFANA_SECRET,
                "userKey": "admin-user",
                "passwordKey": "admin-password",
            },
            **grafana_sidecar_values(),
            **on_system,
        },
        # A node agent: it runs on every node, GPU nodes included.
        "prometheus-node-exporter": {
            "tolerations": [{"operator": "Exists", "effect": "NoSchedule"}]
        },
    }


class Monitoring(pulumi.ComponentResource):
    """The monitoring stack; `crds` is what scrape objects and rules must wait for."""

    release: k8s.helm.v3.Release

    def __init__(
        self,
        name: str,
        *,
        settings: Settings,
        namespace: k8s.core.v1.Namespace,
        placement: Placement,
        block_storage: BlockStorage,
        after: list[pulumi.Resource],
        aws_cluster: aws.eks.Cluster | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        """`block_storage`: the class of Prometheus's and Alertmanager's volumes; `aws_cluster`:
        the EKS cluster whose Pod Identity gives Alertmanager its SNS role (AWS stacks)."""
        super().__init__("ml-platform:monitoring:Monitoring", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        password = random.RandomPassword(
            f"{name}-grafana-password", length=32, special=False, opts=child
        )
        secret = k8s.core.v1.Secret(
            f"{name}-grafana-admin",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=GRAFANA_SECRET, namespace=names.MONITORING, labels=labels.common("monitoring")
            ),
            string_data={"admin-user": "admin", "admin-password": password.result},
            opts=pulumi.ResourceOptions(parent=self, depends_on=[namespace]),
        )
        # The chart binds Grafana's ServiceAccount to this Role in `rbac.namespaces` and its own
        # namespace, which grafana_sidecar_values make every searched namespace.
        sidecar_roles = [
            k8s.rbac.v1.Role(
                f"{name}-grafana-sidecar-{namespace_name}",
                metadata=k8s.meta.v1.ObjectMetaArgs(
                    name=GRAFANA_SIDECAR_ROLE,
                    namespace=namespace_name,
                    labels=labels.common("monitoring"),
                ),
                rules=grafana_sidecar_rules(),
                opts=pulumi.ResourceOptions(parent=self, depends_on=[namespace]),
            )
            for namespace_name in GRAFANA_SIDECAR_NAMESPACES
        ]
        alerting = AlertDelivery(
            f"{name}-alerting",
            settings=settings,
            namespace=namespace,
            service_account=ALERTMANAGER_SERVICE_ACCOUNT,
            aws_cluster=aws_cluster,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.release = pinned_release(
            name,
            versions.KUBE_PROMETHEUS_STACK_CHART,
            release_name=RELEASE,
            namespace=names.MONITORING,
            values=stack_values(
                settings, placement, block_storage.required_class(), alerting.pod_annotations
            ),
            timeout=900,
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=[
                    namespace,
                    secret,
                    *sidecar_roles,
                    *alerting.ready,
                    *block_storage.ready,
                    *after,
                ],
            ),
        )
        k8s.apiextensions.CustomResource(
            f"{name}-alerts",
            api_version="monitoring.coreos.com/v1",
            kind="PrometheusRule",
            metadata={
                "name": "ml-platform-alerts",
                "namespace": names.MONITORING,
                "labels": labels.common("monitoring"),
            },
            # The alerts, and the GPU cost recording rules (generated from the settings' prices).
            spec={"groups": [*alerts.rule_groups(), gpu_cost.rule_group(settings)]},
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.release]),
        )
        Dashboards(
            f"{name}-dashboards", after=[namespace], opts=pulumi.ResourceOptions(parent=self)
        )
        self.grafana_password: pulumi.Output[str] = pulumi.Output.secret(password.result)
        self.register_outputs({"release": self.release.name})


def service_monitor(
    name: str,
    namespace: str,
    selector: dict[str, str],
    port: str,
    path: str,
    *,
    target_labels: list[str] | None = None,
) -> dict[str, Any]:
    """A ServiceMonitor scraping `path` on the named port of the Services matching `selector`;
    `target_labels` are Service labels copied onto every series (prometheus-operator's
    `targetLabels`)."""
    spec: dict[str, Any] = {
        "selector": {"matchLabels": selector},
        "namespaceSelector": {"matchNames": [namespace]},
        "endpoints": [{"port": port, "path": path, "interval": "30s", "scrapeTimeout": "10s"}],
    }
    if target_labels:
        spec["targetLabels"] = target_labels
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": {"name": name, "namespace": namespace, "labels": labels.common("monitoring")},
        "spec": spec,
    }


def register_scrape_object(
    resource_name: str, scrape: dict[str, Any], opts: pulumi.ResourceOptions
) -> k8s.apiextensions.CustomResource:
    """Register a ServiceMonitor/PodMonitor dict; `opts` must wait for the monitoring stack."""
    return k8s.apiextensions.CustomResource(
        resource_name,
        api_version=scrape["apiVersion"],
        kind=scrape["kind"],
        metadata=scrape["metadata"],
        spec=scrape["spec"],
        opts=opts,
    )
