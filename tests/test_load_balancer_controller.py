"""The AWS Load Balancer Controller: installed only for internal NLBs, pinned, scoped, and first."""

from __future__ import annotations

import functools
import json
from typing import Any

import pytest

from harness.program import (
    ProgramRun,
    RegisteredResource,
    run_program,
    stack_config,
    stack_settings,
)
from infra import load_balancer_controller as lbc
from infra import versions
from tests.conftest import stack_run
from tests.policies import as_list

RELEASE = "kubernetes:helm.sh/v3:Release"
ASSOCIATION = "aws:eks/podIdentityAssociation:PodIdentityAssociation"
COMPONENT = "ml-platform:network:LoadBalancerController"


@functools.cache
def _internal_run(monitoring: bool = True) -> ProgramRun:
    """dev with its model behind an internal NLB (and the monitoring stack on or off)."""
    config = stack_config("dev")
    config["ml-platform:serving"]["models"][0]["exposure"] = "internalLoadBalancer"
    if not monitoring:
        config["ml-platform:monitoring"] = {"enabled": False}
    return run_program("dev", config)


def _release(run: ProgramRun) -> RegisteredResource:
    [release] = [
        r
        for r in run.of_type(RELEASE)
        if r.inputs["chart"] == versions.AWS_LOAD_BALANCER_CONTROLLER_CHART.chart
    ]
    return release


def _policy(run: ProgramRun) -> dict[str, Any]:
    [component] = run.of_type(COMPONENT)
    policies: list[dict[str, Any]] = [
        json.loads(r.inputs["policy"])
        for r in run.of_type("aws:iam/rolePolicy:RolePolicy")
        if r.name.startswith(component.name)
    ]
    [policy] = policies
    return policy


@pytest.mark.parametrize("stack", ["dev", "prod", "local"])
def test_no_controller_unless_a_model_asks_for_an_internal_load_balancer(stack: str) -> None:
    run = stack_run(stack)
    # As the stacks stand, no model is exposed through an internal NLB.
    assert not lbc.needs_controller(stack_settings(stack))
    assert all(m.exposure == "cluster" for m in stack_settings(stack).serving.models)
    assert not run.of_type(COMPONENT)
    assert versions.AWS_LOAD_BALANCER_CONTROLLER_CHART.chart not in {
        r.inputs["chart"] for r in run.of_type(RELEASE)
    }
    assert (lbc.NAMESPACE, lbc.SERVICE_ACCOUNT) not in {
        (a.inputs["namespace"], a.inputs["serviceAccount"]) for a in run.of_type(ASSOCIATION)
    }


def test_release_is_pinned_and_knows_its_cluster_region_and_vpc() -> None:
    run = _internal_run()
    release = _release(run).inputs
    pin = versions.AWS_LOAD_BALANCER_CONTROLLER_CHART
    assert (release["chart"], release["version"], release["repositoryOpts"]["repo"]) == (
        "aws-load-balancer-controller",
        pin.version,
        "https://aws.github.io/eks-charts",
    )
    assert (release["name"], release["namespace"]) == (lbc.RELEASE, "kube-system")
    assert release["atomic"] is True
    values = release["values"]
    [cluster] = run.of_type("aws:eks/cluster:Cluster")
    assert values["clusterName"] == cluster.inputs["name"] == "ml-dev"
    assert values["region"] == "us-east-1"
    # IMDS is out of reach of pods (IMDSv2, hop limit 1): the VPC is given, and it is the VPC
    # the cluster's subnets are in.
    vpc_ids = {s.inputs["vpcId"] for s in run.of_type("aws:ec2/subnet:Subnet")}
    assert vpc_ids == {values["vpcId"]}
    assert values["vpcId"].startswith("vpc-")
    assert values["serviceAccount"] == {"create": True, "name": lbc.SERVICE_ACCOUNT}
    assert values["replicaCount"] == 2
    assert values["podDisruptionBudget"] == {"maxUnavailable": 1}
    assert values["nodeSelector"] == {"ml-platform.io/pool": "system"}
    assert values["serviceMonitor"] == {"enabled": True}
    # A controller outage must not block every Service in the cluster.
    assert values["serviceMutatorWebhookConfig"] == {"failurePolicy": "Ignore"}


def test_service_monitor_only_with_the_monitoring_stack() -> None:
    with_monitoring = _release(_internal_run())
    [monitoring] = [
        r for r in _internal_run().of_type(RELEASE) if r.inputs["chart"] == "kube-prometheus-stack"
    ]
    assert monitoring.urn in with_monitoring.dependencies  # the ServiceMonitor CRD
    without = _internal_run(monitoring=False)
    assert _release(without).inputs["values"]["serviceMonitor"] == {"enabled": False}
    assert not [r for r in without.of_type(RELEASE) if r.inputs["chart"] == "kube-prometheus-stack"]


def test_role_is_the_controllers_policy_scoped_by_its_cluster_tag() -> None:
    policy = _policy(_internal_run())
    assert policy == lbc.controller_policy()
    statements = policy["Statement"]
    for statement in statements:
        actions = as_list(statement["Action"])
        resources = as_list(statement["Resource"])
        assert statement["Effect"] == "Allow"
        assert not ("*" in actions and "*" in resources), statement
        assert not any(a.endswith(":*") or a == "*" for a in actions), statement
    # Every delete and modification of a load balancer, target group or security group requires
    # the tag the controller puts on what it creates.
    owned = {"Null": {"aws:ResourceTag/elbv2.k8s.aws/cluster": "false"}}
    for action in (
        "elasticloadbalancing:DeleteLoadBalancer",
        "elasticloadbalancing:DeleteTargetGroup",
        "elasticloadbalancing:ModifyLoadBalancerAttributes",
        "elasticloadbalancing:ModifyTargetGroup",
        "ec2:DeleteSecurityGroup",
    ):
        granting = [s for s in statements if action in s["Action"]]
        assert granting, action
        assert all(s.get("Condition") == owned for s in granting), action
    # It creates load balancers and target groups only with that tag on them.
    [create] = [s for s in statements if "elasticloadbalancing:CreateLoadBalancer" in s["Action"]]
    assert create["Condition"] == {"Null": {"aws:RequestTag/elbv2.k8s.aws/cluster": "false"}}
    # Untagging is allowed only on what it tagged, and never removes the tag in the same call.
    [untag] = [
        s
        for s in statements
        if "elasticloadbalancing:RemoveTags" in s["Action"] and "Condition" in s
    ]
    assert untag["Condition"]["Null"] == {
        "aws:RequestTag/elbv2.k8s.aws/cluster": "true",
        "aws:ResourceTag/elbv2.k8s.aws/cluster": "false",
    }


def test_pod_identity_names_the_charts_service_account_and_comes_first() -> None:
    run = _internal_run()
    release = _release(run)
    [component] = run.of_type(COMPONENT)
    [association] = [a for a in run.of_type(ASSOCIATION) if a.parent == component.urn]
    assert association.inputs["namespace"] == "kube-system" == release.inputs["namespace"]
    assert (
        association.inputs["serviceAccount"]
        == release.inputs["values"]["serviceAccount"]["name"]
        == lbc.SERVICE_ACCOUNT
    )
    [role] = [r for r in run.of_type("aws:iam/role:Role") if r.name.startswith(component.name)]
    assert association.inputs["roleArn"] == role.outputs["arn"]
    assert "pods.eks.amazonaws.com" in role.inputs["assumeRolePolicy"]
    assert association.urn in release.dependencies


def test_the_internal_service_waits_for_the_controller() -> None:
    run = _internal_run()
    release = _release(run)
    services = {r.inputs["metadata"]["name"]: r for r in run.of_type("kubernetes:core/v1:Service")}
    internal = services["tfserving-mnist-internal"]
    assert internal.inputs["spec"]["type"] == "LoadBalancer"
    assert release.urn in internal.dependencies
    # Only the load balancer's Service: the model's ClusterIP Services do not wait.
    assert release.urn not in services["tfserving-mnist"].dependencies


def test_subnets_carry_the_tags_the_controller_discovers_them_by() -> None:
    run = _internal_run()
    [cluster] = run.of_type("aws:eks/cluster:Cluster")
    cluster_tag = f"kubernetes.io/cluster/{cluster.inputs['name']}"
    subnets = {s.outputs["arn"].rsplit("/", 1)[-1]: s for s in run.of_type("aws:ec2/subnet:Subnet")}
    private = set(cluster.inputs["vpcConfig"]["subnetIds"])
    assert private
    for subnet_id, subnet in subnets.items():
        tags = subnet.inputs["tags"]
        assert tags[cluster_tag] == "shared"
        if subnet_id in private:
            # Where an internal NLB goes.
            assert tags["kubernetes.io/role/internal-elb"] == "1"
            assert "kubernetes.io/role/elb" not in tags
        else:
            assert tags["kubernetes.io/role/elb"] == "1"
            assert "kubernetes.io/role/internal-elb" not in tags
