"""Shared storage: EFS and its driver, static and dynamic claims, and the staging Job."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Iterator
from typing import Any

import pulumi
import pytest
import yaml

from harness.program import (
    ROOT,
    ProgramRun,
    RegisteredResource,
    run_program,
    stack_config,
    stack_settings,
)
from harness.render import kubernetes_objects
from infra import versions
from infra.block_storage import (
    CLAIM_TYPE,
    DEFAULT_CLASS_ANNOTATION,
    EBS_CLASS,
    claim_class_transform,
)
from infra.schedulability import pod_templates
from infra.settings.components import MonitoringSettings, StorageSettings
from infra.staging import SCRIPT
from infra.volumes import WORKSPACE_CLASS
from tests.conftest import AWS_STACKS, STACKS, stack_run
from tests.dependencies import waits_for
from tests.directory_children import as_registered
from tests.upstream_facts import facts


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
    [storage_class] = [
        o
        for o in objects
        if o["kind"] == "StorageClass" and o["metadata"]["name"] == WORKSPACE_CLASS
    ]
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


@pytest.mark.parametrize("stack", STACKS)
def test_nfs_volumes_name_a_server_the_node_resolves(stack: str) -> None:
    """The kubelet mounts NFS from the node, whose resolver knows no cluster DNS name."""
    volumes = [
        o
        for o in kubernetes_objects(stack_run(stack))
        if o["kind"] == "PersistentVolume" and "nfs" in o["spec"]
    ]
    nfs = stack_settings(stack).storage.nfs
    assert bool(volumes) == (nfs is not None)
    for volume in volumes:
        labels = volume["spec"]["nfs"]["server"].lower().rstrip(".").split(".")
        assert "svc" not in labels[1:], volume["metadata"]["name"]
        assert labels[-2:] != ["cluster", "local"], volume["metadata"]["name"]


@pytest.mark.parametrize(
    "server", ["10.96.0.50", "ml-platform-nfs", "nfs.example.com", "fd00::10", "svc.example.com"]
)
def test_nfs_servers_the_nodes_can_resolve_are_accepted(server: str) -> None:
    settings = StorageSettings.model_validate(
        {"mode": "nfs", "nfs": {"server": server, "path": "/exports"}}
    )
    assert settings.nfs is not None
    assert settings.nfs.server == server


def test_local_nfs_server_is_a_container_kind_nodes_resolve() -> None:
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "pr.yml").read_text())
    kind = facts("kind-node-nfs", pinned=workflow["env"]["KIND_VERSION"])
    assert "nfs-common" in kind["node_packages"]  # mount.nfs is on the node
    assert kind["node_resolver"] == "docker_embedded_dns"
    nfs = stack_settings("local").storage.nfs
    assert nfs is not None
    # A container name: Docker's embedded DNS answers it on the nodes' network.
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", nfs.server), nfs.server
    # ... and the README says how to start that container there, exporting that path.
    readme = (ROOT / "README.md").read_text()
    assert f"--network {kind['docker_network']} --name {nfs.server}" in readme
    assert nfs.path in readme


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
    config["ml-platform:storage"] = {
        "mode": "storageClass",
        "storageClassName": "cephfs",
        "blockStorageClassName": "ceph-rbd",
    }
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


# --- block volumes: one class per stack, named by every claim ----------------------------------


def _ebs_facts() -> dict[str, Any]:
    """The EBS CSI driver's facts, for the pinned add-on build."""
    [pinned] = {addons.ebs_csi_driver for addons in versions.EKS_ADDON_VERSIONS.values()}
    read: dict[str, Any] = facts("aws-ebs-csi-driver", pinned=pinned)
    return read


def _storage_classes(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == "StorageClass"}


@pytest.mark.parametrize("stack", AWS_STACKS)
def test_aws_stacks_make_an_encrypted_gp3_class_the_default(stack: str) -> None:
    ebs = _ebs_facts()
    classes = _storage_classes(kubernetes_objects(stack_run(stack)))
    block = classes[EBS_CLASS]
    assert block["provisioner"] == ebs["driver"]
    parameters = block["parameters"]
    assert set(parameters) <= set(ebs["parameters"])
    assert parameters["type"] == "gp3"
    assert parameters["type"] in ebs["parameters"]["type"]["values"]
    # Encryption is off unless asked for.
    assert ebs["parameters"]["encrypted"]["default"] == "false"
    assert parameters["encrypted"] == "true"
    assert block["volumeBindingMode"] == ebs["recommended_binding_mode"]
    assert block["allowVolumeExpansion"] is True
    defaults = [
        name
        for name, c in classes.items()
        if c["metadata"].get("annotations", {}).get(DEFAULT_CLASS_ANNOTATION) == "true"
    ]
    assert defaults == [EBS_CLASS]
    # The setting that existing clusters use instead names the class AWS stacks get.
    description = StorageSettings.model_fields["block_storage_class_name"].description
    assert description is not None
    assert f"`{EBS_CLASS}`" in description


def _declared_classes(stack: str) -> set[str]:
    """Classes a claim may name: those the program creates, or on an existing cluster, those
    the stack says the cluster has."""
    settings = stack_settings(stack)
    classes = set(_storage_classes(kubernetes_objects(stack_run(stack))))
    if settings.cluster.mode == "existing":
        storage = settings.storage
        classes |= {c for c in (storage.block_storage_class_name, storage.storage_class_name) if c}
    return classes


def _at(values: dict[str, Any], path: str) -> Any:
    for key in path.split("."):
        if not isinstance(values, dict) or key not in values:
            return None
        values = values[key]
    return values


def _release_claims(run: ProgramRun) -> Iterator[tuple[str, str | None]]:
    """(where, class) of every claim the monitoring stack's Helm values make."""
    chart = versions.KUBE_PROMETHEUS_STACK_CHART
    stack = facts("kube-prometheus-stack-storage", pinned=f"{chart.chart}-{chart.version}")
    assert stack["operator"] == versions.PROMETHEUS_OPERATOR_VERSION
    assert stack["grafana_chart"] == versions.KUBE_PROMETHEUS_STACK_GRAFANA_CHART
    operator = facts(
        "prometheus-operator-storage",
        pinned=versions.PROMETHEUS_OPERATOR_VERSION,
    )
    grafana = facts(
        "grafana-persistence", pinned=f"grafana-{versions.KUBE_PROMETHEUS_STACK_GRAFANA_CHART}"
    )
    releases = [
        r for r in run.of_type("kubernetes:helm.sh/v3:Release") if r.inputs["chart"] == chart.chart
    ]
    for release in releases:
        values = release.inputs["values"]
        for entry in stack["storage_values"]:
            switch = _at(values, entry["enabled"]["values"])
            if not (entry["enabled"]["default"] if switch is None else switch):
                continue
            storage = _at(values, entry["values"]) or {}
            for kind, class_path in operator["claim_classes"].items():
                if kind in storage:
                    yield f"{entry['kind']} ({entry['values']})", _at(storage, class_path)
        persistence = grafana["persistence"]
        switch = _at(values, persistence["enabled"]["values"])
        if persistence["enabled"]["default"] if switch is None else switch:
            yield "Grafana", _at(values, persistence["class"])


_BUNDLE_CLAIMS = {
    "https://github.com/kubeflow/pipelines": "kubeflow-pipelines-claims",
    "https://github.com/kubeflow/trainer": "kubeflow-trainer-claims",
    "https://github.com/kubeflow/kubeflow": "kubeflow-notebook-controller-claims",
    "https://github.com/kubeflow/katib": "kubeflow-katib-claims",
}
_SOURCES = {
    source.url: source
    for source in (
        versions.TRAINING_OPERATOR,
        versions.NOTEBOOK_CONTROLLER,
        versions.KFP_CLUSTER_RESOURCES,
        versions.KFP_PLATFORM_AGNOSTIC,
        versions.KATIB,
    )
}


def _as_installed(directory: RegisteredResource, claim: dict[str, Any]) -> dict[str, Any]:
    """An upstream claim as the engine registers it: through the Directory's transforms."""
    return as_registered(
        directory,
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": claim["name"], "namespace": claim["namespace"]},
            "spec": dict(claim["spec"]),
        },
    )


def _bundle_claims(run: ProgramRun) -> Iterator[tuple[str, str | None]]:
    """(where, class) of every claim in the upstream bundles the stack installs."""
    for directory in run.of_type("kubernetes:kustomize/v2:Directory"):
        source = _SOURCES[directory.inputs["directory"]]
        bundle = facts(_BUNDLE_CLAIMS[source.repository], pinned=source.ref)
        for claim in bundle["claims"][source.path]:
            installed = _as_installed(directory, claim)
            yield (
                f"{claim['namespace']}/{claim['name']} ({claim['file']})",
                installed["spec"].get("storageClassName"),
            )


@pytest.mark.parametrize("stack", STACKS)
def test_every_claim_resolves_to_a_class_the_stack_has(stack: str) -> None:
    run = stack_run(stack)
    objects = kubernetes_objects(run)
    classes = _declared_classes(stack)
    claims, volumes = _claims_and_volumes(objects)
    found: list[tuple[str, str | None]] = []
    for claim in claims:
        spec = claim["spec"]
        where = f"{claim['metadata']['namespace']}/{claim['metadata']['name']}"
        if spec.get("storageClassName") == "":
            # Pre-bound to a static volume: no class involved.
            assert (
                volumes[spec["volumeName"]]["spec"]["claimRef"]["name"] == claim["metadata"]["name"]
            ), where
            continue
        found.append((where, spec.get("storageClassName")))
    found += list(_release_claims(run))
    found += list(_bundle_claims(run))
    assert any("mysql-pv-claim" in where for where, _ in found)
    assert any(where.startswith("Prometheus") for where, _ in found)
    if stack_settings(stack).kubeflow.katib.enabled:
        assert any("kubeflow/katib-mysql" in where for where, _ in found)
    unresolved = [f"{where}: {name!r}" for where, name in found if name not in classes]
    assert unresolved == [], f"classes of stack {stack}: {sorted(classes)}"


@pytest.mark.parametrize("stack", AWS_STACKS)
def test_claims_wait_for_the_class(stack: str) -> None:
    run = stack_run(stack)
    [block] = [
        r
        for r in run.of_type("kubernetes:storage.k8s.io/v1:StorageClass")
        if r.inputs["metadata"]["name"] == EBS_CLASS
    ]
    claimants = [
        r
        for r in run.resources
        if r.type == "kubernetes:kustomize/v2:Directory"
        or (
            r.type == "kubernetes:helm.sh/v3:Release"
            and r.inputs["chart"] == "kube-prometheus-stack"
        )
    ]
    assert claimants
    assert [r.name for r in claimants if block.urn not in waits_for(run, r)] == []
    # The class waits for the driver that provisions its volumes.
    [driver] = [
        a
        for a in run.of_type("aws:eks/addon:Addon")
        if a.inputs["addonName"] == "aws-ebs-csi-driver"
    ]
    assert driver.urn in waits_for(run, block)


@pytest.mark.parametrize("stack", STACKS)
def test_monitoring_volumes_follow_the_settings(stack: str) -> None:
    monitoring = stack_settings(stack).monitoring
    [release] = [
        r.inputs["values"]
        for r in stack_run(stack).of_type("kubernetes:helm.sh/v3:Release")
        if r.inputs["chart"] == "kube-prometheus-stack"
    ]
    prometheus = release["prometheus"]["prometheusSpec"]["storageSpec"]
    alertmanager = release["alertmanager"]["alertmanagerSpec"]["storage"]
    for storage, size in (
        (prometheus, monitoring.storage_size),
        (alertmanager, monitoring.alertmanager_storage_size),
    ):
        spec = storage["volumeClaimTemplate"]["spec"]
        assert spec["accessModes"] == ["ReadWriteOnce"]
        assert spec["resources"]["requests"]["storage"] == size
    defaults = MonitoringSettings()
    assert (defaults.storage_size, defaults.alertmanager_storage_size) == ("50Gi", "2Gi")


def test_local_names_the_class_kind_installs() -> None:
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "pr.yml").read_text())
    kind = facts("kind-storage-class", pinned=workflow["env"]["KIND_VERSION"])
    assert kind["default_class"]["default"] is True
    # The annotation that made kind's class the default is the one AWS stacks mark theirs with.
    assert kind["default_class"]["annotations"] == {DEFAULT_CLASS_ANNOTATION: "true"}
    assert stack_settings("local").storage.block_storage_class_name == kind["default_class"]["name"]


def test_an_existing_cluster_without_block_claims_needs_no_class() -> None:
    config = stack_config("local")
    del config["ml-platform:storage"]["blockStorageClassName"]
    config["ml-platform:monitoring"] = {"enabled": False}
    config["ml-platform:kubeflow"] = {"pipelines": {"enabled": False}}
    run = run_program("local", config)
    assert not [
        r
        for r in run.of_type("kubernetes:helm.sh/v3:Release")
        if r.inputs["chart"] == "kube-prometheus-stack"
    ]
    assert not list(_bundle_claims(run))


def _transformed(
    props: dict[str, Any], type_: str = CLAIM_TYPE
) -> pulumi.ResourceTransformResult | None:
    transform = claim_class_transform("fast")
    result = transform(
        pulumi.ResourceTransformArgs(
            custom=True, type_=type_, name="x", props=props, opts=pulumi.ResourceOptions()
        )
    )
    assert not isinstance(result, Awaitable)
    return result


def test_the_claim_transform_names_the_class_only_where_none_is_named() -> None:
    claim: dict[str, Any] = {
        "metadata": {"name": "data"},
        "spec": {"accessModes": ["ReadWriteOnce"]},
    }
    result = _transformed(claim)
    assert result is not None
    assert result.props["spec"] == {"accessModes": ["ReadWriteOnce"], "storageClassName": "fast"}
    assert "storageClassName" not in claim["spec"]  # the input is not changed in place
    # A claim's class cannot change without replacing it (and its data).
    assert result.opts is not None
    assert result.opts.ignore_changes == ["spec.storageClassName"]
    assert _transformed({"spec": {"storageClassName": "slow"}}) is None
    assert _transformed({"spec": {"storageClassName": "", "volumeName": "pv"}}) is None
    assert _transformed({"spec": {}}, "kubernetes:apps/v1:Deployment") is None
