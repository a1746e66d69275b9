"""Prometheus metrics every ingress shares (API, CLI, gateways), exposed by the API at ``GET /metrics``.

Metrics live on ``prometheus_client``'s default registry, so other areas may define their own next to
these and they appear on the same page. Label values are small fixed sets (actions, categories,
ingress names, error codes), never message content or numbers.
"""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Histogram, generate_latest

from skyshield.events import Verdict

MESSAGES_CHECKED = Counter(
    "skyshield_messages_checked_total",
    "Messages that got a verdict, by ingress, action and category.",
    ["ingress", "action", "category"],
)
CHECK_SECONDS = Histogram(
    "skyshield_check_batch_seconds",
    "Time to score one batch (engine only: analysis, model, detectors, policy).",
    ["ingress"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
STORE_SECONDS = Histogram(
    "skyshield_store_batch_seconds",
    "Time to store one batch of verdicts (one transaction).",
    ["ingress"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
BATCH_SIZE = Histogram(
    "skyshield_batch_size",
    "Messages per checked batch.",
    ["ingress"],
    buckets=(1, 2, 5, 10, 50, 100, 500, 1000, 5000, 10000),
)
REQUEST_SECONDS = Histogram(
    "skyshield_http_request_seconds",
    "HTTP request latency by route (parsing, scoring, storing, answering).",
    ["route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
ERRORS = Counter(
    "skyshield_errors_total",
    "Refused requests, items and input lines, by ingress and error code.",
    ["ingress", "code"],
)


def record_batch(ingress: str, verdicts: Sequence[Verdict], check_seconds: float) -> None:
    """Count a scored batch: its size, how long it took, and each verdict's action and category."""
    BATCH_SIZE.labels(ingress).observe(len(verdicts))
    CHECK_SECONDS.labels(ingress).observe(check_seconds)
    tally: dict[tuple[str, str], int] = {}
    for v in verdicts:
        key = (v.action.value, v.category.value)
        tally[key] = tally.get(key, 0) + 1
    for (action, category), n in tally.items():
        MESSAGES_CHECKED.labels(ingress, action, category).inc(n)


def record_error(ingress: str, code: str, n: int = 1) -> None:
    ERRORS.labels(ingress, code).inc(n)


def exposition() -> tuple[bytes, str]:
    """The Prometheus text page and its content type."""
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
