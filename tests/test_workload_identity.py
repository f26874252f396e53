"""Each declared workload runs as its own ServiceAccount; on AWS its S3 role names only its own
prefixes of the stack's private artifact bucket."""

from __future__ import annotations

from typing import Any

import pytest

from harness.program import (
    ProgramError,
    RegisteredResource,
    run_program,
    stack_config,
    stack_settings,
)
from harness.render import kubernetes_objects
from infra.artifact_store import prefix_access_policy, team_prefixes, workload_prefixes
from infra.settings import SettingsError
from tests.conftest import STACKS, stack_run
from tests.policies import statements
from workloads.plan import plan_workloads

BUCKET_ARN = "arn:aws:s3:::ml-dev-artifacts-0123"


def _pod_specs(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    spec = manifest["spec"]
    replicas = spec.get("tfReplicaSpecs") or spec.get("pytorchReplicaSpecs")
    if replicas:
        return [replica["template"]["spec"] for replica in replicas.values()]
    return [spec["template"]["spec"]]


def _by_type(resources: list[RegisteredResource], type_: str) -> list[RegisteredResource]:
    return [r for r in resources if r.type == type_]


@pytest.mark.parametrize("stack", STACKS)
def test_every_workload_runs_as_its_own_service_account_without_a_token(stack: str) -> None:
    run = stack_run(stack)
    objects = kubernetes_objects(run)
    accounts = {
        (o["metadata"]["namespace"], o["metadata"]["name"]): o
        for o in objects
        if o["kind"] == "ServiceAccount"
    }
    workloads = [o for o in objects if o["kind"] in ("TFJob", "PyTorchJob", "Notebook")]
    used = set()
    for workload in workloads:
        namespace = workload["metadata"]["namespace"]
        for pod in _pod_specs(workload):
            key = (namespace, pod["serviceAccountName"])
            assert key in accounts, f"{workload['kind']} {workload['metadata']['name']}: {key}"
            assert pod["automountServiceAccountToken"] is False
            used.add(key)
    assert len(used) == len(workloads), "two workloads share a ServiceAccount"
    for key in used:
        assert accounts[key]["automountServiceAccountToken"] is False


def test_workload_roles_grant_only_the_declared_prefixes() -> None:
    run = stack_run("dev")
    [bucket] = _by_type(run.resources, "aws:s3/bucket:Bucket")
    bucket_arn = bucket.outputs["arn"]
    associations = {
        r.inputs["serviceAccount"]: r
        for r in _by_type(run.resources, "aws:eks/podIdentityAssociation:PodIdentityAssociation")
        if r.inputs["namespace"] == "research"
    }
    # dev: the mnist TFJob reads and writes, the explore notebook only reads; the team's own
    # account asked for nothing.
    assert set(associations) == {"tfjob-mnist", "notebook-explore"}
    policies = {
        r.urn.rsplit("::", 1)[1]: r.inputs["policy"]
        for r in _by_type(run.resources, "aws:iam/rolePolicy:RolePolicy")
    }
    job = statements(policies["ml-dev-research-tfjob-mnist-inline"])
    notebook = statements(policies["ml-dev-research-notebook-explore-inline"])
    by_sid = {s["Sid"]: s for s in job}
    assert by_sid["ReadOwnPrefixes"]["Resource"] == [f"{bucket_arn}/teams/research/*"]
    assert by_sid["WriteOwnPrefixes"]["Resource"] == [f"{bucket_arn}/teams/research/mnist/*"]
    assert by_sid["ListOwnPrefixes"]["Condition"] == {
        "StringLike": {"s3:prefix": ["teams/research/*"]}
    }
    assert "WriteOwnPrefixes" not in {s["Sid"] for s in notebook}
    for statement in [*job, *notebook]:
        # Nothing on the whole bucket's objects, nothing on other buckets.
        for resource in statement["Resource"]:
            assert resource == bucket_arn or resource.startswith(f"{bucket_arn}/teams/research/")


def test_a_job_starts_only_after_its_pod_identity_association() -> None:
    run = stack_run("dev")
    [association] = [
        r
        for r in _by_type(run.resources, "aws:eks/podIdentityAssociation:PodIdentityAssociation")
        if r.inputs["serviceAccount"] == "tfjob-mnist"
    ]
    [tfjob] = _by_type(run.resources, "kubernetes:kubeflow.org/v1:TFJob")
    assert association.urn in tfjob.dependencies
    [account] = [
        r
        for r in _by_type(run.resources, "kubernetes:core/v1:ServiceAccount")
        if r.inputs["metadata"]["name"] == "tfjob-mnist"
    ]
    assert account.urn in tfjob.dependencies


def test_every_team_has_its_own_account_with_only_its_artifact_access() -> None:
    run = stack_run("prod")
    accounts = {
        (r.inputs["metadata"]["namespace"], r.inputs["metadata"]["name"]): r
        for r in _by_type(run.resources, "kubernetes:core/v1:ServiceAccount")
    }
    namespaces = {
        r.inputs["metadata"]["name"]: r
        for r in _by_type(run.resources, "kubernetes:core/v1:Namespace")
    }
    for team in ("research", "vision"):
        account = accounts[(team, "ml-workloads")]
        assert account.inputs["automountServiceAccountToken"] is False
        # Created after its namespace.
        assert namespaces[team].urn in account.dependencies
    associations = {
        (r.inputs["namespace"], r.inputs["serviceAccount"])
        for r in _by_type(run.resources, "aws:eks/podIdentityAssociation:PodIdentityAssociation")
        if r.inputs["namespace"] in ("research", "vision")
    }
    # prod: research reads and writes its prefix; vision asked for no S3 access, so no role.
    assert associations == {("research", "ml-workloads")}
    [policy] = [
        r.inputs["policy"]
        for r in _by_type(run.resources, "aws:iam/rolePolicy:RolePolicy")
        if "research-ml-workloads" in r.urn
    ]
    by_sid = {s["Sid"]: s for s in statements(policy)}
    [bucket] = _by_type(run.resources, "aws:s3/bucket:Bucket")
    prefix = f"{bucket.outputs['arn']}/teams/research/*"
    assert by_sid["ReadOwnPrefixes"]["Resource"] == [prefix]
    assert by_sid["WriteOwnPrefixes"]["Resource"] == [prefix]


def test_the_artifact_bucket_is_private_encrypted_versioned_and_tls_only() -> None:
    run = stack_run("prod")
    [bucket] = _by_type(run.resources, "aws:s3/bucket:Bucket")
    assert bucket.inputs["forceDestroy"] is False
    [block] = _by_type(run.resources, "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock")
    for key in (
        "blockPublicAcls",
        "blockPublicPolicy",
        "ignorePublicAcls",
        "restrictPublicBuckets",
    ):
        assert block.inputs[key] is True, key
    [ownership] = _by_type(run.resources, "aws:s3/bucketOwnershipControls:BucketOwnershipControls")
    assert ownership.inputs["rule"]["objectOwnership"] == "BucketOwnerEnforced"
    [sse] = _by_type(
        run.resources,
        "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
    )
    [rule] = sse.inputs["rules"]
    assert rule["applyServerSideEncryptionByDefault"]["sseAlgorithm"] == "AES256"
    [versioning] = _by_type(run.resources, "aws:s3/bucketVersioning:BucketVersioning")
    assert versioning.inputs["versioningConfiguration"]["status"] == "Enabled"
    [lifecycle] = _by_type(
        run.resources, "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration"
    )
    [expiry] = lifecycle.inputs["rules"]
    assert expiry["noncurrentVersionExpiration"]["noncurrentDays"] == 30
    assert versioning.urn in lifecycle.dependencies
    [policy] = _by_type(run.resources, "aws:s3/bucketPolicy:BucketPolicy")
    [deny] = statements(policy.inputs["policy"])
    assert deny["Effect"] == "Deny"
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert block.urn in policy.dependencies


def test_the_bucket_name_is_a_stack_output() -> None:
    run = stack_run("dev")
    [bucket] = _by_type(run.resources, "aws:s3/bucket:Bucket")
    assert run.outputs["artifactBucket"] == bucket.outputs["bucket"]
    assert bucket.inputs["bucketPrefix"].startswith("ml-dev-artifacts")


def test_an_existing_cluster_has_no_bucket_and_no_roles() -> None:
    run = stack_run("local")
    assert not _by_type(run.resources, "aws:s3/bucket:Bucket")
    assert not _by_type(run.resources, "aws:iam/role:Role")
    assert [
        r.inputs["metadata"]["name"]
        for r in _by_type(run.resources, "kubernetes:core/v1:ServiceAccount")
        if r.inputs["metadata"]["namespace"] == "research"
    ] == ["ml-workloads"]


def test_artifact_access_on_an_existing_cluster_is_refused() -> None:
    config = stack_config("local")
    config["ml-platform:teams"][0]["notebooks"] = [{"name": "lab", "artifacts": "read"}]
    with pytest.raises(ProgramError) as caught:
        run_program("local", config)
    assert isinstance(caught.value.cause, SettingsError)
    message = str(caught.value.cause)
    assert "ml-platform:teams[0].notebooks[0].artifacts:" in message, message
    assert "use `none`" in message


@pytest.mark.parametrize(
    ("access", "read", "write"),
    [  # a declared workload's prefixes
        ("none", [], []),
        ("read", ["teams/vision/"], []),
        ("readwrite", ["teams/vision/"], ["teams/vision/segment/"]),
    ],
)
def test_access_modes_map_to_prefixes(access: str, read: list[str], write: list[str]) -> None:
    assert workload_prefixes(access, "vision", "segment") == (read, write)


def test_a_team_account_reads_and_writes_the_whole_team_prefix() -> None:
    assert team_prefixes("readwrite", "vision") == (["teams/vision/"], ["teams/vision/"])
    assert team_prefixes("read", "vision") == (["teams/vision/"], [])
    assert team_prefixes("none", "vision") == ([], [])


def test_a_read_only_policy_cannot_write() -> None:
    policy = prefix_access_policy(BUCKET_ARN, read=["teams/vision/"])
    actions = {a for s in policy["Statement"] for a in s["Action"]}
    assert actions == {"s3:ListBucket", "s3:GetObject", "s3:GetObjectVersion"}


def test_service_accounts_are_named_per_kind() -> None:
    planned = plan_workloads(stack_settings("dev"))
    assert {w.service_account for w in planned} == {
        "tfjob-mnist",
        "notebook-explore",
        "experiment-mnist-tuning",
    }
