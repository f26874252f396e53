"""Customer-managed KMS keys for the CloudWatch Logs groups the program creates.

One key per log group, each created by the component that owns its group and usable by
CloudWatch Logs only for that group: the key policy lets the account administer the key (through
IAM, as AWS's default key policy does) and lets the regional CloudWatch Logs service principal use
it only when the encryption context names the group's ARN.  This is the policy of "Encrypt log
data in CloudWatch Logs using AWS Key Management Service" (CloudWatch Logs User Guide), with the
single-log-group condition that page recommends.
"""

from __future__ import annotations

import json

import pulumi
import pulumi_aws as aws

from infra.iam import policy_document

# What CloudWatch Logs may do with the key, as the CloudWatch Logs User Guide lists it.
LOGS_KEY_ACTIONS = [
    "kms:Encrypt*",
    "kms:Decrypt*",
    "kms:ReEncrypt*",
    "kms:GenerateDataKey*",
    "kms:Describe*",
]
# CloudWatch Logs puts the log group's ARN into the encryption context under this key.
ENCRYPTION_CONTEXT_KEY = "kms:EncryptionContext:aws:logs:arn"


def log_group_arn(partition: str, region: str, account_id: str, log_group_name: str) -> str:
    """A log group's ARN as CloudWatch Logs writes it into the encryption context."""
    return f"arn:{partition}:logs:{region}:{account_id}:log-group:{log_group_name}"


def logs_key_policy(
    *, partition: str, dns_suffix: str, region: str, account_id: str, log_group_name: str
) -> str:
    """The key policy: the account administers the key; CloudWatch Logs uses it for one group."""
    return json.dumps(
        policy_document(
            [
                {
                    # Without it nobody could manage the key; IAM policies decide who may.
                    "Sid": "AccountAdministersTheKey",
                    "Effect": "Allow",
                    "Principal": {"AWS": f"arn:{partition}:iam::{account_id}:root"},
                    "Action": "kms:*",
                    "Resource": "*",
                },
                {
                    "Sid": "CloudWatchLogsEncryptsThisLogGroup",
                    "Effect": "Allow",
                    "Principal": {"Service": f"logs.{region}.{dns_suffix}"},
                    "Action": LOGS_KEY_ACTIONS,
                    "Resource": "*",
                    "Condition": {
                        "ArnEquals": {
                            ENCRYPTION_CONTEXT_KEY: log_group_arn(
                                partition, region, account_id, log_group_name
                            )
                        }
                    },
                },
            ]
        )
    )


class LogGroupKey(pulumi.ComponentResource):
    """A rotating KMS key (and alias) that CloudWatch Logs may use for one named log group.

    The policy is part of the key, so a log group that references `arn` is created only after
    CloudWatch Logs may use the key (creating the group checks that).
    """

    key: aws.kms.Key
    arn: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        *,
        log_group_name: str,
        region: str,
        alias: str,
        description: str,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("ml-platform:logging:LogGroupKey", name, None, opts)
        invoke = pulumi.InvokeOutputOptions(parent=self)
        account_id = aws.get_caller_identity_output(opts=invoke).account_id
        partition = aws.get_partition_output(opts=invoke)
        policy = pulumi.Output.all(account_id, partition.partition, partition.dns_suffix).apply(
            lambda values: logs_key_policy(
                partition=values[1],
                dns_suffix=values[2],
                region=region,
                account_id=values[0],
                log_group_name=log_group_name,
            )
        )
        self.key = aws.kms.Key(
            name,
            description=description,
            enable_key_rotation=True,
            deletion_window_in_days=30,
            policy=policy,
            opts=pulumi.ResourceOptions(parent=self),
        )
        aws.kms.Alias(
            name,
            name=f"alias/{alias}",
            target_key_id=self.key.key_id,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.arn = self.key.arn
        self.register_outputs({"arn": self.arn})


def encrypted_log_group(
    name: str,
    *,
    log_group_name: str,
    retention_days: int,
    region: str,
    alias: str,
    description: str,
    parent: pulumi.Resource,
) -> aws.cloudwatch.LogGroup:
    """A log group with a retention period, encrypted with a key of its own (`<name>-key`)."""
    key = LogGroupKey(
        f"{name}-key",
        log_group_name=log_group_name,
        region=region,
        alias=alias,
        description=description,
        opts=pulumi.ResourceOptions(parent=parent),
    )
    return aws.cloudwatch.LogGroup(
        name,
        name=log_group_name,
        retention_in_days=retention_days,
        kms_key_id=key.arn,
        opts=pulumi.ResourceOptions(parent=parent, depends_on=[key]),
    )
