"""Property tests: a small in-test course driven only by the capacity functions keeps its limits."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from adapter.domain.capacity import (
    CourseSettings,
    Occupancy,
    Registered,
    Waiting,
    Waitlisted,
    WaitlistMode,
    can_promote,
    decide_registration,
    next_to_advance,
)
from adapter.domain.enrollment import CourseRef, EnrollmentKey, Status

COURSE = CourseRef("vhs-a", "25-00001")
SCHOOLS = ("vhs-a", "vhs-b")


@dataclass
class Entry:
    key: EnrollmentKey
    status: Status
    blocked: bool


@dataclass
class Course:
    """The enrollments of one course; every change goes through the capacity functions."""

    settings: CourseSettings
    entries: list[Entry] = field(default_factory=list)

    def occupancy(self) -> Occupancy:
        counts = Counter(e.status for e in self.entries)
        return Occupancy(counts[Status.REGISTERED], counts[Status.WAITLISTED])

    def school_registered(self) -> Counter[str]:
        return Counter(e.key.origin_school for e in self.entries if e.status is Status.REGISTERED)

    def active(self, status: Status) -> list[Entry]:
        return [e for e in self.entries if e.status is status]

    def register(self, school: str, *, blocked: bool, consent: bool) -> None:
        decision = decide_registration(
            self.settings,
            self.occupancy(),
            self.school_registered()[school],
            blocked=blocked,
            privacy_consent=consent,
        )
        if isinstance(decision, Registered | Waitlisted):
            key = EnrollmentKey(school, len(self.entries), COURSE)
            self.entries.append(Entry(key, decision.status, blocked))

    def advance(self) -> None:
        waiting = [
            Waiting(e.key, e.key.participant_number, str(e.key), blocked=e.blocked)
            for e in self.active(Status.WAITLISTED)
        ]
        chosen = next_to_advance(
            self.settings, self.occupancy(), waiting, school_registered=self.school_registered()
        )
        keys = {w.key for w in chosen}
        for entry in self.entries:
            if entry.key in keys:
                entry.status = Status.REGISTERED


settings_strategy = st.builds(
    CourseSettings,
    max_participants=st.integers(0, 5),
    waitlist_enabled=st.booleans(),
    waitlist_max=st.none() | st.integers(0, 4),
    mode=st.sampled_from(WaitlistMode),
    auto_advance=st.booleans(),
    max_per_school=st.none() | st.integers(0, 3),
)

mostly_false = st.sampled_from([False, False, False, True])
registration = st.tuples(
    st.just("register"), st.sampled_from(SCHOOLS), mostly_false, mostly_false.map(lambda b: not b)
)
operations = st.lists(
    st.one_of(
        registration,
        registration,  # twice: courses must fill up before waitlists and cancellations matter
        st.tuples(st.just("cancel"), st.integers(0, 50)),
        st.tuples(st.just("promote"), st.integers(0, 50)),
    ),
    max_size=40,
)


def run(
    settings: CourseSettings, ops: list[tuple[object, ...]]
) -> list[tuple[str, Occupancy, Occupancy]]:
    """Apply the operations, checking per-school limits; list (name, before, after) per step."""
    course = Course(settings)
    steps: list[tuple[str, Occupancy, Occupancy]] = []
    for op in ops:
        before = course.occupancy()
        before_school = course.school_registered()
        match op:
            case ("register", str(school), bool(blocked), bool(consent)):
                course.register(school, blocked=blocked, consent=consent)
            case ("cancel", int(index)):
                candidates = course.active(Status.REGISTERED) + course.active(Status.WAITLISTED)
                if candidates:
                    candidates[index % len(candidates)].status = Status.CANCELLED
            case ("promote", int(index)):
                candidates = course.active(Status.WAITLISTED)
                if candidates:
                    assert can_promote(settings, before).allowed
                    candidates[index % len(candidates)].status = Status.REGISTERED
        course.advance()
        after = course.occupancy()
        name = str(op[0])
        if name != "promote" and settings.max_per_school is not None:
            for school, held in course.school_registered().items():
                assert held <= max(settings.max_per_school, before_school[school])
        steps.append((name, before, after))
    return steps


@hypothesis_settings(max_examples=500)  # overfilling needs a full course, a queue and a cancel
@given(settings_strategy, operations)
def test_regular_places_exceed_max_only_by_admin_promotion(
    settings: CourseSettings, ops: list[tuple[object, ...]]
) -> None:
    """Registrations, cancellations and auto advance never push registered past max (D2, D3)."""
    for name, before, after in run(settings, ops):
        if name != "promote":
            assert after.registered <= max(settings.max_participants, before.registered)


@given(settings_strategy, operations)
def test_waitlist_never_exceeds_its_maximum(
    settings: CourseSettings, ops: list[tuple[object, ...]]
) -> None:
    """The waitlist never holds more than waitlist_max, and nothing without a waitlist (D1)."""
    capacity = settings.waitlist_capacity
    for _, _, after in run(settings, ops):
        assert capacity is None or after.waitlisted <= capacity


@given(settings_strategy, operations)
def test_per_school_limit_binds_all_but_the_admin(
    settings: CourseSettings, ops: list[tuple[object, ...]]
) -> None:
    """No registration or auto advance takes a school past its maximum (D4)."""
    run(settings, ops)  # the check sits in run(), per step, against the school counts


@given(settings_strategy, operations)
def test_blocked_persons_get_a_place_only_from_the_admin(
    settings: CourseSettings, ops: list[tuple[object, ...]]
) -> None:
    """A blocked person's registration never becomes a regular place by itself (D4)."""
    course = Course(settings)
    for op in ops:
        if op[0] == "register":
            course.register(str(op[1]), blocked=True, consent=True)
            course.advance()
    assert not course.active(Status.REGISTERED)


dominant_settings = st.builds(
    CourseSettings,
    max_participants=st.integers(0, 5),
    waitlist_max=st.none() | st.integers(0, 4),
    mode=st.just(WaitlistMode.DOMINANT),
    auto_advance=st.just(False),
)


@given(dominant_settings, operations)
def test_dominant_registration_never_jumps_the_waitlist(
    settings: CourseSettings, ops: list[tuple[object, ...]]
) -> None:
    """In dominant mode without auto advance nobody registers while someone waits (D2)."""
    for name, before, after in run(settings, ops):
        if name == "register" and before.waitlisted:
            assert after.registered == before.registered


@given(settings_strategy, operations)
def test_all_on_waitlist_places_nobody_by_itself(
    settings: CourseSettings, ops: list[tuple[object, ...]]
) -> None:
    """In all-on-waitlist mode only the admin moves anyone onto a regular place (D2)."""
    for name, before, after in run(settings, ops):
        if name != "promote" and settings.mode is WaitlistMode.ALL_ON_WAITLIST:
            assert after.registered <= before.registered
