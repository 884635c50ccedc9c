"""Concurrency of registrations across schools (issue 3).

Three schools (a master and two subscribers, each with its own SQLite admin DB and real
adapter on the local RabbitMQ) register PEOPLE persons at once for one course of PLACES
places, once per waitlist mode. Each school's desk decides on the occupancy it sees: its own
rows and the rows sync has brought so far. Printed per mode: the regular places given beyond
max (overbooking), how many were registered and waitlisted, and the time from the last
registration until all three listings agree.

    python bench/capacity.py [--people 200] [--places 20]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

from sqlalchemy import update

from adapter.desk import Person
from adapter.ops import logs
from adapter.ops.sandbox import Sandbox, SandboxSchool
from adapter.store import admin

SCHOOLS = [("vhs-sr", "VHS SR"), ("vhs-ka", "vhs Karlsruhe"), ("vhs-hof", "vhs Hofer Land")]
MODES = os.environ.get("BENCH_MODES", "dominant,free_places_first,all_on_waitlist,manual").split(
    ","
)


def register_all(school: SandboxSchool, people: list[Person], interval: float) -> float:
    """Register one school's people, one every `interval` seconds (0: as fast as the desk
    allows); returns when it finished."""
    desk = school.desk
    for person in people:
        desk.register(school.course, person, privacy_consent=True)
        time.sleep(interval)
    return time.monotonic()


async def run_mode(
    broker: str, folder: Path, mode: str, people: int, places: int, rate: float
) -> dict[str, object]:
    """One round: `rate` registrations per second over all schools (0: all at once)."""
    here = folder / f"{mode}-{rate:.0f}"
    here.mkdir()
    sandbox = Sandbox(
        broker, lambda name: f"sqlite:///{here / (name + '.db')}", prefix="vhs-sync-bench"
    )
    for school_id, name in SCHOOLS:
        sandbox.add_school(
            school_id, name, master="vhs-sr", max_participants=places, min_participants=1
        )
    master = sandbox.schools["vhs-sr"]
    with master.admin.begin() as connection:
        connection.execute(
            update(admin.courses)
            .where(admin.courses.c.number == master.course)
            .values(waitlist_mode=mode, modified_at=datetime.now())
        )
    try:
        await sandbox.start_all()
        await sandbox.wait_until(
            lambda: all(s.listing().max_participants == places for s in sandbox.schools.values()),
            what="settings at every school",
        )
        await asyncio.sleep(0.5)  # the subscribers' courses now follow the master's mode
        share = {
            school_id: [
                Person(f"Person {n}", school_id, main_email=f"p{n}@{school_id}.example")
                for n in range(index, people, len(SCHOOLS))
            ]
            for index, (school_id, _) in enumerate(SCHOOLS)
        }
        interval = len(SCHOOLS) / rate if rate else 0.0
        started = time.monotonic()
        # The desks run in threads of their own: in the adapters' worker pool they would
        # hold back the adapters sharing this process (each school has its own in real life).
        with ThreadPoolExecutor(len(SCHOOLS)) as pool:
            loop = asyncio.get_running_loop()
            finished = await asyncio.gather(
                *(
                    loop.run_in_executor(pool, register_all, school, share[school.id], interval)
                    for school in sandbox.schools.values()
                )
            )
        last = max(finished)
        await sandbox.wait_until(
            lambda: sandbox.agree() and sum(sandbox.schools["vhs-sr"].occupancy()) == people,
            within=120,
            what="agreement of all listings",
        )
        agreed = time.monotonic() - last
        registered, waitlisted = master.occupancy()
        return {
            "mode": mode,
            "registered": registered,
            "waitlisted": waitlisted,
            "overbooked": max(0, registered - places),
            "register_s": last - started,
            "agree_s": agreed,
        }
    finally:
        await sandbox.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=200)
    parser.add_argument("--places", type=int, default=20)
    parser.add_argument(
        "--rates",
        default="0,30",
        help="registrations per second over all schools, 0 for all at once (default: 0,30)",
    )
    parser.add_argument("--broker", default="amqp://guest:guest@127.0.0.1:5672/")
    args = parser.parse_args()
    logs.configure(json=False, level=os.environ.get("BENCH_LOG_LEVEL", "ERROR"))
    print(f"{args.people} people register at 3 schools for a course of {args.places} places")
    header = ("pace", "mode", "TN", "WL", "overbooked", "registering", "agree after")
    print("{:<10} {:<18} {:>4} {:>4} {:>10} {:>12} {:>12}".format(*header))
    with tempfile.TemporaryDirectory(prefix="vhs-sync-bench-") as folder:
        for rate in (float(r) for r in args.rates.split(",")):
            pace = f"{rate:.0f}/s" if rate else "at once"
            for mode in MODES:
                row = await run_mode(
                    args.broker, Path(folder), mode, args.people, args.places, rate
                )
                print(
                    f"{pace:<10} {row['mode']:<18} {row['registered']:>4} "
                    f"{row['waitlisted']:>4} {row['overbooked']:>10} "
                    f"{row['register_s']:>11.2f}s {row['agree_s']:>11.2f}s"
                )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS {peak:.0f} MiB")


if __name__ == "__main__":
    asyncio.run(main())
