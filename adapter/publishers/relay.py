"""The outbox relay (`relay_outbox`, DESIGN decision 5).

Pending outbox rows are published in order, persistent, with publisher confirms and
`mandatory`; a row is deleted only after its confirm. An unroutable or unconfirmed message
stays and is tried again later; publishing one twice is harmless (DESIGN decision 1). One
exception: an anonymised state that no queue took because no school has subscribed yet (a
master alone) is settled and counted, not retried: a school that subscribes later binds its
queue and then asks for the current state (V1).

When many enrollment states are due for the same route at once (a burst, a course sent again
to a new subscriber, the backlog after a broker outage), they travel together as one message
in the CloudEvents JSON batch format: the broker and both ends then handle one message
instead of a hundred. A single due event travels alone, in structured mode.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import aio_pika
import structlog
from aio_pika.abc import AbstractExchange
from aiormq.exceptions import AMQPError, DeliveryError, PublishError
from sqlalchemy import Engine, delete, func, or_, select, update

from adapter.mapping import routes
from adapter.messages import BATCH_CONTENT_TYPE, EVENT_CONTENT_TYPE, EVENTS_HEADER, ORIGIN_HEADER
from adapter.ops import metrics
from adapter.store.state import outbox

log = structlog.get_logger("adapter.publishers")

MAX_BACKOFF = timedelta(seconds=30)


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One message to publish, and the outbox rows it carries."""

    rows: tuple[Any, ...]
    routing_key: str
    body: bytes
    content_type: str
    message_id: str


def pack(rows: Sequence[Any], *, max_events: int) -> list[Outgoing]:
    """The messages that carry these outbox rows: enrollment states for the same route in
    batches of at most `max_events` (one JSON array of the stored events, in outbox order),
    everything else one row a message."""
    messages: list[Outgoing] = []
    groups: dict[str, list[Any]] = {}
    for row in rows:
        if max_events > 1 and routes.carries_enrollments(row.routing_key):
            groups.setdefault(row.routing_key, []).append(row)
        else:
            messages.append(_single(row))
    for routing_key, group in groups.items():
        for start in range(0, len(group), max_events):
            chunk = group[start : start + max_events]
            if len(chunk) == 1:
                messages.append(_single(chunk[0]))
                continue
            messages.append(
                Outgoing(
                    rows=tuple(chunk),
                    routing_key=routing_key,
                    body=b"[" + b",".join(row.body for row in chunk) + b"]",
                    content_type=BATCH_CONTENT_TYPE,
                    message_id=f"batch-{chunk[0].message_id}",
                )
            )
    return messages


def _single(row: Any) -> Outgoing:
    return Outgoing((row,), row.routing_key, row.body, EVENT_CONTENT_TYPE, row.message_id)


@dataclass(frozen=True, slots=True)
class RelayResult:
    """Rows settled (`sent`: confirmed, including the `unheard` ones that no queue took, as is
    normal on their route), rows that failed and stay, and rows still pending."""

    sent: int
    failed: int
    pending: int
    unheard: int = 0


def _reason(error: BaseException) -> str:
    if isinstance(error, PublishError):
        return "unroutable"
    if isinstance(error, DeliveryError):
        return "nacked"
    if isinstance(error, TimeoutError):
        return "timeout"
    return "connection"


class OutboxRelay:
    """Relays one school's outbox to the network's exchange."""

    def __init__(
        self,
        state_engine: Engine,
        exchange: AbstractExchange,
        *,
        school: str,
        user_id: str,
        batch_size: int = 500,
        events_per_message: int = 100,
        confirm_timeout: float = 30.0,
    ) -> None:
        self.state_engine = state_engine
        self.exchange = exchange
        self.school = school
        self.user_id = user_id
        self.batch_size = batch_size
        self.events_per_message = events_per_message
        self.confirm_timeout = confirm_timeout

    def _due(self, now: datetime) -> list[Any]:
        with self.state_engine.connect() as connection:
            return list(
                connection.execute(
                    select(
                        outbox.c.id,
                        outbox.c.message_id,
                        outbox.c.routing_key,
                        outbox.c.body,
                        outbox.c.attempts,
                    )
                    .where(or_(outbox.c.next_attempt_at.is_(None), outbox.c.next_attempt_at <= now))
                    .order_by(outbox.c.id)
                    .limit(self.batch_size)
                ).all()
            )

    def _settle(self, sent: list[int], failed: list[tuple[Any, str]], now: datetime) -> int:
        with self.state_engine.begin() as connection:
            for start in range(0, len(sent), 500):
                connection.execute(delete(outbox).where(outbox.c.id.in_(sent[start : start + 500])))
            for row, reason in failed:
                # The broker refused this one message: back off it alone. The connection
                # failed: every message is tried again as soon as it is back.
                # The exponent is bounded: after some 47 attempts `2**attempts` seconds is
                # more than a timedelta holds, and every round would fail on this row.
                backoff = (
                    min(timedelta(seconds=2 ** min(row.attempts, 16)), MAX_BACKOFF)
                    if reason in ("unroutable", "nacked")
                    else timedelta(0)
                )
                connection.execute(
                    update(outbox)
                    .where(outbox.c.id == row.id)
                    .values(
                        attempts=row.attempts + 1, next_attempt_at=now + backoff, last_error=reason
                    )
                )
            return int(connection.execute(select(func.count()).select_from(outbox)).scalar_one())

    async def _publish(self, outgoing: Outgoing) -> None:
        message = aio_pika.Message(
            outgoing.body,
            content_type=outgoing.content_type,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=outgoing.message_id,
            user_id=self.user_id,
            app_id="vhs-sync",
            headers={ORIGIN_HEADER: self.school, EVENTS_HEADER: len(outgoing.rows)},
        )
        await self.exchange.publish(
            message, routing_key=outgoing.routing_key, mandatory=True, timeout=self.confirm_timeout
        )

    async def relay_once(self, now: datetime) -> RelayResult:
        """Publish what is due; returns how many rows were confirmed, failed and still
        pending."""
        rows = await asyncio.to_thread(self._due, now)
        if not rows:
            return RelayResult(0, 0, 0)
        messages = pack(rows, max_events=self.events_per_message)
        results = await asyncio.gather(
            *(self._publish(outgoing) for outgoing in messages), return_exceptions=True
        )
        sent: list[int] = []
        unheard: list[int] = []
        failed: list[tuple[Any, str]] = []
        for outgoing, result in zip(messages, results, strict=True):
            if result is None:
                sent.extend(row.id for row in outgoing.rows)
            elif isinstance(result, PublishError) and routes.heard_by_nobody_is_normal(
                outgoing.routing_key
            ):
                unheard.extend(row.id for row in outgoing.rows)
            elif isinstance(result, (AMQPError, TimeoutError, ConnectionError, RuntimeError)):
                failed.extend((row, _reason(result)) for row in outgoing.rows)
            elif isinstance(result, BaseException):
                raise result
        pending = await asyncio.to_thread(self._settle, sent + unheard, failed, now)
        metrics.published.labels(self.school).inc(len(sent))
        metrics.outbox_pending.labels(self.school).set(pending)
        if unheard:
            metrics.unheard.labels(self.school).inc(len(unheard))
            log.debug("outbox.heard_by_nobody", school=self.school, events=len(unheard))
        for _row, reason in failed:
            metrics.publish_failures.labels(self.school, reason).inc()
        if failed:
            log.warning(
                "outbox.publish_failed",
                school=self.school,
                failed=len(failed),
                reason=sorted({reason for _, reason in failed}),
                pending=pending,
            )
        return RelayResult(len(sent) + len(unheard), len(failed), pending, unheard=len(unheard))
