"""The relay's backoff of a message the broker keeps refusing, on SQLite."""

from __future__ import annotations

import types
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aio_pika.exceptions import PublishError
from pamqp.commands import Basic
from sqlalchemy import insert, select

from adapter.publishers.relay import MAX_BACKOFF, OutboxRelay
from adapter.store import state
from adapter.store.db import make_engine, migrate_state

NOW = datetime(2026, 9, 1, 8, 0, tzinfo=UTC)
PERSONAL = "enr.vhs-sr.26-1.vhs-ka.personal"


class NoMaster:
    """An exchange where nobody binds the master's personal route (its adapter never ran)."""

    def __init__(self) -> None:
        self.published: list[str] = []

    async def publish(self, message: Any, *, routing_key: str, **kwargs: Any) -> None:
        if routing_key == PERSONAL:
            returned = types.SimpleNamespace(
                delivery=Basic.Return(312, "NO_ROUTE", "vhs-sync-test", routing_key)
            )
            raise PublishError(returned, None)  # type: ignore[arg-type]
        self.published.append(routing_key)


async def test_a_message_refused_for_an_hour_waits_at_most_the_longest_pause(
    tmp_path: Path,
) -> None:
    """A master whose queue hears nothing for long: its personal state is tried again every
    MAX_BACKOFF however many attempts it has had, and the rest of the outbox goes out (its
    pause had grown past what a timedelta holds after some 47 attempts, and then every
    round failed on it, the rest of the outbox included)."""
    engine = make_engine(f"sqlite:///{tmp_path / 'state.db'}")
    migrate_state(engine)
    with engine.begin() as connection:
        connection.execute(
            insert(state.outbox),
            [
                {
                    "message_id": "refused",
                    "routing_key": PERSONAL,
                    "body": b"{}",
                    "created_at": NOW - timedelta(hours=1),
                    "attempts": 120,
                },
                {
                    "message_id": "fine",
                    "routing_key": "ctl.vhs-sr.26-1.vhs-ka",
                    "body": b"{}",
                    "created_at": NOW,
                    "attempts": 0,
                },
            ],
        )
    exchange = NoMaster()
    relay = OutboxRelay(engine, exchange, school="vhs-ka", user_id="vhs-ka")  # type: ignore[arg-type]
    result = await relay.relay_once(NOW)
    assert (result.sent, result.failed, result.pending) == (1, 1, 1)
    assert exchange.published == ["ctl.vhs-sr.26-1.vhs-ka"]
    with engine.connect() as connection:
        row = connection.execute(select(state.outbox)).one()
    assert (row.message_id, row.attempts, row.last_error) == ("refused", 121, "unroutable")
    assert row.next_attempt_at.replace(tzinfo=UTC) == NOW + MAX_BACKOFF
    engine.dispose()
