"""Shared storage: EFS and its driver, static and dynamic claims, and the staging Job."""

from __future__ import annotations

from typing import Any

import pytest

from harness.program import (
    run_program,
    stack_config,
    stack_settings,
)
from harness.render import kubernetes_objects
from infra import versions
from infra.schedulability import pod_templates
from infra.staging import SCRIPT
from tests.conftest import AWS_STACKS, STACKS, stack_run


@pytest.mark.parametrize("stack", AWS_STACKS)
def test_efs_is_encrypted_elastic_backed_up_and_tiered(stack: str) -> None:
    run = stack_run(stack)
    fs = run.one("aws:efs/fileSystem:FileSystem").inputs
    assert fs["encrypted"] is True
    assert fs["throughputMode"] == "elastic"
    assert {"transitionToIa": "AFTER_30_DAYS"} in fs["lifecyclePolicies"]
    backup = run.one("aws:efs/backupPolicy:BackupPolicy").inputs
    assert backup["backupPolicy"] == {"status": "ENABLED"}


@pytest.mark.parametrize("stack", AWS_STACKS)
def test_one_mount_target_per_private_subnet_reachable_only_from_the_cluster(stack: str) -> None:
    run = stack_run(stack)
    targets = run.of_type("aws:efs/mountTarget:MountTarget")
    assert sorted(t.inputs["subnetId"] for t in targets) == sorted(run.outputs["privateSubnetIds"])
    groups = {
        g.outputs["arn"].rsplit("/", 1)[-1]: g
        for g in run.of_type("aws:ec2/securityGroup:SecurityGroup")
    }
    cluster_sg = run.one("aws:eks/cluster:Cluster").outputs["vpcConfig"]["clusterSecurityGroupId"]
    for target in targets:
        [group_id] = target.inputs["securityGroups"]
        [rule] = groups[group_id].inputs["ingress"]
        assert (rule["fromPort"], rule["toPort"], rule["protocol"]) == (2049, 2049, "tcp")
        assert rule["securityGroups"] == [cluster_sg]
        assert not rule.get("cidrBlocks")


@pytest.mark.parametrize("stack", AWS_STACKS)
def test_csi_driver_add_on_uses_pod_identity(stack: str) -> None:
    run = stack_run(stack)
    [addon] = [
        a
        for a in run.of_type("aws:eks/addon:Addon")
        if a.inputs["addonName"] == "aws-efs-csi-driver"
    ]
    assert addon.inputs["addonVersion"] == versions.EKS_ADDON_VERSIONS["1.35"].efs_csi_driver
    [association] = addon.inputs["podIdentityAssociations"]
    assert association["serviceAccount"] == "efs-csi-controller-sa"
    roles = {r.outputs["arn"]: r for r in run.of_type("aws:iam/role:Role")}
    role = roles[association["roleArn"]]
    attached = [
        a.inputs["policyArn"]
        for a in run.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")
        if a.inputs["role"] == role.outputs["name"]
    ]
    assert attached == ["arn:aws:iam::aws:policy/service-role/AmazonEFSCSIDriverPolicy"]


@pytest.mark.parametrize("stack", AWS_STACKS)
def test_shared_volumes_are_access_points_owned_by_the_file_owner(stack: str) -> None:
    owner = stack_settings(stack).storage.file_owner
    points = {
        p.inputs["rootDirectory"]["path"]: p.inputs
        for p in stack_run(stack).of_type("aws:efs/accessPoint:AccessPoint")
    }
    assert set(points) == {"/datasets", "/models"}
    for point in points.values():
        assert point["posixUser"] == {"uid": owner, "gid": owner}
        assert point["rootDirectory"]["creationInfo"]["permissions"] == "0775"


@pytest.mark.parametrize("stack", AWS_STACKS)
def test_workspace_class_provisions_access_points(stack: str) -> None:
    objects = kubernetes_objects(stack_run(stack))
    [storage_class] = [o for o in objects if o["kind"] == "StorageClass"]
    fs_id = stack_run(stack).one("aws:efs/fileSystem:FileSystem").outputs["arn"].rsplit("/", 1)[-1]
    assert storage_class["provisioner"] == "efs.csi.aws.com"
    assert storage_class["reclaimPolicy"] == "Retain"
    params = storage_class["parameters"]
    assert params["provisioningMode"] == "efs-ap"
    assert params["fileSystemId"] == fs_id
    assert params["subPathPattern"] == "${.PVC.namespace}/${.PVC.name}"
    assert params["ensureUniqueDirectory"] == "true"
    assert params["uid"] == params["gid"] == "1000"
    assert params["directoryPerms"] == "700"


def test_local_uses_static_nfs_and_no_aws() -> None:
    run = stack_run("local")
    assert not [r for r in run.resources if r.type.startswith("aws:")]
    volumes = [o for o in kubernetes_objects(run) if o["kind"] == "PersistentVolume"]
    assert volumes
    nfs = stack_settings("local").storage.nfs
    assert nfs is not None
    for volume in volumes:
        assert volume["spec"]["nfs"]["server"] == nfs.server
        assert volume["spec"]["nfs"]["path"].startswith(nfs.path)


def _claims_and_volumes(
    objects: list[dict[str, Any]],
) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    claims = [o for o in objects if o["kind"] == "PersistentVolumeClaim"]
    volumes = {o["metadata"]["name"]: o for o in objects if o["kind"] == "PersistentVolume"}
    return claims, volumes


@pytest.mark.parametrize("stack", STACKS)
def test_every_claim_names_its_class_and_static_pairs_match(stack: str) -> None:
    claims, volumes = _claims_and_volumes(kubernetes_objects(stack_run(stack)))
    assert claims
    for claim in claims:
        spec = claim["spec"]
        assert "storageClassName" in spec, claim["metadata"]
        if spec["storageClassName"] != "":
            continue
        volume = volumes[spec["volumeName"]]["spec"]
        assert volume["storageClassName"] == ""
        assert volume["accessModes"] == spec["accessModes"]
        assert volume["capacity"]["storage"] == spec["resources"]["requests"]["storage"]
        assert volume["claimRef"] == {
            "name": claim["metadata"]["name"],
            "namespace": claim["metadata"]["namespace"],
        }
    referenced = {c["spec"].get("volumeName") for c in claims}
    assert set(volumes) <= referenced, "a static volume no claim binds"


@pytest.mark.parametrize("stack", STACKS)
def test_shared_volumes_reach_every_namespace_that_needs_them(stack: str) -> None:
    settings = stack_settings(stack)
    claims, _ = _claims_and_volumes(kubernetes_objects(stack_run(stack)))
    where = {(c["metadata"]["name"], c["metadata"]["namespace"]) for c in claims}
    for team in settings.teams:
        for volume in (
            settings.storage.datasets,
            settings.storage.models,
            settings.storage.workspace,
        ):
            assert (volume.name, team.name) in where
    assert (settings.storage.models.name, "serving") in where
    assert (settings.storage.datasets.name, "ml-system") in where
    assert (settings.storage.workspace.name, "serving") not in where


def serving_mounts_of_models_that_write(
    objects: list[dict[str, Any]], models_claim: str
) -> list[str]:
    """Pod templates in the serving namespace that mount the models claim without readOnly."""
    problems = []
    for template in pod_templates(objects):
        if template.namespace != "serving":
            continue
        volumes = {
            v["name"]: v["persistentVolumeClaim"]["claimName"]
            for v in template.spec.get("volumes") or []
            if "persistentVolumeClaim" in v
        }
        for container in template.spec.get("containers") or []:
            for mount in container.get("volumeMounts") or []:
                if volumes.get(mount["name"]) == models_claim and not mount.get("readOnly"):
                    problems.append(f"{template.workload} container {container['name']}")
    return problems


@pytest.mark.parametrize("stack", STACKS)
def test_serving_mounts_models_read_only(stack: str) -> None:
    objects = kubernetes_objects(stack_run(stack))
    assert (
        serving_mounts_of_models_that_write(objects, stack_settings(stack).storage.models.name)
        == []
    )


def test_the_read_only_check_catches_a_writable_mount() -> None:
    server = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "tfserving", "namespace": "serving"},
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {"name": "server", "volumeMounts": [{"name": "m", "mountPath": "/models"}]}
                    ],
                    "volumes": [{"name": "m", "persistentVolumeClaim": {"claimName": "models"}}],
                }
            }
        },
    }
    assert serving_mounts_of_models_that_write([server], "models") == [
        "Deployment serving/tfserving container server"
    ]
    server["spec"]["template"]["spec"]["containers"][0]["volumeMounts"][0]["readOnly"] = True  # type: ignore[index]
    assert serving_mounts_of_models_that_write([server], "models") == []


@pytest.mark.parametrize("stack", STACKS)
def test_staging_job_runs_the_tested_script_as_non_root(stack: str) -> None:
    objects = kubernetes_objects(stack_run(stack))
    [job] = [o for o in objects if o["kind"] == "Job"]
    [script] = [
        o
        for o in objects
        if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "stage-mnist-script"
    ]
    assert script["data"]["prepare_data.py"] == SCRIPT.read_text()
    assert job["metadata"]["namespace"] == "ml-system"
    assert job["spec"]["backoffLimit"] == 3
    pod = job["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    [container] = pod["containers"]
    assert container["image"] == versions.TENSORFLOW_IMAGE
    assert container["command"][1:4] == [
        "/opt/ml-platform/prepare_data.py",
        "--out",
        "/data/mnist.npz",
    ]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    datasets = stack_settings(stack).storage.datasets.name
    assert {"name": "datasets", "persistentVolumeClaim": {"claimName": datasets}} in pod["volumes"]


def test_storage_class_mode_gives_each_namespace_its_own_claims() -> None:
    config = stack_config("local")
    config["ml-platform:storage"] = {"mode": "storageClass", "storageClassName": "cephfs"}
    objects = kubernetes_objects(run_program("local", config))
    claims, volumes = _claims_and_volumes(objects)
    assert volumes == {}
    assert claims
    assert {c["spec"]["storageClassName"] for c in claims} == {"cephfs"}


def test_staging_can_be_turned_off() -> None:
    config = stack_config("local")
    config["ml-platform:storage"]["staging"] = {"enabled": False}
    objects = kubernetes_objects(run_program("local", config))
    assert not [o for o in objects if o["kind"] == "Job"]
    assert not [
        o
        for o in objects
        if o["kind"] == "PersistentVolumeClaim" and o["metadata"]["namespace"] == "ml-system"
    ]
