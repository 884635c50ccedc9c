"""Prometheus metrics, labelled by school (one process may run several in the demo).

Every label besides `school` takes one of a fixed set of values (`RECEIVED_RESULTS`, ...),
and every series of a school exists from its start (`start_series`), at zero, so that a
dashboard or an alert on `rate(...)` sees it before the first increment. `docs/operations.md`
describes each metric; a test keeps that list complete.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, Info

from adapter import __version__

# What became of an enrollment event taken from the queue (consumers/apply.py `Outcome`).
RECEIVED_RESULTS = ("applied", "unchanged", "stale", "own", "rejected", "failed")
# The other kinds of event the receiver handles.
CONTROL_TYPES = (
    "CourseSyncRequested",
    "CourseSettingsChanged",
    "PlaceOffered",
    "PlaceRequested",
    "PlaceAnswered",
    "CourseOffered",
    "CourseLeft",
    "DigestRequested",
    "DigestAnswered",
)
# Why a message was dead-lettered (the `x-vhs-sync-reason` header).
DEAD_LETTER_REASONS = (
    "invalid_json",
    "schema_violation",
    "message_too_large",
    "unknown_school",
    "unknown_course",
    "origin_mismatch",
    "origin_not_authenticated",
    "own_origin_not_authenticated",
    "route_mismatch",
    "version_in_future",
    "invalid_settings",
    "rejected",
    "apply_failed",
    "handler_failed",
    "other",
)
# Why a publish was not confirmed (publishers/relay.py `_reason`).
PUBLISH_FAILURE_REASONS = ("unroutable", "nacked", "timeout", "connection")


def known(value: str, values: tuple[str, ...]) -> str:
    """`value` if it is one of `values`, else `other`: a label never grows a new value."""
    return value if value in values else "other"


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
capture_failures = Counter(
    "vhs_sync_capture_failures_total",
    "Polls and scans of the admin DB that failed (the daemon tries again)",
    ["school"],
)
last_poll_success = Gauge(
    "vhs_sync_last_poll_success_timestamp_seconds",
    "When the last poll of the admin DB succeeded (Unix time; 0 before the first)",
    ["school"],
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
    "Enrollment events taken from the queue, by what became of them",
    ["school", "result"],
)
control_messages = Counter(
    "vhs_sync_control_messages_total",
    "Other events taken from the queue and handled, by type",
    ["school", "type"],
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
broker_connected = Gauge(
    "vhs_sync_broker_connected", "1 while the connection to the broker is up", ["school"]
)
consumer_active = Gauge(
    "vhs_sync_consumer_active", "1 while the daemon consumes its school's queue", ["school"]
)
admin_db_up = Gauge(
    "vhs_sync_admin_db_up", "1 when the last ping of the admin DB succeeded", ["school"]
)
state_db_up = Gauge(
    "vhs_sync_state_db_up", "1 when the last heartbeat write to the state DB succeeded", ["school"]
)
queue_depth = Gauge(
    "vhs_sync_queue_depth", "Messages waiting in the school's queue (sampled)", ["school"]
)
dlq_depth = Gauge(
    "vhs_sync_dlq_depth", "Dead letters in the school's dead-letter queue (sampled)", ["school"]
)
ready = Gauge("vhs_sync_ready", "1 while every check of /readyz passes", ["school"])
build = Info("vhs_sync_build", "The running release of vhs-sync")
build.info({"version": __version__})

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


def start_series(school: str) -> None:
    """Show every series of a school from the start, at zero, so dashboards see it at once."""
    for gauge in (
        outbox_pending,
        last_poll_success,
        broker_connected,
        consumer_active,
        admin_db_up,
        state_db_up,
        queue_depth,
        dlq_depth,
        ready,
    ):
        gauge.labels(school).set(0)
    for counter in (
        captured,
        hard_deletes,
        foreign_edits,
        capture_failures,
        published,
        unheard,
        apply_retries,
    ):
        counter.labels(school)
    for labelled, values in (
        (received, RECEIVED_RESULTS),
        (control_messages, CONTROL_TYPES),
        (dead_lettered, DEAD_LETTER_REASONS),
        (publish_failures, PUBLISH_FAILURE_REASONS),
    ):
        for value in values:
            labelled.labels(school, value)
    apply_lag.labels(school)
    for kind in DRIFT_KINDS:
        drift.labels(school, kind).set(0)
