"""Places a master has allotted but not yet seen arrive, kept in its state DB so that the
master's adapter and the master's own desk (perhaps another process) count them alike."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Engine, delete, insert, select

from adapter.domain import CourseRef, Occupancy
from adapter.ops.course_state import CourseState
from adapter.store import state

_grants = state.place_grants.c


def live_grants(state_engine: Engine, course: CourseState, now: datetime) -> list[tuple[str, int]]:
    """(school, participant) of every grant that holds a place: not expired, and its
    enrollment not yet arrived. The others are forgotten. `now` is UTC, like the expiry."""
    if course.ref is None:
        return []
    present = {(e.school, e.participant_number) for e in course.entries}
    moment = now.replace(tzinfo=None)
    this_course = (
        _grants.course_master == course.ref.master_school,
        _grants.course_number == course.ref.number,
    )
    live: list[tuple[str, int]] = []
    with state_engine.begin() as connection:
        for row in connection.execute(select(state.place_grants).where(*this_course)).all():
            key = (row.school, row.participant_number)
            if row.expires_at > moment and key not in present:
                live.append(key)
                continue
            connection.execute(
                delete(state.place_grants).where(
                    *this_course,
                    _grants.school == row.school,
                    _grants.participant_number == row.participant_number,
                )
            )
    return live


def with_grants(
    occupancy: Occupancy, held: int, grants: list[tuple[str, int]], school: str
) -> tuple[Occupancy, int]:
    """The occupancy and `school`'s regular places with the granted places counted in."""
    return (
        Occupancy(
            registered=occupancy.registered + len(grants),
            waitlisted=occupancy.waitlisted,
            waitlisted_by_admin=occupancy.waitlisted_by_admin,
        ),
        held + sum(granted_to == school for granted_to, _ in grants),
    )


def record_grant(
    state_engine: Engine, course: CourseRef, school: str, participant_number: int, expires: datetime
) -> None:
    with state_engine.begin() as connection:
        connection.execute(
            delete(state.place_grants).where(
                _grants.course_master == course.master_school,
                _grants.course_number == course.number,
                _grants.school == school,
                _grants.participant_number == participant_number,
            )
        )
        connection.execute(
            insert(state.place_grants).values(
                course_master=course.master_school,
                course_number=course.number,
                school=school,
                participant_number=participant_number,
                expires_at=expires.replace(tzinfo=None),
            )
        )
