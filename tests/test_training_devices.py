"""A training container given GPUs fails, saying why, when TensorFlow sees none; the platform
tells exactly its GPU containers that they were given GPUs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import tensorflow as tf
import yaml

from harness.program import stack_settings
from infra import gpu_sharing
from tests.conftest import STACKS, stack_run
from tests.synthetic import synthetic_mnist
from training import devices, pipeline
from training import train as trainer
from workloads import manifests


def test_the_platform_and_the_trainer_name_the_same_variable() -> None:
    assert manifests.EXPECTED_GPUS_ENV == devices.EXPECTED_GPUS


def test_no_expectation_no_check() -> None:
    assert devices.use_gpus(0, {}) is False
    assert devices.use_gpus(2, {}) is True
    assert devices.use_gpus(1, {devices.EXPECTED_GPUS: "1"}) is True
    # A time-sliced share or a MIG slice per request: one visible GPU is enough.
    assert devices.use_gpus(1, {devices.EXPECTED_GPUS: "4"}) is True


def test_gpus_expected_and_none_visible_is_an_error() -> None:
    with pytest.raises(devices.DeviceError, match=r"requests 1 GPU.*TensorFlow lists none"):
        devices.use_gpus(0, {devices.EXPECTED_GPUS: "1"})


@pytest.mark.parametrize("value", ["one", "-1", "1.5"])
def test_a_malformed_expectation_names_the_variable(value: str) -> None:
    with pytest.raises(devices.DeviceError, match=rf"^{devices.EXPECTED_GPUS}="):
        devices.expected_gpus({devices.EXPECTED_GPUS: value})


def test_trainer_exits_non_zero_before_training_when_its_gpu_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The container requested a GPU (the variable the platform renders) and TensorFlow lists
    none, as with CUDA libraries TensorFlow cannot load: exit 2 with the reason, nothing written."""
    data = synthetic_mnist(tmp_path / "data.npz", train_size=512, test_size=128)
    export = tmp_path / "export"
    monkeypatch.setenv(devices.EXPECTED_GPUS, "1")
    # This machine has no GPU; make it so on any machine the test runs on.
    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: [])
    code = trainer.main(
        ["--data", str(data), "--export-dir", str(export), "--checkpoint-dir", str(tmp_path / "c")]
    )
    assert code == 2
    error = capsys.readouterr().err
    assert "requests 1 GPU(s) (EXPECTED_GPUS=1) but TensorFlow lists none" in error
    assert "would train on the CPU" in error
    assert not export.exists()
    assert not (tmp_path / "c").exists()


def _containers(job: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    specs = job["spec"].get("tfReplicaSpecs") or job["spec"]["pytorchReplicaSpecs"]
    return [
        (replica, container)
        for replica, spec in specs.items()
        for container in spec["template"]["spec"]["containers"]
    ]


def _gpus(container: dict[str, Any]) -> int:
    limits = container["resources"]["limits"]
    return sum(int(v) for k, v in limits.items() if gpu_sharing.is_gpu_resource(k))


def _expected(container: dict[str, Any]) -> list[str]:
    return [e["value"] for e in container.get("env", []) if e["name"] == devices.EXPECTED_GPUS]


@pytest.mark.parametrize("stack", STACKS)
def test_rendered_training_jobs_tell_exactly_their_gpu_containers(stack: str) -> None:
    run = stack_run(stack)
    jobs = [
        *run.of_type("kubernetes:kubeflow.org/v1:TFJob"),
        *run.of_type("kubernetes:kubeflow.org/v1:PyTorchJob"),
    ]
    checked = 0
    for job in jobs:
        for replica, container in _containers(job.inputs):
            gpus = _gpus(container)
            assert _expected(container) == ([str(gpus)] if gpus else []), (job.name, replica)
            checked += bool(gpus)
    if stack == "dev":  # the stack that declares a GPU training job (Pulumi.dev.yaml)
        assert checked


def test_cpu_replicas_of_a_tfjob_are_not_told_to_expect_gpus() -> None:
    settings = stack_settings("dev")
    job = (
        settings.teams[0]
        .training_jobs[0]
        .model_copy(update={"chief": True, "parameter_servers": 1, "evaluator": True})
    )
    assert job.gpus_per_worker
    specs = manifests.tfjob(settings, "research", job, "registry.example.com/ml/training:1")
    told = {replica: _expected(container) for replica, container in _containers(specs)}
    gpus = str(job.gpus_per_worker)
    assert told == {"Worker": [gpus], "Chief": [gpus], "PS": [], "Evaluator": []}


def test_the_pipeline_train_step_expects_its_gpu(tmp_path: Path) -> None:
    out = pipeline.compile_for_stack(
        "dev", "research", "registry.example.com/t:1", tmp_path / "p.yaml"
    )
    spec, _ = yaml.safe_load_all(out.read_text())
    executors = spec["deploymentSpec"]["executors"]
    for name, executor in executors.items():
        container = executor["container"]
        count = container.get("resources", {}).get("accelerator", {}).get("resourceCount")
        assert _expected(container) == ([count] if count else []), name
    assert _expected(executors["exec-train"]["container"]) == ["1"]
