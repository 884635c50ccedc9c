"""`vhs-sync status`: is this school's adapter keeping up? For operators and orchestrators."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, func, select

from adapter import broker
from adapter.config import Settings
from adapter.store import state

STALE_OUTBOX = timedelta(minutes=5)


@dataclass(frozen=True, slots=True)
class Status:
    school: str
    outbox_pending: int
    outbox_oldest_age_seconds: float | None
    outbox_failing: int
    outbox_last_error: str | None
    published_enrollments: int
    applied_enrollments: int
    joined_courses: int
    capture_watermark: str | None
    queue_messages: int | None
    dead_letters: int | None
    broker_error: str | None

    @property
    def healthy(self) -> bool:
        """Healthy: the broker answers and nothing has waited in the outbox for 5 minutes."""
        stale = (self.outbox_oldest_age_seconds or 0) > STALE_OUTBOX.total_seconds()
        return self.broker_error is None and not stale

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "healthy": self.healthy}


def _count(engine: Engine, table: Any, *where: Any) -> int:
    with engine.connect() as connection:
        return int(
            connection.execute(select(func.count()).select_from(table).where(*where)).scalar_one()
        )


async def read_status(settings: Settings, state_engine: Engine, now: datetime) -> Status:
    outbox = state.outbox.c
    with state_engine.connect() as connection:
        oldest = connection.execute(select(func.min(outbox.created_at))).scalar()
        last_error = connection.execute(
            select(outbox.last_error)
            .where(outbox.last_error.is_not(None))
            .order_by(outbox.id.desc())
            .limit(1)
        ).scalar()
        watermark = connection.execute(select(state.cursor.c.watermark)).scalar()
    if oldest is not None and oldest.tzinfo is None:
        oldest = oldest.replace(tzinfo=UTC)
    queue_messages = dead_letters = None
    broker_error = None
    spec = broker.topology(
        settings.broker.network, settings.school.id, delivery_limit=settings.broker.delivery_limit
    )
    try:
        link = await broker.connect(
            settings.broker.url, name=f"vhs-sync status {settings.school.id}"
        )
        async with link:
            channel = await link.channel()
            queue = await channel.declare_queue(spec.queue.name, passive=True)
            dlq = await channel.declare_queue(spec.dlq.name, passive=True)
            queue_messages = queue.declaration_result.message_count
            dead_letters = dlq.declaration_result.message_count
    except Exception as error:  # any failure to reach the broker is what status reports
        broker_error = f"{type(error).__name__}: {error}"[:300]
    return Status(
        school=settings.school.id,
        outbox_pending=_count(state_engine, state.outbox),
        outbox_oldest_age_seconds=(now - oldest).total_seconds() if oldest else None,
        outbox_failing=_count(state_engine, state.outbox, outbox.attempts > 0),
        outbox_last_error=last_error,
        published_enrollments=_count(state_engine, state.published),
        applied_enrollments=_count(state_engine, state.applied),
        joined_courses=_count(state_engine, state.joined_courses),
        capture_watermark=watermark.isoformat() if watermark else None,
        queue_messages=queue_messages,
        dead_letters=dead_letters,
        broker_error=broker_error,
    )
