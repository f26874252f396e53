"""The stack's S3 artifact bucket, and least-privilege access to prefixes of it.

One private bucket per AWS stack: Kubeflow Pipelines keeps its artifacts under `pipelines/`, and
each team has `teams/<team>/`.  Nothing in it is public, every request must use TLS, objects are
encrypted at rest, and overwritten versions expire after `artifacts.noncurrentVersionDays`.
Workloads reach it with EKS Pod Identity roles whose policies name only their own prefixes.
"""

from __future__ import annotations

import json
from typing import Any

import pulumi
import pulumi_aws as aws

from infra.iam import policy_document
from infra.settings import ArtifactsSettings

PIPELINES_PREFIX = "pipelines/"
TEAMS_PREFIX = "teams/"
# S3 bucket_prefix may be at most 37 characters; the provider appends a unique suffix.
_MAX_BUCKET_PREFIX = 37


def team_prefix(team: str) -> str:
    return f"{TEAMS_PREFIX}{team}/"


def workload_prefix(team: str, workload: str) -> str:
    return f"{team_prefix(team)}{workload}/"


def workload_prefixes(access: str, team: str, workload: str) -> tuple[list[str], list[str]]:
    """The (readable, writable) prefixes of a workload's `artifacts` access mode."""
    if access == "none":
        return [], []
    read = [team_prefix(team)]
    return (read, [workload_prefix(team, workload)]) if access == "readwrite" else (read, [])


def team_prefixes(access: str, team: str) -> tuple[list[str], list[str]]:
    """The (readable, writable) prefixes of a team's own account: the team's whole prefix."""
    if access == "none":
        return [], []
    prefix = [team_prefix(team)]
    return (prefix, prefix) if access == "readwrite" else (prefix, [])


def prefix_access_policy(
    bucket_arn: str, *, read: list[str], write: list[str] | None = None
) -> dict[str, Any]:
    """Read objects below `read` prefixes, and write or delete below `write` prefixes.

    Listing is limited to the same prefixes with the `s3:prefix` condition, so a role cannot
    even see the names of other teams' objects.
    """
    write = write or []
    wanted = {*read, *write}
    # A prefix inside another readable one adds nothing.
    readable = sorted(p for p in wanted if not any(p != q and p.startswith(q) for q in wanted))
    statements: list[dict[str, Any]] = [
        {
            "Sid": "ListOwnPrefixes",
            "Effect": "Allow",
            "Action": ["s3:ListBucket"],
            "Resource": [bucket_arn],
            "Condition": {"StringLike": {"s3:prefix": [f"{p}*" for p in readable]}},
        },
        {
            "Sid": "ReadOwnPrefixes",
            "Effect": "Allow",
            "Action": ["s3:GetObject", "s3:GetObjectVersion"],
            "Resource": [f"{bucket_arn}/{p}*" for p in readable],
        },
    ]
    if write:
        statements.append(
            {
                "Sid": "WriteOwnPrefixes",
                "Effect": "Allow",
                "Action": [
                    "s3:PutObject",
                    "s3:DeleteObject",
                    "s3:AbortMultipartUpload",
                    "s3:ListMultipartUploadParts",
                ],
                "Resource": [f"{bucket_arn}/{p}*" for p in sorted(write)],
            }
        )
    return policy_document(statements)


def tls_only_policy(bucket_arn: str) -> str:
    """Deny any request to the bucket that does not use TLS."""
    return json.dumps(
        policy_document(
            [
                {
                    "Sid": "DenyInsecureTransport",
                    "Effect": "Deny",
                    "Principal": "*",
                    "Action": "s3:*",
                    "Resource": [bucket_arn, f"{bucket_arn}/*"],
                    "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                }
            ]
        )
    )


class ArtifactStore(pulumi.ComponentResource):
    """A private, versioned, encrypted S3 bucket with a TLS-only policy."""

    bucket: aws.s3.Bucket

    def __init__(
        self,
        name: str,
        *,
        settings: ArtifactsSettings,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("ml-platform:storage:ArtifactStore", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.bucket = aws.s3.Bucket(
            f"{name}-bucket",
            bucket_prefix=f"{name[: _MAX_BUCKET_PREFIX - 1]}-",
            force_destroy=settings.force_destroy,
            opts=child,
        )
        bucket = self.bucket.id
        public_access = aws.s3.BucketPublicAccessBlock(
            f"{name}-no-public-access",
            bucket=bucket,
            block_public_acls=True,
            block_public_policy=True,
            ignore_public_acls=True,
            restrict_public_buckets=True,
            opts=child,
        )
        aws.s3.BucketOwnershipControls(
            f"{name}-ownership",
            bucket=bucket,
            rule=aws.s3.BucketOwnershipControlsRuleArgs(object_ownership="BucketOwnerEnforced"),
            opts=child,
        )
        aws.s3.BucketServerSideEncryptionConfiguration(
            f"{name}-encryption",
            bucket=bucket,
            rules=[
                aws.s3.BucketServerSideEncryptionConfigurationRuleArgs(
                    apply_server_side_encryption_by_default=aws.s3.BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultArgs(
                        sse_algorithm="AES256"
                    ),
                )
            ],
            opts=child,
        )
        versioning = aws.s3.BucketVersioning(
            f"{name}-versioning",
            bucket=bucket,
            versioning_configuration=aws.s3.BucketVersioningVersioningConfigurationArgs(
                status="Enabled"
            ),
            opts=child,
        )
        aws.s3.BucketLifecycleConfiguration(
            f"{name}-lifecycle",
            bucket=bucket,
            rules=[
                aws.s3.BucketLifecycleConfigurationRuleArgs(
                    id="expire-old-versions",
                    status="Enabled",
                    filter=aws.s3.BucketLifecycleConfigurationRuleFilterArgs(prefix=""),
                    noncurrent_version_expiration=aws.s3.BucketLifecycleConfigurationRuleNoncurrentVersionExpirationArgs(
                        noncurrent_days=settings.noncurrent_version_days
                    ),
                    abort_incomplete_multipart_upload=aws.s3.BucketLifecycleConfigurationRuleAbortIncompleteMultipartUploadArgs(
                        days_after_initiation=7
                    ),
                )
            ],
            # Rules about noncurrent versions need versioning switched on first.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[versioning]),
        )
        aws.s3.BucketPolicy(
            f"{name}-tls-only",
            bucket=bucket,
            policy=self.bucket.arn.apply(tls_only_policy),
            # A policy put before the public-access block can race it and be refused.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[public_access]),
        )
        self.register_outputs({"bucket": self.bucket.bucket, "arn": self.bucket.arn})
