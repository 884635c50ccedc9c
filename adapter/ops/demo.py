"""`vhs-sync demo`: a master and two subscribers of one shared course, synced for real.

Three adapters run against three SQLite admin DBs and the local RabbitMQ, on a network of
their own (a fresh exchange and queues, removed afterwards). Each school enrolls people,
waitlists one or cancels one; the demo waits until every school sees the same occupancy and
prints the three listings.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
import time
import uuid
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from rich.console import Console

from adapter import broker as broker_module
from adapter.bootstrap import Daemon
from adapter.config import (
    BrokerSection,
    CaptureSection,
    DatabaseSection,
    PeerSchool,
    SchoolSection,
    Settings,
)
from adapter.desk import Person, add_course, enroll, set_status
from adapter.domain import Status
from adapter.ops import logs
from adapter.ops.courses import load_listing
from adapter.ops.render import render_listing
from adapter.store.db import create_admin_schema, make_engine, migrate_state


@dataclass(frozen=True, slots=True)
class DemoSchool:
    id: str
    name: str
    course: str
    email: str


MASTER = DemoSchool("vhs-sr", "VHS SR", "25-64643", "info@vhs-sr.example")
SUBSCRIBERS = (
    DemoSchool("vhs-ka", "vhs Karlsruhe", "25-K4643", "info@vhs-karlsruhe.example"),
    DemoSchool(
        "vhs-vs", "vhs Villingen-Schwenningen", "25-V4643", "vhs@villingen-schwenningen.example"
    ),
)
SCHOOLS = (MASTER, *SUBSCRIBERS)
PEOPLE = {
    MASTER.id: [
        Person(
            "Berger", "Anna", main_email="anna.berger@example.org", iban="DE02120300000000202051"
        ),
        Person("Yilmaz", "Deniz", main_phone="0761 123456", iban="DE02500105170137075030"),
        Person("Schulz", "Paul", iban="DE88100900001234567892"),
    ],
    "vhs-ka": [
        Person("Keller", "Mia", main_email="mia.keller@example.org", main_phone="0721 55501"),
        Person("Nowak", "Jan", main_email="jan.nowak@example.org"),
        Person("Fischer", "Lea", main_phone="0721 55502"),
        Person("Wagner", "Tom", main_email="tom.wagner@example.org"),
    ],
    "vhs-vs": [
        Person("Hofmann", "Eva", main_email="eva.hofmann@example.org"),
        Person("Braun", "Luis", main_phone="07721 4040"),
    ],
}


def _settings(school: DemoSchool, workdir: Path, broker_url: str, network: str) -> Settings:
    return Settings(
        school=SchoolSection(id=school.id, name=school.name),
        admin_db=DatabaseSection(url=f"sqlite:///{workdir / (school.id + '-admin.db')}"),
        state_db=DatabaseSection(url=f"sqlite:///{workdir / (school.id + '-state.db')}"),
        broker=BrokerSection(url=broker_url, network=network),
        capture=CaptureSection(poll_interval=0.1, full_scan_interval=30),
        schools=[
            PeerSchool(id=other.id, name=other.name, email=other.email)
            for other in SCHOOLS
            if other != school
        ],
    )


def _prepare(settings: Settings, school: DemoSchool) -> None:
    engine = make_engine(settings.admin_db.url)
    create_admin_schema(engine)
    migrate_state(make_engine(settings.state_db.url))
    with engine.begin() as connection:
        add_course(
            connection,
            school.course,
            title="Online-Seminar: Linux - kostenfreie Alternative zu Windows 10",
            fee=Decimal("18.00"),
            max_participants=8,
            min_participants=5,
            master_school=MASTER.id,
            master_number=MASTER.course,
        )


def _make_changes(settings: Settings, school: DemoSchool) -> None:
    """Each school enrolls its people; the last waits (subscriber) or cancels (the others)."""
    engine = make_engine(settings.admin_db.url)
    with engine.begin() as connection:
        ids = [enroll(connection, school.course, person)[1] for person in PEOPLE[school.id]]
        if school.id == "vhs-ka":
            set_status(connection, ids[-1], Status.WAITLISTED)
        else:
            set_status(connection, ids[-1], Status.CANCELLED)


def _occupancies(settings_by_school: dict[str, Settings]) -> dict[str, tuple[int, int]]:
    result = {}
    for school in SCHOOLS:
        settings = settings_by_school[school.id]
        listing = load_listing(
            make_engine(settings.admin_db.url),
            make_engine(settings.state_db.url),
            school.course,
            school.id,
        )
        result[school.id] = (listing.registered, listing.waitlisted)
    return result


async def _remove_network(broker_url: str, network: str) -> None:
    connection = await broker_module.connect(broker_url, name="vhs-sync demo cleanup")
    async with connection:
        channel = await connection.channel()
        for school in SCHOOLS:
            spec = broker_module.topology(network, school.id, delivery_limit=20)
            await channel.queue_delete(spec.queue.name)
            await channel.queue_delete(spec.dlq.name)
        await channel.exchange_delete(network)
        await channel.exchange_delete(f"{network}.dlx")


async def run_demo(broker_url: str, workdir: Path | None, console: Console) -> None:
    logs.configure(json=False, level=os.environ.get("VHS_SYNC_DEMO_LOG_LEVEL", "WARNING"))
    network = f"vhs-sync-demo-{uuid.uuid4().hex[:8]}"
    with contextlib.ExitStack() as stack:
        if workdir is None:
            workdir = Path(
                stack.enter_context(tempfile.TemporaryDirectory(prefix="vhs-sync-demo-"))
            )
        workdir.mkdir(parents=True, exist_ok=True)
        settings = {s.id: _settings(s, workdir, broker_url, network) for s in SCHOOLS}
        for school in SCHOOLS:
            _prepare(settings[school.id], school)
        console.print(
            f"[bold]vhs-sync demo[/]: master {MASTER.name} and subscribers "
            f"{', '.join(s.name for s in SUBSCRIBERS)} share course {MASTER.course} "
            f"(network {network}, databases in {workdir})"
        )
        stop = asyncio.Event()
        daemons = [Daemon(settings[s.id]) for s in SCHOOLS]
        tasks = [asyncio.create_task(d.run(stop)) for d in daemons]
        try:
            await asyncio.wait_for(asyncio.gather(*(d.ready.wait() for d in daemons)), 30)
            started = time.monotonic()
            for school in SCHOOLS:
                _make_changes(settings[school.id], school)
            console.print(
                "enrollments, a waitlist entry and cancellations made at all three schools"
            )
            expected = (6, 1)
            while True:
                for task in tasks:
                    if task.done():
                        task.result()  # an adapter that stopped by itself says why
                seen = _occupancies(settings)
                if all(value == expected for value in seen.values()):
                    break
                if time.monotonic() - started > 60:
                    raise RuntimeError(f"sync did not settle within 60 s: {seen}")
                await asyncio.sleep(0.2)
            console.print(f"in sync after {time.monotonic() - started:.1f} s:\n")
            for school in SCHOOLS:
                listing = load_listing(
                    make_engine(settings[school.id].admin_db.url),
                    make_engine(settings[school.id].state_db.url),
                    school.course,
                    school.id,
                )
                console.print(render_listing(listing, school.name))
                console.print()
        finally:
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)
            await _remove_network(broker_url, network)
