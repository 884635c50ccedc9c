"""A network of schools for end-to-end tests: real adapters, real broker, real databases.

Each school runs the same `Daemon` that `vhs-sync run` runs, in this process, on a network
(exchange and queues) of its own that is removed afterwards.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sqlalchemy import Engine, select

from adapter import broker
from adapter.bootstrap import Daemon
from adapter.config import (
    BrokerSection,
    CaptureSection,
    DatabaseSection,
    PeerSchool,
    SchoolSection,
    Settings,
)
from adapter.desk import Person, add_course, enroll
from adapter.domain import Status
from adapter.mapping.listing import Listing
from adapter.ops.courses import load_listing
from adapter.store import admin
from adapter.store.db import create_admin_schema, keyed, make_engine, migrate_state


@dataclass
class School:
    id: str
    name: str
    course: str
    settings: Settings
    admin: Engine
    state: Engine
    daemon: Daemon | None = None
    task: asyncio.Task[None] | None = None
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    def listing(self) -> Listing:
        return load_listing(self.admin, self.state, self.course, self.id)

    def occupancy(self) -> tuple[int, int]:
        listing = self.listing()
        return listing.registered, listing.waitlisted

    def enroll(self, person: Person, status: Status = Status.REGISTERED) -> tuple[int, int]:
        with self.admin.begin() as connection:
            return enroll(connection, self.course, person, status=status)

    def enrollment_rows(self) -> list[dict[str, Any]]:
        with self.admin.connect() as connection:
            rows = connection.execute(
                select(*keyed(*admin.enrollments.c)).where(
                    admin.enrollments.c.course_number == self.course
                )
            ).all()
        return [row._asdict() for row in rows]


class Cluster:
    """Schools sharing courses on one network."""

    def __init__(
        self,
        rabbitmq_url: str,
        database_url: Callable[[str], str],
        *,
        full_scan_interval: float = 60.0,
    ) -> None:
        self.rabbitmq_url = rabbitmq_url
        self.database_url = database_url
        self.network = f"vhs-sync-test-{uuid.uuid4().hex[:10]}"
        self.full_scan_interval = full_scan_interval
        self.schools: dict[str, School] = {}
        self.master_course = f"26-{uuid.uuid4().hex[:6].upper()}"

    def add_school(
        self,
        school_id: str,
        name: str,
        *,
        master: str,
        course: str | None = None,
        max_participants: int = 20,
        peers: list[tuple[str, str]] | None = None,
    ) -> School:
        """A school with a shared course of `master` (its own, if it is the master)."""
        admin_url = self.database_url(f"{school_id}-admin")
        state_url = self.database_url(f"{school_id}-state")
        local_course = course or (
            self.master_course if school_id == master else f"{self.master_course}-{school_id}"
        )
        settings = Settings(
            school=SchoolSection(id=school_id, name=name),
            admin_db=DatabaseSection(url=admin_url),
            state_db=DatabaseSection(url=state_url),
            broker=BrokerSection(url=self.rabbitmq_url, network=self.network),
            capture=CaptureSection(
                poll_interval=0.05, full_scan_interval=self.full_scan_interval, overlap=2
            ),
            schools=[PeerSchool(id=i, name=n, email=f"info@{i}.example") for i, n in peers or []],
        )
        admin_engine, state_engine = make_engine(admin_url), make_engine(state_url)
        create_admin_schema(admin_engine)
        migrate_state(state_engine)
        with admin_engine.begin() as connection:
            add_course(
                connection,
                local_course,
                title="Online-Kurs: Entwickeln von Android Apps - Grundlagen",
                fee=Decimal("53.00"),
                max_participants=max_participants,
                min_participants=5,
                master_school=master,
                master_number=self.master_course,
            )
        school = School(school_id, name, local_course, settings, admin_engine, state_engine)
        self.schools[school_id] = school
        return school

    def three_schools(self) -> tuple[School, School, School]:
        """A master (VHS SR) and two subscribers (vhs Karlsruhe, vhs Hofer Land)."""
        names = [("vhs-sr", "VHS SR"), ("vhs-ka", "vhs Karlsruhe"), ("vhs-hof", "vhs Hofer Land")]
        made = [
            self.add_school(i, n, master="vhs-sr", peers=[p for p in names if p[0] != i])
            for i, n in names
        ]
        return made[0], made[1], made[2]

    async def start(self, school: School) -> None:
        school.stop = asyncio.Event()
        school.daemon = Daemon(school.settings)
        school.task = asyncio.create_task(school.daemon.run(school.stop))
        ready = asyncio.create_task(school.daemon.ready.wait())
        done, _ = await asyncio.wait(
            {ready, school.task}, timeout=30, return_when="FIRST_COMPLETED"
        )
        if school.task in done:
            school.task.result()
        assert ready in done, f"{school.id} did not start"

    async def stop(self, school: School) -> None:
        school.stop.set()
        if school.task is not None:
            await asyncio.wait_for(school.task, 30)
        school.task = None

    async def start_all(self) -> None:
        for school in self.schools.values():
            await self.start(school)

    async def wait_until(
        self, condition: Callable[[], bool], *, within: float = 20.0, what: str = "sync"
    ) -> None:
        """Wait until `condition()` holds; fail, saying what, when it does not in time."""
        deadline = time.monotonic() + within
        while not condition():
            for school in self.schools.values():
                if school.task is not None and school.task.done():
                    school.task.result()
            if time.monotonic() > deadline:
                raise AssertionError(f"{what} did not happen within {within} s")
            await asyncio.sleep(0.05)

    async def quiet(self, seconds: float = 1.0) -> None:
        """Give the adapters time to do anything they would (wrongly) do."""
        await asyncio.sleep(seconds)

    def agree(self, expected: tuple[int, int]) -> bool:
        return all(school.occupancy() == expected for school in self.schools.values())

    async def close(self) -> None:
        for school in self.schools.values():
            if school.task is not None:
                await self.stop(school)
        connection = await broker.connect(self.rabbitmq_url, name="vhs-sync tests cleanup")
        async with connection:
            channel = await connection.channel()
            for school in self.schools.values():
                spec = broker.topology(self.network, school.id, delivery_limit=20)
                await channel.queue_delete(spec.queue.name)
                await channel.queue_delete(spec.dlq.name)
            await channel.exchange_delete(self.network)
            await channel.exchange_delete(f"{self.network}.dlx")
        for school in self.schools.values():
            school.admin.dispose()
            school.state.dispose()
