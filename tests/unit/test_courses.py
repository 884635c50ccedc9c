"""Course settings between the admin DB's course row and the wire (D1-D4)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from adapter.domain import CourseRef, CourseSettings
from adapter.mapping.courses import course_settings, settings_columns, settings_fingerprint
from adapter.messages import CourseSettingsChanged, course_settings_changed, settings_of

ROW: dict[str, Any] = {
    "number": "26-100",
    "max_participants": 12,
    "min_participants": 3,
    "desired_participants": None,
    "waitlist_enabled": True,
    "waitlist_max": None,
    "waitlist_mode": "dominant",
    "auto_advance": False,
    "max_per_school": None,
    "registration_open": True,
}


@pytest.mark.parametrize("empty", [None, "", "  "])
def test_an_empty_maximum_is_no_maximum_not_zero(empty: object) -> None:
    """An empty TEIL_MAX reads as no maximum known (None), never as a course of 0 places."""
    settings = course_settings({**ROW, "max_participants": empty})
    assert settings.max_participants is None
    assert settings_columns(settings)["max_participants"] is None


def test_a_maximum_of_zero_stays_zero() -> None:
    """A maximum the master set to 0 is a real maximum: the course is full."""
    settings = course_settings({**ROW, "max_participants": 0, "min_participants": 0})
    assert settings.max_participants == 0


def test_no_maximum_travels_as_null_and_back() -> None:
    """The master's "no maximum" reaches a subscriber as no maximum, distinct from 0."""
    settings = CourseSettings(None, min_participants=2)
    event = course_settings_changed(
        CourseRef("vhs-sr", "26-100"),
        settings,
        version=1,
        event_id="e-1",
        time=datetime(2026, 1, 1, tzinfo=UTC),
    )
    wire = CourseSettingsChanged.model_validate_json(event.model_dump_json())
    assert '"max_participants":null' in event.model_dump_json()
    assert settings_of(wire.data.settings) == settings
    assert settings_fingerprint(settings) != settings_fingerprint(CourseSettings(0))
