"""What another school's enrollment becomes in this school's admin DB (V6, V9-V12, decision 7)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from adapter.domain import CourseRef, EnrollmentKey, EnrollmentState, PersonalData, Role, Status
from adapter.mapping.inbound import (
    ParticipantFields,
    arrived_by_sync,
    changed_fields,
    foreign_view,
    participant_update,
    sync_remark,
)

MASTER = "vhs-sr"
COURSE = CourseRef(MASTER, "25-64643")
PERSON = PersonalData("Nowak", "Jan", "jan.nowak@example.org", "0721 555 0101")
STATE = EnrollmentState(
    EnrollmentKey("vhs-ka", 4711, COURSE), Status.REGISTERED, date(2025, 9, 18), PERSON
)
REMARK = "Mehrfachanmeldung; vhsKOOB Anmeldung von vhs Karlsruhe"


def test_the_master_gets_the_real_participant_and_the_sync_remark() -> None:
    """At the master the row is the real person with email and phone, remark naming the school."""
    view = foreign_view(STATE, MASTER, "vhs Karlsruhe")
    assert view.role is Role.MASTER
    assert view.participant == ParticipantFields(
        "Nowak", "Jan", "jan.nowak@example.org", "0721 555 0101"
    )
    assert view.remark == REMARK
    assert (view.status, view.registered_on) == (Status.REGISTERED, date(2025, 9, 18))


def test_a_subscriber_gets_no_participant_even_if_the_event_had_one() -> None:
    """At another subscriber the row is anonymous, whatever the state carries (V9)."""
    view = foreign_view(STATE, "vhs-hof", "vhs Karlsruhe")
    assert view.role is Role.SUBSCRIBER
    assert view.participant is None
    assert view.remark == REMARK
    assert "Nowak" not in repr(view)


def test_a_master_row_without_personal_data_is_an_unknown_person() -> None:
    """A cancellation of a deleted row (no person) still gives the master a participant row."""
    view = foreign_view(STATE.anonymised(), MASTER, "vhs Karlsruhe")
    assert view.participant == ParticipantFields("(unbekannt)", "", None, None)


def test_the_remark_is_exactly_the_one_of_the_seed() -> None:
    """The remark reads `Mehrfachanmeldung; vhsKOOB Anmeldung von <school name>` (V9)."""
    assert (
        sync_remark("vhs Hofer Land") == "Mehrfachanmeldung; vhsKOOB Anmeldung von vhs Hofer Land"
    )


@pytest.mark.parametrize("school", [MASTER, "vhs-hof"])
def test_a_new_foreign_row_has_fee_0_and_balance_0(school: str) -> None:
    """New foreign rows cost nothing and owe nothing, at the master and at subscribers (V9, V10)."""
    row = foreign_view(STATE, school, "vhs Karlsruhe").new_enrollment()
    assert row["fee"] == Decimal("0.00")
    assert row["balance"] == Decimal("0.00")
    assert row["remark"] == REMARK
    assert row["payment_type"] is None
    assert row["status"] == "A"


def test_updates_never_touch_the_balance_the_master_owns() -> None:
    """The fields an event may change are the origin's only; balance, fee, remark stay (V12)."""
    fields = foreign_view(STATE, MASTER, "vhs Karlsruhe").enrollment_fields()
    assert set(fields) == {"status", "registered_on", "waitlisted_since", "waitlisted_by_admin"}
    assert "balance" not in fields


def test_a_later_cancellation_keeps_the_settlement_balance() -> None:
    """A master that entered 120,00 as open balance keeps it when the origin cancels (V12)."""
    current = {
        "status": "A",
        "registered_on": date(2025, 9, 18),
        "waitlisted_since": None,
        "waitlisted_by_admin": False,
        "balance": Decimal("120.00"),
        "fee": Decimal("0.00"),
    }
    cancelled = EnrollmentState(STATE.key, Status.CANCELLED, date(2025, 9, 18), PERSON)
    demanded = foreign_view(cancelled, MASTER, "vhs Karlsruhe").enrollment_fields()
    assert changed_fields(current, demanded) == {"status": "S"}


def test_changed_fields_are_only_the_differences() -> None:
    """Apply writes only what differs; an identical row needs no write at all."""
    demanded = {"status": "W", "registered_on": date(2025, 9, 18), "waitlisted_by_admin": False}
    assert changed_fields(dict(demanded), demanded) == {}
    current = {"status": "A", "registered_on": date(2025, 9, 18), "waitlisted_by_admin": False}
    assert changed_fields(current, demanded) == {"status": "W"}
    assert changed_fields({}, demanded) == demanded  # a missing column counts as different


def test_the_waitlist_place_travels_to_the_receiving_row() -> None:
    """Waiting since and moved-by-admin are taken over, so every school orders the list alike."""
    since = datetime(2025, 9, 1, 8, 0, tzinfo=UTC)
    waiting = EnrollmentState(
        STATE.key, Status.WAITLISTED, None, None, waitlisted_since=since, waitlisted_by_admin=True
    )
    fields = foreign_view(waiting, "vhs-hof", "vhs Karlsruhe").enrollment_fields()
    assert fields == {
        "status": "W",
        "registered_on": None,
        "waitlisted_since": since,
        "waitlisted_by_admin": True,
    }


def test_participant_update_changes_only_what_the_origin_changed() -> None:
    """A new phone number updates the phone; a state without a person changes nothing."""
    current = ParticipantFields("Nowak", "Jan", "jan.nowak@example.org", "0721 1").as_row()
    assert participant_update(current, PERSON) == {"main_phone": "0721 555 0101"}
    assert participant_update(current, None) == {}


@pytest.mark.parametrize(
    ("remark", "synced"),
    [
        (REMARK, True),
        ("Mehrfachanmeldung; vhsKOOB", True),  # the company booking of a subscriber school
        ("Internetanmeldung (Tan: 15834)", False),
        ("TN per Mail storniert; Mehrfachanmeldung; vhsKOOB", False),
        ("", False),
        (None, False),
    ],
)
def test_arrived_by_sync_is_told_by_the_remark(remark: str | None, synced: bool) -> None:
    """Only rows whose remark starts with the sync prefix count as foreign (V11)."""
    assert arrived_by_sync(remark) is synced
