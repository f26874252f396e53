"""The pods and Services of a stack as the network policies meet them, for tests/network_policy.py.

Everything the program renders is taken as it is: every NetworkPolicy and Service, the pods of
its Deployments, StatefulSets, DaemonSets and Jobs, and the pods and Services the upstream
controllers make of its TFJobs and Notebooks (with the labels those controllers add, from the
fixtures under tests/upstream/).  The pods that third-party installs run (CoreDNS, Prometheus
and the rest of `monitoring`, the training operator, the notebook controller) are added with
their upstream labels.  Where a stack declares no TFJob, Notebook or served model, a stand-in
with the same label scheme is added and marked `synthetic` in its origin.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from infra import names, versions
from infra.monitoring import FULLNAME, RELEASE
from infra.settings import Settings
from tests.network_policy import (
    Cluster,
    ContainerPort,
    Pod,
    Service,
    ServicePort,
    container_ports,
    pod_from_template,
    service_from_object,
)
from tests.upstream_facts import facts
from workloads import serving

TFJOB_PORT = 2222
# Outside the pod network: an S3 address (any public address on 443 stands for it), the EKS Pod
# Identity agent (infra/team_network.py) and the instance metadata service.
S3_ADDRESS = "52.216.0.1"
POD_IDENTITY_AGENT = "169.254.170.23"
IMDS = "169.254.169.254"
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "Job")


def _fill(template: Mapping[str, str], **values: str) -> dict[str, str]:
    return {key: value.format(**values) for key, value in template.items()}


def trainer() -> Any:
    return facts("kubeflow-trainer-pods", pinned=versions.TRAINING_OPERATOR.ref)


def notebook_controller() -> Any:
    return facts("kubeflow-notebook-pods", pinned=versions.NOTEBOOK_CONTROLLER.ref)


def prometheus_pod_labels() -> dict[str, str]:
    """The labels of the stack's Prometheus pods: the operator's, for the chart's resource name."""
    chart = facts(
        "kube-prometheus-stack-pods",
        pinned=f"kube-prometheus-stack-{versions.KUBE_PROMETHEUS_STACK_CHART.version}",
    )
    operator = facts("prometheus-operator-pods", pinned=versions.PROMETHEUS_OPERATOR_VERSION)
    name = chart["prometheus_name"].format(fullname=FULLNAME)
    return _fill(operator["prometheus_pod_labels"], name=name)


def _monitoring_pods() -> list[Pod]:
    chart = facts(
        "kube-prometheus-stack-pods",
        pinned=f"kube-prometheus-stack-{versions.KUBE_PROMETHEUS_STACK_CHART.version}",
    )
    operator = facts("prometheus-operator-pods", pinned=versions.PROMETHEUS_OPERATOR_VERSION)
    grafana = facts(
        "grafana-pods", pinned=f"grafana-{versions.KUBE_PROMETHEUS_STACK_GRAFANA_CHART}"
    )
    ksm = facts(
        "kube-state-metrics-pods",
        pinned=f"kube-state-metrics-{versions.KUBE_STATE_METRICS_CHART_VERSION}",
    )
    alertmanager = chart["alertmanager_name"].format(fullname=FULLNAME)
    where = names.MONITORING
    return [
        Pod(where, "prometheus-0", prometheus_pod_labels(), origin="prometheus-operator"),
        Pod(
            where,
            "alertmanager-0",
            _fill(operator["alertmanager_pod_labels"], name=alertmanager),
            origin="prometheus-operator",
        ),
        Pod(
            where,
            "grafana",
            _fill(grafana["pod_labels"], release=RELEASE),
            origin="grafana chart",
        ),
        Pod(
            where,
            "kube-state-metrics",
            _fill(ksm["pod_labels"], release=RELEASE),
            origin="kube-state-metrics chart",
        ),
        Pod(where, "operator", dict(chart["operator_pod_labels"]), origin="kube-prometheus-stack"),
        Pod(where, "unlabelled", {}, origin="synthetic: any other pod in monitoring"),
    ]


def _dns() -> tuple[Pod, Service]:
    dns = facts("coredns-service", pinned="008b3652959ca58af8be3fb5b6ecfe9ae7638282")
    ports = tuple(
        ContainerPort(p["containerPort"], p["name"], p["protocol"]) for p in dns["container_ports"]
    )
    pod = Pod(dns["namespace"], "coredns", dict(dns["pod_labels"]), ports, origin="CoreDNS")
    spec = dns["service"]
    service = Service(
        dns["namespace"],
        spec["name"],
        dict(spec["selector"]),
        tuple(ServicePort(p["port"], p["port"], p["protocol"], p["name"]) for p in spec["ports"]),
    )
    return pod, service


def _tfjob_pods(job: Mapping[str, Any], origin: str) -> tuple[list[Pod], list[Service]]:
    """The pods and headless Services the training operator makes of a TFJob."""
    spec = trainer()
    namespace, name = job["metadata"]["namespace"], job["metadata"]["name"]
    pods: list[Pod] = []
    services: list[Service] = []
    replicas = job["spec"]["tfReplicaSpecs"]
    master = spec["master_role"]
    masters = {t.lower() for t in replicas} & set(master["with_chief_or_master"])
    for replica_type, replica in replicas.items():
        kind = replica_type.lower()
        for index in range(int(replica.get("replicas", 1))):
            values = {"job": name, "type": kind, "index": str(index)}
            labels = _fill(spec["pod_labels"], **values)
            is_master = kind in masters if masters else values == {
                "job": name, "type": master["otherwise"]["type"],
                "index": str(master["otherwise"]["index"]),
            }  # fmt: skip
            pod_labels = {**labels, **(spec["master_role_label"] if is_master else {})}
            pod_name = spec["pod_name"].format(**values)
            pods.append(
                pod_from_template(namespace, pod_name, replica["template"], origin, **pod_labels)
            )
            services.append(
                Service(
                    namespace,
                    spec["service"]["name"].format(**values),
                    labels,
                    (ServicePort(TFJOB_PORT, TFJOB_PORT, name=spec["port"]["name"]),),
                    headless=spec["service"]["cluster_ip"] == "None",
                )
            )
    return pods, services


def _notebook_pods(notebook: Mapping[str, Any], origin: str) -> tuple[Pod, Service]:
    """The pod and Service the notebook controller makes of a Notebook."""
    spec = notebook_controller()
    namespace, name = notebook["metadata"]["namespace"], notebook["metadata"]["name"]
    template = notebook["spec"]["template"]
    ports = container_ports(template["spec"])
    if not ports:
        default = spec["default_container_port"]
        ports = (ContainerPort(default["number"], default["name"]),)
    labels = {**notebook["metadata"].get("labels", {}), **_fill(spec["pod_labels"], name=name)}
    pod = Pod(namespace, spec["pod_name"].format(name=name), labels, ports, origin=origin)
    service = Service(
        namespace,
        name,
        {spec["service"]["selector_key"]: name},
        (ServicePort(spec["service"]["port"], ports[0].number, name=f"http-{name}"),),
    )
    return pod, service


def _synthetic_tfjob(team: str) -> dict[str, Any]:
    template = {
        "metadata": {"labels": {"ml-platform.io/team": team}},
        "spec": {"containers": [{"ports": [{"name": "tfjob-port", "containerPort": TFJOB_PORT}]}]},
    }
    return {
        "metadata": {"namespace": team, "name": "synthetic"},
        "spec": {"tfReplicaSpecs": {"Worker": {"replicas": 2, "template": template}}},
    }


def _synthetic_notebook(team: str) -> dict[str, Any]:
    return {
        "metadata": {"namespace": team, "name": "synthetic", "labels": {}},
        "spec": {"template": {"spec": {"containers": [{"name": "synthetic"}]}}},
    }


def _synthetic_model(name: str) -> list[dict[str, Any]]:
    """TF Serving and the inference API for a model, with serving.py's labels, ports and
    Services."""
    objects: list[dict[str, Any]] = []
    for workload, component, container, service_ports in (
        (
            f"tfserving-{name}",
            "model-server",
            [("grpc", serving.GRPC_PORT), ("http", serving.HTTP_PORT)],
            [("grpc", serving.GRPC_PORT), ("http", serving.HTTP_PORT)],
        ),
        (f"inference-{name}", "inference-api", [("http", serving.API_PORT)], [("http", 80)]),
    ):
        selector = {"app.kubernetes.io/name": workload}
        meta = {
            "name": workload,
            "namespace": names.SERVING,
            "labels": {**selector, "app.kubernetes.io/component": component},
        }
        template = {
            "metadata": {"labels": meta["labels"]},
            "spec": {
                "containers": [{"ports": [{"name": n, "containerPort": p} for n, p in container]}]
            },
        }
        objects.append({"kind": "Deployment", "metadata": meta, "spec": {"template": template}})
        ports = [{"name": n, "port": p, "targetPort": n} for n, p in service_ports]
        objects.append(
            {"kind": "Service", "metadata": meta, "spec": {"selector": selector, "ports": ports}}
        )
    return objects


@dataclass
class StackNetwork:
    """A stack's cluster model and the parts of it the flows are about."""

    cluster: Cluster
    teams: list[str]
    dns: Service
    prometheus: Pod
    culler: Pod
    workers: dict[str, list[Pod]] = field(default_factory=dict)  # team -> one TFJob's workers
    notebooks: dict[str, Service] = field(default_factory=dict)  # team -> a notebook's Service
    model_services: list[Service] = field(default_factory=list)
    model_pods: list[Pod] = field(default_factory=list)
    pipelines: list[Service] = field(default_factory=list)  # the Pipelines API and UI
    pipeline_stores: list[Pod] = field(default_factory=list)  # Pipelines' MySQL and SeaweedFS
    scrape_targets: list[tuple[str, Pod, int]] = field(default_factory=list)  # (monitor, pod, port)
    katib_controller: Pod | None = None
    katib_db: Service | None = None
    trials: list[Pod] = field(default_factory=list)  # Katib trials' primary pods
    suggestions: list[Service] = field(default_factory=list)  # Katib suggestions' Services

    def team_pods(self, team: str) -> list[Pod]:
        return [p for p in self.cluster.pods if p.namespace == team]


def _scrape_targets(
    objects: Iterable[Mapping[str, Any]], cluster: Cluster
) -> list[tuple[str, Pod, int]]:
    """What each rendered ServiceMonitor and PodMonitor has Prometheus scrape: endpoint pods on
    the target port (Prometheus scrapes endpoints, not the Service's address)."""
    targets: list[tuple[str, Pod, int]] = []
    for monitor in objects:
        kind = monitor["kind"]
        if kind not in ("ServiceMonitor", "PodMonitor"):
            continue
        spec = monitor["spec"]
        ref = f"{kind} {monitor['metadata']['namespace']}/{monitor['metadata']['name']}"
        where = spec.get("namespaceSelector", {}).get(
            "matchNames", [monitor["metadata"]["namespace"]]
        )
        wanted = spec["selector"].get("matchLabels", {})
        if kind == "PodMonitor":
            for pod in cluster.pods:
                if pod.namespace in where and all(
                    pod.labels.get(k) == v for k, v in wanted.items()
                ):
                    for endpoint in spec["podMetricsEndpoints"]:
                        number = pod.container_port(endpoint["port"], "TCP")
                        assert number is not None, f"{ref}: {pod.ref} has no port {endpoint}"
                        targets.append((ref, pod, number))
            continue
        services = [
            s
            for s in objects
            if s["kind"] == "Service"
            and s["metadata"]["namespace"] in where
            and all(s["metadata"].get("labels", {}).get(k) == v for k, v in wanted.items())
        ]
        assert services, f"{ref} selects no rendered Service"
        for service_object in services:
            service = cluster.service(
                f"{service_object['metadata']['namespace']}/{service_object['metadata']['name']}"
            )
            for endpoint in spec["endpoints"]:
                [port] = [p for p in service.ports if p.name == endpoint["port"]]
                backends = cluster.backends(service)
                assert backends, f"{ref}: no pod behind {service.ref}"
                for pod in backends:
                    number = Cluster.target_port(port, pod)
                    assert number is not None, f"{ref}: {pod.ref} lacks {port.target}"
                    targets.append((ref, pod, number))
    return targets


def _pipelines() -> tuple[list[Pod], list[Service]]:
    """The Pipelines pods and the Services of the API and UI, as KFP's manifests make them."""
    kfp = facts("kubeflow-pipelines-access", pinned=versions.KFP_REF)
    pods = [
        Pod(
            names.KUBEFLOW,
            f"{name}-0",
            dict(pod["labels"]),
            tuple(ContainerPort(p["number"], p.get("name")) for p in pod["ports"]),
            origin="kubeflow/pipelines",
        )
        for name, pod in kfp["pods"].items()
    ]
    services = [
        Service(
            names.KUBEFLOW,
            name,
            dict(service["selector"]),
            tuple(
                ServicePort(p["port"], p["targetPort"], name=p["name"]) for p in service["ports"]
            ),
        )
        for name, service in kfp["services"].items()
    ]
    return pods, services


PIPELINE_STORES = ("mysql", "seaweedfs")


def katib_install() -> Any:
    return facts("kubeflow-katib-install", pinned=versions.KATIB.ref)


def _katib() -> tuple[list[Pod], list[Service]]:
    """Katib's controller and DB manager, and the DB manager's Service, as its manifests make
    them (tests/upstream/kubeflow-katib-install.yaml)."""
    katib = katib_install()
    label = katib["component_label"]
    components = katib["components"]
    controller = components["controller"]
    db = components["db-manager"]
    ui = components["ui"]
    mysql = components["mysql"]
    pods = [
        Pod(
            names.KUBEFLOW,
            controller["deployment"],
            {label: "controller"},
            # components/controller/controller.yaml: webhook, metrics, healthz.
            (ContainerPort(8443, "webhook"), ContainerPort(8080, "metrics"),
             ContainerPort(18080, "healthz")),
            origin="kubeflow/katib",
        ),
        Pod(
            names.KUBEFLOW,
            db["deployment"],
            {label: "db-manager"},
            (ContainerPort(db["port"], "api"),),
            origin="kubeflow/katib",
        ),
        Pod(
            names.KUBEFLOW,
            ui["deployment"],
            {label: "ui"},
            (ContainerPort(ui["target_port"], "ui"),),
            origin="kubeflow/katib",
        ),
        Pod(
            names.KUBEFLOW,
            mysql["deployment"],
            {label: "mysql"},
            (ContainerPort(mysql["port"], "dbapi"),),
            origin="kubeflow/katib",
        ),
    ]  # fmt: skip
    services = [
        Service(
            names.KUBEFLOW,
            db["service"],
            {label: "db-manager"},
            (ServicePort(db["port"], db["port"], name="api"),),
        ),
        Service(
            names.KUBEFLOW,
            ui["service"],
            {label: "ui"},
            (ServicePort(ui["port"], ui["target_port"], name="ui"),),
        ),
        Service(
            names.KUBEFLOW,
            mysql["service"],
            {label: "mysql"},
            (ServicePort(mysql["port"], mysql["port"], name="dbapi"),),
        ),
    ]
    return pods, services


def _experiment_pods(
    experiment: Mapping[str, Any], origin: str
) -> tuple[list[Pod], list[Pod], list[Service]]:
    """What Katib makes of an Experiment: one trial's pods (the primary one labelled as the pod
    webhook labels it) and the suggestion's pod and Service."""
    katib = katib_install()
    namespace, name = experiment["metadata"]["namespace"], experiment["metadata"]["name"]
    template = experiment["spec"]["trialTemplate"]
    trial_name = f"{name}-x7k2p9qd"
    trial = template["trialSpec"]
    primary = dict(template.get("primaryPodLabels") or {})
    if trial["kind"] == "TFJob":
        trial_pods, _ = _tfjob_pods(
            {"metadata": {"namespace": namespace, "name": trial_name}, "spec": trial["spec"]},
            origin,
        )
    else:
        trial_pods = [
            pod_from_template(namespace, f"{trial_name}-0", trial["spec"]["template"], origin)
        ]
    trial_pods = [
        Pod(
            p.namespace,
            p.name,
            {**p.labels, katib["trial_label"]: trial_name},
            p.ports,
            origin=p.origin,
        )
        if primary.items() <= p.labels.items()
        else p
        for p in trial_pods
    ]
    algorithm = experiment["spec"]["algorithm"]["algorithmName"]
    selector = {katib["suggestion_label"]: name, "katib.kubeflow.org/experiment": name}
    port = katib["suggestion_port"]
    suggestion = Pod(
        namespace,
        f"{name}-{algorithm}-0",
        selector,
        (ContainerPort(port, "suggestion-api"),),
        origin=f"{origin}: suggestion",
    )
    service = Service(
        namespace,
        f"{name}-{algorithm}",
        selector,
        (ServicePort(port, port, name="suggestion-api"),),
    )
    return trial_pods, [suggestion], [service]


def _katib_in_stack(
    objects: list[dict[str, Any]], settings: Settings, teams: list[str]
) -> tuple[list[Pod], list[Service], list[Pod], list[Service]]:
    """Katib's pods and Services where the stack installs it, with each team's trials (an
    experiment's, or a stand-in's) and suggestions: (pods, services, trials, suggestions)."""
    if not settings.kubeflow.katib.enabled:
        return [], [], [], []
    pods, services = _katib()
    trials: list[Pod] = []
    suggestions: list[Service] = []
    for team in teams:
        declared = [
            o for o in objects if o["kind"] == "Experiment" and o["metadata"]["namespace"] == team
        ]
        origin = "Experiment (Katib)"
        if not declared:
            declared, origin = [_synthetic_experiment(team)], "synthetic: Experiment (Katib)"
        for experiment in declared:
            trial_pods, suggestion_pods, suggestion_services = _experiment_pods(experiment, origin)
            pods += [*trial_pods, *suggestion_pods]
            services += suggestion_services
            trials += [p for p in trial_pods if katib_install()["trial_label"] in p.labels]
            suggestions += suggestion_services
    return pods, services, trials, suggestions


def _synthetic_experiment(team: str) -> dict[str, Any]:
    template = {
        "metadata": {"labels": {"ml-platform.io/team": team}},
        "spec": {"containers": [{"name": "training"}]},
    }
    return {
        "metadata": {"namespace": team, "name": "synthetic"},
        "spec": {
            "algorithm": {"algorithmName": "random"},
            "trialTemplate": {
                "trialSpec": {"kind": "Job", "spec": {"template": template}},
            },
        },
    }


def stack_network(objects: list[dict[str, Any]], settings: Settings) -> StackNetwork:
    """The cluster model of a stack's rendered objects (see the module's docstring)."""
    pods: list[Pod] = []
    services = [service_from_object(o) for o in objects if o["kind"] == "Service"]
    teams = [team.name for team in settings.teams]
    stand_ins: list[dict[str, Any]] = []
    if settings.serving.enabled and not settings.serving.models:
        stand_ins = _synthetic_model("synthetic")
        services += [service_from_object(o) for o in stand_ins if o["kind"] == "Service"]
    for obj in [*objects, *stand_ins]:
        kind, meta = obj["kind"], obj["metadata"]
        if kind in WORKLOAD_KINDS:
            marker = "synthetic: " if obj in stand_ins else ""
            pods.append(
                pod_from_template(
                    meta["namespace"],
                    f"{meta['name']}-0",
                    obj["spec"]["template"],
                    f"{marker}{kind} {meta['namespace']}/{meta['name']}",
                )
            )
    workers: dict[str, list[Pod]] = {}
    notebooks: dict[str, Service] = {}
    for team in teams:
        jobs = [o for o in objects if o["kind"] == "TFJob" and o["metadata"]["namespace"] == team]
        origin = "TFJob (training operator)"
        if not jobs:
            jobs, origin = [_synthetic_tfjob(team)], "synthetic: TFJob (training operator)"
        for job in jobs:
            job_pods, job_services = _tfjob_pods(job, origin)
            pods += job_pods
            services += job_services
            workers.setdefault(team, job_pods)
        servers = [
            o for o in objects if o["kind"] == "Notebook" and o["metadata"]["namespace"] == team
        ]
        origin = "Notebook (notebook controller)"
        if not servers and settings.kubeflow.notebooks.enabled:
            servers, origin = (
                [_synthetic_notebook(team)],
                "synthetic: Notebook (notebook controller)",
            )
        for server in servers:
            pod, service = _notebook_pods(server, origin)
            pods.append(pod)
            services.append(service)
            notebooks.setdefault(team, service)
    katib = _katib_in_stack(objects, settings, teams)
    pods, services = [*pods, *katib[0]], [*services, *katib[1]]
    dns_pod, dns_service = _dns()
    monitoring = _monitoring_pods()
    controller = facts("kubeflow-notebook-controller", pinned=versions.NOTEBOOK_CONTROLLER.ref)
    [deployment] = [o for o in controller["rendered"] if o["kind"] == "Deployment"]
    culler = pod_from_template(
        names.NOTEBOOK_CONTROLLER, "notebook-controller", deployment["spec"]["template"], "kubeflow"
    )
    operator = trainer()
    training_operator = Pod(
        names.KUBEFLOW,
        "training-operator",
        dict(operator["operator_pod_labels"]),
        container_ports({"containers": [{"ports": operator["operator_ports"]}]}),
        origin="kubeflow/trainer",
    )
    pods += [dns_pod, *monitoring, culler, training_operator]
    services.append(dns_service)
    pipeline_services: list[Service] = []
    if settings.kubeflow.pipelines.enabled:
        pipeline_pods, pipeline_services = _pipelines()
        pods += pipeline_pods
        services += pipeline_services
    namespaces = {
        o["metadata"]["name"]: dict(o["metadata"].get("labels", {}))
        for o in objects
        if o["kind"] == "Namespace"
    }
    policies = [o for o in objects if o["kind"] == "NetworkPolicy"]
    cluster = Cluster(namespaces, policies, pods, services)
    model_services = [
        s
        for s in cluster.services
        if s.namespace == names.SERVING
        and any(
            p.labels.get("app.kubernetes.io/component") in ("model-server", "inference-api")
            for p in cluster.backends(s)
        )
    ]
    return StackNetwork(
        cluster=cluster,
        teams=teams,
        dns=cluster.service(dns_service.ref),
        prometheus=cluster.pod(f"{names.MONITORING}/prometheus-0"),
        culler=cluster.pod(culler.ref),
        workers={t: [cluster.pod(p.ref) for p in w] for t, w in workers.items()},
        notebooks={t: cluster.service(s.ref) for t, s in notebooks.items()},
        model_services=model_services,
        model_pods=[p for p in cluster.pods if p.namespace == names.SERVING],
        scrape_targets=_scrape_targets(objects, cluster),
        pipelines=[cluster.service(s.ref) for s in pipeline_services],
        katib_controller=(
            cluster.pod(f"{names.KUBEFLOW}/katib-controller")
            if settings.kubeflow.katib.enabled
            else None
        ),
        katib_db=(
            cluster.service(f"{names.KUBEFLOW}/katib-db-manager")
            if settings.kubeflow.katib.enabled
            else None
        ),
        trials=[cluster.pod(p.ref) for p in katib[2]],
        suggestions=[cluster.service(s.ref) for s in katib[3]],
        pipeline_stores=[
            p
            for p in cluster.pods
            if p.namespace == names.KUBEFLOW and p.labels.get("app") in PIPELINE_STORES
        ],
    )
