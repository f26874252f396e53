"""The stack builds the training image into its own ECR repository and jobs run that exact image."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from harness.program import ROOT, ProgramRun
from infra import images as training_image
from tests.conftest import stack_run
from tests.upstream_facts import facts

DOCKER_BUILD = "0.0.22"  # pulumi-docker-build in pyproject.toml


@pytest.fixture(params=["dev", "prod"])
def built(request: pytest.FixtureRequest) -> ProgramRun:
    return stack_run(request.param)


def test_repository_is_immutable_scanned_and_pruned(built: ProgramRun) -> None:
    [repository] = [
        r
        for r in built.of_type("aws:ecr/repository:Repository")
        if r.inputs["name"].endswith("/training")
    ]
    assert repository.inputs["imageTagMutability"] == "IMMUTABLE"
    assert repository.inputs["imageScanningConfiguration"] == {"scanOnPush": True}
    assert repository.inputs["encryptionConfigurations"] == [{"encryptionType": "KMS"}]
    [policy] = [
        p for p in built.of_type("aws:ecr/lifecyclePolicy:LifecyclePolicy") if "training" in p.name
    ]
    [rule] = json.loads(policy.inputs["policy"])["rules"]
    assert rule["selection"]["countNumber"] == training_image.KEEP_IMAGES


def test_image_is_pushed_with_a_content_tag_and_not_built_on_preview(built: ProgramRun) -> None:
    [repository] = [
        r
        for r in built.of_type("aws:ecr/repository:Repository")
        if r.inputs["name"].endswith("/training")
    ]
    [image] = [i for i in built.of_type("docker-build:index:Image") if "training" in i.name]
    url = repository.outputs["repositoryUrl"]
    assert image.inputs["push"] is True
    assert image.inputs["buildOnPreview"] is False
    assert image.inputs["tags"] == [f"{url}:{training_image.content_tag(training_image.TRAINING)}"]
    assert image.inputs["context"]["location"] == "training"
    assert image.inputs["dockerfile"]["location"] == "training/Dockerfile"
    [registry] = image.inputs["registries"]
    assert registry["address"] == url
    assert registry["username"] == "AWS"
    assert "password" in image.secret_inputs or registry["password"]


def test_content_tag_follows_the_files_in_the_image(tmp_path: Path) -> None:
    context = tmp_path / "training"
    shutil.copytree(training_image.TRAINING, context)
    before = training_image.content_tag(context)
    (context / "README.txt").write_text("not in the image")
    assert training_image.content_tag(context) == before
    (context / "train.py").write_text((context / "train.py").read_text() + "\n# changed\n")
    assert training_image.content_tag(context) != before


def test_every_tfjob_runs_the_built_image(built: ProgramRun) -> None:
    [image] = [i for i in built.of_type("docker-build:index:Image") if "training" in i.name]
    assert built.outputs["trainingImage"] == image.outputs["ref"]
    jobs = built.of_type("kubernetes:kubeflow.org/v1:TFJob")
    for job in jobs:
        for replica in job.inputs["spec"]["tfReplicaSpecs"].values():
            [container] = replica["template"]["spec"]["containers"]
            assert container["image"] == image.outputs["ref"]
            assert "@sha256:" in container["image"]


def test_content_tag_follows_what_docker_build_hashes(tmp_path: Path) -> None:
    """The provider's context hash covers each file's path and mode as well as its bytes
    (pulumi/pulumi-docker-build@v0.0.22:provider/internal/context.go, hashFile); a change it sees
    must bring a new tag, or the rebuild pushes an existing tag to the immutable repository."""
    hashed = facts("docker-build-context", pinned=f"v{DOCKER_BUILD}")["hashed_per_file"]
    assert set(hashed) == {"bytes", "relative path", "mode string"}
    context = tmp_path / "training"
    shutil.copytree(training_image.TRAINING, context)
    before = training_image.content_tag(context)
    (context / "train.py").chmod(0o755)  # executable in git: a mode git records
    assert training_image.content_tag(context) != before


def test_context_modes_do_not_depend_on_the_umask(tmp_path: Path) -> None:
    """A checkout under umask 002 has group-writable files; the provider would hash
    `-rw-rw-r--` instead of `-rw-r--r--` and rebuild an unchanged image."""
    context = tmp_path / "training"
    shutil.copytree(training_image.TRAINING, context)
    reference = training_image.content_tag(context)
    for path in training_image.context_files(context):
        path.chmod(0o664)
    training_image.normalize_modes(context)
    assert {oct(path.stat().st_mode & 0o777) for path in training_image.context_files(context)} == {
        "0o644"
    }
    assert training_image.content_tag(context) == reference


def _image_inputs(run: ProgramRun) -> dict[str, Any]:
    return {
        image.name: {k: v for k, v in image.inputs.items() if k != "registries"}
        for image in run.of_type("docker-build:index:Image")
    }


def _absolute_paths(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [p for v in value.values() for p in _absolute_paths(v)]
    if isinstance(value, list):
        return [p for v in value for p in _absolute_paths(v)]
    return [value] if isinstance(value, str) and os.path.isabs(value) else []


def test_image_inputs_hold_no_absolute_path(built: ProgramRun) -> None:
    compared = facts("docker-build-context", pinned=f"v{DOCKER_BUILD}")["compared_as_written"]
    images = _image_inputs(built)
    assert images
    assert _absolute_paths(images) == []
    for inputs in images.values():
        for field in compared:
            group, key = field.split(".")
            assert (ROOT / inputs[group][key]).exists(), (field, inputs[group][key])


_DUMP_IMAGES = """
import json, sys
from harness.program import ROOT, run_program
run = run_program(sys.argv[1])
json.dump({"root": str(ROOT), "images": {
    i.name: {k: v for k, v in i.inputs.items() if k != "registries"}
    for i in run.of_type("docker-build:index:Image")}}, sys.stdout)
"""


def test_image_inputs_are_the_same_from_another_checkout(tmp_path: Path) -> None:
    """`pulumi up` from another directory (another operator, the CI runner's checkout), under
    another umask, must see the same Image inputs, or it rebuilds and pushes an existing tag."""
    copy = tmp_path / "elsewhere" / "ml-platform"
    shutil.copytree(
        ROOT,
        copy,
        ignore=shutil.ignore_patterns(
            ".git", ".venv", "node_modules", ".cache", "build", "*_cache", "__pycache__"
        ),
    )
    for folder in ("training", "inference"):
        for path in (copy / folder).iterdir():
            path.chmod(0o664)
    result = subprocess.run(
        [sys.executable, "-c", _DUMP_IMAGES, "dev"],
        cwd=tmp_path,  # neither checkout
        env={**os.environ, "PYTHONPATH": str(copy)},
        capture_output=True,
        text=True,
        check=True,
    )
    elsewhere = json.loads(result.stdout)
    assert elsewhere["root"] == str(copy)  # the copy's program ran, not this checkout's
    assert elsewhere["images"] == _image_inputs(stack_run("dev"))
