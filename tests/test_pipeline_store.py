"""Kubeflow Pipelines keep their objects in the stack's S3 bucket on AWS (Pod Identity, no keys),
and in the upstream in-cluster store in `local`."""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import pytest
import yaml

from harness.program import ProgramRun, RegisteredResource, run_program, stack_config
from infra import pipeline_store, versions
from infra.artifact_store import PIPELINES_PREFIX
from tests.conftest import AWS_STACKS, stack_run
from tests.directory_children import as_registered
from tests.upstream_facts import facts

ASSOCIATION = "aws:eks/podIdentityAssociation:PodIdentityAssociation"
WRITE_ACTIONS = {"s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"}
KEY_VARIABLES = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", *pipeline_store.KEY_VARIABLES}
CHANGED = {
    "pipeline-install-config",
    "kfp-launcher",
    "workflow-controller-configmap",
    "ml-pipeline",
    "ml-pipeline-ui",
}


def _bucket(run: ProgramRun) -> tuple[str, str]:
    [bucket] = run.of_type("aws:s3/bucket:Bucket")
    return bucket.outputs["bucket"], bucket.outputs["arn"]


def _region(stack: str) -> str:
    return str(stack_config(stack)["ml-platform:aws"]["region"])


def _patches(run: ProgramRun) -> list[RegisteredResource]:
    """Every patch of an object in the Pipelines' namespace."""
    return [
        r
        for r in run.resources
        if r.type.startswith("kubernetes:")
        and r.type.endswith("Patch")
        and r.inputs["metadata"].get("namespace") == pipeline_store.NAMESPACE
    ]


def _upstream() -> dict[str, dict[str, Any]]:
    """The objects the S3 settings change, as the pinned install renders them, by name."""
    rendered = facts("kubeflow-pipelines-rendered", pinned=versions.KFP_REF)["rendered"]
    return {o["metadata"]["name"]: o for o in rendered}


def _pipelines_directory(run: ProgramRun) -> RegisteredResource:
    [directory] = [
        r
        for r in run.of_type("kubernetes:kustomize/v2:Directory")
        if r.name.endswith("-kubeflow-pipelines")
    ]
    return directory


def _registered(run: ProgramRun) -> dict[str, dict[str, Any]]:
    """Those objects as the stack's Pipelines Directory registers them (after its transforms)."""
    directory = _pipelines_directory(run)
    return {name: as_registered(directory, obj) for name, obj in _upstream().items()}


def _object(run: ProgramRun, name: str) -> dict[str, Any]:
    return _registered(run)[name]


def _container(deployment: dict[str, Any]) -> dict[str, Any]:
    name = {
        pipeline_store.API_SERVER_DEPLOYMENT: pipeline_store.API_SERVER_CONTAINER,
        pipeline_store.UI_DEPLOYMENT: pipeline_store.UI_CONTAINER,
    }[deployment["metadata"]["name"]]
    [container] = [
        c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == name
    ]
    return dict(container)


def _env(deployment: dict[str, Any]) -> dict[str, dict[str, Any]]:
    env = _container(deployment)["env"]
    by_name = {e["name"]: e for e in env}
    assert len(by_name) == len(env), "each variable once"
    return by_name


# --- identities -------------------------------------------------------------------------------


@pytest.mark.parametrize("stack", AWS_STACKS)
def test_each_pipelines_account_has_a_role_limited_to_the_pipelines_prefix(stack: str) -> None:
    run = stack_run(stack)
    _, bucket_arn = _bucket(run)
    associations = {
        r.inputs["serviceAccount"]: r
        for r in run.of_type(ASSOCIATION)
        if r.inputs["namespace"] == pipeline_store.NAMESPACE
    }
    assert set(associations) == {"ml-pipeline", "ml-pipeline-ui", "pipeline-runner"}
    roles = {r.outputs["arn"]: r for r in run.of_type("aws:iam/role:Role")}
    policies = {r.name: r for r in run.of_type("aws:iam/rolePolicy:RolePolicy")}
    for account, association in associations.items():
        assert (
            association.inputs["clusterName"] == stack_config(stack)["ml-platform:cluster"]["name"]
        )
        role = roles[association.inputs["roleArn"]]
        assert json.loads(role.inputs["assumeRolePolicy"])["Statement"][0]["Principal"] == {
            "Service": "pods.eks.amazonaws.com"
        }
        policy = policies[role.name.removesuffix("-role") + "-inline"]
        statements = json.loads(policy.inputs["policy"])["Statement"]
        actions = {a for s in statements for a in s["Action"]}
        for statement in statements:
            assert statement["Effect"] == "Allow"
            for resource in statement["Resource"]:
                # The bucket itself only for listing below the prefix; objects only below it.
                if resource == bucket_arn:
                    assert statement["Action"] == ["s3:ListBucket"]
                    assert statement["Condition"] == {
                        "StringLike": {"s3:prefix": [f"{PIPELINES_PREFIX}*"]}
                    }
                else:
                    assert resource == f"{bucket_arn}/{PIPELINES_PREFIX}*", account
        assert {"s3:GetObject", "s3:ListBucket"} <= actions
        if account == "ml-pipeline-ui":
            assert not actions & WRITE_ACTIONS, "the UI only reads"
        else:
            assert actions >= WRITE_ACTIONS, account


@pytest.mark.parametrize("stack", AWS_STACKS)
def test_the_install_waits_for_the_associations_and_the_empty_keys(stack: str) -> None:
    run = stack_run(stack)
    associations = {r.urn for r in run.of_type(ASSOCIATION) if r.inputs["namespace"] == "kubeflow"}
    directory = _pipelines_directory(run)
    assert associations <= set(directory.dependencies)
    # The API server the Directory starts reads its key variables from this Secret.
    [secret] = [r for r in run.of_type("kubernetes:core/v1:Secret") if "pipelines-s3" in r.name]
    assert secret.urn in directory.dependencies
    # The Directory's transforms change its objects: nothing else applies fields to them.
    assert _patches(run) == []


@pytest.mark.parametrize("stack", AWS_STACKS)
def test_only_the_object_store_settings_differ_from_upstream(stack: str) -> None:
    run = stack_run(stack)
    upstream = _upstream()
    registered = _registered(run)
    assert set(upstream) == CHANGED
    for name in ("pipeline-install-config", "kfp-launcher", "workflow-controller-configmap"):
        before, after = upstream[name], registered[name]
        assert {k: v for k, v in after.items() if k != "data"} == {
            k: v for k, v in before.items() if k != "data"
        }
        changed = {k for k in after["data"] if after["data"][k] != before["data"].get(k)}
        assert set(before["data"]) <= set(after["data"]), f"{name}: upstream keys are kept"
        assert (
            changed
            == {
                "pipeline-install-config": {"bucketName"},
                "kfp-launcher": {"defaultPipelineRoot", "providers"},
                "workflow-controller-configmap": {"artifactRepository"},
            }[name]
        )
    region = _region(stack)
    bucket, _ = _bucket(run)
    ours = {
        "ml-pipeline": pipeline_store.api_server_env(region),
        "ml-pipeline-ui": pipeline_store.ui_env(bucket, region),
    }
    for name, variables in ours.items():
        before, after = copy.deepcopy(upstream[name]), copy.deepcopy(registered[name])
        set_here = {v["name"] for v in variables}
        # Upstream's variables keep their order; the new ones follow.
        after_names = [e["name"] for e in _container(after)["env"]]
        before_names = [e["name"] for e in _container(before)["env"]]
        assert after_names[: len(before_names)] == before_names
        assert set(after_names[len(before_names) :]) == set_here - set(before_names)
        for obj in (before, after):
            container = _container(obj)
            container["env"] = [e for e in container["env"] if e["name"] not in set_here]
            obj["spec"]["template"]["spec"]["containers"] = [
                container if c["name"] == container["name"] else c
                for c in obj["spec"]["template"]["spec"]["containers"]
            ]
            obj["spec"]["template"]["metadata"].get("annotations", {}).pop(
                pipeline_store.STORE_DIGEST_ANNOTATION, None
            )
        assert after == before, f"{name}: only the object-store variables change"


def test_a_changed_bucket_restarts_the_api_server_and_nothing_churns() -> None:
    """The API server reads `bucketName` at start, from a ConfigMap that keeps its name."""
    digests: dict[str, str] = {}
    for stack in AWS_STACKS:
        run = stack_run(stack)
        api_server = _object(run, "ml-pipeline")
        install_config = _object(run, "pipeline-install-config")
        assert _env(api_server)["OBJECTSTORECONFIG_BUCKETNAME"]["valueFrom"] == {
            "configMapKeyRef": {"key": "bucketName", "name": "pipeline-install-config"}
        }
        annotations = api_server["spec"]["template"]["metadata"]["annotations"]
        digests[stack] = annotations[pipeline_store.STORE_DIGEST_ANNOTATION]
        assert digests[stack] == pipeline_store.settings_digest(
            {"bucketName": install_config["data"]["bucketName"]}
        )
        again = _object(run, "ml-pipeline")["spec"]["template"]["metadata"]["annotations"]
        assert again[pipeline_store.STORE_DIGEST_ANNOTATION] == digests[stack]
    assert len({_bucket(stack_run(stack))[0] for stack in AWS_STACKS}) == len(AWS_STACKS)
    assert len(set(digests.values())) == len(AWS_STACKS), "another bucket, another pod template"


# --- where the objects go ---------------------------------------------------------------------


@pytest.mark.parametrize("stack", AWS_STACKS)
def test_the_launcher_writes_below_the_pipelines_prefix_with_sdk_credentials(stack: str) -> None:
    run = stack_run(stack)
    bucket, _ = _bucket(run)
    data = _object(run, "kfp-launcher")["data"]
    assert data["defaultPipelineRoot"] == f"s3://{bucket}/pipelines/artifacts"
    default = yaml.safe_load(data["providers"])["s3"]["default"]
    assert default["region"] == _region(stack)
    assert default["endpoint"] == f"s3.{_region(stack)}.amazonaws.com"
    assert default["disableSSL"] is False
    assert default["credentials"] == {"fromEnv": True}  # no secretRef


@pytest.mark.parametrize("stack", AWS_STACKS)
def test_argo_archives_logs_below_the_pipelines_prefix_with_sdk_credentials(stack: str) -> None:
    run = stack_run(stack)
    bucket, _ = _bucket(run)
    data = _object(run, "workflow-controller-configmap")["data"]
    upstream = _upstream()["workflow-controller-configmap"]["data"]
    assert set(data) == set(upstream)
    for key in set(data) - {"artifactRepository"}:
        assert data[key] == upstream[key], f"{key} stays upstream's"
    repository = yaml.safe_load(data["artifactRepository"])
    assert repository["archiveLogs"] is True
    s3 = repository["s3"]
    assert (s3["bucket"], s3["region"]) == (bucket, _region(stack))
    assert s3["useSDKCreds"] is True
    assert s3["insecure"] is False
    assert s3["keyFormat"].startswith(PIPELINES_PREFIX)
    assert not {"accessKeySecret", "secretKeySecret", "roleARN"} & set(s3)


@pytest.mark.parametrize("stack", AWS_STACKS)
def test_the_api_server_and_the_ui_use_the_bucket_in_the_stacks_region(stack: str) -> None:
    run = stack_run(stack)
    bucket, _ = _bucket(run)
    region = _region(stack)
    endpoint = f"s3.{region}.amazonaws.com"
    assert _object(run, "pipeline-install-config")["data"]["bucketName"] == bucket
    api_server = _object(run, "ml-pipeline")
    assert _container(api_server)["name"] == "ml-pipeline-api-server"
    env = _env(api_server)
    assert env["OBJECTSTORECONFIG_HOST"]["value"] == endpoint
    assert env["OBJECTSTORECONFIG_PORT"]["value"] == "443"
    assert env["OBJECTSTORECONFIG_SECURE"]["value"] == "true"
    assert env["OBJECTSTORECONFIG_REGION"]["value"] == region
    # Pipeline packages land below the prefix the API server's role may write.
    assert f"{env['OBJECTSTORECONFIG_PIPELINEPATH']['value']}/".startswith(PIPELINES_PREFIX)
    ui = _env(_object(run, "ml-pipeline-ui"))
    assert ui["AWS_REGION"]["value"] == region
    assert ui["AWS_S3_ENDPOINT"]["value"] == endpoint
    assert ui["ARGO_ARCHIVE_ARTIFACTORY"]["value"] == "s3"
    assert ui["ARGO_ARCHIVE_BUCKETNAME"]["value"] == bucket
    assert ui["ARGO_KEYFORMAT"]["value"].startswith(PIPELINES_PREFIX)


@pytest.mark.parametrize("stack", AWS_STACKS)
def test_the_ui_reads_what_it_is_given_and_looks_for_archived_logs_where_argo_puts_them(
    stack: str,
) -> None:
    ui_reads = facts("kubeflow-pipelines-ui", pinned=versions.KFP_REF)
    run = stack_run(stack)
    ui = _env(_object(run, "ml-pipeline-ui"))
    read = {*ui_reads["read_by_configs_ts"], *ui_reads["read_elsewhere"]}
    assert set(ui) <= read, f"the UI server does not read {sorted(set(ui) - read)}"
    assert ui["ARGO_ARCHIVE_LOGS"]["value"] == "true"
    argo = yaml.safe_load(
        _object(run, "workflow-controller-configmap")["data"]["artifactRepository"]
    )
    key_format = argo["s3"]["keyFormat"]
    assert ui["ARGO_KEYFORMAT"]["value"] == key_format
    placeholders = re.findall(r"\{\{[^{}]*\}\}", key_format)
    assert set(placeholders) <= set(ui_reads["key_format_placeholders"])
    if ui_reads["placeholders_replaced_once"]:
        assert len(placeholders) == len(set(placeholders)), "the UI replaces each only once"
    # The key the UI then builds for a pod's log is one it accepts.
    key = key_format
    for placeholder in placeholders:
        key = key.replace(placeholder, "mnist-x7k2p-2026", 1)
    key = f"{key.rstrip('/')}/{ui_reads['log_file_name']}"
    assert "{" not in key
    assert "}" not in key
    assert re.match(ui_reads["log_key_pattern"], key), key


@pytest.mark.parametrize("stack", AWS_STACKS)
def test_no_access_key_is_set_anywhere(stack: str) -> None:
    run = stack_run(stack)
    registered = _registered(run)
    api_env = _env(registered["ml-pipeline"])
    # The API server's key variables exist (unset, they would fall back to MinIO's keys) and
    # come from a Secret whose values are empty.
    for name, key in pipeline_store.KEY_VARIABLES.items():
        assert api_env[name] == {
            "name": name,
            "valueFrom": {"secretKeyRef": {"name": pipeline_store.NO_KEYS_SECRET, "key": key}},
        }
    [secret] = [r for r in run.of_type("kubernetes:core/v1:Secret") if "pipelines-s3" in r.name]
    assert secret.inputs["metadata"] == {
        "name": pipeline_store.NO_KEYS_SECRET,
        "namespace": pipeline_store.NAMESPACE,
    }
    assert set(secret.inputs["stringData"]) == set(pipeline_store.KEY_VARIABLES.values())
    assert set(secret.inputs["stringData"].values()) == {""}
    assert "data" not in secret.inputs
    for name in ("ml-pipeline", "ml-pipeline-ui"):
        for variable in _env(registered[name]).values():
            if variable["name"] in KEY_VARIABLES:
                assert "value" not in variable, (name, variable)
                # Upstream's MinIO keys are no longer read.
                assert variable["valueFrom"]["secretKeyRef"]["name"] != "mlpipeline-minio-artifact"
    changed = {
        "kfp-launcher": registered["kfp-launcher"]["data"],
        "workflow-controller-configmap": registered["workflow-controller-configmap"]["data"][
            "artifactRepository"
        ],
    }
    for name, value in changed.items():
        text = json.dumps(value)
        for needle in ("AKIA", "ASIA", "minio123", "accessKeySecret", "secretRef"):
            assert needle not in text, (name, needle)


# --- local and switched off -------------------------------------------------------------------


def test_local_keeps_the_in_cluster_object_store() -> None:
    run = stack_run("local")
    # Pipelines are installed, unchanged.
    assert _registered(run) == _upstream()
    assert _patches(run) == []
    assert not run.of_type("ml-platform:kubeflow:PipelineStoreAccess")
    assert not run.of_type(ASSOCIATION)
    assert not [r for r in run.of_type("kubernetes:core/v1:Secret") if "pipelines-s3" in r.name]


def test_an_aws_stack_without_pipelines_gets_no_pipelines_roles_or_patches() -> None:
    config = stack_config("dev")
    config["ml-platform:kubeflow"] = {
        **config["ml-platform:kubeflow"],
        "pipelines": {"enabled": False},
    }
    # Access to Pipelines needs Pipelines (test_bad_config); no team asks for it here.
    for team in config["ml-platform:teams"]:
        team.get("access", {}).pop("pipelines", None)
    run = run_program("dev", config)
    assert not run.of_type("ml-platform:kubeflow:PipelineStoreAccess")
    assert not run.of_type("ml-platform:tenancy:PipelinesAccess")
    assert _patches(run) == []
    assert not [r for r in run.of_type(ASSOCIATION) if r.inputs["namespace"] == "kubeflow"]


# --- the settings themselves ------------------------------------------------------------------


def test_the_ui_role_reads_and_the_others_also_write() -> None:
    arn = "arn:aws:s3:::b"
    read = {s["Sid"] for s in pipeline_store.access_policy(arn, write=False)["Statement"]}
    write = {s["Sid"] for s in pipeline_store.access_policy(arn, write=True)["Statement"]}
    assert read == {"ListOwnPrefixes", "ReadOwnPrefixes"}
    assert write == read | {"WriteOwnPrefixes"}
    assert pipeline_store.ACCOUNTS == {
        "ml-pipeline": True,
        "pipeline-runner": True,
        "ml-pipeline-ui": False,
    }


def test_every_object_key_the_settings_produce_is_below_the_pipelines_prefix() -> None:
    root = pipeline_store.pipeline_root("b")
    assert root.startswith(f"s3://b/{PIPELINES_PREFIX}")
    for prefix in (
        pipeline_store.ARTIFACTS_PREFIX,
        pipeline_store.LOGS_PREFIX,
        pipeline_store.PACKAGES_PATH,
    ):
        assert f"{prefix}/".startswith(PIPELINES_PREFIX)
    repository = yaml.safe_load(pipeline_store.artifact_repository("b", "eu-west-1"))
    assert repository["s3"]["keyFormat"].startswith(f"{pipeline_store.LOGS_PREFIX}/")
    assert "{{pod.name}}" in repository["s3"]["keyFormat"]
