"""The MNIST pipeline for Kubeflow Pipelines v2: prepare-data -> train -> evaluate -> promote.

    python -m training.pipeline --stack dev --team research --image REGISTRY/training:TAG \\
        --output build/mnist_pipeline.yaml

Compiles, with the `kfp` SDK, to the IR YAML that KFP runs (upload it in the KFP UI, or with
`kfp pipeline create -p mnist build/mnist_pipeline.yaml`).  Every step runs the training image
with the stack's `datasets` and `models` claims mounted; `train` gets a GPU from the stack's GPU
pool through the same scheduling contract as TFJobs.  `promote` copies the new version into the
directory TF Serving serves, `/models/<team>/<model>`, only when its test accuracy reaches
`threshold`.

Where the steps run: the platform installs standalone Pipelines, which is single-tenant.  Every
run's pods run in `kubeflow` (`infra.names.PIPELINE_RUNS`) as `pipeline-runner` (unless the run
names another account there), whichever team compiled or started it.  The claims they mount are
the ones the platform creates in `kubeflow`, bound to the same files as the teams' and serving's
(`infra/platform.py` `build_storage`; with `storage.mode: storageClass` every namespace has
volumes of its own, so there they are not shared).  A run therefore sees every team's data, and
the teams' quotas, network policies and workload identities do not apply to it; `--team` only
chooses the directories it writes.  Isolating teams' runs from each other takes multi-user
Pipelines, which comes with the full Kubeflow distribution (profiles), not with this platform.
"""

# No `from __future__ import annotations` here: kfp reads the component annotations as objects.
import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kfp import compiler, dsl, kubernetes

from training import devices

if TYPE_CHECKING:
    from infra.settings import Settings

DATA_DIR = "/data"
MODELS_DIR = "/models"
KERAS_MNIST_URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz"


def build_pipeline(
    *,
    image: str,
    team: str,
    datasets_claim: str,
    models_claim: str,
    gpu_resource: str,
    node_selector: dict[str, str],
    tolerations: list[dict[str, str]],
) -> Any:
    """The pipeline function for one team, bound to the stack's image, claims and GPU pool."""
    data_file = f"{DATA_DIR}/mnist.npz"
    candidates = f"{MODELS_DIR}/.candidates/{team}/{dsl.PIPELINE_JOB_ID_PLACEHOLDER}"

    @dsl.container_component
    def prepare_data(source: str) -> dsl.ContainerSpec:
        return dsl.ContainerSpec(
            image=image,
            command=["python", "-m", "training.prepare_data"],
            args=["--out", data_file, "--source", source],
        )

    @dsl.container_component
    def train(epochs: int) -> dsl.ContainerSpec:
        return dsl.ContainerSpec(
            image=image,
            command=["python", "-m", "training.train"],
            args=["--data", data_file, "--export-dir", candidates, "--epochs", epochs],
        )

    @dsl.container_component
    def evaluate(accuracy: dsl.OutputPath(float)) -> dsl.ContainerSpec:  # type: ignore[valid-type]
        return dsl.ContainerSpec(
            image=image,
            command=["python", "-m", "training.evaluate"],
            args=["--model-base", candidates, "--data", data_file, "--accuracy-out", accuracy],
        )

    @dsl.container_component
    def promote(accuracy: float, threshold: float, model: str) -> dsl.ContainerSpec:
        return dsl.ContainerSpec(
            image=image,
            command=["python", "-m", "training.promote"],
            args=[
                "--candidate-base",
                candidates,
                "--serving-base",
                dsl.ConcatPlaceholder([f"{MODELS_DIR}/{team}/", model]),
                "--accuracy",
                accuracy,
                "--threshold",
                threshold,
            ],
        )

    def on_volumes(task: Any) -> Any:
        kubernetes.mount_pvc(task, pvc_name=datasets_claim, mount_path=DATA_DIR)
        kubernetes.mount_pvc(task, pvc_name=models_claim, mount_path=MODELS_DIR)
        return task

    @dsl.pipeline(name="mnist", description="Stage MNIST, train, evaluate, promote if good enough.")
    def mnist(
        threshold: float = 0.97,
        epochs: int = 10,
        model: str = "mnist",
        source: str = KERAS_MNIST_URL,
    ) -> None:
        staged = on_volumes(prepare_data(source=source)).set_display_name("prepare-data")
        trained = on_volumes(train(epochs=epochs)).after(staged)
        trained.set_accelerator_type(gpu_resource).set_accelerator_limit(1)
        trained.set_env_variable(devices.EXPECTED_GPUS, "1")  # a GPU, or the step fails
        trained.set_cpu_request("2").set_memory_request("8Gi").set_memory_limit("8Gi")
        for key, value in node_selector.items():
            kubernetes.add_node_selector(trained, label_key=key, label_value=value)
        for toleration in tolerations:
            kubernetes.add_toleration(
                trained,
                key=toleration["key"],
                operator=toleration["operator"],
                value=toleration.get("value"),
                effect=toleration["effect"],
            )
        evaluated = on_volumes(evaluate()).after(trained)
        on_volumes(promote(accuracy=evaluated.output, threshold=threshold, model=model))

    return mnist


def compile_for_stack(stack: str, team: str, image: str, output: Path) -> Path:
    """Compile the pipeline with the stack's claims and its first GPU pool."""
    from harness.program import stack_settings  # noqa: PLC0415 - only the compile CLI needs it

    return compile_for_settings(stack_settings(stack), stack, team, image, output)


def compile_for_settings(
    settings: "Settings", stack: str, team: str, image: str, output: Path
) -> Path:
    """Compile the pipeline for `stack`'s parsed settings."""
    from infra import gpu_sharing  # noqa: PLC0415
    from infra.scheduling import placement  # noqa: PLC0415

    if team not in {t.name for t in settings.teams}:
        raise SystemExit(f"stack {stack} has no team {team!r}")
    if not settings.node_pools.gpu:
        raise SystemExit(f"stack {stack} has no GPU pool to train on")
    pool = settings.node_pools.gpu[0]
    where = placement(settings, pool.name)
    pipeline = build_pipeline(
        image=image,
        team=team,
        datasets_claim=settings.storage.datasets.name,
        models_claim=settings.storage.models.name,
        gpu_resource=gpu_sharing.resource_name(pool),
        node_selector=where.node_selector,
        tolerations=where.tolerations,
    )
    output.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(pipeline, package_path=str(output))
    return output


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Compile the MNIST pipeline to KFP IR YAML.")
    parser.add_argument("--stack", required=True)
    parser.add_argument("--team", required=True)
    parser.add_argument("--image", required=True, help="the training image, pinned")
    parser.add_argument("--output", type=Path, default=Path("build/mnist_pipeline.yaml"))
    args = parser.parse_args(argv)
    print(f"pipeline: wrote {compile_for_stack(args.stack, args.team, args.image, args.output)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
