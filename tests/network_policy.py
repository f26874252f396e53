"""A NetworkPolicy evaluator for tests: which connections the rendered policies let through.

The cluster is modelled from objects: every NetworkPolicy given (whatever its namespace, so a
policy added later is judged with the rest), the Services, the namespaces' labels, and pods
(built by the caller from the rendered pod templates and the labels the upstream controllers
add).  A connection is judged in one of two modes:

- `upstream`: Kubernetes' semantics (kubernetes.io/docs/concepts/services-networking/
  network-policies).  A pod is isolated for a direction when a policy of its namespace selects
  it with that policy type; an isolated pod accepts what any of those policies' rules allows.  A
  connection through a Service is judged on the backend pod's IP and the target port, at both
  ends (after DNAT).
- `eks`: what EKS enforces with the VPC CNI's network policy agent, from the controller that
  fills its allow lists (tests/upstream/eks-network-policy-controller.yaml).  The agent sees a
  connection on the client's veth before kube-proxy's DNAT, so egress to a Service is judged on
  ClusterIP:servicePort, and a ClusterIP is in an egress rule's allow list only when the
  controller adds it: the peer's podSelector must match the Service's own selector, the Service
  must not be headless, and each policy port is mapped to a Service port.  Ingress is judged on
  the server's veth, after DNAT, as upstream.  The controller resolves a named ingress port once,
  against every pod the policy selects, and merges the numbers (endpoints.go:140-170,
  getIngressRulesPorts :328-353); that is not modelled, so a named ingress port is refused in
  this mode.

In both, a hostNetwork pod is never isolated, and traffic from the node a pod runs on (its
kubelet, hostNetwork pods there) always reaches it: the Kubernetes documentation says so, and
on EKS the node agent allows the node's IP both ways for every pod
(tests/upstream/eks-network-policy-agent.yaml).  Return traffic of an allowed connection is not
modelled (both implementations track connections).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

Mode = Literal["upstream", "eks"]
MODES: tuple[Mode, ...] = ("upstream", "eks")
Protocol = Literal["TCP", "UDP", "SCTP"]
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"

# Addresses the model hands out: pods and nodes in the VPC (as the VPC CNI does), Services from
# EKS's default service range.  Only their distinctness matters to the verdicts.
POD_NETWORK = ipaddress.ip_network("10.0.0.0/17")
NODE_NETWORK = ipaddress.ip_network("10.0.128.0/24")
SERVICE_NETWORK = ipaddress.ip_network("172.20.0.0/16")


@dataclass(frozen=True)
class ContainerPort:
    number: int
    name: str | None = None
    protocol: str = "TCP"


@dataclass(frozen=True)
class Pod:
    """A pod as the policies see it.  `origin` says what it stands for (rendered object,
    upstream controller, or `synthetic: ...` where the stack declares none)."""

    namespace: str
    name: str
    labels: Mapping[str, str]
    ports: tuple[ContainerPort, ...] = ()
    host_network: bool = False
    node: str = "node-1"
    origin: str = ""
    ip: str = ""  # assigned by Cluster

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"

    def container_port(self, name: str, protocol: str) -> int | None:
        """The number of the first container port with this name and protocol."""
        for port in self.ports:
            if port.name == name and port.protocol == protocol:
                return port.number
        return None


@dataclass(frozen=True)
class ServicePort:
    port: int
    target: int | str  # a number, or a container port's name
    protocol: str = "TCP"
    name: str | None = None


@dataclass(frozen=True)
class Service:
    namespace: str
    name: str
    selector: Mapping[str, str]
    ports: tuple[ServicePort, ...]
    headless: bool = False
    cluster_ip: str = ""  # assigned by Cluster

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"

    def port(self, number: int, protocol: str = "TCP") -> ServicePort:
        for port in self.ports:
            if port.port == number and port.protocol == protocol:
                return port
        raise KeyError(f"Service {self.ref} has no port {number}/{protocol}")


@dataclass(frozen=True)
class Verdict:
    """`allowed`: the connection goes through (through a Service: to every backend);
    `partly`: to at least one backend (the same as `allowed` for a pod or an address)."""

    allowed: bool
    reason: str
    partly: bool | None = None

    def __bool__(self) -> bool:
        return self.allowed

    @property
    def reaches_any(self) -> bool:
        return self.allowed if self.partly is None else self.partly


Destination = Pod | Service | str  # a pod's IP, a Service, or an address outside the pod network


@dataclass(frozen=True)
class _Target:
    """What an egress hook sees: address:number/protocol, and what is there (the pod; in mode
    `eks` before DNAT, the Service whose ClusterIP it is; None outside the pod network)."""

    address: str
    number: int
    protocol: str
    dst: Pod | Service | None


def service_from_object(obj: Mapping[str, Any]) -> Service:
    """A Service from its manifest, with the API server's defaults (protocol TCP, targetPort =
    port)."""
    spec = obj["spec"]
    ports = tuple(
        ServicePort(
            port=int(p["port"]),
            target=p.get("targetPort", int(p["port"])),
            protocol=p.get("protocol", "TCP"),
            name=p.get("name"),
        )
        for p in spec.get("ports", [])
    )
    return Service(
        namespace=obj["metadata"]["namespace"],
        name=obj["metadata"]["name"],
        selector=dict(spec.get("selector") or {}),
        ports=ports,
        headless=spec.get("clusterIP") == "None",
    )


def container_ports(pod_spec: Mapping[str, Any]) -> tuple[ContainerPort, ...]:
    """The container ports of a pod spec, in declaration order (protocol defaults to TCP)."""
    return tuple(
        ContainerPort(int(p["containerPort"]), p.get("name"), p.get("protocol", "TCP"))
        for container in pod_spec.get("containers", [])
        for p in container.get("ports", [])
    )


def pod_from_template(
    namespace: str, name: str, template: Mapping[str, Any], origin: str, **extra_labels: str
) -> Pod:
    """A pod created from a pod template (Deployment, StatefulSet, Job ...), with the labels its
    controller adds."""
    spec = template.get("spec", {})
    labels = {**template.get("metadata", {}).get("labels", {}), **extra_labels}
    return Pod(
        namespace=namespace,
        name=name,
        labels=labels,
        ports=container_ports(spec),
        host_network=bool(spec.get("hostNetwork", False)),
        origin=origin,
    )


def _expression_holds(expression: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    key, operator = expression["key"], expression["operator"]
    values = expression.get("values") or []
    holds = {
        "In": key in labels and labels[key] in values,
        "NotIn": key not in labels or labels[key] not in values,
        "Exists": key in labels,
        "DoesNotExist": key not in labels,
    }
    if operator not in holds:
        raise ValueError(f"unknown selector operator {operator!r}")
    return holds[operator]


def matches(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """Whether a LabelSelector (matchLabels and matchExpressions) matches a label set.  An empty
    selector matches everything."""
    if not selector:
        return True
    wanted = selector.get("matchLabels") or {}
    return all(labels.get(key) == value for key, value in wanted.items()) and all(
        _expression_holds(e, labels) for e in selector.get("matchExpressions") or []
    )


def policy_types(spec: Mapping[str, Any]) -> list[str]:
    """spec.policyTypes, or the API server's default: Ingress, and Egress with egress rules."""
    if "policyTypes" in spec:
        return list(spec["policyTypes"])
    return ["Ingress", *(["Egress"] if "egress" in spec else [])]


def in_block(block: Mapping[str, Any], address: str) -> bool:
    ip = ipaddress.ip_address(address)
    if ip not in ipaddress.ip_network(block["cidr"]):
        return False
    return not any(ip in ipaddress.ip_network(cidr) for cidr in block.get("except", []))


@dataclass
class Cluster:
    """Namespaces (name -> labels), NetworkPolicy manifests, Services and pods."""

    namespaces: dict[str, dict[str, str]]
    policies: Sequence[Mapping[str, Any]]
    pods: list[Pod] = field(default_factory=list)
    services: list[Service] = field(default_factory=list)
    nodes: dict[str, str] = field(default_factory=dict)  # node name -> IP

    def __post_init__(self) -> None:
        pod_ips = POD_NETWORK.hosts()
        node_ips = NODE_NETWORK.hosts()
        service_ips = SERVICE_NETWORK.hosts()
        for pod in self.pods:
            if pod.node not in self.nodes:
                self.nodes[pod.node] = str(next(node_ips))
        self.pods = [
            replace(p, ip=self.nodes[p.node] if p.host_network else str(next(pod_ips)))
            for p in self.pods
        ]
        self.services = [
            s if s.headless else replace(s, cluster_ip=str(next(service_ips)))
            for s in self.services
        ]
        # The API server labels every namespace with its name.
        for namespace in {p.namespace for p in self.pods} | {s.namespace for s in self.services}:
            self.namespaces.setdefault(namespace, {})
        for name, labels in self.namespaces.items():
            labels.setdefault(NAMESPACE_NAME_LABEL, name)

    # --- lookups -------------------------------------------------------------------------

    def pod(self, ref: str) -> Pod:
        return next(p for p in self.pods if p.ref == ref)

    def service(self, ref: str) -> Service:
        return next(s for s in self.services if s.ref == ref)

    def backends(self, service: Service) -> list[Pod]:
        """The Service's endpoints: pods of its namespace its (non-empty) selector matches."""
        if not service.selector:
            return []
        return [
            p
            for p in self.pods
            if p.namespace == service.namespace
            and all(p.labels.get(k) == v for k, v in service.selector.items())
        ]

    @staticmethod
    def target_port(service_port: ServicePort, pod: Pod) -> int | None:
        """The port on `pod` a Service port forwards to (None: a named port the pod lacks)."""
        if isinstance(service_port.target, int):
            return service_port.target
        return pod.container_port(service_port.target, service_port.protocol)

    def _selecting(self, pod: Pod, direction: str) -> list[Mapping[str, Any]]:
        """The policies that isolate `pod` for a direction (none for hostNetwork pods)."""
        if pod.host_network:
            return []
        return [
            policy
            for policy in self.policies
            if policy["metadata"]["namespace"] == pod.namespace
            and matches(policy["spec"].get("podSelector"), pod.labels)
            and direction in policy_types(policy["spec"])
        ]

    def _peer_namespaces(self, policy: Mapping[str, Any], peer: Mapping[str, Any]) -> set[str]:
        if "namespaceSelector" not in peer:
            return {policy["metadata"]["namespace"]}
        return {
            name
            for name, labels in self.namespaces.items()
            if matches(peer["namespaceSelector"], labels)
        }

    def _peer_has_pod(self, policy: Mapping[str, Any], peer: Mapping[str, Any], pod: Pod) -> bool:
        if "ipBlock" in peer:
            return in_block(peer["ipBlock"], pod.ip)
        return pod.namespace in self._peer_namespaces(policy, peer) and matches(
            peer.get("podSelector"), pod.labels
        )

    @staticmethod
    def _port_allows(
        rule_port: Mapping[str, Any], number: int, protocol: str, pod: Pod | None
    ) -> bool:
        """Whether one NetworkPolicyPort admits `number`/`protocol` on `pod` (named ports are
        resolved against the pod; for an address outside the pod network they match nothing)."""
        if rule_port.get("protocol", "TCP") != protocol:
            return False
        port = rule_port.get("port")
        if port is None:
            return True
        if isinstance(port, str):
            return pod is not None and pod.container_port(port, protocol) == number
        return int(port) <= number <= int(rule_port.get("endPort", port))

    def _ports_allow(
        self, rule: Mapping[str, Any], number: int, protocol: str, pod: Pod | None
    ) -> bool:
        ports = rule.get("ports") or []
        return not ports or any(self._port_allows(p, number, protocol, pod) for p in ports)

    # --- the EKS controller's Service handling (eks-network-policy-controller.yaml) ------------

    def _listen_port(self, service: Service, np_port: int | str, protocol: str) -> int | None:
        """The Service port a policy port maps to (endpoints.go getMatchingServicePort)."""
        for sp in service.ports:  # LookupServiceListenPort: the targetPort literally
            if (
                type(sp.target) is type(np_port)
                and str(sp.target) == str(np_port)
                and sp.protocol == protocol
            ):
                return sp.port
        for pod in self.backends(service):  # LookupListenPortFromPodSpec
            number: int | None
            name: str | None = None
            found = next(
                (
                    cp
                    for cp in pod.ports
                    if cp.protocol == protocol
                    and (cp.name == np_port if isinstance(np_port, str) else cp.number == np_port)
                ),
                None,
            )
            if found is not None:
                number, name = found.number, found.name
            elif isinstance(np_port, int):
                number = np_port
            else:
                continue
            for sp in service.ports:
                if sp.protocol != protocol:
                    continue
                if isinstance(sp.target, str) and sp.target == name:
                    return sp.port
                if isinstance(sp.target, int) and sp.target == number:
                    return sp.port
        return None

    def _bypass(
        self, service: Service, listen: int, protocol: str, rule_ports: Sequence[Mapping[str, Any]]
    ) -> bool:
        """hasTargetPortBypass: a named targetPort resolving to a port the rule does not allow."""
        named = next(
            (
                sp.target
                for sp in service.ports
                if sp.port == listen and sp.protocol == protocol and isinstance(sp.target, str)
            ),
            None,
        )
        if named is None:
            return False
        for pod in self.backends(service):
            number = pod.container_port(str(named), protocol)
            if number is not None and not any(
                p.get("protocol", "TCP") == protocol
                and (
                    p.get("port") is None
                    or (
                        isinstance(p["port"], int)
                        and int(p["port"]) <= number <= int(p.get("endPort", p["port"]))
                    )
                )
                for p in rule_ports
            ):
                return True
        return False

    def _eks_cluster_ip_allowed(
        self,
        policy: Mapping[str, Any],
        rule: Mapping[str, Any],
        peer: Mapping[str, Any],
        to: _Target,
    ) -> bool:
        """Whether the controller puts the ClusterIP:port of `to` in this peer's allow list."""
        service = to.dst
        assert isinstance(service, Service)
        if service.headless or service.namespace not in self._peer_namespaces(policy, peer):
            return False
        if not matches(peer.get("podSelector"), service.selector):
            return False
        rule_ports = rule.get("ports") or []
        if not rule_ports:
            return True
        for rule_port in rule_ports:
            np_protocol = rule_port.get("protocol", "TCP")
            np_port = rule_port.get("port")
            if np_protocol != to.protocol:
                continue
            if np_port is None:
                return True
            listen = self._listen_port(service, np_port, np_protocol)
            if listen is None:
                continue
            if isinstance(np_port, int) and self._bypass(service, listen, to.protocol, rule_ports):
                continue
            if listen <= to.number <= int(rule_port.get("endPort", listen)):
                return True
        return False

    # --- verdicts -------------------------------------------------------------------------

    def _egress(self, src: Pod, to: _Target, mode: Mode) -> Verdict:
        policies = self._selecting(src, "Egress")
        if not policies:
            return Verdict(True, f"{src.ref} is not isolated for egress")
        if to.address == self.nodes.get(src.node):
            return Verdict(True, f"{src.ref} -> its own node")
        for policy in policies:
            for index, rule in enumerate(policy["spec"].get("egress") or []):
                if self._egress_rule_allows(policy, rule, to, mode):
                    name = f"{policy['metadata']['namespace']}/{policy['metadata']['name']}"
                    return Verdict(True, f"egress allowed by {name} rule {index}")
        names = ", ".join(sorted(p["metadata"]["name"] for p in policies))
        return Verdict(
            False, f"{src.ref} -> {to.address}:{to.number}/{to.protocol}: no egress rule of {names}"
        )

    def _egress_rule_allows(
        self, policy: Mapping[str, Any], rule: Mapping[str, Any], to: _Target, mode: Mode
    ) -> bool:
        pod = to.dst if isinstance(to.dst, Pod) else None
        everywhere = [{"ipBlock": {"cidr": "0.0.0.0/0"}}, {"ipBlock": {"cidr": "::/0"}}]
        for peer in rule.get("to") or everywhere:
            if "ipBlock" in peer:
                # The EKS controller drops named ports for CIDRs (they match nothing here).
                resolve = pod if mode == "upstream" else None
                if in_block(peer["ipBlock"], to.address) and self._ports_allow(
                    rule, to.number, to.protocol, resolve
                ):
                    return True
            elif isinstance(to.dst, Service):
                if self._eks_cluster_ip_allowed(policy, rule, peer, to):
                    return True
            elif (
                pod is not None
                and self._peer_has_pod(policy, peer, pod)
                and self._ports_allow(rule, to.number, to.protocol, pod)
            ):
                return True
        return False

    def _ingress(self, src: Pod, dst: Pod, number: int, protocol: str, mode: Mode) -> Verdict:
        """Ingress into dst on number/protocol (after DNAT; the same in both modes, but for
        named ports, which mode `eks` refuses: see the module's docstring)."""
        policies = self._selecting(dst, "Ingress")
        if mode == "eks":
            for policy in policies:
                for rule in policy["spec"].get("ingress") or []:
                    if any(isinstance(p.get("port"), str) for p in rule.get("ports") or []):
                        raise NotImplementedError(
                            f"{policy['metadata']['namespace']}/{policy['metadata']['name']}: "
                            "a named ingress port, which the EKS controller resolves across "
                            "every pod the policy selects; this evaluator does not model that"
                        )
        if not policies:
            return Verdict(True, f"{dst.ref} is not isolated for ingress")
        if src.host_network and src.node == dst.node:
            return Verdict(True, f"{src.ref} is on {dst.ref}'s node")
        for policy in policies:
            for index, rule in enumerate(policy["spec"].get("ingress") or []):
                peers = rule.get("from") or []
                if (not peers or any(self._peer_has_pod(policy, p, src) for p in peers)) and (
                    self._ports_allow(rule, number, protocol, dst)
                ):
                    name = f"{policy['metadata']['namespace']}/{policy['metadata']['name']}"
                    return Verdict(True, f"ingress allowed by {name} rule {index}")
        names = ", ".join(sorted(p["metadata"]["name"] for p in policies))
        return Verdict(
            False, f"{src.ref} -> {dst.ref}:{number}/{protocol}: no ingress rule of {names}"
        )

    def _to_pod(self, src: Pod, dst: Pod, number: int, protocol: str, mode: Mode) -> Verdict:
        out = self._egress(src, _Target(dst.ip, number, protocol, dst), mode)
        if not out:
            return out
        into = self._ingress(src, dst, number, protocol, mode)
        return Verdict(into.allowed, f"{out.reason}; {into.reason}")

    def connect(
        self,
        src: Pod,
        dst: Destination,
        port: int,
        protocol: str = "TCP",
        *,
        mode: Mode,
    ) -> Verdict:
        """Whether src can open a connection to dst on port (a Service's port for a Service).

        Through a Service the verdict is `allowed` only when every backend is reachable, and its
        reason lists each backend; a Service with no backend is refused."""
        if isinstance(dst, str):
            return self._egress(src, _Target(dst, port, protocol, None), mode)
        if isinstance(dst, Pod):
            return self._to_pod(src, dst, port, protocol, mode)
        service_port = dst.port(port, protocol)
        backends = self.backends(dst)
        if not backends:
            return Verdict(False, f"Service {dst.ref} has no backend")
        verdicts: list[tuple[Pod, Verdict]] = []
        for pod in backends:
            target = self.target_port(service_port, pod)
            if target is None:
                continue  # not an endpoint of this port
            if mode == "eks" and not dst.headless:
                out = self._egress(src, _Target(dst.cluster_ip, port, protocol, dst), mode)
                if not out:
                    verdicts.append((pod, Verdict(False, f"{out.reason} (before DNAT)")))
                    continue
                into = self._ingress(src, pod, target, protocol, mode)
                verdicts.append((pod, Verdict(into.allowed, f"{out.reason}; {into.reason}")))
            else:
                verdicts.append((pod, self._to_pod(src, pod, target, protocol, mode)))
        if not verdicts:
            return Verdict(False, f"Service {dst.ref} port {port} has no endpoint")
        reason = "; ".join(f"[{pod.ref}] {v.reason}" for pod, v in verdicts)
        return Verdict(all(v for _, v in verdicts), reason, any(v for _, v in verdicts))

    def denied_everywhere(
        self, src: Pod, dst: Destination, ports: Iterable[int], protocol: str = "TCP", *, mode: Mode
    ) -> list[str]:
        """The reasons of every connection among `ports` that reaches anything (empty: all
        denied)."""
        return [
            f"{port}: {verdict.reason}"
            for port in ports
            if (verdict := self.connect(src, dst, port, protocol, mode=mode)).reaches_any
        ]
