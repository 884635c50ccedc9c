"""The wire messages, and how a receiver parses and authenticates them (decisions 1, 8, 9, 10)."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from adapter.consumers.receiver import InvalidMessageError, check_origin, parse_event
from adapter.domain import CourseRef, EnrollmentKey, EnrollmentState, PersonalData, Status
from adapter.messages import (
    CourseSyncRequested,
    EnrollmentChanged,
    ParticipantModel,
    course_sync_requested,
    enrollment_changed,
    enrollment_state,
    sender,
)

COURSE = CourseRef("vhs-sr", "25-64643")
KEY = EnrollmentKey("vhs-ka", 4711, COURSE)
NOW = datetime(2025, 9, 18, 10, 30, tzinfo=UTC)
STATE = EnrollmentState(
    KEY,
    Status.WAITLISTED,
    date(2025, 9, 18),
    PersonalData("Nowak", "Jan", "jan.nowak@example.org", "0721 555 0101"),
    waitlisted_since=datetime(2025, 9, 18, 10, 0, tzinfo=UTC),
    waitlisted_by_admin=True,
)
USERS: dict[str, str | None] = {"vhs-sr": "sr-user", "vhs-ka": "ka-user", "vhs-hof": None}


def event(state: EnrollmentState = STATE, version: int = 3) -> EnrollmentChanged:
    return enrollment_changed(state, version=version, event_id="e-1", time=NOW)


def body(state: EnrollmentState = STATE) -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(event(state).model_dump_json())
    return parsed


def reason_for(raw: bytes) -> InvalidMessageError:
    with pytest.raises(InvalidMessageError) as raised:
        parse_event(raw)
    return raised.value


def test_a_state_survives_the_trip_over_the_wire() -> None:
    """State → event → JSON bytes → parsed event → state gives the same state and version."""
    parsed = parse_event(event().model_dump_json().encode())
    assert isinstance(parsed, EnrollmentChanged)
    assert enrollment_state(parsed.data) == STATE
    assert parsed.data.version == 3


def test_an_event_is_a_cloudevent_naming_its_origin_and_subject() -> None:
    """Envelope: CloudEvents 1.0, source `vhs-sync/<origin>`, subject master/course/participant."""
    data = body()
    assert data["specversion"] == "1.0"
    assert data["type"] == "org.vhs-sync.enrollment.changed.v1"
    assert data["source"] == "vhs-sync/vhs-ka"
    assert data["subject"] == "vhs-sr/25-64643/4711"
    assert data["schemaversion"] == 1
    assert data["datacontenttype"] == "application/json"
    assert data["id"] == "e-1"


def test_an_anonymised_event_carries_no_participant() -> None:
    """The anonymised event has no participant and none of the personal values anywhere."""
    anonymised = event(STATE.anonymised())
    assert anonymised.data.participant is None
    raw = anonymised.model_dump_json()
    for value in ("Nowak", "Jan", "jan.nowak@example.org", "0721 555 0101"):
        assert value not in raw
    parsed = parse_event(raw.encode())
    assert isinstance(parsed, EnrollmentChanged)
    assert enrollment_state(parsed.data) == STATE.anonymised()


def test_a_sync_request_survives_the_trip_over_the_wire() -> None:
    """A course sync request parses back with who asks and which course (V1)."""
    request = course_sync_requested(COURSE, requested_by="vhs-hof", event_id="r-1", time=NOW)
    parsed = parse_event(request.model_dump_json().encode())
    assert isinstance(parsed, CourseSyncRequested)
    assert (parsed.data.requested_by, parsed.data.course.number) == ("vhs-hof", "25-64643")
    assert sender(parsed) == "vhs-hof"


def test_the_participant_model_refuses_any_other_personal_field() -> None:
    """Even a faulty producer cannot put an IBAN or a birthday into the wire model (V5)."""
    with pytest.raises(ValidationError):
        ParticipantModel.model_validate({"last_name": "Nowak", "first_name": "Jan", "iban": "DE1"})
    with pytest.raises(ValidationError):
        ParticipantModel.model_validate(
            {"last_name": "Nowak", "first_name": "Jan", "birthday": "1980-01-01"}
        )


@pytest.mark.parametrize("raw", [b"{not json", b"", b'{"id": "e-1",', b"\xff\xfe"])
def test_invalid_json_is_rejected_as_invalid_json(raw: bytes) -> None:
    """Bytes that are not JSON are dead-lettered as `invalid_json`."""
    assert reason_for(raw).reason == "invalid_json"


@pytest.mark.parametrize(
    ("change", "where"),
    [
        (lambda d: d.pop("source"), "source"),
        (lambda d: d["data"].update(status="X"), "status"),
        (lambda d: d["data"].update(version=0), "version"),
        (lambda d: d["data"].update(participant_number="abc"), "participant_number"),
        (lambda d: d["data"].update(origin_school="VHS KA"), "origin_school"),
        (lambda d: d["data"]["participant"].update(iban="DE89370400440532013000"), "iban"),
        (lambda d: d.update(schemaversion=2), "schemaversion"),
        (lambda d: d.update(specversion="0.3"), "specversion"),
    ],
)
def test_a_schema_violation_is_rejected_naming_the_field(change: Any, where: str) -> None:
    """Valid JSON that breaks the contract is a `schema_violation` whose detail names the field."""
    data = body()
    change(data)
    error = reason_for(json.dumps(data).encode())
    assert error.reason == "schema_violation"
    assert where in error.detail


def test_a_json_value_that_is_not_an_object_is_a_schema_violation() -> None:
    """A JSON array or string is valid JSON but no event."""
    assert reason_for(b"[]").reason == "schema_violation"
    assert reason_for(b'"hello"').reason == "schema_violation"


def test_an_unknown_event_type_is_rejected_naming_the_type() -> None:
    """An event type this network does not know is a `schema_violation` that names the type."""
    data = body()
    data["type"] = "org.vhs-sync.enrollment.deleted.v1"
    error = reason_for(json.dumps(data).encode())
    assert error.reason == "schema_violation"
    assert "org.vhs-sync.enrollment.deleted.v1" in error.detail


def test_the_rejection_detail_never_echoes_personal_data() -> None:
    """The detail goes into DLQ headers and logs, so it names the field, never the value."""
    data = body()
    data["data"]["participant"]["main_email"] = "jan.nowak." * 30 + "@example.org"
    error = reason_for(json.dumps(data).encode())
    assert error.reason == "schema_violation"
    assert "main_email" in error.detail
    assert "jan.nowak" not in error.detail


def test_an_event_from_its_own_broker_user_is_accepted() -> None:
    """The origin school's event published by its own broker user passes."""
    check_origin(event(), "ka-user", USERS)


def test_a_school_without_a_configured_broker_user_is_not_checked() -> None:
    """A peer configured without `broker_user` is accepted from whichever user published it."""
    hof = event(EnrollmentState(EnrollmentKey("vhs-hof", 3, COURSE), Status.REGISTERED, None, None))
    check_origin(hof, "anyone", USERS)
    check_origin(hof, None, USERS)


@pytest.mark.parametrize(
    ("user_id", "users", "update", "reason"),
    [
        ("sr-user", USERS, {}, "origin_not_authenticated"),  # the master posing as vhs-ka
        (None, USERS, {}, "origin_not_authenticated"),  # no user_id at all
        ("ka-user", USERS, {"source": "vhs-sync/vhs-hof"}, "origin_mismatch"),
        ("ka-user", {"vhs-sr": "sr-user"}, {}, "unknown_school"),
    ],
)
def test_an_event_not_from_its_claimed_origin_is_rejected(
    user_id: str | None, users: dict[str, str | None], update: dict[str, str], reason: str
) -> None:
    """A forged origin, an unauthenticated user or a school outside the network is rejected."""
    forged = event().model_copy(update=update)
    with pytest.raises(InvalidMessageError) as raised:
        check_origin(forged, user_id, users)
    assert raised.value.reason == reason


def test_an_event_time_without_offset_is_a_schema_violation() -> None:
    """CloudEvents `time` is RFC 3339 (`format: date-time`), which requires an offset; a naive
    time is refused at the edge instead of failing later in the receiver."""
    data = body()
    data["time"] = "2025-09-18T10:30:00"
    assert reason_for(json.dumps(data).encode()).reason == "schema_violation"
