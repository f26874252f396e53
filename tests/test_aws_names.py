"""Every name, description, label and tag the program sends to AWS meets the service's own rules.

The provider checks few of them, so a bad one passes previews and these mocks and fails only in
`pulumi up`.  The rules (infra/aws_names.py, each with its AWS documentation page) are checked
here with values they must accept and values they must refuse, and then against every `aws:*`
resource of the dev and prod stacks and of a stack whose names are as long as settings allow.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from harness.program import ProgramRun, RegisteredResource, run_program, stack_config
from infra import aws_names
from infra.aws_names import NameRule
from infra.settings import MAX_POOL_NAME
from tests.conftest import AWS_STACKS, stack_run

# --- the rules ---------------------------------------------------------------------------------

# (rule, accepted, refused)
RULE_CASES: list[tuple[NameRule, list[str], list[str]]] = [
    (
        aws_names.SECURITY_GROUP_DESCRIPTION,
        [
            "NFS to the shared file system from the cluster nodes only",
            "a-z A-Z 0-9 ._-:/()#,@[]+=&;{}!$*",
            "x" * 255,
        ],
        ["NFS from the cluster's nodes", "tab\there", "accents: é", "x" * 256, ""],
    ),
    (
        aws_names.SECURITY_GROUP_RULE_DESCRIPTION,
        ["NFS from cluster nodes", "", "._-:/()#,@[]+=;{}!$*"],
        ["nodes & pods", "it's", "x" * 256],
    ),
    (
        aws_names.SECURITY_GROUP_NAME,
        ["ml-dev-efs-mount-0f3a9c1", "x" * 255],
        ["sg-efs-mount", "efs mount's", "x" * 256],
    ),
    (
        aws_names.LAUNCH_TEMPLATE_NAME,
        ["ml-dev-gpu-lt-0f3a9c1", "a(b).c/d_e"],
        ["lt", "a b", "a:b", "x" * 129],
    ),
    (aws_names.LAUNCH_TEMPLATE_DESCRIPTION, ["Nodes of pool gpu", ""], ["x" * 256]),
    (
        aws_names.EC2_TAG_KEY,
        ["Name", "kubernetes.io/cluster/ml-dev", "x" * 127],
        ["aws:x", "x" * 128, ""],
    ),
    (aws_names.EC2_TAG_VALUE, ["", "shared", "x" * 256], ["x" * 257]),
    (aws_names.AUTOSCALING_TAG_KEY, ["x" * 128], ["x" * 129, ""]),
    (aws_names.AUTOSCALING_TAG_VALUE, ["", "present:NoSchedule"], ["x" * 257]),
    (
        aws_names.EKS_CLUSTER_NAME,
        ["ml-dev", "ML_dev-2", "x" * 100],
        ["-ml", "_ml", "ml.dev", "x" * 101, ""],
    ),
    (aws_names.EKS_NODEGROUP_NAME, ["gpu-0f3a9c1", "x" * 63], ["-gpu", "gpu.a", "x" * 64]),
    (aws_names.EKS_LABEL_KEY, ["k8s.amazonaws.com/accelerator", "x" * 63], ["x" * 64, ""]),
    (aws_names.EKS_LABEL_VALUE, ["nvidia-a10g", "x" * 63], ["x" * 64, ""]),
    (aws_names.EKS_TAINT_KEY, ["nvidia.com/gpu"], ["x" * 64, ""]),
    (aws_names.EKS_TAINT_VALUE, ["present", ""], ["x" * 64]),
    (aws_names.EKS_TAG_KEY, ["x" * 128], ["x" * 129, ""]),
    (aws_names.EKS_TAG_VALUE, ["", "x" * 256], ["x" * 257]),
    (
        aws_names.ECR_REPOSITORY_NAME,
        ["ml-dev/training", "a1/b_c.d-e/f"],
        ["ML-dev/training", "ml--dev/training", "ml-dev-/training", "1ml/training", "a", "a//b"],
    ),
    (
        aws_names.S3_BUCKET_NAME,
        ["ml-dev-artifacts-20261128000000000000000001", "abc", "a.b-c"],
        [
            "ab",
            "x" * 64,
            "ML-dev-artifacts",
            "ml_dev",
            "-ml-dev",
            "ml-dev-",
            "a..b",
            "xn--ml",
            "sthree-ml",
            "amzn-s3-demo-ml",
            "ml-s3alias",
            "ml--ol-s3",
            "ml.mrap",
            "ml--x-s3",
            "ml--table-s3",
        ],
    ),
    (
        aws_names.IAM_ROLE_NAME,
        ["ml-dev-nodes-role-0f3a9c1", "a_b+c=d,e.f@g-h", "x" * 64],
        ["x" * 65, "a b", "a/b", "a:b", ""],
    ),
    (
        aws_names.IAM_ROLE_DESCRIPTION,
        ["Team research: its own jobs", "café", "x" * 1000, ""],
        ["x" * 1001, "arrow → here", "ÿ\u0100"],
    ),
    (aws_names.IAM_POLICY_NAME, ["ml-dev-nodes-inline-0f3a9c1", "x" * 128], ["x" * 129, "a b"]),
    (
        aws_names.KMS_ALIAS_NAME,
        ["alias/eks/ml-dev-secrets", "alias/a_b/c-d"],
        [
            "alias/aws/ml-dev",
            "alias/a.b",
            "alias/a:b",
            "eks/ml-dev",
            "alias/",
            "alias/" + "x" * 251,
        ],
    ),
    (aws_names.KMS_KEY_DESCRIPTION, ["", "x" * 8192], ["x" * 8193]),
    (
        aws_names.LOG_GROUP_NAME,
        ["/aws/eks/ml-dev/cluster", "/aws/vpc/ml-dev/flow-logs", "a#b_c.d"],
        ["/aws/eks/ml dev", "/aws/eks/ml:dev", "x" * 513, ""],
    ),
]


@pytest.mark.parametrize(
    ("rule", "accepted", "refused"), RULE_CASES, ids=[case[0].what for case in RULE_CASES]
)
def test_rule_accepts_and_refuses(rule: NameRule, accepted: list[str], refused: list[str]) -> None:
    assert rule.source.startswith(("Amazon ", "AWS ", "IAM ", "pulumi-aws ")), rule.source
    assert "(https://" in rule.source, "each rule names the page it comes from"
    for value in accepted:
        assert rule.problems(value) == [], value
    for value in refused:
        assert rule.problems(value), value


def test_bucket_prefix_leaves_room_for_the_unique_suffix() -> None:
    assert aws_names.s3_bucket_prefix_problems("ml-dev-artifacts-") == []
    assert aws_names.s3_bucket_prefix_problems("a" * 36 + "-") == []
    assert aws_names.s3_bucket_prefix_problems("a" * 37 + "-")  # 38: no room for 26 more
    assert aws_names.s3_bucket_prefix_problems("ML-dev-")
    assert aws_names.s3_bucket_prefix_problems("sthree-dev-")


def test_bucket_name_is_not_an_ip_address() -> None:
    assert aws_names.s3_bucket_name_problems("192.168.5.4")
    assert aws_names.s3_bucket_name_problems("192.168.5.com") == []


def test_node_group_prefix_leaves_room_for_the_unique_suffix() -> None:
    assert aws_names.eks_nodegroup_prefix_problems("x" * MAX_POOL_NAME + "-") == []
    assert aws_names.eks_nodegroup_prefix_problems("x" * (MAX_POOL_NAME + 1) + "-")


@pytest.mark.parametrize("name", ["ml-dev", "ml-prod", "a1-b2", "x" * aws_names.MAX_CLUSTER_NAME])
def test_cluster_names_that_fit_everything_named_after_them(name: str) -> None:
    assert aws_names.cluster_name_problems(name) == []


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("ML-dev", "lower-case"),
        ("ml_dev", "lower-case"),
        ("ml--dev", "single '-'"),
        ("ml-dev-", "single '-'"),
        ("1ml", "starting with a letter"),
        ("x" * (aws_names.MAX_CLUSTER_NAME + 1), f"at most {aws_names.MAX_CLUSTER_NAME}"),
        ("sg-ml", "'sg-'"),
        ("sthree-ml", "'sthree-'"),
        ("amzn-s3-demo-ml", "'amzn-s3-demo-'"),
    ],
)
def test_cluster_names_that_would_break_a_derived_name(name: str, why: str) -> None:
    problems = aws_names.cluster_name_problems(name)
    assert problems
    assert any(why in problem for problem in problems), problems


def test_the_longest_cluster_name_still_fits_the_longest_role_name() -> None:
    longest = aws_names.autoname("x" * aws_names.MAX_CLUSTER_NAME + "-addons-vpc-cni-role")
    assert len(longest) == aws_names.IAM_ROLE_NAME.max_length
    assert aws_names.IAM_ROLE_NAME.problems(longest) == []


# --- what the program sends --------------------------------------------------------------------

Check = tuple[str, list[str]]  # (where, problems)

# Types whose inputs name nothing a rule covers (ids, ARNs, CIDRs, policies, settings), apart
# from EC2 tags, which are checked wherever they are.
NAMES_NOTHING = {
    "aws:ec2/eip:Eip",
    "aws:ec2/flowLog:FlowLog",
    "aws:ec2/internetGateway:InternetGateway",
    "aws:ec2/natGateway:NatGateway",
    "aws:ec2/routeTable:RouteTable",
    "aws:ec2/routeTableAssociation:RouteTableAssociation",
    "aws:ec2/subnet:Subnet",
    "aws:ec2/vpc:Vpc",
    "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup",
    "aws:ecr/lifecyclePolicy:LifecyclePolicy",
    "aws:efs/accessPoint:AccessPoint",
    "aws:efs/backupPolicy:BackupPolicy",
    "aws:efs/fileSystem:FileSystem",
    "aws:efs/mountTarget:MountTarget",
    "aws:eks/accessEntry:AccessEntry",
    "aws:eks/accessPolicyAssociation:AccessPolicyAssociation",
    "aws:eks/addon:Addon",
    "aws:eks/podIdentityAssociation:PodIdentityAssociation",
    "aws:iam/rolePolicyAttachment:RolePolicyAttachment",
    "aws:kms/key:Key",
    "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration",
    "aws:s3/bucketOwnershipControls:BucketOwnershipControls",
    "aws:s3/bucketPolicy:BucketPolicy",
    "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
    "aws:s3/bucketVersioning:BucketVersioning",
}


def _given_or_auto(resource: RegisteredResource) -> str:
    """The physical name: the program's, or the one Pulumi makes from the resource name."""
    given = resource.inputs.get("name")
    return str(given) if given else aws_names.autoname(resource.name)


def _ec2_tags(where: str, tags: dict[str, str] | None) -> Iterator[Check]:
    for key, value in (tags or {}).items():
        yield f"{where} tag {key!r}", aws_names.EC2_TAG_KEY.problems(key)
        yield f"{where} tag {key!r} value", aws_names.EC2_TAG_VALUE.problems(value)


def _rule_descriptions(where: str, rules: list[dict[str, Any]] | None) -> Iterator[Check]:
    for index, rule in enumerate(rules or []):
        yield (
            f"{where}[{index}].description",
            aws_names.SECURITY_GROUP_RULE_DESCRIPTION.problems(rule.get("description") or ""),
        )


def _security_group(resource: RegisteredResource) -> Iterator[Check]:
    inputs, where = resource.inputs, resource.name
    yield where, aws_names.SECURITY_GROUP_NAME.problems(_given_or_auto(resource))
    yield (
        f"{where} description",
        aws_names.SECURITY_GROUP_DESCRIPTION.problems(inputs.get("description", "")),
    )
    yield from _rule_descriptions(f"{where} ingress", inputs.get("ingress"))
    yield from _rule_descriptions(f"{where} egress", inputs.get("egress"))
    yield from _ec2_tags(where, inputs.get("tags"))


def _security_group_rule(resource: RegisteredResource) -> Iterator[Check]:
    yield from _rule_descriptions(resource.name, [resource.inputs])


def _launch_template(resource: RegisteredResource) -> Iterator[Check]:
    inputs, where = resource.inputs, resource.name
    yield where, aws_names.LAUNCH_TEMPLATE_NAME.problems(_given_or_auto(resource))
    yield (
        f"{where} description",
        aws_names.LAUNCH_TEMPLATE_DESCRIPTION.problems(inputs.get("description", "")),
    )
    for spec in inputs.get("tagSpecifications") or []:
        yield from _ec2_tags(f"{where} {spec['resourceType']}", spec.get("tags"))


def _bucket(resource: RegisteredResource) -> Iterator[Check]:
    inputs = resource.inputs
    if "bucket" in inputs:
        yield resource.name, aws_names.s3_bucket_name_problems(inputs["bucket"])
    else:
        yield resource.name, aws_names.s3_bucket_prefix_problems(inputs["bucketPrefix"])


def _role(resource: RegisteredResource) -> Iterator[Check]:
    yield resource.name, aws_names.IAM_ROLE_NAME.problems(_given_or_auto(resource))
    yield (
        f"{resource.name} description",
        aws_names.IAM_ROLE_DESCRIPTION.problems(resource.inputs.get("description", "")),
    )


def _node_group(resource: RegisteredResource) -> Iterator[Check]:
    inputs, where = resource.inputs, resource.name
    if "nodeGroupName" in inputs:
        yield where, aws_names.EKS_NODEGROUP_NAME.problems(inputs["nodeGroupName"])
    else:
        yield where, aws_names.eks_nodegroup_prefix_problems(inputs["nodeGroupNamePrefix"])
    for key, value in (inputs.get("labels") or {}).items():
        yield f"{where} label {key!r}", aws_names.EKS_LABEL_KEY.problems(key)
        yield f"{where} label {key!r} value", aws_names.EKS_LABEL_VALUE.problems(value)
    for taint in inputs.get("taints") or []:
        yield f"{where} taint", aws_names.EKS_TAINT_KEY.problems(taint["key"])
        yield f"{where} taint value", aws_names.EKS_TAINT_VALUE.problems(taint["value"])
    for key, value in (inputs.get("tags") or {}).items():
        yield f"{where} tag {key!r}", aws_names.EKS_TAG_KEY.problems(key)
        yield f"{where} tag {key!r} value", aws_names.EKS_TAG_VALUE.problems(value)


def _asg_tag(resource: RegisteredResource) -> Iterator[Check]:
    tag = resource.inputs["tag"]
    yield f"{resource.name} key", aws_names.AUTOSCALING_TAG_KEY.problems(tag["key"])
    yield f"{resource.name} value", aws_names.AUTOSCALING_TAG_VALUE.problems(tag["value"])


def _named_by(rule: NameRule, field: str) -> Callable[[RegisteredResource], Iterator[Check]]:
    def check(resource: RegisteredResource) -> Iterator[Check]:
        yield f"{resource.name} {field}", rule.problems(resource.inputs.get(field, ""))

    return check


def _auto_named_by(rule: NameRule) -> Callable[[RegisteredResource], Iterator[Check]]:
    def check(resource: RegisteredResource) -> Iterator[Check]:
        yield resource.name, rule.problems(_given_or_auto(resource))

    return check


# What each AWS type the program uses sends that a rule covers.
CHECKS: dict[str, Callable[[RegisteredResource], Iterator[Check]]] = {
    "aws:ec2/securityGroup:SecurityGroup": _security_group,
    "aws:ec2/securityGroupRule:SecurityGroupRule": _security_group_rule,
    "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule": _security_group_rule,
    "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule": _security_group_rule,
    "aws:ec2/launchTemplate:LaunchTemplate": _launch_template,
    "aws:s3/bucket:Bucket": _bucket,
    "aws:ecr/repository:Repository": _named_by(aws_names.ECR_REPOSITORY_NAME, "name"),
    "aws:iam/role:Role": _role,
    "aws:iam/rolePolicy:RolePolicy": _auto_named_by(aws_names.IAM_POLICY_NAME),
    "aws:eks/cluster:Cluster": _named_by(aws_names.EKS_CLUSTER_NAME, "name"),
    "aws:eks/nodeGroup:NodeGroup": _node_group,
    "aws:autoscaling/tag:Tag": _asg_tag,
    "aws:kms/alias:Alias": _named_by(aws_names.KMS_ALIAS_NAME, "name"),
    "aws:kms/key:Key": _named_by(aws_names.KMS_KEY_DESCRIPTION, "description"),
    "aws:cloudwatch/logGroup:LogGroup": _named_by(aws_names.LOG_GROUP_NAME, "name"),
}


def sent_names(resource: RegisteredResource) -> Iterator[Check]:
    """Each name, description, label and tag `resource` sends, with what is wrong with it."""
    check = CHECKS.get(resource.type)
    if check is not None:
        yield from check(resource)
    elif resource.type.startswith("aws:ec2/") and "tags" in resource.inputs:
        yield from _ec2_tags(resource.name, resource.inputs["tags"])


def _problems(run: ProgramRun) -> list[str]:
    found = []
    for resource in run.resources:
        if not resource.type.startswith("aws:"):
            continue
        for where, problems in sent_names(resource):
            found += [f"{resource.type} {where}: {problem}" for problem in problems]
    return found


def _unclassified(run: ProgramRun) -> set[str]:
    """AWS types this test does not know yet: each must be checked or listed as naming nothing."""
    used = {r.type for r in run.resources if r.type.startswith("aws:")}
    return used - set(CHECKS) - NAMES_NOTHING


@pytest.mark.parametrize("stack", AWS_STACKS)
def test_stack_sends_only_names_aws_accepts(stack: str) -> None:
    run = stack_run(stack)
    assert not _unclassified(run)
    assert _problems(run) == []


LONGEST_CLUSTER_NAME = "research-platform-eu-central-1-stage"
LONGEST_POOL_NAME = "training-large-spot-g6e-48xlarge-gpu"
LONGEST_TEAM_NAME = "computer-vision-and-multimodal-research"  # EFS workspace paths allow 41


def long_names_config() -> dict[str, Any]:
    """prod, with every name the program builds on as long as settings allow, and every AWS
    feature on: teams and workloads with their own roles, an internal load balancer, images."""
    config = stack_config("prod")
    config["ml-platform:cluster"]["name"] = LONGEST_CLUSTER_NAME
    pools = config["ml-platform:nodePools"]["gpu"]
    pools[1]["name"] = LONGEST_POOL_NAME
    team = {
        "name": LONGEST_TEAM_NAME,
        "quota": {"gpus": 8, "cpu": "64", "memory": "256Gi"},
        "artifacts": "readwrite",
        "trainingJobs": [
            {
                "name": "image-segmentation-pretraining-run-one",
                "workers": 2,
                "gpusPerWorker": 1,
                "pool": LONGEST_POOL_NAME,
                "cpu": "8",
                "memory": "32Gi",
                "artifacts": "readwrite",
            },
            {
                "name": "image-segmentation-pretraining-run-two",
                "workers": 2,
                "gpusPerWorker": 1,
                "pool": LONGEST_POOL_NAME,
                "cpu": "8",
                "memory": "32Gi",
                "artifacts": "readwrite",
            },
        ],
        "notebooks": [{"name": "exploration", "cpu": "1", "memory": "4Gi", "artifacts": "read"}],
    }
    config["ml-platform:teams"].append(team)
    config["ml-platform:serving"]["models"][0]["exposure"] = "internalLoadBalancer"
    return config


def test_longest_names_settings_allow() -> None:
    assert len(LONGEST_CLUSTER_NAME) == aws_names.MAX_CLUSTER_NAME
    assert len(LONGEST_POOL_NAME) == MAX_POOL_NAME


def test_a_stack_with_the_longest_names_sends_only_names_aws_accepts() -> None:
    run = run_program("prod", long_names_config())
    types = {r.type for r in run.resources}
    # Every kind of AWS name the program makes is there to check.
    assert {
        "aws:ec2/securityGroup:SecurityGroup",
        "aws:ecr/repository:Repository",
        "aws:s3/bucket:Bucket",
        "aws:eks/nodeGroup:NodeGroup",
        "aws:autoscaling/tag:Tag",
    } <= types
    assert any("lb-controller" in r.name for r in run.of_type("aws:iam/role:Role"))
    assert not _unclassified(run)
    assert _problems(run) == []
    # Shortened role names stay apart (two resources of one name cannot be registered).
    roles = [r.name for r in run.of_type("aws:iam/role:Role")]
    assert len(roles) == len(set(roles))
