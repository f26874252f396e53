"""Who may use a team's namespace: two Roles bound to Kubernetes groups, and (on EKS) the access
entries that put IAM principals into those groups.

No EKS access policy is associated with these entries: the groups get exactly the Roles below, in
the team's namespace only.  On an existing cluster the same groups must come from its own
authenticator (OIDC claims, for instance).
"""

from __future__ import annotations

import hashlib

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from infra import labels
from infra.settings import TeamSettings

ENGINEER = "ml-engineer"
VIEWER = "viewer"
READ = ["get", "list", "watch"]
WRITE = [*READ, "create", "update", "patch", "delete"]


def group(team: str, role: str) -> str:
    return f"ml-platform:{team}:{role}"


def _rule(api_group: str, resources: list[str], verbs: list[str]) -> k8s.rbac.v1.PolicyRuleArgs:
    return k8s.rbac.v1.PolicyRuleArgs(api_groups=[api_group], resources=resources, verbs=verbs)


JOBS = ["tfjobs", "pytorchjobs", "notebooks", "experiments"]
# What Katib makes of an Experiment (kubeflow/katib@v0.19.0:manifests/v1beta1/components/crd):
# its trials (with their metrics) and its suggestion, read to follow it and find the best trial.
KATIB_RECORDS = ["trials", "suggestions"]
# The namespace's quota and defaults (infra/team_quota.py), so a team sees what it may request.
LIMITS = ["resourcequotas", "limitranges"]
OBSERVE = ["pods", "pods/log", "events", "services", "persistentvolumeclaims", *LIMITS]
# Shell access: `kubectl exec`, and `kubectl port-forward`, which reaches any port of any pod of
# the namespace, notebooks' token-less Jupyter included (a terminal and kernels in the pod:
# kubeflow/kubeflow@v1.10.0:components/example-notebook-servers/jupyter/s6/services.d/
# jupyterlab/run starts it with `--ServerApp.token="" --ServerApp.password=""`).
SHELL = ["pods/exec", "pods/portforward"]


def engineer_rules(exec_allowed: bool) -> list[k8s.rbac.v1.PolicyRuleArgs]:
    """Run and watch the team's jobs and notebooks; a shell in its pods only with `exec`.

    Creating a Notebook, TFJob or PyTorchJob runs any command, as any ServiceAccount of the
    namespace and with its volumes, whatever `exec` says: `exec: false` takes away interactive
    access to running pods, not the running of code.
    """
    rules = [
        _rule("kubeflow.org", JOBS, WRITE),
        _rule("kubeflow.org", [f"{kind}/status" for kind in JOBS], READ),
        _rule("kubeflow.org", KATIB_RECORDS, READ),
        _rule("", [*OBSERVE, "configmaps"], READ),
        _rule("", ["pods"], ["delete"]),  # restart a stuck pod
    ]
    if exec_allowed:
        rules.append(_rule("", SHELL, ["create"]))  # notebooks, TensorBoard, debugging
    return rules


def viewer_rules() -> list[k8s.rbac.v1.PolicyRuleArgs]:
    return [_rule("kubeflow.org", [*JOBS, *KATIB_RECORDS], READ), _rule("", OBSERVE, READ)]


def bind_role_to_group(
    resource_name: str,
    *,
    metadata: k8s.meta.v1.ObjectMetaArgs,
    role_name: str,
    group_name: str,
    opts: pulumi.ResourceOptions,
) -> k8s.rbac.v1.RoleBinding:
    """A RoleBinding of the Role `role_name` (in the binding's namespace) to one group."""
    return k8s.rbac.v1.RoleBinding(
        resource_name,
        metadata=metadata,
        role_ref=k8s.rbac.v1.RoleRefArgs(
            api_group="rbac.authorization.k8s.io", kind="Role", name=role_name
        ),
        subjects=[
            k8s.rbac.v1.SubjectArgs(
                kind="Group", name=group_name, api_group="rbac.authorization.k8s.io"
            )
        ],
        opts=opts,
    )


class TeamAccess(pulumi.ComponentResource):
    """The team's `ml-engineer` and `viewer` Roles and their group bindings."""

    def __init__(
        self,
        name: str,
        *,
        team: TeamSettings,
        namespace: k8s.core.v1.Namespace,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("ml-platform:tenancy:TeamAccess", name, None, opts)
        for role_name, rules in (
            (ENGINEER, engineer_rules(team.access.exec)),
            (VIEWER, viewer_rules()),
        ):
            metadata = k8s.meta.v1.ObjectMetaArgs(
                name=role_name, namespace=team.name, labels=labels.common("tenancy")
            )
            role = k8s.rbac.v1.Role(
                f"{name}-{role_name}",
                metadata=metadata,
                rules=rules,
                opts=pulumi.ResourceOptions(parent=self, depends_on=[namespace]),
            )
            bind_role_to_group(
                f"{name}-{role_name}",
                metadata=metadata,
                role_name=role_name,
                group_name=group(team.name, role_name),
                opts=pulumi.ResourceOptions(parent=self, depends_on=[role]),
            )
        self.register_outputs({})


def principal_groups(teams: list[TeamSettings]) -> dict[str, list[str]]:
    """Each IAM principal's Kubernetes groups over every team (one access entry per principal)."""
    groups: dict[str, list[str]] = {}
    for team in teams:
        for role_name, arns in ((ENGINEER, team.access.engineers), (VIEWER, team.access.viewers)):
            for arn in arns:
                groups.setdefault(arn, []).append(group(team.name, role_name))
    return groups


class TeamAccessEntries(pulumi.ComponentResource):
    """EKS access entries mapping the teams' IAM principals to their groups."""

    def __init__(
        self,
        name: str,
        *,
        cluster: aws.eks.Cluster,
        teams: list[TeamSettings],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("ml-platform:tenancy:TeamAccessEntries", name, None, opts)
        for arn, groups in sorted(principal_groups(teams).items()):
            # Named by the principal, so adding or removing others never replaces this entry.
            digest = hashlib.sha256(arn.encode()).hexdigest()[:8]
            aws.eks.AccessEntry(
                f"{name}-{arn.rsplit('/', 1)[-1]}-{digest}",
                cluster_name=cluster.name,
                principal_arn=arn,
                type="STANDARD",
                kubernetes_groups=sorted(groups),
                opts=pulumi.ResourceOptions(parent=self),
            )
        self.register_outputs({})
