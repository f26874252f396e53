"""Served models: TF Serving for each, and the inference API beside it."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from infra.settings.base import (
    ConfigProblem,
    DnsLabel,
    Quantity,
    SettingsModel,
    quantity_value,
)
from infra.settings.workloads import PinnedImage


class Replicas(SettingsModel):
    min: Annotated[int, Field(ge=1)] = Field(default=2, description="Fewest replicas (HPA).")
    max: Annotated[int, Field(ge=1)] = Field(default=6, description="Most replicas (HPA).")

    @model_validator(mode="after")
    def _check(self) -> Replicas:
        if self.min > self.max:
            raise ConfigProblem(("min",), f"min {self.min} is larger than max {self.max}")
        return self


class ServerBatching(SettingsModel):
    max_batch_size: Annotated[int, Field(ge=1)] = Field(
        default=64, description="TF Serving max_batch_size."
    )
    batch_timeout_micros: Annotated[int, Field(ge=0)] = Field(
        default=2000, description="How long a batch waits to fill."
    )
    num_batch_threads: Annotated[int, Field(ge=1)] | None = Field(
        default=None,
        description="Batches run at once. Default: the CPU cores the server may use (its "
        "`cpuLimit`, rounded up), as TF Serving's batching guide advises.",
    )
    max_enqueued_batches: Annotated[int, Field(ge=1)] | None = Field(
        default=None,
        description="Queue bound, in batches: a request that would queue beyond it is refused "
        "with UNAVAILABLE (HTTP 503) at once. Default: `numBatchThreads`, so a request waits at "
        "most about one batch's run (plus `batchTimeoutMicros`).",
    )


def _check_cpu_limit(request: str, limit: str) -> None:
    if quantity_value(limit) < quantity_value(request):
        raise ConfigProblem(
            ("cpuLimit",), f"{limit} is below the cpu request {request}; raise it to at least that"
        )


class InferenceApiSettings(SettingsModel):
    enabled: bool = Field(default=True, description="Run the inference API for this model.")
    replicas: Replicas = Field(default_factory=Replicas, description="Replica range.")
    max_batch_size: Annotated[int, Field(ge=1)] = Field(
        default=32, description="Dynamic batching bound (1 turns batching off)."
    )
    batch_timeout_ms: Annotated[float, Field(ge=0)] = Field(
        default=5.0, description="How long a batch waits to fill."
    )
    max_queue_ms: Annotated[float, Field(gt=0)] = Field(
        default=50.0,
        description="Longest a prediction may wait for its batch: one that cannot start within "
        "it is answered 503 with Retry-After at once (`--max-queue-ms`).",
    )
    cpu: Quantity = Field(default="500m", description="cpu request per replica.")
    cpu_limit: Quantity = Field(
        default="1", description="cpu limit per replica (room to burst; at least `cpu`)."
    )
    memory: Quantity = Field(default="1Gi", description="Memory request and limit per replica.")

    @model_validator(mode="after")
    def _check(self) -> InferenceApiSettings:
        _check_cpu_limit(self.cpu, self.cpu_limit)
        return self


class ServedModelSettings(SettingsModel):
    name: DnsLabel = Field(description="Model name (TF Serving's and the URL's).")
    team: DnsLabel = Field(description="The team whose training jobs export the model.")
    job: DnsLabel | None = Field(
        default=None, description="The exporting job's name, if not the model name."
    )
    pool: str = Field(
        default="system", description="Node pool: `system` serves on CPU, a GPU pool on a GPU."
    )
    replicas: Replicas = Field(default_factory=Replicas, description="TF Serving replica range.")
    cpu: Quantity = Field(default="500m", description="cpu request per TF Serving replica.")
    cpu_limit: Quantity = Field(
        default="2", description="cpu limit per TF Serving replica (room to burst; at least `cpu`)."
    )
    memory: Quantity = Field(default="1Gi", description="Memory request per TF Serving replica.")
    memory_limit: Quantity = Field(default="2Gi", description="Memory limit per replica.")
    batching: ServerBatching = Field(
        default_factory=ServerBatching, description="TF Serving batching."
    )
    exposure: Literal["cluster", "internalLoadBalancer"] = Field(
        default="cluster",
        description="`cluster` (ClusterIP only) or `internalLoadBalancer` (an internal NLB via the "
        "AWS Load Balancer Controller, which AWS stacks then install); never public.",
    )
    inference_api: InferenceApiSettings = Field(
        default_factory=InferenceApiSettings, description="The inference API beside TF Serving."
    )
    await_ready: bool = Field(
        default=False,
        description="Have `pulumi up` wait until the model's servers are Ready (a version loaded) "
        "and fail after 10 minutes otherwise. Off: a new stack has no version until its training "
        "job exports one, and the servers wait for it unready; turn on once a version exists.",
    )

    @model_validator(mode="after")
    def _check(self) -> ServedModelSettings:
        _check_cpu_limit(self.cpu, self.cpu_limit)
        return self

    @property
    def export_job(self) -> str:
        return self.job or self.name


class ServingSettings(SettingsModel):
    enabled: bool = Field(default=True, description="Create the serving namespace and models.")
    models: list[ServedModelSettings] = Field(default_factory=list, description="Served models.")
    inference_image: PinnedImage | None = Field(
        default=None, description="The inference API image (pinned), unless `buildInferenceImage`."
    )
    build_inference_image: bool = Field(
        default=False, description="Build inference/ and push it to this stack's ECR (AWS stacks)."
    )
