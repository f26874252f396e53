"""One Kubernetes ServiceAccount per workload, and on AWS its own IAM role via EKS Pod Identity.

Workloads never share an identity: each TFJob, PyTorchJob, notebook server and Pipelines service
runs as a ServiceAccount of its own, so a grant to one (an S3 prefix, say) never reaches another.
The account's API token is not mounted: none of these pods talk to the Kubernetes API, and Pod
Identity delivers AWS credentials through a token of its own, projected by EKS.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from infra import aws_names
from infra.iam import POD_IDENTITY_PRINCIPAL, ServiceRole

# IAM role names may be at most 64 characters: Pulumi appends 8 to the resource name, and the
# role's resource name is the identity's name plus "-role".
_MAX_ROLE_NAME = (
    aws_names.IAM_ROLE_NAME.max_length - aws_names.AUTONAME_SUFFIX_LENGTH - len("-role")
)


# Every team namespace has this account for the work engineers start themselves (`kubectl`,
# notebooks' own jobs, pipelines): no token, and the team's `artifacts` access.
TEAM_ACCOUNT = "ml-workloads"


def role_resource_name(name: str) -> str:
    """`name`, shortened to fit an IAM role name; a digest of the whole keeps shortened ones apart.

    Identities named after a long cluster, team and workload would otherwise be cut to the same
    prefix (Kubeflow Pipelines' `ml-pipeline` and `ml-pipeline-ui`, say), and two resources of
    one name cannot be registered.
    """
    if len(name) <= _MAX_ROLE_NAME:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:7]
    return f"{name[: _MAX_ROLE_NAME - len(digest) - 1].rstrip('-')}-{digest}"


def service_account_name(kind: str, name: str) -> str:
    """The ServiceAccount of a declared workload; the kind keeps a job and a notebook apart."""
    return f"{kind.lower()}-{name}"


def pod_identity_role(
    name: str,
    *,
    namespace: str,
    service_account: str,
    policy: pulumi.Input[dict[str, Any]],
    cluster_name: pulumi.Input[str],
    description: str = "",
    parent: pulumi.Resource,
) -> tuple[ServiceRole, aws.eks.PodIdentityAssociation]:
    """A role allowed only `policy`, and its Pod Identity association with one ServiceAccount.

    For accounts this program does not create (an upstream bundle's): the association names the
    account, which need not exist yet.  Both are children of `parent`, named from `name`.
    """
    role = ServiceRole(
        role_resource_name(name),
        service=POD_IDENTITY_PRINCIPAL,
        managed_policies=[],
        inline_policy=pulumi.Output.from_input(policy).apply(json.dumps),
        description=description or f"Pod Identity of {namespace}/{service_account}",
        opts=pulumi.ResourceOptions(parent=parent),
    )
    association = aws.eks.PodIdentityAssociation(
        f"{name}-pod-identity",
        cluster_name=cluster_name,
        namespace=namespace,
        service_account=service_account,
        role_arn=role.role.arn,
        # The role's permissions exist before a pod can assume it.
        opts=pulumi.ResourceOptions(parent=parent, depends_on=[role]),
    )
    return role, association


class WorkloadIdentity(pulumi.ComponentResource):
    """A ServiceAccount, plus (when given a policy) a Pod Identity role allowed only that."""

    service_account: k8s.core.v1.ServiceAccount
    role: ServiceRole | None = None

    def __init__(
        self,
        name: str,
        *,
        namespace: str,
        service_account: str,
        labels: dict[str, str],
        policy: pulumi.Input[dict[str, Any]] | None = None,
        cluster_name: pulumi.Input[str] | None = None,
        description: str = "",
        after: list[pulumi.Resource] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("ml-platform:tenancy:WorkloadIdentity", name, None, opts)
        self.service_account = k8s.core.v1.ServiceAccount(
            f"{name}-sa",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=service_account, namespace=namespace, labels=labels
            ),
            automount_service_account_token=False,
            # `after`: the namespace, which the API server needs before anything in it.
            opts=pulumi.ResourceOptions(parent=self, depends_on=after or []),
        )
        self.ready: list[pulumi.Resource] = [self.service_account]
        if policy is not None:
            if cluster_name is None:
                raise ValueError(f"{name}: an IAM policy needs the EKS cluster to associate it")
            self.role, association = pod_identity_role(
                name,
                namespace=namespace,
                service_account=service_account,
                policy=policy,
                cluster_name=cluster_name,
                description=description,
                parent=self,
            )
            self.ready.append(association)
        self.register_outputs(
            {
                "serviceAccount": service_account,
                "roleArn": self.role.role.arn if self.role else None,
            }
        )
