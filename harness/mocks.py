"""Pulumi mocks with realistic outputs for every resource type and invoke the program uses.

Under mocks no provider runs: nothing is auto-named and no cloud computes ids, ARNs or endpoints.
These mocks fill them in deterministically (derived from the resource name), so the program sees
what a real deployment would hand it and the render is stable from run to run.  A resource type
or invoke without a mock here is an error, not a silent `{}`.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from typing import Any

import pulumi

ACCOUNT_ID = "123456789012"
PARTITION = "aws"


class UnmockedCallError(RuntimeError):
    """The program used a resource type or invoke the harness has no mock for."""


def short_hash(*parts: str, length: int = 17) -> str:
    """A stable hex digest of `parts`, sized like AWS resource id suffixes."""
    return hashlib.sha256("/".join(parts).encode()).hexdigest()[:length]


State = dict[str, Any]
ResourceHandler = Callable[[pulumi.runtime.MockResourceArgs, State], tuple[str, State]]


def _kubernetes_object(args: pulumi.runtime.MockResourceArgs, state: State) -> tuple[str, State]:
    metadata = dict(state.get("metadata") or {})
    # The Kubernetes provider auto-names objects without metadata.name as <name>-<8 random chars>.
    metadata.setdefault("name", f"{args.name}-{short_hash(args.name, length=8)}")
    metadata.setdefault("uid", _uuid(args.name))
    state["metadata"] = metadata
    namespace = metadata.get("namespace")
    resource_id = f"{namespace}/{metadata['name']}" if namespace else metadata["name"]
    return resource_id, state


def _provider(args: pulumi.runtime.MockResourceArgs, state: State) -> tuple[str, State]:
    return _uuid(args.name), state


def _uuid(name: str) -> str:
    digest = short_hash("uid", name, length=32)
    return f"{digest[:8]}-{digest[8:12]}-{digest[12:16]}-{digest[16:20]}-{digest[20:]}"


class _Context:
    """What the mocks learn while the program runs (the AWS region from the provider)."""

    region = "us-east-1"


def _aws_id(prefix: str, name: str) -> str:
    return f"{prefix}-{short_hash(prefix, name)}"


def _arn(service: str, resource: str, region: bool = True) -> str:
    where = _Context.region if region else ""
    return f"arn:{PARTITION}:{service}:{where}:{ACCOUNT_ID}:{resource}"


def _with(prefix: str, service: str, kind: str) -> ResourceHandler:
    """A handler for resources whose outputs are just an id and an ARN."""

    def handle(args: pulumi.runtime.MockResourceArgs, state: State) -> tuple[str, State]:
        resource_id = _aws_id(prefix, args.name)
        state.setdefault("arn", _arn(service, f"{kind}/{resource_id}"))
        state.setdefault("tagsAll", dict(state.get("tags") or {}))
        return resource_id, state

    return handle


def _aws_provider(args: pulumi.runtime.MockResourceArgs, state: State) -> tuple[str, State]:
    _Context.region = str(state.get("region") or _Context.region)
    return _provider(args, state)


def _vpc(args: pulumi.runtime.MockResourceArgs, state: State) -> tuple[str, State]:
    resource_id, state = _with("vpc", "ec2", "vpc")(args, state)
    state |= {
        "defaultSecurityGroupId": _aws_id("sg", f"{args.name}-default"),
        "mainRouteTableId": _aws_id("rtb", f"{args.name}-main"),
        "ownerId": ACCOUNT_ID,
    }
    return resource_id, state


def _default_security_group(
    args: pulumi.runtime.MockResourceArgs, state: State
) -> tuple[str, State]:
    resource_id, state = _with("sg", "ec2", "security-group")(args, state)
    # Managing it adopts the VPC's existing group, named `default`; rules are what was given.
    state |= {
        "name": "default",
        "description": "default VPC security group",
        "ownerId": ACCOUNT_ID,
        "ingress": state.get("ingress") or [],
        "egress": state.get("egress") or [],
    }
    return resource_id, state


def _eip(args: pulumi.runtime.MockResourceArgs, state: State) -> tuple[str, State]:
    resource_id, state = _with("eipalloc", "ec2", "elastic-ip")(args, state)
    octets = bytes.fromhex(short_hash("ip", args.name, length=4))
    state["publicIp"] = f"198.51.{octets[0]}.{octets[1]}"  # documentation range
    return resource_id, state


def _named(service: str, kind: str, region: bool = True) -> ResourceHandler:
    """Resources identified by a name: the given one, or an auto-name like Pulumi's."""

    def handle(args: pulumi.runtime.MockResourceArgs, state: State) -> tuple[str, State]:
        name = state.get("name") or f"{args.name}-{short_hash(args.name, length=7)}"
        state["name"] = name
        state.setdefault("arn", _arn(service, f"{kind}{name}", region=region))
        state.setdefault("tagsAll", dict(state.get("tags") or {}))
        return str(name), state

    return handle


def _autonamed(handler: ResourceHandler) -> ResourceHandler:
    """Resources with an id of their own and a `name` Pulumi fills in when the program does not."""

    def handle(args: pulumi.runtime.MockResourceArgs, state: State) -> tuple[str, State]:
        state.setdefault("name", f"{args.name}-{short_hash(args.name, length=7)}")
        return handler(args, state)

    return handle


def _iam_role(args: pulumi.runtime.MockResourceArgs, state: State) -> tuple[str, State]:
    resource_id, state = _named("iam", "role/", region=False)(args, state)
    state["uniqueId"] = "AROA" + short_hash("role", args.name, length=17).upper()
    return resource_id, state


def _kms_key(args: pulumi.runtime.MockResourceArgs, state: State) -> tuple[str, State]:
    key_id = _uuid(f"kms-{args.name}")
    state |= {"keyId": key_id, "arn": _arn("kms", f"key/{key_id}")}
    return key_id, state


def _log_group(args: pulumi.runtime.MockResourceArgs, state: State) -> tuple[str, State]:
    name = str(state.get("name") or args.name)
    state |= {"name": name, "arn": _arn("logs", f"log-group:{name}")}
    return name, state


def _eks_cluster(args: pulumi.runtime.MockResourceArgs, state: State) -> tuple[str, State]:
    name = str(state.get("name") or args.name)
    endpoint_id = short_hash("eks", name, length=32).upper()
    vpc_config = dict(state.get("vpcConfig") or {})
    vpc_config |= {
        "clusterSecurityGroupId": _aws_id("sg", f"{name}-cluster"),
        "vpcId": _aws_id("vpc", f"{name}-vpc"),
    }
    state |= {
        "name": name,
        "arn": _arn("eks", f"cluster/{name}"),
        "endpoint": f"https://{endpoint_id}.gr7.{_Context.region}.eks.amazonaws.com",
        "certificateAuthority": {
            "data": "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCm1vY2sKLS0tLS1FTkQ="
        },
        "identities": [
            {
                "oidcs": [
                    {"issuer": f"https://oidc.eks.{_Context.region}.amazonaws.com/id/{endpoint_id}"}
                ]
            }
        ],
        "platformVersion": "eks.8",
        "status": "ACTIVE",
        "vpcConfig": vpc_config,
    }
    return name, state


def _eks_child(kind: str, key: str) -> ResourceHandler:
    """Resources of a cluster, identified as `<cluster>:<key>`."""

    def handle(args: pulumi.runtime.MockResourceArgs, state: State) -> tuple[str, State]:
        resource_id = f"{state.get('clusterName')}:{state.get(key) or args.name}"
        state.setdefault("arn", _arn("eks", f"{kind}/{resource_id}"))
        return resource_id, state

    return handle


def _node_group(args: pulumi.runtime.MockResourceArgs, state: State) -> tuple[str, State]:
    prefix = state.get("nodeGroupNamePrefix") or f"{args.name}-"
    name = state.get("nodeGroupName") or f"{prefix}{short_hash('ng', args.name, length=26)}"
    cluster = state.get("clusterName")
    state |= {
        "nodeGroupName": name,
        "arn": _arn("eks", f"nodegroup/{cluster}/{name}/{_uuid(name)}"),
        "status": "ACTIVE",
        "resources": [
            {
                "autoscalingGroups": [{"name": f"eks-{name}-{_uuid(name)}"}],
                "remoteAccessSecurityGroupId": "",
            }
        ],
    }
    return f"{cluster}:{name}", state


def _launch_template(args: pulumi.runtime.MockResourceArgs, state: State) -> tuple[str, State]:
    resource_id, state = _with("lt", "ec2", "launch-template")(args, state)
    state |= {"latestVersion": 1, "defaultVersion": 1}
    return resource_id, state


def _efs_file_system(args: pulumi.runtime.MockResourceArgs, state: State) -> tuple[str, State]:
    resource_id, state = _with("fs", "elasticfilesystem", "file-system")(args, state)
    state["dnsName"] = f"{resource_id}.efs.{_Context.region}.amazonaws.com"
    state["numberOfMountTargets"] = 0
    return resource_id, state


def _efs_mount_target(args: pulumi.runtime.MockResourceArgs, state: State) -> tuple[str, State]:
    resource_id = _aws_id("fsmt", args.name)
    octet = int(short_hash("ip", args.name, length=2), 16)
    state |= {"ipAddress": f"10.0.{octet}.10", "networkInterfaceId": _aws_id("eni", args.name)}
    return resource_id, state


def _ecr_repository(args: pulumi.runtime.MockResourceArgs, state: State) -> tuple[str, State]:
    name = str(state.get("name") or args.name)
    state |= {
        "name": name,
        "arn": _arn("ecr", f"repository/{name}"),
        "registryId": ACCOUNT_ID,
        "repositoryUrl": f"{ACCOUNT_ID}.dkr.ecr.{_Context.region}.amazonaws.com/{name}",
    }
    return name, state


def _docker_image(args: pulumi.runtime.MockResourceArgs, state: State) -> tuple[str, State]:
    [tag] = state.get("tags") or [f"{args.name}:latest"]
    digest = "sha256:" + short_hash("image", str(tag), length=64)
    state |= {"ref": f"{tag}@{digest}", "digest": digest, "contextHash": short_hash(str(tag))}
    return digest, state


def _s3_bucket(args: pulumi.runtime.MockResourceArgs, state: State) -> tuple[str, State]:
    # The provider names a bucket from bucket_prefix plus a unique suffix.
    name = str(
        state.get("bucket") or f"{state.get('bucketPrefix', args.name)}{short_hash(args.name)}"
    )
    state |= {
        "bucket": name,
        "arn": f"arn:{PARTITION}:s3:::{name}",
        "region": _Context.region,
        "bucketRegionalDomainName": f"{name}.s3.{_Context.region}.amazonaws.com",
    }
    return name, state


def _helm_release(args: pulumi.runtime.MockResourceArgs, state: State) -> tuple[str, State]:
    namespace, name = state.get("namespace", "default"), state.get("name", args.name)
    state["status"] = {
        "name": name,
        "namespace": namespace,
        "chart": state.get("chart"),
        "version": state.get("version"),
        "status": "deployed",
        "revision": 1,
    }
    return f"{namespace}/{name}", state


def _simple(prefix: str) -> ResourceHandler:
    def handle(args: pulumi.runtime.MockResourceArgs, state: State) -> tuple[str, State]:
        return _aws_id(prefix, args.name), state

    return handle


# Exact resource types with their own output shapes.  Kubernetes objects and providers share
# handlers (matched by prefix below).
RESOURCE_HANDLERS: dict[str, ResourceHandler] = {
    "pulumi:providers:aws": _aws_provider,
    "aws:ec2/vpc:Vpc": _vpc,
    "aws:ec2/subnet:Subnet": _with("subnet", "ec2", "subnet"),
    "aws:ec2/internetGateway:InternetGateway": _with("igw", "ec2", "internet-gateway"),
    "aws:ec2/routeTable:RouteTable": _with("rtb", "ec2", "route-table"),
    "aws:ec2/routeTableAssociation:RouteTableAssociation": _simple("rtbassoc"),
    "aws:ec2/eip:Eip": _eip,
    "aws:ec2/natGateway:NatGateway": _with("nat", "ec2", "natgateway"),
    "aws:ec2/launchTemplate:LaunchTemplate": _autonamed(_launch_template),
    "aws:ec2/securityGroup:SecurityGroup": _autonamed(_with("sg", "ec2", "security-group")),
    "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup": _default_security_group,
    "aws:ec2/flowLog:FlowLog": _with("fl", "ec2", "vpc-flow-log"),
    "aws:kms/key:Key": _kms_key,
    "aws:kms/alias:Alias": _named("kms", "alias/"),
    "aws:cloudwatch/logGroup:LogGroup": _log_group,
    "aws:iam/role:Role": _iam_role,
    "aws:iam/rolePolicy:RolePolicy": _autonamed(_simple("rolepolicy")),
    "aws:iam/rolePolicyAttachment:RolePolicyAttachment": _simple("attachment"),
    "aws:eks/cluster:Cluster": _eks_cluster,
    "aws:eks/accessEntry:AccessEntry": _eks_child("access-entry", "principalArn"),
    "aws:eks/accessPolicyAssociation:AccessPolicyAssociation": _eks_child(
        "access-policy", "policyArn"
    ),
    "aws:eks/addon:Addon": _eks_child("addon", "addonName"),
    "aws:eks/podIdentityAssociation:PodIdentityAssociation": _eks_child(
        "podidentityassociation", "serviceAccount"
    ),
    "aws:eks/nodeGroup:NodeGroup": _node_group,
    "aws:autoscaling/tag:Tag": _simple("asgtag"),
    "kubernetes:helm.sh/v3:Release": _helm_release,
    "aws:efs/fileSystem:FileSystem": _efs_file_system,
    "aws:efs/mountTarget:MountTarget": _efs_mount_target,
    "aws:efs/accessPoint:AccessPoint": _with("fsap", "elasticfilesystem", "access-point"),
    "aws:efs/backupPolicy:BackupPolicy": _simple("fsbackup"),
    "aws:ecr/repository:Repository": _ecr_repository,
    "aws:s3/bucket:Bucket": _s3_bucket,
    "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock": _simple("s3pab"),
    "aws:s3/bucketOwnershipControls:BucketOwnershipControls": _simple("s3own"),
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration": (
        _simple("s3sse")
    ),
    "aws:s3/bucketVersioning:BucketVersioning": _simple("s3ver"),
    "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration": _simple("s3lc"),
    "aws:s3/bucketPolicy:BucketPolicy": _simple("s3policy"),
    "aws:ecr/lifecyclePolicy:LifecyclePolicy": _simple("ecrpolicy"),
    "aws:ecr/pullThroughCacheRule:PullThroughCacheRule": lambda args, state: (
        str(state["ecrRepositoryPrefix"]),
        {**state, "registryId": ACCOUNT_ID},
    ),
    "docker-build:index:Image": _docker_image,
    "random:index/randomPassword:RandomPassword": lambda args, state: (
        args.name,
        {**state, "result": "mock-" + short_hash("password", args.name, length=27)},
    ),
}


def _handler_for(args: pulumi.runtime.MockResourceArgs) -> ResourceHandler:
    if args.typ in RESOURCE_HANDLERS:
        return RESOURCE_HANDLERS[args.typ]
    if args.typ.startswith("pulumi:providers:"):
        return _provider
    if args.typ.startswith("kubernetes:") and args.custom:
        return _kubernetes_object
    raise UnmockedCallError(
        f"no mock outputs for resource type {args.typ!r} ({args.name}); add a handler to "
        "harness/mocks.py with the outputs the real provider returns"
    )


INVOKES: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "aws:index/getCallerIdentity:getCallerIdentity": lambda _: {
        "accountId": ACCOUNT_ID,
        "arn": f"arn:{PARTITION}:sts::{ACCOUNT_ID}:assumed-role/ci-deployer/pulumi-run",
        "userId": "AROAEXAMPLEID:ci",
        "id": ACCOUNT_ID,
    },
    # An assumed-role session ARN resolves to the role it was assumed from.
    "aws:iam/getSessionContext:getSessionContext": lambda args: {
        "arn": args["arn"],
        "issuerArn": f"arn:{PARTITION}:iam::{ACCOUNT_ID}:role/{args['arn'].split('/')[1]}",
        "issuerId": "AROAEXAMPLEID",
        "issuerName": args["arn"].split("/")[1],
        "sessionName": args["arn"].split("/")[-1],
        "id": args["arn"],
    },
    "aws:ecr/getAuthorizationToken:getAuthorizationToken": lambda args: {
        "authorizationToken": "QVdTOm1vY2stdG9rZW4=",
        "userName": "AWS",
        "password": "mock-token",
        "proxyEndpoint": f"https://{ACCOUNT_ID}.dkr.ecr.{_Context.region}.amazonaws.com",
        "expiresAt": "2026-11-29T10:00:00Z",
        "registryId": args.get("registryId", ACCOUNT_ID),
        "id": _Context.region,
    },
    "aws:index/getPartition:getPartition": lambda _: {
        "partition": PARTITION,
        "dnsSuffix": "amazonaws.com",
        "reverseDnsPrefix": "com.amazonaws",
        "id": PARTITION,
    },
}


class PlatformMocks(pulumi.runtime.Mocks):
    """Answers resource registrations and invokes the way AWS and Kubernetes would."""

    def __init__(self) -> None:
        # The transforms of the registration each thread is answering: the mock monitor hands
        # them over but does not run them, so the recording monitor keeps them for the tests.
        self._registering = threading.local()

    def take_transforms(self) -> tuple[pulumi.ResourceTransform, ...]:
        """The transforms of the registration just answered (then forgotten, so a registration
        that never reaches `new_resource` cannot inherit the previous one's)."""
        transforms: tuple[pulumi.ResourceTransform, ...] = getattr(
            self._registering, "transforms", ()
        )
        self._registering.transforms = ()
        return transforms

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, State]:
        self._registering.transforms = tuple(args.transforms)
        state: State = dict(args.inputs)
        if not args.custom:
            return None, state  # components have no id or provider-computed state
        return _handler_for(args)(args, state)

    def call(self, args: pulumi.runtime.MockCallArgs) -> dict[str, Any]:  # type: ignore[override]
        handler = INVOKES.get(args.token)
        if handler is None:
            raise UnmockedCallError(
                f"no mock for invoke {args.token!r}; add it to harness/mocks.py INVOKES with "
                "camelCase keys, as the provider returns them"
            )
        return handler(dict(args.args))
