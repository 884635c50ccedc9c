"""A course's settings (D1-D4) and master school as an operator sets them
(`vhs-sync course settings`), wherever they live (`adapter.store.kept`): in the course row of
the reference schema, in the state DB where a real KuferSQL has no column for them.

Settings are the master's: a subscriber's course follows what its master publishes. The
master school names who that is, at the master (itself) and at each subscriber.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Engine

from adapter.mapping.courses import InvalidCourseSettingsError, course_settings
from adapter.store import admin, kept


class CourseSettingsError(ValueError):
    """A change the course's settings cannot take, with a message an operator can act on."""


class CourseNotFoundError(LookupError):
    """No course with that number in this school's admin DB."""


SHOWN = (
    "master_school",
    "master_number",
    "max_participants",
    "min_participants",
    *kept.SETTINGS_KEYS,
)


def read_settings(admin_engine: Engine, state_engine: Engine, number: str) -> dict[str, Any]:
    """The course's settings and master, by English key (as `SHOWN`), and where each is kept."""
    with admin_engine.connect() as connection:
        rows = kept.course_rows(connection, state_engine, admin.courses.c.number == number)
    if not rows:
        raise CourseNotFoundError(f"course {number} is not in this school's admin DB")
    row = rows[0]
    return {key: row[key] for key in SHOWN}


def where_kept() -> dict[str, str]:
    """Per shown field: `admin DB` or `state DB`."""
    return {
        key: "admin DB" if key == "master_number" or admin.has("courses", key) else "state DB"
        for key in SHOWN
    }


def change_settings(
    admin_engine: Engine,
    state_engine: Engine,
    school: str,
    number: str,
    changes: Mapping[str, Any],
    now: datetime,
) -> dict[str, Any]:
    """Set fields of `kept.COURSE_KEPT`; returns the settings after. Refused: settings at a
    subscriber (they follow the master), settings that contradict each other."""
    unknown = set(changes) - set(kept.COURSE_KEPT)
    if unknown:
        raise CourseSettingsError(f"no such setting: {', '.join(sorted(unknown))}")
    current = read_settings(admin_engine, state_engine, number)
    merged = {**current, **changes}
    settings = {key: value for key, value in changes.items() if key != "master_school"}
    master = merged["master_school"]
    if settings and master is not None and master != school:
        raise CourseSettingsError(
            f"course {number} follows the settings of its master {master}: change them there"
        )
    try:
        course_settings({**merged, "number": number})
    except InvalidCourseSettingsError as error:
        raise CourseSettingsError(str(error)) from error
    values = dict(changes)
    if admin.writable("courses", values):
        values["modified_at"] = now.replace(microsecond=0)  # capture publishes the change
    with admin_engine.begin() as connection:
        if not kept.write_course_fields(connection, state_engine, number, values, now):
            raise CourseNotFoundError(f"course {number} is not in this school's admin DB")
    return read_settings(admin_engine, state_engine, number)
