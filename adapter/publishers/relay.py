"""The outbox relay (`relay_outbox`, DESIGN decision 5).

Pending outbox rows are published in order, persistent, with publisher confirms and
`mandatory`; a row is deleted only after its confirm. An unroutable or unconfirmed message
stays and is tried again later; publishing one twice is harmless (DESIGN decision 1).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import aio_pika
import structlog
from aio_pika.abc import AbstractExchange
from aiormq.exceptions import AMQPError, DeliveryError, PublishError
from sqlalchemy import Engine, delete, func, or_, select, update

from adapter.ops import metrics
from adapter.store.state import outbox

log = structlog.get_logger("adapter.publishers")

MAX_BACKOFF = timedelta(seconds=30)


@dataclass(frozen=True, slots=True)
class RelayResult:
    sent: int
    failed: int
    pending: int


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
        confirm_timeout: float = 30.0,
    ) -> None:
        self.state_engine = state_engine
        self.exchange = exchange
        self.school = school
        self.user_id = user_id
        self.batch_size = batch_size
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
                backoff = (
                    min(timedelta(seconds=2**row.attempts), MAX_BACKOFF)
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

    async def _publish(self, row: Any) -> None:
        message = aio_pika.Message(
            row.body,
            content_type="application/cloudevents+json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=row.message_id,
            user_id=self.user_id,
            app_id="vhs-sync",
        )
        await self.exchange.publish(
            message, routing_key=row.routing_key, mandatory=True, timeout=self.confirm_timeout
        )

    async def relay_once(self, now: datetime) -> RelayResult:
        """Publish what is due; returns how many were confirmed, failed and still pending."""
        rows = await asyncio.to_thread(self._due, now)
        if not rows:
            return RelayResult(0, 0, 0)
        results = await asyncio.gather(
            *(self._publish(row) for row in rows), return_exceptions=True
        )
        sent: list[int] = []
        failed: list[tuple[Any, str]] = []
        for row, result in zip(rows, results, strict=True):
            if result is None:
                sent.append(row.id)
            elif isinstance(result, (AMQPError, TimeoutError, ConnectionError, RuntimeError)):
                failed.append((row, _reason(result)))
            elif isinstance(result, BaseException):
                raise result
        pending = await asyncio.to_thread(self._settle, sent, failed, now)
        metrics.published.labels(self.school).inc(len(sent))
        metrics.outbox_pending.labels(self.school).set(pending)
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
        return RelayResult(len(sent), len(failed), pending)
