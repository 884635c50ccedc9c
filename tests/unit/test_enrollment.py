"""Enrollment keys, roles and versions (DESIGN decisions 1 and 2)."""

from __future__ import annotations

import itertools
from datetime import date

from hypothesis import given
from hypothesis import strategies as st

from adapter.domain import (
    CourseRef,
    EnrollmentKey,
    EnrollmentState,
    PersonalData,
    Role,
    Status,
    is_newer,
    next_version,
)

COURSE = CourseRef("vhs-sr", "25-64901B")


def test_the_three_synced_statuses_are_a_s_w() -> None:
    """Only A, S and W exist on the wire (V3)."""
    assert [status.value for status in Status] == ["A", "S", "W"]
    assert Status("S") is Status.CANCELLED


def test_the_master_school_is_master_and_every_other_school_a_subscriber() -> None:
    """A school's role in a course follows from the course's master school alone."""
    assert COURSE.role_of("vhs-sr") is Role.MASTER
    assert COURSE.role_of("vhs-ka") is Role.SUBSCRIBER
    assert CourseRef("vhs-ka", "25-64901B").role_of("vhs-sr") is Role.SUBSCRIBER


def test_anonymising_drops_only_the_personal_data() -> None:
    """The anonymised state keeps key, status and date and loses name, email and phone (V9)."""
    state = EnrollmentState(
        EnrollmentKey("vhs-ka", 17, COURSE),
        Status.REGISTERED,
        date(2025, 9, 18),
        PersonalData("Nowak", "Jan", "jan@example.org", "0721 123"),
    )
    anonymised = state.anonymised()
    assert anonymised.personal is None
    assert (anonymised.key, anonymised.status, anonymised.registered_on) == (
        state.key,
        state.status,
        state.registered_on,
    )
    assert state.personal is not None  # the original is untouched


def test_the_first_version_is_the_clock() -> None:
    """Without a previous version the version is the clock in microseconds."""
    assert next_version(None, 1_700_000_000_000_000) == 1_700_000_000_000_000


def test_a_version_follows_the_clock_when_the_clock_moved_on() -> None:
    """A later clock gives the clock's value."""
    assert next_version(100, 250) == 250


def test_a_version_still_grows_when_the_clock_stands_still_or_goes_back() -> None:
    """Two changes in the same microsecond, or a clock set back, still give a newer version."""
    assert next_version(250, 250) == 251
    assert next_version(250, 10) == 251


@given(st.lists(st.integers(min_value=1, max_value=2**62), min_size=1, max_size=50))
def test_versions_only_grow_whatever_the_clock_does(clock: list[int]) -> None:
    """Over any sequence of clock readings every version is newer than the one before."""
    versions: list[int] = []
    previous: int | None = None
    for now in clock:
        previous = next_version(previous, now)
        versions.append(previous)
    assert all(b > a for a, b in itertools.pairwise(versions))
    assert all(is_newer(b, a) for a, b in itertools.pairwise(versions))


def test_a_receiver_takes_the_first_event_and_only_newer_ones_after_it() -> None:
    """Nothing applied yet: any version is newer; afterwards only a greater version is."""
    assert is_newer(1, None)
    assert is_newer(8, 7)
    assert not is_newer(7, 7)  # a redelivery is a no-op
    assert not is_newer(6, 7)  # a late, older event never undoes a cancellation
