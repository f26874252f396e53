"""Images this stack builds (training/, inference/) and pushes to ECR repositories it owns.

The tag is a digest of the files that go into the image, so the image (and every workload that
runs it) changes exactly when its code does; tags are immutable, and workloads run the pushed
`tag@sha256:digest` reference.  Previews do not build: the reference is unknown until `pulumi up`.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pulumi
import pulumi_aws as aws
import pulumi_docker_build as docker_build

ROOT = Path(__file__).resolve().parents[1]
TRAINING = ROOT / "training"
INFERENCE = ROOT / "inference"
KEEP_IMAGES = 30


def context_files(context: Path) -> list[Path]:
    """The files the image is built from: the Dockerfile and what .dockerignore lets through."""
    allowed = [
        line[1:].strip()
        for line in (context / ".dockerignore").read_text().splitlines()
        if line.startswith("!")
    ]
    return [context / "Dockerfile", *(context / name for name in sorted(allowed))]


def content_tag(context: Path) -> str:
    digest = hashlib.sha256()
    for path in context_files(context):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return f"src-{digest.hexdigest()[:16]}"


def lifecycle_policy() -> str:
    return json.dumps(
        {
            "rules": [
                {
                    "rulePriority": 1,
                    "description": f"keep the newest {KEEP_IMAGES} images",
                    "selection": {
                        "tagStatus": "any",
                        "countType": "imageCountMoreThan",
                        "countNumber": KEEP_IMAGES,
                    },
                    "action": {"type": "expire"},
                }
            ]
        }
    )


class BuiltImage(pulumi.ComponentResource):
    """One image built from a folder of this repository into its own ECR repository."""

    ref: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        *,
        context: Path,
        repository_name: str,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("ml-platform:images:BuiltImage", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        repository = aws.ecr.Repository(
            f"{name}-repo",
            name=repository_name,
            image_tag_mutability="IMMUTABLE",
            image_scanning_configuration=aws.ecr.RepositoryImageScanningConfigurationArgs(
                scan_on_push=True
            ),
            encryption_configurations=[
                aws.ecr.RepositoryEncryptionConfigurationArgs(encryption_type="KMS")
            ],
            opts=child,
        )
        aws.ecr.LifecyclePolicy(
            f"{name}-lifecycle", repository=repository.name, policy=lifecycle_policy(), opts=child
        )
        token = aws.ecr.get_authorization_token_output(
            registry_id=repository.registry_id, opts=pulumi.InvokeOutputOptions(parent=self)
        )
        image = docker_build.Image(
            f"{name}-image",
            context=docker_build.BuildContextArgs(location=str(context)),
            dockerfile=docker_build.DockerfileArgs(location=str(context / "Dockerfile")),
            platforms=[docker_build.Platform.LINUX_AMD64],
            tags=[pulumi.Output.concat(repository.repository_url, ":", content_tag(context))],
            push=True,
            build_on_preview=False,
            registries=[
                docker_build.RegistryArgs(
                    address=repository.repository_url,
                    username=token.user_name,
                    password=token.password,
                )
            ],
            opts=child,
        )
        self.ref = image.ref
        self.register_outputs({"ref": self.ref})
