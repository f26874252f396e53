"""Team quotas and limit ranges: GPU-correct keys, defaults that inject nothing, and the check
that stops declared work a team's quota could never admit."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from kfp.client.client import Client

from harness.program import ProgramError, run_program, stack_config, stack_settings
from harness.render import kubernetes_objects
from infra import gpu_sharing, versions
from infra.settings import SettingsError
from infra.team_quota import workload_requests
from tests.conftest import STACKS, stack_run
from tests.upstream_facts import facts
from workloads import manifests


def _team_objects(stack: str, kind: str) -> dict[str, dict[str, Any]]:
    return {
        o["metadata"]["namespace"]: o
        for o in kubernetes_objects(stack_run(stack))
        if o["kind"] == kind and o["metadata"]["name"] == "team"
    }


@pytest.mark.parametrize("stack", STACKS)
def test_every_team_has_a_quota_on_gpu_requests_only(stack: str) -> None:
    settings = stack_settings(stack)
    quotas = _team_objects(stack, "ResourceQuota")
    assert set(quotas) == {team.name for team in settings.teams}
    resources = {gpu_sharing.GPU, *(gpu_sharing.resource_name(p) for p in settings.node_pools.gpu)}
    for team in settings.teams:
        hard = quotas[team.name]["spec"]["hard"]
        assert hard["requests.cpu"] == team.quota.cpu
        assert hard["requests.memory"] == team.quota.memory
        assert hard["requests.nvidia.com/gpu"] == str(team.quota.gpus)
        assert {key.removeprefix("requests.") for key in hard if "nvidia.com/" in key} == resources
        # Kubernetes ignores limits.<extended resource> in a quota: it would cap nothing.
        assert not [key for key in hard if key.startswith("limits.")]
        assert hard["persistentvolumeclaims"] == str(team.quota.volume_claims)


def test_shared_gpus_are_quotad_as_the_shares_of_quota_gpus() -> None:
    # prod: research has quota.gpus 16; the serving pool time-slices each GPU into 4 shares.
    hard = _team_objects("prod", "ResourceQuota")["research"]["spec"]["hard"]
    assert hard["requests.nvidia.com/gpu.shared"] == "64"
    assert hard["requests.nvidia.com/gpu"] == "16"


def test_mig_slices_are_quotad_as_the_slices_of_quota_gpus() -> None:
    config = stack_config("dev")
    config["ml-platform:nodePools"]["gpu"][0] |= {
        "instanceTypes": ["p4d.24xlarge"],
        "capacityType": "ON_DEMAND",
        "sharing": {"mode": "mig", "migProfile": "1g.5gb", "migStrategy": "mixed"},
    }
    config["ml-platform:teams"][0]["trainingJobs"] = []
    config["ml-platform:teams"][0]["quota"]["gpus"] = 2
    objects = kubernetes_objects(run_program("dev", config))
    [quota] = [o for o in objects if o["kind"] == "ResourceQuota"]
    # A100 40GB: seven 1g.5gb slices per GPU.
    assert quota["spec"]["hard"]["requests.nvidia.com/mig-1g.5gb"] == "14"


@pytest.mark.parametrize("stack", STACKS)
def test_limit_ranges_default_cpu_and_memory_requests_and_never_gpus(stack: str) -> None:
    for limit_range in _team_objects(stack, "LimitRange").values():
        [item] = limit_range["spec"]["limits"]
        assert item["type"] == "Container"
        assert set(item["defaultRequest"]) == {"cpu", "memory"}
        # A max or default for a GPU would become every container's GPU limit.
        assert set(item) == {"type", "defaultRequest"}


def test_workload_requests_count_every_replica() -> None:
    settings = stack_settings("dev")
    team = settings.teams[0]
    job = team.training_jobs[0].model_copy(update={"chief": True, "workers": 3})
    totals = workload_requests(manifests.training_job(settings, team.name, job))
    assert totals["nvidia.com/gpu"] == Decimal(4 * job.gpus_per_worker)
    assert totals["cpu"] >= 4 * Decimal(job.cpu)


def test_a_job_larger_than_its_teams_quota_stops_the_program() -> None:
    config = stack_config("dev")
    config["ml-platform:teams"][0]["quota"]["gpus"] = 1  # the mnist job runs 2 workers x 1 GPU
    with pytest.raises(ProgramError) as caught:
        run_program("dev", config)
    assert isinstance(caught.value.cause, SettingsError)
    message = str(caught.value.cause)
    assert "ml-platform:teams[0].trainingJobs[0]: needs 2 nvidia.com/gpu in total" in message
    assert "(quota.gpus: 1)" in message
    assert caught.value.resources == []


def test_shared_volumes_over_the_storage_quota_stop_the_program() -> None:
    config = stack_config("dev")
    config["ml-platform:teams"][0]["quota"]["storage"] = "1Gi"
    with pytest.raises(ProgramError) as caught:
        run_program("dev", config)
    message = str(caught.value.cause)
    assert "ml-platform:teams[0].quota: quota.storage 1Gi is below" in message
    assert caught.value.resources == []


def _roles(stack: str, team: str) -> dict[str, dict[str, Any]]:
    return {
        o["metadata"]["name"]: o
        for o in kubernetes_objects(stack_run(stack))
        if o["kind"] == "Role" and o["metadata"]["namespace"] == team
    }


def _allows(role: dict[str, Any], api_group: str, resource: str, verb: str) -> bool:
    return any(
        api_group in rule["apiGroups"] and resource in rule["resources"] and verb in rule["verbs"]
        for rule in role["rules"]
    )


@pytest.mark.parametrize("stack", STACKS)
def test_every_team_has_engineer_and_viewer_roles_bound_to_its_groups(stack: str) -> None:
    objects = kubernetes_objects(stack_run(stack))
    for team in stack_settings(stack).teams:
        roles = _roles(stack, team.name)
        assert set(roles) == {"ml-engineer", "viewer"}
        engineer, viewer = roles["ml-engineer"], roles["viewer"]
        for kind in ("tfjobs", "pytorchjobs", "notebooks"):
            assert _allows(engineer, "kubeflow.org", kind, "create")
            assert _allows(viewer, "kubeflow.org", kind, "list")
            assert not _allows(viewer, "kubeflow.org", kind, "create")
        assert _allows(engineer, "", "pods/log", "get")
        assert _allows(engineer, "", "pods/exec", "create") is team.access.exec
        # Port-forward reaches a notebook's token-less Jupyter: a shell as well.
        assert _allows(engineer, "", "pods/portforward", "create") is team.access.exec
        for granted in (engineer, viewer):
            assert not _allows(granted, "", "pods/attach", "create")
        assert not any(
            "*" in rule["verbs"] or "*" in rule["resources"] for rule in engineer["rules"]
        )
        assert not any(
            _allows(viewer, "", "secrets", verb) or _allows(engineer, "", "secrets", verb)
            for verb in ("get", "list")
        )
        bindings = {
            o["metadata"]["name"]: o
            for o in objects
            if o["kind"] == "RoleBinding" and o["metadata"]["namespace"] == team.name
        }
        for role in ("ml-engineer", "viewer"):
            [subject] = bindings[role]["subjects"]
            assert subject == {
                "kind": "Group",
                "name": f"ml-platform:{team.name}:{role}",
                "apiGroup": "rbac.authorization.k8s.io",
            }
            assert bindings[role]["roleRef"]["name"] == role


def test_access_entries_put_each_principal_in_all_its_groups_without_policies() -> None:
    run = stack_run("prod")
    entries = {
        e.inputs["principalArn"]: e
        for e in run.of_type("aws:eks/accessEntry:AccessEntry")
        if "team-access" in e.urn
    }
    auditor = "arn:aws:iam::111122223333:role/ml-auditor"  # a viewer of both teams
    assert entries[auditor].inputs["kubernetesGroups"] == [
        "ml-platform:research:viewer",
        "ml-platform:vision:viewer",
    ]
    assert entries["arn:aws:iam::111122223333:role/ml-research"].inputs["kubernetesGroups"] == [
        "ml-platform:research:ml-engineer"
    ]
    policies = run.of_type("aws:eks/accessPolicyAssociation:AccessPolicyAssociation")
    assert not set(entries) & {p.inputs["principalArn"] for p in policies}
    assert all(e.provider and "providers:aws" in e.provider for e in entries.values())


def test_a_cluster_admin_cannot_also_be_a_team_member() -> None:
    config = stack_config("prod")
    admin = config["ml-platform:aws"]["access"]["admins"][0]
    config["ml-platform:teams"][0]["access"]["viewers"] = [admin]
    with pytest.raises(ProgramError) as caught:
        run_program("prod", config)
    message = str(caught.value.cause)
    assert "ml-platform:teams[0].access.viewers[0]:" in message
    assert "one access entry" in message


def test_a_malformed_principal_is_refused() -> None:
    config = stack_config("prod")
    config["ml-platform:teams"][0]["access"]["engineers"] = ["ml-research"]
    with pytest.raises(ProgramError) as caught:
        run_program("prod", config)
    assert "ml-platform:teams[0].access.engineers[0]:" in str(caught.value.cause)
    assert "not an IAM role or user ARN" in str(caught.value.cause)


def _policies(stack: str, team: str) -> dict[str, dict[str, Any]]:
    return {
        o["metadata"]["name"]: o["spec"]
        for o in kubernetes_objects(stack_run(stack))
        if o["kind"] == "NetworkPolicy" and o["metadata"]["namespace"] == team
    }


@pytest.mark.parametrize("stack", STACKS)
def test_team_namespaces_deny_by_default_and_allow_what_workloads_need(stack: str) -> None:
    settings = stack_settings(stack)
    for team in settings.teams:
        policies = _policies(stack, team.name)
        deny = policies["default-deny"]
        assert deny["podSelector"] == {}
        assert set(deny["policyTypes"]) == {"Ingress", "Egress"}
        assert "ingress" not in deny
        assert "egress" not in deny
        # Workers of one job reach each other; nothing from other team namespaces does.
        assert policies["same-namespace"]["ingress"] == [{"from": [{"podSelector": {}}]}]
        [dns] = policies["dns"]["egress"]
        assert {p["port"] for p in dns["ports"]} == {53}
        peer = dns["to"][0]
        assert peer["namespaceSelector"]["matchLabels"] == {
            "kubernetes.io/metadata.name": "kube-system"
        }
        # Nothing in a team namespace is scraped: nothing in `monitoring` is let in.
        assert "prometheus" not in policies
        # Team pods call the served models on the ports `serving` admits them on.
        [serving] = policies["serving"]["egress"]
        assert serving["to"] == [
            {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "serving"}}}
        ]
        assert {(p["protocol"], p["port"]) for p in serving["ports"]} == {
            ("TCP", 8500), ("TCP", 8501), ("TCP", 8080)
        }  # fmt: skip
        for spec in policies.values():
            for rule in spec.get("ingress", []):
                assert rule.get("from"), "an ingress rule without peers admits everyone"


@pytest.mark.parametrize("stack", STACKS)
def test_pods_reach_the_pod_identity_agent_on_eks_only(stack: str) -> None:
    eks = stack_settings(stack).cluster.mode == "eks"
    policies = _policies(stack, "research")
    assert ("pod-identity" in policies) == eks
    if eks:
        [rule] = policies["pod-identity"]["egress"]
        assert {peer["ipBlock"]["cidr"] for peer in rule["to"]} == {
            "169.254.170.23/32",
            "fd00:ec2::23/128",
        }
        assert rule["ports"] == [{"protocol": "TCP", "port": 80}]


def test_https_egress_can_be_switched_off() -> None:
    config = stack_config("dev")
    team = config["ml-platform:teams"][0]
    team["network"] = {"httpsEgress": False}
    # Without HTTPS nothing reaches S3: a team without it has no artifact access.
    for workload in [*team.get("trainingJobs", []), *team.get("notebooks", [])]:
        workload["artifacts"] = "none"
    objects = kubernetes_objects(run_program("dev", config))
    names = {
        o["metadata"]["name"]
        for o in objects
        if o["kind"] == "NetworkPolicy" and o["metadata"]["namespace"] == "research"
    }
    assert "https-egress" not in names
    assert "default-deny" in names
    assert "https-egress" in _policies("dev", "research")


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_the_cni_enforces_network_policies(stack: str) -> None:
    [cni] = [
        r.inputs
        for r in stack_run(stack).of_type("aws:eks/addon:Addon")
        if r.inputs["addonName"] == "vpc-cni"
    ]
    assert json.loads(cni["configurationValues"])["enableNetworkPolicy"] == "true"


@pytest.mark.parametrize("stack", STACKS)
def test_every_team_has_all_its_tenancy_objects(stack: str) -> None:
    objects = kubernetes_objects(stack_run(stack))
    for team in stack_settings(stack).teams:
        names = {
            (o["kind"], o["metadata"]["name"])
            for o in objects
            if o["metadata"].get("namespace") == team.name
        }
        [namespace] = [
            o for o in objects if o["kind"] == "Namespace" and o["metadata"]["name"] == team.name
        ]
        assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == (
            team.pod_security
        )
        expected = {
            ("ResourceQuota", "team"),
            ("LimitRange", "team"),
            ("Role", "ml-engineer"),
            ("Role", "viewer"),
            ("NetworkPolicy", "default-deny"),
            ("ServiceAccount", "ml-workloads"),
        }
        assert expected <= names, expected - names
        assert len([kind for kind, _ in names if kind == "RoleBinding"]) == 2


@pytest.mark.parametrize("stack", STACKS)
def test_engineers_and_viewers_see_their_quota_and_limit_range(stack: str) -> None:
    for team in stack_settings(stack).teams:
        roles = _roles(stack, team.name)
        for role in roles.values():
            for resource in ("resourcequotas", "limitranges"):
                for verb in ("get", "list", "watch"):
                    assert _allows(role, "", resource, verb), (role["metadata"], resource, verb)
                assert not _allows(role, "", resource, "update")


def test_a_team_without_exec_cannot_declare_notebooks() -> None:
    config = stack_config("dev")  # research declares the notebook `explore`
    config["ml-platform:teams"][0]["access"] = {"exec": False}
    with pytest.raises(ProgramError) as caught:
        run_program("dev", config)
    message = str(caught.value.cause)
    assert "ml-platform:teams[0].notebooks:" in message
    assert "`teams[0].access.exec: false`" in message
    assert "port-forward" in message
    assert caught.value.resources == []


def test_pipelines_access_needs_pipelines() -> None:
    config = stack_config("dev")
    config["ml-platform:kubeflow"] = {
        **config.get("ml-platform:kubeflow", {}),
        "pipelines": {"enabled": False},
    }
    with pytest.raises(ProgramError) as caught:
        run_program("dev", config)
    message = str(caught.value.cause)
    assert "ml-platform:teams[0].access.pipelines:" in message
    assert "kubeflow.pipelines.enabled: true" in message


PIPELINES = facts("kubeflow-pipelines-access", pinned=versions.KFP_REF)


def _label_selector_matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """A LabelSelector (matchLabels only, as these policies use) against a label set."""
    assert set(selector) <= {"matchLabels"}, selector
    wanted: dict[str, str] = selector.get("matchLabels", {})
    return wanted.items() <= labels.items()


def test_a_team_with_pipelines_access_reaches_the_api_and_ui_services() -> None:
    """What the EKS policy controller needs to admit a Service's ClusterIP, for both Services.

    Its rule (aws/amazon-network-policy-controller-k8s pkg/resolvers/endpoints.go): a peer's
    podSelector must match the Service's `.spec.selector` as a label set, and each port of the
    rule is a target port, which it maps to the Service port in front of it.
    """
    assert stack_settings("dev").teams[0].access.pipelines
    policy = _policies("dev", "research")["pipelines-egress"]
    assert policy["podSelector"] == {}
    assert policy["policyTypes"] == ["Egress"]
    for service, spec in PIPELINES["services"].items():
        target_ports = {port["targetPort"] for port in spec["ports"]}
        rules = [
            rule
            for rule in policy["egress"]
            for peer in rule["to"]
            if peer["namespaceSelector"]
            == {"matchLabels": {"kubernetes.io/metadata.name": "kubeflow"}}
            and _label_selector_matches(peer["podSelector"], spec["selector"])
        ]
        [rule] = rules
        assert {(p["protocol"], p["port"]) for p in rule["ports"]} == {
            ("TCP", port) for port in target_ports
        }, service
    # Nothing else in kubeflow: each rule selects exactly one of the two Services' pods.
    for rule in policy["egress"]:
        [peer] = rule["to"]
        assert peer["podSelector"]["matchLabels"] in [
            spec["selector"] for spec in PIPELINES["services"].values()
        ]


def test_engineers_with_pipelines_access_may_proxy_to_the_api_and_ui_only() -> None:
    objects = kubernetes_objects(stack_run("dev"))
    in_kubeflow = [o for o in objects if o["metadata"].get("namespace") == "kubeflow"]
    [role] = [
        o for o in in_kubeflow if o["kind"] == "Role" and o["metadata"]["name"] == "pipelines-user"
    ]
    [rule] = role["rules"]
    assert rule["resources"] == ["services/proxy"]
    assert "pods/portforward" not in rule["resources"]
    # The names the RBAC authorizer compares: the URL's `<service>:<port>` segment.  The kfp SDK
    # (kfp.Client() without a host) asks for `ml-pipeline:http`.
    sdk_path = Client._KUBE_PROXY_PATH.format("kubeflow")
    sdk_name = sdk_path.split("/services/", 1)[1].split("/", 1)[0]
    assert sdk_name in rule["resourceNames"]
    for name in rule["resourceNames"]:
        service, port_name = name.split(":")
        assert port_name in {p["name"] for p in PIPELINES["services"][service]["ports"]}
    assert {name.split(":")[0] for name in rule["resourceNames"]} == set(PIPELINES["services"])
    assert {"get", "create", "delete"} <= set(rule["verbs"])
    [binding] = [
        o
        for o in in_kubeflow
        if o["kind"] == "RoleBinding" and o["roleRef"]["name"] == "pipelines-user"
    ]
    assert binding["subjects"] == [
        {
            "kind": "Group",
            "name": "ml-platform:research:ml-engineer",
            "apiGroup": "rbac.authorization.k8s.io",
        }
    ]


def test_teams_without_pipelines_access_get_neither_the_policy_nor_the_role() -> None:
    settings = stack_settings("prod")
    assert not any(team.access.pipelines for team in settings.teams)
    objects = kubernetes_objects(stack_run("prod"))
    assert not [o for o in objects if o["metadata"]["name"].startswith("pipelines-")]
