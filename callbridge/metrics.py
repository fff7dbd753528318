"""Prometheus metrics: what a person running callbridge watches (served at /metrics)."""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, multiprocess

SHARED = "PROMETHEUS_MULTIPROC_DIR"  # where `serve --workers N` has every worker keep its figures

# applied, duplicate, failed (journaled for replay), rejected (not a valid command)
REQUESTS = Counter("callbridge_pbx_requests_total", "PBX event requests by outcome", ["outcome"])
EVENTS = Counter("callbridge_call_events_total", "call events applied")
LOOKUPS = Counter("callbridge_lookups_total", "caller lookups by result", ["result"])  # known, unknown, deadline
LOOKUP_SECONDS = Histogram(
    "callbridge_lookup_seconds", "caller lookup time", buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.3, 1)
)
RUN_ALONE = Counter(
    "callbridge_pbx_requests_run_alone_total", "PBX event requests run again alone: the commit they shared failed"
)
FAILURES = Counter("callbridge_failures_total", "things that failed and are shown on the call", ["kind"])
OUTBOX = Counter(
    "callbridge_outbox_attempts_total", "attempts at requests to PBXs by action and outcome", ["action", "outcome"]
)
WEBHOOKS = Counter("callbridge_webhook_responses_total", "webhook receivers' answers by status class", ["status"])


def exposition() -> bytes:
    """The figures as Prometheus text: every worker's summed when there are several (a scrape reaches one of
    them, which would show only its own), else this process's."""
    if SHARED not in os.environ:
        return generate_latest()
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return generate_latest(registry)
