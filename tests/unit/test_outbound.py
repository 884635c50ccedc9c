"""What may leave a school, and where it goes (V4, V5, DESIGN decisions 1 and 6)."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, date, datetime
from typing import Any

import pytest
from structlog.testing import capture_logs

from adapter.domain import CourseRef, EnrollmentKey, PersonalData, Status
from adapter.mapping import routes
from adapter.mapping.outbound import (
    LocalEnrollment,
    UnsyncableRowError,
    answer_delivery,
    cancellation_of_deleted,
    current_per_key,
    current_row,
    deliveries,
    fingerprint,
    outbound_state,
)
from adapter.messages import enrollment_changed

MASTER = "vhs-sr"
SUBSCRIBER = "vhs-ka"
COURSE = CourseRef(MASTER, "25-64643")
NOW = datetime(2025, 9, 18, 10, 30, tzinfo=UTC)


def row(**changes: Any) -> LocalEnrollment:
    base = LocalEnrollment(
        enrollment_id=10,
        course=COURSE,
        participant_number=4711,
        status="A",
        registered_on=date(2025, 9, 18),
        last_name="Nowak",
        first_name="Jan",
        main_email="jan.nowak@example.org",
        main_phone="0721 555 0101",
        modified_at=datetime(2025, 9, 18, 12, 0),
    )
    return dataclasses.replace(base, **changes)


def keys(value: Any) -> set[str]:
    """Every key anywhere in a JSON document."""
    if isinstance(value, dict):
        return set(value) | {k for v in value.values() for k in keys(v)}
    if isinstance(value, list):
        return {k for v in value for k in keys(v)}
    return set()


def test_only_the_four_personal_fields_are_allowed_out() -> None:
    """The allow-list is last name, first name, main email, main phone: nothing else (V5)."""
    assert {f.name for f in dataclasses.fields(PersonalData)} == {
        "last_name",
        "first_name",
        "main_email",
        "main_phone",
    }
    state = outbound_state(row(), SUBSCRIBER)
    assert state.personal == PersonalData("Nowak", "Jan", "jan.nowak@example.org", "0721 555 0101")


def test_an_own_row_cannot_even_carry_iban_or_birthday() -> None:
    """The row read for sync has no field for IBAN, birthday or further contact entries."""
    names = {f.name for f in dataclasses.fields(LocalEnrollment)}
    assert not names & {"iban", "birthday", "birth_date", "payment_type", "fee", "balance"}
    with pytest.raises(TypeError):
        LocalEnrollment(**{**dataclasses.asdict(row()), "iban": "DE89370400440532013000"})


def test_iban_and_birthday_never_appear_in_an_event() -> None:
    """Whatever a school stores, the event with personal data has only allow-listed keys."""
    state = outbound_state(row(), SUBSCRIBER)
    for _, delivered in deliveries(state, SUBSCRIBER):
        data = json.loads(
            enrollment_changed(delivered, version=5, event_id="e-1", time=NOW).model_dump_json()
        )
        found = keys(data)
        assert not found & {"iban", "birthday", "birth_date", "fee", "balance", "remark"}
        if data["data"]["participant"] is not None:
            assert set(data["data"]["participant"]) == {
                "last_name",
                "first_name",
                "main_email",
                "main_phone",
            }


def test_a_masters_own_enrollment_goes_only_anonymised() -> None:
    """The master's own participants never leave it: one delivery, anonymised route, no person."""
    sent = deliveries(outbound_state(row(), MASTER), MASTER)
    assert [route for route, _ in sent] == [routes.anonymised(COURSE, MASTER)]
    assert sent[0][1].personal is None


def test_a_subscribers_own_enrollment_goes_anonymised_to_all_and_personal_to_the_master() -> None:
    """A subscriber publishes the anonymised state and, on the master's route, the person."""
    state = outbound_state(row(), SUBSCRIBER)
    sent = dict(deliveries(state, SUBSCRIBER))
    anonymised, personal = (
        routes.anonymised(COURSE, SUBSCRIBER),
        routes.personal(COURSE, SUBSCRIBER),
    )
    assert set(sent) == {anonymised, personal}
    assert sent[anonymised].personal is None
    assert sent[personal].personal == state.personal
    assert sent[anonymised] == state.anonymised()


def test_an_answer_to_a_subscriber_goes_anonymised_to_it_alone() -> None:
    """Answering another subscriber's sync request, a subscriber sends the anonymised state on
    the route only that subscriber binds; the master answers the same way."""
    for origin in (SUBSCRIBER, MASTER):
        state = outbound_state(row(), origin)
        route, sent = answer_delivery(state, "vhs-hof")
        assert route == routes.sync_answer("vhs-hof", COURSE, origin, personal=False)
        assert sent == state.anonymised()


def test_an_answer_to_the_master_carries_the_subscribers_participant() -> None:
    """Answering the master's sync request, a subscriber sends its participant on the
    personal answer route of the master (V10), and nothing anonymised besides."""
    state = outbound_state(row(), SUBSCRIBER)
    route, sent = answer_delivery(state, MASTER)
    assert route == routes.sync_answer(MASTER, COURSE, SUBSCRIBER, personal=True)
    assert sent.personal == state.personal


@pytest.mark.parametrize(("raw", "status"), [("A", "A"), ("s", "S"), (" W ", "W")])
def test_status_is_read_tolerantly(raw: str, status: str) -> None:
    """Lower case and padding in the admin DB's status column still give the synced status."""
    assert outbound_state(row(status=raw), SUBSCRIBER).status is Status(status)


@pytest.mark.parametrize("raw", ["X", "", "AS", "storniert"])
def test_an_unknown_status_raises_unsyncable_row(raw: str) -> None:
    """A status outside A, S, W cannot be synced and says which enrollment it is."""
    with pytest.raises(UnsyncableRowError, match="enrollment 10"):
        outbound_state(row(status=raw), SUBSCRIBER)


def test_blanks_in_contact_fields_are_no_contact_data() -> None:
    """Empty or blank email/phone travel as absent; a missing last name as `?`."""
    state = outbound_state(row(main_email="  ", main_phone="", last_name=" "), SUBSCRIBER)
    assert state.personal == PersonalData("?", "Jan", None, None)


def test_waitlist_fields_travel_only_with_status_w() -> None:
    """A registered row's leftover waitlist stamp is not published."""
    since = datetime(2025, 9, 1, 8, 0)
    waiting = outbound_state(
        row(status="W", waitlisted_since=since, waitlisted_by_admin=True), SUBSCRIBER
    )
    assert (waiting.waitlisted_since, waiting.waitlisted_by_admin) == (since, True)
    registered = outbound_state(
        row(status="A", waitlisted_since=since, waitlisted_by_admin=True), SUBSCRIBER
    )
    assert (registered.waitlisted_since, registered.waitlisted_by_admin) == (None, False)


def test_current_per_key_keeps_the_newest_row_of_each_participant_and_course() -> None:
    """A re-enrollment after a cancellation (higher row id) wins; other keys are kept apart."""
    other_course = CourseRef(MASTER, "25-64901B")
    rows = [
        row(enrollment_id=12, status="A"),
        row(enrollment_id=7, status="S"),
        row(enrollment_id=8, participant_number=99),
        row(enrollment_id=3, course=other_course),
    ]
    current = {(r.course, r.participant_number): r.enrollment_id for r in current_per_key(rows)}
    assert current == {(COURSE, 4711): 12, (COURSE, 99): 8, (other_course, 4711): 3}
    assert {r.enrollment_id for r in current_per_key(reversed(rows))} == {12, 8, 3}  # any order


@pytest.mark.parametrize(
    ("statuses", "current"),
    [
        ({1: "S", 2: "A"}, 2),  # cancelled, registered again
        ({1: "A", 2: "S"}, 1),  # an older active row outranks a newer cancellation
        ({1: "S", 2: "W", 3: "S"}, 2),
        ({1: "W", 2: "A"}, 2),  # two active rows: the newest
        ({1: "S", 2: "S"}, 2),  # no active row: the newest
        ({1: " a ", 2: "s"}, 1),  # statuses read as the admin product may store them
        ({5: "S"}, 5),
    ],
)
def test_the_current_row_is_the_newest_active_else_the_newest(
    statuses: dict[int, str], current: int
) -> None:
    """A key's state comes from its newest A/W row, else its newest row, in any order."""
    rows = [row(enrollment_id=i, status=status) for i, status in statuses.items()]
    assert current_row(rows).enrollment_id == current
    assert current_row(reversed(rows)).enrollment_id == current


def test_editing_a_cancelled_row_does_not_change_the_current_state() -> None:
    """Whatever row of a re-enrolled person is edited last, the state stays their new one."""
    cancelled = row(enrollment_id=1, status="S", modified_at=datetime(2025, 9, 20, 9, 0))
    registered = row(enrollment_id=2, status="A", modified_at=datetime(2025, 9, 19, 9, 0))
    assert current_row([cancelled, registered]) == registered
    assert (
        outbound_state(current_row([registered, cancelled]), SUBSCRIBER).status is Status.REGISTERED
    )


def test_a_key_without_rows_has_no_current_row() -> None:
    """Asking for the current row of no rows is a programming error, said at once."""
    with pytest.raises(ValueError, match="at least one row"):
        current_row([])


@pytest.mark.parametrize(
    "change",
    [
        {"status": "S"},
        {"status": "W"},
        {"registered_on": date(2025, 9, 19)},
        {"registered_on": None},
        {"last_name": "Nowakowski"},
        {"first_name": "Jana"},
        {"main_email": "jan@example.com"},
        {"main_email": None},
        {"main_phone": "0721 555 0102"},
    ],
)
def test_the_fingerprint_changes_when_a_synced_field_changes(change: dict[str, Any]) -> None:
    """Any change a receiver would see gives a new fingerprint, so it is published."""
    before = fingerprint(outbound_state(row(), SUBSCRIBER))
    assert fingerprint(outbound_state(row(**change), SUBSCRIBER)) != before


def test_the_fingerprint_sees_waitlist_order_and_admin_moves() -> None:
    """Waiting since and moved-by-admin are synced, so they change the fingerprint too."""
    base = row(status="W", waitlisted_since=datetime(2025, 9, 1, 8, 0))
    before = fingerprint(outbound_state(base, SUBSCRIBER))
    later = dataclasses.replace(base, waitlisted_since=datetime(2025, 9, 2, 8, 0))
    by_admin = dataclasses.replace(base, waitlisted_by_admin=True)
    assert fingerprint(outbound_state(later, SUBSCRIBER)) != before
    assert fingerprint(outbound_state(by_admin, SUBSCRIBER)) != before


@pytest.mark.parametrize(
    "change",
    [
        {"enrollment_id": 99},
        {"modified_at": datetime(2026, 1, 1)},
        {"modified_at": None},
        {"main_email": " jan.nowak@example.org "},
        {"status": "a"},
        {"arrived_by_sync": True},
        {"waitlisted_since": datetime(2025, 9, 1)},  # status A: not synced
    ],
)
def test_the_fingerprint_stays_when_nothing_synced_changes(change: dict[str, Any]) -> None:
    """Edits that no receiver would see (stamps, row ids, padding) publish nothing."""
    before = fingerprint(outbound_state(row(), SUBSCRIBER))
    assert fingerprint(outbound_state(row(**change), SUBSCRIBER)) == before


def test_the_fingerprint_tells_no_personal_data_from_empty_personal_data() -> None:
    """An anonymised state and a state with a person are different things to publish."""
    state = outbound_state(row(), SUBSCRIBER)
    assert fingerprint(state) != fingerprint(state.anonymised())


def test_a_hard_deleted_enrollment_travels_as_a_cancellation() -> None:
    """An own row that vanished ("Entfernung") is published as status S without a person (V4)."""
    key = EnrollmentKey(SUBSCRIBER, 4711, COURSE)
    state = cancellation_of_deleted(key, date(2025, 9, 18))
    assert (state.key, state.status, state.registered_on, state.personal) == (
        key,
        Status.CANCELLED,
        date(2025, 9, 18),
        None,
    )


def test_mapping_an_own_row_logs_nothing() -> None:
    """The pure mapping never logs, so no personal field can reach a log line (decision 6)."""
    with capture_logs() as logs:
        state = outbound_state(row(), SUBSCRIBER)
        deliveries(state, SUBSCRIBER)
        fingerprint(state)
        with pytest.raises(UnsyncableRowError):
            outbound_state(row(status="X"), SUBSCRIBER)
    assert logs == []


@pytest.mark.parametrize(
    "change",
    [
        {"main_phone": "0721 555 0101 (nur abends), tagsüber mobil 0171 555 0101"},
        {"main_email": "jan." + "n" * 250 + "@example.org"},
        {"last_name": "N" * 101},
        {"first_name": "J" * 101},
    ],
)
def test_a_row_too_long_for_the_wire_is_unsyncable_not_a_crash(change: dict[str, Any]) -> None:
    """An own row whose personal data exceeds the wire's limits is refused as unsyncable (so
    capture skips it with a warning) or goes on the wire; it never breaks publishing."""
    try:
        state = outbound_state(row(**change), SUBSCRIBER)
    except UnsyncableRowError:
        return
    for _, delivered in deliveries(state, SUBSCRIBER):
        enrollment_changed(delivered, version=1, event_id="e-1", time=NOW)
