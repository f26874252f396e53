"""Kubeflow installs and the teams' TFJob, PyTorchJob and Notebook resources."""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import pulumi
import pytest
from kubeflow.training.api_client import ApiClient

from harness.program import (
    ProgramError,
    ProgramRun,
    RegisteredResource,
    run_program,
    stack_config,
    stack_settings,
)
from harness.render import kubernetes_objects
from harness.schema import validation_errors
from infra import kubeflow, names, versions
from infra.kubeflow import retain_shared_objects
from infra.settings import SettingsError, TrainingJobSettings
from tests.conftest import STACKS, stack_run
from tests.directory_children import as_registered
from tests.upstream_facts import facts
from workloads import manifests


def _directories(run: ProgramRun) -> dict[str, str]:
    return {
        r.name.rsplit("-kubeflow-", 1)[-1]: r.inputs["directory"]
        for r in run.of_type("kubernetes:kustomize/v2:Directory")
    }


@pytest.mark.parametrize("stack", STACKS)
def test_each_component_is_installed_from_its_pinned_source(stack: str) -> None:
    katib = {"katib": versions.KATIB.url} if stack_settings(stack).kubeflow.katib.enabled else {}
    assert _directories(stack_run(stack)) == {
        "training-operator": versions.TRAINING_OPERATOR.url,
        "notebook-controller": versions.NOTEBOOK_CONTROLLER.url,
        "pipelines-cluster": versions.KFP_CLUSTER_RESOURCES.url,
        "pipelines": versions.KFP_PLATFORM_AGNOSTIC.url,
        **katib,
    }
    for url in _directories(stack_run(stack)).values():
        assert "?ref=" in url
        assert "latest" not in url


def test_pipelines_install_cluster_resources_first() -> None:
    run = stack_run("dev")
    directories = {r.name: r for r in run.of_type("kubernetes:kustomize/v2:Directory")}
    cluster = directories["ml-dev-kubeflow-pipelines-cluster"]
    assert cluster.urn in directories["ml-dev-kubeflow-pipelines"].dependencies


def test_switching_a_component_off_removes_its_install() -> None:
    config = stack_config("local")
    config["ml-platform:kubeflow"] = {
        "pipelines": {"enabled": False},
        "notebooks": {"enabled": False},
    }
    assert set(_directories(run_program("local", config))) == {"training-operator"}


def test_bundle_namespaces_and_crds_are_retained_on_delete() -> None:
    def transformed(type_: str) -> pulumi.ResourceTransformResult | None:
        args = pulumi.ResourceTransformArgs(
            custom=True, type_=type_, name="x", props={}, opts=pulumi.ResourceOptions()
        )
        return retain_shared_objects(args)

    for type_ in (
        "kubernetes:core/v1:Namespace",
        "kubernetes:apiextensions.k8s.io/v1:CustomResourceDefinition",
    ):
        result = transformed(type_)
        assert result is not None
        assert result.opts is not None
        assert result.opts.retain_on_delete is True
    assert transformed("kubernetes:apps/v1:Deployment") is None


# --- upstream objects as the Directories register them ------------------------------------------


def _notebook_controller_upstream() -> dict[str, Any]:
    upstream: dict[str, Any] = facts(
        "kubeflow-notebook-controller", pinned=versions.NOTEBOOK_CONTROLLER.ref
    )
    return upstream


def _directory(run: ProgramRun, suffix: str) -> RegisteredResource:
    [directory] = [
        r
        for r in run.of_type("kubernetes:kustomize/v2:Directory")
        if r.name.endswith(f"-kubeflow-{suffix}")
    ]
    return directory


def _resolved_env(
    objects: list[dict[str, Any]], namespace: str, deployment: str, container: str
) -> dict[str, str]:
    """The container's environment as the kubelet builds it from these objects."""
    config_maps = {
        o["metadata"]["name"]: o.get("data") or {}
        for o in objects
        if o["kind"] == "ConfigMap" and o["metadata"]["namespace"] == namespace
    }
    [workload] = [
        o
        for o in objects
        if o["kind"] == "Deployment"
        and (o["metadata"]["namespace"], o["metadata"]["name"]) == (namespace, deployment)
    ]
    containers = workload["spec"]["template"]["spec"]["containers"]
    [spec] = [c for c in containers if c["name"] == container]
    env: dict[str, str] = {}
    for variable in spec["env"]:
        # The API server rejects an EnvVar with both (validateEnvVarValueFrom).
        assert not ("value" in variable and "valueFrom" in variable), variable
        if "valueFrom" in variable:
            ref = variable["valueFrom"]["configMapKeyRef"]
            env[variable["name"]] = config_maps[ref["name"]][ref["key"]]
        else:
            env[variable["name"]] = variable.get("value", "")
    return env


def _atoi(text: str) -> int:
    """Go's strconv.Atoi, which the controller parses its minutes with: an optional sign, digits."""
    assert re.fullmatch(r"[+-]?[0-9]+", text), f"{text!r} is not an integer to strconv.Atoi"
    return int(text)


def _notebook_controller_after_transforms(stack: str) -> list[dict[str, Any]]:
    directory = _directory(stack_run(stack), "notebook-controller")
    return [as_registered(directory, o) for o in _notebook_controller_upstream()["rendered"]]


@pytest.mark.parametrize(("stack", "minutes"), [("dev", 60), ("local", 60), ("prod", 120)])
def test_notebook_culling_is_on_with_the_stacks_idle_time(stack: str, minutes: int) -> None:
    assert stack_settings(stack).kubeflow.notebooks.cull_idle_minutes == minutes
    culling = _notebook_controller_upstream()["culling"]
    env = _resolved_env(
        _notebook_controller_after_transforms(stack),
        names.NOTEBOOK_CONTROLLER,
        kubeflow.NOTEBOOK_CONTROLLER_DEPLOYMENT,
        kubeflow.NOTEBOOK_CONTROLLER_CONTAINER,
    )
    assert env[culling["enable"]["variable"]] == culling["enable"]["enabled_when_equal_to"]
    assert culling["idle_time"]["unit"] == culling["check_period"]["unit"] == "minutes"
    assert _atoi(env[culling["idle_time"]["variable"]]) == minutes
    assert _atoi(env[culling["check_period"]["variable"]]) >= 1
    assert env["USE_ISTIO"] == "false"  # the standalone overlay's value is kept


def test_a_changed_idle_time_rolls_the_controller_and_changes_nothing_else() -> None:
    """The ConfigMap keeps its name and env reads it only at start: the pod template must change."""
    upstream = {o["kind"]: o for o in _notebook_controller_upstream()["rendered"]}
    prefix = _notebook_controller_upstream()["config_map_name_prefix"]
    assert prefix == kubeflow.NOTEBOOK_CONTROLLER_CONFIG_PREFIX
    digests: dict[str, str] = {}
    for stack in ("dev", "prod"):
        objects = {o["kind"]: o for o in _notebook_controller_after_transforms(stack)}
        assert objects["ConfigMap"]["metadata"] == upstream["ConfigMap"]["metadata"]
        deployment = copy.deepcopy(objects["Deployment"])
        annotations = deployment["spec"]["template"]["metadata"].pop("annotations")
        assert set(annotations) == {kubeflow.CULLING_DIGEST_ANNOTATION}
        digests[stack] = annotations[kubeflow.CULLING_DIGEST_ANNOTATION]
        assert deployment == upstream["Deployment"]  # env and everything else untouched
    assert digests["dev"] != digests["prod"], "60 and 120 minutes must differ in the pod template"
    [again] = [o for o in _notebook_controller_after_transforms("dev") if o["kind"] == "Deployment"]
    annotations = again["spec"]["template"]["metadata"]["annotations"]
    assert annotations[kubeflow.CULLING_DIGEST_ANNOTATION] == digests["dev"]  # no churn


def test_the_culling_transform_leaves_other_objects_alone() -> None:
    directory = _directory(stack_run("dev"), "notebook-controller")
    elsewhere = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "notebook-controller-config-abc", "namespace": "kubeflow"},
        "data": {"ENABLE_CULLING": "false"},
    }
    assert as_registered(directory, elsewhere) == elsewhere
    account = {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": "x", "namespace": names.NOTEBOOK_CONTROLLER},
    }
    assert as_registered(directory, account) == account


def _upstream_env_fields() -> dict[str, dict[str, str]]:
    """`<namespace>/<deployment>/<container>` -> {variable: "value" | "valueFrom"} upstream."""
    fields: dict[str, dict[str, str]] = {}
    for obj in _notebook_controller_upstream()["rendered"]:
        if obj["kind"] != "Deployment":
            continue
        for container in obj["spec"]["template"]["spec"]["containers"]:
            key = f"{obj['metadata']['namespace']}/{obj['metadata']['name']}/{container['name']}"
            fields[key] = {
                e["name"]: "valueFrom" if "valueFrom" in e else "value" for e in container["env"]
            }
    pipelines = facts("kubeflow-pipelines-deployments", pinned=versions.KFP_REF)
    fields.update(pipelines["env_fields"])
    return fields


@pytest.mark.parametrize("stack", STACKS)
def test_every_deployment_patch_sets_env_the_way_upstream_does(stack: str) -> None:
    """A server-side-apply patch merges into upstream's EnvVar: the same field, or both remain."""
    upstream = _upstream_env_fields()
    for patch in stack_run(stack).of_type("kubernetes:apps/v1:DeploymentPatch"):
        metadata = patch.inputs["metadata"]
        for container in patch.inputs["spec"]["template"]["spec"]["containers"]:
            key = f"{metadata['namespace']}/{metadata['name']}/{container['name']}"
            assert key in upstream, f"{patch.name}: read {key}'s env upstream into a fixture"
            for variable in container.get("env") or []:
                fields = {"value", "valueFrom"} & set(variable)
                assert len(fields) == 1, (patch.name, variable)
                [field] = fields
                expected = upstream[key].get(variable["name"], field)  # new variables are free
                assert field == expected, (
                    f"{patch.name} sets {key} {variable['name']} with `{field}`; upstream uses "
                    f"`{expected}`, and the merged EnvVar would have both"
                )


def _upstream_deployments() -> list[dict[str, Any]]:
    """Upstream Deployments the program changes, as their Directories render them."""
    pipelines = facts("kubeflow-pipelines-rendered", pinned=versions.KFP_REF)["rendered"]
    return [
        o
        for o in [*_notebook_controller_upstream()["rendered"], *pipelines]
        if o["kind"] == "Deployment"
    ]


@pytest.mark.parametrize("stack", STACKS)
def test_every_transformed_env_var_keeps_upstreams_field(stack: str) -> None:
    """A transform may change what a variable says, not whether it is a `value` or `valueFrom`."""
    upstream = _upstream_env_fields()
    deployments = _upstream_deployments()
    assert {d["metadata"]["name"] for d in deployments} >= {
        kubeflow.NOTEBOOK_CONTROLLER_DEPLOYMENT,
        "ml-pipeline",
        "ml-pipeline-ui",
    }
    for directory in stack_run(stack).of_type("kubernetes:kustomize/v2:Directory"):
        for deployment in deployments:
            metadata = deployment["metadata"]
            after = as_registered(directory, deployment)
            for container in after["spec"]["template"]["spec"]["containers"]:
                key = f"{metadata['namespace']}/{metadata['name']}/{container['name']}"
                assert key in upstream, f"read {key}'s env upstream into a fixture"
                for variable in container.get("env") or []:
                    fields = {"value", "valueFrom"} & set(variable)
                    assert len(fields) <= 1, (directory.name, key, variable)
                    field = next(iter(fields), "value")
                    expected = upstream[key].get(variable["name"], field)  # new ones are free
                    assert field == expected, (
                        f"{directory.name} sets {key} {variable['name']} with `{field}`; "
                        f"upstream uses `{expected}`"
                    )


# --- the teams' custom resources --------------------------------------------------------------


def _objects(stack: str, kind: str) -> list[dict[str, Any]]:
    return [o for o in kubernetes_objects(stack_run(stack)) if o["kind"] == kind]


class _Response:
    def __init__(self, body: dict[str, Any]) -> None:
        self.data = json.dumps(body)


def _stringify_quantities(obj: Any) -> Any:
    """The SDK keeps resource quantities as strings; compare like with like."""
    if isinstance(obj, dict):
        return {
            k: (
                {q: str(v) for q, v in val.items()}
                if k in ("limits", "requests")
                else _stringify_quantities(val)
            )
            for k, val in obj.items()
        }
    if isinstance(obj, list):
        return [_stringify_quantities(v) for v in obj]
    return obj


def _round_trip(obj: dict[str, Any], model: str) -> Any:
    client = ApiClient()
    return client.sanitize_for_serialization(client.deserialize(_Response(obj), model))


def test_dev_declares_the_mnist_tfjob_and_a_notebook() -> None:
    [job] = _objects("dev", "TFJob")
    assert (job["metadata"]["namespace"], job["metadata"]["name"]) == ("research", "mnist")
    worker = job["spec"]["tfReplicaSpecs"]["Worker"]
    assert worker["replicas"] == 2
    [container] = worker["template"]["spec"]["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert [n["metadata"]["name"] for n in _objects("dev", "Notebook")] == ["explore"]


def test_tfjob_survives_the_kubeflow_model_round_trip() -> None:
    """Serialize -> KubeflowOrgV1TFJob -> serialize is lossless: no unknown or mistyped field."""
    [job] = _objects("dev", "TFJob")
    assert _round_trip(job, "KubeflowOrgV1TFJob") == _stringify_quantities(job)


def test_the_round_trip_catches_a_misspelt_field() -> None:
    [job] = _objects("dev", "TFJob")
    broken = copy.deepcopy(job)
    broken["spec"]["runPolicy"]["cleanPodPolicyy"] = "All"
    assert _round_trip(broken, "KubeflowOrgV1TFJob") != _stringify_quantities(broken)


def _full_tfjob() -> dict[str, Any]:
    """Every replica type; PS and Evaluator need a command of the job's own."""
    settings = stack_settings("dev")
    declared = settings.teams[0].training_jobs[0].model_dump(by_alias=True)
    declared.update(
        chief=True, parameterServers=2, evaluator=True, command=["python", "-m", "ps_trainer"]
    )
    job = TrainingJobSettings.model_validate(declared)
    return manifests.tfjob(settings, "research", job, "registry.example.com/ml/training:1")


def test_the_built_in_trainer_refuses_ps_and_evaluator_replicas() -> None:
    """It runs MultiWorkerMirroredStrategy (training/roles.py); a job's own command may use them."""
    declared = stack_settings("dev").teams[0].training_jobs[0].model_dump(by_alias=True)
    declared.pop("command")
    # The key each refusal names is checked through the program (tests/test_bad_config.py).
    for key, value, reason in (
        ("parameterServers", 1, "has no parameter servers"),
        ("evaluator", True, "has no evaluator role"),
    ):
        with pytest.raises(ValueError, match=reason):
            TrainingJobSettings.model_validate({**declared, key: value})
    assert TrainingJobSettings.model_validate({**declared, "chief": True}).chief


def test_tfjob_policies_and_replicas() -> None:
    job = _full_tfjob()
    assert _round_trip(job, "KubeflowOrgV1TFJob") == _stringify_quantities(job)
    policy = job["spec"]["runPolicy"]
    assert policy["cleanPodPolicy"] in ("Running", "All")
    assert policy["backoffLimit"] >= 0
    assert policy["activeDeadlineSeconds"] > 0
    specs = job["spec"]["tfReplicaSpecs"]
    assert set(specs) == {"Worker", "Chief", "PS", "Evaluator"}
    for replica, spec in specs.items():
        assert spec["restartPolicy"] in ("OnFailure", "ExitCode")
        pod = spec["template"]["spec"]
        [container] = pod["containers"]
        assert container["name"] == "tensorflow"
        assert {"name": "tfjob-port", "containerPort": 2222} in container["ports"]
        gpus = container["resources"]["limits"].get("nvidia.com/gpu", 0)
        assert container["resources"]["requests"].get("nvidia.com/gpu", 0) == gpus
        if replica == "PS":
            assert gpus == 0
            assert "tolerations" not in pod  # a CPU pod stays off GPU nodes
        mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
        assert mounts["/data"]["readOnly"] is True
        assert not mounts["/models"].get("readOnly")
        assert spec["template"]["metadata"]["annotations"]["sidecar.istio.io/inject"] == "false"
        assert (
            validation_errors(
                {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"}, "spec": pod}, "1.35"
            )
            == []
        )


def test_tfjob_runs_the_trainer_with_the_shared_paths() -> None:
    [job] = _objects("dev", "TFJob")
    [container] = job["spec"]["tfReplicaSpecs"]["Worker"]["template"]["spec"]["containers"]
    command = container["command"]
    assert command[:3] == ["python", "-m", "training.train"]
    args = dict(zip(command[3::2], command[4::2], strict=True))
    assert args["--data"] == "/data/mnist.npz"
    assert args["--export-dir"] == "/models/research/mnist"
    assert args["--checkpoint-dir"] == "/models/.checkpoints/research/mnist"
    [image] = [
        i for i in stack_run("dev").of_type("docker-build:index:Image") if "training" in i.name
    ]
    assert container["image"] == image.outputs["ref"]  # the image this stack builds


def test_pytorchjob_round_trip_and_shape() -> None:
    settings = stack_settings("dev")
    job = (
        settings.teams[0]
        .training_jobs[0]
        .model_copy(
            update={
                "framework": "pytorch",
                "workers": 3,
                "nproc_per_node": "gpu",
                "image": "pytorch/pytorch:2.9.1-cuda12.8-cudnn9-runtime",
                "command": ["torchrun", "train.py"],
            }
        )
    )
    body = manifests.pytorchjob(settings, "research", job)
    assert _round_trip(body, "KubeflowOrgV1PyTorchJob") == _stringify_quantities(body)
    specs = body["spec"]["pytorchReplicaSpecs"]
    assert (specs["Master"]["replicas"], specs["Worker"]["replicas"]) == (1, 2)
    assert body["spec"]["nprocPerNode"] == "gpu"
    [container] = specs["Master"]["template"]["spec"]["containers"]
    assert container["name"] == "pytorch"
    assert container["command"] == ["torchrun", "train.py"]


def test_notebook_shape_and_pod_spec() -> None:
    [notebook] = _objects("dev", "Notebook")
    assert set(notebook) == {"apiVersion", "kind", "metadata", "spec"}
    assert set(notebook["spec"]) == {"template"}
    assert set(notebook["spec"]["template"]) == {"spec"}  # the CRD prunes template metadata
    pod = notebook["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert container["name"] == notebook["metadata"]["name"]
    assert container["image"] == versions.NOTEBOOK_IMAGE_CPU
    assert not container["image"].startswith("tensorflow/")
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert "/home/jovyan" in mounts
    claims = {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"]}
    assert claims["workspace"] == stack_settings("dev").storage.workspace.name
    assert (
        validation_errors(
            {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"}, "spec": pod}, "1.35"
        )
        == []
    )


def test_a_gpu_notebook_gets_the_cuda_image_and_the_pool_contract() -> None:
    settings = stack_settings("dev")
    server = settings.teams[0].notebooks[0].model_copy(update={"gpus": 1, "pool": "gpu"})
    pod = manifests.notebook(settings, "research", server)["spec"]["template"]["spec"]
    assert pod["containers"][0]["image"] == versions.NOTEBOOK_IMAGE_GPU
    assert pod["nodeSelector"] == {"ml-platform.io/pool": "gpu"}


def test_custom_resources_wait_for_their_installer() -> None:
    run = stack_run("dev")
    directories = {r.name: r.urn for r in run.of_type("kubernetes:kustomize/v2:Directory")}
    [tfjob] = run.of_type("kubernetes:kubeflow.org/v1:TFJob")
    [notebook] = run.of_type("kubernetes:kubeflow.org/v1:Notebook")
    assert directories["ml-dev-kubeflow-training-operator"] in tfjob.dependencies
    assert directories["ml-dev-kubeflow-notebook-controller"] in notebook.dependencies


@pytest.mark.parametrize("stack", STACKS)
def test_no_tfjob_leaves_pods_behind(stack: str) -> None:
    for job in _objects(stack, "TFJob"):
        assert job["spec"]["runPolicy"]["cleanPodPolicy"] != "None"
        ps = job["spec"]["tfReplicaSpecs"].get("PS")
        if ps:
            assert "nvidia.com/gpu" not in json.dumps(ps)


def test_an_unschedulable_job_stops_the_program_before_anything_registers() -> None:
    config = stack_config("dev")
    config["ml-platform:teams"][0]["trainingJobs"][0]["gpusPerWorker"] = 2  # g5/g6.xlarge have 1
    with pytest.raises(ProgramError) as caught:
        run_program("dev", config)
    assert isinstance(caught.value.cause, SettingsError)
    message = str(caught.value.cause)
    assert "ml-platform:teams[0].trainingJobs[0]: TFJob research/mnist Worker" in message
    assert "2 nvidia.com/gpu > 1 per node" in message
    assert caught.value.resources == []
