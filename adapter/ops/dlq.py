"""Dead-letter tools: list, show, export, replay and purge what was rejected, and why.

Looking must not wear letters out. On a quorum queue a letter taken and given back, or left
unsettled when its channel closes, counts as delivered once more (RabbitMQ 3.10 reports the
count as `x-delivery-count`), and a queue with a delivery limit drops a letter at the limit
(RabbitMQ 4 sets one of 20 by default). So every command makes one pass over the letters the
DLQ holds when it starts: each is taken, then copied back to the DLQ's tail through the
school's dead-letter exchange (key `dead`, confirmed), replayed into the school's queue (key
`replay`) or dropped, and only then acknowledged. A copy is new to the queue, with a fresh
count, and the pass keeps the order. A crash between the copy and the acknowledgement leaves a
letter twice, never lost (a replay is harmless twice: DESIGN decision 1). One command at a
time: two passes at once would each see a part of the letters.

What a letter says is believed as far as the broker vouches for it (DESIGN decision 8). A
letter of this school's own user was written by its receiver (or by this tool), so its
reason and routing-key headers hold. Any other letter was dead-lettered by the broker (at a
delivery limit) and its headers are its publisher's: its reason and routing key come from the
broker's `x-death`, the key only where it names the publisher's school as its origin, and its
copy carries them in vhs-sync's headers instead of any the publisher wrote.

Personal data is masked (`J***`) in what is shown or exported unless it is asked for.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Final, Literal

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue
from aiormq.exceptions import ChannelNotFoundEntity

from adapter import broker
from adapter.config import Settings
from adapter.domain import CourseRef
from adapter.mapping import routes
from adapter.messages import REPLAYED_HEADER

# The reason of a letter that names none (one the broker dead-lettered without `x-death`).
UNKNOWN_REASON: Final = "delivery_limit_or_unknown"
# What a quorum queue adds to a delivery; a copy starts without it.
DELIVERY_COUNT_HEADER: Final = "x-delivery-count"
_OWN_HEADERS: Final = "x-vhs-sync-"
GROUPS: Final = ("reason", "origin", "course")


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One letter of the DLQ, as far as it is believed: `position` counts from 1 at the head of
    the queue, `origin` and `course` are what its routing key names."""

    message_id: str | None
    reason: str
    detail: str
    rejected_at: str
    routing_key: str
    size: int
    position: int = 0
    origin: str | None = None
    course: CourseRef | None = None
    publisher: str | None = None
    content_type: str | None = None
    headers: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)
    body: bytes = field(default=b"", repr=False, compare=False)

    @property
    def course_name(self) -> str | None:
        return f"{self.course.master_school}/{self.course.number}" if self.course else None

    def summary(self) -> dict[str, Any]:
        """What `dlq list --json` prints of a letter: everything but its headers and body."""
        return {
            "position": self.position,
            "message_id": self.message_id,
            "reason": self.reason,
            "detail": self.detail,
            "rejected_at": self.rejected_at,
            "routing_key": self.routing_key,
            "origin": self.origin,
            "course": self.course_name,
            "publisher": self.publisher,
            "content_type": self.content_type,
            "size": self.size,
        }

    def group(self, by: str) -> str:
        """The letter's value of a group (`reason`, `origin` or `course`); `-` when unknown."""
        value = {"reason": self.reason, "origin": self.origin, "course": self.course_name}[by]
        return value or "-"


@dataclass(frozen=True, slots=True)
class Selection:
    """Which letters a command means. Values of one kind are alternatives, kinds narrow each
    other; no value at all means every letter. A course is `NUMBER` or `MASTER/NUMBER`."""

    reasons: frozenset[str] = frozenset()
    origins: frozenset[str] = frozenset()
    courses: frozenset[str] = frozenset()
    ids: frozenset[str] = frozenset()

    @classmethod
    def of(
        cls,
        *,
        reasons: Iterable[str] = (),
        origins: Iterable[str] = (),
        courses: Iterable[str] = (),
        ids: Iterable[str] = (),
    ) -> Selection:
        return cls(frozenset(reasons), frozenset(origins), frozenset(courses), frozenset(ids))

    @property
    def everything(self) -> bool:
        return not (self.reasons or self.origins or self.courses or self.ids)

    def matches(self, letter: DeadLetter) -> bool:
        course = letter.course
        return (
            (not self.reasons or letter.reason in self.reasons)
            and (not self.origins or letter.origin in self.origins)
            and (
                not self.courses
                or (course is not None and bool({course.number, letter.course_name} & self.courses))
            )
            and (not self.ids or letter.message_id in self.ids)
        )


EVERYTHING: Final = Selection()


# -- what a letter says, and what is believed of it (pure) ----------------------------------


@dataclass(frozen=True, slots=True)
class Account:
    """Why a letter was rejected, when, what it was published with and by whom."""

    reason: str
    detail: str
    rejected_at: str
    routing_key: str
    publisher: str | None


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, datetime):
        return value.isoformat()
    return "" if value is None else str(value)


def _first_death(headers: Mapping[str, Any]) -> Mapping[str, Any]:
    """The broker's latest dead-lettering of a message (`x-death` lists the latest first)."""
    deaths = headers.get("x-death")
    if isinstance(deaths, list) and deaths and isinstance(deaths[0], Mapping):
        return deaths[0]
    return {}


def account(
    headers: Mapping[str, Any],
    user_id: str | None,
    own_user: str,
    schools: Mapping[str, str] | None,
) -> Account:
    """What a letter's headers say, as far as they are believed. `schools` maps each broker
    user to its school, to check the origin of a letter the broker dead-lettered; None where
    schools share users (an insecure network) and nothing can be checked."""
    publisher = broker.authenticated_publisher(user_id, headers, own_user)
    death = _first_death(headers)
    keys = death.get("routing-keys")
    death_key = _text(keys[0]) if isinstance(keys, list) and keys else ""
    death_reason = _text(death.get("reason"))
    if user_id == own_user:  # the receiver's (or this tool's): its headers hold
        return Account(
            reason=_text(headers.get(broker.REASON_HEADER)) or death_reason or UNKNOWN_REASON,
            detail=_text(headers.get(broker.DETAIL_HEADER)),
            rejected_at=_text(headers.get(broker.REJECTED_AT_HEADER)) or _text(death.get("time")),
            # Only a letter without the header (an insecure network's letter that the broker
            # dead-lettered) falls back on `x-death`; an empty one means: not believed.
            routing_key=_text(headers[broker.ROUTING_KEY_HEADER])
            if broker.ROUTING_KEY_HEADER in headers
            else death_key,
            publisher=publisher,
        )
    route = routes.parse(death_key)
    if schools is not None and (route is None or schools.get(publisher or "") != route.origin):
        death_key = ""  # a key its publisher may not publish: `x-death` was written by it
    queue = _text(death.get("queue"))
    return Account(
        reason=death_reason or UNKNOWN_REASON,
        detail=f"dead-lettered by the broker from {queue}" if queue else "",
        rejected_at=_text(death.get("time")),
        routing_key=death_key,
        publisher=publisher,
    )


def copy_headers(
    headers: Mapping[str, Any], letter: DeadLetter, user_id: str | None, own_user: str
) -> dict[str, Any]:
    """The headers of a letter's copy, which this school's user writes: a letter of its own
    keeps its headers; any other carries what is believed of it instead of the vhs-sync
    headers its publisher wrote. Without the delivery count either way."""
    kept = {k: v for k, v in headers.items() if k != DELIVERY_COUNT_HEADER}
    if user_id == own_user:
        return kept
    kept = {k: v for k, v in kept.items() if not k.startswith(_OWN_HEADERS)}
    kept.update(
        {
            broker.REASON_HEADER: letter.reason,
            broker.DETAIL_HEADER: letter.detail,
            broker.REJECTED_AT_HEADER: letter.rejected_at,
            broker.ROUTING_KEY_HEADER: letter.routing_key,
            broker.PUBLISHER_HEADER: letter.publisher or "",
        }
    )
    return kept


def replay_headers(
    headers: Mapping[str, Any], user_id: str | None, own_user: str, routing_key: str = ""
) -> dict[str, Any]:
    """The headers a dead letter goes back with: none of vhs-sync's own but the publisher, as
    the broker authenticated it, and the routing key it was first published with (which the
    receiver records again should the letter be dead-lettered again). A letter this school's
    adapter dead-lettered carries the publisher it recorded; any other letter (dead-lettered
    by the broker) keeps the `user_id` its publisher had, and a publisher header of its own
    proves nothing."""
    kept = {
        k: v
        for k, v in headers.items()
        if not k.startswith(_OWN_HEADERS) and k != DELIVERY_COUNT_HEADER
    }
    kept[broker.PUBLISHER_HEADER] = broker.authenticated_publisher(user_id, headers, own_user) or ""
    kept[REPLAYED_HEADER] = True
    if routing_key:
        kept[broker.ROUTING_KEY_HEADER] = routing_key
    return kept


def letter_of(
    message: AbstractIncomingMessage,
    position: int,
    own_user: str,
    schools: Mapping[str, str] | None,
) -> DeadLetter:
    headers = dict(message.headers or {})
    said = account(headers, message.user_id, own_user, schools)
    route = routes.parse(said.routing_key)
    return DeadLetter(
        message_id=message.message_id,
        reason=said.reason,
        detail=said.detail,
        rejected_at=said.rejected_at,
        routing_key=said.routing_key,
        size=len(message.body),
        position=position,
        origin=route.origin if route else None,
        course=route.course if route else None,
        publisher=said.publisher,
        content_type=message.content_type,
        headers=headers,
        body=message.body,
    )


def schools_by_user(settings: Settings) -> dict[str, str] | None:
    """Each broker user's school; None when a user is shared or missing (insecure)."""
    if settings.broker_user_problem() is not None:
        return None
    users = {settings.broker_user: settings.school.id}
    users.update({str(peer.broker_user): peer.id for peer in settings.schools})
    return users


def page(letters: Sequence[DeadLetter], offset: int, limit: int | None) -> list[DeadLetter]:
    return list(letters[offset : None if limit is None else offset + limit])


def groups(letters: Iterable[DeadLetter], by: Sequence[str]) -> list[tuple[tuple[str, ...], int]]:
    """How many letters share each combination of the groups `by`, the most first."""
    counts = Counter(tuple(letter.group(name) for name in by) for letter in letters)
    return sorted(counts.items(), key=lambda item: (-item[1], item[0]))


# -- masking personal data (pure) -----------------------------------------------------------

# Parts of the names of fields that hold personal data: the participant's (`last_name`,
# `first_name`, `main_email`, `main_phone`) and what else a foreign body may carry, also as
# the admin product and German name them (`TEL_ANZEIGE`, `GEBDAT`, `strasse`).
_PERSONAL_KEYS: Final = (
    "name",
    "mail",
    "phone",
    "birth",
    "iban",
    "street",
    "address",
    "tel",
    "gebdat",
    "geburt",
    "strasse",
    "anschrift",
)
_WORD = re.compile(r"\w+")
EXCERPT_CHARS: Final = 300


def is_personal(key: str) -> bool:
    lowered = key.lower()
    return any(part in lowered for part in _PERSONAL_KEYS)


def _hidden(value: Any) -> Any:
    if value is None or value == "":
        return value
    if isinstance(value, str):
        return value[0] + "***"
    if isinstance(value, Mapping):
        return {k: _hidden(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_hidden(v) for v in value]
    return "***"


def mask(value: Any) -> Any:
    """`value` (parsed JSON or headers) with every field whose name says it is personal
    masked to its first character (`Nowak` to `N***`), wherever it is nested."""
    if isinstance(value, Mapping):
        return {
            key: _hidden(item) if is_personal(str(key)) else mask(item)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [mask(item) for item in value]
    return value


def printable(text: str) -> str:
    """Text safe for a terminal: control and other unprintable characters escaped."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)


def excerpt(body: bytes, *, reveal: bool) -> str:
    """A body that is not JSON, safe to print: the start of its text with control characters
    escaped and, unless revealed, each word masked (`{not json` to `{n*** j***`); hex for a
    body that is not UTF-8 text, only when revealed."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        if not reveal:
            return f"<{len(body)} bytes, not UTF-8 text>"
        head = EXCERPT_CHARS // 3
        return body[:head].hex(" ") + (" …" if len(body) > head else "")
    shown = text[:EXCERPT_CHARS]
    if not reveal:
        shown = _WORD.sub(lambda word: word[0][0] + "***", shown)
    return printable(shown) + ("…" if len(text) > EXCERPT_CHARS else "")


def parsed_body(body: bytes) -> tuple[bool, Any]:
    """(True, the JSON) for a body that is JSON, (False, None) for any other."""
    try:
        return True, json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return False, None


def jsonable(value: Any) -> Any:
    """AMQP header values as JSON: timestamps as ISO 8601, bytes as text (or base64)."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return {"base64": base64.b64encode(value).decode()}
    if isinstance(value, datetime | date):
        return value.isoformat()
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def record(letter: DeadLetter, *, reveal: bool) -> dict[str, Any]:
    """A letter as one JSON object (`dlq export`, `dlq show --json`): its summary, headers
    and body, personal data masked unless revealed. A JSON body is `body`; any other is
    `body_excerpt`, and with `reveal` also `body_base64`, byte for byte."""
    headers = jsonable(letter.headers)
    out = {**letter.summary(), "headers": headers if reveal else mask(headers)}
    is_json, body = parsed_body(letter.body)
    if is_json:
        out["body"] = body if reveal else mask(body)
    else:
        out["body_excerpt"] = excerpt(letter.body, reveal=reveal)
        if reveal:
            out["body_base64"] = base64.b64encode(letter.body).decode()
    return out


def render(letter: DeadLetter, *, reveal: bool, total: int) -> str:
    """A letter for `dlq show`: what is known of it, its headers and its body."""
    rows = [
        ("message id", letter.message_id or ""),
        ("reason", letter.reason),
        ("detail", letter.detail),
        ("rejected at", letter.rejected_at),
        ("routing key", letter.routing_key),
        ("origin", letter.origin or "-"),
        ("course", letter.course_name or "-"),
        ("publisher", letter.publisher or "-"),
        ("content type", letter.content_type or "-"),
        ("size", f"{letter.size} bytes"),
    ]
    lines = [f"dead letter {letter.position} of {total}"]
    lines += [f"  {name:13} {printable(value)}" for name, value in rows]
    headers = jsonable(letter.headers)
    lines.append("headers:")
    lines += _pretty(headers if reveal else mask(headers))
    is_json, body = parsed_body(letter.body)
    if is_json:
        lines.append("body:")
        lines += _pretty(body if reveal else mask(body))
    else:
        lines.append("body (not JSON):")
        lines.append("  " + excerpt(letter.body, reveal=reveal))
    if not reveal:
        lines.append("(personal data masked: --reveal shows it)")
    return "\n".join(lines)


def _pretty(value: Any) -> list[str]:
    text = json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True)
    return ["  " + printable(line) for line in text.splitlines()]


# -- the pass over the DLQ ------------------------------------------------------------------

Decision = Literal["keep", "replay", "drop"]


class _Pace:
    """At most `rate` replays a second (None: as fast as the broker confirms)."""

    def __init__(self, rate: float | None) -> None:
        self.interval = 1.0 / rate if rate else 0.0
        self.due: float | None = None

    async def wait(self) -> None:
        if not self.interval:
            return
        now = asyncio.get_running_loop().time()
        if self.due is not None and now < self.due:
            await asyncio.sleep(self.due - now)
            now = self.due
        self.due = now + self.interval


def _spec(settings: Settings) -> broker.Topology:
    return broker.topology(
        settings.broker.network, settings.school.id, delivery_limit=settings.broker.delivery_limit
    )


async def _dlq(channel: AbstractChannel, spec: broker.Topology) -> AbstractQueue | None:
    """The school's DLQ, or None when it does not exist yet (nothing was dead-lettered)."""
    try:
        return await channel.get_queue(spec.dlq.name, ensure=True)
    except ChannelNotFoundEntity:
        return None


def _connection_name(settings: Settings) -> dict[str, Any]:
    return {"connection_name": f"vhs-sync dlq {settings.school.id}"}


async def _pass(
    settings: Settings,
    decide: Callable[[DeadLetter], Decision],
    *,
    rate: float | None = None,
) -> list[tuple[DeadLetter, Decision]]:
    """One pass over the letters the DLQ holds when it starts: each letter is kept (copied to
    the DLQ's tail), replayed or dropped as `decide` says, then acknowledged. A snapshot:
    letters that arrive meanwhile (a replayed one that is still bad comes straight back) wait
    behind the copies for the next time. Not robust on purpose: a pass the broker cuts ends,
    and what it held unacknowledged is back in the DLQ.

    One letter at a time, on purpose: with several letters taken and not yet acknowledged,
    RabbitMQ 3.10 leaves some letters that had been given back before in the quorum queue
    although they are acknowledged, so a batched pass made duplicates (bench/dlq.py)."""
    spec = _spec(settings)
    own_user = settings.broker_user
    schools = schools_by_user(settings)
    pace = _Pace(rate)
    seen: list[tuple[DeadLetter, Decision]] = []
    connection = await aio_pika.connect(
        settings.broker.url, client_properties=_connection_name(settings)
    )
    async with connection:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        queue = await _dlq(channel, spec)
        if queue is None:
            return []
        dead_letters = await channel.get_exchange(spec.dead_letters.name, ensure=False)
        for position in range(1, int(queue.declaration_result.message_count or 0) + 1):
            message = await queue.get(fail=False)
            if message is None:
                break
            letter = letter_of(message, position, own_user, schools)
            decision = decide(letter)
            if decision == "keep":
                headers = copy_headers(message.headers or {}, letter, message.user_id, own_user)
                await dead_letters.publish(
                    _like(message, headers, own_user), broker.DEAD_LETTER_KEY, mandatory=True
                )
            elif decision == "replay":
                await pace.wait()
                headers = replay_headers(
                    message.headers or {}, message.user_id, own_user, letter.routing_key
                )
                await dead_letters.publish(
                    _like(message, headers, own_user), broker.REPLAY_KEY, mandatory=True
                )
            await message.ack()
            seen.append((letter, decision))
    return seen


def _like(message: AbstractIncomingMessage, headers: dict[str, Any], user: str) -> aio_pika.Message:
    """A message like `message`, body and properties, with these headers, as `user`."""
    return aio_pika.Message(
        message.body,
        headers=headers,
        content_type=message.content_type,
        content_encoding=message.content_encoding,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        priority=message.priority,
        correlation_id=message.correlation_id,
        reply_to=message.reply_to,
        expiration=message.expiration,
        message_id=message.message_id,
        timestamp=message.timestamp,
        type=message.type,
        user_id=user,
        app_id=message.app_id,
    )


# -- the commands ---------------------------------------------------------------------------


async def list_dead_letters(
    settings: Settings, selection: Selection = EVERYTHING
) -> list[DeadLetter]:
    """The letters `selection` means, in the DLQ's order; none is worn out by looking."""
    seen = await _pass(settings, lambda _: "keep")
    return [letter for letter, _ in seen if selection.matches(letter)]


async def replay(
    settings: Settings,
    message_ids: set[str] | None = None,
    *,
    selection: Selection | None = None,
    rate: float | None = None,
) -> list[DeadLetter]:
    """Put dead letters (those `selection` means, or with these ids, or all) back into this
    school's own queue through its dead-letter exchange, at most `rate` a second; the others
    stay in their order. Returns what was replayed."""
    if selection is None:
        selection = EVERYTHING if message_ids is None else Selection.of(ids=message_ids)
    chosen = selection

    def decide(letter: DeadLetter) -> Decision:
        return "replay" if chosen.matches(letter) else "keep"

    seen = await _pass(settings, decide, rate=rate)
    return [letter for letter, decision in seen if decision == "replay"]


async def purge(settings: Settings, selection: Selection = EVERYTHING) -> int:
    """Drop the letters `selection` means for good; how many were dropped."""
    if not selection.everything:

        def decide(letter: DeadLetter) -> Decision:
            return "drop" if selection.matches(letter) else "keep"

        seen = await _pass(settings, decide)
        return sum(1 for _, decision in seen if decision == "drop")
    connection = await aio_pika.connect(
        settings.broker.url, client_properties=_connection_name(settings)
    )
    async with connection:
        queue = await _dlq(await connection.channel(), _spec(settings))
        if queue is None:
            return 0
        result = await queue.purge()
        return int(result.message_count or 0)
