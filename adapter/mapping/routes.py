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


def heard_by_nobody_is_normal(routing_key: str) -> bool:
    """Whether a publish that no queue took (unroutable) just means that no school has
    subscribed yet, so that the message is settled rather than retried for ever.

    True for the anonymised enrollment route: only subscribers bind it, so a master alone has
    nobody to tell, and a school that subscribes later asks for the current state with a sync
    request (V1). False for everything that must reach a school that exists or will: the
    master's personal route (its queue may not be declared yet), the control route (it
    carries sync requests for the master; the master's own queue binds it, so the master's
    course settings on it are never unheard), offers and place requests.
    """
    words = routing_key.split(".")
    return len(words) == 4 and words[0] == "enr" and words[3] == "anon"
