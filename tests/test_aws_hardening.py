"""What a security review asks of the AWS stacks: VPC flow logs, a default security group that
allows nothing, and CloudWatch Logs groups encrypted with customer-managed keys."""

from __future__ import annotations

from harness.mocks import ACCOUNT_ID
from harness.program import (
    ProgramRun,
    RegisteredResource,
    run_program,
    stack_config,
    stack_settings,
)
from infra.log_encryption import ENCRYPTION_CONTEXT_KEY
from tests.policies import as_list, statements

LOG_GROUP = "aws:cloudwatch/logGroup:LogGroup"
KEY = "aws:kms/key:Key"


def _groups(run: ProgramRun) -> dict[str, RegisteredResource]:
    return {g.inputs["name"]: g for g in run.of_type(LOG_GROUP)}


# --- VPC flow logs ---------------------------------------------------------------------------


def _flow_role(run: ProgramRun) -> RegisteredResource:
    flow = run.one("aws:ec2/flowLog:FlowLog")
    [role] = [r for r in run.of_type("aws:iam/role:Role") if r.urn in flow.dependencies]
    return role


def _role_policies(run: ProgramRun, role: RegisteredResource) -> list[RegisteredResource]:
    # A role's id is its name.
    return [
        p
        for p in run.of_type("aws:iam/rolePolicy:RolePolicy")
        if p.inputs["role"] == role.outputs["name"]
    ]


def test_flow_logs_record_all_traffic_of_the_created_vpc(aws_run: ProgramRun) -> None:
    settings = stack_settings(aws_run.stack)
    assert settings.aws is not None
    vpc = aws_run.one("aws:ec2/vpc:Vpc")
    flow = aws_run.one("aws:ec2/flowLog:FlowLog")
    group = _groups(aws_run)[f"/aws/vpc/{settings.cluster.name}/flow-logs"]
    assert flow.inputs["vpcId"] == aws_run.outputs["vpcId"]
    assert vpc.urn in flow.dependencies
    assert flow.inputs["trafficType"] == "ALL"
    assert flow.inputs["logDestinationType"] == "cloud-watch-logs"
    assert flow.inputs["logDestination"] == group.outputs["arn"]
    assert group.inputs["retentionInDays"] == settings.aws.log_retention_days
    role = _flow_role(aws_run)
    assert flow.inputs["iamRoleArn"] == role.outputs["arn"]
    # The role may write before the service first delivers.
    [writer] = _role_policies(aws_run, role)
    assert writer.urn in flow.dependencies


def test_flow_logs_role_is_assumable_only_by_this_accounts_flow_logs(aws_run: ProgramRun) -> None:
    region = stack_settings(aws_run.stack).aws.region  # type: ignore[union-attr]
    [statement] = statements(_flow_role(aws_run).inputs["assumeRolePolicy"])
    assert statement["Effect"] == "Allow"
    assert statement["Principal"] == {"Service": "vpc-flow-logs.amazonaws.com"}
    assert as_list(statement["Action"]) == ["sts:AssumeRole"]
    # The confused-deputy conditions of the VPC user guide ("IAM role for publishing flow logs
    # to CloudWatch Logs"): this account, and a flow log of this account in this region.
    assert statement["Condition"] == {
        "StringEquals": {"aws:SourceAccount": ACCOUNT_ID},
        "ArnLike": {"aws:SourceArn": f"arn:aws:ec2:{region}:{ACCOUNT_ID}:vpc-flow-log/*"},
    }


# The VPC user guide, "IAM role for publishing flow logs to CloudWatch Logs"
# (https://docs.aws.amazon.com/vpc/latest/userguide/flow-logs-iam-role.html): the role's policy
# "must include at least" these.
FLOW_LOGS_GUIDE_ACTIONS = {
    "logs:CreateLogGroup",
    "logs:CreateLogStream",
    "logs:PutLogEvents",
    "logs:DescribeLogGroups",
    "logs:DescribeLogStreams",
}
# Service Authorization Reference, "Actions, resources, and condition keys for Amazon CloudWatch
# Logs" (https://docs.aws.amazon.com/service-authorization/latest/reference/
# list_amazoncloudwatchlogs.html; read from its copy iann0036/iam-dataset@08eff2d7
# aws/iam_definition.json): DescribeLogGroups has no resource type, so only "*" grants it.
WITHOUT_RESOURCE_TYPE = {"logs:DescribeLogGroups"}


def test_flow_logs_role_may_deliver_to_its_group_and_nothing_else(aws_run: ProgramRun) -> None:
    settings = stack_settings(aws_run.stack)
    role = _flow_role(aws_run)
    group = _groups(aws_run)[f"/aws/vpc/{settings.cluster.name}/flow-logs"]
    [policy] = _role_policies(aws_run, role)
    assert not [
        a
        for a in aws_run.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")
        if a.inputs["role"] == role.outputs["name"]
    ]
    arn = group.outputs["arn"]
    granted: dict[str, list[str]] = {}
    for statement in statements(policy.inputs["policy"]):
        assert statement["Effect"] == "Allow"
        assert "Condition" not in statement
        for action in as_list(statement["Action"]):
            assert action not in granted, f"{action} granted twice"
            granted[action] = as_list(statement["Resource"])
    assert set(granted) == FLOW_LOGS_GUIDE_ACTIONS
    for action, resources in granted.items():
        if action in WITHOUT_RESOURCE_TYPE:
            assert resources == ["*"]
        else:
            # The group and its streams; no other group.
            assert resources == [arn, f"{arn}:log-stream:*"], action


# --- the default security group --------------------------------------------------------------


def test_default_security_group_allows_nothing(aws_run: ProgramRun) -> None:
    vpc = aws_run.one("aws:ec2/vpc:Vpc")
    group = aws_run.one("aws:ec2/defaultSecurityGroup:DefaultSecurityGroup")
    assert vpc.urn in group.dependencies
    assert not group.inputs.get("ingress")
    assert not group.inputs.get("egress")


def test_nothing_relies_on_the_default_security_group(aws_run: ProgramRun) -> None:
    cluster = aws_run.one("aws:eks/cluster:Cluster").inputs
    # EKS makes the cluster security group; the node groups' launch templates name none, so
    # EKS gives nodes that one.
    assert not cluster["vpcConfig"].get("securityGroupIds")
    for template in aws_run.of_type("aws:ec2/launchTemplate:LaunchTemplate"):
        assert not template.inputs.get("vpcSecurityGroupIds")
        assert not template.inputs.get("securityGroupNames")
        for interface in template.inputs.get("networkInterfaces") or []:
            assert interface.get("securityGroups"), "an interface without a group gets the default"
    # EFS mount targets use the security group made for them.
    own_groups = {
        g.outputs["arn"].rsplit("/", 1)[-1]
        for g in aws_run.of_type("aws:ec2/securityGroup:SecurityGroup")
    }
    default = aws_run.one("aws:ec2/vpc:Vpc").outputs["defaultSecurityGroupId"]
    for target in aws_run.of_type("aws:efs/mountTarget:MountTarget"):
        assert target.inputs["securityGroups"]
        assert set(target.inputs["securityGroups"]) <= own_groups
        assert default not in target.inputs["securityGroups"]


def test_an_existing_vpc_is_left_alone() -> None:
    """Flow logs and the default group belong to whoever owns a VPC the stack only uses."""
    config = stack_config("dev")
    config["ml-platform:aws"]["existingVpc"] = {
        "vpcId": "vpc-0123456789abcdef0",
        "privateSubnetIds": ["subnet-0123456789abcdef0", "subnet-0123456789abcdef1"],
    }
    run = run_program("dev", config)
    assert not run.of_type("aws:ec2/vpc:Vpc")
    assert not run.of_type("aws:ec2/flowLog:FlowLog")
    assert not run.of_type("aws:ec2/defaultSecurityGroup:DefaultSecurityGroup")
    # The program's own log groups are still encrypted.
    _check_log_groups_are_encrypted(run)


# --- encrypted log groups --------------------------------------------------------------------


def _check_log_groups_are_encrypted(run: ProgramRun) -> None:
    settings = stack_settings(run.stack)
    assert settings.aws is not None
    region = settings.aws.region
    keys = {k.outputs["arn"]: k for k in run.of_type(KEY)}
    groups = run.of_type(LOG_GROUP)
    assert groups
    used: set[str] = set()
    for group in groups:
        key = keys[group.inputs["kmsKeyId"]]
        assert key.urn in group.dependencies, "the group must wait for the key and its policy"
        assert key.inputs["enableKeyRotation"] is True
        admin, logs = statements(key.inputs["policy"])
        assert admin["Principal"] == {"AWS": f"arn:aws:iam::{ACCOUNT_ID}:root"}
        assert "Condition" not in admin
        assert logs["Principal"] == {"Service": f"logs.{region}.amazonaws.com"}
        assert logs["Resource"] == "*"
        assert set(as_list(logs["Action"])) == {
            "kms:Encrypt*",
            "kms:Decrypt*",
            "kms:ReEncrypt*",
            "kms:GenerateDataKey*",
            "kms:Describe*",
        }
        # Only for this group of this account and region.
        assert logs["Condition"] == {"ArnEquals": {ENCRYPTION_CONTEXT_KEY: group.outputs["arn"]}}
        assert group.outputs["arn"] == (
            f"arn:aws:logs:{region}:{ACCOUNT_ID}:log-group:{group.inputs['name']}"
        )
        used.add(key.urn)
    assert len(used) == len(groups), "one key per log group"
    # The cluster's secrets key encrypts no logs.
    secrets = run.one("aws:eks/cluster:Cluster").inputs["encryptionConfig"]["provider"]
    assert keys[secrets["keyArn"]].urn not in used


def test_every_log_group_is_encrypted_with_a_logs_key(aws_run: ProgramRun) -> None:
    _check_log_groups_are_encrypted(aws_run)
    name = stack_settings(aws_run.stack).cluster.name
    assert set(_groups(aws_run)) == {
        f"/aws/eks/{name}/cluster",
        f"/aws/eks/{name}/containers",
        f"/aws/vpc/{name}/flow-logs",
    }


def test_log_keys_follow_their_groups() -> None:
    """A stack that ships logs elsewhere has no container log group, and no key for it."""
    config = stack_config("dev")
    config["ml-platform:logging"] = {"destination": "stdout"}
    run = run_program("dev", config)
    name = stack_settings("dev").cluster.name
    assert f"/aws/eks/{name}/containers" not in _groups(run)
    _check_log_groups_are_encrypted(run)
    assert len(run.of_type(KEY)) == len(run.of_type(LOG_GROUP)) + 1  # + the secrets key
