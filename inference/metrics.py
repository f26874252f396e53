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
# The status counted for a request whose client went away before its batch started (nginx's
# "client closed request"); it is never sent.
CLIENT_GONE = 499


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
        self.shed = Counter(
            "inference_requests_shed",
            "Requests answered 503 because they could not start within the queue budget "
            "(--max-queue-ms); also counted in inference_requests_total.",
            ["route"],
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "inference_batch_size",
            "Instances per model call.",
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.queued = Gauge(
            "inference_queued_instances",
            "Instances waiting for a batch.",
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

        # The labelled children by (route, status), looked up once: `labels()` builds and
        # checks the label tuple under a lock on every call, a cost on every request.
        self._children: dict[tuple[str, int], tuple[Counter, Histogram]] = {}
        # The shed counter's children, made for every prediction route now: a series that first
        # appears at its first shed has no earlier sample, so `rate()` misses that shed.
        self._shed = {route: self.shed.labels(route) for route in PREDICTION_ROUTES}

    def observe(self, route: str, status: int, seconds: float) -> None:
        children = self._children.get((route, status))
        if children is None:
            labels = (route, str(status))
            children = (self.requests.labels(*labels), self.latency.labels(*labels))
            self._children[(route, status)] = children
        children[0].inc()
        children[1].observe(seconds)

    def count_shed(self, route: str) -> None:
        child = self._shed.get(route)
        if child is None:
            child = self._shed[route] = self.shed.labels(route)
        child.inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
