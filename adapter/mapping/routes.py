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
- `rep.<requester>.<answerer>`: the master's answer to a place request, or a member's to a
  digest request, bound only by the requester's desk (or reconcile).
- `syn.<requester>.<master>.<course>.<origin>.anon|personal`: a school's answer to a sync
  request (its own enrollments of the course), bound only by the requester's queue; personal
  only where the requester is the course's master.
- `off.<master>.<course>`: the master's offer of a shared course, bound by every
  school of the network; only the master may publish it.

A subscriber that leaves a course says so on the course's control route, as its origin.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from urllib.parse import quote, unquote

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
    return routing_key.startswith(("enr.", "syn."))


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


def answers_to(requester: str) -> str:
    """The binding for every answer to one school's requests, whoever answers."""
    return f"rep.{_word(requester)}.*"


def course_offer(course: CourseRef) -> str:
    """The master's offer of one of its shared courses, for every school of the network."""
    return f"off.{_word(course.master_school)}.{_word(course.number)}"


def sync_answer(requester: str, course: CourseRef, origin: str, *, personal: bool) -> str:
    """`origin`'s answer to a sync request of `requester`: one of its own enrollments of the
    course. Only the requester binds it, so a school that joins gets the course's enrollments
    without every other member getting them again (V1). Personal only for the master."""
    view = "personal" if personal else "anon"
    return (
        f"syn.{_word(requester)}.{_word(course.master_school)}.{_word(course.number)}"
        f".{_word(origin)}.{view}"
    )


def is_sync_answer(routing_key: str) -> bool:
    """Whether a route carries answers to this school's own sync request."""
    return routing_key.startswith("syn.")


def school_bindings(school: str) -> list[str]:
    """What a school's queue binds once: everything for the courses it is master of, the
    places offered to it, every master's course offers, and the answers to its sync requests
    (anonymised for any course, personal for its own courses)."""
    own = _word(school)
    return [
        f"enr.{own}.*.*.personal",
        f"ctl.{own}.*.*",
        f"adv.{own}.*",
        f"req.{own}.*",
        "off.*.*",
        f"syn.{own}.*.*.*.anon",
        f"syn.{own}.{own}.*.*.personal",
    ]


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
        rf"|(adv|req|rep)\.{_ANY}\.{own}"
        rf"|off\.{own}\.{_ANY}"
        rf"|syn\.{_ANY}\.{_ANY}\.{_ANY}\.{own}\.(anon|personal))$"
    )


def bind_permission(school: str) -> str:
    """The topic permission (read) of a school's broker user: the binding keys it may use.
    Anonymised states, control messages and course offers of any course; personal data,
    place offers, place requests and answers only where this school is the literal second
    word (the master or the addressee), so no wildcard there reaches another school's.
    Answers to sync requests only where it is the literal requester, and personal ones only
    where it is the literal master as well."""
    own = re.escape(_word(school))
    return (
        rf"^(enr\.{_ANY}\.{_ANY}\.{_ANY}\.anon"
        rf"|ctl\.{_ANY}\.{_ANY}\.{_ANY}"
        rf"|off\.{_ANY}\.{_ANY}"
        rf"|enr\.{own}\.{_ANY}\.{_ANY}\.personal"
        rf"|(adv|req|rep)\.{own}\.{_ANY}"
        rf"|syn\.{own}\.{_ANY}\.{_ANY}\.{_ANY}\.anon"
        rf"|syn\.{own}\.{own}\.{_ANY}\.{_ANY}\.personal)$"
    )


def heard_by_nobody_is_normal(routing_key: str) -> bool:
    """Whether a publish that no queue took (unroutable) just means that no school has
    subscribed yet, so that the message is settled rather than retried for ever.

    True for the anonymised enrollment route: only subscribers bind it, so a master alone has
    nobody to tell, and a school that subscribes later asks for the current state with a sync
    request (V1). True also for an anonymised answer to a sync request: the requester binds
    its answer routes at start, before it can ask, so nobody hearing one means the requester
    is gone (`vhs-sync resync` asks again). False for everything that must reach a school
    that exists or will: the master's personal routes (its queue may not be declared yet),
    the control route (it carries sync requests for the master; the master's own queue binds
    it, so the master's course settings on it are never unheard), offers and place requests.
    """
    words = routing_key.split(".")
    if words[0] == "syn":
        return len(words) == 6 and words[5] == "anon"
    return len(words) == 5 and words[0] == "enr" and words[4] == "anon"


@dataclass(frozen=True, slots=True)
class Route:
    """What a routing key says: its kind (its first word), the school that published it, and
    the course it concerns (enrollment, control and course offer routes only)."""

    kind: str
    origin: str
    course: CourseRef | None = None


def parse(routing_key: str) -> Route | None:
    """The origin and course a routing key of this network names; None for any other key (a
    dead-letter exchange's `dead` and `replay`, or a malformed key). Believe it only as far as
    the key itself is believed: the broker checked the origin word when it was published."""
    words = [unquote(word) for word in routing_key.split(".")]
    match words:
        case ["enr", master, number, origin, "anon" | "personal"] | ["ctl", master, number, origin]:
            return Route(words[0], origin, CourseRef(master, number))
        case ["syn", _, master, number, origin, "anon" | "personal"]:
            return Route(words[0], origin, CourseRef(master, number))
        case ["adv" | "req" | "rep", _, origin]:
            return Route(words[0], origin)
        case ["off", master, number]:
            return Route("off", master, CourseRef(master, number))
    return None
