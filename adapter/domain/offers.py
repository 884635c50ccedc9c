"""A course offer: what a master publishes of a shared course so that other schools can sell
it (issue 9). Pure: no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, time
from decimal import Decimal

from adapter.domain.enrollment import CourseRef


@dataclass(frozen=True, slots=True)
class CourseOffer:
    """A master's shared course as other schools see it before and after subscribing.

    Dates, times, place, lecturer and the registration deadline are None where the master's
    course row does not have them; `cancelled`: the master cancelled the course; `withdrawn`:
    the master no longer shares it (no new subscriptions; the last offer it made)."""

    course: CourseRef
    title: str
    fee: Decimal
    starts_on: date | None = None
    ends_on: date | None = None
    time_from: time | None = None
    time_to: time | None = None
    sessions: int | None = None
    teaching_units: Decimal | None = None
    place: str | None = None
    lecturer: str | None = None
    max_participants: int | None = None
    min_participants: int | None = None
    registration_deadline: date | None = None
    cancelled: bool = False
    withdrawn: bool = False
