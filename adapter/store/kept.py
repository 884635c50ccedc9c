"""Where the fields live that a real KuferSQL has no columns for: in the admin DB's row when
the mapping has the column (the reference schema), else in the adapter's state DB.

Course fields (`COURSE_KEPT`): the settings D1-D4 and the master school of a shared course,
per local course number (`state.course_settings`). Enrollment fields (`MARK_KEYS`): since
when an entry waits and whether an admin put it there, per enrollment id
(`state.waiting_marks`). Callers read and write through these functions and never ask
where a field lives.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Connection, Engine, select, update

from adapter.domain import CourseRef
from adapter.store import admin, state
from adapter.store.db import keyed, upsert

SETTINGS_KEYS = (
    "desired_participants",
    "waitlist_enabled",
    "waitlist_max",
    "waitlist_mode",
    "auto_advance",
    "max_per_school",
    "registration_open",
)
COURSE_KEPT = (*SETTINGS_KEYS, "master_school")
MARK_KEYS = ("waitlisted_since", "waitlisted_by_admin")

# What a field is when nothing was set: as the reference schema's column defaults.
DEFAULTS: dict[str, Any] = {
    "desired_participants": None,
    "waitlist_enabled": True,
    "waitlist_max": None,
    "waitlist_mode": "dominant",
    "auto_advance": False,
    "max_per_school": None,
    "registration_open": True,
    "master_school": None,
    "waitlisted_since": None,
    "waitlisted_by_admin": False,
}

_CHUNK = 400


def kept_course_keys() -> list[str]:
    """The course fields this admin DB has no columns for."""
    return [key for key in COURSE_KEPT if not admin.has("courses", key)]


def kept_mark_keys() -> list[str]:
    return [key for key in MARK_KEYS if not admin.has("enrollments", key)]


def _stored(state_engine: Engine, numbers: Iterable[str]) -> dict[str, Any]:
    wanted = sorted(set(numbers))
    table = state.course_settings
    found: dict[str, Any] = {}
    with state_engine.connect() as connection:
        for start in range(0, len(wanted), _CHUNK):
            found.update(
                (row.course_number, row)
                for row in connection.execute(
                    select(table).where(table.c.course_number.in_(wanted[start : start + _CHUNK]))
                ).all()
            )
    return found


def _value(stored: Any, key: str) -> Any:
    value = getattr(stored, key, None) if stored is not None else None
    return DEFAULTS[key] if value is None else value


def course_rows(
    admin_connection: Connection, state_engine: Engine, *conditions: ColumnElement[bool]
) -> list[dict[str, Any]]:
    """The course rows that meet `conditions`, by English key, with every field of
    `COURSE_KEPT` whether the admin DB holds it or the state DB."""
    rows = [
        row._asdict()
        for row in admin_connection.execute(
            select(*keyed(*admin.courses.c)).where(*conditions)
        ).all()
    ]
    kept = kept_course_keys()
    if kept and rows:
        stored = _stored(state_engine, [row["number"] for row in rows])
        for row in rows:
            row.update({key: _value(stored.get(row["number"]), key) for key in kept})
    return rows


def shared_courses(admin_connection: Connection, state_engine: Engine) -> dict[str, CourseRef]:
    """Every shared course of the admin DB: local course number -> the course in the network
    (its master school and the master's course number, `Master_knr`; at the master the
    course's own number when `Master_knr` is empty)."""
    course = admin.courses.c
    if admin.has("courses", "master_school"):
        rows = admin_connection.execute(
            select(course.number, course.master_school, course.master_number).where(
                course.master_school.is_not(None)
            )
        ).all()
        return {r.number: CourseRef(r.master_school, r.master_number or r.number) for r in rows}
    table = state.course_settings
    with state_engine.connect() as connection:
        masters = dict(
            connection.execute(
                select(table.c.course_number, table.c.master_school).where(
                    table.c.master_school.is_not(None)
                )
            ).all()
        )
    numbers = sorted(masters)
    found: dict[str, CourseRef] = {}
    for start in range(0, len(numbers), _CHUNK):
        for row in admin_connection.execute(
            select(course.number, course.master_number).where(
                course.number.in_(numbers[start : start + _CHUNK])
            )
        ).all():
            found[row.number] = CourseRef(masters[row.number], row.master_number or row.number)
    return found


def is_shared(shared: Mapping[str, CourseRef]) -> ColumnElement[bool]:
    """The condition on course rows that picks the shared ones: a master school in the row,
    else one of `shared` (local numbers, from `shared_courses`)."""
    course = admin.courses.c
    if admin.has("courses", "master_school"):
        return course.master_school.is_not(None)
    return course.number.in_(sorted(shared))


def local_course_number(
    admin_connection: Connection, state_engine: Engine, course: CourseRef
) -> str | None:
    """This school's number of a shared course, or None when the school does not have it."""
    if admin.has("courses", "master_school"):
        columns = admin.courses.c
        number: str | None = admin_connection.execute(
            select(columns.number).where(
                columns.master_school == course.master_school,
                columns.master_number == course.number,
            )
        ).scalar()
        return number
    shared = shared_courses(admin_connection, state_engine)
    return next((number for number, ref in shared.items() if ref == course), None)


def write_course_fields(
    admin_connection: Connection,
    state_engine: Engine,
    number: str,
    values: Mapping[str, Any],
    now: datetime | None = None,
) -> bool:
    """Set fields of a course (any of its row's keys and of `COURSE_KEPT`), each where it
    lives; returns False when the admin DB has no such course."""
    course = admin.courses.c
    in_row = admin.writable("courses", values)
    if in_row:
        found = bool(
            admin_connection.execute(
                update(admin.courses).where(course.number == number).values(**in_row)
            ).rowcount
        )
    else:
        found = (
            admin_connection.execute(select(course.number).where(course.number == number)).first()
            is not None
        )
    kept = {key: value for key, value in values.items() if key not in in_row}
    unknown = set(kept) - set(COURSE_KEPT)
    if unknown:
        raise KeyError(f"no such course field: {', '.join(sorted(unknown))}")
    if found and kept:
        stamp = now or datetime.now()
        with state_engine.begin() as connection:
            upsert(
                connection,
                state.course_settings,
                [
                    {
                        "course_number": number,
                        **kept,
                        "modified_at": stamp.replace(tzinfo=None),
                    }
                ],
            )
    return found


def with_marks(state_engine: Engine, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Enrollment rows (dicts with `id` and the `MARK_KEYS`, as read with
    `admin.column_or_null`) with the marks the state DB keeps for them."""
    kept = kept_mark_keys()
    if not kept or not rows:
        return rows
    ids = sorted({row["id"] for row in rows})
    table = state.waiting_marks
    stored: dict[int, Any] = {}
    with state_engine.connect() as connection:
        for start in range(0, len(ids), _CHUNK):
            stored.update(
                (row.enrollment_id, row)
                for row in connection.execute(
                    select(table).where(table.c.enrollment_id.in_(ids[start : start + _CHUNK]))
                ).all()
            )
    for row in rows:
        row.update({key: _value(stored.get(row["id"]), key) for key in kept})
    return rows


def keep_marks(state_engine: Engine, marks: Mapping[int, Mapping[str, Any]]) -> None:
    """Record the `MARK_KEYS` of these enrollment rows that the admin DB has no columns for
    (nothing, when it has them). Called before the admin transaction that wrote the rows
    commits, so capture never reads a waiting row without its marks."""
    kept = kept_mark_keys()
    if not kept or not marks:
        return
    rows = [
        {
            "enrollment_id": enrollment_id,
            **{key: values.get(key, DEFAULTS[key]) for key in MARK_KEYS},
        }
        for enrollment_id, values in marks.items()
        if any(key in values for key in kept)
    ]
    rows = [{**row, "waitlisted_by_admin": bool(row["waitlisted_by_admin"])} for row in rows]
    with state_engine.begin() as connection:
        upsert(connection, state.waiting_marks, rows)


def marks_of(values: Mapping[str, Any]) -> dict[str, Any]:
    """The `MARK_KEYS` among these enrollment values."""
    return {key: values[key] for key in MARK_KEYS if key in values}
