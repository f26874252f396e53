"""Prometheus metrics of the inference API, on a registry of its own."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

# Request latency: mostly a few milliseconds; batching timeouts add up to tens.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)

# The routes that answer predictions, whose requests the error-rate alert divides
# (infra/alerts.py).  The probes (/healthz, /readyz) and /metrics are not counted at all.
PREDICT = "predict"
DIGIT = "digit"
PREDICTION_ROUTES = (PREDICT, DIGIT)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "inference_requests",
            "Requests served, by route and HTTP status.",
            ["route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "inference_request_duration_seconds",
            "Time to answer a request, by route and HTTP status.",
            ["route", "status"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "inference_batch_size",
            "Instances per model call.",
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.model_version = Gauge(
            "inference_model_version",
            "The model version in service (0 until one is loaded).",
            registry=self.registry,
        )
        self.load_failures = Counter(
            "inference_model_load_failures",
            "Model versions rejected because they did not load or had the wrong signature.",
            registry=self.registry,
        )

    def observe(self, route: str, status: int, seconds: float) -> None:
        self.requests.labels(route, str(status)).inc()
        self.latency.labels(route, str(status)).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
