"""One daemon per school, and its heartbeat: a row of the state DB (`state.daemon`).

The daemon that holds the row beats it every second or so with the time of its last
successful poll; `vhs-sync status` reads it. A second daemon of the school refuses to start
while the row is held with a fresh heartbeat. A daemon stopped cleanly frees the row; one
that was killed frees it when its heartbeat grows old, or at once for a daemon started on
the same host, which sees that the holder's process is gone. Taking the row is one
conditional statement, so two daemons starting at once never both hold it.
"""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, insert, select, update
from sqlalchemy.exc import IntegrityError

from adapter.store import state

daemon = state.daemon.c


class SchoolHeldError(Exception):
    """Another daemon of this school is running (or was, until it lost the school)."""


@dataclass(frozen=True, slots=True)
class Holder:
    """The daemon row of a school as it was read."""

    instance_id: str | None
    host: str
    pid: int
    started_at: datetime
    heartbeat_at: datetime
    last_poll_at: datetime | None
    last_poll_error: str | None

    def running(self, now: datetime, timeout: timedelta) -> bool:
        """Whether a daemon holds the school and beat within `timeout`."""
        return self.instance_id is not None and now - self.heartbeat_at <= timeout

    def gone(self) -> bool:
        """Whether the daemon's process is known to be gone: it ran on this host, and no
        process has its pid (a killed daemon, before its heartbeat grows old)."""
        return self.host == _hostname() and not _process_alive(self.pid)


def _stored(moment: datetime) -> datetime:
    """UTC without zone: what every backend's plain DateTime keeps unchanged."""
    return moment.astimezone(UTC).replace(tzinfo=None)


def _read(moment: datetime | None) -> datetime | None:
    return None if moment is None else moment.replace(tzinfo=UTC)


def read_holder(engine: Engine, school: str) -> Holder | None:
    """The school's daemon row, or None when no daemon ever ran on this state DB."""
    with engine.connect() as connection:
        row = connection.execute(
            select(
                daemon.instance_id,
                daemon.host,
                daemon.pid,
                daemon.started_at,
                daemon.heartbeat_at,
                daemon.last_poll_at,
                daemon.last_poll_error,
            ).where(daemon.school == school)
        ).one_or_none()
    if row is None:
        return None
    return Holder(
        instance_id=row.instance_id,
        host=row.host,
        pid=row.pid,
        started_at=row.started_at.replace(tzinfo=UTC),
        heartbeat_at=row.heartbeat_at.replace(tzinfo=UTC),
        last_poll_at=_read(row.last_poll_at),
        last_poll_error=row.last_poll_error,
    )


def _hostname() -> str:
    return socket.gethostname()[:255]


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


class Lease:
    """This daemon's hold on its school."""

    def __init__(self, engine: Engine, school: str, *, timeout: timedelta) -> None:
        self.engine = engine
        self.school = school
        self.timeout = timeout
        self.instance_id = uuid.uuid4().hex
        self.host = _hostname()
        self.pid = os.getpid()

    def _free(self, holder: Holder, now: datetime) -> bool:
        """Whether `holder` no longer holds the school: stopped, silent for too long, or a
        process of this host that is gone (a pid equal to ours is another, dead, process:
        a container's daemon restarted as pid 1)."""
        if holder.instance_id is None or not holder.running(now, self.timeout):
            return True
        return holder.host == self.host and (
            holder.pid == self.pid or not _process_alive(holder.pid)
        )

    def acquire(self, now: datetime) -> Holder | None:
        """Take the school, or raise `SchoolHeldError` naming who holds it. Returns the
        daemon it took the school from when that one had not stopped cleanly."""
        row = {
            "instance_id": self.instance_id,
            "host": self.host,
            "pid": self.pid,
            "started_at": _stored(now),
            "heartbeat_at": _stored(now),
            "last_poll_at": None,
            "last_poll_error": None,
        }
        try:
            with self.engine.begin() as connection:
                connection.execute(insert(state.daemon).values(school=self.school, **row))
            return None
        except IntegrityError:
            pass  # a daemon ran here before: take its row if it is free
        for _ in range(3):
            holder = read_holder(self.engine, self.school)
            assert holder is not None  # rows of the daemon table are never deleted
            if not self._free(holder, now):
                age = (now - holder.heartbeat_at).total_seconds()
                raise SchoolHeldError(
                    f"another daemon of school {self.school} is running (pid {holder.pid} on "
                    f"{holder.host}, heartbeat {age:.0f} s ago): stop it first, or wait "
                    f"{self.timeout.total_seconds():.0f} s after it was killed"
                )
            same = (
                daemon.instance_id.is_(None)
                if holder.instance_id is None
                else daemon.instance_id == holder.instance_id
            )
            with self.engine.begin() as connection:
                taken = connection.execute(
                    update(state.daemon)
                    .where(
                        daemon.school == self.school,
                        same,
                        daemon.heartbeat_at == _stored(holder.heartbeat_at),
                    )
                    .values(**row)
                ).rowcount
            if taken == 1:
                return holder if holder.instance_id is not None else None
        raise SchoolHeldError(f"another daemon of school {self.school} is starting at once")

    def beat(
        self, now: datetime, last_poll_at: datetime | None, last_poll_error: str | None
    ) -> None:
        """Record that this daemon lives and how its polls fare; raises `SchoolHeldError`
        when another daemon has taken the school meanwhile."""
        with self.engine.begin() as connection:
            held = connection.execute(
                update(state.daemon)
                .where(daemon.school == self.school, daemon.instance_id == self.instance_id)
                .values(
                    heartbeat_at=_stored(now),
                    last_poll_at=None if last_poll_at is None else _stored(last_poll_at),
                    last_poll_error=None if last_poll_error is None else last_poll_error[:500],
                )
            ).rowcount
        if held != 1:
            raise SchoolHeldError(f"another daemon has taken school {self.school}")

    def release(self, now: datetime) -> None:
        """Free the school for the next daemon."""
        with self.engine.begin() as connection:
            connection.execute(
                update(state.daemon)
                .where(daemon.school == self.school, daemon.instance_id == self.instance_id)
                .values(instance_id=None, heartbeat_at=_stored(now))
            )
