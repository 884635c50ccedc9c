"""What leaves a school, and what a foreign enrollment becomes at the master and at a
subscriber (V5, V9, V10, V11, decision 6)."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

import pytest

from adapter.domain import CourseRef, EnrollmentKey, EnrollmentState, PersonalData, Role, Status
from adapter.domain.enrollment import is_newer, next_version
from adapter.mapping import routes
from adapter.mapping.inbound import (
    arrived_by_sync,
    changed_fields,
    foreign_view,
    participant_update,
    sync_remark,
)
from adapter.mapping.outbound import (
    LocalEnrollment,
    UnsyncableRowError,
    deliveries,
    fingerprint,
    latest_per_key,
    outbound_state,
)

COURSE = CourseRef("vhs-sr", "25-64643")


def row(**changes: object) -> LocalEnrollment:
    values: dict[str, object] = {
        "enrollment_id": 7,
        "course": COURSE,
        "participant_number": 4711,
        "status": "A",
        "registered_on": date(2025, 9, 18),
        "last_name": " Nowak ",
        "first_name": "Jan",
        "main_email": "jan@example.org",
        "main_phone": "  ",
        "modified_at": datetime(2025, 9, 18, 10, 0),
    }
    values.update(changes)
    return LocalEnrollment(**values)  # type: ignore[arg-type]


def test_only_the_four_allowed_fields_leave_a_school() -> None:
    """An own enrollment carries last name, first name, main email and main phone, trimmed;
    an empty phone travels as none (V5)."""
    state = outbound_state(row(), "vhs-ka")
    assert state.personal == PersonalData("Nowak", "Jan", "jan@example.org", None)
    assert state.key == EnrollmentKey("vhs-ka", 4711, COURSE)
    assert state.status is Status.REGISTERED


def test_an_unknown_status_is_not_published() -> None:
    """A row with a status other than A, S, W cannot be described on the wire."""
    with pytest.raises(UnsyncableRowError, match="'X'"):
        outbound_state(row(status="X"), "vhs-ka")


def test_personal_data_goes_only_to_the_master() -> None:
    """A subscriber's enrollment goes anonymised to the course and with personal data to the
    master; the master's own enrollments go anonymised only (decision 6)."""
    state = outbound_state(row(), "vhs-ka")
    sent = deliveries(state, "vhs-ka")
    assert [key for key, _ in sent] == [routes.anonymised(COURSE), routes.personal(COURSE)]
    assert sent[0][1].personal is None
    assert sent[1][1].personal is not None
    own = deliveries(outbound_state(row(), "vhs-sr"), "vhs-sr")
    assert [(key, s.personal) for key, s in own] == [(routes.anonymised(COURSE), None)]
    assert [key for key, _ in deliveries(state, "vhs-ka", to_master=False)] == [
        routes.anonymised(COURSE)
    ]


def test_the_fingerprint_changes_exactly_when_a_synced_field_does() -> None:
    """Equal fingerprints mean nothing to publish."""
    base = fingerprint(outbound_state(row(), "vhs-ka"))
    assert fingerprint(outbound_state(row(modified_at=datetime(2026, 1, 1)), "vhs-ka")) == base
    for change in ({"status": "S"}, {"main_email": "new@example.org"}, {"last_name": "Ott"}):
        assert fingerprint(outbound_state(row(**change), "vhs-ka")) != base


def test_a_re_enrollment_wins_over_the_cancelled_row() -> None:
    """Of two rows of one participant in one course, the newer one is the state."""
    rows = [row(enrollment_id=3, status="S"), row(enrollment_id=9, status="W")]
    assert [r.status for r in latest_per_key(rows)] == ["W"]


def test_versions_only_grow() -> None:
    """A new version is above the previous one even when the clock went back (decision 1)."""
    assert next_version(None, 1_000) == 1_000
    assert next_version(1_000, 2_000) == 2_000
    assert next_version(5_000, 2_000) == 5_001
    assert is_newer(2, None)
    assert is_newer(3, 2)
    assert not is_newer(2, 2)
    assert not is_newer(1, 2)


def state(
    personal: PersonalData | None = None, status: Status = Status.REGISTERED
) -> EnrollmentState:
    return EnrollmentState(
        EnrollmentKey("vhs-ka", 4711, COURSE), status, date(2025, 9, 18), personal
    )


def test_the_master_books_the_real_participant_as_a_company_booking() -> None:
    """At the master: the participant's fields, fee 0, balance 0 and the remark (V10)."""
    view = foreign_view(
        state(PersonalData("Nowak", "Jan", "jan@example.org")), "vhs-sr", "vhs Karlsruhe"
    )
    assert view.role is Role.MASTER
    assert view.participant is not None
    assert view.participant.as_row()["last_name"] == "Nowak"
    new = view.new_enrollment()
    assert (new["fee"], new["balance"]) == (Decimal("0.00"), Decimal("0.00"))
    assert new["remark"] == "Mehrfachanmeldung; vhsKOOB Anmeldung von vhs Karlsruhe"


def test_a_subscriber_never_holds_personal_data() -> None:
    """At a subscriber the view has no participant, even if an event carried one (V9)."""
    view = foreign_view(state(PersonalData("Nowak", "Jan")), "vhs-hof", "vhs Karlsruhe")
    assert view.role is Role.SUBSCRIBER
    assert view.participant is None


def test_sync_never_writes_the_balance_of_an_existing_row() -> None:
    """Updates touch status and dates only; a balance the master entered stays (V12)."""
    view = foreign_view(state(status=Status.CANCELLED), "vhs-sr", "vhs Karlsruhe")
    assert "balance" not in view.enrollment_fields()
    current = {
        "status": "A",
        "registered_on": date(2025, 9, 18),
        "waitlisted_since": None,
        "waitlisted_by_admin": False,
        "balance": Decimal("31.80"),
    }
    assert changed_fields(current, view.enrollment_fields()) == {"status": "S"}


def test_a_cancellation_without_personal_data_keeps_the_participant() -> None:
    """A deleted row's cancellation carries no names; the master's participant stays as is."""
    assert participant_update({"last_name": "Nowak"}, None) == {}
    assert participant_update(
        {"last_name": "Nowak", "first_name": "Jan", "main_email": None, "main_phone": None},
        PersonalData("Nowak-Ott", "Jan"),
    ) == {"last_name": "Nowak-Ott"}


def test_rows_that_arrived_by_sync_are_recognised_by_their_remark() -> None:
    """The sync remark marks foreign rows; ordinary remarks do not."""
    assert arrived_by_sync(sync_remark("vhs Hofer Land"))
    assert not arrived_by_sync("Internetanmeldung (Tan: 16132) LS 01.10.2025")
    assert not arrived_by_sync(None)


def test_routing_keys_cannot_be_steered_by_ids() -> None:
    """Dots, `*` and `#` in a school id or course number cannot change where a message goes."""
    tricky = CourseRef("vhs.x", "25.#*")
    assert routes.anonymised(tricky) == "enr.vhs%2Ex.25%2E%23%2A.anon"
    assert routes.personal(COURSE) == "enr.vhs-sr.25-64643.personal"
    assert routes.school_bindings("vhs-sr") == [
        "enr.vhs-sr.*.personal",
        "ctl.vhs-sr.*",
        "adv.vhs-sr",
    ]
    assert routes.subscriber_bindings(COURSE) == [
        "enr.vhs-sr.25-64643.anon",
        "ctl.vhs-sr.25-64643",
    ]
