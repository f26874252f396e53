"""The NetworkPolicy evaluator itself (tests/network_policy.py), on small hand-written policies.

Verdicts in mode `upstream` follow the Kubernetes documentation (concepts/services-networking/
network-policies: isolation per direction, additive policies, the AND/OR of peers, named ports
and endPort, ipBlock `except`, policyTypes defaults, the node a pod runs on).  Verdicts in mode
`eks` follow the EKS network policy controller (tests/upstream/eks-network-policy-controller.yaml).
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.network_policy import (
    MODES,
    Cluster,
    ContainerPort,
    Mode,
    Pod,
    Service,
    ServicePort,
    matches,
)
from tests.upstream_facts import facts

CLIENT = Pod("a", "client", {"app": "client"})
OTHER = Pod("c", "other", {"app": "client"})
DB = Pod("b", "db", {"app": "db", "tier": "backend"}, (ContainerPort(8080, "http"),))
NAMESPACE_LABELS = {"a": {"team": "alpha"}, "b": {"team": "beta"}, "c": {"team": "gamma"}}
DENY_ALL = {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}


def _policy(namespace: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"namespace": namespace, "name": name}, "spec": spec}


def _cluster(
    *policies: dict[str, Any], pods: list[Pod] | None = None, services: list[Service] | None = None
) -> Cluster:
    return Cluster(
        {name: dict(labels) for name, labels in NAMESPACE_LABELS.items()},
        list(policies),
        pods if pods is not None else [CLIENT, OTHER, DB],
        services or [],
    )


def _egress_to_b(rule: dict[str, Any]) -> dict[str, Any]:
    """`a` may only send what `rule` allows; `b` admits anything from `a`."""
    return {
        "client": _policy("a", "deny", DENY_ALL),
        "out": _policy("a", "out", {"podSelector": {}, "egress": [rule]}),
        "in": _policy(
            "b",
            "in",
            {
                "podSelector": {},
                "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": "alpha"}}}]}],
            },
        ),
    }


def test_selectors() -> None:
    labels = {"app": "db", "tier": "backend"}
    assert matches({}, labels)
    assert matches(None, labels)
    assert matches({"matchLabels": {"app": "db"}}, labels)
    assert not matches({"matchLabels": {"app": "web"}}, labels)
    expression = [{"key": "tier", "operator": "In", "values": ["backend", "cache"]}]
    assert matches({"matchExpressions": expression}, labels)
    assert not matches({"matchExpressions": [{**expression[0], "operator": "NotIn"}]}, labels)
    assert matches({"matchExpressions": [{"key": "x", "operator": "NotIn", "values": ["1"]}]}, {})
    assert matches({"matchExpressions": [{"key": "tier", "operator": "Exists"}]}, labels)
    assert not matches({"matchExpressions": [{"key": "tier", "operator": "DoesNotExist"}]}, labels)
    # Both parts must hold.
    assert not matches(
        {"matchLabels": {"app": "db"}, "matchExpressions": [{"key": "x", "operator": "Exists"}]},
        labels,
    )


@pytest.mark.parametrize("mode", MODES)
def test_a_pod_no_policy_selects_is_not_isolated(mode: Mode) -> None:
    cluster = _cluster(_policy("b", "web", {"podSelector": {"matchLabels": {"app": "web"}}}))
    assert cluster.connect(CLIENT, cluster.pod("b/db"), 8080, mode=mode)
    assert cluster.connect(cluster.pod("b/db"), cluster.pod("a/client"), 1234, mode=mode)


@pytest.mark.parametrize("mode", MODES)
def test_default_deny_ingress_isolates_one_direction(mode: Mode) -> None:
    cluster = _cluster(_policy("b", "deny", {"podSelector": {}, "policyTypes": ["Ingress"]}))
    db, client = cluster.pod("b/db"), cluster.pod("a/client")
    verdict = cluster.connect(client, db, 8080, mode=mode)
    assert not verdict
    assert "no ingress rule of deny" in verdict.reason
    assert cluster.connect(db, client, 8080, mode=mode)


@pytest.mark.parametrize("mode", MODES)
def test_policy_types_default_to_ingress_plus_egress_when_there_are_egress_rules(
    mode: Mode,
) -> None:
    # No policyTypes and only egress rules: the pod is isolated for ingress too.
    spec: dict[str, Any] = {"podSelector": {}, "egress": [{"to": [{"podSelector": {}}]}]}
    cluster = _cluster(_policy("b", "out", spec))
    db, client = cluster.pod("b/db"), cluster.pod("a/client")
    assert not cluster.connect(client, db, 8080, mode=mode)
    assert not cluster.connect(db, client, 8080, mode=mode)  # egress only within b


@pytest.mark.parametrize("mode", MODES)
def test_namespace_and_pod_selector_in_one_peer_is_and_in_two_peers_is_or(mode: Mode) -> None:
    both = {"namespaceSelector": {"matchLabels": {"team": "alpha"}}}
    pods = {"podSelector": {"matchLabels": {"app": "client"}}}
    anded = _policy("b", "in", {"podSelector": {}, "ingress": [{"from": [{**both, **pods}]}]})
    ored = _policy("b", "in", {"podSelector": {}, "ingress": [{"from": [both, pods]}]})
    local = Pod("b", "local-client", {"app": "client"})
    for policy, local_allowed in ((anded, False), (ored, True)):
        cluster = _cluster(policy, pods=[CLIENT, OTHER, DB, local])
        db = cluster.pod("b/db")
        assert cluster.connect(cluster.pod("a/client"), db, 8080, mode=mode)
        # A podSelector alone means the policy's own namespace: `c` is never admitted.
        assert not cluster.connect(cluster.pod("c/other"), db, 8080, mode=mode)
        assert bool(cluster.connect(cluster.pod("b/local-client"), db, 8080, mode=mode)) is (
            local_allowed
        )


@pytest.mark.parametrize("mode", MODES)
def test_policies_add_up(mode: Mode) -> None:
    def admits(team: str) -> dict[str, Any]:
        peer = {"namespaceSelector": {"matchLabels": {"team": team}}}
        return _policy("b", f"from-{team}", {"podSelector": {}, "ingress": [{"from": [peer]}]})

    cluster = _cluster(admits("alpha"), admits("gamma"))
    db = cluster.pod("b/db")
    assert cluster.connect(cluster.pod("a/client"), db, 8080, mode=mode)
    assert cluster.connect(cluster.pod("c/other"), db, 8080, mode=mode)


@pytest.mark.parametrize("mode", MODES)
def test_ports_numbers_ranges_and_protocols(mode: Mode) -> None:
    def only(ports: list[dict[str, Any]]) -> Cluster:
        rule = {"from": [{"namespaceSelector": {}}], "ports": ports}
        return _cluster(_policy("b", "in", {"podSelector": {}, "ingress": [rule]}))

    client = CLIENT
    ranged = only([{"protocol": "TCP", "port": 8000, "endPort": 8100}])
    assert ranged.connect(client, ranged.pod("b/db"), 8080, mode=mode)
    assert not ranged.connect(client, ranged.pod("b/db"), 8101, mode=mode)
    udp = only([{"protocol": "UDP", "port": 8080}])
    assert not udp.connect(client, udp.pod("b/db"), 8080, "TCP", mode=mode)
    assert udp.connect(client, udp.pod("b/db"), 8080, "UDP", mode=mode)


@pytest.mark.parametrize("mode", MODES)
def test_ip_blocks_and_their_exceptions(mode: Mode) -> None:
    rule = {
        "to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["169.254.169.254/32"]}}],
        "ports": [{"protocol": "TCP", "port": 80}],
    }
    cluster = _cluster(*_egress_to_b(rule).values())
    client = cluster.pod("a/client")
    assert cluster.connect(client, "93.184.216.34", 80, mode=mode)
    assert not cluster.connect(client, "93.184.216.34", 443, mode=mode)
    assert not cluster.connect(client, "169.254.169.254", 80, mode=mode)


@pytest.mark.parametrize("mode", MODES)
def test_both_ends_must_allow(mode: Mode) -> None:
    policies = _egress_to_b({"to": [{"namespaceSelector": {}}]})
    cluster = _cluster(policies["client"], policies["out"], _policy("b", "deny", DENY_ALL))
    verdict = cluster.connect(cluster.pod("a/client"), cluster.pod("b/db"), 8080, mode=mode)
    assert not verdict
    assert "egress allowed by a/out rule 0" in verdict.reason
    assert "no ingress rule of deny" in verdict.reason


def test_the_eks_node_agent_lets_the_node_in_and_out_of_every_pod() -> None:
    """The fact behind the node rule in mode `eks` (the next test checks the rule itself)."""
    agent = facts("eks-network-policy-agent", pinned="v1.4.0")
    assert set(agent["node_ip_allowed_in"]) == {"ingress", "egress"}


@pytest.mark.parametrize("mode", MODES)
def test_the_node_a_pod_runs_on_always_reaches_it(mode: Mode) -> None:
    kubelet = Pod("kube-system", "kubelet", {}, host_network=True, node="node-1")
    elsewhere = Pod("kube-system", "agent", {}, host_network=True, node="node-2")
    cluster = _cluster(
        _policy("b", "deny", DENY_ALL), _policy("kube-system", "deny", DENY_ALL),
        pods=[CLIENT, OTHER, DB, kubelet, elsewhere],
    )  # fmt: skip
    db = cluster.pod("b/db")
    assert cluster.connect(cluster.pod("kube-system/kubelet"), db, 8080, mode=mode)
    assert not cluster.connect(cluster.pod("kube-system/agent"), db, 8080, mode=mode)
    # A pod may always reach its own node; policies never isolate hostNetwork pods.
    assert cluster.connect(db, cluster.nodes["node-1"], 10250, mode=mode)
    assert not cluster.connect(db, cluster.nodes["node-2"], 10250, mode=mode)
    assert cluster.connect(cluster.pod("kube-system/agent"), "10.1.2.3", 22, mode=mode)


# --- Services: where the modes part ---------------------------------------------------------

WEB = Service("b", "db", {"app": "db"}, (ServicePort(80, "http", name="http"),))


def _through(rule: dict[str, Any], services: list[Service] | None = None) -> Cluster:
    return _cluster(*_egress_to_b(rule).values(), services=services or [WEB])


@pytest.mark.parametrize("mode", MODES)
def test_a_service_reached_by_a_rule_on_its_selector_and_target_port(mode: Mode) -> None:
    rule = {
        "to": [
            {
                "namespaceSelector": {"matchLabels": {"team": "beta"}},
                "podSelector": {"matchLabels": {"app": "db"}},
            }
        ],
        "ports": [{"protocol": "TCP", "port": 8080}],
    }
    cluster = _through(rule)
    service, client = cluster.service("b/db"), cluster.pod("a/client")
    assert cluster.connect(client, service, 80, mode=mode)
    assert cluster.connect(client, cluster.pod("b/db"), 8080, mode=mode)


@pytest.mark.parametrize("mode", MODES)
def test_a_namespace_peer_without_pod_selector_reaches_every_service_there(mode: Mode) -> None:
    rule = {
        "to": [{"namespaceSelector": {"matchLabels": {"team": "beta"}}}],
        "ports": [{"protocol": "TCP", "port": 8080}],
    }
    cluster = _through(rule)
    assert cluster.connect(cluster.pod("a/client"), cluster.service("b/db"), 80, mode=mode)


def test_on_eks_a_pod_selector_other_than_the_services_blocks_the_service() -> None:
    # `tier: backend` selects the pod, but the Service selects on `app` only.
    rule = {
        "to": [
            {
                "namespaceSelector": {"matchLabels": {"team": "beta"}},
                "podSelector": {"matchLabels": {"tier": "backend"}},
            }
        ],
        "ports": [{"protocol": "TCP", "port": 8080}],
    }
    cluster = _through(rule)
    service, client = cluster.service("b/db"), cluster.pod("a/client")
    assert cluster.connect(client, service, 80, mode="upstream")
    verdict = cluster.connect(client, service, 80, mode="eks")
    assert not verdict
    assert "(before DNAT)" in verdict.reason
    # The pod itself, by its IP, is reachable in both.
    assert cluster.connect(client, cluster.pod("b/db"), 8080, mode="eks")


@pytest.mark.parametrize("mode", MODES)
def test_a_rule_on_the_service_port_instead_of_the_target_port(mode: Mode) -> None:
    rule = {"to": [{"namespaceSelector": {}}], "ports": [{"protocol": "TCP", "port": 80}]}
    cluster = _through(rule)
    # Upstream judges the target port (8080); EKS maps policy ports through target ports, and no
    # Service port targets 80.
    assert not cluster.connect(cluster.pod("a/client"), cluster.service("b/db"), 80, mode=mode)


def test_on_eks_https_to_anywhere_reaches_a_service_on_443_whatever_its_target() -> None:
    webhook = Service("b", "webhook", {"app": "db"}, (ServicePort(443, 8080),))
    rule = {"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}], "ports": [{"protocol": "TCP", "port": 443}]}
    cluster = _through(rule, [webhook])
    client, service = cluster.pod("a/client"), cluster.service("b/webhook")
    assert not cluster.connect(client, service, 443, mode="upstream")  # judged on 8080
    assert cluster.connect(client, service, 443, mode="eks")  # judged on ClusterIP:443
    # Excepting the service range closes it.
    fenced = {**rule, "to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["172.20.0.0/16"]}}]}
    cluster = _through(fenced, [webhook])
    assert not cluster.connect(client, cluster.service("b/webhook"), 443, mode="eks")


@pytest.mark.parametrize("mode", MODES)
def test_a_headless_service_is_its_pods(mode: Mode) -> None:
    headless = Service("b", "db-0", {"app": "db"}, (ServicePort(8080, 8080),), headless=True)
    rule = {
        "to": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"tier": "backend"}}}],
        "ports": [{"protocol": "TCP", "port": 8080}],
    }
    cluster = _through(rule, [headless])
    assert cluster.connect(cluster.pod("a/client"), cluster.service("b/db-0"), 8080, mode=mode)


def test_on_eks_a_named_target_port_that_escapes_the_rule_drops_the_service() -> None:
    odd = Pod("b", "db-odd", {"app": "db"}, (ContainerPort(9090, "http"),))
    rule = {"to": [{"namespaceSelector": {}}], "ports": [{"protocol": "TCP", "port": 8080}]}
    cluster = Cluster(
        {name: dict(labels) for name, labels in NAMESPACE_LABELS.items()},
        list(_egress_to_b(rule).values()),
        [CLIENT, DB, odd],
        [WEB],
    )
    client, service = cluster.pod("a/client"), cluster.service("b/db")
    upstream = cluster.connect(client, service, 80, mode="upstream")
    assert not upstream
    assert upstream.reaches_any  # the backend on 8080
    eks = cluster.connect(client, service, 80, mode="eks")
    assert not eks.reaches_any


def test_a_service_without_backends_is_refused() -> None:
    nobody = Service("b", "none", {"app": "x"}, (ServicePort(80, 80),))
    cluster = _through({"to": [{"namespaceSelector": {}}]}, [nobody])
    for mode in MODES:
        assert not cluster.connect(
            cluster.pod("a/client"), cluster.service("b/none"), 80, mode=mode
        )


def test_the_eks_mode_covers_what_the_controller_does() -> None:
    """Each behaviour the fixture records is one the tests above pin down in mode `eks`."""
    # EKS runs a managed build of the controller; the fixture was read at the newest tag.
    controller = facts("eks-network-policy-controller", pinned="v1.1.7")
    covered = {
        "same_namespaces_as_peer": test_a_service_reached_by_a_rule_on_its_selector_and_target_port,
        "headless_skipped": test_a_headless_service_is_its_pods,
        "peer_pod_selector_must_match_service_selector": (
            test_on_eks_a_pod_selector_other_than_the_services_blocks_the_service
        ),
        "port_mapping": test_a_rule_on_the_service_port_instead_of_the_target_port,
        "named_target_port_bypass_dropped": (
            test_on_eks_a_named_target_port_that_escapes_the_rule_drops_the_service
        ),
    }
    assert set(controller["service_cluster_ip"]) == set(covered)
    assert controller["service_cluster_ip"]["port_mapping"] == "target-port-then-container-port"
    assert controller["ip_block_named_ports_dropped"] is True
    assert controller["host_network_pods_unselected"] is True
    # A named port cannot apply to an address outside the pod network.
    rule = {
        "to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}],
        "ports": [{"protocol": "TCP", "port": "http"}],
    }
    cluster = _through(rule)
    assert not cluster.connect(cluster.pod("a/client"), "93.184.216.34", 8080, mode="eks")


def test_a_named_ingress_port_is_judged_per_pod_upstream_and_refused_in_eks_mode() -> None:
    """Upstream resolves a named port against each destination pod; the EKS controller merges
    the numbers of every pod the policy selects, which the evaluator does not model."""
    named = {
        "podSelector": {},
        "policyTypes": ["Ingress"],
        "ingress": [{"ports": [{"protocol": "TCP", "port": "http"}]}],
    }
    cluster = _cluster(_policy("b", "named", named))
    db = cluster.pod("b/db")
    client = cluster.pod("a/client")
    assert cluster.connect(client, db, 8080, mode="upstream")
    assert not cluster.connect(client, db, 9090, mode="upstream")
    with pytest.raises(NotImplementedError, match="b/named: a named ingress port"):
        cluster.connect(client, db, 8080, mode="eks")
