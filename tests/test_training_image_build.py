"""The stack builds the training image into its own ECR repository and jobs run that exact image."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from harness.program import ProgramRun
from infra import images as training_image
from tests.conftest import stack_run


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
    assert image.inputs["context"]["location"].endswith("/training")
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
