"""What AWS accepts as a name, description, label or tag, service by service.

The Pulumi AWS provider checks few of these rules, so a value that breaks one passes `pulumi
preview` (and the tests' mocks) and fails only when `pulumi up` calls the service.  Each rule here
is the service's own, with the AWS documentation page it comes from.  Settings check the cluster
name against them (`cluster_name_problems`); tests check every name and description the program
sends (tests/test_aws_names.py).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass


@dataclass(frozen=True)
class NameRule:
    """One service's rule for one kind of name: length, characters, reserved prefixes."""

    what: str
    source: str  # the AWS documentation page that states the rule
    max_length: int
    min_length: int = 1
    pattern: str | None = None  # the whole value must match
    reserved_prefixes: tuple[str, ...] = ()
    reserved_suffixes: tuple[str, ...] = ()

    def problems(self, value: str) -> list[str]:
        """Why `value` breaks the rule; empty when it does not."""
        found = []
        if not self.min_length <= len(value) <= self.max_length:
            found.append(
                f"{self.what} must be {self.min_length} to {self.max_length} characters long; "
                f"{value!r} has {len(value)}"
            )
        if self.pattern is not None and not re.fullmatch(self.pattern, value, re.ASCII):
            found.append(f"{self.what} {value!r} does not match {self.pattern}")
        found += [
            f"{self.what} may not start with {prefix!r}: {value!r}"
            for prefix in self.reserved_prefixes
            if value.startswith(prefix)
        ]
        found += [
            f"{self.what} may not end with {suffix!r}: {value!r}"
            for suffix in self.reserved_suffixes
            if value.endswith(suffix)
        ]
        return found


def _charset(characters: str) -> str:
    return f"[{re.escape(characters)}]*"


# --- EC2 -----------------------------------------------------------------------------------------

_EC2_API = (
    "Amazon EC2 API Reference, {page} "
    "(https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_{page}.html)"
)
# "Valid characters: a-z, A-Z, 0-9, spaces, and ._-:/()#,@[]+=&;{}!$*"
_SECURITY_GROUP_CHARACTERS = (
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 ._-:/()#,@[]+=&;{}!$*"
)
SECURITY_GROUP_NAME = NameRule(
    "security group name",
    _EC2_API.format(page="CreateSecurityGroup"),
    max_length=255,
    pattern=_charset(_SECURITY_GROUP_CHARACTERS),
    reserved_prefixes=("sg-",),
)
SECURITY_GROUP_DESCRIPTION = NameRule(
    "security group description",
    _EC2_API.format(page="CreateSecurityGroup"),
    max_length=255,
    pattern=_charset(_SECURITY_GROUP_CHARACTERS),
)
# A rule's description: UserIdGroupPair allows "._-:/()#,@[]+=;{}!$*" (no "&"), IpRange and
# Ipv6Range the group's set; one rule for all of them, the narrower.
SECURITY_GROUP_RULE_DESCRIPTION = NameRule(
    "security group rule description",
    _EC2_API.format(page="UserIdGroupPair") + ", " + _EC2_API.format(page="IpRange"),
    max_length=255,
    min_length=0,
    pattern=_charset(_SECURITY_GROUP_CHARACTERS.replace("&", "")),
)
LAUNCH_TEMPLATE_NAME = NameRule(
    "launch template name",
    _EC2_API.format(page="CreateLaunchTemplate"),
    max_length=128,
    min_length=3,
    pattern=r"[a-zA-Z0-9().\-/_]+",
)
# The provider sends a launch template's `description` as its VersionDescription.
LAUNCH_TEMPLATE_DESCRIPTION = NameRule(
    "launch template version description",
    _EC2_API.format(page="CreateLaunchTemplate"),
    max_length=255,
    min_length=0,
)
# "Tag keys are case-sensitive and accept a maximum of 127 Unicode characters. May not begin
# with aws:"; "Tag values ... accept a maximum of 256 Unicode characters."
EC2_TAG_KEY = NameRule(
    "EC2 tag key", _EC2_API.format(page="Tag"), max_length=127, reserved_prefixes=("aws:",)
)
EC2_TAG_VALUE = NameRule("EC2 tag value", _EC2_API.format(page="Tag"), max_length=256, min_length=0)

# --- Auto Scaling --------------------------------------------------------------------------------

_AUTOSCALING_TAG = (
    "Amazon EC2 Auto Scaling API Reference, Tag "
    "(https://docs.aws.amazon.com/autoscaling/ec2/APIReference/API_Tag.html)"
)
AUTOSCALING_TAG_KEY = NameRule("Auto Scaling tag key", _AUTOSCALING_TAG, max_length=128)
AUTOSCALING_TAG_VALUE = NameRule(
    "Auto Scaling tag value", _AUTOSCALING_TAG, max_length=256, min_length=0
)

# --- EKS -----------------------------------------------------------------------------------------

_EKS_API = (
    "Amazon EKS API Reference, {page} "
    "(https://docs.aws.amazon.com/eks/latest/APIReference/API_{page}.html)"
)
EKS_CLUSTER_NAME = NameRule(
    "EKS cluster name",
    _EKS_API.format(page="CreateCluster"),
    max_length=100,
    pattern=r"[0-9A-Za-z][A-Za-z0-9\-_]*",
)
# The EKS API reference gives no limit for nodegroupName; the provider's documentation of
# `node_group_name` (pulumi-aws 7.51.1, eks.NodeGroup) states this one.
EKS_NODEGROUP_NAME = NameRule(
    "EKS node group name",
    "pulumi-aws 7.51.1, eks.NodeGroup node_group_name "
    "(https://www.pulumi.com/registry/packages/aws/api-docs/eks/nodegroup/)",
    max_length=63,
    pattern=r"[0-9A-Za-z][A-Za-z0-9\-_]*",
)
EKS_LABEL_KEY = NameRule(
    "EKS node group label key", _EKS_API.format(page="UpdateLabelsPayload"), max_length=63
)
EKS_LABEL_VALUE = NameRule(
    "EKS node group label value", _EKS_API.format(page="UpdateLabelsPayload"), max_length=63
)
EKS_TAINT_KEY = NameRule("EKS taint key", _EKS_API.format(page="Taint"), max_length=63)
EKS_TAINT_VALUE = NameRule(
    "EKS taint value", _EKS_API.format(page="Taint"), max_length=63, min_length=0
)
EKS_TAG_KEY = NameRule("EKS tag key", _EKS_API.format(page="CreateNodegroup"), max_length=128)
EKS_TAG_VALUE = NameRule(
    "EKS tag value", _EKS_API.format(page="CreateNodegroup"), max_length=256, min_length=0
)

# --- ECR, S3 -------------------------------------------------------------------------------------

# "The repository name must start with a letter and can only contain lowercase letters, numbers,
# hyphens, underscores, and forward slashes", and the API's pattern for the parts between them.
ECR_REPOSITORY_NAME = NameRule(
    "ECR repository name",
    "Amazon ECR API Reference, CreateRepository "
    "(https://docs.aws.amazon.com/AmazonECR/latest/APIReference/API_CreateRepository.html)",
    max_length=256,
    min_length=2,
    pattern=r"(?=[a-z])(?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*",
)
_S3_BUCKET_NAMING = (
    "Amazon S3 User Guide, General purpose bucket naming rules "
    "(https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules.html)"
)
S3_BUCKET_NAME = NameRule(
    "S3 bucket name",
    _S3_BUCKET_NAMING,
    max_length=63,
    min_length=3,
    # Lower-case letters, digits, dots and hyphens, beginning and ending with a letter or digit,
    # no two adjacent periods.
    pattern=r"(?!.*\.\.)[a-z0-9][a-z0-9.\-]*[a-z0-9]",
    reserved_prefixes=("xn--", "sthree-", "amzn-s3-demo-"),
    reserved_suffixes=("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3"),
)
# A name prefix gets a unique suffix of 26 characters, timestamp digits and a hex counter
# (hashicorp/terraform-plugin-sdk helper/id: id.PrefixedUniqueId, UniqueIDSuffixLength); the
# provider documents `bucket_prefix` as "lowercase and less than or equal to 37 characters".
UNIQUE_SUFFIX_LENGTH = 26
_UNIQUE_SUFFIX = "2026112800000000000000000a"


def s3_bucket_prefix_problems(prefix: str) -> list[str]:
    """Why a bucket named `prefix` plus a unique suffix would break the bucket naming rules."""
    found = []
    if len(prefix) > S3_BUCKET_NAME.max_length - UNIQUE_SUFFIX_LENGTH:
        found.append(
            f"S3 bucket prefix {prefix!r} is longer than "
            f"{S3_BUCKET_NAME.max_length - UNIQUE_SUFFIX_LENGTH} characters"
        )
    return found + S3_BUCKET_NAME.problems(prefix + _UNIQUE_SUFFIX)


def s3_bucket_name_problems(name: str) -> list[str]:
    """The naming rules plus the one a pattern cannot say: not formatted as an IP address."""
    found = S3_BUCKET_NAME.problems(name)
    try:
        ipaddress.IPv4Address(name)
    except ValueError:
        return found
    return [*found, f"S3 bucket name {name!r} is formatted as an IP address"]


def eks_nodegroup_prefix_problems(prefix: str) -> list[str]:
    """Why `prefix` plus the provider's 26-character unique suffix is no node group name."""
    return EKS_NODEGROUP_NAME.problems(prefix + _UNIQUE_SUFFIX)


# --- IAM, KMS, CloudWatch Logs -------------------------------------------------------------------

_IAM_API = (
    "IAM API Reference, {page} "
    "(https://docs.aws.amazon.com/IAM/latest/APIReference/API_{page}.html)"
)
IAM_ROLE_NAME = NameRule(
    "IAM role name", _IAM_API.format(page="CreateRole"), max_length=64, pattern=r"[\w+=,.@-]+"
)
IAM_ROLE_DESCRIPTION = NameRule(
    "IAM role description",
    _IAM_API.format(page="CreateRole"),
    max_length=1000,
    min_length=0,
    pattern="[\u0009\u000a\u000d\u0020-\u007e\u00a1-\u00ff]*",
)
IAM_POLICY_NAME = NameRule(
    "IAM inline policy name",
    _IAM_API.format(page="PutRolePolicy"),
    max_length=128,
    pattern=r"[\w+=,.@-]+",
)
# "It can contain only alphanumeric characters, forward slashes (/), underscores (_), and dashes
# (-). The alias name cannot begin with alias/aws/."
KMS_ALIAS_NAME = NameRule(
    "KMS alias name",
    "AWS KMS API Reference, CreateAlias "
    "(https://docs.aws.amazon.com/kms/latest/APIReference/API_CreateAlias.html)",
    max_length=256,
    pattern=r"alias/[a-zA-Z0-9/_-]+",
    reserved_prefixes=("alias/aws/",),
)
KMS_KEY_DESCRIPTION = NameRule(
    "KMS key description",
    "AWS KMS API Reference, CreateKey "
    "(https://docs.aws.amazon.com/kms/latest/APIReference/API_CreateKey.html)",
    max_length=8192,
    min_length=0,
)
LOG_GROUP_NAME = NameRule(
    "CloudWatch Logs group name",
    "Amazon CloudWatch Logs API Reference, CreateLogGroup (https://docs.aws.amazon.com/"
    "AmazonCloudWatchLogs/latest/APIReference/API_CreateLogGroup.html)",
    max_length=512,
    pattern=r"[.\-_/#A-Za-z0-9]+",
)

# --- names Pulumi makes --------------------------------------------------------------------------

# Pulumi names a resource whose physical name the program leaves open `<resource name>-<7 random
# characters>`, and fails the preview when that exceeds the provider's maximum (pulumi-aws
# provider/resources.go: aws_iam_role `AutoName("name", 64, "-")`).
AUTONAME_SUFFIX_LENGTH = 8


def autoname(resource_name: str) -> str:
    """The shape of the name Pulumi gives a resource (the random part as `x`s)."""
    return f"{resource_name}-{'x' * (AUTONAME_SUFFIX_LENGTH - 1)}"


# --- the cluster name ----------------------------------------------------------------------------

# Names derived from the cluster name that nothing shortens, longest first: auto-named IAM roles
# such as `<cluster>-addons-vpc-cni-role-<7 random>` (infra/addons.py), and the same length for
# `-addons-ebs-csi-role` and `-logging-writer-role`.  Roles whose names also hold team or
# workload names are shortened to fit (infra/workload_identity.py).
LONGEST_ROLE_NAME_SUFFIX = len("-addons-vpc-cni-role")
MAX_CLUSTER_NAME = IAM_ROLE_NAME.max_length - AUTONAME_SUFFIX_LENGTH - LONGEST_ROLE_NAME_SUFFIX

# The cluster name is also the S3 bucket prefix and the ECR namespace (lower case, no "_", letters
# or digits around every "-", starting with a letter) and begins the EFS security group's name.
_CLUSTER_NAME = re.compile(r"[a-z][a-z0-9]*(-[a-z0-9]+)*")
_RESERVED_CLUSTER_PREFIXES = (
    *SECURITY_GROUP_NAME.reserved_prefixes,
    *S3_BUCKET_NAME.reserved_prefixes,
)


def cluster_name_problems(name: str) -> list[str]:
    """Why `name` cannot name an EKS cluster and everything the program names after it."""
    found = []
    if not _CLUSTER_NAME.fullmatch(name):
        found.append(
            "use lower-case letters, digits and single '-' between them, starting with a letter "
            "(it also names the S3 artifact bucket and the ECR repositories, which allow no upper "
            "case or '_')"
        )
    if len(name) > MAX_CLUSTER_NAME:
        found.append(
            f"use at most {MAX_CLUSTER_NAME} characters (it has {len(name)}): IAM role names "
            f"such as <cluster>-addons-vpc-cni-role-<7 random characters> may not exceed "
            f"{IAM_ROLE_NAME.max_length}"
        )
    found += [
        f"do not start it with {prefix!r}, which AWS reserves"
        for prefix in _RESERVED_CLUSTER_PREFIXES
        if name.startswith(prefix)
    ]
    return found
