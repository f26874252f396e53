"""How a team reaches Kubeflow Pipelines, for teams with `access.pipelines` (off by default).

Standalone Pipelines (KFP_REF) is single-user: it has no notion of teams, every pipeline and run
is visible to, and can be run or deleted by, whoever reaches its API, and every run executes in
`kubeflow` (infra/names.py PIPELINE_RUNS).  So access is an opt-in per team, and every team given
it shares all of Pipelines with the others.

Two ways in, both to the API server `ml-pipeline` and the UI `ml-pipeline-ui` only (never to
MySQL, SeaweedFS or the metadata store, which is why this grants no `pods/portforward` in
`kubeflow`):

- from the team's pods (notebooks, jobs): the NetworkPolicy `pipelines-egress`, written here
  beside the team's other policies (infra/team_network.py), lets them open connections to those
  two Services' pods;
- from engineers' machines: the Role below lets the team's `ml-engineer` group use the Kubernetes
  API server's service proxy to those two Services, by the names the Kubernetes RBAC authorizer
  compares: a request to `.../services/<name>/proxy/...` is authorized on `services/proxy` with
  the literal `<name>` of the URL, which may be `svc`, `svc:port` or `scheme:svc:port`
  (kubernetes/kubernetes: staging/src/k8s.io/apiserver/pkg/endpoints/request/requestinfo.go, the
  name is the path segment after `services`; pkg/apis/rbac/v1/evaluation_helpers.go
  ResourceNameMatches compares strings exactly; pkg/registry/core/service/storage/storage.go
  ResourceLocation accepts those three forms).  Only `<service>:http` is granted: the kfp SDK's
  own spelling when it finds no host (kfp 2.17.3 `kfp/client/client.py` _KUBE_PROXY_PATH,
  `services/ml-pipeline:http/proxy/`), used the same way for the UI.

Services, selectors and ports: kubeflow/pipelines@2.17.0 manifests (tests/upstream/
kubeflow-pipelines-access.yaml).
"""

from __future__ import annotations

from typing import Any, cast

import pulumi
import pulumi_kubernetes as k8s

from infra import labels, names
from infra.settings import TeamSettings
from infra.team_access import ENGINEER, bind_role_to_group, group

NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"  # set by the API server on every namespace
POLICY = "pipelines-egress"
ROLE = "pipelines-user"
API_SERVICE = "ml-pipeline"
UI_SERVICE = "ml-pipeline-ui"
# kubeflow/pipelines@2.17.0: base/pipeline/ml-pipeline-apiserver-service.yaml and
# ml-pipeline-ui-service.yaml select `app`; env/platform-agnostic/kustomization.yaml adds
# `application-crd-id: kubeflow-pipelines` to every selector (`labels` with includeSelectors).
_INSTALL = {"application-crd-id": "kubeflow-pipelines"}
API_PODS = {"app": API_SERVICE, **_INSTALL}
UI_PODS = {"app": UI_SERVICE, **_INSTALL}
# The pods' ports, which are the Services' target ports: API HTTP 8888 and gRPC 8887 (Service
# ports equal), UI 3000 (behind Service port 80, `http`).
API_PORTS = (8888, 8887)
UI_PORTS = (3000,)
PROXY_PORT_NAME = "http"  # both Services name the port clients use `http`
PROXY_VERBS = ["get", "create", "update", "patch", "delete"]  # the HTTP methods the UI uses


def _to_pods(selector: dict[str, str], ports: tuple[int, ...]) -> dict[str, Any]:
    return {
        "to": [
            {
                "namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: names.KUBEFLOW}},
                "podSelector": {"matchLabels": selector},
            }
        ],
        "ports": [{"protocol": "TCP", "port": port} for port in ports],
    }


def egress_policy_specs(team: TeamSettings) -> dict[str, dict[str, Any]]:
    """The team namespace's policy to the Pipelines API and UI pods, if the team has access.

    Each podSelector is exactly the Service's `.spec.selector`, and the ports are the pods'
    (target) ports.  Both matter on EKS: the VPC CNI's policy agent sees a connection to a
    Service before DNAT, at ClusterIP:port, and its controller adds a Service's ClusterIP to an
    egress rule only when the rule's podSelector matches the Service's selector, mapping each
    target port of the rule to the Service port in front of it
    (aws/amazon-network-policy-controller-k8s@ecc7e6a pkg/resolvers/endpoints.go
    getMatchingServiceClusterIPs, getMatchingServicePort; pkg/k8s/service_utils.go
    LookupServiceListenPort).  Upstream semantics judge the pod IP and target port, which the
    same rule allows.
    """
    if not team.access.pipelines:
        return {}
    return {
        POLICY: {
            "podSelector": {},
            "policyTypes": ["Egress"],
            "egress": [_to_pods(API_PODS, API_PORTS), _to_pods(UI_PODS, UI_PORTS)],
        }
    }


def proxied_services() -> list[str]:
    """The service-proxy names engineers may use, as the RBAC authorizer compares them."""
    return [f"{service}:{PROXY_PORT_NAME}" for service in (API_SERVICE, UI_SERVICE)]


def proxy_rules() -> list[k8s.rbac.v1.PolicyRuleArgs]:
    return [
        k8s.rbac.v1.PolicyRuleArgs(
            api_groups=[""],
            resources=["services/proxy"],
            resource_names=proxied_services(),
            verbs=PROXY_VERBS,
        )
    ]


class PipelinesAccess(pulumi.ComponentResource):
    """Each opted-in team's `pipelines-egress` policy, and in `kubeflow` the service-proxy Role,
    bound to those teams' engineers.

    Viewers get nothing: standalone Pipelines has no read-only user, whoever reaches it may
    create and delete runs.
    """

    def __init__(
        self,
        name: str,
        *,
        teams: list[TeamSettings],
        namespaces: dict[str, k8s.core.v1.Namespace],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        """`namespaces`: the namespaces by name, `kubeflow` and the teams' among them."""
        super().__init__("ml-platform:tenancy:PipelinesAccess", name, None, opts)
        role = k8s.rbac.v1.Role(
            f"{name}-role",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=ROLE, namespace=names.KUBEFLOW, labels=labels.common("tenancy")
            ),
            rules=proxy_rules(),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[namespaces[names.KUBEFLOW]]),
        )
        for team in teams:
            for policy_name, spec in egress_policy_specs(team).items():
                k8s.networking.v1.NetworkPolicy(
                    f"{name}-{team.name}-{policy_name}",
                    metadata=k8s.meta.v1.ObjectMetaArgs(
                        name=policy_name, namespace=team.name, labels=labels.common("tenancy")
                    ),
                    # A plain dict, as infra/team_network.py writes its specs.
                    spec=cast(k8s.networking.v1.NetworkPolicySpecArgsDict, spec),
                    opts=pulumi.ResourceOptions(parent=self, depends_on=[namespaces[team.name]]),
                )
            if not team.access.pipelines:
                continue
            bind_role_to_group(
                f"{name}-{team.name}",
                metadata=k8s.meta.v1.ObjectMetaArgs(
                    name=f"{ROLE}-{team.name}",
                    namespace=names.KUBEFLOW,
                    labels=labels.common("tenancy"),
                ),
                role_name=ROLE,
                group_name=group(team.name, ENGINEER),
                opts=pulumi.ResourceOptions(parent=self, depends_on=[role]),
            )
        self.register_outputs({})
