"""Memory and time of capture through a burst: a subscriber's Capture on SQLite.

The school has ROWS own enrollments of a shared course, all published (the parent process
makes them and runs the first full scan). Then every one of them changes at once (cancelled,
one transaction), and a capturing adapter of its own (a child process, so that the figure is
capture's alone) polls: the burst poll, then the polls that read the burst again while it lies
in their overlap window, then a full scan. Printed: peak RSS (`ru_maxrss`) after the imports
and after each step, the time each step took, and the outbox rows written.

    python bench/memory.py [--rows 40000] [--polls 5]
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import func, insert, select, update

from adapter.capture.poller import Capture
from adapter.desk import add_course
from adapter.ops import logs
from adapter.store import admin, state
from adapter.store.db import create_admin_schema, make_engine, migrate_state

SCHOOL = "vhs-ka"
COURSE = "26-MEMORY"


def peak_mib() -> float:
    """Peak RSS of this process: VmHWM (ru_maxrss on Linux keeps the parent's peak across
    fork and exec)."""
    try:
        status = Path("/proc/self/status").read_text(encoding="ascii")
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    match = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
    assert match is not None
    return int(match.group(1)) / 1024


def prepare(folder: Path, rows: int) -> datetime:
    """ROWS own enrollments, published by a first full scan; returns their stamp."""
    admin_engine = make_engine(f"sqlite:///{folder / 'admin.db'}")
    state_engine = make_engine(f"sqlite:///{folder / 'state.db'}")
    create_admin_schema(admin_engine)
    migrate_state(state_engine)
    stamp = datetime.now().replace(microsecond=0) - timedelta(minutes=10)
    with admin_engine.begin() as connection:
        add_course(connection, f"{COURSE}-KA", master_school="vhs-sr", master_number=COURSE)
        people = [
            {
                "last_name": f"Person {n}",
                "first_name": "Test",
                "main_email": f"p{n}@example.org",
                "main_phone": f"0721 {n}",
                "iban": "DE02120300000000202051",
                "modified_at": stamp,
            }
            for n in range(rows)
        ]
        numbers = connection.execute(
            insert(admin.participants).returning(
                admin.participants.c.number, sort_by_parameter_order=True
            ),
            people,
        ).scalars()
        connection.execute(
            insert(admin.enrollments),
            [
                {
                    "course_number": f"{COURSE}-KA",
                    "participant_number": number,
                    "status": "A",
                    "registered_on": stamp.date(),
                    "modified_at": stamp,
                }
                for number in numbers
            ],
        )
    Capture(admin_engine, state_engine, SCHOOL).full_scan(datetime.now(UTC))
    with state_engine.begin() as connection:
        connection.execute(state.outbox.delete())
    admin_engine.dispose()
    state_engine.dispose()
    return stamp


def burst(folder: Path) -> None:
    """Every enrollment cancelled at once, stamped now."""
    engine = make_engine(f"sqlite:///{folder / 'admin.db'}")
    with engine.begin() as connection:
        connection.execute(update(admin.enrollments).values(status="S", modified_at=datetime.now()))
    engine.dispose()


def child(folder: str, polls: int, out: str) -> None:
    """The capturing adapter, logging JSON lines as the daemon does; writes its figures to
    `out` as JSON."""
    logs.configure(json=True)
    figures: dict[str, object] = {"imports_mib": round(peak_mib(), 1)}
    base = Path(folder)
    admin_engine = make_engine(f"sqlite:///{base / 'admin.db'}")
    state_engine = make_engine(f"sqlite:///{base / 'state.db'}")
    capture = Capture(admin_engine, state_engine, SCHOOL)
    started = time.perf_counter()
    result = capture.poll(datetime.now(UTC))
    figures["burst_poll_s"] = round(time.perf_counter() - started, 2)
    figures["burst_published"] = result.published
    figures["burst_outbox_rows"] = result.outbox_rows
    figures["after_burst_poll_mib"] = round(peak_mib(), 1)
    again = []
    for _ in range(polls):
        started = time.perf_counter()
        assert capture.poll(datetime.now(UTC)).published == 0
        again.append(time.perf_counter() - started)
    figures["overlap_poll_ms"] = round(1000 * sum(again) / max(len(again), 1), 1)
    figures["after_overlap_polls_mib"] = round(peak_mib(), 1)
    started = time.perf_counter()
    assert capture.full_scan(datetime.now(UTC)).published == 0
    figures["full_scan_s"] = round(time.perf_counter() - started, 2)
    figures["after_full_scan_mib"] = round(peak_mib(), 1)
    with state_engine.connect() as connection:
        figures["outbox_rows"] = connection.execute(
            select(func.count()).select_from(state.outbox)
        ).scalar_one()
    Path(out).write_text(json.dumps(figures), encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=40_000)
    parser.add_argument("--polls", type=int, default=5, help="polls after the burst poll")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.polls, args.child[1])
        return
    logs.configure(json=True, level="WARNING")
    with tempfile.TemporaryDirectory(prefix="vhs-sync-bench-memory-") as folder:
        prepare(Path(folder), args.rows)
        burst(Path(folder))
        out = Path(folder) / "figures.json"
        subprocess.run(
            [sys.executable, __file__, "--child", folder, str(out), "--polls", str(args.polls)],
            stdout=subprocess.DEVNULL,
            check=True,
            timeout=1800,
        )
        figures = json.loads(out.read_text(encoding="utf-8"))
    print(f"{args.rows} own enrollments changed at once (SQLite), capture in a process of its own")
    for name, value in figures.items():
        print(f"  {name:<26}{value}")
    ok = float(figures["after_full_scan_mib"]) < 150
    print(f"peak RSS {figures['after_full_scan_mib']} MiB: {'below' if ok else 'NOT below'} 150")


if __name__ == "__main__":
    main()
