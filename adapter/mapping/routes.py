"""Routing keys of the topic exchange: who receives what (DESIGN decision 6).

- `enr.<master>.<course>.anon`: the anonymised state, bound by every subscriber of the course.
- `enr.<master>.<course>.personal`: the state with personal data, bound only by the master.
- `ctl.<master>.<course>`: sync requests, bound by every school of the course.
"""

from __future__ import annotations

from urllib.parse import quote

from adapter.domain import CourseRef


def _word(text: str) -> str:
    """One topic word: dots, `*` and `#` would change the routing, so they are escaped."""
    return quote(text, safe="-_~").replace(".", "%2E")


def anonymised(course: CourseRef) -> str:
    return f"enr.{_word(course.master_school)}.{_word(course.number)}.anon"


def carries_enrollments(routing_key: str) -> bool:
    """Whether a route carries enrollment states only (the ones the relay may batch)."""
    return routing_key.startswith("enr.")


def personal(course: CourseRef) -> str:
    return f"enr.{_word(course.master_school)}.{_word(course.number)}.personal"


def control(course: CourseRef) -> str:
    return f"ctl.{_word(course.master_school)}.{_word(course.number)}"


def offers(school: str) -> str:
    """Places that automatic advance offers to one school's waiting entries (D3)."""
    return f"adv.{_word(school)}"


def place_requests(master: str) -> str:
    """Subscribers' requests for regular places in the master's courses."""
    return f"req.{_word(master)}"


def school_bindings(school: str) -> list[str]:
    """What a school binds once: everything for the courses it is master of, and the places
    offered to it."""
    return [
        f"enr.{_word(school)}.*.personal",
        f"ctl.{_word(school)}.*",
        offers(school),
        place_requests(school),
    ]


def subscriber_bindings(course: CourseRef) -> list[str]:
    """What a subscriber binds for one course it subscribed to."""
    return [anonymised(course), control(course)]
