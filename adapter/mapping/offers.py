"""Course offers between the admin DB's course row and the network, and the words of a course
header (weekday, times, duration) as the seed's listings print them. Pure: no I/O."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import fields
from datetime import date, time
from decimal import Decimal
from typing import Any

from adapter.domain import CourseRef
from adapter.domain.offers import CourseOffer

WEEKDAYS = ("Mo", "Di", "Mi", "Do", "Fr", "Sa", "So")
# From this hour on a session is an evening ("4 Abende"), as the admin product counts them.
EVENING = time(17, 0)

# The course-row fields a subscriber's course follows when the master changes its offer. The
# title and fee stay the subscriber's own (it sells the course under its own terms); capacity
# follows through the master's course settings (`CourseSettingsChanged`).
FOLLOWED = (
    "starts_on",
    "ends_on",
    "time_from",
    "time_to",
    "sessions",
    "teaching_units",
    "place",
    "lecturer",
    "registration_deadline",
    "cancelled",
)


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _count(value: Any) -> int | None:
    return None if value is None or value == "" else int(value)


def offer_of_row(row: Mapping[str, Any], master: str) -> CourseOffer:
    """The offer of one of `master`'s shared course rows (keys as in `admin.courses`); a
    column the admin DB lacks counts as unknown."""
    units = row.get("teaching_units")
    return CourseOffer(
        course=CourseRef(master, row.get("master_number") or row["number"]),
        title=row.get("title") or "",
        fee=Decimal(row.get("fee") or 0).quantize(Decimal("0.01")),
        starts_on=row.get("starts_on"),
        ends_on=row.get("ends_on"),
        time_from=row.get("time_from"),
        time_to=row.get("time_to"),
        sessions=_count(row.get("sessions")),
        teaching_units=None if units is None else Decimal(units).quantize(Decimal("0.01")),
        place=_text(row.get("place")),
        lecturer=_text(row.get("lecturer")),
        max_participants=_count(row.get("max_participants")),
        min_participants=_count(row.get("min_participants")),
        registration_deadline=row.get("registration_deadline"),
        cancelled=bool(row.get("cancelled")),
    )


def offer_fingerprint(offer: CourseOffer) -> str:
    """Changes whenever anything the offer shows changes."""
    text = "\x1f".join(f"{f.name}={getattr(offer, f.name)!s}" for f in fields(offer))
    return hashlib.sha256(text.encode()).hexdigest()


def followed_columns(offer: CourseOffer) -> dict[str, Any]:
    """What a subscriber's course row takes over from the master's offer, on every change."""
    return {name: getattr(offer, name) for name in FOLLOWED}


def subscribed_course(offer: CourseOffer, local_number: str) -> dict[str, Any]:
    """The course row a subscriber creates from an offer (`vhs-sync subscribe`): the offer's
    title, fee, dates, times, place, lecturer and capacity, shared with its master."""
    return {
        "number": local_number,
        "title": offer.title,
        "fee": offer.fee,
        "max_participants": offer.max_participants,
        "min_participants": offer.min_participants,
        "master_school": offer.course.master_school,
        "master_number": offer.course.number,
        **followed_columns(offer),
    }


def weekday(day: date) -> str:
    """`Mo`, as the seed's header writes the day before a date."""
    return WEEKDAYS[day.weekday()]


def day_text(day: date) -> str:
    """`Mo, 29.09.2025`."""
    return f"{weekday(day)}, {day:%d.%m.%Y}"


def time_text(moment: time) -> str:
    """`18:00 Uhr`."""
    return f"{moment:%H:%M} Uhr"


def duration_text(sessions: int | None, time_from: time | None) -> str | None:
    """`4 Abende`, `1 Abend`, or `3 Termine` for sessions that start before the evening."""
    if sessions is None:
        return None
    evening = time_from is not None and time_from >= EVENING
    one, many = ("Abend", "Abende") if evening else ("Termin", "Termine")
    return f"{sessions} {one if sessions == 1 else many}"


def offer_as_dict(offer: CourseOffer) -> dict[str, Any]:
    """The JSON form of an offer (`vhs-sync offers --json`)."""
    return {
        "master": offer.course.master_school,
        "course": offer.course.number,
        "title": offer.title,
        "fee": str(offer.fee),
        "starts_on": offer.starts_on.isoformat() if offer.starts_on else None,
        "ends_on": offer.ends_on.isoformat() if offer.ends_on else None,
        "weekday": weekday(offer.starts_on) if offer.starts_on else None,
        "time_from": f"{offer.time_from:%H:%M}" if offer.time_from else None,
        "time_to": f"{offer.time_to:%H:%M}" if offer.time_to else None,
        "duration": duration_text(offer.sessions, offer.time_from),
        "teaching_units": str(offer.teaching_units) if offer.teaching_units is not None else None,
        "place": offer.place,
        "lecturer": offer.lecturer,
        "max": offer.max_participants,
        "min": offer.min_participants,
        "registration_deadline": (
            offer.registration_deadline.isoformat() if offer.registration_deadline else None
        ),
        "cancelled": offer.cancelled,
        "withdrawn": offer.withdrawn,
    }
