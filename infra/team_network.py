"""Team namespace isolation: deny by default, then allow what the team's workloads need.

Allowed: traffic inside the namespace (training workers and parameter servers talk to each other,
notebooks reach the team's own services), DNS, calls to the served models in `serving`, the
notebook controller's idle checks, on EKS the node's Pod Identity agent (the workloads' AWS
credentials), and (unless switched off) HTTPS out of the cluster for package indexes, S3 and model
hubs.  Nothing in a team namespace is scraped (no ServiceMonitor or PodMonitor selects it, and
teams cannot create one), so nothing in `monitoring` is let in: Grafana or Alertmanager must not
reach a notebook's token-less Jupyter.
Shared volumes need no rule: the kubelet mounts NFS and EFS from the node's network namespace,
which NetworkPolicies do not govern.  On EKS the VPC CNI's network policy agent
(enabled by the add-on's configuration) enforces these; on an existing cluster its CNI must.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import pulumi
import pulumi_kubernetes as k8s

from infra import katib, labels, names
from infra.settings import Settings, TeamSettings

NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"
NOTEBOOK_PORT = 8888
DNS_PODS = {"k8s-app": "kube-dns"}  # CoreDNS's pods, as EKS and kubeadm label them
# Where the EKS Pod Identity agent (host network, on every node) hands out credentials.
POD_IDENTITY_AGENT = ("169.254.170.23/32", "fd00:ec2::23/128")
POD_IDENTITY_PORT = 80


def namespace_peer(name: str) -> dict[str, Any]:
    """A NetworkPolicy peer for every pod of one namespace (by the label the API server sets)."""
    return {"namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: name}}}


def baseline_specs() -> dict[str, dict[str, Any]]:
    """What every isolated namespace gets: deny by default, then its own pods and DNS."""
    everything: dict[str, Any] = {}
    specs: dict[str, dict[str, Any]] = {
        "default-deny": {"podSelector": everything, "policyTypes": ["Ingress", "Egress"]},
        "same-namespace": {
            "podSelector": everything,
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [{"from": [{"podSelector": everything}]}],
            "egress": [{"to": [{"podSelector": everything}]}],
        },
        "dns": {
            "podSelector": everything,
            "policyTypes": ["Egress"],
            "egress": [
                {
                    # On EKS the kube-dns ClusterIP is let through because this podSelector
                    # matches the Service's own selector (see policy_specs' `serving` rule).
                    "to": [
                        {**namespace_peer("kube-system"), "podSelector": {"matchLabels": DNS_PODS}}
                    ],
                    "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
                }
            ],
        },
    }  # fmt: skip
    return specs


def policy_specs(
    settings: Settings, team: TeamSettings, *, model_ports: Sequence[int]
) -> dict[str, dict[str, Any]]:
    """NetworkPolicy specs by name, for one team namespace; `model_ports` are those `serving`
    admits callers on."""
    everything: dict[str, Any] = {}
    specs = baseline_specs()
    if settings.serving.enabled:
        # No podSelector: on EKS the VPC CNI judges a connection to a Service on the client's
        # side before DNAT (ClusterIP:port), and the network policy controller adds a Service's
        # ClusterIP to an egress rule only when the rule's podSelector matches the Service's own
        # selector (aws/amazon-network-policy-controller-k8s@v1.1.7:pkg/resolvers/endpoints.go
        # L451-515); the model Services select on their name alone, so a podSelector on the
        # component would block every call through a Service.  The rule lists target ports:
        # the controller maps them to the Service ports (inference: 80 -> http 8080) through
        # the backends' named container ports (@v1.1.7:pkg/k8s/service_utils.go L13-46,
        # endpoints.go L676-707).  Serving's own ingress policy still admits only the model
        # servers and inference APIs on these ports.
        specs["serving"] = {
            "podSelector": everything,
            "policyTypes": ["Egress"],
            "egress": [
                {
                    "to": [namespace_peer(names.SERVING)],
                    "ports": [{"protocol": "TCP", "port": port} for port in model_ports],
                }
            ],
        }
    if settings.kubeflow.notebooks.enabled:
        # The controller asks each notebook's Jupyter API whether it is idle (culling).
        specs["notebook-controller"] = {
            "podSelector": {"matchExpressions": [{"key": "notebook-name", "operator": "Exists"}]},
            "policyTypes": ["Ingress"],
            "ingress": [
                {
                    "from": [namespace_peer(names.NOTEBOOK_CONTROLLER)],
                    "ports": [{"protocol": "TCP", "port": NOTEBOOK_PORT}],
                }
            ],
        }
    if settings.kubeflow.katib.enabled:
        specs.update(katib_specs())
    if settings.cluster.mode == "eks":
        specs["pod-identity"] = {
            "podSelector": everything,
            "policyTypes": ["Egress"],
            "egress": [
                {
                    "to": [{"ipBlock": {"cidr": cidr}} for cidr in POD_IDENTITY_AGENT],
                    "ports": [{"protocol": "TCP", "port": POD_IDENTITY_PORT}],
                }
            ],
        }
    if team.network.https_egress:
        specs["https-egress"] = {
            "podSelector": everything,
            "policyTypes": ["Egress"],
            "egress": [
                {
                    "to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}],
                    "ports": [{"protocol": "TCP", "port": 443}],
                }
            ],
        }
    return specs


def katib_specs() -> dict[str, dict[str, Any]]:
    """Katib's two flows into and out of a team namespace (kubeflow/katib@v0.19.0).

    - A trial's metrics collector reports to `katib-db-manager.kubeflow:6789`
      (pkg/common/v1beta1/katib_manager_util.go L35-45, consts/const.go L159-169; the sidecar is
      given that address, pkg/webhook/v1beta1/pod/inject_webhook.go L310).  Trial pods carry the
      label `katib.kubeflow.org/trial` (pod/utils.go L266-284); the podSelector on the peer
      matches the Service's own selector, which is what lets the ClusterIP through on EKS (see
      the `serving` rule in `policy_specs`).
    - The controller calls the experiment's suggestion service on port 6789 in the team's
      namespace (pkg/controller.v1beta1/suggestion/suggestionclient/suggestionclient.go L93,
      util/suggestion.go L51-58: `<suggestion>-<algorithm>.<namespace>:6789`).
    """
    _, db_port = katib.DB_MANAGER_SERVICE
    return {
        "katib-metrics": {
            "podSelector": {"matchExpressions": [{"key": katib.TRIAL_LABEL, "operator": "Exists"}]},
            "policyTypes": ["Egress"],
            "egress": [
                {
                    "to": [
                        {
                            **namespace_peer(names.KUBEFLOW),
                            "podSelector": {
                                "matchLabels": {katib.COMPONENT_LABEL: katib.DB_MANAGER_COMPONENT}
                            },
                        }
                    ],
                    "ports": [{"protocol": "TCP", "port": db_port}],
                }
            ],
        },
        "katib-suggestion": {
            "podSelector": {
                "matchExpressions": [{"key": katib.SUGGESTION_LABEL, "operator": "Exists"}]
            },
            "policyTypes": ["Ingress"],
            "ingress": [
                {
                    "from": [
                        {
                            **namespace_peer(names.KUBEFLOW),
                            "podSelector": {
                                "matchLabels": {katib.COMPONENT_LABEL: katib.CONTROLLER_COMPONENT}
                            },
                        }
                    ],
                    "ports": [{"protocol": "TCP", "port": katib.SUGGESTION_PORT}],
                }
            ],
        },
    }


class NamespaceNetworkPolicies(pulumi.ComponentResource):
    """NetworkPolicies of one namespace, from specs by name (see `baseline_specs`)."""

    def __init__(
        self,
        name: str,
        *,
        namespace: k8s.core.v1.Namespace,
        namespace_name: str,
        specs: dict[str, dict[str, Any]],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("ml-platform:tenancy:NamespaceNetworkPolicies", name, None, opts)
        for policy_name, spec in specs.items():
            k8s.networking.v1.NetworkPolicy(
                f"{name}-{policy_name}",
                metadata=k8s.meta.v1.ObjectMetaArgs(
                    name=policy_name, namespace=namespace_name, labels=labels.common("tenancy")
                ),
                # Plain dicts, so tests read the same specs; the SDK accepts them as they are.
                spec=cast(k8s.networking.v1.NetworkPolicySpecArgsDict, spec),
                opts=pulumi.ResourceOptions(parent=self, depends_on=[namespace]),
            )
        self.register_outputs({})
