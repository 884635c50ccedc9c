"""Receiving: take messages from the school's queue, validate them, apply them, ack them.

Handlers see validated events only; parsing, authentication and acking live here at the edge.
Bad input goes to the dead-letter queue at once, with its reason in the headers; a transient
failure (the admin DB is down) is retried with backoff and never dead-lettered (DESIGN
decision 9). Messages are taken in batches so that one transaction serves many.

The broker may restart at any moment. An acknowledgement, reject or dead letter that fails
because the connection or channel is gone is logged and dropped: the broker has taken the
message back and delivers it again on the restored channel, and apply skips what it already
applied. A message is never acknowledged unless what it carries was applied or dead-lettered.

A message carries one event (structured mode) or, from a relay with many due at once, a JSON
array of enrollment events (batch mode). Each event of a batch is judged on its own: a bad
one goes to the dead-letter queue alone, as a message of its own, and the rest are applied.

What is read is bounded (issue 7): a body over `max_message_bytes` is refused unread, JSON is
parsed strictly (the string "12" is no participant number), every integer fits the column it
ends up in, a version may lie at most `MAX_VERSION_AHEAD` beyond this school's clock, and an
event in this school's own name counts as its own echo only from its own broker user. Errors
go into logs and headers as `error_text`, which carries no personal data.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import aio_pika
import structlog
from aio_pika.abc import AbstractExchange, AbstractIncomingMessage, AbstractQueue
from pydantic import TypeAdapter, ValidationError
from sqlalchemy.exc import DBAPIError, OperationalError
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_never,
    wait_exponential,
)

from adapter.broker import (
    BATCH_ID_HEADER,
    CONNECTION_LOST,
    DEAD_LETTER_KEY,
    DETAIL_HEADER,
    PUBLISHER_HEADER,
    REASON_HEADER,
    REJECTED_AT_HEADER,
    REJECTED_BY_HEADER,
    REPLAY_KEY,
    ROUTING_KEY_HEADER,
    authenticated_publisher,
    connection_lost,
)
from adapter.consumers.apply import Applier, Outcome, RejectedEventError
from adapter.domain import is_too_far_ahead
from adapter.domain.enrollment import MAX_VERSION_AHEAD
from adapter.mapping import routes
from adapter.messages import (
    BATCH_CONTENT_TYPE,
    EVENT_CONTENT_TYPE,
    EVENTS_HEADER,
    MAX_MESSAGE_BYTES,
    ORIGIN_HEADER,
    REPLAYED_HEADER,
    AnyEvent,
    CourseLeft,
    CourseOffered,
    CourseSettingsChanged,
    CourseSyncRequested,
    DigestAnswered,
    DigestRequested,
    EnrollmentChanged,
    Event,
    PlaceAnswered,
    PlaceOffered,
    PlaceRequested,
    sender,
)
from adapter.ops import metrics
from adapter.ops.logs import error_text

log = structlog.get_logger("adapter.consumers")

T = TypeVar("T")

# What can become of an event, as `apply.batch` counts it.
_RESULTS = ("applied", "unchanged", "stale", "own", "rejected", "failed")

# How long stopping the consumer may take: with the broker down nothing answers.
CANCEL_TIMEOUT = 2.0

_events: TypeAdapter[AnyEvent] = TypeAdapter(Event)
_enrollment_batch: TypeAdapter[list[EnrollmentChanged]] = TypeAdapter(list[EnrollmentChanged])


class InvalidMessageError(Exception):
    """A message that is not a valid event of this network."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def _invalid(error: ValidationError) -> InvalidMessageError:
    first = error.errors()[0]
    if first["type"] == "json_invalid":
        return InvalidMessageError("invalid_json", first["msg"])
    where = ".".join(str(part) for part in first["loc"])
    return InvalidMessageError(
        "schema_violation", f"{where}: {first['msg']} ({error.error_count()} errors)"
    )


def parse_event(body: bytes) -> AnyEvent:
    """The event a message carries, or `InvalidMessageError` saying what is wrong with it.
    Strict: JSON types as the schema says (the string "12" is no participant number)."""
    try:
        return _events.validate_json(body, strict=True)
    except ValidationError as error:
        raise _invalid(error) from error


@dataclass(frozen=True, slots=True)
class InvalidPart:
    """One bad event of a batch: its own JSON, its id where it has one, what is wrong."""

    body: bytes
    event_id: str | None
    error: InvalidMessageError


@dataclass(frozen=True, slots=True)
class Parsed:
    """What one message carries: its valid events, and each invalid part of a batch."""

    events: list[AnyEvent]
    invalid: list[InvalidPart]


def parse_message(
    body: bytes, content_type: str | None, *, max_bytes: int = MAX_MESSAGE_BYTES
) -> Parsed:
    """The events of a message in structured or batch mode. `InvalidMessageError` when the
    message as a whole is unreadable or larger than `max_bytes` (which is checked before
    anything is parsed); a batch's bad events are returned, not raised."""
    if len(body) > max_bytes:
        raise InvalidMessageError(
            "message_too_large", f"{len(body)} bytes, at most {max_bytes} are read"
        )
    if content_type != BATCH_CONTENT_TYPE:
        return Parsed([parse_event(body)], [])
    try:
        return Parsed(list(_enrollment_batch.validate_json(body, strict=True)), [])
    except ValidationError as error:
        unreadable = _invalid(error)
        if unreadable.reason == "invalid_json":
            raise unreadable from error
    parts = json.loads(body)  # valid JSON: the fast path above said so
    if not isinstance(parts, list):
        raise InvalidMessageError("schema_violation", "a batch is a JSON array of events")
    parsed = Parsed([], [])
    for part in parts:
        raw = json.dumps(part, ensure_ascii=False).encode()
        event_id = part.get("id") if isinstance(part, dict) else None
        event_id = event_id if isinstance(event_id, str) else None
        try:
            event = parse_event(raw)
        except InvalidMessageError as invalid:
            parsed.invalid.append(InvalidPart(raw, event_id, invalid))
            continue
        if isinstance(event, EnrollmentChanged):
            parsed.events.append(event)
        else:
            detail = f"type: a batch carries enrollment events only, not {event.type!r}"
            refused = InvalidMessageError("schema_violation", detail)
            parsed.invalid.append(InvalidPart(raw, event_id, refused))
    return parsed


def check_origin(
    event: AnyEvent,
    user_id: str | None,
    broker_users: Mapping[str, str | None],
) -> None:
    """The claimed origin must be who published it (DESIGN decision 8)."""
    claimed = sender(event)
    if event.source_school != claimed:
        raise InvalidMessageError(
            "origin_mismatch", f"source {event.source!r} does not match school {claimed!r}"
        )
    if claimed not in broker_users:
        raise InvalidMessageError("unknown_school", f"school {claimed!r} is not in this network")
    expected = broker_users[claimed]
    if expected is not None and user_id != expected:
        raise InvalidMessageError(
            "origin_not_authenticated",
            f"school {claimed!r} publishes as {expected!r}, this came from {user_id!r}",
        )


# The events each kind of route carries (mapping/routes.py): every school binds some routes
# whose keys a hostile school may publish (offers, control messages of any course), so an
# event on a route that does not carry its type is refused, not handled.
_EVENTS_OF_ROUTE: dict[str, tuple[type[AnyEvent], ...]] = {
    "enr": (EnrollmentChanged,),
    "syn": (EnrollmentChanged,),
    "ctl": (CourseSyncRequested, CourseSettingsChanged, CourseLeft, DigestRequested),
    "off": (CourseOffered,),
    "adv": (PlaceOffered,),
    "req": (PlaceRequested,),
    "rep": (PlaceAnswered, DigestAnswered),
}


def check_route(event: AnyEvent, routing_key: str) -> None:
    """An event must travel on a route of its kind."""
    kind = routing_key.split(".", 1)[0]
    allowed = _EVENTS_OF_ROUTE.get(kind)
    if allowed is not None and not isinstance(event, allowed):
        raise InvalidMessageError(
            "route_mismatch", f"{type(event).__name__} does not travel on {kind}. routes"
        )


def check_version(event: AnyEvent, now: datetime) -> None:
    """A version is its origin's clock in microseconds: one more than `MAX_VERSION_AHEAD`
    beyond this school's clock would freeze what it describes here until then."""
    if not isinstance(event, EnrollmentChanged | CourseSettingsChanged | CourseOffered):
        return
    version = event.data.version
    if is_too_far_ahead(version, int(now.timestamp() * 1_000_000)):
        raise InvalidMessageError(
            "version_in_future",
            f"version {version} lies more than {MAX_VERSION_AHEAD} beyond this school's clock",
        )


def _is_transient(error: BaseException) -> bool:
    if isinstance(error, OperationalError):
        return True
    return isinstance(error, DBAPIError) and error.connection_invalidated


# A handler of any other event; what it returns is the answer to a request (RPC).
ControlHandler = Callable[[Any], Awaitable[AnyEvent | None]]


class Receiver:
    """Consumes one school's queue."""

    def __init__(
        self,
        queue: AbstractQueue,
        dead_letters: AbstractExchange,
        applier: Applier,
        *,
        school: str,
        broker_users: Mapping[str, str | None],
        handlers: Mapping[type[AnyEvent], ControlHandler],
        replies: AbstractExchange | None = None,
        batch_size: int = 200,
        own_user: str | None = None,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        admin_clock: Callable[[], datetime] = datetime.now,
    ) -> None:
        self.queue = queue
        self.dead_letters = dead_letters
        self.applier = applier
        self.school = school
        self.broker_users = broker_users
        self.handlers = handlers
        self.replies = replies
        self.batch_size = batch_size
        self.own_user = own_user
        self.max_message_bytes = max_message_bytes
        self.clock = clock
        self.admin_clock = admin_clock
        self._inbox: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()
        self.consuming = False  # for the daemon's health checks

    async def run(self) -> None:
        """Consume until cancelled. The consumer outlives a broker restart: the robust
        channel consumes again under the same tag once it is restored."""
        tag = await self.queue.consume(self._inbox.put)
        self.consuming = True
        try:
            while True:
                batch = [await self._inbox.get()]
                events = _event_count(batch[0])
                while events < self.batch_size and not self._inbox.empty():
                    batch.append(self._inbox.get_nowait())
                    events += _event_count(batch[-1])
                await self.handle_batch(_delivered_on_open_channels(batch, self.school))
        finally:
            self.consuming = False
            await self._cancel(tag)

    async def _cancel(self, tag: str) -> None:
        """Stop consuming, within CANCEL_TIMEOUT: with the broker down the cancel would wait
        for a channel that is not coming (what this consumer held is redelivered anyway)."""
        try:
            await asyncio.wait_for(self.queue.cancel(tag), CANCEL_TIMEOUT)
        except Exception as error:  # the channel may be gone already
            log.debug("consumer.cancel_failed", school=self.school, error=error_text(error))

    async def handle_batch(self, batch: list[AbstractIncomingMessage]) -> None:
        """Settle every message of the batch: dead letters one by one, the rest with one
        acknowledgement for all, once each is applied or handled. A settlement the broker
        cannot take (its channel is gone) is dropped: those messages come again."""
        if not batch:
            return
        changes: list[tuple[AbstractIncomingMessage, EnrollmentChanged]] = []
        others: list[tuple[AbstractIncomingMessage, AnyEvent]] = []
        for message in batch:
            if self._is_own_message(message):  # back through a binding we share: unread
                continue
            try:
                parsed = parse_message(
                    message.body, message.content_type, max_bytes=self.max_message_bytes
                )
            except InvalidMessageError as error:
                await self.dead_letter(message, error.reason, error.detail)
                continue
            for bad in parsed.invalid:
                await self.dead_letter(
                    message, bad.error.reason, bad.error.detail, part=(bad.body, bad.event_id)
                )
            publisher = self._publisher(message)
            for event in parsed.events:
                if self._is_own(event):
                    if self._is_own_user(publisher):  # an echo: ours, back through a binding
                        continue
                    await self.dead_letter(
                        message,
                        "own_origin_not_authenticated",
                        f"claims this school's own origin, came from user {publisher!r}",
                        part=_part(message, event),
                    )
                    continue
                try:
                    check_origin(event, publisher, self.broker_users)
                    check_route(event, self._routing_key(message))
                    check_version(event, self.clock())
                except InvalidMessageError as error:
                    await self.dead_letter(
                        message, error.reason, error.detail, part=_part(message, event)
                    )
                    continue
                if isinstance(event, EnrollmentChanged):
                    changes.append((message, event))
                else:
                    others.append((message, event))

        # Answers to this school's own sync request (their route only its queue binds) are
        # applied as repairs: at the version held too (`Applier.apply_enrollment_changes`).
        answers = [item for item in changes if routes.is_sync_answer(self._routing_key(item[0]))]
        changes = [
            item for item in changes if not routes.is_sync_answer(self._routing_key(item[0]))
        ]
        for part, repair in ((changes, False), (answers, True)):
            if not part:
                continue
            outcomes = await self._apply([event for _, event in part], repair=repair)
            for (message, event), outcome in zip(part, outcomes, strict=True):
                await self._settle(message, event, outcome)
            self._account(outcomes)
        for message, other in others:
            handler = self.handlers.get(type(other))
            try:
                if handler is not None:
                    answer = await self._retrying(functools.partial(handler, other))
                    if answer is not None and message.reply_to and self.replies is not None:
                        await self.replies.publish(
                            aio_pika.Message(
                                answer.model_dump_json().encode(),
                                content_type=EVENT_CONTENT_TYPE,
                                correlation_id=message.correlation_id,
                            ),
                            routing_key=routes.place_answers(sender(other), self.school),
                            # A requester that gave up is gone: its late answer is dropped.
                            mandatory=False,
                        )
            except RejectedEventError as error:
                await self.dead_letter(message, error.reason, error.detail)
            except Exception as error:
                if connection_lost(error):  # the answer could not be sent: ask again
                    await self._give_back(message, error)
                else:
                    await self.dead_letter(message, "handler_failed", error_text(error))
            else:
                metrics.control_messages.labels(self.school, type(other).__name__).inc()
        unsettled = [message for message in batch if not message.processed]
        if unsettled:
            last = unsettled[-1]
            await self._settle_quietly(
                last.ack(multiple=True), "messages.ack_failed", last, len(unsettled)
            )

    async def _settle_quietly(
        self,
        settlement: Awaitable[None],
        event: str,
        message: AbstractIncomingMessage,
        count: int = 1,
    ) -> None:
        """Send an acknowledgement or reject; when the channel is gone, log and drop it: the
        broker has requeued the messages and delivers them again."""
        try:
            await settlement
        except Exception as error:
            if not connection_lost(error):
                raise
            log.warning(
                event,
                school=self.school,
                message_id=message.message_id,
                messages=count,
                error=error_text(error),
            )

    async def _give_back(self, message: AbstractIncomingMessage, error: BaseException) -> None:
        """A message that could not be handled because the broker went away: back to the
        queue (or, with its channel gone, already there), to be handled again."""
        log.warning(
            "message.requeued",
            school=self.school,
            message_id=message.message_id,
            error=error_text(error),
        )
        if not message.processed:
            await self._settle_quietly(message.nack(requeue=True), "message.nack_failed", message)

    def _publisher(self, message: AbstractIncomingMessage) -> str | None:
        """Who published a message, as the broker vouches for it: its verified `user_id`, or,
        on a dead letter this school replayed (which only its own user can write), the
        publisher recorded when it was dead-lettered."""
        return authenticated_publisher(message.user_id, message.headers or {}, self.own_user)

    def _routing_key(self, message: AbstractIncomingMessage) -> str:
        """The key a message was published with. A replayed dead letter comes with key
        `replay` from this school's dead-letter exchange, which only its own user may write:
        the key it was first published with is the one `dlq replay` recorded."""
        recorded = (message.headers or {}).get(ROUTING_KEY_HEADER)
        if (
            message.routing_key == REPLAY_KEY
            and message.exchange == self.dead_letters.name
            and isinstance(recorded, str)
        ):
            return recorded
        return message.routing_key or ""

    def _is_own_message(self, message: AbstractIncomingMessage) -> bool:
        """A message this school's relay published, known by its broker user (which RabbitMQ
        verifies) and origin header, and not a dead letter replayed."""
        headers = message.headers or {}
        return (
            self.own_user is not None
            and message.user_id == self.own_user
            and headers.get(ORIGIN_HEADER) == self.school
            and REPLAYED_HEADER not in headers
        )

    def _is_own(self, event: AnyEvent) -> bool:
        """An event claiming this school's own origin; a place request of our own desk is the
        one that is ours to answer."""
        return sender(event) == self.school and not isinstance(event, PlaceRequested)

    def _is_own_user(self, publisher: str | None) -> bool:
        """Whether this school's own broker user published it (RabbitMQ verifies `user_id`).
        A receiver that knows no own user cannot tell, and takes every such event as an echo."""
        return self.own_user is None or publisher == self.own_user

    async def _retrying(self, work: Callable[[], Awaitable[T]]) -> T:
        """Run `work` until it succeeds or fails for a reason other than a transient one
        (the admin or state DB is unreachable): such failures are waited out, never
        dead-lettered, and the messages stay unacknowledged meanwhile."""

        def before_sleep(attempt: RetryCallState) -> None:
            metrics.apply_retries.labels(self.school).inc()
            log.warning(
                "apply.retrying",
                school=self.school,
                attempt=attempt.attempt_number,
                error=error_text(error) if (error := _failure(attempt)) else None,
            )

        async for retry in AsyncRetrying(
            retry=retry_if_exception(_is_transient),
            wait=wait_exponential(multiplier=0.2, max=30),
            stop=stop_never,
            before_sleep=before_sleep,
            reraise=True,
        ):
            with retry:
                return await work()
        raise AssertionError("unreachable")  # pragma: no cover

    async def _apply(
        self, events: list[EnrollmentChanged], *, repair: bool = False
    ) -> list[Outcome]:
        """Apply with retries on transient failures; a batch that fails otherwise is applied
        one event at a time, so that only the event at fault is dead-lettered."""

        try:
            return await self._retrying(
                lambda: asyncio.to_thread(
                    functools.partial(
                        self.applier.apply_enrollment_changes,
                        events,
                        self.admin_clock(),
                        repair=repair,
                    )
                )
            )
        except Exception as error:
            if len(events) == 1:
                return [Outcome(events[0], "failed", error=None, failure=error_text(error))]
            log.warning("apply.batch_failed", school=self.school, error=error_text(error))
            outcomes: list[Outcome] = []
            for event in events:
                outcomes.extend(await self._apply([event], repair=repair))
            return outcomes

    async def _settle(
        self, message: AbstractIncomingMessage, event: EnrollmentChanged, outcome: Outcome
    ) -> None:
        """Dead-letter an event that cannot be applied; what became of the others is counted
        and logged for the whole batch (`_account`)."""
        if outcome.error is not None:
            await self.dead_letter(
                message, outcome.error.reason, outcome.error.detail, part=_part(message, event)
            )
        elif outcome.failure is not None:
            await self.dead_letter(
                message, "apply_failed", outcome.failure, part=_part(message, event)
            )

    def _account(self, outcomes: list[Outcome]) -> None:
        """One metric update per result and one `apply.batch` line for a batch, not one per
        event: at thousands of events a second, a line each costs as much as applying them.
        Each event's own line (`enrollment.applied`, `.unchanged`, `.stale`) is a debug line."""
        counts: dict[str, int] = {}
        now = self.clock()
        oldest = 0.0
        for outcome in outcomes:
            result = "failed" if outcome.failure is not None else outcome.result
            counts[result] = counts.get(result, 0) + 1
            if result == "applied":
                lag = max((now - outcome.event.time).total_seconds(), 0.0)
                metrics.apply_lag.labels(self.school).observe(lag)
                oldest = max(oldest, lag)
        for result, count in counts.items():
            metrics.received.labels(self.school, result).inc(count)
        if log.is_enabled_for(logging.DEBUG):
            for outcome in outcomes:
                if outcome.result in ("applied", "unchanged", "stale"):
                    data = outcome.event.data
                    log.debug(
                        f"enrollment.{outcome.result}",
                        school=self.school,
                        course=data.course.number,
                        message_id=outcome.event.id,
                        origin=data.origin_school,
                        version=data.version,
                        participant_number=data.participant_number,
                        status=data.status.value,
                    )
        if set(counts) - {"own"}:
            log.info(
                "apply.batch",
                school=self.school,
                events=len(outcomes),
                **{result: counts.get(result, 0) for result in _RESULTS},
                lag_max=round(oldest, 3),
            )

    async def dead_letter(
        self,
        message: AbstractIncomingMessage,
        reason: str,
        detail: str,
        *,
        part: tuple[bytes, str | None] | None = None,
    ) -> None:
        """Into this school's DLQ, with the reason in the headers: the whole message, which
        then leaves the queue, or one `part` of a batch (its JSON and event id), whose
        message is acknowledged with the rest of the batch. Should the DLQ refuse the copy,
        the message itself is dead-lettered by the broker; should the broker be gone, the
        message goes back to the queue unsettled: nothing is lost."""
        if message.processed:  # given back or dead-lettered whole already: this part goes with it
            return
        headers: dict[str, Any] = dict(message.headers or {})
        headers.pop(EVENTS_HEADER, None)
        headers.update(
            {
                REASON_HEADER: reason,
                DETAIL_HEADER: detail[:1000],
                REJECTED_BY_HEADER: self.school,
                REJECTED_AT_HEADER: self.clock().isoformat(),
                ROUTING_KEY_HEADER: self._routing_key(message),
                # Who published it, as authenticated: a second replay keeps the first sender.
                PUBLISHER_HEADER: self._publisher(message) or "",
            }
        )
        if part is not None:
            headers[BATCH_ID_HEADER] = message.message_id or ""
        body, message_id = part if part is not None else (message.body, message.message_id)
        copy = aio_pika.Message(
            body,
            headers=headers,
            content_type=EVENT_CONTENT_TYPE if part is not None else message.content_type,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=message_id,
            user_id=self.own_user,
        )
        try:
            await self.dead_letters.publish(copy, routing_key=DEAD_LETTER_KEY, mandatory=True)
        except Exception as error:
            if connection_lost(error):
                await self._give_back(message, error)
                return
            log.error("message.dead_letter_failed", school=self.school, error=error_text(error))
            await self._settle_quietly(
                message.reject(requeue=False), "message.reject_failed", message
            )
        else:
            if part is None:
                await self._settle_quietly(message.ack(), "message.ack_failed", message)
        metrics.dead_lettered.labels(
            self.school, metrics.known(reason, metrics.DEAD_LETTER_REASONS)
        ).inc()
        log.warning(
            "message.dead_lettered",
            school=self.school,
            message_id=message_id,
            reason=reason,
            detail=detail[:300],
        )


def _failure(attempt: RetryCallState) -> BaseException | None:
    return attempt.outcome.exception() if attempt.outcome else None


def _delivered_on_open_channels(
    batch: list[AbstractIncomingMessage], school: str
) -> list[AbstractIncomingMessage]:
    """The messages that can still be acknowledged: one taken on a channel that has closed
    since (the broker restarted) is back in the queue and comes again on the new channel."""
    live = []
    for message in batch:
        try:
            message.channel  # noqa: B018 - raises when the channel is closed
        except CONNECTION_LOST:
            continue
        live.append(message)
    if len(live) < len(batch):
        log.info("messages.redelivery_awaited", school=school, messages=len(batch) - len(live))
    return live


def _event_count(message: AbstractIncomingMessage) -> int:
    count = (message.headers or {}).get(EVENTS_HEADER)
    return count if isinstance(count, int) and count > 0 else 1


def _part(message: AbstractIncomingMessage, event: AnyEvent) -> tuple[bytes, str | None] | None:
    """One event of a batch, to be dead-lettered alone; None for a message of one event."""
    if message.content_type != BATCH_CONTENT_TYPE:
        return None
    return event.model_dump_json().encode(), event.id
