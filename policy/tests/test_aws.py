"""efs-encrypted and no-iam-admin-grants."""

from __future__ import annotations

import json
from typing import Any

import pytest

from ml_platform_policy.aws import admin_statements, efs_encryption, iam_admin
from tests.helpers import UNKNOWN, check

EFS = "aws:efs/fileSystem:FileSystem"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
ROLE = "aws:iam/role:Role"
ATTACHMENT = "aws:iam/rolePolicyAttachment:RolePolicyAttachment"
ADMIN_ARN = "arn:aws:iam::aws:policy/AdministratorAccess"


def test_encrypted_efs_passes() -> None:
    assert check(efs_encryption, EFS, {"encrypted": True, "throughputMode": "elastic"}) == []


@pytest.mark.parametrize(
    "inputs", [{}, {"encrypted": False}, {"encrypted": "true"}, {"encrypted": None}]
)
def test_unencrypted_efs_is_a_violation(inputs: dict[str, Any]) -> None:
    assert check(efs_encryption, EFS, inputs)


def test_efs_encryption_not_known_yet_is_left_for_the_update() -> None:
    assert check(efs_encryption, EFS, {"encrypted": UNKNOWN}) == []
    assert check(efs_encryption, "aws:efs/accessPoint:AccessPoint", {}) == []


def document(*statements: dict[str, Any]) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": list(statements)}


ADMIN = {"Effect": "Allow", "Action": "*", "Resource": "*"}
# The cluster autoscaler's discovery statement: specific actions on every resource.
DESCRIBE_ANYTHING = {"Effect": "Allow", "Action": ["ec2:DescribeImages"], "Resource": "*"}


@pytest.mark.parametrize(
    "statement",
    [
        ADMIN,
        {"Effect": "Allow", "Action": ["s3:GetObject", "*"], "Resource": ["arn:aws:s3:::b", "*"]},
        {"Sid": "Everything", "Effect": "Allow", "Action": ["*"], "Resource": "*"},
    ],
)
def test_allow_star_on_star_is_a_violation(statement: dict[str, Any]) -> None:
    as_json = json.dumps(document(DESCRIBE_ANYTHING, statement))
    [message] = check(iam_admin, ROLE_POLICY, {"policy": as_json, "role": "r"})
    assert "Statement[1]" in message
    assert check(iam_admin, "aws:iam/policy:Policy", {"policy": document(statement)})


@pytest.mark.parametrize(
    "statement",
    [
        DESCRIBE_ANYTHING,
        {"Effect": "Deny", "Action": "*", "Resource": "*"},
        {"Effect": "Allow", "Action": "s3:*", "Resource": "*"},
        {"Effect": "Allow", "Action": "*", "Resource": "arn:aws:s3:::bucket/*"},
        {"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"},
    ],
)
def test_scoped_statements_pass(statement: dict[str, Any]) -> None:
    assert admin_statements(json.dumps(document(statement))) == []
    assert check(iam_admin, ROLE_POLICY, {"policy": json.dumps(document(statement))}) == []


def test_a_single_statement_object_is_read() -> None:
    as_json = json.dumps({"Version": "2012-10-17", "Statement": ADMIN})
    for resource_type in ("aws:iam/userPolicy:UserPolicy", "aws:iam/groupPolicy:GroupPolicy"):
        [message] = check(iam_admin, resource_type, {"policy": as_json})
        assert message.startswith("policy: Statement allows")


def test_role_inline_policies_and_managed_arns_are_checked() -> None:
    inputs = {
        "assumeRolePolicy": json.dumps(document(DESCRIBE_ANYTHING)),
        "inlinePolicies": [
            {"name": "ok", "policy": json.dumps(document(DESCRIBE_ANYTHING))},
            {"name": "admin", "policy": json.dumps(document(ADMIN))},
        ],
        "managedPolicyArns": ["arn:aws:iam::aws:policy/AmazonEKSClusterPolicy", ADMIN_ARN],
    }
    messages = check(iam_admin, ROLE, inputs)
    assert len(messages) == 2
    assert any(m.startswith("inlinePolicies[1].policy: Statement[0]") for m in messages)
    assert any(m.startswith(f"managedPolicyArns[1] attaches {ADMIN_ARN}") for m in messages)


@pytest.mark.parametrize("arn", [ADMIN_ARN, "arn:aws-us-gov:iam::aws:policy/AdministratorAccess"])
def test_administrator_access_attachments_are_violations(arn: str) -> None:
    assert check(iam_admin, ATTACHMENT, {"policyArn": arn, "role": "r"})
    assert check(iam_admin, "aws:iam/userPolicyAttachment:UserPolicyAttachment", {"policyArn": arn})


@pytest.mark.parametrize(
    "arn",
    [
        "arn:aws:iam::aws:policy/AmazonEKSWorkerNodePolicy",
        "arn:aws:iam::aws:policy/service-role/AmazonEFSCSIDriverPolicy",
        "arn:aws:iam::123456789012:policy/AdministratorAccess",  # a customer policy of that name
        UNKNOWN,
    ],
)
def test_other_attachments_pass(arn: str) -> None:
    assert check(iam_admin, ATTACHMENT, {"policyArn": arn, "role": "r"}) == []


@pytest.mark.parametrize(
    "policy", [UNKNOWN, "not json", "[]", "{}", json.dumps({"Statement": "x"}), 42, None]
)
def test_odd_policy_documents_do_not_crash(policy: Any) -> None:
    assert check(iam_admin, ROLE_POLICY, {"policy": policy}) == []
    assert check(iam_admin, ROLE, {"inlinePolicies": [{"policy": policy}, UNKNOWN]}) == []
