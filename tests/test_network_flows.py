"""Every connection the platform needs goes through every stack's rendered NetworkPolicies, and
nothing else gets into a team namespace.

Judged by tests/network_policy.py over the pods and Services of tests/platform_network.py: the
AWS stacks in mode `eks` (what the VPC CNI enforces there) and in mode `upstream` (Kubernetes'
semantics, which another CNI would apply), `local` in mode `upstream`.  Every NetworkPolicy the
program renders is judged, in whatever namespace, so a policy added later is covered too.
"""

from __future__ import annotations

import itertools
from functools import cache

import pytest

from harness.program import stack_settings
from harness.render import kubernetes_objects
from infra import names, versions
from infra.monitoring import PROMETHEUS_PODS
from tests.conftest import AWS_STACKS, STACKS, stack_run
from tests.network_policy import Mode, Pod, matches
from tests.platform_network import (
    IMDS,
    POD_IDENTITY_AGENT,
    S3_ADDRESS,
    TFJOB_PORT,
    StackNetwork,
    prometheus_pod_labels,
    stack_network,
)
from tests.upstream_facts import facts
from workloads.serving import API_PORT, GRPC_PORT, HTTP_PORT

CASES = [(stack, "eks") for stack in AWS_STACKS] + [(stack, "upstream") for stack in STACKS]
# Ports a stray connection would try, beside each pod's own container ports.
PROBE_PORTS = (22, 80, 443, 2222, 8080, 8888, 9000)
MODEL_PORTS = (GRPC_PORT, HTTP_PORT, API_PORT)


@cache
def _network(stack: str) -> StackNetwork:
    return stack_network(kubernetes_objects(stack_run(stack)), stack_settings(stack))


def _team_pods(network: StackNetwork) -> list[Pod]:
    pods = [p for team in network.teams for p in network.team_pods(team)]
    assert pods
    return pods


def _ports(pod: Pod) -> list[int]:
    return sorted({*PROBE_PORTS, *(p.number for p in pod.ports)})


@pytest.mark.parametrize(("stack", "mode"), CASES)
def test_training_workers_reach_each_other(stack: str, mode: Mode) -> None:
    network = _network(stack)
    cluster = network.cluster
    for team in network.teams:
        workers = network.workers[team]
        assert len(workers) >= 2, team
        # The operator marks one replica as the job's master (its Chief, else worker 0).
        roles = [w.labels.get("training.kubeflow.org/job-role") for w in workers]
        assert roles.count("master") == 1, roles
        for a, b in itertools.permutations(workers, 2):
            assert cluster.connect(a, b, TFJOB_PORT, mode=mode), (a.ref, b.ref)
            # TF_CONFIG names the replicas' headless Services.
            service = cluster.service(b.ref)
            assert service.headless
            verdict = cluster.connect(a, service, TFJOB_PORT, mode=mode)
            assert verdict, verdict.reason


@pytest.mark.parametrize(("stack", "mode"), CASES)
def test_isolated_pods_resolve_names(stack: str, mode: Mode) -> None:
    network = _network(stack)
    isolated = [*_team_pods(network), *network.model_pods]
    for pod, protocol in itertools.product(isolated, ("UDP", "TCP")):
        verdict = network.cluster.connect(pod, network.dns, 53, protocol, mode=mode)
        assert verdict, verdict.reason


@pytest.mark.parametrize(("stack", "mode"), CASES)
def test_prometheus_reaches_every_scrape_target(stack: str, mode: Mode) -> None:
    network = _network(stack)
    assert network.scrape_targets
    for monitor, pod, port in network.scrape_targets:
        verdict = network.cluster.connect(network.prometheus, pod, port, mode=mode)
        assert verdict, (monitor, verdict.reason)


@pytest.mark.parametrize(("stack", "mode"), CASES)
def test_the_notebook_culler_reaches_notebooks(stack: str, mode: Mode) -> None:
    network = _network(stack)
    assert set(network.notebooks) == set(network.teams)
    for service in network.notebooks.values():
        verdict = network.cluster.connect(network.culler, service, 80, mode=mode)
        assert verdict, verdict.reason


@pytest.mark.parametrize(("stack", "mode"), CASES)
def test_teams_call_the_served_models(stack: str, mode: Mode) -> None:
    network = _network(stack)
    cluster = network.cluster
    assert {s.name.split("-")[0] for s in network.model_services} == {"tfserving", "inference"}
    for pod in _team_pods(network):
        for service in network.model_services:
            for port in service.ports:
                verdict = cluster.connect(pod, service, port.port, mode=mode)
                assert verdict, verdict.reason
        for server in network.model_pods:
            for container_port in server.ports:
                assert container_port.number in MODEL_PORTS
                verdict = cluster.connect(pod, server, container_port.number, mode=mode)
                assert verdict, verdict.reason


@pytest.mark.parametrize(("stack", "mode"), CASES)
def test_teams_given_pipelines_reach_its_api_and_ui_and_no_other_team_does(
    stack: str, mode: Mode
) -> None:
    """`teams[].access.pipelines`: the API (HTTP and gRPC) and the UI through their Services;
    a team without it reaches neither."""
    network = _network(stack)
    settings = stack_settings(stack)
    if not settings.kubeflow.pipelines.enabled:
        assert not network.pipelines
        return
    assert {s.name for s in network.pipelines} == {"ml-pipeline", "ml-pipeline-ui"}
    cluster = network.cluster
    for team in settings.teams:
        for pod, service in itertools.product(network.team_pods(team.name), network.pipelines):
            for port in service.ports:
                verdict = cluster.connect(pod, service, port.port, mode=mode)
                assert bool(verdict) is team.access.pipelines, (team.name, verdict.reason)


def test_some_stack_gives_a_team_pipelines_and_another_not() -> None:
    given = [t.access.pipelines for s in STACKS for t in stack_settings(s).teams]
    assert True in given
    assert False in given


@pytest.mark.parametrize(("stack", "mode"), CASES)
def test_no_team_reaches_the_pipelines_stores(stack: str, mode: Mode) -> None:
    """MySQL and SeaweedFS hold every team's runs and artifacts: no team pod reaches them,
    pipelines access or not, on any port they listen on.  (Another port would reach nothing; 443
    is open to every address on the way out: tests/test_network_policy.py,
    test_on_eks_https_to_anywhere_reaches_a_service_on_443_whatever_its_target.)"""
    network = _network(stack)
    if not stack_settings(stack).kubeflow.pipelines.enabled:
        return
    assert {p.labels["app"] for p in network.pipeline_stores} == {"mysql", "seaweedfs"}
    for pod, store in itertools.product(_team_pods(network), network.pipeline_stores):
        ports = [p.number for p in store.ports]
        assert not network.cluster.denied_everywhere(pod, store, ports, mode=mode)


@pytest.mark.parametrize(("stack", "mode"), CASES)
def test_teams_reach_serving_on_no_other_port(stack: str, mode: Mode) -> None:
    network = _network(stack)
    assert network.model_pods
    for pod, server in itertools.product(_team_pods(network), network.model_pods):
        others = [port for port in _ports(server) if port not in MODEL_PORTS]
        assert not network.cluster.denied_everywhere(pod, server, others, mode=mode)


@pytest.mark.parametrize(("stack", "mode"), CASES)
def test_team_pods_reach_aws_credentials_and_s3_but_not_instance_metadata(
    stack: str, mode: Mode
) -> None:
    network = _network(stack)
    settings = stack_settings(stack)
    eks = settings.cluster.mode == "eks"
    for team in settings.teams:
        for pod in network.team_pods(team.name):
            cluster = network.cluster
            assert bool(cluster.connect(pod, POD_IDENTITY_AGENT, 80, mode=mode)) is eks
            assert bool(cluster.connect(pod, S3_ADDRESS, 443, mode=mode)) is (
                team.network.https_egress
            )
            assert not cluster.connect(pod, IMDS, 80, mode=mode)


def test_some_stack_has_two_teams() -> None:
    assert any(len(stack_settings(stack).teams) >= 2 for stack in STACKS)


@pytest.mark.parametrize(("stack", "mode"), CASES)
def test_teams_cannot_reach_each_other(stack: str, mode: Mode) -> None:
    network = _network(stack)
    cluster = network.cluster
    for a, b in itertools.permutations(network.teams, 2):
        for src, dst in itertools.product(network.team_pods(a), network.team_pods(b)):
            assert not cluster.denied_everywhere(src, dst, _ports(dst), mode=mode)
        for src, service in itertools.product(network.team_pods(a), cluster.services):
            if service.namespace == b:
                ports = [p.port for p in service.ports]
                assert not cluster.denied_everywhere(src, service, ports, mode=mode)


@pytest.mark.parametrize(("stack", "mode"), CASES)
def test_katib_trials_report_and_the_controller_reaches_suggestions(stack: str, mode: Mode) -> None:
    """A trial's metrics collector reaches the DB manager (its Service and its pod), and the
    Katib controller reaches each experiment's suggestion Service, both on their gRPC port."""
    network = _network(stack)
    if not stack_settings(stack).kubeflow.katib.enabled:
        assert network.katib_db is None
        return
    cluster = network.cluster
    assert network.katib_db is not None
    assert network.katib_controller is not None
    assert {p.namespace for p in network.trials} == set(network.teams)
    [db_port] = network.katib_db.ports
    for trial in network.trials:
        verdict = cluster.connect(trial, network.katib_db, db_port.port, mode=mode)
        assert verdict, verdict.reason
        for backend in cluster.backends(network.katib_db):
            verdict = cluster.connect(trial, backend, db_port.port, mode=mode)
            assert verdict, verdict.reason
    assert {s.namespace for s in network.suggestions} == set(network.teams)
    for service in network.suggestions:
        [port] = service.ports
        verdict = cluster.connect(network.katib_controller, service, port.port, mode=mode)
        assert verdict, verdict.reason


@pytest.mark.parametrize(("stack", "mode"), CASES)
def test_nothing_else_gets_into_team_namespaces(stack: str, mode: Mode) -> None:
    """From every other pod (monitoring's Grafana, Alertmanager, kube-state-metrics and
    Prometheus itself, kubeflow, serving, kube-system, ...) only the flows the platform needs:
    the culler to notebooks on Jupyter's port, Katib's controller to suggestions on their port,
    and Prometheus to what a monitor scrapes."""
    network = _network(stack)
    cluster = network.cluster
    needed = {(network.culler.ref, service.ref) for service in network.notebooks.values()}
    needed |= {
        (network.culler.ref, pod.ref)
        for service in network.notebooks.values()
        for pod in cluster.backends(service)
    }
    if network.katib_controller is not None:
        controller = network.katib_controller.ref
        needed |= {(controller, service.ref) for service in network.suggestions}
        needed |= {
            (controller, pod.ref)
            for service in network.suggestions
            for pod in cluster.backends(service)
        }
    scraped = {(network.prometheus.ref, pod.ref, port) for _, pod, port in network.scrape_targets}
    outsiders = [p for p in cluster.pods if p.namespace not in network.teams]
    assert {"monitoring/grafana", "monitoring/alertmanager-0"} <= {p.ref for p in outsiders}
    for team in network.teams:
        for src, dst in itertools.product(outsiders, network.team_pods(team)):
            ports = [
                port
                for port in _ports(dst)
                if (src.ref, dst.ref, port) not in scraped
                and not ((src.ref, dst.ref) in needed and port == dst.ports[0].number)
            ]
            assert not cluster.denied_everywhere(src, dst, ports, mode=mode)
        for src, service in itertools.product(outsiders, cluster.services):
            if service.namespace == team and (src.ref, service.ref) not in needed:
                ports = [p.port for p in service.ports]
                assert not cluster.denied_everywhere(src, service, ports, mode=mode)


@pytest.mark.parametrize(("stack", "mode"), CASES)
def test_serving_admits_nothing_but_the_model_ports(stack: str, mode: Mode) -> None:
    """Any pod may call the models; none (Prometheus and Grafana included) reaches another port."""
    network = _network(stack)
    outsiders = [p for p in network.cluster.pods if p.namespace != names.SERVING]
    assert network.prometheus in outsiders
    for src, server in itertools.product(outsiders, network.model_pods):
        others = [port for port in _ports(server) if port not in MODEL_PORTS]
        assert not network.cluster.denied_everywhere(src, server, others, mode=mode)


def test_the_prometheus_selector_is_what_the_operator_puts_on_prometheus_pods() -> None:
    chart = facts(
        "kube-prometheus-stack-pods",
        pinned=f"kube-prometheus-stack-{versions.KUBE_PROMETHEUS_STACK_CHART.version}",
    )
    assert set(PROMETHEUS_PODS) == set(chart["prometheus_selector_keys"])
    assert PROMETHEUS_PODS.items() <= prometheus_pod_labels().items()
    network = _network("prod")
    carriers = [p.ref for p in network.cluster.pods if PROMETHEUS_PODS.items() <= p.labels.items()]
    assert carriers == [network.prometheus.ref]


@pytest.mark.parametrize("stack", STACKS)
def test_monitoring_is_let_in_only_as_prometheus_and_on_scraped_ports(stack: str) -> None:
    network = _network(stack)
    scraped = {(pod.namespace, port) for _, pod, port in network.scrape_targets}
    monitoring = {"matchLabels": {"kubernetes.io/metadata.name": names.MONITORING}}
    let_in = []
    for policy in network.cluster.policies:
        namespace = policy["metadata"]["namespace"]
        for rule in policy["spec"].get("ingress", []):
            for peer in rule.get("from", []):
                if peer.get("namespaceSelector") != monitoring:
                    continue
                let_in.append(namespace)
                assert peer.get("podSelector") == {"matchLabels": PROMETHEUS_PODS}, policy
                ports = {(namespace, p["port"]) for p in rule.get("ports", [])}
                assert ports, f"{namespace}/{policy['metadata']['name']}: every port"
                assert ports <= scraped, (ports - scraped, policy)
    assert not set(let_in) & set(network.teams)


def test_policies_rendered_in_any_namespace_are_judged() -> None:
    """A policy added anywhere (here a default-deny in `kubeflow`) changes the verdicts."""
    objects = kubernetes_objects(stack_run("dev"))
    deny = {
        "kind": "NetworkPolicy",
        "metadata": {"namespace": names.KUBEFLOW, "name": "default-deny"},
        "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]},
    }
    before = _network("dev")
    after = stack_network([*objects, deny], stack_settings("dev"))
    [(_, operator, port)] = [t for t in after.scrape_targets if t[1].namespace == names.KUBEFLOW]
    assert before.cluster.connect(
        before.prometheus, before.cluster.pod(operator.ref), port, mode="eks"
    )
    verdict = after.cluster.connect(after.prometheus, operator, port, mode="eks")
    assert not verdict
    assert "no ingress rule of default-deny" in verdict.reason


KATIB_COMPONENT = "katib.kubeflow.org/component"


def _katib_pod(network: StackNetwork, component: str) -> Pod:
    [pod] = [
        p
        for p in network.cluster.pods
        if p.namespace == names.KUBEFLOW and p.labels.get(KATIB_COMPONENT) == component
    ]
    return pod


@pytest.mark.parametrize(("stack", "mode"), CASES)
def test_katib_mysql_and_db_manager_take_only_their_clients(stack: str, mode: Mode) -> None:
    """MySQL only from the DB manager; the DB manager only from the controller, the UI and the
    teams' trial pods; the controller's webhook port from anywhere, its other ports from no pod;
    the UI from no pod."""
    network = _network(stack)
    cluster = network.cluster
    if not stack_settings(stack).kubeflow.katib.enabled:
        assert not [p for p in cluster.pods if KATIB_COMPONENT in p.labels]
        assert not [p for p in cluster.policies if p["metadata"]["name"].startswith("katib-")]
        return
    controller, db, ui, mysql = (
        _katib_pod(network, c) for c in ("controller", "db-manager", "ui", "mysql")
    )
    assert network.katib_db is not None
    mysql_service = cluster.service(f"{names.KUBEFLOW}/katib-mysql")
    for dst in (mysql_service, mysql):
        verdict = cluster.connect(db, dst, 3306, mode=mode)
        assert verdict, verdict.reason
    for src in (controller, ui, *network.trials):
        for dst in (network.katib_db, db):
            verdict = cluster.connect(src, dst, 6789, mode=mode)
            assert verdict, verdict.reason
    katib = {controller.ref, db.ref, ui.ref, mysql.ref}
    others = [p for p in cluster.pods if p.ref not in katib]
    assert network.prometheus in others
    assert network.trials[0] in others
    for src in [p for p in others if p.ref != db.ref]:
        assert not cluster.denied_everywhere(src, mysql_service, [3306], mode=mode), src.ref
        assert not cluster.denied_everywhere(src, mysql, [3306, *PROBE_PORTS], mode=mode)
    trials = {p.ref for p in network.trials}
    for src in [*[p for p in others if p.ref not in trials], mysql]:
        assert not cluster.denied_everywhere(src, network.katib_db, [6789], mode=mode), src.ref
        assert not cluster.denied_everywhere(src, db, [6789, *PROBE_PORTS], mode=mode)
    # The API server calls the webhook from outside the pod network: any source, so any pod
    # whose own egress is open (kubeflow's and monitoring's) gets there too.
    for src in [p for p in cluster.pods if p.namespace in (names.KUBEFLOW, names.MONITORING)]:
        if src.ref == controller.ref:
            continue
        verdict = cluster.connect(src, controller, 8443, mode=mode)
        assert verdict, verdict.reason
    for src in [*others, db, ui, mysql]:
        assert not cluster.denied_everywhere(src, controller, [8080, 18080, 443], mode=mode)
    # The UI acts with cluster-wide rights on Experiments and has no login: no pod reaches it.
    ui_service = cluster.service(f"{names.KUBEFLOW}/katib-ui")
    for src in [*others, controller, db, mysql]:
        assert not cluster.denied_everywhere(src, ui_service, [80], mode=mode), src.ref
        assert not cluster.denied_everywhere(src, ui, [8080, *PROBE_PORTS], mode=mode), src.ref


@pytest.mark.parametrize(("stack", "mode"), CASES)
def test_katib_policies_select_nothing_else_in_kubeflow(stack: str, mode: Mode) -> None:
    """The training operator and Pipelines keep the traffic they had: no policy there selects
    them (Prometheus still scrapes the operator)."""
    network = _network(stack)
    katib_policies = [
        p
        for p in network.cluster.policies
        if p["metadata"]["namespace"] == names.KUBEFLOW
        and p["metadata"]["name"].startswith("katib-")
    ]
    assert bool(katib_policies) is stack_settings(stack).kubeflow.katib.enabled
    kubeflow = [p for p in network.cluster.pods if p.namespace == names.KUBEFLOW]
    assert any(KATIB_COMPONENT not in p.labels for p in kubeflow)
    for policy, pod in itertools.product(katib_policies, kubeflow):
        selected = matches(policy["spec"]["podSelector"], pod.labels)
        assert selected is (
            KATIB_COMPONENT in pod.labels
            and policy["metadata"]["name"] in (f"katib-{pod.labels[KATIB_COMPONENT]}")
        ), (policy["metadata"]["name"], pod.ref)
    for monitor, pod, port in network.scrape_targets:
        if pod.namespace == names.KUBEFLOW:
            verdict = network.cluster.connect(network.prometheus, pod, port, mode=mode)
            assert verdict, (monitor, verdict.reason)
