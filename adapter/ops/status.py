"""`vhs-sync status`: is this school's adapter keeping up? For operators and orchestrators.

Unhealthy, each with its reason under `problems`: no daemon running (no fresh heartbeat in
the state DB), the admin DB, the state DB or the broker unreachable, letters in the DLQ, no
successful poll within `[health] max_poll_age`, a message waiting in the outbox for 5 minutes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, func, select

from adapter import broker
from adapter.config import Settings
from adapter.ops.health import ping_admin_db, poll_problem
from adapter.ops.heartbeat import Holder, read_holder
from adapter.ops.logs import error_text
from adapter.store import state
from adapter.store.db import migrate_state

STALE_OUTBOX = timedelta(minutes=5)


@dataclass(frozen=True, slots=True)
class Status:
    school: str
    daemon_running: bool
    daemon: str | None  # pid and host of the daemon that holds the school
    heartbeat_age_seconds: float | None
    last_poll_age_seconds: float | None
    last_poll_error: str | None
    admin_db_error: str | None
    state_db_error: str | None
    outbox_pending: int | None
    outbox_oldest_age_seconds: float | None
    outbox_failing: int | None
    outbox_last_error: str | None
    published_enrollments: int | None
    applied_enrollments: int | None
    joined_courses: int | None
    capture_watermark: str | None
    queue_messages: int | None
    dead_letters: int | None
    broker_error: str | None
    problems: list[str] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "healthy": self.healthy}


def _count(engine: Engine, table: Any, *where: Any) -> int:
    with engine.connect() as connection:
        return int(
            connection.execute(select(func.count()).select_from(table).where(*where)).scalar_one()
        )


def _state_figures(engine: Engine, school: str) -> dict[str, Any]:
    migrate_state(engine)
    outbox = state.outbox.c
    with engine.connect() as connection:
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
    return {
        "holder": read_holder(engine, school),
        "oldest": oldest,
        "outbox_pending": _count(engine, state.outbox),
        "outbox_failing": _count(engine, state.outbox, outbox.attempts > 0),
        "outbox_last_error": last_error,
        "published_enrollments": _count(engine, state.published),
        "applied_enrollments": _count(engine, state.applied),
        "joined_courses": _count(engine, state.joined_courses),
        "capture_watermark": watermark.isoformat() if watermark else None,
    }


def _ping_admin(engine: Engine) -> str | None:
    try:
        ping_admin_db(engine)
    except Exception as error:  # any failure to read the admin DB is what status reports
        return error_text(error)
    return None


async def _queue_depths(settings: Settings) -> tuple[int | None, int | None, str | None]:
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
            return (
                queue.declaration_result.message_count,
                dlq.declaration_result.message_count,
                None,
            )
    except Exception as error:  # any failure to reach the broker is what status reports
        return None, None, f"{type(error).__name__}: {error}"[:300]


def _daemon_problems(
    holder: Holder | None, settings: Settings, now: datetime
) -> tuple[bool, list[str]]:
    timeout = timedelta(seconds=settings.health.heartbeat_timeout)
    if holder is None:
        return False, ["daemon not running: it never ran with this state DB"]
    if holder.instance_id is None:
        return False, [f"daemon not running: stopped at {holder.heartbeat_at.isoformat()}"]
    if not holder.running(now, timeout) or holder.gone():
        age = (now - holder.heartbeat_at).total_seconds()
        return False, [f"daemon not running: last heartbeat {age:.0f} s ago (pid {holder.pid})"]
    problem = poll_problem(
        holder.last_poll_at, holder.started_at, now, settings.health.max_poll_age
    )
    if problem is None:
        return True, []
    reason = f": {holder.last_poll_error}" if holder.last_poll_error else ""
    return True, [problem + reason]


async def read_status(
    settings: Settings, state_engine: Engine, now: datetime, *, admin_engine: Engine
) -> Status:
    problems: list[str] = []
    state_db_error = None
    try:
        figures = _state_figures(state_engine, settings.school.id)
    except Exception as error:  # the state DB is down: report it with everything else
        state_db_error = error_text(error)
        problems.append(f"state DB unreachable: {state_db_error}")
        figures = {}
    holder: Holder | None = figures.get("holder")
    running = False
    if state_db_error is None:
        running, found = _daemon_problems(holder, settings, now)
        problems.extend(found)
    admin_db_error = _ping_admin(admin_engine)
    if admin_db_error is not None:
        problems.append(f"admin DB unreachable: {admin_db_error}")
    queue_messages, dead_letters, broker_error = await _queue_depths(settings)
    if broker_error is not None:
        problems.append(f"broker unreachable: {broker_error}")
    if dead_letters:
        problems.append(
            f"{dead_letters} dead letter(s) in the DLQ: see `vhs-sync dlq list`, then replay "
            "or purge them"
        )
    oldest: datetime | None = figures.get("oldest")
    oldest_age = (now - oldest).total_seconds() if oldest else None
    if oldest_age is not None and oldest_age > STALE_OUTBOX.total_seconds():
        problems.append(f"a message has waited in the outbox for {oldest_age:.0f} s")
    heartbeat_age = (now - holder.heartbeat_at).total_seconds() if holder else None
    last_poll = holder.last_poll_at if holder else None
    return Status(
        school=settings.school.id,
        daemon_running=running,
        daemon=f"pid {holder.pid} on {holder.host}" if holder and running else None,
        heartbeat_age_seconds=heartbeat_age,
        last_poll_age_seconds=(now - last_poll).total_seconds() if last_poll else None,
        last_poll_error=holder.last_poll_error if holder else None,
        admin_db_error=admin_db_error,
        state_db_error=state_db_error,
        outbox_pending=figures.get("outbox_pending"),
        outbox_oldest_age_seconds=oldest_age,
        outbox_failing=figures.get("outbox_failing"),
        outbox_last_error=figures.get("outbox_last_error"),
        published_enrollments=figures.get("published_enrollments"),
        applied_enrollments=figures.get("applied_enrollments"),
        joined_courses=figures.get("joined_courses"),
        capture_watermark=figures.get("capture_watermark"),
        queue_messages=queue_messages,
        dead_letters=dead_letters,
        broker_error=broker_error,
        problems=problems,
    )
