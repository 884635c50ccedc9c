"""A shared course as one school's admin DB holds it: settings, and every enrollment of every
school (own rows, and rows that arrived by sync) with the school it belongs to.

What registration and automatic advance decide on (DESIGN decision 11: capacity is
computed, not stored).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, Engine, select

from adapter.domain import (
    CourseRef,
    CourseSettings,
    EnrollmentKey,
    Occupancy,
    Status,
    Waiting,
)
from adapter.mapping.courses import course_settings
from adapter.store import admin, kept, state
from adapter.store.db import keyed


class CourseNotFoundError(LookupError):
    """No course with that number in this school's admin DB."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One enrollment of the course, whichever school it belongs to."""

    enrollment_id: int
    school: str
    participant_number: int  # at its origin school
    status: str
    waitlisted_since: datetime | None
    waitlisted_by_admin: bool
    blocked: bool
    own: bool


@dataclass(frozen=True, slots=True)
class CourseState:
    number: str  # the local course number
    ref: CourseRef | None  # None: a local course, not shared
    settings: CourseSettings
    entries: tuple[Entry, ...]

    def occupancy(self) -> Occupancy:
        counts = Counter(entry.status for entry in self.entries)
        by_admin = sum(
            e.status == Status.WAITLISTED and e.waitlisted_by_admin for e in self.entries
        )
        return Occupancy(
            registered=counts[Status.REGISTERED],
            waitlisted=counts[Status.WAITLISTED],
            waitlisted_by_admin=by_admin,
        )

    def registered_by_school(self) -> dict[str, int]:
        return dict(Counter(e.school for e in self.entries if e.status == Status.REGISTERED))

    def waiting(self) -> list[Waiting]:
        """The waitlist in the order of advance: longest waiting first (D3)."""
        ref = self.ref or CourseRef("", self.number)
        return [
            Waiting(
                key=EnrollmentKey(e.school, e.participant_number, ref),
                waiting_since=int(e.waitlisted_since.timestamp() * 1_000_000)
                if e.waitlisted_since
                else 0,
                tie_breaker=f"{e.school}/{e.participant_number:012d}",
                blocked=e.blocked,
                by_admin=e.waitlisted_by_admin,
            )
            for e in self.entries
            if e.status == Status.WAITLISTED
        ]


def read_course_state(
    admin_connection: Connection, state_engine: Engine, number: str, school: str
) -> CourseState:
    """Read inside the caller's admin-DB transaction, so a decision sees one moment."""
    found = kept.course_rows(admin_connection, state_engine, admin.courses.c.number == number)
    if not found:
        raise CourseNotFoundError(f"course {number} is not in this school's admin DB")
    course = found[0]
    enrollment, participant = admin.enrollments.c, admin.participants.c
    read = admin_connection.execute(
        select(
            *keyed(
                enrollment.id,
                enrollment.participant_number,
                enrollment.status,
                participant.blocked,
            ),
            admin.column_or_null("enrollments", "waitlisted_since"),
            admin.column_or_null("enrollments", "waitlisted_by_admin"),
        )
        .join_from(
            admin.enrollments,
            admin.participants,
            enrollment.participant_number == participant.number,
        )
        .where(enrollment.course_number == number)
    ).all()
    rows = kept.with_marks(state_engine, [row._asdict() for row in read])
    ids = [row["id"] for row in rows]
    foreign: dict[int, tuple[str, int]] = {}
    with state_engine.connect() as connection:
        for start in range(0, len(ids), 500):
            applied = state.applied.c
            foreign.update(
                (row.enrollment_id, (row.origin_school, row.participant_number))
                for row in connection.execute(
                    select(
                        applied.enrollment_id, applied.origin_school, applied.participant_number
                    ).where(applied.enrollment_id.in_(ids[start : start + 500]))
                ).all()
            )
    ref = (
        CourseRef(course["master_school"], course["master_number"] or number)
        if course["master_school"]
        else None
    )
    entries = []
    for row in rows:
        origin, number_at_origin = foreign.get(row["id"], (school, row["participant_number"]))
        entries.append(
            Entry(
                enrollment_id=row["id"],
                school=origin,
                participant_number=number_at_origin,
                status=row["status"],
                waitlisted_since=row["waitlisted_since"],
                waitlisted_by_admin=bool(row["waitlisted_by_admin"]),
                blocked=bool(row["blocked"]) if row["id"] not in foreign else False,
                own=row["id"] not in foreign,
            )
        )
    return CourseState(number, ref, course_settings(course), tuple(entries))
