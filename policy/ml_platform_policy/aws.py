"""Rules on AWS resources: encrypted EFS, no administrator IAM grants."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping

from pulumi_policy import (
    EnforcementLevel,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
)

from .props import elements, field, is_true, is_unknown_field, strings

EFS_FILE_SYSTEM = "aws:efs/fileSystem:FileSystem"


def validate_efs_encryption(
    args: ResourceValidationArgs, report_violation: ReportViolation
) -> None:
    if args.resource_type != EFS_FILE_SYSTEM or is_unknown_field(args.props, "encrypted"):
        return
    if not is_true(field(args.props, "encrypted")):
        report_violation(
            "encrypted is not true: the file system would store data unencrypted", None
        )


efs_encryption = ResourceValidationPolicy(
    name="efs-encrypted",
    description=(
        "EFS file systems must be created with encrypted: true: encryption at rest can only be "
        "chosen at creation, and the shared file system holds every team's datasets and models."
    ),
    validate=validate_efs_encryption,
    enforcement_level=EnforcementLevel.MANDATORY,
)


# --- IAM -------------------------------------------------------------------------------------

# Resources whose `policy` input is one policy document (JSON text or an object).
_POLICY_DOCUMENT_TYPES = frozenset(
    {
        "aws:iam/policy:Policy",
        "aws:iam/rolePolicy:RolePolicy",
        "aws:iam/userPolicy:UserPolicy",
        "aws:iam/groupPolicy:GroupPolicy",
    }
)
# Resources whose `policyArn` input attaches a managed policy.
_ATTACHMENT_TYPES = frozenset(
    {
        "aws:iam/rolePolicyAttachment:RolePolicyAttachment",
        "aws:iam/userPolicyAttachment:UserPolicyAttachment",
        "aws:iam/groupPolicyAttachment:GroupPolicyAttachment",
        "aws:iam/policyAttachment:PolicyAttachment",
    }
)
ROLE = "aws:iam/role:Role"
# AdministratorAccess in every partition (aws, aws-cn, aws-us-gov, ...).
_ADMINISTRATOR_ACCESS = re.compile(r"arn:aws[a-z-]*:iam::aws:policy/AdministratorAccess")


def _document(policy: object) -> Mapping[str, object] | None:
    if isinstance(policy, str):
        try:
            parsed = json.loads(policy)
        except ValueError:
            return None
        return parsed if isinstance(parsed, dict) else None
    return policy if isinstance(policy, Mapping) else None


def _statements(document: Mapping[str, object]) -> Iterator[tuple[str, object]]:
    statement = field(document, "Statement")
    if isinstance(statement, Mapping):
        yield "Statement", statement
        return
    for index, element in elements(statement):
        yield f"Statement[{index}]", element


def admin_statements(policy: object) -> list[str]:
    """The statements of a policy document that Allow action '*' on resource '*'."""
    document = _document(policy)
    if document is None:
        return []
    found: list[str] = []
    for where, statement in _statements(document):
        if field(statement, "Effect") != "Allow":
            continue
        actions = strings(field(statement, "Action"))
        resources = strings(field(statement, "Resource"))
        if "*" in actions and "*" in resources:
            sid = field(statement, "Sid")
            found.append(f"{where}" + (f" (Sid {sid!r})" if isinstance(sid, str) else ""))
    return found


def _report_documents(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    if args.resource_type in _POLICY_DOCUMENT_TYPES:
        documents = [("policy", field(args.props, "policy"))]
    elif args.resource_type == ROLE:
        documents = [
            (f"inlinePolicies[{index}].policy", field(inline, "policy"))
            for index, inline in elements(field(args.props, "inlinePolicies"))
        ]
    else:
        return
    for where, policy in documents:
        for statement in admin_statements(policy):
            report_violation(f"{where}: {statement} allows action '*' on resource '*'", None)


def _report_attachments(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    if args.resource_type in _ATTACHMENT_TYPES:
        arns = [("policyArn", field(args.props, "policyArn"))]
    elif args.resource_type == ROLE:
        arns = [
            (f"managedPolicyArns[{index}]", arn)
            for index, arn in elements(field(args.props, "managedPolicyArns"))
        ]
    else:
        return
    for where, arn in arns:
        if isinstance(arn, str) and _ADMINISTRATOR_ACCESS.fullmatch(arn):
            report_violation(f"{where} attaches {arn}", None)


def validate_iam_admin(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    _report_documents(args, report_violation)
    _report_attachments(args, report_violation)


iam_admin = ResourceValidationPolicy(
    name="no-iam-admin-grants",
    description=(
        "IAM policies may not Allow action '*' on resource '*', and nothing may attach the "
        "AdministratorAccess managed policy: every role of the platform is scoped to what its "
        "component does, so a leaked workload credential cannot take over the account."
    ),
    validate=validate_iam_admin,
    enforcement_level=EnforcementLevel.MANDATORY,
)
