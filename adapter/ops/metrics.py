"""Prometheus metrics, labelled by school (one process may run several in the demo)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, start_http_server

captured = Counter(
    "vhs_sync_enrollments_captured_total", "Own enrollment states written to the outbox", ["school"]
)
hard_deletes = Counter(
    "vhs_sync_hard_deletes_total",
    "Own enrollments found deleted and published as cancelled",
    ["school"],
)
foreign_edits = Counter(
    "vhs_sync_foreign_edits_total", "Foreign enrollments found edited locally", ["school"]
)
published = Counter(
    "vhs_sync_messages_published_total", "Messages confirmed by the broker", ["school"]
)
publish_failures = Counter(
    "vhs_sync_publish_failures_total",
    "Publishes not confirmed; they stay in the outbox",
    ["school", "reason"],
)
unheard = Counter(
    "vhs_sync_messages_unheard_total",
    "Messages no queue took where that is normal (no subscriber yet); settled, not retried",
    ["school"],
)
outbox_pending = Gauge("vhs_sync_outbox_pending", "Messages waiting in the outbox", ["school"])
received = Counter(
    "vhs_sync_events_received_total",
    "Events taken from the queue, by what became of them",
    ["school", "result"],
)
dead_lettered = Counter(
    "vhs_sync_messages_dead_lettered_total",
    "Messages sent to the dead-letter queue",
    ["school", "reason"],
)
apply_lag = Histogram(
    "vhs_sync_apply_lag_seconds",
    "From the event's capture at its origin to its application here",
    ["school"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
apply_retries = Counter(
    "vhs_sync_apply_retries_total", "Batches retried after a transient failure", ["school"]
)

drift = Gauge(
    "vhs_sync_drift",
    "What the last reconciliation found: enrollments missing, stale, extra or ahead here, "
    "members that did not answer, and local actions that break sync, by kind",
    ["school", "kind"],
)
DRIFT_KINDS = (
    "missing",
    "stale",
    "extra",
    "ahead",
    "unanswered",
    "foreign_edited",
    "foreign_deleted",
    "participant_merged",
    "course_renumbered",
)


def serve(host: str, port: int) -> None:
    """Expose `/metrics` over HTTP for Prometheus."""
    start_http_server(port, addr=host)


def start_series(school: str) -> None:
    """Show every series of a school from the start, at zero, so dashboards see it at once."""
    outbox_pending.labels(school).set(0)
    for counter in (captured, hard_deletes, foreign_edits, published, unheard, apply_retries):
        counter.labels(school)
    apply_lag.labels(school)
    for kind in DRIFT_KINDS:
        drift.labels(school, kind).set(0)
