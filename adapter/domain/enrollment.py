"""Enrollments as the network knows them: keys, statuses, the synced personal fields."""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from typing import Final


class Status(enum.StrEnum):
    """The three enrollment statuses that are synced (V3)."""

    REGISTERED = "A"
    CANCELLED = "S"
    WAITLISTED = "W"


# The statuses of an enrollment that holds or waits for a place (not cancelled).
ACTIVE_STATUSES = (Status.REGISTERED.value, Status.WAITLISTED.value)


class Role(enum.StrEnum):
    """A school's role in one shared course."""

    MASTER = "master"
    SUBSCRIBER = "subscriber"


@dataclass(frozen=True, slots=True)
class CourseRef:
    """A shared course across the network: its master school and the master's course number."""

    master_school: str
    number: str

    def role_of(self, school: str) -> Role:
        return Role.MASTER if school == self.master_school else Role.SUBSCRIBER


@dataclass(frozen=True, slots=True)
class EnrollmentKey:
    """The network key of an enrollment (DESIGN decision 2): participant numbers are the key."""

    origin_school: str
    participant_number: int
    course: CourseRef


# The longest value of each personal field the wire carries.
PERSONAL_FIELD_LIMITS = {"last_name": 100, "first_name": 100, "main_email": 254, "main_phone": 50}


@dataclass(frozen=True, slots=True)
class PersonalData:
    """The only personal fields that ever leave a school (V5, V10), and only to the master."""

    last_name: str
    first_name: str
    main_email: str | None = None
    main_phone: str | None = None


@dataclass(frozen=True, slots=True)
class EnrollmentState:
    """The full current state of one enrollment as its origin school sees it."""

    key: EnrollmentKey
    status: Status
    registered_on: date | None
    personal: PersonalData | None
    waitlisted_since: datetime | None = None
    waitlisted_by_admin: bool = False

    def anonymised(self) -> EnrollmentState:
        """The same state without personal data: what every subscriber may see (V9)."""
        return replace(self, personal=None)


def next_version(previous: int | None, now_us: int) -> int:
    """A version that only grows (DESIGN decision 1).

    Taken from the clock in microseconds so that it keeps growing even when the adapter's
    state DB is lost, and from the previous version so that it grows when the clock does not.
    """
    return now_us if previous is None or now_us > previous else previous + 1


# How far a version may lie beyond a receiver's clock. A version is its origin's clock in
# microseconds, so one far ahead is a broken clock or a forgery, and it would freeze the
# enrollment (or course setting) at every receiver until that time came (issue 7).
MAX_VERSION_AHEAD: Final = timedelta(hours=1)


def is_too_far_ahead(version: int, now_us: int) -> bool:
    """Whether a version lies more than `MAX_VERSION_AHEAD` beyond the clock `now_us`."""
    return version > now_us + MAX_VERSION_AHEAD // timedelta(microseconds=1)


def is_newer(incoming: int, applied: int | None) -> bool:
    """Whether an event with version `incoming` may replace what a receiver holds."""
    return applied is None or incoming > applied
