"""Capacity and waitlist decisions (D1-D4, D6), including the seed's three worked examples."""

from __future__ import annotations

from typing import Any

import pytest

from adapter.domain.capacity import (
    CourseSettings,
    Occupancy,
    Refusal,
    Refused,
    Registered,
    Waiting,
    Waitlisted,
    WaitlistMode,
    WaitReason,
    can_promote,
    decide_registration,
    next_to_advance,
    waitlist_goes_first,
)
from adapter.domain.enrollment import CourseRef, EnrollmentKey, Status

COURSE = CourseRef("vhs-a", "25-64901B")


def register(
    settings: CourseSettings,
    occupancy: Occupancy,
    school_registered: int = 0,
    *,
    blocked: bool = False,
    privacy_consent: bool = True,
) -> Registered | Waitlisted | Refused:
    return decide_registration(
        settings, occupancy, school_registered, blocked=blocked, privacy_consent=privacy_consent
    )


def waiting(
    number: int,
    since: int,
    *,
    school: str = "vhs-a",
    blocked: bool = False,
    by_admin: bool = False,
) -> Waiting:
    key = EnrollmentKey(school, number, COURSE)
    return Waiting(key, since, f"{school}:{number}", blocked=blocked, by_admin=by_admin)


# The three worked examples of DOMAIN.md / seed 003.


def test_free_places_first_example() -> None:
    """10 of 10 and 4 of 5 waiting, one place removed: the next registration takes place 10."""
    settings = CourseSettings(10, waitlist_max=5, mode=WaitlistMode.FREE_PLACES_FIRST)
    assert register(settings, Occupancy(10, 4)) == Waitlisted(WaitReason.FULL)
    assert register(settings, Occupancy(9, 4)) == Registered()


def test_manual_example() -> None:
    """4 of 10, admin moves one to the waitlist: manual still registers, dominant queues."""
    after_move = Occupancy(registered=3, waitlisted=1, waitlisted_by_admin=1)
    manual = CourseSettings(10, mode=WaitlistMode.MANUAL)
    dominant = CourseSettings(10, mode=WaitlistMode.DOMINANT)
    assert register(manual, after_move) == Registered()
    assert register(dominant, after_move) == Waitlisted(WaitReason.WAITLIST_FIRST)


def test_rescue_swim_course_example() -> None:
    """Max 10, 5 waiting, one cancels (9 + 5): in dominant mode a newcomer must not jump ahead."""
    settings = CourseSettings(10, mode=WaitlistMode.DOMINANT)
    assert register(settings, Occupancy(9, 5)) == Waitlisted(WaitReason.WAITLIST_FIRST)


def test_rescue_swim_course_without_waitlist_priority() -> None:
    """In the same situation free-places-first lets the newcomer take place 10 (the seed's risk)."""
    settings = CourseSettings(10, mode=WaitlistMode.FREE_PLACES_FIRST)
    assert register(settings, Occupancy(9, 5)) == Registered()


# Settings and occupancy.


def test_settings_defaults() -> None:
    """A course defaults to dominant mode, an unlimited waitlist, no auto advance, open (D1)."""
    settings = CourseSettings(8)
    assert settings.mode is WaitlistMode.DOMINANT
    assert settings.waitlist_enabled
    assert settings.waitlist_capacity is None
    assert not settings.auto_advance
    assert settings.registration_open


def test_disabled_waitlist_has_zero_capacity() -> None:
    """A course without a waitlist behaves as a waitlist of size zero."""
    assert CourseSettings(8, waitlist_enabled=False, waitlist_max=5).waitlist_capacity == 0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_participants": -1},
        {"max_participants": 5, "min_participants": 6},
        {"max_participants": 5, "desired_participants": 6},
        {"max_participants": 5, "min_participants": 3, "desired_participants": 2},
        {"max_participants": 5, "waitlist_max": -1},
        {"max_participants": 5, "max_per_school": -1},
    ],
)
def test_inconsistent_settings_are_rejected(kwargs: dict[str, Any]) -> None:
    """Settings with min > max, desired outside min..max or negative limits are invalid (D1)."""
    with pytest.raises(ValueError):  # noqa: PT011 - several messages, one rule
        CourseSettings(**kwargs)


@pytest.mark.parametrize(
    ("registered", "waitlisted", "by_admin"), [(-1, 0, 0), (0, -1, 0), (0, 1, 2), (0, 0, -1)]
)
def test_inconsistent_occupancy_is_rejected(
    registered: int, waitlisted: int, by_admin: int
) -> None:
    """Counts are non-negative and admin moves are a part of the waitlist."""
    with pytest.raises(ValueError):  # noqa: PT011 - several messages, one rule
        Occupancy(registered, waitlisted, by_admin)


def test_free_is_max_minus_registered_and_never_negative() -> None:
    """Free places are max - registered, and 0 when an admin exceeded max (V13, D3)."""
    settings = CourseSettings(8)
    assert Occupancy(5).free(settings) == 3
    assert Occupancy(10).free(settings) == 0


def test_waitlisted_by_registration_excludes_admin_moves() -> None:
    """Entries that registered onto the waitlist are the waitlist minus admin moves."""
    assert Occupancy(3, waitlisted=4, waitlisted_by_admin=1).waitlisted_by_registration == 3


# Refusals.


def test_no_privacy_consent_is_refused() -> None:
    """Registration requires acknowledging the privacy notice (D6)."""
    assert register(CourseSettings(10), Occupancy(0), privacy_consent=False) == Refused(
        Refusal.NO_PRIVACY_CONSENT
    )


def test_privacy_consent_is_checked_before_anything_else() -> None:
    """Even a blocked person on a closed course is told about the missing consent first (D6)."""
    settings = CourseSettings(10, registration_open=False)
    decision = register(settings, Occupancy(0), blocked=True, privacy_consent=False)
    assert decision == Refused(Refusal.NO_PRIVACY_CONSENT)


def test_closed_registration_is_refused() -> None:
    """A course not open for registration refuses, even with free places."""
    settings = CourseSettings(10, registration_open=False)
    assert register(settings, Occupancy(0)) == Refused(Refusal.COURSE_CLOSED)


def test_full_course_without_waitlist_is_refused() -> None:
    """With no waitlist kept, a full course refuses (waitlist of size zero)."""
    settings = CourseSettings(10, waitlist_enabled=False)
    assert register(settings, Occupancy(10)) == Refused(Refusal.WAITLIST_FULL)
    assert register(settings, Occupancy(9)) == Registered()


def test_full_waitlist_is_refused() -> None:
    """When the registration would wait and the waitlist is at its maximum, it is refused (D1)."""
    settings = CourseSettings(10, waitlist_max=5)
    assert register(settings, Occupancy(10, 4)) == Waitlisted(WaitReason.FULL)
    assert register(settings, Occupancy(10, 5)) == Refused(Refusal.WAITLIST_FULL)


def test_full_waitlist_does_not_matter_when_a_place_is_given() -> None:
    """A full waitlist does not stop a registration that gets a regular place."""
    settings = CourseSettings(10, waitlist_max=5, mode=WaitlistMode.FREE_PLACES_FIRST)
    assert register(settings, Occupancy(9, 5)) == Registered()


def test_admin_moves_count_against_waitlist_max() -> None:
    """Every waiting entry takes a waitlist place, however it got there."""
    settings = CourseSettings(10, waitlist_max=2, mode=WaitlistMode.MANUAL)
    assert register(settings, Occupancy(10, 2, 2)) == Refused(Refusal.WAITLIST_FULL)


# Blocked persons and per-school limits (D4).


def test_blocked_person_waits_even_with_free_places() -> None:
    """Blocked persons always go to the waitlist (D4)."""
    decision = register(CourseSettings(10), Occupancy(0), blocked=True)
    assert decision == Waitlisted(WaitReason.BLOCKED)
    assert decision.status is Status.WAITLISTED


def test_blocked_person_is_refused_when_no_waitlist_place() -> None:
    """A blocked person never gets a regular place, so with no waitlist place it is refused."""
    no_waitlist = CourseSettings(10, waitlist_enabled=False)
    full_waitlist = CourseSettings(10, waitlist_max=1)
    assert register(no_waitlist, Occupancy(0), blocked=True) == Refused(Refusal.WAITLIST_FULL)
    assert register(full_waitlist, Occupancy(0, 1), blocked=True) == Refused(Refusal.WAITLIST_FULL)


def test_school_at_its_maximum_waits() -> None:
    """When a school reaches its per-school maximum, its further registrations wait (D4)."""
    settings = CourseSettings(10, max_per_school=3)
    assert register(settings, Occupancy(5), school_registered=2) == Registered()
    assert register(settings, Occupancy(5), school_registered=3) == Waitlisted(
        WaitReason.SCHOOL_LIMIT
    )


def test_school_over_its_maximum_waits() -> None:
    """A school already over its maximum (e.g. after an admin promotion) waits too (D4)."""
    settings = CourseSettings(10, max_per_school=3)
    assert register(settings, Occupancy(5), school_registered=4) == Waitlisted(
        WaitReason.SCHOOL_LIMIT
    )


def test_school_limit_does_not_close_the_course_in_free_places_first() -> None:
    """A registration that waited for its school's limit does not block other schools there."""
    settings = CourseSettings(10, max_per_school=3, mode=WaitlistMode.FREE_PLACES_FIRST)
    assert register(settings, Occupancy(3, 1), school_registered=0) == Registered()


# Modes (D2).


def test_dominant_fills_to_max_then_waits() -> None:
    """Dominant mode registers until max, then sends everything to the waitlist (D2)."""
    settings = CourseSettings(3)
    assert register(settings, Occupancy(2)) == Registered()
    assert register(settings, Occupancy(3)) == Waitlisted(WaitReason.FULL)


def test_dominant_keeps_waiting_after_a_place_frees() -> None:
    """Once anyone waits, dominant mode queues new registrations despite free places (D2)."""
    settings = CourseSettings(3)
    assert register(settings, Occupancy(1, 1)) == Waitlisted(WaitReason.WAITLIST_FIRST)


def test_dominant_reopens_when_the_waitlist_is_empty() -> None:
    """The dominant rule is derived from the waitlist: with nobody waiting, places are given."""
    settings = CourseSettings(3)
    assert register(settings, Occupancy(2, 0)) == Registered()


def test_dominant_with_auto_advance_gives_free_places() -> None:
    """With automatic advance the dominant rule is lifted; places left free are given (D2, D3)."""
    settings = CourseSettings(3, auto_advance=True)
    assert not waitlist_goes_first(settings, Occupancy(2, 1))
    assert register(settings, Occupancy(2, 1)) == Registered()


def test_manual_queues_behind_registered_waiters() -> None:
    """Manual mode queues like dominant when someone registered onto the waitlist (D2)."""
    settings = CourseSettings(10, mode=WaitlistMode.MANUAL)
    occupancy = Occupancy(9, waitlisted=2, waitlisted_by_admin=1)
    assert register(settings, occupancy) == Waitlisted(WaitReason.WAITLIST_FIRST)


def test_manual_fills_to_max_then_waits() -> None:
    """Manual mode still sends registrations to the waitlist when the course is full (D2)."""
    settings = CourseSettings(4, mode=WaitlistMode.MANUAL)
    assert register(settings, Occupancy(4, 1, 1)) == Waitlisted(WaitReason.FULL)


def test_free_places_first_never_queues_behind_the_waitlist() -> None:
    """Free-places-first gives any free place to the next registration (D2)."""
    settings = CourseSettings(10, mode=WaitlistMode.FREE_PLACES_FIRST)
    assert not waitlist_goes_first(settings, Occupancy(1, 5))
    assert register(settings, Occupancy(1, 5)) == Registered()


def test_all_on_waitlist_sends_everyone_to_the_waitlist() -> None:
    """In all-on-waitlist mode even the first registration waits (D2)."""
    settings = CourseSettings(10, mode=WaitlistMode.ALL_ON_WAITLIST, auto_advance=True)
    assert register(settings, Occupancy(0)) == Waitlisted(WaitReason.ALL_ON_WAITLIST)


def test_all_on_waitlist_without_waitlist_refuses_everyone() -> None:
    """All-on-waitlist with no waitlist kept can place nobody, so it refuses."""
    settings = CourseSettings(10, mode=WaitlistMode.ALL_ON_WAITLIST, waitlist_enabled=False)
    assert register(settings, Occupancy(0)) == Refused(Refusal.WAITLIST_FULL)


def test_decisions_carry_the_synced_status() -> None:
    """A regular place is status A, a waitlist place status W (V3)."""
    assert Registered().status is Status.REGISTERED
    assert Waitlisted(WaitReason.FULL).status is Status.WAITLISTED


# Automatic advance (D3).


def test_no_advance_without_auto_advance() -> None:
    """Without automatic advance nothing moves; the admin promotes (D3)."""
    settings = CourseSettings(10)
    assert next_to_advance(settings, Occupancy(5, 1), [waiting(1, 1)], school_registered={}) == ()


def test_no_advance_in_all_on_waitlist_mode() -> None:
    """In all-on-waitlist mode the admin promotes each entry, even with auto advance (D2)."""
    settings = CourseSettings(10, mode=WaitlistMode.ALL_ON_WAITLIST, auto_advance=True)
    assert next_to_advance(settings, Occupancy(0, 1), [waiting(1, 1)], school_registered={}) == ()


def test_advance_takes_longest_waiting_first() -> None:
    """Free places go to the longest waiting, ties broken by the given key (D3)."""
    settings = CourseSettings(10, auto_advance=True)
    queue = [waiting(3, 30), waiting(2, 10, school="vhs-b"), waiting(1, 10), waiting(4, 5)]
    chosen = next_to_advance(settings, Occupancy(8, 4), queue, school_registered={})
    assert [w.key.participant_number for w in chosen] == [4, 1]


def test_advance_fills_only_free_places() -> None:
    """No more entries advance than there are free places; none when full (D3)."""
    settings = CourseSettings(10, auto_advance=True)
    queue = [waiting(n, n) for n in range(5)]
    assert len(next_to_advance(settings, Occupancy(7, 5), queue, school_registered={})) == 3
    assert next_to_advance(settings, Occupancy(10, 5), queue, school_registered={}) == ()
    assert next_to_advance(settings, Occupancy(12, 5), queue, school_registered={}) == ()


def test_advance_skips_blocked_and_admin_moved_entries() -> None:
    """Blocked persons and admin moves stay for the admin; the next eligible entry advances."""
    settings = CourseSettings(10, auto_advance=True)
    queue = [waiting(1, 1, blocked=True), waiting(2, 2, by_admin=True), waiting(3, 3)]
    chosen = next_to_advance(settings, Occupancy(9, 3, 1), queue, school_registered={})
    assert [w.key.participant_number for w in chosen] == [3]


def test_advance_respects_the_school_limit() -> None:
    """An entry whose school is at its maximum is skipped, counting this call's advances (D4)."""
    settings = CourseSettings(10, auto_advance=True, max_per_school=2)
    queue = [waiting(1, 1), waiting(2, 2), waiting(3, 3, school="vhs-b"), waiting(4, 4)]
    chosen = next_to_advance(settings, Occupancy(5, 4), queue, school_registered={"vhs-a": 1})
    assert [w.key.participant_number for w in chosen] == [1, 3]


# Admin promotion (D3).


def test_admin_may_promote_within_max() -> None:
    """An admin promotion onto a free place is allowed and does not exceed max (D3)."""
    assert can_promote(CourseSettings(10), Occupancy(9, 1)).allowed
    assert not can_promote(CourseSettings(10), Occupancy(9, 1)).exceeds_max


def test_admin_may_exceed_max() -> None:
    """An admin may promote past max; the check only reports that it exceeds (D3)."""
    check = can_promote(CourseSettings(10), Occupancy(10, 1))
    assert check.allowed
    assert check.exceeds_max


# No maximum known (an empty TEIL_MAX, issue 7 item 7).


def test_no_maximum_is_never_full() -> None:
    """Without a maximum a registration gets a regular place however many are registered."""
    settings = CourseSettings(None)
    assert Occupancy(500).free(settings) is None
    assert register(settings, Occupancy(500)) == Registered()
    assert register(CourseSettings(None, waitlist_enabled=False), Occupancy(500)) == Registered()


def test_no_maximum_never_starts_the_dominant_waitlist() -> None:
    """With no maximum nobody is sent to W for want of a place, so dominant mode stays open;
    the other waitlist rules still apply."""
    settings = CourseSettings(None, mode=WaitlistMode.DOMINANT)
    assert register(settings, Occupancy(3)) == Registered()
    assert register(settings, Occupancy(3, waitlisted=1)) == Waitlisted(WaitReason.WAITLIST_FIRST)
    assert register(settings, Occupancy(3), blocked=True) == Waitlisted(WaitReason.BLOCKED)
    limited = CourseSettings(None, max_per_school=1)
    assert register(limited, Occupancy(3), school_registered=1) == Waitlisted(
        WaitReason.SCHOOL_LIMIT
    )


def test_no_maximum_settings_check_min_and_desired_only_against_each_other() -> None:
    """Min and desired need no maximum; desired below min is still invalid."""
    settings = CourseSettings(None, min_participants=5, desired_participants=12)
    assert settings.max_participants is None
    with pytest.raises(ValueError, match="desired"):
        CourseSettings(None, min_participants=5, desired_participants=4)
    with pytest.raises(ValueError, match="min_participants"):
        CourseSettings(None, min_participants=-1)


def test_advance_without_a_maximum_moves_every_waiting_entry() -> None:
    """Automatic advance with no limit moves up all that may move (not blocked, not admin)."""
    settings = CourseSettings(None, auto_advance=True)
    entries = [waiting(1, 10), waiting(2, 20), waiting(3, 30, blocked=True)]
    chosen = next_to_advance(settings, Occupancy(40, 3), entries, school_registered={})
    assert [entry.key.participant_number for entry in chosen] == [1, 2]


def test_promotion_never_exceeds_an_unknown_maximum() -> None:
    """An admin's promotion in a course without maximum is never reported as overbooking."""
    assert can_promote(CourseSettings(None), Occupancy(99, 1)).exceeds_max is False
