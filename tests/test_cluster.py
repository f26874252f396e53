"""The AWS layer of the dev and prod stacks, from the resources the program registers."""

from __future__ import annotations

import json

import pytest

from harness.program import (
    ProgramRun,
    RegisteredResource,
    run_program,
    stack_config,
    stack_settings,
)
from infra import gpu_sharing, versions
from infra.scheduling import GPU_TAINT, placement
from tests.conftest import stack_run
from tests.dependencies import waits_for
from tests.policies import as_list, statements


def _by_urn(run: ProgramRun) -> dict[str, RegisteredResource]:
    return {r.urn: r for r in run.resources}


def test_local_creates_no_aws_resource() -> None:
    run = stack_run("local")
    assert not [
        r for r in run.resources if r.type.startswith("aws:") or r.type == "pulumi:providers:aws"
    ]


@pytest.mark.parametrize(("stack", "zones", "nat_gateways"), [("dev", 2, 1), ("prod", 3, 3)])
def test_network_spans_the_zones(stack: str, zones: int, nat_gateways: int) -> None:
    run = stack_run(stack)
    subnets = run.of_type("aws:ec2/subnet:Subnet")
    private = [s for s in subnets if s.inputs["tags"].get("kubernetes.io/role/internal-elb") == "1"]
    public = [s for s in subnets if s.inputs["tags"].get("kubernetes.io/role/elb") == "1"]
    assert len(private) == len(public) == zones
    assert len({s.inputs["availabilityZone"] for s in private}) == zones
    cluster_tag = f"kubernetes.io/cluster/{stack_settings(stack).cluster.name}"
    assert all(s.inputs["tags"][cluster_tag] == "shared" for s in subnets)
    assert not any(s.inputs.get("mapPublicIpOnLaunch") for s in subnets)
    assert len(run.of_type("aws:ec2/natGateway:NatGateway")) == nat_gateways


def test_cluster_uses_access_entries_encryption_and_logging(aws_run: ProgramRun) -> None:
    settings = stack_settings(aws_run.stack)
    cluster = aws_run.one("aws:eks/cluster:Cluster").inputs
    # The secrets key, by its alias (log groups have keys of their own: test_aws_hardening).
    [alias] = [
        a.inputs
        for a in aws_run.of_type("aws:kms/alias:Alias")
        if a.inputs["name"] == f"alias/eks/{settings.cluster.name}-secrets"
    ]
    [key] = [
        k for k in aws_run.of_type("aws:kms/key:Key") if k.outputs["keyId"] == alias["targetKeyId"]
    ]
    assert cluster["name"] == settings.cluster.name
    assert cluster["version"] == settings.cluster.kubernetes_version
    assert cluster["accessConfig"] == {
        "authenticationMode": "API",
        "bootstrapClusterCreatorAdminPermissions": False,
    }
    assert key.inputs["enableKeyRotation"] is True
    assert cluster["encryptionConfig"]["resources"] == ["secrets"]
    assert cluster["encryptionConfig"]["provider"]["keyArn"] == key.outputs["arn"]
    assert set(cluster["enabledClusterLogTypes"]) == {
        "api",
        "audit",
        "authenticator",
        "controllerManager",
        "scheduler",
    }
    groups = {
        r.inputs["name"]: r.inputs for r in aws_run.of_type("aws:cloudwatch/logGroup:LogGroup")
    }
    log_group = groups[f"/aws/eks/{settings.cluster.name}/cluster"]
    assert log_group["retentionInDays"] == settings.aws.log_retention_days  # type: ignore[union-attr]
    assert cluster["vpcConfig"]["endpointPrivateAccess"] is True


def test_deletion_protection_per_stack() -> None:
    assert stack_run("prod").one("aws:eks/cluster:Cluster").inputs["deletionProtection"] is True
    assert stack_run("dev").one("aws:eks/cluster:Cluster").inputs["deletionProtection"] is False


def test_prod_endpoint_is_private_with_a_restricted_public_side() -> None:
    vpc = stack_run("prod").one("aws:eks/cluster:Cluster").inputs["vpcConfig"]
    assert vpc["endpointPrivateAccess"] is True
    assert "0.0.0.0/0" not in vpc["publicAccessCidrs"]


def test_no_aws_auth_configmap(aws_run: ProgramRun) -> None:
    config_maps = aws_run.of_type("kubernetes:core/v1:ConfigMap")
    assert not [c for c in config_maps if c.inputs["metadata"]["name"] == "aws-auth"]


def test_admins_and_deployer_get_cluster_admin_through_access_entries(aws_run: ProgramRun) -> None:
    settings = stack_settings(aws_run.stack)
    entries = {
        e.inputs["principalArn"]
        for e in aws_run.of_type("aws:eks/accessEntry:AccessEntry")
        if "team-access" not in e.urn  # teams' entries: groups only (test_tenancy)
    }
    access = settings.aws.access  # type: ignore[union-attr]
    expected = set(access.admins)
    if access.include_deployer:
        # The deployer is the role behind the mock's assumed-role session, not the session ARN.
        expected.add("arn:aws:iam::123456789012:role/ci-deployer")
    assert entries == expected
    policies = aws_run.of_type("aws:eks/accessPolicyAssociation:AccessPolicyAssociation")
    assert {p.inputs["principalArn"] for p in policies} == expected
    for policy in policies:
        assert policy.inputs["policyArn"].endswith("/AmazonEKSClusterAdminPolicy")
        assert policy.inputs["accessScope"] == {"type": "cluster"}
    for provider in aws_run.of_type("pulumi:providers:kubernetes"):
        assert {p.urn for p in policies} <= set(provider.dependencies), "provider races the grants"


@pytest.mark.parametrize("suffix", ["-k8s", "-k8s-installs"])
def test_kubernetes_provider_comes_from_the_cluster(aws_run: ProgramRun, suffix: str) -> None:
    [provider] = [
        p.inputs for p in aws_run.of_type("pulumi:providers:kubernetes") if p.name.endswith(suffix)
    ]
    cluster = aws_run.one("aws:eks/cluster:Cluster").outputs
    assert provider["clusterIdentifier"] == cluster["arn"]
    kubeconfig = json.loads(provider["kubeconfig"])
    assert kubeconfig["clusters"][0]["cluster"]["server"] == cluster["endpoint"]
    user = kubeconfig["users"][0]["user"]["exec"]
    assert user["command"] == "aws"
    assert user["args"][2:5] == ["eks", "get-token", "--cluster-name"]
    assert "kubeconfig" in aws_run.secret_outputs


def test_managed_addons_are_pinned(aws_run: ProgramRun) -> None:
    minor = stack_settings(aws_run.stack).cluster.kubernetes_version
    pins = versions.EKS_ADDON_VERSIONS[minor]
    addons = {a.inputs["addonName"]: a for a in aws_run.of_type("aws:eks/addon:Addon")}
    assert {name: a.inputs["addonVersion"] for name, a in addons.items()} == {
        "vpc-cni": pins.vpc_cni,
        "coredns": pins.coredns,
        "kube-proxy": pins.kube_proxy,
        "eks-pod-identity-agent": pins.pod_identity_agent,
        "aws-efs-csi-driver": pins.efs_csi_driver,
        "aws-ebs-csi-driver": pins.ebs_csi_driver,
        "metrics-server": pins.metrics_server,
    }
    cni = addons["vpc-cni"].inputs["podIdentityAssociations"]
    assert [a["serviceAccount"] for a in cni] == ["aws-node"]
    system_group = next(
        g for g in aws_run.of_type("aws:eks/nodeGroup:NodeGroup") if g.name.endswith("-system-ng")
    )
    # CoreDNS waits for nodes; the others come before any node boots.
    assert system_group.urn in addons["coredns"].dependencies
    for node_group in aws_run.of_type("aws:eks/nodeGroup:NodeGroup"):
        for name in ("vpc-cni", "kube-proxy", "eks-pod-identity-agent"):
            assert addons[name].urn in node_group.dependencies


def _node_groups(run: ProgramRun) -> dict[str, RegisteredResource]:
    return {
        g.inputs["labels"]["ml-platform.io/pool"]: g
        for g in run.of_type("aws:eks/nodeGroup:NodeGroup")
    }


def test_gpu_pools_follow_the_contract(aws_run: ProgramRun) -> None:
    settings = stack_settings(aws_run.stack)
    groups = _node_groups(aws_run)
    assert set(groups) == {"system", *(p.name for p in settings.node_pools.gpu)}
    for pool in settings.node_pools.gpu:
        group = groups[pool.name].inputs
        assert group["amiType"] in ("AL2023_x86_64_NVIDIA", "BOTTLEROCKET_x86_64_NVIDIA")
        assert group["taints"] == [
            {"key": "nvidia.com/gpu", "value": "present", "effect": "NO_SCHEDULE"}
        ]
        assert group["labels"]["ml-platform.io/accelerator"] == "nvidia"
        assert group["capacityType"] == pool.capacity_type
        assert group["scalingConfig"]["minSize"] == pool.min_size
        # What a workload gets from the contract lands it on exactly this pool.
        where = placement(settings, pool.name)
        assert where.node_selector.items() <= group["labels"].items()
        assert GPU_TAINT.toleration() in where.tolerations
    system = groups["system"].inputs
    assert system["amiType"] == "AL2023_x86_64_STANDARD"
    assert "taints" not in system or system["taints"] == []


def test_dev_and_prod_pool_shapes() -> None:
    dev = _node_groups(stack_run("dev"))
    assert dev["gpu"].inputs["capacityType"] == "SPOT"
    assert dev["gpu"].inputs["scalingConfig"]["minSize"] == 0
    prod = _node_groups(stack_run("prod"))
    assert prod["system"].inputs["capacityType"] == "ON_DEMAND"
    assert prod["serving"].inputs["capacityType"] == "ON_DEMAND"
    assert prod["training"].inputs["capacityType"] == "SPOT"


def test_autoscaler_owns_the_desired_size(aws_run: ProgramRun) -> None:
    for group in aws_run.of_type("aws:eks/nodeGroup:NodeGroup"):
        assert group.ignore_changes == ("scalingConfig.desiredSize",)


def test_gpu_pools_carry_scale_from_zero_tags(aws_run: ProgramRun) -> None:
    settings = stack_settings(aws_run.stack)
    by_urn = _by_urn(aws_run)
    tags: dict[str, dict[str, str]] = {}
    for tag in aws_run.of_type("aws:autoscaling/tag:Tag"):
        component = by_urn[tag.parent or ""].name
        tags.setdefault(component, {})[tag.inputs["tag"]["key"]] = tag.inputs["tag"]["value"]
        assert tag.inputs["autoscalingGroupName"].startswith("eks-")
    template = "k8s.io/cluster-autoscaler/node-template"
    for pool in settings.node_pools.gpu:
        pool_tags = tags[f"{settings.cluster.name}-{pool.name}"]
        assert pool_tags[f"{template}/label/ml-platform.io/pool"] == pool.name
        assert pool_tags[f"{template}/taint/nvidia.com/gpu"] == "present:NoSchedule"
        # What the pool's nodes advertise (tests/test_autoscaler_gpu.py reads it from upstream).
        resource = gpu_sharing.resource_name(pool)
        assert pool_tags[f"{template}/resources/{resource}"] == str(
            gpu_sharing.units_per_node(pool)
        )


def test_launch_templates_require_imdsv2_and_encrypt_disks(aws_run: ProgramRun) -> None:
    templates = aws_run.of_type("aws:ec2/launchTemplate:LaunchTemplate")
    assert len(templates) == len(aws_run.of_type("aws:eks/nodeGroup:NodeGroup"))
    for template in templates:
        metadata = template.inputs["metadataOptions"]
        assert metadata["httpTokens"] == "required"
        assert metadata["httpPutResponseHopLimit"] == 1
        [disk] = template.inputs["blockDeviceMappings"]
        assert disk["ebs"]["encrypted"] == "true"


def test_no_iam_statement_allows_everything_everywhere(aws_run: ProgramRun) -> None:
    documents = [r.inputs["policy"] for r in aws_run.of_type("aws:iam/rolePolicy:RolePolicy")]
    documents += [r.inputs["assumeRolePolicy"] for r in aws_run.of_type("aws:iam/role:Role")]
    assert documents
    for document in documents:
        for statement in statements(document):
            actions = as_list(statement.get("Action", []))
            resources = as_list(statement.get("Resource", []))
            assert not ("*" in actions and "*" in resources), statement
            assert not any(a.endswith(":*") for a in actions), statement


def test_only_expected_managed_policies(aws_run: ProgramRun) -> None:
    attached = {
        r.inputs["policyArn"].rsplit("/", 1)[-1]
        for r in aws_run.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")
    }
    assert attached == {
        "AmazonEKSClusterPolicy",
        "AmazonEKSWorkerNodePolicy",
        "AmazonEC2ContainerRegistryPullOnly",
        "AmazonEKS_CNI_Policy",
        "AmazonEFSCSIDriverPolicy",
        "AmazonEBSCSIDriverPolicy",
    }


def test_autoscaler_is_pinned_and_scoped_to_this_cluster(aws_run: ProgramRun) -> None:
    settings = stack_settings(aws_run.stack)
    [release] = [
        r.inputs
        for r in aws_run.of_type("kubernetes:helm.sh/v3:Release")
        if r.inputs["chart"] == "cluster-autoscaler"
    ]
    assert release["chart"] == versions.CLUSTER_AUTOSCALER_CHART.chart
    assert release["version"] == versions.CLUSTER_AUTOSCALER_CHART.version
    values = release["values"]
    assert values["autoDiscovery"]["clusterName"] == settings.cluster.name
    assert values["image"]["tag"].startswith(f"v{settings.cluster.kubernetes_version}.")
    assert values["nodeSelector"] == {
        "ml-platform.io/pool": "system",
        "ml-platform.io/node-class": "system",
    }
    associations = aws_run.of_type("aws:eks/podIdentityAssociation:PodIdentityAssociation")
    assert ("kube-system", "cluster-autoscaler") in {
        (a.inputs["namespace"], a.inputs["serviceAccount"]) for a in associations
    }
    [policy] = [
        r.inputs["policy"]
        for r in aws_run.of_type("aws:iam/rolePolicy:RolePolicy")
        if "autoscaler" in r.name
    ]
    scale = next(s for s in statements(policy) if "autoscaling:SetDesiredCapacity" in s["Action"])
    assert scale["Condition"]["StringEquals"] == {
        f"aws:ResourceTag/k8s.io/cluster-autoscaler/{settings.cluster.name}": "owned"
    }


def test_stack_outputs(aws_run: ProgramRun) -> None:
    outputs = aws_run.outputs
    assert outputs["clusterEndpoint"].startswith("https://")
    assert outputs["vpcId"].startswith("vpc-")
    assert all(s.startswith("subnet-") for s in outputs["privateSubnetIds"])
    assert set(outputs["nodePools"]) == set(_node_groups(aws_run))


POD_STARTERS = (
    "kubernetes:helm.sh/v3:Release",
    "kubernetes:kustomize/v2:Directory",
    "kubernetes:apps/v1:Deployment",
    "kubernetes:batch/v1:Job",
)


def _started_before_the_system_nodes(run: ProgramRun) -> list[str]:
    system_group = _node_groups(run)["system"]
    starters = [r for r in run.resources if r.type in POD_STARTERS]
    assert {r.type for r in starters} == set(POD_STARTERS)
    return [f"{r.type} {r.name}" for r in starters if system_group.urn not in waits_for(run, r)]


def test_everything_that_starts_pods_waits_for_the_system_nodes(aws_run: ProgramRun) -> None:
    # Helm releases are atomic with a timeout; Directories, Deployments and Jobs await their pods.
    # Started before the system node group exists, they race it on a first `pulumi up`.
    assert _started_before_the_system_nodes(aws_run) == []


def test_workloads_wait_for_the_system_nodes_without_efs_too() -> None:
    # With EFS, served models and staging wait for the nodes through their claims' volumes and the
    # EFS driver; on NFS that chain is gone and only their own dependencies hold them back.
    config = stack_config("dev")
    config["ml-platform:storage"] = {
        **config["ml-platform:storage"],
        "mode": "nfs",
        "nfs": {"server": "nfs.example.internal", "path": "/exports/ml"},
    }
    assert _started_before_the_system_nodes(run_program("dev", config)) == []
