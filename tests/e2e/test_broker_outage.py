"""The broker stops, restarts or is gone while schools keep enrolling: nothing is lost.

Every test here runs on a broker node of its own (never the machine's broker), shared by the
module, and may stop it.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aio_pika
import pytest
from structlog.testing import capture_logs

from adapter.desk import Person, add_course, enroll
from adapter.ops.broker_node import BrokerNode
from adapter.store.db import make_engine
from tests.cluster import Cluster, School
from tests.e2e.test_cli import VHS_SYNC, cli, write_config
from tests.services import RABBITMQ_URL, reachable

pytestmark = pytest.mark.rabbitmq


@contextmanager
def locked(school: School) -> Iterator[None]:
    """An exclusive lock on a school's SQLite admin DB: every write to it waits."""
    path = school.settings.admin_db.url.removeprefix("sqlite:///")
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        yield
    finally:
        holder.execute("ROLLBACK")
        holder.close()


async def test_changes_made_while_the_broker_is_down_all_arrive(
    node_cluster: Cluster, broker_node: BrokerNode
) -> None:
    """While the broker is stopped, changes pile up in the outbox; once it is back, every one
    of them is published and applied (decision 5)."""
    cluster = node_cluster
    master, karlsruhe, hof = cluster.three_schools()
    await cluster.start_all()
    karlsruhe.enroll(Person("Vorher", "Vera"))
    await cluster.wait_until(lambda: cluster.agree((1, 0)))

    with capture_logs() as logs:
        await asyncio.to_thread(broker_node.stop_app)
        try:
            for number in range(10):
                karlsruhe.enroll(Person("Waehrend", f"Person {number}"))
                hof.enroll(Person("Hof", f"Person {number}"))
            await cluster.wait_until(
                lambda: any(e["event"] == "outbox.publish_failed" for e in logs),
                what="a failed publish while the broker is down",
            )
            assert master.occupancy() == (1, 0)
        finally:
            await asyncio.to_thread(broker_node.start_app)
    await cluster.wait_until(lambda: cluster.agree((21, 0)), within=60, what="all 21 everywhere")


async def test_a_broker_restart_during_a_blocked_apply_is_ridden_through(
    node_cluster: Cluster, broker_node: BrokerNode
) -> None:
    """The broker restarts while the master's apply waits for its locked admin DB: the
    master's adapter keeps running, every enrollment arrives there once, and so do those
    made after the restart (item 1)."""
    cluster = node_cluster
    master, karlsruhe, hof = cluster.three_schools()
    await cluster.start_all()
    karlsruhe.enroll(Person("Vorher", "Vera"))
    await cluster.wait_until(lambda: cluster.agree((1, 0)))

    with capture_logs() as logs:
        with locked(master):
            for number in range(15):
                karlsruhe.enroll(Person("Stau", f"Person {number}"))
                hof.enroll(Person("Hof", f"Person {number}"))
            await cluster.wait_until(
                lambda: any(
                    e["event"] == "apply.retrying" and e["school"] == master.id for e in logs
                ),
                within=30,
                what="the master's apply waiting for its admin DB",
            )
            await asyncio.to_thread(broker_node.restart_app)
        await cluster.wait_until(lambda: cluster.agree((31, 0)), within=90, what="all 31")
        karlsruhe.enroll(Person("Nachher", "Nina"))
        await cluster.wait_until(lambda: cluster.agree((32, 0)), within=60, what="one more after")
    settled_on_a_dead_channel = {"messages.ack_failed", "messages.redelivery_awaited"}
    assert any(e["event"] in settled_on_a_dead_channel for e in logs), "no dead channel met"
    assert master.task is not None
    assert not master.task.done(), "the master's adapter stopped"
    assert len(master.enrollment_rows()) == 32, "an enrollment arrived twice at the master"
    assert len(hof.enrollment_rows()) == 32, "an enrollment arrived twice at a subscriber"


class Daemon:
    """A `vhs-sync run` process whose JSON log is read as it is written."""

    def __init__(self, config: Path) -> None:
        self.config = config
        self.events: list[dict[str, Any]] = []
        self.process = subprocess.Popen(
            [*VHS_SYNC, "run", "--config", str(config)], stdout=subprocess.PIPE, text=True
        )
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.events.append(json.loads(line))

    def has_logged(self, event: str, count: int = 1) -> bool:
        return sum(e["event"] == event for e in self.events) >= count

    def has_applied(self, count: int) -> bool:
        """At least `count` events applied, as its `apply.batch` lines count them."""
        return sum(e.get("applied", 0) for e in self.events if e["event"] == "apply.batch") >= count

    def stop(self, within: float) -> tuple[int | None, float]:
        """SIGTERM; the exit code (None when it did not exit in time) and the seconds taken."""
        started = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        try:
            code: int | None = self.process.wait(within)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
            code = None
        return code, time.monotonic() - started


def wait_for(condition: Callable[[], bool], what: str, within: float = 60) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, f"{what} did not happen within {within} s"
        time.sleep(0.1)


def test_sigterm_while_the_broker_is_down_exits_0_and_loses_nothing(
    tmp_path: Path, broker_node: BrokerNode
) -> None:
    """With the broker stopped, SIGTERM ends each daemon with exit code 0 within 10 s; once
    the broker and the daemons are back, what was unacknowledged (applied at the master but
    not acknowledged) and what was unconfirmed (enrolled while the broker was down) all
    arrive, each once (item 5)."""
    network = f"vhs-sync-outage-{uuid.uuid4().hex[:8]}"
    url = broker_node.url
    master = write_config(tmp_path, "vhs-sr", "VHS SR", ("vhs-ka", "vhs Karlsruhe"), network, url)
    subscriber = write_config(
        tmp_path, "vhs-ka", "vhs Karlsruhe", ("vhs-sr", "VHS SR"), network, url
    )
    admin = {config: tmp_path / f"{config.stem}-admin.db" for config in (master, subscriber)}
    for config, number in ((master, "26-200"), (subscriber, "26-200K")):
        cli("admin-db", "create", "--config", config)
        with make_engine(f"sqlite:///{admin[config]}").begin() as connection:
            add_course(connection, number, master_school="vhs-sr", master_number="26-200")

    def enroll_at_subscriber(count: int, name: str) -> None:
        with make_engine(f"sqlite:///{admin[subscriber]}").begin() as connection:
            for number in range(count):
                enroll(connection, "26-200K", Person(name, f"Person {number}"))

    def rows_at_master() -> int:
        connection = sqlite3.connect(admin[master])
        try:
            (count,) = connection.execute(
                "SELECT count(*) FROM BELEGUNG WHERE KNR = '26-200'"
            ).fetchone()
        finally:
            connection.close()
        return int(count)

    daemons = [Daemon(master), Daemon(subscriber)]
    try:
        wait_for(lambda: all(d.has_logged("adapter.started") for d in daemons), "start")
        holder = sqlite3.connect(admin[master], isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")
        enroll_at_subscriber(5, "Unbestaetigt")
        wait_for(lambda: daemons[0].has_logged("apply.retrying"), "a blocked apply at the master")
        broker_node.stop_app()
        enroll_at_subscriber(5, "Waehrend")
        holder.execute("ROLLBACK")
        holder.close()
        wait_for(lambda: daemons[0].has_applied(5), "the blocked apply")
        wait_for(lambda: daemons[1].has_logged("outbox.publish_failed"), "a failed publish")
        stopped = [daemon.stop(within=15) for daemon in daemons]
    finally:
        for daemon in daemons:
            if daemon.process.poll() is None:
                daemon.process.kill()
    assert [code for code, _ in stopped] == [0, 0], stopped
    assert max(seconds for _, seconds in stopped) < 10, stopped

    broker_node.start_app()
    daemons = [Daemon(master), Daemon(subscriber)]
    try:
        wait_for(lambda: rows_at_master() >= 10, "all 10 at the master", within=90)
        queue = f"{network}.vhs-sr"
        wait_for(lambda: broker_node.queue_depths()[queue] == 0, "the redeliveries handled")
    finally:
        for daemon in daemons:
            daemon.stop(within=30)
    assert rows_at_master() == 10, "an enrollment arrived twice at the master"


async def test_the_own_node_keeps_its_data_through_kill_9_and_the_shared_broker_is_untouched(
    broker_node: BrokerNode,
) -> None:
    """A persistent message in a quorum queue of the tests' own node is still there after the
    node was killed with SIGKILL and booted again on its data; the machine's broker answered
    all along."""
    queue = f"vhs-test-node-{uuid.uuid4().hex[:8]}"
    connection = await aio_pika.connect(broker_node.url)
    async with connection:
        channel = await connection.channel()
        await channel.declare_queue(queue, durable=True, arguments={"x-queue-type": "quorum"})
        await channel.default_exchange.publish(
            aio_pika.Message(b"kept", delivery_mode=aio_pika.DeliveryMode.PERSISTENT), queue
        )

    def in_the_queue() -> bool:
        return broker_node.queue_depths().get(queue) == 1

    await asyncio.to_thread(wait_for, in_the_queue, "the message in the queue")
    shared_before = reachable(RABBITMQ_URL)
    await asyncio.to_thread(broker_node.kill)
    assert not broker_node.accepts_connections()
    assert reachable(RABBITMQ_URL) == shared_before, "the machine's broker went away"
    await asyncio.to_thread(broker_node.start)
    await asyncio.to_thread(wait_for, in_the_queue, "the queue recovered from its log")
    connection = await aio_pika.connect(broker_node.url)
    async with connection:
        channel = await connection.channel()
        kept = await (await channel.get_queue(queue)).get(timeout=10)
        assert kept is not None
        assert kept.body == b"kept"
        await kept.ack()
        await channel.queue_delete(queue)
