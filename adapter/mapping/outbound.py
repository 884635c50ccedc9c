"""From a school's own admin rows to what may leave the school (the allow-list, V5)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime

from adapter.domain import (
    CourseRef,
    EnrollmentKey,
    EnrollmentState,
    PersonalData,
    Role,
    Status,
)
from adapter.domain.enrollment import ACTIVE_STATUSES, PERSONAL_FIELD_LIMITS
from adapter.mapping import routes


class UnsyncableRowError(ValueError):
    """An own enrollment that cannot be described on the wire (say, an unknown status)."""


@dataclass(frozen=True, slots=True)
class LocalEnrollment:
    """One own enrollment of a shared course, read from the admin DB.

    It holds exactly the fields that may be synced; IBAN, birthday and further contact
    entries are never even read for it.
    """

    enrollment_id: int
    course: CourseRef
    participant_number: int
    status: str
    registered_on: date | None
    last_name: str
    first_name: str
    main_email: str | None
    main_phone: str | None
    modified_at: datetime | None
    arrived_by_sync: bool = False
    waitlisted_since: datetime | None = None
    waitlisted_by_admin: bool = False


def _clean(value: str | None) -> str | None:
    value = (value or "").strip()
    return value or None


def outbound_state(row: LocalEnrollment, school: str) -> EnrollmentState:
    """The state of an own enrollment that the network may know, with its personal data."""
    try:
        status = Status(row.status.strip().upper())
    except ValueError as error:
        raise UnsyncableRowError(
            f"enrollment {row.enrollment_id} has status {row.status!r}, not one of A, S, W"
        ) from error
    personal = PersonalData(
        last_name=row.last_name.strip() or "?",
        first_name=row.first_name.strip(),
        main_email=_clean(row.main_email),
        main_phone=_clean(row.main_phone),
    )
    for name, limit in PERSONAL_FIELD_LIMITS.items():
        if len(getattr(personal, name) or "") > limit:
            raise UnsyncableRowError(
                f"enrollment {row.enrollment_id}: the participant's {name} is longer than the "
                f"{limit} characters the network carries"
            )
    key = EnrollmentKey(school, row.participant_number, row.course)
    waiting = status is Status.WAITLISTED
    return EnrollmentState(
        key,
        status,
        row.registered_on,
        personal,
        waitlisted_since=row.waitlisted_since if waiting else None,
        waitlisted_by_admin=row.waitlisted_by_admin if waiting else False,
    )


def _is_active(row: LocalEnrollment) -> bool:
    return row.status.strip().upper() in ACTIVE_STATUSES


def current_row(rows: Iterable[LocalEnrollment]) -> LocalEnrollment:
    """The row that states an enrollment key, of all the key's rows at its school.

    A person may hold several rows in one course: cancelled (row 1), registered again (row 2),
    and staff may edit any of them later (a cancellation fee on row 1). The rule: the newest
    row (highest row id) with an active status (A or W) wins; with no active row, the newest
    row. Which row was edited last, or which rows a poll happened to read, never matters, so
    the poll, the full scan, a sync request's answer and a hard delete of one of the rows all
    reach the same state. Raises `ValueError` for no rows.
    """
    candidates = list(rows)
    if not candidates:
        raise ValueError("a key has at least one row")
    active = [row for row in candidates if _is_active(row)]
    return max(active or candidates, key=lambda row: row.enrollment_id)


def current_per_key(rows: Iterable[LocalEnrollment]) -> list[LocalEnrollment]:
    """One row per (course, participant), chosen by `current_row` from all rows given; the
    caller gives every row of each key it wants judged."""
    by_key: dict[tuple[CourseRef, int], list[LocalEnrollment]] = {}
    for row in rows:
        by_key.setdefault((row.course, row.participant_number), []).append(row)
    return [current_row(key_rows) for key_rows in by_key.values()]


def fingerprint(state: EnrollmentState) -> str:
    """A digest of everything a receiver sees: equal digests mean nothing to publish."""
    personal = state.personal
    parts = [
        state.status.value,
        state.registered_on.isoformat() if state.registered_on else "",
        state.waitlisted_since.isoformat() if state.waitlisted_since else "",
        "admin" if state.waitlisted_by_admin else "",
        *(
            (
                personal.last_name,
                personal.first_name,
                personal.main_email or "",
                personal.main_phone or "",
            )
            if personal
            else ("", "", "", "")
        ),
    ]
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


def deliveries(state: EnrollmentState, school: str) -> list[tuple[str, EnrollmentState]]:
    """Where a state goes (DESIGN decision 6): personal data only on the master's route.

    Every subscriber gets the anonymised state. A subscriber's own enrollment also goes, with
    its personal data, to the master; the master's own enrollments carry no personal data.
    """
    course, origin = state.key.course, state.key.origin_school
    anonymised = (routes.anonymised(course, origin), state.anonymised())
    if course.role_of(school) is Role.MASTER:
        return [anonymised]
    return [anonymised, (routes.personal(course, origin), state)]


def answer_delivery(state: EnrollmentState, requester: str) -> tuple[str, EnrollmentState]:
    """Where an own state goes in answer to `requester`'s sync request, and as what: to the
    requester alone, with personal data only when the requester is the course's master (and
    the state is a subscriber's: the master's own states carry none, V5, V10)."""
    course, origin = state.key.course, state.key.origin_school
    personal = requester == course.master_school and origin != course.master_school
    delivered = state if personal else state.anonymised()
    return routes.sync_answer(requester, course, origin, personal=personal), delivered


def cancellation_of_deleted(
    key: EnrollmentKey, registered_on: date | None = None
) -> EnrollmentState:
    """A hard-deleted own enrollment ("Entfernung") travels as a cancellation (V4)."""
    return EnrollmentState(key, Status.CANCELLED, registered_on, None)
