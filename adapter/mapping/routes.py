"""Routing keys of the topic exchange: who receives what (DESIGN decisions 6 and 8).

Every key names the school that publishes it (its origin) as a word of its own, so that the
broker's topic permissions can hold each school to publishing its own keys only:

- `enr.<master>.<course>.<origin>.anon`: the anonymised state, bound by every subscriber.
- `enr.<master>.<course>.<origin>.personal`: the state with personal data, bound only by the
  master.
- `ctl.<master>.<course>.<origin>`: sync requests and the master's course settings, bound by
  every school of the course.
- `adv.<school>.<master>`: a place the master offers to one school's waiting entry.
- `req.<master>.<origin>`: a subscriber's desk asks the master for a regular place.
- `rep.<requester>.<master>`: the master's answer, bound only by the requester's desk.
"""

from __future__ import annotations

import functools
import re
from urllib.parse import quote

from adapter.domain import CourseRef


@functools.lru_cache(maxsize=4096)  # a burst names the same few schools and courses
def _word(text: str) -> str:
    """One topic word: dots, `*` and `#` would change the routing, so they are escaped."""
    return quote(text, safe="-_~").replace(".", "%2E")


def _enrollment(course: CourseRef, origin: str, view: str) -> str:
    return f"enr.{_word(course.master_school)}.{_word(course.number)}.{_word(origin)}.{view}"


def anonymised(course: CourseRef, origin: str) -> str:
    return _enrollment(course, origin, "anon")


def carries_enrollments(routing_key: str) -> bool:
    """Whether a route carries enrollment states only (the ones the relay may batch)."""
    return routing_key.startswith("enr.")


def personal(course: CourseRef, origin: str) -> str:
    return _enrollment(course, origin, "personal")


def control(course: CourseRef, origin: str) -> str:
    return f"ctl.{_word(course.master_school)}.{_word(course.number)}.{_word(origin)}"


def offers(school: str, master: str) -> str:
    """Places that automatic advance of `master` offers to one school's waiting entries (D3)."""
    return f"adv.{_word(school)}.{_word(master)}"


def place_requests(master: str, origin: str) -> str:
    """A subscriber's requests for regular places in the master's courses."""
    return f"req.{_word(master)}.{_word(origin)}"


def place_answers(requester: str, master: str) -> str:
    """The master's answers to one school's place requests."""
    return f"rep.{_word(requester)}.{_word(master)}"


def school_bindings(school: str) -> list[str]:
    """What a school's queue binds once: everything for the courses it is master of, and the
    places offered to it."""
    own = _word(school)
    return [f"enr.{own}.*.*.personal", f"ctl.{own}.*.*", f"adv.{own}.*", f"req.{own}.*"]


def subscriber_bindings(course: CourseRef) -> list[str]:
    """What a subscriber binds for one course it subscribed to: every school's anonymised
    states and control messages of the course."""
    master, number = _word(course.master_school), _word(course.number)
    return [f"enr.{master}.{number}.*.anon", f"ctl.{master}.{number}.*"]


# One word of a key or binding: anything but a dot. In a binding `*` and `#` are words too,
# so each pattern fixes by literal words what a wildcard could otherwise widen.
_ANY = r"[^.]+"


def publish_permission(school: str) -> str:
    """The topic permission (write) of a school's broker user: the keys it may publish, which
    are the keys that name it as their origin."""
    own = re.escape(_word(school))
    return (
        rf"^(enr\.{_ANY}\.{_ANY}\.{own}\.(anon|personal)"
        rf"|ctl\.{_ANY}\.{_ANY}\.{own}"
        rf"|(adv|req|rep)\.{_ANY}\.{own})$"
    )


def bind_permission(school: str) -> str:
    """The topic permission (read) of a school's broker user: the binding keys it may use.
    Anonymised states and control messages of any course; personal data, offers, place
    requests and answers only where this school is the literal second word (the master or
    the addressee), so no wildcard there reaches another school's."""
    own = re.escape(_word(school))
    return (
        rf"^(enr\.{_ANY}\.{_ANY}\.{_ANY}\.anon"
        rf"|ctl\.{_ANY}\.{_ANY}\.{_ANY}"
        rf"|enr\.{own}\.{_ANY}\.{_ANY}\.personal"
        rf"|(adv|req|rep)\.{own}\.{_ANY})$"
    )


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
    return len(words) == 5 and words[0] == "enr" and words[4] == "anon"
