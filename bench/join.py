"""A school joining a course that already has many enrollments (V1), with default settings.

A master and four subscribers share one course holding ENROLLMENTS enrollments, spread
evenly over the five; each school is a separate `vhs-sync run` process with its own SQLite
admin and state DB and the default settings (poll, join and scan intervals), on the local
RabbitMQ and a network of its own that is removed afterwards. Then JOINERS more schools
join one after the other: each one's adapter runs from the start, and the course row is
inserted into its admin DB while it runs (as the admin product, or `vhs-sync subscribe`,
would). Printed for each join:

- seconds from the course row's commit until the joining school's admin DB holds every
  enrollment of the course (its anonymised rows);
- enrollment events the schools that were members already took from their queues meanwhile
  (read from their Prometheus metrics): a join costs them nothing but the sync request.

    python bench/join.py [--enrollments 1000] [--joiners 3]
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from datetime import datetime
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine, func, insert, select

from adapter.desk import add_course
from adapter.ops import sandbox
from adapter.store import admin, state
from adapter.store.db import create_admin_schema, make_engine

COURSE = "26-JOIN"
MEMBERS = [("vhs-sr", "VHS SR"), *((f"vhs-m{n}", f"vhs Mitglied {n}") for n in range(1, 5))]
# What can become of an enrollment event at a receiver (`Outcome.result`).
RESULTS = {"applied", "unchanged", "stale", "own", "rejected", "failed"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def local_course(school: str) -> str:
    return COURSE if school == "vhs-sr" else f"{COURSE}-{school}"


def write_config(
    folder: Path, school: str, schools: list[tuple[str, str]], broker: str, network: str, port: int
) -> Path:
    """Default settings but for the broker (insecure, as guest) and the metrics port."""
    peers = "".join(f'\n[[schools]]\nid = "{i}"\nname = "{n}"\n' for i, n in schools if i != school)
    path = folder / f"{school}.toml"
    path.write_text(
        f'[school]\nid = "{school}"\nname = "{dict(schools)[school]}"\n'
        f'[admin_db]\nurl = "sqlite:///{school}-admin.db"\n'
        f'[state_db]\nurl = "sqlite:///{school}-state.db"\n'
        f'[broker]\nurl = "{broker}"\nnetwork = "{network}"\ninsecure = true\n'
        f"[metrics]\nport = {port}\n{peers}",
        encoding="utf-8",
    )
    return path


def add_shared_course(engine: Engine, school: str) -> None:
    with engine.begin() as connection:
        add_course(
            connection,
            local_course(school),
            max_participants=100_000,
            master_school="vhs-sr",
            master_number=COURSE,
        )


def seed(engine: Engine, school: str, count: int) -> None:
    """`count` own enrollments of the course, imported in one go before the adapter starts."""
    stamp = datetime.now().replace(microsecond=0)
    with engine.begin() as connection:
        numbers = connection.execute(
            insert(admin.participants).returning(
                admin.participants.c.number, sort_by_parameter_order=True
            ),
            [
                {"last_name": f"Person {n}", "first_name": school, "modified_at": stamp}
                for n in range(count)
            ],
        ).scalars()
        connection.execute(
            insert(admin.enrollments),
            [
                {
                    "course_number": local_course(school),
                    "participant_number": number,
                    "status": "A",
                    "registered_on": stamp.date(),
                    "modified_at": stamp,
                }
                for number in numbers
            ],
        )


def rows_held(engine: Engine, school: str) -> int:
    with engine.connect() as connection:
        return int(
            connection.execute(
                select(func.count())
                .select_from(admin.enrollments)
                .where(admin.enrollments.c.course_number == local_course(school))
            ).scalar_one()
        )


def outbox_rows(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(state.outbox)).scalar_one())


def enrollment_events(port: int) -> float:
    """Enrollment events a school's receiver has taken so far, from its `/metrics`."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "vhs_sync_events_received"
        for sample in family.samples
        if sample.name.endswith("_total") and sample.labels.get("result") in RESULTS
    )


def start_adapters(configs: list[Path], folder: Path) -> list[subprocess.Popen[bytes]]:
    """One `vhs-sync run` process per school, its log thrown away."""
    return [
        subprocess.Popen(
            [sys.executable, "-m", "adapter", "run", "--config", str(config)],
            stdout=subprocess.DEVNULL,
            cwd=folder,
        )
        for config in configs
    ]


async def wait_for(condition: object, what: str, within: float = 300) -> None:
    deadline = time.monotonic() + within
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise SystemExit(f"{what} did not happen within {within:.0f} s")
        await asyncio.sleep(0.01)


async def run(broker: str, enrollments: int, joiners: int) -> list[tuple[float, float]]:
    joining = [(f"vhs-j{n}", f"vhs Neu {n}") for n in range(1, joiners + 1)]
    schools = [*MEMBERS, *joining]
    network = f"vhs-sync-bench-{uuid.uuid4().hex[:8]}"
    share = enrollments // len(MEMBERS)
    total = share * len(MEMBERS)
    figures: list[tuple[float, float]] = []
    with tempfile.TemporaryDirectory(prefix="vhs-sync-bench-") as name:
        folder = Path(name)
        ports = {school: free_port() for school, _ in schools}
        configs = {
            school: write_config(folder, school, schools, broker, network, ports[school])
            for school, _ in schools
        }
        engines = {
            school: make_engine(f"sqlite:///{folder / (school + '-admin.db')}")
            for school, _ in schools
        }
        states = {
            school: make_engine(f"sqlite:///{folder / (school + '-state.db')}")
            for school, _ in schools
        }
        for school, _ in schools:
            create_admin_schema(engines[school])
        for school, _ in MEMBERS:
            add_shared_course(engines[school], school)
            seed(engines[school], school, share)
        processes = start_adapters(list(configs.values()), folder)
        try:
            await wait_for(
                lambda: (
                    all(rows_held(engines[s], s) == total for s, _ in MEMBERS)
                    and all(outbox_rows(states[s]) == 0 for s, _ in MEMBERS)
                ),
                f"the {len(MEMBERS)} members agreeing on {total} enrollments",
            )
            members = [school for school, _ in MEMBERS]
            for school, _ in joining:
                await asyncio.sleep(1.0)  # the network at rest
                before = sum(enrollment_events(ports[m]) for m in members)
                add_shared_course(engines[school], school)
                started = time.monotonic()
                await wait_for(
                    lambda s=school: rows_held(engines[s], s) == total,  # type: ignore[misc]
                    f"{school} holding {total} enrollments",
                    within=120,
                )
                seconds = time.monotonic() - started
                await asyncio.sleep(1.0)  # anything sent to the members has arrived
                again = sum(enrollment_events(ports[m]) for m in members) - before
                figures.append((seconds, again))
                print(
                    f"{school} joined ({len(members)} members): all {total} enrollments in "
                    f"{seconds:.2f} s; enrollment events at the members meanwhile: {again:.0f}",
                    flush=True,
                )
                members.append(school)
        finally:
            for process in processes:
                process.terminate()
            for process in processes:
                process.wait(30)
            for engine in [*engines.values(), *states.values()]:
                engine.dispose()
            await sandbox.remove_network(broker, network, [school for school, _ in schools])
    return figures


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--enrollments", type=int, default=1000, help="over the 5 members")
    parser.add_argument("--joiners", type=int, default=3, help="schools joining in turn")
    parser.add_argument("--broker", default="amqp://guest:guest@127.0.0.1:5672/")
    args = parser.parse_args()
    figures = await run(args.broker, args.enrollments, args.joiners)
    seconds = [figure[0] for figure in figures]
    print(
        f"join: median {statistics.median(seconds):.2f} s, max {max(seconds):.2f} s; "
        f"re-deliveries to members: {sum(figure[1] for figure in figures):.0f}"
    )
    print(f"target < 2 s with default settings: {'PASS' if max(seconds) < 2 else 'MISS'}")


if __name__ == "__main__":
    asyncio.run(main())
