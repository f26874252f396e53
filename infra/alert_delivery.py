"""What Alertmanager needs to deliver alerts: its configuration, the receivers' credentials, and
on AWS its permission to publish to the stack's SNS topics.

The configuration (infra/alert_routing.py) holds no credential: it names files, and the
credentials Secret puts them there.  Its values are Pulumi secrets, so Pulumi keeps them
encrypted in the state and masks them in previews and outputs.

SNS: Alertmanager's SNS notifier (prometheus/alertmanager@v0.34.0:notify/sns/sns.go L160-216)
signs for `sigv4.region` and, when `sigv4` names no access key, profile or role, takes its
credentials from aws-sdk-go-v2's default chain (LoadDefaultConfig, L209; aws-sdk-go-v2/config
v1.32.33, go.mod L11).  That chain's container provider reads AWS_CONTAINER_CREDENTIALS_FULL_URI
and the token in AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE, which EKS Pod Identity sets in the pod
(aws-sdk-go-v2 config/resolve_credentials.go; supported since config v1.25, November 2023: not
re-read at v1.32.33, the repository is too large to fetch here).  The role allows sns:Publish
on the configured topics and nothing else, and is associated with the chart's Alertmanager
ServiceAccount.

EKS sets those variables only when a pod is created, and a configuration change only reloads
Alertmanager in place (the operator's config-reloader watches the mounted Secrets:
prometheus-operator/prometheus-operator@v0.93.0:pkg/alertmanager/statefulset.go L605-613): pods
running before the association would never get credentials.  So the pods carry an annotation
(`pod_annotations`) whose value changes with the role, the association and the topics; a new
value changes the StatefulSet's pod template, which rolls the pods.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s
import yaml

from infra import alert_routing, labels, names
from infra.iam import policy_document
from infra.settings import Settings
from infra.workload_identity import pod_identity_role

# What a publisher needs on the KMS key of a topic with server-side encryption (Amazon SNS
# Developer Guide, "Key management" (sns-key-management), "Configuring AWS KMS permissions":
# allow a principal to publish to an encrypted topic): SNS generates a data key for each message
# and the publisher's request must be allowed both.
SSE_KEY_ACTIONS = ["kms:Decrypt", "kms:GenerateDataKey*"]


def publish_policy(topics: list[str], kms_keys: list[str] | None = None) -> dict[str, Any]:
    """sns:Publish on exactly these topics, and use of the keys that encrypt them, if any."""
    statements: list[dict[str, Any]] = [
        {"Sid": "PublishAlerts", "Effect": "Allow", "Action": ["sns:Publish"], "Resource": topics}
    ]
    if kms_keys:
        statements.append(
            {
                "Sid": "EncryptForTopics",
                "Effect": "Allow",
                "Action": SSE_KEY_ACTIONS,
                "Resource": kms_keys,
            }
        )
    return policy_document(statements)


# On Alertmanager's pods: a digest of the SNS identity they must have been created with.
SNS_IDENTITY_ANNOTATION = f"{labels.PREFIX}/sns-identity"


def identity_digest(role_arn: str, association_id: str, topics: list[str]) -> str:
    """A short digest of the role, its association and the topics it may publish to."""
    text = json.dumps([role_arn, association_id, sorted(topics)])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def config_text(settings: Settings) -> str:
    """The configuration file as Alertmanager reads it (the config Secret's one key)."""
    return yaml.safe_dump(alert_routing.alertmanager_config(settings), sort_keys=False)


class AlertDelivery(pulumi.ComponentResource):
    """The config and credentials Secrets of Alertmanager, and its SNS role; `ready` is what
    Alertmanager must wait for, `pod_annotations` what its pods must carry (none without SNS)."""

    def __init__(
        self,
        name: str,
        *,
        settings: Settings,
        namespace: k8s.core.v1.Namespace,
        service_account: str,
        aws_cluster: aws.eks.Cluster | None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("ml-platform:monitoring:AlertDelivery", name, None, opts)
        in_namespace = pulumi.ResourceOptions(parent=self, depends_on=[namespace])

        def metadata(secret: str) -> k8s.meta.v1.ObjectMetaArgs:
            return k8s.meta.v1.ObjectMetaArgs(
                name=secret, namespace=names.MONITORING, labels=labels.common("monitoring")
            )

        config = k8s.core.v1.Secret(
            f"{name}-config",
            metadata=metadata(alert_routing.CONFIG_SECRET),
            string_data={alert_routing.CONFIG_KEY: config_text(settings)},
            opts=in_namespace,
        )
        self.ready: list[pulumi.Resource] = [config]
        self.pod_annotations: dict[str, pulumi.Output[str]] = {}
        credentials = alert_routing.credentials(settings.monitoring.alerting)
        if credentials:
            self.ready.append(
                k8s.core.v1.Secret(
                    f"{name}-credentials",
                    metadata=metadata(alert_routing.CREDENTIALS_SECRET),
                    # Each value a secret of its own: masked wherever Pulumi shows it.
                    string_data={
                        key: pulumi.Output.secret(value) for key, value in credentials.items()
                    },
                    opts=in_namespace,
                )
            )
        topics = alert_routing.sns_topics(settings)
        if topics:
            assert aws_cluster is not None  # the settings refuse SNS without EKS
            role, association = pod_identity_role(
                f"{name}-sns",
                namespace=names.MONITORING,
                service_account=service_account,
                policy=publish_policy(topics, alert_routing.sns_kms_keys(settings)),
                cluster_name=aws_cluster.name,
                description=f"Alertmanager of {settings.cluster.name}: publishes alerts to SNS",
                parent=self,
            )
            self.ready += [role, association]
            self.pod_annotations[SNS_IDENTITY_ANNOTATION] = pulumi.Output.all(
                role.role.arn, association.id
            ).apply(lambda parts: identity_digest(parts[0], parts[1], topics))
        self.register_outputs({})
