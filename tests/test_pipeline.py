"""The KFP pipeline compiles offline; evaluate and promote work on a real exported model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.program import (
    run_program,
    stack_config,
    stack_settings,
)
from harness.render import kubernetes_objects
from infra import names, versions
from infra.scheduling import placement
from tests.conftest import STACKS, stack_run
from tests.directory_children import as_registered
from tests.synthetic import synthetic_mnist
from tests.upstream_facts import facts
from training import evaluate, pipeline, promote
from training import train as trainer

IMAGE = "registry.example.com/ml-platform/training:0.1.0"


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], dict[str, Any]]:
    out = pipeline.compile_for_stack(
        "dev", "research", IMAGE, tmp_path_factory.mktemp("kfp") / "p.yaml"
    )
    spec, platform = yaml.safe_load_all(out.read_text())
    return spec, platform


def test_four_tasks_in_order(compiled: tuple[dict[str, Any], dict[str, Any]]) -> None:
    spec, _ = compiled
    tasks = spec["root"]["dag"]["tasks"]
    assert set(tasks) == {"prepare-data", "train", "evaluate", "promote"}
    assert "dependentTasks" not in tasks["prepare-data"]
    assert tasks["train"]["dependentTasks"] == ["prepare-data"]
    assert tasks["evaluate"]["dependentTasks"] == ["train"]
    assert tasks["promote"]["dependentTasks"] == ["evaluate"]
    promote_inputs = tasks["promote"]["inputs"]["parameters"]
    assert promote_inputs["accuracy"]["taskOutputParameter"]["producerTask"] == "evaluate"


def test_threshold_is_a_pipeline_parameter(compiled: tuple[dict[str, Any], dict[str, Any]]) -> None:
    spec, _ = compiled
    parameters = spec["root"]["inputDefinitions"]["parameters"]
    assert parameters["threshold"]["defaultValue"] == 0.97
    assert parameters["threshold"]["parameterType"] == "NUMBER_DOUBLE"
    assert spec["root"]["dag"]["tasks"]["promote"]["inputs"]["parameters"]["threshold"] == {
        "componentInputParameter": "threshold"
    }


def test_train_gets_a_gpu_on_the_pool_the_contract_names(
    compiled: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    spec, platform = compiled
    executors = spec["deploymentSpec"]["executors"]
    train = executors["exec-train"]["container"]
    assert train["image"] == IMAGE
    assert train["command"] == ["python", "-m", "training.train"]
    accelerator = train["resources"]["accelerator"]
    assert (accelerator["resourceType"], accelerator["resourceCount"]) == ("nvidia.com/gpu", "1")
    for name, executor in executors.items():
        if name != "exec-train":
            assert "accelerator" not in executor["container"].get("resources", {})
    config = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    where = placement(stack_settings("dev"), "gpu")
    assert config["exec-train"]["nodeSelector"]["labels"] == where.node_selector
    [toleration] = config["exec-train"]["tolerations"]
    assert (toleration["key"], toleration["effect"]) == ("nvidia.com/gpu", "NoSchedule")


def test_every_step_mounts_the_team_claims(compiled: tuple[dict[str, Any], dict[str, Any]]) -> None:
    _, platform = compiled
    storage = stack_settings("dev").storage
    for executor in platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"].values():
        mounts = {m["constant"]: m["mountPath"] for m in executor["pvcMount"]}
        assert mounts == {storage.datasets.name: "/data", storage.models.name: "/models"}


# --- where a run's pods find the claims --------------------------------------------------------

# Only to compile for a stack without a GPU pool (`local`): the claims do not depend on the pool.
A_GPU_POOL = {"name": "gpu", "instanceTypes": ["g5.xlarge"], "minSize": 0, "maxSize": 1}


def _pipeline_cases() -> list[Any]:
    """Every stack with Pipelines on, and `local` again in storage mode `storageClass`."""
    cases = []
    for stack in STACKS:
        if not stack_settings(stack).kubeflow.pipelines.enabled:
            continue
        config = stack_config(stack)
        if not stack_settings(stack).node_pools.gpu:
            config.setdefault("ml-platform:nodePools", {})["gpu"] = [A_GPU_POOL]
        cases.append(pytest.param(stack, config, id=stack))
        if stack == "local":
            by_class = {**config, "ml-platform:storage": {**config["ml-platform:storage"]}}
            by_class["ml-platform:storage"].pop("nfs")
            by_class["ml-platform:storage"].update(mode="storageClass", storageClassName="cephfs")
            cases.append(pytest.param(stack, by_class, id=f"{stack}-storageClass"))
    return cases


def _files(volume: dict[str, Any]) -> tuple[str, ...]:
    """What a static PersistentVolume points at: an EFS access point or an NFS export path."""
    spec = volume["spec"]
    if "csi" in spec:
        return (spec["csi"]["driver"], spec["csi"]["volumeHandle"])
    return ("nfs", spec["nfs"]["server"], spec["nfs"]["path"])


def test_pipeline_runs_execute_in_the_namespace_the_program_names() -> None:
    """Standalone Pipelines runs every pod in its own namespace: names.PIPELINE_RUNS says which."""
    runs = facts("kubeflow-pipelines-runs", pinned=versions.KFP_REF)
    assert runs["multi_user"]["default"] is False
    assert runs["multi_user"]["set_by_standalone_install"] is False
    assert runs["single_user_runs_in"] == "api_server_pod_namespace"
    assert runs["api_server_pod_namespace_from"]["field_ref"] == "metadata.namespace"
    assert runs["install_namespace"] == names.PIPELINE_RUNS
    # ... and its Argo controller, --namespaced, runs Workflows of that namespace only.
    assert runs["argo_workflows_ref"] == versions.KFP_ARGO_WORKFLOWS_REF
    argo = facts("argo-workflows-controller", pinned=versions.KFP_ARGO_WORKFLOWS_REF)
    assert argo["namespaced_flag"] in runs["argo_controller_extra_args"]
    assert argo["namespaced_watches"] == "own_namespace"
    # Nothing here turns multi-user mode on: no patch, and no transform of the install.
    rendered = facts("kubeflow-pipelines-rendered", pinned=versions.KFP_REF)["rendered"]
    for stack in STACKS:
        run = stack_run(stack)
        changed = [
            (patch.name, patch.inputs)
            for patch in run.of_type("kubernetes:apps/v1:DeploymentPatch")
        ] + [
            (directory.name, as_registered(directory, obj))
            for directory in run.of_type("kubernetes:kustomize/v2:Directory")
            for obj in rendered
            if obj["kind"] == "Deployment"
        ]
        assert len(changed) > 1
        for source, deployment in changed:
            for container in deployment["spec"]["template"]["spec"]["containers"]:
                variables = {e["name"] for e in container.get("env") or []}
                assert runs["multi_user"]["variable"] not in variables, source


@pytest.mark.parametrize(("stack", "config"), _pipeline_cases())
def test_every_claim_a_run_mounts_is_bound_where_pipelines_runs_its_pods(
    stack: str, config: dict[str, Any], tmp_path: Path
) -> None:
    settings = stack_settings(stack, config)
    out = pipeline.compile_for_settings(
        settings, stack, settings.teams[0].name, IMAGE, tmp_path / "p.yaml"
    )
    _, platform = yaml.safe_load_all(out.read_text())
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"].values()
    mounted = {
        m["pvcNameParameter"]["runtimeValue"]["constant"] for e in executors for m in e["pvcMount"]
    }
    assert mounted == {settings.storage.datasets.name, settings.storage.models.name}

    run = stack_run(stack) if config == stack_config(stack) else run_program(stack, config)
    objects = kubernetes_objects(run)
    claims = {
        (o["metadata"]["namespace"], o["metadata"]["name"]): o
        for o in objects
        if o["kind"] == "PersistentVolumeClaim"
    }
    volumes = {o["metadata"]["name"]: o for o in objects if o["kind"] == "PersistentVolume"}
    for name in mounted:
        claim = claims.get((names.PIPELINE_RUNS, name))
        assert claim is not None, f"no claim {names.PIPELINE_RUNS}/{name}: run pods stay Pending"
        spec = claim["spec"]
        assert "ReadWriteMany" in spec["accessModes"]  # prepare-data and promote write
        if settings.storage_mode == "storageClass":
            assert spec["storageClassName"] == settings.storage.storage_class_name
            assert "volumeName" not in spec
            continue
        # A static volume pre-bound to this very claim, writable, at the teams' and serving's files.
        volume = volumes[spec["volumeName"]]
        assert spec["storageClassName"] == volume["spec"]["storageClassName"] == ""
        assert volume["spec"]["claimRef"] == {"name": name, "namespace": names.PIPELINE_RUNS}
        assert not (volume["spec"].get("csi") or volume["spec"].get("nfs") or {}).get("readOnly")
        others = [
            volumes[c["spec"]["volumeName"]]
            for (namespace, claim_name), c in claims.items()
            if claim_name == name and namespace != names.PIPELINE_RUNS
        ]
        assert {o["spec"]["claimRef"]["namespace"] for o in others} >= {
            t.name for t in settings.teams
        }
        assert {_files(o) for o in others} == {_files(volume)}


def test_unknown_team_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="no team 'nobody'"):
        pipeline.compile_for_stack("dev", "nobody", IMAGE, tmp_path / "p.yaml")


# --- evaluate and promote on a model the trainer exported ---------------------------------------


@pytest.fixture(scope="module")
def candidate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, trainer.Metrics]:
    out = tmp_path_factory.mktemp("candidate")
    data = synthetic_mnist(out / "data.npz")
    metrics = trainer.train(
        data, out / "candidates", trainer.Run(epochs=2, batch_size=64), log=lambda *_: None
    )
    assert metrics is not None
    return data, out / "candidates", metrics


def test_evaluate_reproduces_the_trainers_accuracy(
    candidate: tuple[Path, Path, trainer.Metrics], tmp_path: Path
) -> None:
    data, base, metrics = candidate
    out = tmp_path / "accuracy"
    assert (
        evaluate.main(["--model-base", str(base), "--data", str(data), "--accuracy-out", str(out)])
        == 0
    )
    assert float(out.read_text()) == pytest.approx(metrics.test_accuracy, abs=1e-4)


def test_evaluate_explains_a_missing_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert evaluate.main(["--model-base", str(tmp_path), "--data", str(tmp_path / "d.npz")]) == 2
    assert "no model version under" in capsys.readouterr().err


def test_promote_copies_a_good_version_atomically_and_once(
    candidate: tuple[Path, Path, trainer.Metrics], tmp_path: Path
) -> None:
    _, base, metrics = candidate
    serving = tmp_path / "serving"
    promoted = promote.promote(base, serving, accuracy=0.99, threshold=0.97)
    assert promoted == serving / str(metrics.version)
    assert (promoted / "saved_model.pb").is_file()
    assert sorted(p.name for p in serving.iterdir()) == [str(metrics.version)]
    assert promote.promote(base, serving, accuracy=0.99, threshold=0.97) == promoted  # a retry


def test_promote_keeps_a_weak_version_out(
    candidate: tuple[Path, Path, trainer.Metrics], tmp_path: Path
) -> None:
    _, base, _ = candidate
    serving = tmp_path / "serving"
    args = [
        "--candidate-base",
        str(base),
        "--serving-base",
        str(serving),
        "--accuracy",
        "0.9",
        "--threshold",
        "0.97",
    ]
    assert promote.main(args) == 0
    assert not serving.exists()
    assert promote.main([*args[:-1], "1.5"]) == 2
