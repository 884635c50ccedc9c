"""`vhs-sync demo`: a master and two subscribers of one shared course, synced for real.

Three adapters run against three SQLite admin DBs and the local RabbitMQ, on a network of
their own (removed afterwards). Each school enrolls people, waitlists one or cancels one;
the demo waits until every school sees the same occupancy and prints the three listings.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from decimal import Decimal
from pathlib import Path

from rich.console import Console

from adapter.desk import Person, set_status
from adapter.domain import Status
from adapter.ops import logs
from adapter.ops.render import render_listing
from adapter.ops.sandbox import Sandbox, SandboxSchool

MASTER = ("vhs-sr", "VHS SR", "25-64643")
SUBSCRIBERS = (
    ("vhs-ka", "vhs Karlsruhe", "25-K4643"),
    ("vhs-vs", "vhs Villingen-Schwenningen", "25-V4643"),
)
PEOPLE = {
    "vhs-sr": [
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


def _make_changes(school: SandboxSchool) -> None:
    """Each school enrolls its people; the last waits (vhs Karlsruhe) or cancels (the others)."""
    ids = [school.enroll(person)[1] for person in PEOPLE[school.id]]
    with school.admin.begin() as connection:
        last = Status.WAITLISTED if school.id == "vhs-ka" else Status.CANCELLED
        set_status(connection, ids[-1], last)


async def run_demo(broker_url: str, workdir: Path | None, console: Console) -> None:
    logs.configure(json=False, level=os.environ.get("VHS_SYNC_DEMO_LOG_LEVEL", "WARNING"))
    with contextlib.ExitStack() as stack:
        if workdir is None:
            workdir = Path(
                stack.enter_context(tempfile.TemporaryDirectory(prefix="vhs-sync-demo-"))
            )
        workdir.mkdir(parents=True, exist_ok=True)
        folder = workdir
        sandbox = Sandbox(
            broker_url,
            lambda name: f"sqlite:///{folder / (name + '.db')}",
            prefix="vhs-sync-demo",
            master_course=MASTER[2],
            poll_interval=0.1,
        )
        for school_id, name, course in (MASTER, *SUBSCRIBERS):
            sandbox.add_school(
                school_id,
                name,
                master=MASTER[0],
                course=course,
                title="Online-Seminar: Linux - kostenfreie Alternative zu Windows 10",
                fee=Decimal("18.00"),
                max_participants=8,
                min_participants=5,
            )
        console.print(
            f"[bold]vhs-sync demo[/]: master {MASTER[1]} and subscribers "
            f"{', '.join(name for _, name, _ in SUBSCRIBERS)} share course {MASTER[2]} "
            f"(network {sandbox.network}, databases in {workdir})"
        )
        try:
            await sandbox.start_all()
            for school in sandbox.schools.values():
                _make_changes(school)
            console.print(
                "enrollments, a waitlist entry and cancellations made at all three schools"
            )
            took = await sandbox.wait_until(
                lambda: sandbox.agree((6, 1)), within=60, what="sync of all three schools"
            )
            console.print(f"in sync after {took:.1f} s:\n")
            for school in sandbox.schools.values():
                console.print(render_listing(school.listing(), school.name))
                console.print()
        finally:
            await sandbox.close()
