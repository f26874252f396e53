"""The EKS control plane: encryption, logging, access entries and the Kubernetes provider."""

from __future__ import annotations

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from infra.iam import ServiceRole, managed_policy
from infra.log_encryption import encrypted_log_group
from infra.settings import AwsSettings, ClusterSettings

CLUSTER_ADMIN_POLICY = "arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy"
CONTROL_PLANE_LOG_TYPES = ["api", "audit", "authenticator", "controllerManager", "scheduler"]


def kubeconfig(
    cluster_name: pulumi.Input[str],
    endpoint: pulumi.Input[str],
    certificate_authority: pulumi.Input[str],
    region: str,
) -> pulumi.Output[str]:
    """A kubeconfig that authenticates with `aws eks get-token` (no long-lived credentials)."""
    return pulumi.Output.json_dumps(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "current-context": "eks",
            "clusters": [
                {
                    "name": "eks",
                    "cluster": {
                        "server": endpoint,
                        "certificate-authority-data": certificate_authority,
                    },
                }
            ],
            "contexts": [{"name": "eks", "context": {"cluster": "eks", "user": "aws"}}],
            "users": [
                {
                    "name": "aws",
                    "user": {
                        "exec": {
                            "apiVersion": "client.authentication.k8s.io/v1beta1",
                            "command": "aws",
                            "args": [
                                "--region",
                                region,
                                "eks",
                                "get-token",
                                "--cluster-name",
                                cluster_name,
                                "--output",
                                "json",
                            ],
                        }
                    },
                }
            ],
        }
    )


class EksCluster(pulumi.ComponentResource):
    """An EKS cluster with API-mode access entries, KMS-encrypted secrets and full audit logging."""

    cluster: aws.eks.Cluster
    provider: k8s.Provider
    installer_provider: k8s.Provider
    kubeconfig: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        cluster_settings: ClusterSettings,
        aws_settings: AwsSettings,
        private_subnet_ids: list[pulumi.Output[str]],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("ml-platform:cluster:EksCluster", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        cluster_name = cluster_settings.name

        secrets_key = aws.kms.Key(
            f"{name}-secrets",
            description=f"Envelope encryption of Kubernetes secrets in EKS cluster {cluster_name}",
            enable_key_rotation=True,
            deletion_window_in_days=30,
            opts=child,
        )
        aws.kms.Alias(
            f"{name}-secrets",
            name=f"alias/eks/{cluster_name}-secrets",
            target_key_id=secrets_key.key_id,
            opts=child,
        )
        # Created before the cluster so EKS writes into a group with a retention period instead
        # of creating one that keeps logs forever, encrypted with a key of its own.
        log_group_name = f"/aws/eks/{cluster_name}/cluster"
        log_group = encrypted_log_group(
            f"{name}-control-plane",
            log_group_name=log_group_name,
            retention_days=aws_settings.log_retention_days,
            region=aws_settings.region,
            alias=f"eks/{cluster_name}-control-plane-logs",
            description=f"Encryption of the control-plane logs of EKS cluster {cluster_name}",
            parent=self,
        )
        role = ServiceRole(
            f"{name}-control-plane",
            service="eks.amazonaws.com",
            managed_policies=[managed_policy("AmazonEKSClusterPolicy")],
            description=f"EKS control plane of {cluster_name}",
            opts=child,
        )
        endpoint = aws_settings.endpoint
        self.cluster = aws.eks.Cluster(
            f"{name}-eks",
            name=cluster_name,
            version=cluster_settings.kubernetes_version,
            role_arn=role.role.arn,
            vpc_config={
                "subnet_ids": private_subnet_ids,
                "endpoint_private_access": True,
                "endpoint_public_access": endpoint.public_access,
                "public_access_cidrs": endpoint.public_access_cidrs
                if endpoint.public_access
                else None,
            },
            access_config={
                "authentication_mode": "API",
                # Admins are granted explicitly below, where they can be seen and revoked.
                "bootstrap_cluster_creator_admin_permissions": False,
            },
            encryption_config={
                "provider": {"key_arn": secrets_key.arn},
                "resources": ["secrets"],
            },
            enabled_cluster_log_types=CONTROL_PLANE_LOG_TYPES,
            deletion_protection=aws_settings.deletion_protection,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[log_group, role]),
        )

        admin_grants = self._grant_admins(name, aws_settings)
        self.kubeconfig = pulumi.Output.secret(
            kubeconfig(
                self.cluster.name,
                self.cluster.endpoint,
                self.cluster.certificate_authority.data,
                aws_settings.region,
            )
        )
        self.provider = k8s.Provider(
            f"{name}-k8s",
            kubeconfig=self.kubeconfig,
            # Only a new cluster replaces the provider (and every Kubernetes object); a changed
            # kubeconfig (credentials, CA rotation) does not.
            cluster_identifier=self.cluster.arn,
            opts=pulumi.ResourceOptions(parent=self, depends_on=admin_grants),
        )
        # For upstream bundles that declare objects another bundle (or we) already made, such
        # as the `kubeflow` namespace: they adopt them instead of failing with AlreadyExists.
        self.installer_provider = k8s.Provider(
            f"{name}-k8s-installs",
            kubeconfig=self.kubeconfig,
            cluster_identifier=self.cluster.arn,
            upsert_existing_objects=True,
            opts=pulumi.ResourceOptions(parent=self, depends_on=admin_grants),
        )
        self.register_outputs(
            {
                "cluster_name": self.cluster.name,
                "endpoint": self.cluster.endpoint,
                "kubeconfig": self.kubeconfig,
            }
        )

    def _grant_admins(self, name: str, aws_settings: AwsSettings) -> list[pulumi.Resource]:
        """Access entries with the cluster-admin policy for the configured principals."""
        principals: list[tuple[str, pulumi.Input[str]]] = [
            (f"admin-{index}", arn) for index, arn in enumerate(aws_settings.access.admins)
        ]
        if aws_settings.access.include_deployer:
            caller = aws.get_caller_identity_output(opts=pulumi.InvokeOutputOptions(parent=self))
            # The caller is usually an assumed-role session; access entries need the role itself.
            session = aws.iam.get_session_context_output(
                arn=caller.arn, opts=pulumi.InvokeOutputOptions(parent=self)
            )
            principals.append(("deployer", session.issuer_arn))
        grants: list[pulumi.Resource] = []
        for label, principal in principals:
            entry = aws.eks.AccessEntry(
                f"{name}-{label}",
                cluster_name=self.cluster.name,
                principal_arn=principal,
                type="STANDARD",
                opts=pulumi.ResourceOptions(parent=self),
            )
            grants.append(
                aws.eks.AccessPolicyAssociation(
                    f"{name}-{label}",
                    cluster_name=self.cluster.name,
                    principal_arn=entry.principal_arn,
                    policy_arn=CLUSTER_ADMIN_POLICY,
                    access_scope={"type": "cluster"},
                    opts=pulumi.ResourceOptions(parent=self),
                )
            )
        return grants
