"""Reconciling a course: what this school holds of each origin school, against what the origin
says it has (`vhs-sync reconcile`). Pure: digests and the drift between two sets of entries.

An entry is one enrollment of an origin school: participant number, version, status. This
school holds an origin's entries in `state.applied`; the origin's own are its published
shadow (`state.published`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

CANCELLED = "S"

Entries = Mapping[int, tuple[int, str]]  # participant number -> (version, status)


def digest(entries: Entries) -> str:
    """The same for the same entries, whatever their order."""
    text = "\n".join(f"{n}:{v}:{s}" for n, (v, s) in sorted(entries.items()))
    return hashlib.sha256(text.encode()).hexdigest()


def entries_of(rows: Iterable[tuple[int, int, str]]) -> dict[int, tuple[int, str]]:
    return {number: (version, status) for number, version, status in rows}


@dataclass(frozen=True, slots=True)
class OriginDrift:
    """How what this school holds of one origin school differs from what the origin has.

    `missing`: the origin has it (not cancelled), this school does not hold it. `stale`: this
    school holds an older version. `extra`: this school holds an enrollment (not cancelled)
    the origin does not have. `ahead`: this school holds a newer version than the origin
    says it has (the origin lost its state). `unanswered`: the origin gave no answer.
    """

    origin: str
    held: int = 0
    told: int | None = None
    missing: tuple[int, ...] = ()
    stale: tuple[int, ...] = ()
    extra: tuple[int, ...] = ()
    ahead: tuple[int, ...] = ()
    unanswered: bool = False

    @property
    def drifted(self) -> bool:
        return bool(self.missing or self.stale or self.extra or self.ahead or self.unanswered)

    @property
    def repairable(self) -> bool:
        """What a new copy from the origin fixes: entries missing or stale here."""
        return bool(self.missing or self.stale)


def compare(origin: str, held: Entries, told: Entries) -> OriginDrift:
    missing, stale, ahead = [], [], []
    for number, (version, status) in told.items():
        mine = held.get(number)
        if mine is None:
            if status != CANCELLED:  # a cancellation never held changes no occupancy
                missing.append(number)
        elif mine[0] < version:
            stale.append(number)
        elif mine[0] > version:
            ahead.append(number)
    extra = [n for n, (_, status) in held.items() if n not in told and status != CANCELLED]
    return OriginDrift(
        origin,
        held=len(held),
        told=len(told),
        missing=tuple(sorted(missing)),
        stale=tuple(sorted(stale)),
        extra=tuple(sorted(extra)),
        ahead=tuple(sorted(ahead)),
    )


@dataclass(frozen=True, slots=True)
class LocalIssue:
    """A local action that breaks sync: found in this school's admin DB, never personal data.

    kinds: `foreign_edited` (a foreign row's status changed here), `foreign_deleted` (a
    foreign row removed here), `participant_merged` (an enrollment's participant number
    vanished or changed while sync keyed it), `course_renumbered` (a shared course's local
    number changed, or its rows moved to another course).
    """

    kind: str
    course: str
    enrollment_id: int | None
    detail: str
    origin: str | None = None  # the school a foreign row belongs to

    @property
    def repairable(self) -> bool:
        """A foreign row removed or edited here is booked again as its origin has it when the
        origin answers a sync request (the answers are applied as repairs)."""
        return self.kind in ("foreign_deleted", "foreign_edited") and self.origin is not None


@dataclass(frozen=True, slots=True)
class CourseReport:
    master: str
    course: str  # the master's course number
    local_number: str | None
    origins: tuple[OriginDrift, ...] = ()
    local: tuple[LocalIssue, ...] = ()
    repair_requested: tuple[str, ...] = field(default=())

    @property
    def drifted(self) -> bool:
        return any(o.drifted for o in self.origins) or bool(self.local)

    def counts(self) -> dict[str, int]:
        """Per kind of drift, how many enrollments (or issues) this course has."""
        totals = {
            kind: sum(len(getattr(o, kind)) for o in self.origins)
            for kind in ("missing", "stale", "extra", "ahead")
        }
        totals["unanswered"] = sum(o.unanswered for o in self.origins)
        for issue in self.local:
            totals[issue.kind] = totals.get(issue.kind, 0) + 1
        return totals
