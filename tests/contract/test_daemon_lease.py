"""One daemon per school: the lease in the state DB, on each backend (`heartbeat.Lease`)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from adapter.ops.heartbeat import Holder, Lease, SchoolHeldError, read_holder
from adapter.store.db import make_engine, migrate_state

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
TIMEOUT = timedelta(seconds=15)


def dead_pid() -> int:
    """The pid of a process that has ended."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def lease(engine: object, *, host: str = "host-a", pid: int = 10**6) -> Lease:
    held = Lease(engine, "vhs-ka", timeout=TIMEOUT)  # type: ignore[arg-type]
    held.host, held.pid = host, pid
    return held


def test_a_second_daemon_is_refused_while_the_first_beats_and_takes_over_after(
    database_url: Callable[[str], str],
) -> None:
    """A second daemon of the school, on another host, is refused with who holds the school
    while the first one's heartbeat is fresh; it takes the school once the first stopped
    cleanly, or once the first one's heartbeat is older than the timeout (it was killed)."""
    engine = make_engine(database_url("vhs-ka-state"))
    migrate_state(engine)
    first, second = lease(engine, host="host-a", pid=111), lease(engine, host="host-b", pid=222)
    first.acquire(T0)
    with pytest.raises(SchoolHeldError, match="pid 111 on host-a"):
        second.acquire(T0 + timedelta(seconds=1))
    first.beat(T0 + timedelta(seconds=10), T0 + timedelta(seconds=9), None)
    with pytest.raises(SchoolHeldError):
        second.acquire(T0 + timedelta(seconds=20))  # 10 s after the last beat: still held

    second.acquire(T0 + timedelta(seconds=26))  # 16 s after it: the first one was killed
    holder = read_holder(engine, "vhs-ka")
    assert holder is not None
    assert (holder.instance_id, holder.host, holder.pid) == (second.instance_id, "host-b", 222)
    with pytest.raises(SchoolHeldError, match="taken"):
        first.beat(T0 + timedelta(seconds=27), None, None)  # the first one, back: it must stop

    second.release(T0 + timedelta(seconds=30))
    holder = read_holder(engine, "vhs-ka")
    assert holder is not None
    assert holder.instance_id is None
    assert not holder.running(T0 + timedelta(seconds=30), TIMEOUT)
    first.acquire(T0 + timedelta(seconds=31))  # stopped cleanly: free at once
    engine.dispose()


def test_a_killed_daemon_on_the_same_host_is_taken_over_at_once(
    database_url: Callable[[str], str],
) -> None:
    """A daemon restarted on the host of one that was killed takes the school at once: the
    holder's process is gone. A living process of the same host still holds it."""
    engine = make_engine(database_url("vhs-ka-state"))
    migrate_state(engine)
    lease(engine, host="host-a", pid=dead_pid()).acquire(T0)
    restarted = lease(engine, host="host-a", pid=os.getpid())  # this test's process: alive
    restarted.acquire(T0 + timedelta(seconds=1))
    restarted.beat(T0 + timedelta(seconds=2), T0, "OperationalError")
    with pytest.raises(SchoolHeldError):
        lease(engine, host="host-a", pid=dead_pid()).acquire(T0 + timedelta(seconds=3))
    holder = read_holder(engine, "vhs-ka")
    assert holder is not None
    assert (holder.pid, holder.last_poll_at, holder.last_poll_error) == (
        os.getpid(),
        T0,
        "OperationalError",
    )
    engine.dispose()


def test_a_daemon_is_gone_when_its_host_is_this_one_and_its_process_has_ended() -> None:
    """`status` reads a killed daemon of this host as not running at once: its pid is gone."""
    here = socket.gethostname()

    def holder(host: str, pid: int) -> Holder:
        return Holder("x", host, pid, T0, T0, None, None)

    assert holder(here, dead_pid()).gone()
    assert not holder(here, os.getpid()).gone()
    assert not holder("elsewhere.example", dead_pid()).gone()
