"""Routing keys and bindings: who receives what on the topic exchange (DESIGN decision 6)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapter.domain import CourseRef
from adapter.mapping import routes

COURSE = CourseRef("vhs-sr", "25-64643")


def matches(binding: str, key: str) -> bool:
    """RabbitMQ topic matching: `*` is exactly one word, `#` zero or more."""

    def match(pattern: list[str], words: list[str]) -> bool:
        if not pattern:
            return not words
        head, rest = pattern[0], pattern[1:]
        if head == "#":
            return any(match(rest, words[i:]) for i in range(len(words) + 1))
        if not words:
            return False
        return (head in ("*", words[0])) and match(rest, words[1:])

    return match(binding.split("."), key.split("."))


def receivers(key: str, bindings: dict[str, list[str]]) -> set[str]:
    return {who for who, keys in bindings.items() if any(matches(b, key) for b in keys)}


def test_the_three_routes_of_a_course() -> None:
    """Anonymised, personal and control routes name the master and the course."""
    assert routes.anonymised(COURSE) == "enr.vhs-sr.25-64643.anon"
    assert routes.personal(COURSE) == "enr.vhs-sr.25-64643.personal"
    assert routes.control(COURSE) == "ctl.vhs-sr.25-64643"
    assert routes.offers("vhs-ka") == "adv.vhs-ka"


@pytest.mark.parametrize(
    ("number", "word"),
    [
        ("25.649", "25%2E649"),
        ("25*649", "25%2A649"),
        ("25#649", "25%23649"),
        ("25 64/9", "25%2064%2F9"),
        ("25%2E649", "25%252E649"),  # a literal percent sign cannot fake an escape
    ],
)
def test_dots_stars_and_hashes_in_course_numbers_are_escaped(number: str, word: str) -> None:
    """A course number is always exactly one topic word."""
    course = CourseRef("vhs-sr", number)
    assert routes.anonymised(course) == f"enr.vhs-sr.{word}.anon"
    assert routes.personal(course).split(".") == ["enr", "vhs-sr", word, "personal"]
    assert routes.control(course).split(".") == ["ctl", "vhs-sr", word]


def test_dots_stars_and_hashes_in_school_ids_are_escaped() -> None:
    """A school id is always exactly one topic word, in routes and in bindings."""
    course = CourseRef("vhs.s*r#", "25-64643")
    assert routes.anonymised(course) == "enr.vhs%2Es%2Ar%23.25-64643.anon"
    assert routes.school_bindings("vhs.s*r#")[0] == "enr.vhs%2Es%2Ar%23.*.personal"
    assert routes.offers("a.b") == "adv.a%2Eb"


@given(st.text(min_size=1, max_size=30), st.text(min_size=1, max_size=30))
def test_different_courses_never_share_a_route(first: str, second: str) -> None:
    """Escaping is one-to-one: two different course numbers give two different routes."""
    a, b = CourseRef("vhs-sr", first), CourseRef("vhs-sr", second)
    assert (routes.anonymised(a) == routes.anonymised(b)) is (first == second)
    assert len(routes.anonymised(a).split(".")) == 4


def test_a_master_binds_personal_and_control_of_all_its_courses_and_its_offers() -> None:
    """The master binds once: the personal route of each of its courses, control, offers
    and place requests."""
    assert routes.school_bindings("vhs-sr") == [
        "enr.vhs-sr.*.personal",
        "ctl.vhs-sr.*",
        "adv.vhs-sr",
        "req.vhs-sr",
    ]


def test_a_subscriber_binds_the_anonymised_and_control_routes_of_its_course() -> None:
    """A subscriber binds exactly two keys per subscribed course, neither of them personal."""
    assert routes.subscriber_bindings(COURSE) == [
        "enr.vhs-sr.25-64643.anon",
        "ctl.vhs-sr.25-64643",
    ]


@pytest.mark.parametrize("number", ["25-64643", "25.64643", "25*1", "25#1", "#"])
def test_personal_data_reaches_only_the_master(number: str) -> None:
    """With every school's bindings in place, the personal route reaches only the master, and
    the anonymised route reaches every subscriber but not another master's courses."""
    course = CourseRef("vhs-sr", number)
    other = CourseRef("vhs-sr", number + "x")
    bindings = {
        "vhs-sr": routes.school_bindings("vhs-sr"),
        "vhs-ka": routes.school_bindings("vhs-ka") + routes.subscriber_bindings(course),
        "vhs-hof": routes.school_bindings("vhs-hof") + routes.subscriber_bindings(course),
        "vhs-vs": routes.school_bindings("vhs-vs") + routes.subscriber_bindings(other),
    }
    assert receivers(routes.personal(course), bindings) == {"vhs-sr"}
    assert receivers(routes.anonymised(course), bindings) == {"vhs-ka", "vhs-hof"}
    assert receivers(routes.control(course), bindings) == {"vhs-sr", "vhs-ka", "vhs-hof"}
    assert receivers(routes.offers("vhs-hof"), bindings) == {"vhs-hof"}


def test_a_master_never_receives_another_masters_personal_data() -> None:
    """`enr.vhs-sr.*.personal` does not match the personal route of a course of vhs-ka."""
    assert not matches(
        routes.school_bindings("vhs-sr")[0], routes.personal(CourseRef("vhs-ka", "1"))
    )
    assert not matches(
        routes.school_bindings("vhs-s")[0], routes.personal(CourseRef("vhs-sr", "1"))
    )


def test_only_the_anonymised_route_may_be_heard_by_nobody() -> None:
    """An anonymised state no queue takes just means no subscriber yet; a personal state, a
    sync request (control route), an offer or a place request must reach its school."""
    course = CourseRef("vhs-sr", "25.64*643#")
    assert routes.heard_by_nobody_is_normal(routes.anonymised(course))
    assert not routes.heard_by_nobody_is_normal(routes.personal(course))
    assert not routes.heard_by_nobody_is_normal(routes.control(course))
    assert not routes.heard_by_nobody_is_normal(routes.offers("vhs-ka"))
    assert not routes.heard_by_nobody_is_normal(routes.place_requests("vhs-sr"))
    assert not routes.heard_by_nobody_is_normal(routes.offers("anon"))
