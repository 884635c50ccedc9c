"""Strict and bounded wire input (issue 7, item 11): what a receiver refuses to read, each
refusal a dead letter with its reason."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from typing import Any

import pytest

from adapter.consumers.receiver import (
    InvalidMessageError,
    Receiver,
    check_version,
    parse_event,
    parse_message,
)
from adapter.domain import CourseRef, EnrollmentKey, EnrollmentState, PersonalData, Status
from adapter.domain.capacity import CourseSettings
from adapter.messages import (
    BATCH_CONTENT_TYPE,
    EVENT_CONTENT_TYPE,
    MAX_MESSAGE_BYTES,
    course_settings_changed,
    course_sync_requested,
    enrollment_changed,
)
from tests.fakes import DeadLetters, Message

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
NOW_US = int(NOW.timestamp() * 1_000_000)
HOUR_US = 3600 * 1_000_000
COURSE = CourseRef("vhs-sr", "26-4711")
USERS: dict[str, str | None] = {"vhs-sr": "sr-user", "vhs-ka": "ka-user"}


def event_json(origin: str = "vhs-ka", version: int = NOW_US, number: int = 12) -> dict[str, Any]:
    state = EnrollmentState(
        EnrollmentKey(origin, number, COURSE), Status.REGISTERED, date(2026, 11, 1), None
    )
    event = enrollment_changed(state, version=version, event_id=f"e-{number}", time=NOW)
    parsed: dict[str, Any] = json.loads(event.model_dump_json())
    return parsed


def refusal(data: dict[str, Any]) -> InvalidMessageError:
    with pytest.raises(InvalidMessageError) as raised:
        parse_event(json.dumps(data).encode())
    return raised.value


@pytest.mark.parametrize(
    ("field_name", "value"),
    [("participant_number", "12"), ("version", "1764000000000000"), ("waitlisted_by_admin", 1)],
)
def test_a_json_string_or_number_of_the_wrong_type_is_refused(field_name: str, value: Any) -> None:
    """Strict types: the string "12" is no participant number, a 1 no boolean."""
    data = event_json()
    data["data"][field_name] = value
    error = refusal(data)
    assert error.reason == "schema_violation"
    assert field_name in error.detail


def test_dates_and_times_still_parse_from_json_strings() -> None:
    """Strictness keeps JSON's only way to write a date or a time: an ISO string."""
    data = event_json()
    data["data"]["registered_on"] = "2026-11-01"
    data["data"]["waitlisted_since"] = "2026-11-01T08:00:00+00:00"
    data["data"]["status"] = "W"
    parsed = parse_event(json.dumps(data).encode())
    assert parsed.time == NOW
    assert parsed.data.registered_on == date(2026, 11, 1)  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("data", "version"), 2**63),
        (("data", "participant_number"), 2**31),
        (("data", "version"), 10**30),
    ],
)
def test_integers_the_state_db_cannot_store_are_refused(path: tuple[str, str], value: int) -> None:
    """A version past BIGINT or a participant number past INTEGER never passes validation."""
    data = event_json()
    data[path[0]][path[1]] = value
    assert refusal(data).reason == "schema_violation"


def test_settings_counts_are_bounded() -> None:
    """A course-settings count past INTEGER is a schema violation too."""
    settings = course_settings_changed(
        COURSE, CourseSettings(max_participants=10), version=NOW_US, event_id="c-1", time=NOW
    )
    data = json.loads(settings.model_dump_json())
    data["data"]["settings"]["max_per_school"] = 2**31
    assert refusal(data).reason == "schema_violation"


def test_the_largest_storable_version_parses() -> None:
    """The bounds refuse nothing the state DB can hold."""
    assert parse_event(json.dumps(event_json(version=2**63 - 1)).encode()).data.version == (  # type: ignore[union-attr]
        2**63 - 1
    )


def test_a_body_over_the_limit_is_refused_before_it_is_parsed() -> None:
    """One byte over the limit is `message_too_large`, whatever the bytes are (here not even
    JSON), in structured and in batch mode."""
    body = b"{" * (MAX_MESSAGE_BYTES + 1)
    for content_type in (EVENT_CONTENT_TYPE, BATCH_CONTENT_TYPE):
        with pytest.raises(InvalidMessageError) as raised:
            parse_message(body, content_type)
        assert raised.value.reason == "message_too_large"


def test_a_batch_of_1000_of_the_longest_events_fits_the_default_limit() -> None:
    """`events_per_message` allows 1000 events; the default limit reads a batch of 1000 whose
    every field is as long as the schema allows, in 4-byte characters."""
    long = "𝄞"
    personal = PersonalData(long * 100, long * 100, long * 254, long * 50)
    state = EnrollmentState(
        EnrollmentKey("a" * 63, 2**31 - 1, CourseRef("b" * 63, "c" * 40)),
        Status.WAITLISTED,
        date(2026, 11, 1),
        personal,
        waitlisted_since=NOW,
        waitlisted_by_admin=True,
    )
    one = enrollment_changed(state, version=2**63 - 1, event_id="i" * 100, time=NOW)
    body = b"[" + b",".join([one.model_dump_json().encode()] * 1000) + b"]"
    assert len(body) <= MAX_MESSAGE_BYTES
    assert len(parse_message(body, BATCH_CONTENT_TYPE).events) == 1000


def test_a_version_more_than_an_hour_ahead_is_refused() -> None:
    """Versions are microseconds of the origin's clock: an hour ahead passes, one microsecond
    more is `version_in_future`, for enrollments and course settings alike."""
    settings = course_settings_changed(
        COURSE, CourseSettings(max_participants=10), version=NOW_US, event_id="c-1", time=NOW
    )
    for event in (
        parse_event(json.dumps(event_json(version=NOW_US + HOUR_US)).encode()),
        settings.model_copy(
            update={"data": settings.data.model_copy(update={"version": NOW_US + HOUR_US})}
        ),
    ):
        check_version(event, NOW)
        ahead = event.model_copy(
            update={"data": event.data.model_copy(update={"version": NOW_US + HOUR_US + 1})}  # type: ignore[union-attr]
        )
        with pytest.raises(InvalidMessageError) as raised:
            check_version(ahead, NOW)
        assert raised.value.reason == "version_in_future"
    check_version(course_sync_requested(COURSE, requested_by="vhs-ka", event_id="r", time=NOW), NOW)


# -- the receiver: each refusal is a dead letter with its reason ---------------------------


class NoApplier:
    """None of these events may reach the admin DB."""

    def apply_enrollment_changes(self, events: Any, now: Any) -> Any:
        raise AssertionError(f"applied {events}")


def receiver(dead_letters: DeadLetters) -> Receiver:
    return Receiver(
        None,  # type: ignore[arg-type]  # handle_batch does not consume
        dead_letters,  # type: ignore[arg-type]
        NoApplier(),  # type: ignore[arg-type]
        school="vhs-sr",
        broker_users=USERS,
        handlers={},
        own_user="sr-user",
        clock=lambda: NOW,
    )


async def settle(message: Message) -> list[str]:
    """The reasons of the dead letters one message gives, once it is settled."""
    dead_letters = DeadLetters()
    await receiver(dead_letters).handle_batch([message])  # type: ignore[list-item]
    assert message.acked
    return [letter.headers["x-vhs-sync-reason"] for letter in dead_letters.published]


async def test_an_event_in_the_receivers_own_name_from_another_user_is_dead_lettered() -> None:
    """A peer publishing an event that claims to come from the receiving school is a dead
    letter `own_origin_not_authenticated`, not acknowledged in silence."""
    forged = json.dumps(event_json(origin="vhs-sr")).encode()
    assert await settle(Message(forged, user_id="ka-user")) == ["own_origin_not_authenticated"]


async def test_an_own_event_from_the_own_user_is_passed_over() -> None:
    """The school's own event, back from its own broker user, is an echo: acknowledged,
    neither applied nor dead-lettered."""
    echo = json.dumps(event_json(origin="vhs-sr")).encode()
    assert await settle(Message(echo, user_id="sr-user")) == []


async def test_a_forged_own_event_in_a_batch_is_dead_lettered_alone() -> None:
    """Inside a batch from a peer, the event in the receiver's name goes to the DLQ alone."""
    body = json.dumps([event_json(origin="vhs-sr", number=1)]).encode()
    message = Message(body, user_id="ka-user", content_type=BATCH_CONTENT_TYPE)
    assert await settle(message) == ["own_origin_not_authenticated"]


async def test_a_version_from_the_future_is_dead_lettered() -> None:
    """A peer's event with a version two hours ahead is `version_in_future`, never applied."""
    ahead = json.dumps(event_json(version=NOW_US + 2 * HOUR_US)).encode()
    assert await settle(Message(ahead, user_id="ka-user")) == ["version_in_future"]


async def test_a_too_large_body_is_dead_lettered_unread() -> None:
    """A body over `max_message_bytes` is `message_too_large`."""
    data = event_json()
    data["subject"] = "x" * (MAX_MESSAGE_BYTES + 10)
    assert await settle(Message(json.dumps(data).encode(), user_id="ka-user")) == [
        "message_too_large"
    ]


async def test_a_string_participant_number_is_dead_lettered() -> None:
    """The string "12" as a participant number is a `schema_violation` dead letter."""
    data = event_json()
    data["data"]["participant_number"] = "12"
    assert await settle(Message(json.dumps(data).encode(), user_id="ka-user")) == [
        "schema_violation"
    ]


async def test_an_event_on_a_route_that_does_not_carry_its_type_is_dead_lettered() -> None:
    """Every school binds `off.*.*` and control routes of any course, whose keys a hostile
    school may publish: a sync request sent as an offer is `route_mismatch`, not answered."""
    request = course_sync_requested(COURSE, requested_by="vhs-ka", event_id="r", time=NOW)
    body = request.model_dump_json().encode()
    assert await settle(Message(body, user_id="ka-user", routing_key="off.vhs-ka.26-4711")) == [
        "route_mismatch"
    ]
    forged_state = json.dumps(event_json()).encode()
    assert await settle(
        Message(forged_state, user_id="ka-user", routing_key="ctl.vhs-sr.26-4711.vhs-ka")
    ) == ["route_mismatch"]
