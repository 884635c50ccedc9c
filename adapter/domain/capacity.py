"""Capacity and waitlist decisions for one shared course (D1-D4, D6). Pure: no I/O, no clock.

Counts are always taken across all schools of the course (V2, V13): the caller sums the
statuses of every enrollment it holds, local and foreign, into an `Occupancy`.

The dominant-mode rule (D2: "from the first waitlisted registration on, all further
registrations go to the waitlist, even if a place frees up") is *derived* from the current
waitlist, not stored as a latch: the course counts as closed for regular registrations while
anyone waits (dominant) or while anyone waits who got there by registering rather than by an
admin move (manual). The seed only states when the rule starts, never that it outlives the
waitlist; deriving it keeps the decision a function of the synced enrollments alone, so every
school reaches the same answer without an extra synced flag. Once the waitlist is empty (all
promoted or cancelled) nobody can be overtaken and regular registration reopens.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from adapter.domain.enrollment import EnrollmentKey, Status


class WaitlistMode(enum.StrEnum):
    """How registrations are placed once a waitlist is involved (D2)."""

    DOMINANT = "dominant"
    FREE_PLACES_FIRST = "free_places_first"
    ALL_ON_WAITLIST = "all_on_waitlist"
    MANUAL = "manual"


@dataclass(frozen=True, slots=True)
class CourseSettings:
    """A course's limits and waitlist policy (D1-D4).

    `max_participants=None` means no maximum is known (an empty `TEIL_MAX`): no place is
    ever "full" for want of one. At the master that is a course without a limit; a
    subscriber's desk asks the master (who allots regular places) instead of deciding.
    `waitlist_max=None` means an unlimited waitlist; `max_per_school=None` means no
    per-school limit. A course without a waitlist (`waitlist_enabled=False`) behaves as if
    its waitlist had size zero.
    """

    max_participants: int | None
    min_participants: int = 0
    desired_participants: int | None = None
    waitlist_enabled: bool = True
    waitlist_max: int | None = None
    mode: WaitlistMode = WaitlistMode.DOMINANT
    auto_advance: bool = False
    max_per_school: int | None = None
    registration_open: bool = True

    def __post_init__(self) -> None:
        if self.min_participants < 0:
            raise ValueError("min_participants must not be negative")
        maximum = self.max_participants
        if maximum is not None and self.min_participants > maximum:
            raise ValueError("need 0 <= min_participants <= max_participants")
        desired = self.desired_participants
        if desired is not None and not (
            self.min_participants <= desired and (maximum is None or desired <= maximum)
        ):
            raise ValueError("desired_participants must lie between min and max")
        if self.waitlist_max is not None and self.waitlist_max < 0:
            raise ValueError("waitlist_max must not be negative")
        if self.max_per_school is not None and self.max_per_school < 0:
            raise ValueError("max_per_school must not be negative")

    @property
    def waitlist_capacity(self) -> int | None:
        """Places on the waitlist: 0 without a waitlist, None when unlimited (D1)."""
        return self.waitlist_max if self.waitlist_enabled else 0


@dataclass(frozen=True, slots=True)
class Occupancy:
    """A course's occupancy across all schools (V13).

    `waitlisted` counts every W enrollment; `waitlisted_by_admin` is the part of it that an
    admin moved to the waitlist by a status change (relevant for the manual mode, D2).
    """

    registered: int
    waitlisted: int = 0
    waitlisted_by_admin: int = 0

    def __post_init__(self) -> None:
        if self.registered < 0 or self.waitlisted < 0:
            raise ValueError("counts must not be negative")
        if not 0 <= self.waitlisted_by_admin <= self.waitlisted:
            raise ValueError("need 0 <= waitlisted_by_admin <= waitlisted")

    @property
    def waitlisted_by_registration(self) -> int:
        """Entries that reached the waitlist by registering (blocked and per-school included)."""
        return self.waitlisted - self.waitlisted_by_admin

    def free(self, settings: CourseSettings) -> int | None:
        """Free regular places, never negative even after an admin exceeded max (V13, D3);
        None without a maximum (no limit known)."""
        if settings.max_participants is None:
            return None
        return max(0, settings.max_participants - self.registered)


class Refusal(enum.StrEnum):
    """Why a registration is refused outright."""

    WAITLIST_FULL = "waitlist_full"  # it would wait, but the waitlist is full or not kept
    NO_PRIVACY_CONSENT = "no_privacy_consent"  # D6
    COURSE_CLOSED = "course_closed"  # registration is not open


class WaitReason(enum.StrEnum):
    """Why a registration went to the waitlist rather than onto a regular place."""

    FULL = "full"  # no free regular place (D2)
    WAITLIST_FIRST = "waitlist_first"  # others wait, dominant/manual rule (D2)
    ALL_ON_WAITLIST = "all_on_waitlist"  # mode: the admin promotes everyone (D2)
    SCHOOL_LIMIT = "school_limit"  # the school reached its per-school maximum (D4)
    BLOCKED = "blocked"  # blocked persons always wait (D4)


@dataclass(frozen=True, slots=True)
class Registered:
    """The registration takes a regular place (status A)."""

    status: Status = Status.REGISTERED


@dataclass(frozen=True, slots=True)
class Waitlisted:
    """The registration goes to the waitlist (status W), with the reason."""

    reason: WaitReason
    status: Status = Status.WAITLISTED


@dataclass(frozen=True, slots=True)
class Refused:
    """The registration is not accepted at all; no enrollment is created."""

    reason: Refusal


Decision = Registered | Waitlisted | Refused


def waitlist_goes_first(settings: CourseSettings, occupancy: Occupancy) -> bool:
    """Whether new registrations must queue behind the waitlist even if a place is free (D2).

    Dominant: while anyone waits. Manual: while anyone waits who registered onto the
    waitlist (admin moves do not count). Free places first: never. With automatic advance
    (D3) the rule is lifted, because the system itself fills freed places from the waitlist:
    the caller applies `next_to_advance` before deciding a registration, so a place still
    free afterwards is one that no waiting entry can take.
    """
    if settings.auto_advance:
        return False
    match settings.mode:
        case WaitlistMode.DOMINANT:
            return occupancy.waitlisted > 0
        case WaitlistMode.MANUAL:
            return occupancy.waitlisted_by_registration > 0
        case WaitlistMode.FREE_PLACES_FIRST | WaitlistMode.ALL_ON_WAITLIST:
            return False


def _wait_reason(
    settings: CourseSettings, occupancy: Occupancy, school_registered: int, *, blocked: bool
) -> WaitReason | None:
    if blocked:
        return WaitReason.BLOCKED
    if settings.mode is WaitlistMode.ALL_ON_WAITLIST:
        return WaitReason.ALL_ON_WAITLIST
    if settings.max_per_school is not None and school_registered >= settings.max_per_school:
        return WaitReason.SCHOOL_LIMIT
    if occupancy.free(settings) == 0:  # never without a maximum: that is not "full"
        return WaitReason.FULL
    if waitlist_goes_first(settings, occupancy):
        return WaitReason.WAITLIST_FIRST
    return None


def decide_registration(
    settings: CourseSettings,
    occupancy: Occupancy,
    school_registered: int,
    *,
    blocked: bool,
    privacy_consent: bool,
) -> Decision:
    """Place one new registration: a regular place, the waitlist, or a refusal.

    `school_registered` is the number of regular places (A) the registering person's school
    already holds in this course (D4). In order:

    - no privacy consent: refused (D6); registration not open: refused;
    - blocked persons, the all-on-waitlist mode, a school at its maximum (D4), a full course
      and the dominant/manual queue rule (D2) send the registration to the waitlist;
    - if it must wait but the waitlist is full or not kept, it is refused (WAITLIST_FULL).
      This holds for blocked persons too: D4 forbids them a regular place, so with no
      waitlist place left the only safe answer is a refusal.
    """
    if not privacy_consent:
        return Refused(Refusal.NO_PRIVACY_CONSENT)
    if not settings.registration_open:
        return Refused(Refusal.COURSE_CLOSED)
    reason = _wait_reason(settings, occupancy, school_registered, blocked=blocked)
    if reason is None:
        return Registered()
    capacity = settings.waitlist_capacity
    if capacity is not None and occupancy.waitlisted >= capacity:
        return Refused(Refusal.WAITLIST_FULL)
    return Waitlisted(reason)


@dataclass(frozen=True, slots=True)
class Waiting:
    """One waitlist entry as `next_to_advance` needs it.

    Entries are ordered by `waiting_since` (a registration timestamp, e.g. microseconds,
    given by the caller) and then `tie_breaker` (any stable string, e.g. school and
    participant number), so that every school computes the same order.
    """

    key: EnrollmentKey
    waiting_since: int
    tie_breaker: str
    blocked: bool = False
    by_admin: bool = False

    @property
    def school(self) -> str:
        return self.key.origin_school


def next_to_advance(
    settings: CourseSettings,
    occupancy: Occupancy,
    waiting: Sequence[Waiting],
    *,
    school_registered: Mapping[str, int],
) -> tuple[Waiting, ...]:
    """The waiting entries that automatic advance moves onto free regular places (D3).

    Longest waiting first. Nothing moves without `auto_advance`, nor in the all-on-waitlist
    mode (the admin promotes each entry there). Skipped, and left for the admin: blocked
    persons (D4), entries an admin moved to the waitlist (undoing that is the admin's call)
    and entries whose school is at its maximum (D4), counting those advanced in this call.
    `school_registered` maps a school to its regular places in this course (missing: 0).
    """
    if not settings.auto_advance or settings.mode is WaitlistMode.ALL_ON_WAITLIST:
        return ()
    free = occupancy.free(settings)  # None: no maximum, every entry may move up
    per_school = dict(school_registered)
    chosen: list[Waiting] = []
    for entry in sorted(waiting, key=lambda w: (w.waiting_since, w.tie_breaker)):
        if free is not None and len(chosen) == free:
            break
        if entry.blocked or entry.by_admin:
            continue
        held = per_school.get(entry.school, 0)
        if settings.max_per_school is not None and held >= settings.max_per_school:
            continue
        per_school[entry.school] = held + 1
        chosen.append(entry)
    return tuple(chosen)


@dataclass(frozen=True, slots=True)
class PromotionCheck:
    """The answer to an admin's "waitlist place set to regular place" (D3)."""

    allowed: bool
    exceeds_max: bool


def can_promote(settings: CourseSettings, occupancy: Occupancy) -> PromotionCheck:
    """An admin may always promote a waiting entry, even past max (D3).

    `exceeds_max` says whether the promotion puts the course over its maximum, so that the
    caller can warn; it never forbids (and never exceeds a maximum that is not known).
    Per-school limits and blocking bind only the automatic decisions (D4), not the admin.
    """
    maximum = settings.max_participants
    return PromotionCheck(
        allowed=True, exceeds_max=maximum is not None and occupancy.registered + 1 > maximum
    )
