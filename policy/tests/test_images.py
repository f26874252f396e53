"""no-latest-image-tags."""

from __future__ import annotations

import pytest

from ml_platform_policy.pods import image_tags, mutable_tag_problem
from tests.helpers import POD, TFJOB, UNKNOWN, check, container, pod, pod_spec, tfjob

PINNED = [
    "nginx:1.27",
    "tensorflow/serving:2.20.0-gpu",
    "registry.k8s.io/kube-scheduler:v1.33.1",
    "registry:5000/team/x:1.0",
    "localhost:5000/x:v2",
    "nginx@sha256:" + "a" * 64,
    "123456789012.dkr.ecr.us-east-1.amazonaws.com/ml-dev-training:abc123@sha256:" + "b" * 64,
    "registry:5000/x:latest@sha256:" + "c" * 64,  # the digest is what is pulled
]
MUTABLE = [
    "nginx",
    "nginx:latest",
    "repo/x:latest",
    "registry:5000/x",
    "registry:5000/x:latest",
    "localhost:5000/team/x",
    "docker.io/library/busybox",
    "x:",
]


@pytest.mark.parametrize("image", PINNED)
def test_tagged_or_digest_pinned_images_pass(image: str) -> None:
    assert mutable_tag_problem(image) is None
    assert check(image_tags, POD, pod(pod_spec(container(image=image)))) == []


@pytest.mark.parametrize("image", MUTABLE)
def test_latest_or_untagged_images_are_violations(image: str) -> None:
    assert mutable_tag_problem(image) is not None
    [message] = check(image_tags, POD, pod(pod_spec(container(image=image))))
    assert f"image '{image}'" in message


def test_init_containers_are_checked() -> None:
    spec = pod_spec(container(), initContainers=[container("setup", image="busybox")])
    [message] = check(image_tags, POD, pod(spec))
    assert "container 'setup' (spec.initContainers[0])" in message


def test_tfjob_replicas_are_checked() -> None:
    inputs = tfjob(
        {"Worker": pod_spec(container("tensorflow")), "PS": pod_spec(container(image="tf:latest"))}
    )
    [message] = check(image_tags, TFJOB, inputs)
    assert "spec.tfReplicaSpecs.PS.template.spec.containers[0]" in message


def test_an_image_not_known_yet_or_absent_is_skipped() -> None:
    # During preview a freshly built image's reference is unknown; `pulumi up` checks it.
    assert check(image_tags, POD, pod(pod_spec(container(image=UNKNOWN)))) == []
    # A patch may leave the image as it is.
    assert check(image_tags, POD, pod(pod_spec(container(image=None)))) == []
