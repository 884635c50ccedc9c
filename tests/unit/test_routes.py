"""Routing keys and bindings: who receives what on the topic exchange (DESIGN decision 6)."""

from __future__ import annotations

import re

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


def test_every_route_names_its_publisher() -> None:
    """Anonymised, personal and control routes name the master, the course and the origin;
    offers, place requests and answers name the addressee and then the sender."""
    assert routes.anonymised(COURSE, "vhs-ka") == "enr.vhs-sr.25-64643.vhs-ka.anon"
    assert routes.personal(COURSE, "vhs-ka") == "enr.vhs-sr.25-64643.vhs-ka.personal"
    assert routes.control(COURSE, "vhs-sr") == "ctl.vhs-sr.25-64643.vhs-sr"
    assert routes.offers("vhs-ka", "vhs-sr") == "adv.vhs-ka.vhs-sr"
    assert routes.place_requests("vhs-sr", "vhs-ka") == "req.vhs-sr.vhs-ka"
    assert routes.place_answers("vhs-ka", "vhs-sr") == "rep.vhs-ka.vhs-sr"
    assert routes.course_offer(COURSE) == "off.vhs-sr.25-64643"
    assert (
        routes.sync_answer("vhs-hof", COURSE, "vhs-ka", personal=False)
        == "syn.vhs-hof.vhs-sr.25-64643.vhs-ka.anon"
    )
    assert (
        routes.sync_answer("vhs-sr", COURSE, "vhs-ka", personal=True)
        == "syn.vhs-sr.vhs-sr.25-64643.vhs-ka.personal"
    )


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
    assert routes.anonymised(course, "vhs-ka") == f"enr.vhs-sr.{word}.vhs-ka.anon"
    assert routes.personal(course, "vhs-ka").split(".") == [
        "enr",
        "vhs-sr",
        word,
        "vhs-ka",
        "personal",
    ]
    assert routes.control(course, "vhs-ka").split(".") == ["ctl", "vhs-sr", word, "vhs-ka"]


def test_dots_stars_and_hashes_in_school_ids_are_escaped() -> None:
    """A school id is always exactly one topic word, in routes and in bindings."""
    course = CourseRef("vhs.s*r#", "25-64643")
    assert routes.anonymised(course, "a#") == "enr.vhs%2Es%2Ar%23.25-64643.a%23.anon"
    assert routes.school_bindings("vhs.s*r#")[0] == "enr.vhs%2Es%2Ar%23.*.*.personal"
    assert routes.offers("a.b", "c*") == "adv.a%2Eb.c%2A"


@given(st.text(min_size=1, max_size=30), st.text(min_size=1, max_size=30))
def test_different_courses_never_share_a_route(first: str, second: str) -> None:
    """Escaping is one-to-one: two different course numbers give two different routes."""
    a, b = CourseRef("vhs-sr", first), CourseRef("vhs-sr", second)
    assert (routes.anonymised(a, "vhs-ka") == routes.anonymised(b, "vhs-ka")) is (first == second)
    assert len(routes.anonymised(a, "vhs-ka").split(".")) == 5


def test_a_master_binds_personal_and_control_of_all_its_courses_and_its_offers() -> None:
    """The master binds once: the personal route of each of its courses from any origin,
    control, offers and place requests, every master's course offers, and the answers to its
    own sync requests."""
    assert routes.school_bindings("vhs-sr") == [
        "enr.vhs-sr.*.*.personal",
        "ctl.vhs-sr.*.*",
        "adv.vhs-sr.*",
        "req.vhs-sr.*",
        "off.*.*",
        "syn.vhs-sr.*.*.*.anon",
        "syn.vhs-sr.vhs-sr.*.*.personal",
    ]


def test_a_subscriber_binds_the_anonymised_and_control_routes_of_its_course() -> None:
    """A subscriber binds exactly two keys per subscribed course, neither of them personal."""
    assert routes.subscriber_bindings(COURSE) == [
        "enr.vhs-sr.25-64643.*.anon",
        "ctl.vhs-sr.25-64643.*",
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
    assert receivers(routes.personal(course, "vhs-ka"), bindings) == {"vhs-sr"}
    assert receivers(routes.anonymised(course, "vhs-ka"), bindings) == {"vhs-ka", "vhs-hof"}
    assert receivers(routes.control(course, "vhs-sr"), bindings) == {"vhs-sr", "vhs-ka", "vhs-hof"}
    assert receivers(routes.offers("vhs-hof", "vhs-sr"), bindings) == {"vhs-hof"}
    assert receivers(routes.place_requests("vhs-sr", "vhs-ka"), bindings) == {"vhs-sr"}
    for origin in ("vhs-sr", "vhs-ka"):  # an answer reaches the requester alone
        answer = routes.sync_answer("vhs-hof", course, origin, personal=False)
        assert receivers(answer, bindings) == {"vhs-hof"}
    personal_answer = routes.sync_answer("vhs-sr", course, "vhs-ka", personal=True)
    assert receivers(personal_answer, bindings) == {"vhs-sr"}


def test_a_master_never_receives_another_masters_personal_data() -> None:
    """`enr.vhs-sr.*.*.personal` does not match the personal route of a course of vhs-ka."""
    assert not matches(
        routes.school_bindings("vhs-sr")[0], routes.personal(CourseRef("vhs-ka", "1"), "vhs-sr")
    )
    assert not matches(
        routes.school_bindings("vhs-s")[0], routes.personal(CourseRef("vhs-sr", "1"), "vhs-s")
    )


def allowed(pattern: str, key: str) -> bool:
    """How RabbitMQ applies a topic permission: the regular expression searched in the key."""
    return re.search(pattern, key) is not None


def test_a_school_may_publish_exactly_the_routes_that_name_it_as_origin() -> None:
    """The write topic permission of vhs-ka lets it publish its own states, requests, and
    control messages, and refuses every route naming another school as its origin."""
    pattern = routes.publish_permission("vhs-ka")
    own = [
        routes.anonymised(COURSE, "vhs-ka"),
        routes.personal(COURSE, "vhs-ka"),
        routes.control(COURSE, "vhs-ka"),
        routes.place_requests("vhs-sr", "vhs-ka"),
        routes.offers("vhs-hof", "vhs-ka"),
        routes.place_answers("vhs-hof", "vhs-ka"),
        routes.course_offer(CourseRef("vhs-ka", "26-1")),
        routes.sync_answer("vhs-hof", COURSE, "vhs-ka", personal=False),
        routes.sync_answer("vhs-sr", COURSE, "vhs-ka", personal=True),
    ]
    forged = [
        routes.course_offer(COURSE),
        "off.vhs-sr.vhs-ka",
        "off.vhs-ka",
        "off.vhs-ka.26-1.x",
        routes.anonymised(COURSE, "vhs-hof"),
        routes.personal(COURSE, "vhs-hof"),
        routes.control(COURSE, "vhs-sr"),
        routes.place_requests("vhs-sr", "vhs-hof"),
        routes.offers("vhs-ka", "vhs-sr"),
        routes.place_answers("vhs-ka", "vhs-sr"),
        routes.sync_answer("vhs-ka", COURSE, "vhs-sr", personal=False),
        routes.sync_answer("vhs-sr", COURSE, "vhs-hof", personal=True),
        "syn.vhs-hof.vhs-sr.25-64643.vhs-ka.other",
        routes.anonymised(COURSE, "vhs-ka-x"),
        "enr.vhs-sr.25-64643.vhs-ka.anon.x",
        "x.enr.vhs-sr.25-64643.vhs-ka.anon",
        "enr.vhs-sr.vhs-ka.anon",
    ]
    assert [key for key in own if not allowed(pattern, key)] == []
    assert [key for key in forged if allowed(pattern, key)] == []


def test_a_school_may_bind_every_bindings_it_needs() -> None:
    """The read topic permission of a school allows each binding its adapter makes, and the
    binding of its desk's answers."""
    for school in ("vhs-sr", "vhs-ka", "vhs.s*r#"):
        pattern = routes.bind_permission(school)
        needed = [
            *routes.school_bindings(school),
            *routes.subscriber_bindings(COURSE),
            routes.place_answers(school, "vhs-sr"),
        ]
        assert [key for key in needed if not allowed(pattern, key)] == []


@pytest.mark.parametrize(
    "binding",
    [
        "enr.vhs-sr.25-64643.*.personal",
        "enr.vhs-sr.*.*.personal",
        "enr.*.*.*.personal",
        "enr.#.personal",
        "enr.*.#",
        "enr.#",
        "#",
        "*.*.*.*.*",
        "enr.vhs-sr.#",
        "enr.#.*.*.personal",
        "enr.vhs-sr.25-64643.vhs-ka.#",
        "adv.vhs-hof.*",
        "adv.*.*",
        "req.vhs-sr.*",
        "rep.vhs-hof.*",
        "rep.#",
        "syn.#",
        "syn.vhs-hof.*.*.*.anon",
        "syn.vhs-sr.vhs-sr.*.*.personal",
        "syn.vhs-ka.vhs-sr.*.*.personal",
        "syn.vhs-ka.*.*.*.personal",
        "syn.vhs-ka.*.*.*.*",
        "syn.vhs-ka.#",
        "syn.*.*.*.*.anon",
    ],
)
def test_no_binding_a_subscriber_may_make_reaches_personal_data_of_another_master(
    binding: str,
) -> None:
    """Wildcards do not widen the read topic permission: a binding vhs-ka may make never
    matches another master's personal route, nor offers, requests or answers of others."""
    pattern = routes.bind_permission("vhs-ka")
    others = [
        routes.personal(COURSE, "vhs-hof"),
        routes.offers("vhs-hof", "vhs-sr"),
        routes.place_requests("vhs-sr", "vhs-hof"),
        routes.place_answers("vhs-hof", "vhs-sr"),
        routes.sync_answer("vhs-hof", COURSE, "vhs-sr", personal=False),
        routes.sync_answer("vhs-sr", COURSE, "vhs-hof", personal=True),
        routes.sync_answer("vhs-ka", COURSE, "vhs-hof", personal=True),
    ]
    assert not (allowed(pattern, binding) and any(matches(binding, key) for key in others))


@given(
    st.lists(
        st.sampled_from(["enr", "ctl", "adv", "req", "rep", "syn", "vhs-sr", "vhs-ka", "anon"])
        | st.sampled_from(["personal", "*", "#", "25-1"]),
        min_size=1,
        max_size=7,
    )
)
def test_any_allowed_binding_of_a_subscriber_misses_the_masters_personal_route(
    words: list[str],
) -> None:
    """Whatever binding key vhs-ka is allowed, it never matches vhs-sr's personal route."""
    binding = ".".join(words)
    if allowed(routes.bind_permission("vhs-ka"), binding):
        assert not matches(binding, routes.personal(COURSE, "vhs-hof"))
        assert not matches(binding, routes.sync_answer("vhs-sr", COURSE, "vhs-hof", personal=True))
        assert not matches(binding, routes.sync_answer("vhs-ka", COURSE, "vhs-hof", personal=True))


def test_only_the_anonymised_route_may_be_heard_by_nobody() -> None:
    """An anonymised state no queue takes just means no subscriber yet; a personal state, a
    sync request (control route), an offer or a place request must reach its school."""
    course = CourseRef("vhs-sr", "25.64*643#")
    assert routes.heard_by_nobody_is_normal(routes.anonymised(course, "vhs-ka"))
    assert not routes.heard_by_nobody_is_normal(routes.personal(course, "vhs-ka"))
    assert not routes.heard_by_nobody_is_normal(routes.control(course, "vhs-ka"))
    assert not routes.heard_by_nobody_is_normal(routes.offers("vhs-ka", "vhs-sr"))
    assert not routes.heard_by_nobody_is_normal(routes.place_requests("vhs-sr", "vhs-ka"))
    assert not routes.heard_by_nobody_is_normal(routes.offers("anon", "vhs-sr"))
    assert routes.heard_by_nobody_is_normal(
        routes.sync_answer("anon", course, "vhs-ka", personal=False)
    )
    assert not routes.heard_by_nobody_is_normal(
        routes.sync_answer("vhs-sr", course, "vhs-ka", personal=True)
    )
