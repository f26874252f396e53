"""Images this stack builds (training/, inference/) and pushes to ECR repositories it owns.

The tag is a digest of the files that go into the image, so the image (and every workload that
runs it) changes exactly when its code does; tags are immutable, and workloads run the pushed
`tag@sha256:digest` reference.  Previews do not build: the reference is unknown until `pulumi up`.

Nothing in an Image's inputs depends on the machine, so an `up` from another checkout or another
operator's machine sees no change and pushes nothing (a rebuild would push the same tag again, which
the immutable repository refuses):
- paths are relative to the project directory, the working directory of both the program and the
  docker-build provider (pulumi/pulumi@v3.259.0:pkg/engine/project.go getPwdMain: the project root;
  sdk/go/common/resource/plugin/plugin.go ExecPlugin: `cmd.Dir = pwd` for every plugin;
  sdk/python/cmd/pulumi-language-python-exec: `os.chdir(args.pwd)` for the program);
- the provider's context hash, which decides whether `up` rebuilds, covers each file's path, mode
  string and bytes (pulumi/pulumi-docker-build@v0.0.22:provider/internal/context.go hashFile,
  compared in provider/internal/image.go Diff).  A checkout's modes follow its umask, so the files
  of the context are set to the modes git records (0644, or 0755 for executables) before hashing,
  and the tag covers the same path, mode and bytes, so a change the provider sees is a new tag.
"""

from __future__ import annotations

import hashlib
import json
import stat
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


def normalize_modes(context: Path) -> None:
    """Give the context's files the modes git checks out under umask 022: 0755 for files git
    records as executable, 0644 for the rest (group or other write bits come from the umask)."""
    for path in context_files(context):
        mode = path.stat().st_mode & 0o777
        canonical = 0o755 if mode & 0o100 else 0o644
        if mode != canonical:
            try:
                path.chmod(canonical)
            except OSError as error:
                raise RuntimeError(
                    f"{path}: mode {mode:o} differs from git's {canonical:o} and cannot be "
                    f"changed ({error.strerror}); the image's build context hash would depend on "
                    f"this checkout: run `chmod {canonical:o} {path}` as its owner"
                ) from None


def content_tag(context: Path) -> str:
    """`src-` and a digest of each file's name, mode and bytes (what the provider hashes)."""
    digest = hashlib.sha256()
    for path in context_files(context):
        mode = stat.filemode(path.stat().st_mode)
        digest.update(path.name.encode() + b"\0" + mode.encode() + b"\0" + path.read_bytes())
        digest.update(b"\0")
    return f"src-{digest.hexdigest()[:16]}"


def project_path(path: Path) -> str:
    """`path` relative to the project directory, where Pulumi runs the program and providers."""
    return path.relative_to(ROOT).as_posix()


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
        normalize_modes(context)
        image = docker_build.Image(
            f"{name}-image",
            context=docker_build.BuildContextArgs(location=project_path(context)),
            dockerfile=docker_build.DockerfileArgs(location=project_path(context / "Dockerfile")),
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
