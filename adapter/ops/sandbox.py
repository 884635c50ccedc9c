"""A sandbox network: schools sharing one course, each with its own admin DB, state DB and
real adapter, on a broker network (exchange and queues) of their own that is removed at the
end. What the demo, the benchmarks and the end-to-end tests run on.

By default every school connects as the one user of `broker_url` and the adapters run
insecure (origins unchecked). Given `school_urls` (a provisioned network: each school's
URL with its own user), they run as in production.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sqlalchemy import Engine, select

from adapter import broker
from adapter.bootstrap import Daemon
from adapter.config import (
    AdminDatabaseSection,
    BrokerSection,
    CaptureSection,
    DatabaseSection,
    PeerSchool,
    SchoolSection,
    Settings,
)
from adapter.desk import Desk, Person, add_course, enroll
from adapter.desk.places import PlaceClient
from adapter.domain import Status
from adapter.mapping.listing import Listing
from adapter.ops.courses import load_listing
from adapter.store import admin
from adapter.store.db import create_admin_schema, keyed, make_engine, migrate_state


@dataclass
class SandboxSchool:
    id: str
    name: str
    course: str
    settings: Settings
    admin: Engine
    state: Engine
    daemon: Daemon | None = None
    task: asyncio.Task[None] | None = None
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def desk(self) -> Desk:
        places = PlaceClient(self.settings.broker.url, self.settings.broker.network, self.id)
        return Desk(self.admin, self.state, self.id, places=places)

    def listing(self) -> Listing:
        return load_listing(self.admin, self.state, self.course, self.id)

    def occupancy(self) -> tuple[int, int]:
        """(TN, WL) as this school sees the course."""
        listing = self.listing()
        return listing.registered, listing.waitlisted

    def enroll(self, person: Person, status: Status = Status.REGISTERED) -> tuple[int, int]:
        """An enrollment made in the admin product; returns (participant, enrollment id)."""
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


class Sandbox:
    """Schools sharing one course (the master's `master_course`) on one network."""

    def __init__(
        self,
        broker_url: str,
        database_url: Callable[[str], str],
        *,
        prefix: str = "vhs-sync-sandbox",
        master_course: str | None = None,
        poll_interval: float = 0.05,
        full_scan_interval: float = 60.0,
        batch_size: int = 200,
        network: str | None = None,
        school_urls: dict[str, str] | None = None,
    ) -> None:
        self.broker_url = broker_url
        self.school_urls = school_urls or {}
        self.database_url = database_url
        self.network = network or f"{prefix}-{uuid.uuid4().hex[:10]}"
        self.master_course = master_course or f"26-{uuid.uuid4().hex[:6].upper()}"
        self.poll_interval = poll_interval
        self.full_scan_interval = full_scan_interval
        self.batch_size = batch_size
        self.schools: dict[str, SandboxSchool] = {}
        self.names: dict[str, str] = {}

    def add_school(
        self,
        school_id: str,
        name: str,
        *,
        master: str,
        course: str | None = None,
        title: str = "Online-Kurs: Entwickeln von Android Apps - Grundlagen",
        fee: Decimal = Decimal("53.00"),
        max_participants: int = 20,
        min_participants: int = 5,
        peers: list[tuple[str, str]] | None = None,
    ) -> SandboxSchool:
        """A school with the shared course of `master` (its own course if it is the master).
        `peers` lists the other schools it knows; by default every school of the sandbox
        when it starts."""
        admin_url = self.database_url(f"{school_id}-admin")
        state_url = self.database_url(f"{school_id}-state")
        local_course = course or (
            self.master_course if school_id == master else f"{self.master_course}-{school_id}"
        )
        settings = Settings(
            school=SchoolSection(id=school_id, name=name),
            admin_db=AdminDatabaseSection(url=admin_url),
            state_db=DatabaseSection(url=state_url),
            broker=BrokerSection(
                url=self.school_urls.get(school_id, self.broker_url),
                network=self.network,
                batch_size=self.batch_size,
                insecure=not self.school_urls,
            ),
            capture=CaptureSection(
                poll_interval=self.poll_interval,
                full_scan_interval=self.full_scan_interval,
                overlap=2,
            ),
            schools=[self.peer(i, n) for i, n in peers] if peers is not None else [],
        )
        admin_engine, state_engine = make_engine(admin_url), make_engine(state_url)
        create_admin_schema(admin_engine)
        migrate_state(state_engine)
        with admin_engine.begin() as connection:
            add_course(
                connection,
                local_course,
                title=title,
                fee=fee,
                max_participants=max_participants,
                min_participants=min_participants,
                master_school=master,
                master_number=self.master_course,
            )
        school = SandboxSchool(school_id, name, local_course, settings, admin_engine, state_engine)
        self.schools[school_id] = school
        self.names[school_id] = name
        return school

    async def start(self, school: SandboxSchool) -> None:
        """Start a school's adapter and wait until it consumes."""
        if not school.settings.schools:
            school.settings.schools = [
                self.peer(i, n) for i, n in self.names.items() if i != school.id
            ]
        school.stop = asyncio.Event()
        school.daemon = Daemon(school.settings)
        school.task = asyncio.create_task(school.daemon.run(school.stop))
        ready = asyncio.create_task(school.daemon.ready.wait())
        done, _ = await asyncio.wait(
            {ready, school.task}, timeout=30, return_when=asyncio.FIRST_COMPLETED
        )
        if school.task in done:
            school.task.result()
        if ready not in done:
            ready.cancel()
            raise TimeoutError(f"the adapter of {school.id} did not start within 30 s")

    async def stop(self, school: SandboxSchool) -> None:
        school.stop.set()
        if school.task is not None:
            await asyncio.wait_for(school.task, 30)
        school.task = None

    async def start_all(self) -> None:
        for school in self.schools.values():
            await self.start(school)

    async def wait_until(
        self, condition: Callable[[], bool], *, within: float = 20.0, what: str = "sync"
    ) -> float:
        """Wait until `condition()` holds; returns the seconds it took. An adapter that
        stopped by itself raises its error; a condition not met in time raises
        `TimeoutError` saying what did not happen."""
        started = time.monotonic()
        while not condition():
            for school in self.schools.values():
                if school.task is not None and school.task.done():
                    school.task.result()
            if time.monotonic() - started > within:
                raise TimeoutError(f"{what} did not happen within {within} s")
            await asyncio.sleep(0.05)
        return time.monotonic() - started

    def agree(self, expected: tuple[int, int] | None = None) -> bool:
        """Whether every school shows the same (TN, WL), and `expected` if given."""
        seen = {school.occupancy() for school in self.schools.values()}
        return len(seen) == 1 and (expected is None or seen == {expected})

    async def close(self) -> None:
        """Stop every adapter and remove the network from the broker: every exchange and
        queue each school's topology names."""
        for school in self.schools.values():
            if school.task is not None:
                await self.stop(school)
        await remove_network(self.broker_url, self.network, self.schools)
        for school in self.schools.values():
            school.admin.dispose()
            school.state.dispose()

    def peer(self, school_id: str, name: str) -> PeerSchool:
        """How the other schools know a school: with its broker user when it has its own."""
        url = self.school_urls.get(school_id)
        return _peer(school_id, name, broker.broker_user(url) if url else None)


async def remove_network(broker_url: str, network: str, schools: Iterable[str]) -> None:
    """Remove from the broker every exchange and queue that these schools' topology names
    (`broker.named`, so that one added later goes too)."""
    exchanges: set[str] = set()
    queues: set[str] = set()
    for school in schools:
        named_exchanges, named_queues = broker.named(
            broker.topology(network, school, delivery_limit=1)
        )
        exchanges.update(exchange.name for exchange in named_exchanges)
        queues.update(queue.name for queue in named_queues)
    connection = await broker.connect(broker_url, name="vhs-sync sandbox cleanup")
    async with connection:
        channel = await connection.channel()
        for queue in sorted(queues):
            await channel.queue_delete(queue)
        for exchange in sorted(exchanges):
            await channel.exchange_delete(exchange)


def _peer(school_id: str, name: str, user: str | None = None) -> PeerSchool:
    return PeerSchool(id=school_id, name=name, email=f"info@{school_id}.example", broker_user=user)
