"""Batch mode: how the relay packs due events into messages, and how a receiver reads them
back, each event judged on its own (DESIGN decisions 5 and 9)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, date, datetime

import pytest

from adapter.consumers.receiver import InvalidMessageError, parse_message
from adapter.domain import CourseRef, EnrollmentKey, EnrollmentState, Status
from adapter.mapping import routes
from adapter.messages import (
    BATCH_CONTENT_TYPE,
    EVENT_CONTENT_TYPE,
    EnrollmentChanged,
    course_sync_requested,
    enrollment_changed,
)
from adapter.publishers.relay import pack

COURSE = CourseRef("vhs-sr", "25-64901B")
OTHER_COURSE = CourseRef("vhs-sr", "25-64643")
NOW = datetime(2025, 9, 18, 10, 30, tzinfo=UTC)


@dataclass(frozen=True)
class Row:
    """An outbox row as the relay reads it."""

    id: int
    message_id: str
    routing_key: str
    body: bytes


def enrollment_body(number: int, course: CourseRef = COURSE, *, event_id: str = "") -> bytes:
    state = EnrollmentState(
        EnrollmentKey("vhs-ka", number, course), Status.REGISTERED, date(2025, 9, 18), None
    )
    event = enrollment_changed(state, version=1, event_id=event_id or f"e-{number}", time=NOW)
    return event.model_dump_json().encode()


def enrollment_rows(numbers: range, course: CourseRef = COURSE) -> list[Row]:
    return [
        Row(n, f"e-{n}", routes.anonymised(course, "vhs-ka"), enrollment_body(n, course))
        for n in numbers
    ]


def sync_request_row(row_id: int) -> Row:
    request = course_sync_requested(COURSE, requested_by="vhs-ka", event_id="r-1", time=NOW)
    return Row(row_id, "r-1", routes.control(COURSE, "vhs-ka"), request.model_dump_json().encode())


def test_due_states_of_one_route_travel_as_one_array_in_outbox_order() -> None:
    """Five due states of one course become one batch message: a JSON array of the stored
    events in the order they were captured, carrying all five rows."""
    rows = enrollment_rows(range(1, 6))
    [message] = pack(rows, max_events=100)
    assert message.content_type == BATCH_CONTENT_TYPE
    assert message.routing_key == routes.anonymised(COURSE, "vhs-ka")
    assert [row.id for row in message.rows] == [1, 2, 3, 4, 5]
    assert [event["id"] for event in json.loads(message.body)] == [f"e-{n}" for n in range(1, 6)]
    assert json.loads(message.body)[0] == json.loads(rows[0].body)


def test_a_batch_holds_at_most_the_configured_number_of_events() -> None:
    """250 due states with at most 100 a message travel as 100, 100 and 50."""
    messages = pack(enrollment_rows(range(1, 251)), max_events=100)
    assert [len(message.rows) for message in messages] == [100, 100, 50]
    assert sorted(row.id for message in messages for row in message.rows) == list(range(1, 251))


def test_each_route_gets_its_own_batches() -> None:
    """States of two courses, and the personal route next to the anonymised one, never share a
    message: each message goes to exactly the route of every event in it."""
    personal = [
        Row(100 + row.id, row.message_id, routes.personal(COURSE, "vhs-ka"), row.body)
        for row in enrollment_rows(range(1, 4))
    ]
    rows = [*enrollment_rows(range(1, 4)), *enrollment_rows(range(4, 6), OTHER_COURSE), *personal]
    messages = pack(rows, max_events=100)
    assert {message.routing_key: len(message.rows) for message in messages} == {
        routes.anonymised(COURSE, "vhs-ka"): 3,
        routes.anonymised(OTHER_COURSE, "vhs-ka"): 2,
        routes.personal(COURSE, "vhs-ka"): 3,
    }
    for message in messages:
        assert {row.routing_key for row in message.rows} == {message.routing_key}


def test_a_lone_state_and_every_other_event_travel_in_structured_mode() -> None:
    """One due state of a route, and a sync request, go as single events with their own ids:
    a quiet school's messages look as they always did."""
    rows = [*enrollment_rows(range(1, 2)), sync_request_row(2)]
    messages = pack(rows, max_events=100)
    assert [(m.content_type, m.message_id, m.body) for m in messages] == [
        (EVENT_CONTENT_TYPE, "r-1", rows[1].body),
        (EVENT_CONTENT_TYPE, "e-1", rows[0].body),
    ]


def test_one_event_per_message_turns_batching_off() -> None:
    """`events_per_message = 1`: every row is a message of its own."""
    messages = pack(enrollment_rows(range(1, 4)), max_events=1)
    assert [m.content_type for m in messages] == [EVENT_CONTENT_TYPE] * 3


def test_a_packed_batch_reads_back_as_the_events_that_went_in() -> None:
    """What the relay packs, the receiver parses into the same events, none rejected."""
    [message] = pack(enrollment_rows(range(1, 4)), max_events=100)
    parsed = parse_message(message.body, message.content_type)
    assert parsed.invalid == []
    assert [event.model_dump_json().encode() for event in parsed.events] == [
        row.body for row in message.rows
    ]


def test_a_bad_event_in_a_batch_is_rejected_alone() -> None:
    """A schema violation inside a batch rejects that event, with its own JSON and the reason;
    the events around it are still read."""
    bad = json.loads(enrollment_body(2))
    bad["data"]["status"] = "X"
    body = b"[" + b",".join([enrollment_body(1), json.dumps(bad).encode(), enrollment_body(3)])
    parsed = parse_message(body + b"]", BATCH_CONTENT_TYPE)
    assert [event.id for event in parsed.events] == ["e-1", "e-3"]
    [invalid] = parsed.invalid
    assert json.loads(invalid.body) == bad
    assert invalid.event_id == "e-2"
    assert invalid.error.reason == "schema_violation"
    assert "status" in invalid.error.detail


def test_a_batch_carries_enrollment_states_only() -> None:
    """Any other event inside a batch is refused as a schema violation naming its type."""
    request = course_sync_requested(COURSE, requested_by="vhs-ka", event_id="r-1", time=NOW)
    body = b"[" + enrollment_body(1) + b"," + request.model_dump_json().encode() + b"]"
    parsed = parse_message(body, BATCH_CONTENT_TYPE)
    assert [type(event) for event in parsed.events] == [EnrollmentChanged]
    [invalid] = parsed.invalid
    assert invalid.event_id == "r-1"
    assert invalid.error.reason == "schema_violation"
    assert "org.vhs-sync.course.sync-requested.v1" in invalid.error.detail


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"[{not json", "invalid_json"),
        (b'{"id": "e-1"}', "schema_violation"),
        (b'"hello"', "schema_violation"),
    ],
)
def test_a_batch_that_cannot_be_read_at_all_is_rejected_whole(body: bytes, reason: str) -> None:
    """Not JSON, or JSON that is not an array: the whole message is refused with its reason."""
    with pytest.raises(InvalidMessageError) as raised:
        parse_message(body, BATCH_CONTENT_TYPE)
    assert raised.value.reason == reason


def test_an_empty_batch_carries_nothing() -> None:
    """`[]` is a valid batch (CloudEvents JSON batch format) with no events and nothing bad."""
    parsed = parse_message(b"[]", BATCH_CONTENT_TYPE)
    assert (parsed.events, parsed.invalid) == ([], [])
