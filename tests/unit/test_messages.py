"""Parsing and authenticating what arrives (decisions 8 and 9)."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime

import pytest

from adapter.consumers.receiver import InvalidMessageError, check_origin, parse_event
from adapter.domain import CourseRef, EnrollmentKey, EnrollmentState, PersonalData, Status
from adapter.messages import EnrollmentChanged, enrollment_changed, enrollment_state

KEY = EnrollmentKey("vhs-ka", 4711, CourseRef("vhs-sr", "25-64643"))
STATE = EnrollmentState(
    KEY, Status.WAITLISTED, date(2025, 9, 18), PersonalData("Nowak", "Jan", "jan@example.org")
)
USERS = {"vhs-ka": "ka-user", "vhs-hof": None}


def event(state: EnrollmentState = STATE) -> EnrollmentChanged:
    return enrollment_changed(state, version=3, event_id=str(uuid.uuid4()), time=datetime.now(UTC))


def test_an_event_carries_the_state_there_and_back() -> None:
    """State → CloudEvent JSON → state is lossless; the anonymised one has no participant."""
    parsed = parse_event(event().model_dump_json().encode())
    assert isinstance(parsed, EnrollmentChanged)
    assert enrollment_state(parsed.data) == STATE
    assert (parsed.specversion, parsed.source, parsed.schemaversion) == (
        "1.0",
        "vhs-sync/vhs-ka",
        1,
    )
    assert '"participant":null' in event(STATE.anonymised()).model_dump_json()


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{not json", "invalid_json"),
        (b'{"specversion": "1.0"}', "schema_violation"),
        (b'{"type": "org.vhs-sync.unknown.v9"}', "schema_violation"),
    ],
)
def test_bad_input_is_named(body: bytes, reason: str) -> None:
    """Broken JSON and schema violations are told apart, with a detail."""
    with pytest.raises(InvalidMessageError) as raised:
        parse_event(body)
    assert raised.value.reason == reason
    assert raised.value.detail


def test_a_status_outside_a_s_w_is_a_schema_violation() -> None:
    """Only the three synced statuses are accepted (V3)."""
    body = event().model_dump_json().replace('"status":"W"', '"status":"X"').encode()
    with pytest.raises(InvalidMessageError, match="schema_violation"):
        parse_event(body)


def test_the_origin_must_be_who_published() -> None:
    """A school's event must come from its broker user; a claimed origin that differs from the
    source, or an unknown school, is rejected (decision 8)."""
    check_origin(event(), "ka-user", USERS)
    with pytest.raises(InvalidMessageError, match="origin_not_authenticated"):
        check_origin(event(), "hof-user", USERS)
    forged = event().model_copy(update={"source": "vhs-sync/vhs-hof"})
    with pytest.raises(InvalidMessageError, match="origin_mismatch"):
        check_origin(forged, "ka-user", USERS)
    with pytest.raises(InvalidMessageError, match="unknown_school"):
        check_origin(event(), "ka-user", {"vhs-hof": None})
