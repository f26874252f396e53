"""Docker Hub images through an ECR pull-through cache (`aws.pullThroughCache`) or a mirror
(`cluster.dockerHubMirror`): every Docker Hub image the stack renders is pulled from there, the
cache rule and the nodes' first-pull permissions exist and are scoped, and nothing changes when
neither is set."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from harness.mocks import ACCOUNT_ID
from harness.program import ProgramError, ProgramRun, run_program, stack_config, stack_settings
from harness.render import kubernetes_objects
from infra import versions
from infra.image_mirror import DOCKER_HUB_UPSTREAM, docker_hub_image
from infra.settings import SettingsError
from tests.conftest import STACKS, stack_run
from tests.upstream_facts import facts

# The ECR API model read for the fixture (the program pins no AWS SDK).
ECR_MODEL = "0e6e2404b85dc336dd2889814e089bde7d1a4c55"
RULE = "aws:ecr/pullThroughCacheRule:PullThroughCacheRule"
REGION = "us-east-1"
SECRET = (
    f"arn:aws:secretsmanager:{REGION}:{ACCOUNT_ID}:secret:ecr-pullthroughcache/docker-hub-AbCdEf"
)
CACHE = f"{ACCOUNT_ID}.dkr.ecr.{REGION}.amazonaws.com/docker-hub"
DIGEST = "sha256:" + "ab" * 32
# Docker Hub images a team may also declare: an official one, and one pinned by digest.
TEAM_IMAGES = {"official": "python:3.12-slim", "pinned": f"pytorch/pytorch@{DIGEST}"}


def _on_docker_hub(reference: str) -> bool:
    """Docker's reading of a reference: the first component is a host only when it has a '.' or
    ':' or is `localhost` (distribution/reference normalize.go); written out here so the test
    does not lean on the code it checks."""
    first, slash, _ = reference.partition("/")
    host = slash and ("." in first or ":" in first or first == "localhost")
    return not host or first in ("docker.io", "index.docker.io")


def _images(value: Any) -> Iterator[str]:
    """Every container image in a Kubernetes object (pods, templates, custom resources)."""
    if isinstance(value, dict):
        for key, child in value.items():
            if key in ("containers", "initContainers", "ephemeralContainers"):
                yield from (container["image"] for container in child)
            else:
                yield from _images(child)
    elif isinstance(value, list):
        for child in value:
            yield from _images(child)


def _rendered_images(run: ProgramRun) -> set[str]:
    return {image for obj in kubernetes_objects(run) for image in _images(obj)}


def _with_team_images(config: dict[str, Any]) -> None:
    """dev's research team also runs two PyTorch jobs on Docker Hub images."""
    team = config["ml-platform:teams"][0]
    team["trainingJobs"] = [
        *team["trainingJobs"],
        *(
            {
                "name": f"torch-{label}",
                "framework": "pytorch",
                "image": image,
                "command": ["python", "-c", "pass"],
                "workers": 1,
                "gpusPerWorker": 0,
                "pool": "system",
                "cpu": "1",
                "memory": "1Gi",
            }
            for label, image in TEAM_IMAGES.items()
        ),
    ]


def _dev(cache: dict[str, Any] | None, team_images: bool = False) -> dict[str, Any]:
    config = stack_config("dev")
    if cache is not None:
        config["ml-platform:aws"]["pullThroughCache"] = cache
    if team_images:
        _with_team_images(config)
    return config


_runs: dict[str, ProgramRun] = {}


def _cached_dev() -> ProgramRun:
    if "cached" not in _runs:
        _runs["cached"] = run_program("dev", _dev({"credentialArn": SECRET}, team_images=True))
    return _runs["cached"]


def test_the_ecr_model_is_what_the_settings_check() -> None:
    model = facts("ecr-pull-through-cache", pinned=ECR_MODEL)
    assert model["docker_hub_upstream_url"] == DOCKER_HUB_UPSTREAM
    pattern = re.compile(model["credential_arn"]["pattern"])
    for arn in (SECRET, SECRET.replace("ecr-pullthroughcache/", "dockerhub/")):
        settings_accept = True
        try:
            stack_settings("dev", _dev({"credentialArn": arn}))
        except SettingsError:
            settings_accept = False
        assert settings_accept == bool(pattern.match(arn)), arn
    prefix = re.compile(model["repository_prefix"]["pattern"])
    assert prefix.match("docker-hub")
    assert (
        model["repository_prefix"]["min"] <= len("docker-hub") <= model["repository_prefix"]["max"]
    )


@pytest.mark.parametrize(
    ("reference", "repository", "suffix"),
    [
        ("tensorflow/serving:2.20.0-gpu", "tensorflow/serving", ":2.20.0-gpu"),
        ("python:3.12", "library/python", ":3.12"),
        ("docker.io/library/python:3.12", "library/python", ":3.12"),
        ("index.docker.io/tensorflow/tensorflow:2.20.0", "tensorflow/tensorflow", ":2.20.0"),
        (f"python@{DIGEST}", "library/python", f"@{DIGEST}"),
        (f"grafana/grafana:12.1.0@{DIGEST}", "grafana/grafana", f":12.1.0@{DIGEST}"),
    ],
)
def test_docker_hub_references_map_to_their_repository(
    reference: str, repository: str, suffix: str
) -> None:
    image = docker_hub_image(reference)
    assert image is not None
    assert (image.repository, image.suffix) == (repository, suffix)


@pytest.mark.parametrize(
    "reference",
    [
        versions.NOTEBOOK_IMAGE_CPU,
        "registry.k8s.io/kube-scheduler:v1.35.9",
        "localhost/tool:1",
        "registry:5000/team/tool:1",
        f"{CACHE}/tensorflow/serving:2.20.0",
    ],
)
def test_other_registries_are_not_docker_hub(reference: str) -> None:
    assert docker_hub_image(reference) is None


@pytest.mark.parametrize("stack", STACKS)
def test_without_a_cache_or_mirror_images_are_unchanged(stack: str) -> None:
    run = stack_run(stack)
    images = _rendered_images(run)
    hub = {image for image in images if _on_docker_hub(image)}
    assert hub, "the stack renders Docker Hub images (TensorFlow's, at least)"
    assert versions.TENSORFLOW_IMAGE in hub
    assert not run.of_type(RULE)
    assert not any(image.startswith(CACHE) for image in images)
    for policy in run.of_type("aws:iam/rolePolicy:RolePolicy"):
        assert "BatchImportUpstreamImage" not in str(policy.inputs["policy"])


def test_with_the_cache_every_docker_hub_image_comes_from_it() -> None:
    plain = _rendered_images(run_program("dev", _dev(None, team_images=True)))
    cached = _rendered_images(_cached_dev())
    pinned = TEAM_IMAGES["pinned"]
    from_hub = {image for image in plain if _on_docker_hub(image)}
    assert {
        versions.TF_SERVING_IMAGE,
        versions.TENSORFLOW_IMAGE,
        *TEAM_IMAGES.values(),
    } <= from_hub
    # A digest-pinned image stays on Docker Hub: ECR's cache does not fetch by digest.
    assert {image for image in cached if _on_docker_hub(image)} == {pinned}
    expected = {
        f"{CACHE}/tensorflow/serving:2.20.0",
        f"{CACHE}/tensorflow/tensorflow:2.20.0",
        f"{CACHE}/library/python:3.12-slim",
    }
    assert expected <= cached
    assert cached - expected - {pinned} == plain - from_hub


def test_the_cache_rule_and_the_nodes_first_pull_permissions() -> None:
    run = _cached_dev()
    rule = run.one(RULE)
    assert rule.inputs == {
        "ecrRepositoryPrefix": "docker-hub",
        "upstreamRegistryUrl": "registry-1.docker.io",
        "credentialArn": SECRET,
    }
    [node_role] = [r for r in run.of_type("aws:iam/role:Role") if r.name == "ml-dev-nodes-role"]
    grants = [
        policy
        for policy in run.of_type("aws:iam/rolePolicy:RolePolicy")
        if "BatchImportUpstreamImage" in str(policy.inputs["policy"])
    ]
    [grant] = grants
    assert grant.inputs["role"] == node_role.outputs["name"]
    assert json.loads(grant.inputs["policy"])["Statement"] == [
        {
            "Sid": "DockerHubCacheFirstPulls",
            "Effect": "Allow",
            "Action": ["ecr:BatchImportUpstreamImage", "ecr:CreateRepository"],
            "Resource": f"arn:aws:ecr:{REGION}:{ACCOUNT_ID}:repository/docker-hub/*",
        }
    ]
    # Whatever pulls through the cache starts after the rule and the grant exist.
    pullers = [r for r in run.resources if any(i.startswith(CACHE) for i in _images(r.inputs))]
    assert {r.type for r in pullers} >= {
        "kubernetes:apps/v1:Deployment",
        "kubernetes:batch/v1:Job",
        "kubernetes:kubeflow.org/v1:PyTorchJob",
    }
    for puller in pullers:
        assert {rule.urn, grant.urn} <= set(puller.dependencies), puller.urn


def test_a_secret_of_another_account_stops_the_deployment() -> None:
    other = SECRET.replace(ACCOUNT_ID, "210987654321")
    with pytest.raises(ProgramError) as caught:
        run_program("dev", _dev({"credentialArn": other}))
    message = str(caught.value.cause)
    assert "aws.pullThroughCache.credentialArn" in message, message
    assert "account 210987654321" in message, message


def test_a_mirror_on_an_existing_cluster_serves_every_docker_hub_image() -> None:
    config = stack_config("local")
    config["ml-platform:cluster"]["dockerHubMirror"] = "harbor.example.com/dockerhub"
    images = _rendered_images(run_program("local", config))
    assert not {image for image in images if _on_docker_hub(image)}
    assert "harbor.example.com/dockerhub/tensorflow/tensorflow:2.20.0" in images


BAD: dict[str, tuple[str, dict[str, Any], str, str]] = {
    "secret without the cache prefix": (
        "dev",
        {"aws.pullThroughCache": {"credentialArn": SECRET.replace("ecr-pullthroughcache/", "")}},
        "ml-platform:aws.pullThroughCache.credentialArn",
        "named `ecr-pullthroughcache/<name>`",
    ),
    "a plain credential instead of an ARN": (
        "dev",
        {"aws.pullThroughCache": {"credentialArn": "dckr_pat_abc"}},
        "ml-platform:aws.pullThroughCache.credentialArn",
        "is not the ARN of a pull-through cache secret",
    ),
    "secret in another region": (
        "dev",
        {"aws.pullThroughCache": {"credentialArn": SECRET.replace(REGION, "eu-west-1")}},
        "ml-platform:aws.pullThroughCache.credentialArn",
        "the secret is in eu-west-1",
    ),
    "repository prefix ECR refuses": (
        "dev",
        {"aws.pullThroughCache": {"credentialArn": SECRET, "repositoryPrefix": "Docker_Hub/"}},
        "ml-platform:aws.pullThroughCache.repositoryPrefix",
        "is not an ECR repository prefix",
    ),
    "cache on an existing cluster": (
        "local",
        {
            "aws": {
                "region": REGION,
                "availabilityZones": [f"{REGION}a", f"{REGION}b"],
                "pullThroughCache": {"credentialArn": SECRET},
            }
        },
        "ml-platform:aws.pullThroughCache",
        "use `cluster.dockerHubMirror`",
    ),
    "cache and mirror together": (
        "dev",
        {
            "aws.pullThroughCache": {"credentialArn": SECRET},
            "cluster.dockerHubMirror": "mirror.example.com",
        },
        "ml-platform:cluster.dockerHubMirror",
        "remove one of the two",
    ),
    "mirror that is not a host": (
        "local",
        {"cluster.dockerHubMirror": "https://mirror.example.com"},
        "ml-platform:cluster.dockerHubMirror",
        "is not a registry host",
    ),
    "mirror read as a Docker Hub namespace": (
        "local",
        {"cluster.dockerHubMirror": "mirror"},
        "ml-platform:cluster.dockerHubMirror",
        "would be read as a Docker Hub namespace",
    ),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_cache_settings_name_the_key(case: str) -> None:
    stack, changes, key_path, fragment = BAD[case]
    config = stack_config(stack)
    for path, value in changes.items():
        section, _, key = path.partition(".")
        if key:
            config.setdefault(f"ml-platform:{section}", {})[key] = value
        else:
            config[f"ml-platform:{section}"] = value
    with pytest.raises(ProgramError) as caught:
        run_program(stack, config)
    error = caught.value
    assert isinstance(error.cause, SettingsError), error.cause
    message = str(error.cause)
    assert f"{key_path}:" in message, message
    assert fragment in message, message
    assert error.resources == [], [r.urn for r in error.resources]
