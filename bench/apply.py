"""Apply throughput: the adapter's Applier against a minimal executemany of the same rows.

For each backend (SQLite, PostgreSQL) and each role (the master, a subscriber): N new
enrollments of another school, then the same N changed (registered to cancelled), in batches
of BATCH events as the receiver hands them over. The adapter applies them with
`Applier.apply_enrollment_changes`; the baseline writes the same rows into the same tables
with one executemany per table and batch (the master's participant rows, the enrollments,
the state DB's versions), in the same two transactions a batch, and knows every id already,
so it reads nothing. Printed: rows/s of both (the best of REPEAT runs each, taken in turn)
and their ratio (adapter / baseline).

    python bench/apply.py [--rows 4000] [--batch 200] [--repeat 3] [--backends sqlite,postgresql]
        [--postgres postgresql://postgres@127.0.0.1:5432/postgres]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, bindparam, create_engine, insert, text, update

from adapter.consumers.apply import Applier, School
from adapter.desk import add_course
from adapter.domain import CourseRef, EnrollmentKey, EnrollmentState, PersonalData, Status
from adapter.mapping.inbound import sync_remark
from adapter.messages import EnrollmentChanged, enrollment_changed
from adapter.store import admin, state
from adapter.store.db import create_admin_schema, make_engine, migrate_state, upsert

MASTER, ORIGIN, SUBSCRIBER = "vhs-sr", "vhs-ka", "vhs-hd"
DIRECTORY = {
    MASTER: School(MASTER, "VHS SR"),
    ORIGIN: School(ORIGIN, "vhs Karlsruhe"),
    SUBSCRIBER: School(SUBSCRIBER, "VHS HD"),
}
COURSE = "26-APPLY"
STAMP = datetime(2026, 11, 23, 9, 0)
TIME = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)


@contextmanager
def databases(backend: str, server: str, folder: Path) -> Iterator[Callable[[str], str]]:
    """Fresh databases by name on one backend, removed afterwards."""
    made: list[str] = []
    engine = create_engine(server, isolation_level="AUTOCOMMIT") if backend != "sqlite" else None

    def make(name: str) -> str:
        if engine is None:
            return f"sqlite:///{folder / f'{name}-{uuid.uuid4().hex[:6]}.db'}"
        database = f"vhs_bench_{uuid.uuid4().hex[:10]}"
        with engine.connect() as connection:
            connection.execute(text(f"CREATE DATABASE {database}"))
        made.append(database)
        return engine.url.set(database=database).render_as_string(hide_password=False)

    try:
        yield make
    finally:
        if engine is not None:
            with engine.connect() as connection:
                for database in made:
                    connection.execute(text(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)"))
            engine.dispose()


def side(make: Callable[[str], str], school: str) -> tuple[Engine, Engine, str]:
    """An admin DB with the shared course and a state DB; returns them and the local course."""
    admin_engine, state_engine = make_engine(make("admin")), make_engine(make("state"))
    create_admin_schema(admin_engine)
    migrate_state(state_engine)
    local = COURSE if school == MASTER else f"{COURSE}-HD"
    with admin_engine.begin() as connection:
        add_course(connection, local, master_school=MASTER, master_number=COURSE)
    return admin_engine, state_engine, local


def events(school: str, rows: int, status: Status, version: int) -> list[EnrollmentChanged]:
    course = CourseRef(MASTER, COURSE)
    result = []
    for number in range(1, rows + 1):
        personal = PersonalData(f"Name{number}", f"Vorname{number}", f"p{number}@example.org")
        state_ = EnrollmentState(
            EnrollmentKey(ORIGIN, number, course),
            status,
            date(2026, 11, 1),
            personal if school == MASTER else None,
        )
        result.append(
            enrollment_changed(state_, version=version, event_id=f"e-{number}-{version}", time=TIME)
        )
    return result


def batches(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def adapter_run(make: Callable[[str], str], school: str, rows: int, size: int) -> tuple[float, ...]:
    admin_engine, state_engine, _ = side(make, school)
    applier = Applier(admin_engine, state_engine, school, DIRECTORY)
    new = events(school, rows, Status.REGISTERED, 10)
    changed = events(school, rows, Status.CANCELLED, 11)
    seconds = []
    for wave in (new, changed):
        started = time.perf_counter()
        for batch in batches(wave, size):
            outcomes = applier.apply_enrollment_changes(batch, STAMP)
            assert all(o.result == "applied" for o in outcomes), {o.result for o in outcomes}
        seconds.append(time.perf_counter() - started)
    admin_engine.dispose()
    state_engine.dispose()
    return tuple(seconds)


def baseline_run(
    make: Callable[[str], str], school: str, rows: int, size: int
) -> tuple[float, ...]:
    """The same rows, written with one executemany per table and batch, ids known."""
    admin_engine, state_engine, local = side(make, school)
    remark = sync_remark(DIRECTORY[ORIGIN].name)
    with admin_engine.begin() as connection:
        school_row = connection.execute(
            insert(admin.participants).values(last_name="vhs Karlsruhe", first_name="")
        ).inserted_primary_key[0]
    ids: dict[int, int] = {}
    numbers = list(range(1, rows + 1))
    started = time.perf_counter()
    for batch in batches(numbers, size):
        with admin_engine.begin() as connection:
            people = dict.fromkeys(batch, school_row)
            if school == MASTER:
                inserted = connection.execute(
                    insert(admin.participants).returning(
                        admin.participants.c.number, sort_by_parameter_order=True
                    ),
                    [
                        {
                            "last_name": f"Name{n}",
                            "first_name": f"Vorname{n}",
                            "main_email": f"p{n}@example.org",
                            "main_phone": None,
                            "modified_at": STAMP,
                        }
                        for n in batch
                    ],
                )
                people = dict(zip(batch, inserted.scalars(), strict=True))
            inserted = connection.execute(
                insert(admin.enrollments).returning(
                    admin.enrollments.c.id, sort_by_parameter_order=True
                ),
                [
                    {
                        "course_number": local,
                        "participant_number": people[n],
                        "company_number": school_row if school == MASTER else None,
                        "status": "A",
                        "registered_on": date(2026, 11, 1),
                        "waitlisted_since": None,
                        "waitlisted_by_admin": False,
                        "fee": Decimal("0.00"),
                        "balance": Decimal("0.00"),
                        "remark": remark,
                        "payment_type": None,
                        "modified_at": STAMP,
                    }
                    for n in batch
                ],
            )
            ids.update(zip(batch, inserted.scalars(), strict=True))
        with state_engine.begin() as connection:
            upsert(connection, state.applied, [applied(n, 10, "A", ids[n]) for n in batch])
    new_seconds = time.perf_counter() - started
    started = time.perf_counter()
    statement = (
        update(admin.enrollments)
        .where(admin.enrollments.c.id == bindparam("b_id"))
        .values(status=bindparam("b_status"), modified_at=bindparam("b_modified_at"))
    )
    for batch in batches(numbers, size):
        with admin_engine.begin() as connection:
            connection.execute(
                statement,
                [{"b_id": ids[n], "b_status": "S", "b_modified_at": STAMP} for n in batch],
            )
        with state_engine.begin() as connection:
            upsert(connection, state.applied, [applied(n, 11, "S", ids[n]) for n in batch])
    changed_seconds = time.perf_counter() - started
    admin_engine.dispose()
    state_engine.dispose()
    return new_seconds, changed_seconds


def applied(number: int, version: int, status: str, enrollment_id: int) -> dict[str, Any]:
    return {
        "origin_school": ORIGIN,
        "course_master": MASTER,
        "course_number": COURSE,
        "participant_number": number,
        "version": version,
        "status": status,
        "enrollment_id": enrollment_id,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=4000)
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3, help="runs of each; the best counts")
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument(
        "--postgres",
        default=os.environ.get(
            "VHS_SYNC_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
    )
    args = parser.parse_args()
    print(
        f"{args.rows} enrollments, batches of {args.batch}, best of {args.repeat}; "
        "rows/s (adapter / baseline)"
    )
    print(f"{'backend':<11}{'role':<11}{'wave':<9}{'adapter':>10}{'baseline':>10}{'ratio':>8}")
    with tempfile.TemporaryDirectory(prefix="vhs-sync-bench-apply-") as folder:
        for backend in args.backends.split(","):
            server = args.postgres.replace("postgresql://", "postgresql+psycopg://", 1)
            with databases(backend, server, Path(folder)) as make:
                for school in (MASTER, SUBSCRIBER):
                    # Best of REPEAT runs each, taken in turn: the machine is shared.
                    runs = [
                        (run(make, school, args.rows, args.batch))
                        for _ in range(args.repeat)
                        for run in (adapter_run, baseline_run)
                    ]
                    ours = tuple(map(min, zip(*runs[0::2], strict=True)))
                    theirs = tuple(map(min, zip(*runs[1::2], strict=True)))
                    role = "master" if school == MASTER else "subscriber"
                    for wave, mine, base in zip(("new", "changed"), ours, theirs, strict=True):
                        a, b = args.rows / mine, args.rows / base
                        print(f"{backend:<11}{role:<11}{wave:<9}{a:>10.0f}{b:>10.0f}{a / b:>8.2f}")


if __name__ == "__main__":
    main()
