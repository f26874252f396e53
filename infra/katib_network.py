"""NetworkPolicies in `kubeflow` for Katib's own pods, and for nothing else there.

Each policy selects one Katib component by the label its Deployment's pods carry
(kubeflow/katib@v0.19.0:manifests/v1beta1/components/*/: `katib.kubeflow.org/component`, with
the values `controller` (controller/controller.yaml L17), `db-manager` (db-manager/
db-manager.yaml L17), `ui` (ui/ui.yaml L17) and `mysql` (mysql/mysql.yaml L19)), so every other
pod in `kubeflow` keeps the traffic it has.  Only ingress is limited:

- MySQL (3306, mysql.yaml L41-43) takes connections only from the DB manager, its one client
  (pkg/db/v1beta1/mysql/mysql.go L44-57: `katib-mysql:3306`);
- the DB manager (6789, db-manager.yaml L34-35) takes them from the controller
  (pkg/common/v1beta1/katib_manager_util.go L35-57), the UI (pkg/ui/v1beta1/backend.go L82) and
  the teams' trial pods, whose metrics collector reports there
  (pkg/webhook/v1beta1/pod/inject_webhook.go L310; the webhook labels them
  `katib.kubeflow.org/trial`, pod/utils.go L266-284);
- the controller's webhook port (8443, controller.yaml L31-33) is open to any address: the API
  server calls it, from outside the pod network on EKS.  Its metrics and health ports take no
  connection from another pod (the kubelet's probes come from the node, which policies never
  block);
- the UI (8080, ui/ui.yaml L26-34; Service port 80, ui/service.yaml L11-15) takes no
  connection from any pod.  It has no login of its own and acts with its ServiceAccount's
  cluster-wide rights: every verb on Experiments, Trials, Suggestions, ConfigMaps and
  Namespaces (components/ui/rbac.yaml L7-22), so a pod that reached it could start or delete any
  team's experiments.  Admins reach it with `kubectl port-forward`, which the kubelet opens
  inside the pod's own network namespace: no policy applies to it.
"""

from __future__ import annotations

from typing import Any

from infra import katib
from infra.team_network import NAMESPACE_NAME_LABEL

MYSQL_COMPONENT = "mysql"
UI_COMPONENT = "ui"
MYSQL_PORT = 3306
WEBHOOK_PORT = 8443


def _component(name: str) -> dict[str, Any]:
    return {"matchLabels": {katib.COMPONENT_LABEL: name}}


def _tcp(port: int) -> list[dict[str, Any]]:
    return [{"protocol": "TCP", "port": port}]


def katib_policy_specs(teams: list[str]) -> dict[str, dict[str, Any]]:
    """Ingress policies for Katib's MySQL, DB manager and controller; `teams`: the namespaces
    whose trials report metrics."""
    _, db_port = katib.DB_MANAGER_SERVICE
    db_clients: list[dict[str, Any]] = [
        {"podSelector": _component(katib.CONTROLLER_COMPONENT)},
        {"podSelector": _component(UI_COMPONENT)},
    ]
    if teams:
        db_clients.append(
            {
                "namespaceSelector": {
                    "matchExpressions": [
                        {"key": NAMESPACE_NAME_LABEL, "operator": "In", "values": sorted(teams)}
                    ]
                },
                "podSelector": {
                    "matchExpressions": [{"key": katib.TRIAL_LABEL, "operator": "Exists"}]
                },
            }
        )
    return {
        "katib-mysql": {
            "podSelector": _component(MYSQL_COMPONENT),
            "policyTypes": ["Ingress"],
            "ingress": [
                {
                    "from": [{"podSelector": _component(katib.DB_MANAGER_COMPONENT)}],
                    "ports": _tcp(MYSQL_PORT),
                }
            ],
        },
        "katib-db-manager": {
            "podSelector": _component(katib.DB_MANAGER_COMPONENT),
            "policyTypes": ["Ingress"],
            "ingress": [{"from": db_clients, "ports": _tcp(db_port)}],
        },
        "katib-ui": {
            "podSelector": _component(UI_COMPONENT),
            "policyTypes": ["Ingress"],
            "ingress": [],
        },
        "katib-controller": {
            "podSelector": _component(katib.CONTROLLER_COMPONENT),
            "policyTypes": ["Ingress"],
            "ingress": [{"ports": _tcp(WEBHOOK_PORT)}],
        },
    }
