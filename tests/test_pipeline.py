"""The KFP pipeline compiles offline; evaluate and promote work on a real exported model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.program import stack_settings
from infra.scheduling import placement
from tests.synthetic import synthetic_mnist
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
