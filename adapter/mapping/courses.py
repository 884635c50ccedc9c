"""Course settings (D1-D4) between the admin DB's course row and the wire."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from adapter.domain.capacity import CourseSettings, WaitlistMode


class InvalidCourseSettingsError(ValueError):
    """A course row whose settings contradict each other (say, min above max)."""


def _maximum(value: Any) -> int | None:
    """An empty `TEIL_MAX` is no maximum known, never a maximum of 0."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return int(value)


def course_settings(row: Mapping[str, Any]) -> CourseSettings:
    """The settings of a course row (keys as in `adapter.store.admin.courses`). An empty
    maximum stays None: the desk asks the master, or (at the master) sets no limit. A
    cancelled course (`ABGESAGT`, where the admin DB has it) is closed for registration."""
    try:
        return CourseSettings(
            max_participants=_maximum(row["max_participants"]),
            min_participants=int(row["min_participants"] or 0),
            desired_participants=row["desired_participants"],
            waitlist_enabled=bool(row["waitlist_enabled"]),
            waitlist_max=row["waitlist_max"],
            mode=WaitlistMode(row["waitlist_mode"] or WaitlistMode.DOMINANT),
            auto_advance=bool(row["auto_advance"]),
            max_per_school=row["max_per_school"],
            registration_open=bool(row["registration_open"]) and not row.get("cancelled"),
        )
    except ValueError as error:
        raise InvalidCourseSettingsError(f"course {row.get('number')}: {error}") from error


def settings_columns(settings: CourseSettings) -> dict[str, Any]:
    """The course-row fields that hold these settings."""
    return {
        "max_participants": settings.max_participants,
        "min_participants": settings.min_participants,
        "desired_participants": settings.desired_participants,
        "waitlist_enabled": settings.waitlist_enabled,
        "waitlist_max": settings.waitlist_max,
        "waitlist_mode": settings.mode.value,
        "auto_advance": settings.auto_advance,
        "max_per_school": settings.max_per_school,
        "registration_open": settings.registration_open,
    }


def settings_fingerprint(settings: CourseSettings) -> str:
    text = "\x1f".join(f"{k}={v}" for k, v in sorted(settings_columns(settings).items()))
    return hashlib.sha256(text.encode()).hexdigest()
