"""Where the nodes pull Docker Hub images from: Docker Hub itself, an ECR pull-through cache, or a
mirror the operator runs.

Docker Hub limits anonymous pulls per source address, and every node of an AWS stack pulls through
the VPC's NAT address, so a busy cluster (HPA scale-outs, new GPU nodes) can be throttled.  With
`aws.pullThroughCache` the stack creates an ECR pull-through cache rule for Docker Hub and the
program renders its docker.io images from the cache; with `cluster.dockerHubMirror` it renders
them from the mirror the operator names.  Images from other registries are left alone.

How a reference is read follows Docker's own normalisation (distribution/reference
`ParseNormalizedNamed`): the first path component is a registry host only when it contains `.` or
`:` or is `localhost`; otherwise the image is on Docker Hub, and a one-component name is an
official image under `library/`.  In the cache, Docker Hub's official images keep that `library/`
prefix and every other repository keeps its own path (Amazon ECR user guide, "Pulling an image
with a pull through cache rule in Amazon ECR": `<prefix>/library/<image>:<tag>` for official
images, `<prefix>/<repository>/<image>:<tag>` for the rest).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from infra.settings import Settings

# The names Docker Hub's registry is written as in an image reference (distribution/reference
# normalize.go: `docker.io` is the canonical domain, `index.docker.io` its legacy alias;
# `registry-1.docker.io` is the registry endpoint itself, the cache rule's upstream URL).
DOCKER_HUB_HOSTS = ("docker.io", "index.docker.io", "registry-1.docker.io")
OFFICIAL_NAMESPACE = "library"
# The upstream registry URL ECR expects for Docker Hub (boto/botocore ECR API model,
# CreatePullThroughCacheRuleRequest.upstreamRegistryUrl: "Docker Hub (docker-hub) -
# registry-1.docker.io"); tests/upstream/ecr-pull-through-cache.yaml.
DOCKER_HUB_UPSTREAM = "registry-1.docker.io"

_DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")


@dataclass(frozen=True)
class DockerHubImage:
    """A Docker Hub image reference, split into its repository path and its tag or digest."""

    # The repository with Docker Hub's implicit `library/` made explicit: `library/python`,
    # `tensorflow/serving`.
    repository: str
    # What follows the repository: `:2.20.0`, `@sha256:...` or `:2.20.0@sha256:...`.
    suffix: str

    @property
    def pinned_by_digest(self) -> bool:
        return bool(_DIGEST.search(self.suffix))


def docker_hub_image(reference: str) -> DockerHubImage | None:
    """The reference as a Docker Hub image, or None when it names another registry."""
    name, at, digest = reference.partition("@")
    tag = ""
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        name, tag = name.rsplit(":", 1)
        tag = f":{tag}"
    first, slash, rest = name.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        if first not in DOCKER_HUB_HOSTS:
            return None
        name = rest
    if "/" not in name:
        name = f"{OFFICIAL_NAMESPACE}/{name}"
    return DockerHubImage(repository=name, suffix=f"{tag}{at}{digest}")


@dataclass(frozen=True)
class DockerHubMirror:
    """Where docker.io images are pulled from instead: `<base>/<repository><suffix>`.

    `base`: a registry host and optional path, e.g. `123456789012.dkr.ecr.us-east-1.amazonaws.com/
    docker-hub`.  `digests`: whether a reference pinned by digest can be pulled through it.  An ECR
    pull-through cache fetches from upstream only on a pull by tag: a first pull of an uncached
    image by digest (even `tag@digest`) answers "not found" (aws/containers-roadmap#2837, open),
    so such references stay on Docker Hub, where they keep working.
    """

    base: str
    digests: bool

    def pull_ref(self, reference: Any) -> Any:
        """`reference` rewritten to the mirror when it names a Docker Hub image it can serve.

        Anything else (another registry, an image this stack builds, which is an Output) is
        returned unchanged.
        """
        if not isinstance(reference, str):
            return reference
        image = docker_hub_image(reference)
        if image is None or (image.pinned_by_digest and not self.digests):
            return reference
        return f"{self.base}/{image.repository}{image.suffix}"


def pull_ref(mirror: DockerHubMirror | None, reference: Any) -> Any:
    """`reference` as the nodes should pull it: through the stack's mirror, if it has one."""
    return mirror.pull_ref(reference) if mirror else reference


def docker_hub_mirror(settings: Settings) -> DockerHubMirror | None:
    """The stack's way to Docker Hub: its ECR pull-through cache, the operator's mirror, or none."""
    aws = settings.aws
    if aws and aws.pull_through_cache:
        return DockerHubMirror(base=aws.pull_through_cache.base(aws.region), digests=False)
    if settings.cluster.docker_hub_mirror:
        # A registry proxy is asked for a manifest by tag or by digest alike (the distribution
        # API's GET /v2/<name>/manifests/<reference>), so digest-pinned references go through it
        # too; whether a given mirror product fetches an uncached digest upstream is its own
        # behaviour, not checked here.
        return DockerHubMirror(base=settings.cluster.docker_hub_mirror, digests=True)
    return None


def mirrored(settings: Settings, reference: Any) -> Any:
    """`reference` as the stack's nodes pull it (see `DockerHubMirror.pull_ref`)."""
    return pull_ref(docker_hub_mirror(settings), reference)
