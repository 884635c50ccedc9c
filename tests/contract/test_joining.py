"""Joining a course (V1): the queue hears the course before the sync request can go out."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, select

from adapter.bootstrap import Daemon, Engines
from adapter.config import BrokerSection, DatabaseSection, SchoolSection, Settings
from adapter.desk import add_course
from adapter.domain import CourseRef
from adapter.mapping import routes
from adapter.ops import offers
from adapter.store import state
from adapter.store.db import create_admin_schema, make_engine, migrate_state


class RecordingQueue:
    """A queue that notes, at each binding, which sync requests the outbox already held."""

    def __init__(self, state_engine: Engine) -> None:
        self.state_engine = state_engine
        self.bindings: list[tuple[str, list[str]]] = []

    async def bind(self, exchange: Any, routing_key: str) -> None:
        with self.state_engine.connect() as connection:
            queued = connection.execute(select(state.outbox.c.routing_key)).scalars().all()
        self.bindings.append((routing_key, list(queued)))


def subscriber(
    database_url: Callable[[str], str], master_number: str
) -> tuple[Settings, Engine, Engine]:
    """vhs-ka with its DBs and its course of vhs-sr's `master_number` (`<number>-KA`)."""
    admin_url, state_url = database_url("vhs-ka-admin"), database_url("vhs-ka-state")
    admin_engine, state_engine = make_engine(admin_url), make_engine(state_url)
    create_admin_schema(admin_engine)
    migrate_state(state_engine)
    with admin_engine.begin() as connection:
        add_course(
            connection, f"{master_number}-KA", master_school="vhs-sr", master_number=master_number
        )
    settings = Settings(
        school=SchoolSection(id="vhs-ka", name="vhs Karlsruhe"),
        admin_db=DatabaseSection(url=admin_url),
        state_db=DatabaseSection(url=state_url),
        broker=BrokerSection(network="vhs-sync-test-join"),
    )
    return settings, admin_engine, state_engine


async def test_a_subscriber_binds_its_queue_before_its_sync_request_is_written(
    database_url: Callable[[str], str],
) -> None:
    """When a school meets a course it subscribed to, the queue is bound for the course's
    anonymised and control routes before the sync request is in the outbox, so that no
    answer can be published before the queue hears it; later calls join nothing twice."""
    settings, admin_engine, state_engine = subscriber(database_url, "26-JOIN1")
    course = CourseRef("vhs-sr", "26-JOIN1")
    daemon = Daemon(settings, engines_=Engines(admin_engine, state_engine))
    queue = RecordingQueue(state_engine)
    daemon._queue = queue
    daemon._exchange = object()

    await daemon._join_courses(everything=True)
    await daemon._join_courses()

    assert [key for key, _ in queue.bindings] == routes.subscriber_bindings(course)
    assert all(queued == [] for _, queued in queue.bindings)
    with state_engine.connect() as connection:
        queued = connection.execute(select(state.outbox.c.routing_key)).scalars().all()
    assert queued == [routes.control(course, "vhs-ka")]
    admin_engine.dispose()
    state_engine.dispose()


class BindingQueue:
    """A queue that keeps its bindings, as a durable queue does across daemon restarts."""

    def __init__(self) -> None:
        self.bound: set[str] = set()

    async def bind(self, exchange: Any, routing_key: str) -> None:
        self.bound.add(routing_key)

    async def unbind(self, exchange: Any, routing_key: str) -> None:
        self.bound.discard(routing_key)


async def test_a_course_left_while_the_daemon_was_stopped_is_unbound_when_it_starts(
    database_url: Callable[[str], str],
) -> None:
    """A school leaves a course with its daemon stopped and the broker out of reach (the
    unsubscribe could not unbind): the next daemon unbinds the course's routes, so that its
    queue stops taking the course's enrollments (each a dead letter: no such course here).
    Subscribed again, the course is bound again and stays bound."""
    settings, admin_engine, state_engine = subscriber(database_url, "26-LEFT1")
    course = CourseRef("vhs-sr", "26-LEFT1")
    queue = BindingQueue()

    async def start() -> Daemon:
        daemon = Daemon(settings, engines_=Engines(admin_engine, state_engine))
        daemon._queue = queue
        daemon._exchange = object()
        await daemon._join_courses(everything=True)
        return daemon

    await start()
    assert queue.bound == set(routes.subscriber_bindings(course))
    now = datetime.now(UTC)
    offers.unsubscribe(admin_engine, state_engine, "vhs-ka", "26-LEFT1-KA", now, now)

    await start()
    assert queue.bound == set()

    with admin_engine.begin() as connection:  # subscribed again: bound again, and kept
        add_course(connection, "26-LEFT1-K2", master_school="vhs-sr", master_number=course.number)
    await start()
    await start()
    assert queue.bound == set(routes.subscriber_bindings(course))
    assert offers.left_unbound(state_engine, "vhs-ka") == set()
    admin_engine.dispose()
    state_engine.dispose()
