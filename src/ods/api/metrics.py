"""The server's Prometheus metrics, in a registry of each app's own (two apps in one process never mix).

Routes are labelled by their template (``/api/v1/datasets/{name}``), never the raw path, so a scan of
made-up names cannot grow the label set; a path no route matches counts as ``unmatched``.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
UNMATCHED = "unmatched"
# From a cached health probe (~1 ms) to a generated answer on a CPU (tens of seconds).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


class ApiMetrics:
    """Requests, latency and errors per route, and the tokens the models read and wrote."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "ods_api_requests",
            "HTTP requests answered, by method, route template and status code.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "ods_api_request_duration_seconds",
            "Time from a request's arrival to the end of its answer (a stream's last chunk), by route.",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.errors = Counter(
            "ods_api_errors",
            "Requests answered with an error (status 400 and above), by route and status code.",
            ["route", "status"],
            registry=self.registry,
        )
        self.tokens = Counter(
            "ods_api_tokens",
            "Model tokens spent answering requests, by model and kind (prompt or completion).",
            ["model", "kind"],
            registry=self.registry,
        )

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route).observe(seconds)

    def count_error(self, route: str, status: int) -> None:
        self.errors.labels(route, str(status)).inc()

    def count_tokens(self, model: str, prompt: int, completion: int) -> None:
        if prompt:
            self.tokens.labels(model, "prompt").inc(prompt)
        if completion:
            self.tokens.labels(model, "completion").inc(completion)

    def exposition(self) -> bytes:
        """Every metric in the Prometheus text format."""
        return generate_latest(self.registry)
