"""IAM roles for AWS services and for Kubernetes service accounts (EKS Pod Identity)."""

from __future__ import annotations

import json
from typing import Any

import pulumi
import pulumi_aws as aws

# EKS Pod Identity assumes roles as this service principal and tags the session.
POD_IDENTITY_PRINCIPAL = "pods.eks.amazonaws.com"


def managed_policy(name: str, service_role: bool = False) -> str:
    """The ARN of an AWS-managed policy."""
    path = "service-role/" if service_role else ""
    return f"arn:aws:iam::aws:policy/{path}{name}"


def trust_policy(service: str) -> str:
    """A trust policy letting one AWS service principal assume the role (and tag its session)."""
    actions = (
        ["sts:AssumeRole", "sts:TagSession"]
        if service == POD_IDENTITY_PRINCIPAL
        else ["sts:AssumeRole"]
    )
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Principal": {"Service": service}, "Action": actions}
            ],
        }
    )


def policy_document(statements: list[dict[str, Any]]) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": statements}


def log_group_statement(log_group_arn: str, sid: str, actions: list[str]) -> dict[str, Any]:
    """Allow `actions` on one CloudWatch Logs group and its streams, and nowhere else.

    The Service Authorization Reference ("Actions, resources, and condition keys for Amazon
    CloudWatch Logs") authorizes CreateLogStream and PutLogEvents on the stream's ARN
    (`...:log-group:<group>:log-stream:<stream>`) and DescribeLogStreams on the group's
    (`...:log-group:<group>`); both forms name this group only.
    """
    return {
        "Sid": sid,
        "Effect": "Allow",
        "Action": sorted(actions),
        "Resource": [log_group_arn, f"{log_group_arn}:log-stream:*"],
    }


class ServiceRole(pulumi.ComponentResource):
    """A role assumed by one AWS service principal, with managed and inline policies."""

    role: aws.iam.Role

    def __init__(
        self,
        name: str,
        *,
        service: str,
        managed_policies: list[str],
        inline_policy: pulumi.Input[str] | None = None,
        description: str = "",
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("ml-platform:iam:ServiceRole", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.role = aws.iam.Role(
            f"{name}-role",
            assume_role_policy=trust_policy(service),
            description=description,
            opts=child,
        )
        self.attachments: list[pulumi.CustomResource] = [
            aws.iam.RolePolicyAttachment(
                f"{name}-{arn.rsplit('/', 1)[-1]}", role=self.role.name, policy_arn=arn, opts=child
            )
            for arn in managed_policies
        ]
        if inline_policy is not None:
            self.attachments.append(
                aws.iam.RolePolicy(
                    f"{name}-inline", role=self.role.id, policy=inline_policy, opts=child
                )
            )
        self.register_outputs({"arn": self.role.arn})
