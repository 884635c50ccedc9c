"""Every statement the adapter runs on the admin DB, compiled for Microsoft SQL Server.

No SQL Server runs here. Instead the real flows (capture, apply, the listings, the desk,
automatic advance, reconciliation and settlement) run on SQLite admin DBs, and a
`before_execute` listener compiles each statement they execute with SQLAlchemy's SQL Server
dialect (pymssql, SQL Server 2019): it must compile, carry at most 2,100 bound parameters
(SQL Server's limit) and use nothing SQL Server lacks (`IS 1`, `TRUE`, row values,
`ON CONFLICT`, a `FOR UPDATE` without its lock hint, raw SQL text). What this cannot show:
how a real server plans, locks and collates.
"""

from __future__ import annotations

import importlib.util
import json
import re
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, delete, event, insert, select, update
from sqlalchemy.dialects.mssql import pymssql as mssql_pymssql
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.exc import CompileError
from sqlalchemy.schema import CreateIndex, CreateTable, ExecutableDDLElement
from sqlalchemy.sql import ClauseElement, Insert, TextClause, Update
from sqlalchemy.sql.selectable import Select

from adapter.capture.poller import Capture
from adapter.consumers.apply import Applier, School
from adapter.desk import Desk, Person, add_course, delete_enrollment, enroll
from adapter.desk.advance import Advancer, accept_place_offer
from adapter.desk.places import PlaceAllocator
from adapter.desk.registration import lock_course_row
from adapter.domain import CourseRef, EnrollmentKey, Status
from adapter.messages import (
    CourseSettingsChanged,
    EnrollmentChanged,
    digest_requested,
    place_offered,
    place_requested,
)
from adapter.ops.course_state import read_course_state
from adapter.ops.courses import load_listing
from adapter.ops.reconcile import answer_digest, courses_here, local_issues
from adapter.ops.settlement import enter_rates, load_settlement, set_balances
from adapter.store import admin, state
from adapter.store.db import (
    DatabaseUrlError,
    create_admin_schema,
    make_engine,
    migrate_state,
    upsert_in_sets,
)

SQL_SERVER_PARAMETERS = 2100
MASTER, SUBSCRIBER = "vhs-sr", "vhs-ka"
COURSE = "26-MS1"
NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
STAMP = NOW.replace(tzinfo=None)
DIRECTORY = {
    MASTER: School(MASTER, "VHS SR"),
    SUBSCRIBER: School(SUBSCRIBER, "vhs Karlsruhe", "kurse@vhs-ka.example"),
}

# What SQL Server does not understand, in SQL compiled for it.
_FOREIGN = {
    "IS 1 / IS 0 (a boolean compared with IS)": re.compile(r"\bIS (NOT )?[01]\b"),
    "a boolean literal": re.compile(r"\b(TRUE|FALSE)\b", re.IGNORECASE),
    "a row value: (a, b) IN ((...))": re.compile(r"\)\s+IN\s+\(\s*\("),
    "ON CONFLICT / ON DUPLICATE KEY": re.compile(r"\bON (CONFLICT|DUPLICATE KEY)\b"),
    "LIMIT / OFFSET": re.compile(r"\b(LIMIT|OFFSET)\b(?!.*\bFETCH\b)"),
    "RETURNING": re.compile(r"\bRETURNING\b"),
}


def sql_server() -> Dialect:
    """SQLAlchemy's SQL Server dialect as it is once connected to SQL Server 2019."""
    dialect = mssql_pymssql.dialect()
    dialect.server_version_info = (15, 0, 2000)
    dialect._setup_version_attributes()
    dialect._supports_nvarchar_max = True
    return dialect


@dataclass
class Checked:
    """One statement as SQL Server would get it."""

    sql: str
    parameters: int
    kind: str


@dataclass
class SqlServerCheck:
    """Compiles every statement an engine executes for SQL Server and notes what fails."""

    dialect: Dialect = field(default_factory=sql_server)
    statements: list[Checked] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def attach(self, engine: Engine) -> None:
        event.listen(engine, "before_execute", self._before_execute)

    def _before_execute(
        self,
        _connection: Connection,
        element: Any,
        multiparams: Sequence[Any],
        params: Any,
        _options: Any,
    ) -> None:
        self.check(
            element, multiparams[0] if multiparams else params or None, many=len(multiparams) > 1
        )

    def check(self, element: Any, parameters: Any = None, *, many: bool = False) -> None:
        kind = type(element).__name__
        if isinstance(element, TextClause):
            self.problems.append(f"raw SQL text, not portable: {element.text[:80]}")
            return
        if not isinstance(element, ClauseElement):
            self.problems.append(f"not a SQLAlchemy statement ({kind}): {str(element)[:80]}")
            return
        keyword: dict[str, Any] = {"compile_kwargs": {"render_postcompile": True}}
        if isinstance(element, Insert | Update) and isinstance(parameters, dict):
            keyword["column_keys"] = list(parameters)
            keyword["for_executemany"] = many
        try:
            compiled = element.compile(dialect=self.dialect, **keyword)
        except CompileError as error:
            self.problems.append(f"{kind} does not compile for SQL Server: {error}")
            return
        sql = str(compiled)
        count = len(compiled.params or ())  # each IN list expanded, TOP n rendered inline
        self.statements.append(Checked(sql, count, kind))
        if count > SQL_SERVER_PARAMETERS:
            self.problems.append(f"{kind} with {count} parameters: {sql[:120]}")
        if isinstance(element, ExecutableDDLElement):
            return
        for what, pattern in _FOREIGN.items():
            if pattern.search(sql):
                self.problems.append(f"{kind} uses {what}: {sql[:200]}")
        locking = isinstance(element, Select) and element._for_update_arg is not None
        if locking and "UPDLOCK" not in sql:
            self.problems.append(f"FOR UPDATE takes no lock on SQL Server: {sql[:120]}")

    @property
    def most_parameters(self) -> int:
        return max((s.parameters for s in self.statements), default=0)


class Side:
    """One school's SQLite admin DB (checked for SQL Server) and state DB."""

    def __init__(self, tmp_path: Path, school: str, check: SqlServerCheck) -> None:
        self.school = school
        self.admin = make_engine(f"sqlite:///{tmp_path / (school + '-admin.db')}")
        self.state = make_engine(f"sqlite:///{tmp_path / (school + '-state.db')}")
        check.attach(self.admin)
        create_admin_schema(self.admin)
        migrate_state(self.state)
        self.capture = Capture(self.admin, self.state, school, admin_clock=lambda: STAMP)
        self.applier = Applier(self.admin, self.state, school, DIRECTORY)

    def take_outbox(self) -> list[bytes]:
        with self.state.begin() as connection:
            bodies = list(connection.execute(select(state.outbox.c.body)).scalars())
            connection.execute(delete(state.outbox))
        return bodies


def enrollment_events(bodies: list[bytes], *, personal: bool) -> list[EnrollmentChanged]:
    events = [
        EnrollmentChanged.model_validate_json(body)
        for body in bodies
        if b"enrollment.changed" in body
    ]
    return [e for e in events if (e.data.participant is not None) == personal]


@pytest.fixture
def check() -> SqlServerCheck:
    return SqlServerCheck()


@pytest.fixture
def network(tmp_path: Path, check: SqlServerCheck) -> Iterator[tuple[Side, Side]]:
    master, subscriber = Side(tmp_path, MASTER, check), Side(tmp_path, SUBSCRIBER, check)
    yield master, subscriber
    for side in (master, subscriber):
        side.admin.dispose()
        side.state.dispose()


def test_the_reference_schema_is_sql_server_ddl() -> None:
    """The admin tables compile for SQL Server; BEARBDATUM is DATETIME, flags BIT, dates DATE."""
    dialect = sql_server()
    ddl = {
        table.name: str(CreateTable(table).compile(dialect=dialect))
        for table in admin.metadata.sorted_tables
    }
    for table in admin.metadata.sorted_tables:
        for index in table.indexes:
            str(CreateIndex(index).compile(dialect=dialect))
    for name in ("KURSE", "TEILNEHM", "BELEGUNG"):
        assert re.search(r"\[BEARBDATUM\] DATETIME(2)? NULL", ddl[name]), ddl[name]
    assert "[WL_VERWALTER] BIT NOT NULL" in ddl["BELEGUNG"]
    assert "[ANM_DATUM] DATE NULL" in ddl["BELEGUNG"]
    assert "[BEMERKUNG] VARCHAR(max) NULL" in ddl["BELEGUNG"]
    assert "[ID] INTEGER NOT NULL IDENTITY" in ddl["BELEGUNG"]


def test_the_desk_locks_the_course_row_on_sql_server() -> None:
    """SQL Server leaves `FOR UPDATE` out; the course lock takes the row with UPDLOCK."""
    check = SqlServerCheck()
    check.check(lock_course_row(COURSE))
    assert check.problems == []
    assert "WITH (UPDLOCK, ROWLOCK)" in check.statements[0].sql


def test_the_checker_finds_what_sql_server_lacks() -> None:
    """The listener refuses the constructs it looks for (so a passing flow means something)."""
    check = SqlServerCheck()
    columns = admin.courses.c
    check.check(select(columns.number).where(columns.auto_advance.is_(True)))
    check.check(select(columns.number).offset(5))
    check.check(select(columns.number).where(columns.number.in_([str(i) for i in range(2101)])))
    check.check(select(columns.number).with_for_update())
    assert len(check.problems) == 4, check.problems


def test_a_network_round_runs_only_statements_sql_server_takes(
    network: tuple[Side, Side], check: SqlServerCheck
) -> None:
    """Desk, capture, apply at master and subscriber, course settings, sync requests,
    automatic advance, place requests and offers, crash recovery, reconciliation, settlement
    and the listings: every admin-DB statement compiles for SQL Server and stays within its
    parameter limit."""
    master, subscriber = network
    with master.admin.begin() as connection:
        add_course(connection, COURSE, max_participants=2, master_school=MASTER)
        connection.execute(
            update(admin.courses)
            .where(admin.courses.c.number == COURSE)
            .values(auto_advance=True, waitlist_max=5)
        )
    with subscriber.admin.begin() as connection:
        add_course(connection, f"{COURSE}K", master_school=MASTER, master_number=COURSE)
    course = CourseRef(MASTER, COURSE)

    # The master publishes its settings; the subscriber applies them and joins.
    master.capture.full_scan(NOW)
    settings = [
        CourseSettingsChanged.model_validate_json(body)
        for body in master.take_outbox()
        if b"course.settings" in body
    ]
    assert settings
    for change in settings:
        subscriber.applier.apply_course_settings(change)
    assert subscriber.capture.join_new_courses(NOW) == [course]
    subscriber.take_outbox()

    # The subscriber's desk: registrations, a cancel, the waitlist, a block.
    desk = Desk(subscriber.admin, subscriber.state, SUBSCRIBER, clock=lambda: STAMP)
    people = [
        Person(f"Person{i}", "Test", birthday=date(1980, 1, 1 + i), main_email=f"p{i}@example.org")
        for i in range(4)
    ]
    results = [desk.register(f"{COURSE}K", who, privacy_consent=True) for who in people]
    ids = [r.enrollment_id for r in results if r.enrollment_id is not None]
    desk.cancel(ids[0])
    desk.to_waitlist(ids[1])
    desk.promote(ids[1])
    assert results[0].participant_number is not None
    desk.block(results[0].participant_number)
    desk.block(results[0].participant_number, blocked=False)

    # Capture at the subscriber; apply at the master (personal) and back (anonymised).
    subscriber.capture.full_scan(NOW)
    subscriber.capture.poll(NOW + timedelta(seconds=1))
    bodies = subscriber.take_outbox()
    outcomes = master.applier.apply_enrollment_changes(
        enrollment_events(bodies, personal=True), STAMP
    )
    assert {o.result for o in outcomes} == {"applied"}
    subscriber.capture.resend_course(course, MASTER, NOW)

    # The master's own registrations, its capture, and the subscriber applying them.
    own = Desk(master.admin, master.state, MASTER, clock=lambda: STAMP)
    for i in range(3):
        own.register(COURSE, Person(f"Own{i}", "Test"), privacy_consent=True)
    master.capture.poll(NOW + timedelta(seconds=2))
    subscriber.applier.apply_enrollment_changes(
        enrollment_events(master.take_outbox(), personal=False), STAMP
    )

    # Automatic advance, a place request, and the subscriber taking an offered place.
    Advancer(master.admin, master.state, MASTER).advance(NOW, STAMP)
    request = place_requested(course, SUBSCRIBER, 4242, event_id=str(uuid.uuid4()), time=NOW)
    PlaceAllocator(master.admin, master.state, MASTER).answer(request, NOW)
    with subscriber.admin.begin() as connection:
        number, _ = enroll(
            connection, f"{COURSE}K", Person("Wait", "Ing"), status=Status.WAITLISTED
        )
    offer = place_offered(
        EnrollmentKey(SUBSCRIBER, number, course), offer_id="o-1", event_id="e-1", time=NOW
    )
    accept_place_offer(subscriber.admin, subscriber.state, SUBSCRIBER, offer, STAMP)

    # A hard delete, found by the full scan; a batch a crash cut short, checked at restart.
    with subscriber.admin.begin() as connection:
        delete_enrollment(connection, ids[2])
    subscriber.capture.full_scan(NOW + timedelta(seconds=3))
    with master.state.connect() as connection:
        mapped = [
            [row.enrollment_id, f"{COURSE}", 0]
            for row in connection.execute(select(state.applied.c.enrollment_id))
        ]
    with master.state.begin() as connection:
        connection.execute(
            insert(state.apply_batch).values(
                id=1,
                batch_id="cut",
                written_at=STAMP,
                entries=json.dumps({"enrollments": mapped, "participants": [[1, "x"]]}).encode(),
            )
        )
    Applier(master.admin, master.state, MASTER, DIRECTORY).recover()

    # Reconciliation at both schools and the master's settlement at course end.
    request = digest_requested(course, requested_by=SUBSCRIBER, held={}, event_id="d", time=NOW)
    answer_digest(master.admin, master.state, MASTER, request, NOW)
    for side, local in ((master, COURSE), (subscriber, f"{COURSE}K")):
        courses_here(side.admin, side.state, side.school)
        local_issues(side.admin, side.state, side.school, course, local)
    names = {SUBSCRIBER: "vhs Karlsruhe"}
    settlement = load_settlement(master.admin, master.state, COURSE, MASTER, names)
    enter_rates(master.state, settlement, MASTER, {SUBSCRIBER: Decimal("50")})
    settlement = load_settlement(master.admin, master.state, COURSE, MASTER, names)
    settled = set_balances(
        master.admin,
        master.state,
        settlement,
        MASTER,
        [SUBSCRIBER],
        today=date(2027, 1, 1),
        now=NOW,
        admin_now=STAMP,
    )
    assert [entry.school for entry in settled] == [SUBSCRIBER]

    # The listings and course state at both schools.
    load_listing(master.admin, master.state, COURSE, MASTER)
    load_listing(subscriber.admin, subscriber.state, f"{COURSE}K", SUBSCRIBER)
    with master.admin.connect() as connection:
        read_course_state(connection, master.state, COURSE, MASTER)

    assert check.problems == []
    kinds = {s.kind for s in check.statements}
    assert {"Select", "Insert", "Update", "Delete", "CreateTable"} <= kinds
    assert len(check.statements) > 100


def test_a_batch_of_3000_keys_stays_within_sql_servers_parameter_limit(
    network: tuple[Side, Side], check: SqlServerCheck
) -> None:
    """3,000 enrollments over 150 courses, captured in one poll and applied at the master in
    one batch: no admin-DB statement carries more than 2,100 parameters, and the large
    lists are split, not avoided."""
    master, subscriber = network
    courses = [f"{COURSE}-{i:03}" for i in range(150)]
    for side, suffix in ((master, ""), (subscriber, "K")):
        with side.admin.begin() as connection:
            for number in courses:
                add_course(connection, number + suffix, master_school=MASTER, master_number=number)
    subscriber.capture.full_scan(NOW)
    subscriber.take_outbox()
    with subscriber.admin.begin() as connection:
        numbers = (
            connection.execute(
                insert(admin.participants).returning(admin.participants.c.number),
                [
                    {"last_name": f"P{i}", "first_name": "T", "modified_at": STAMP}
                    for i in range(3000)
                ],
            )
            .scalars()
            .all()
        )
        connection.execute(
            insert(admin.enrollments),
            [
                {
                    "course_number": courses[i % 150] + "K",
                    "participant_number": number,
                    "status": "A",
                    "modified_at": STAMP,
                }
                for i, number in enumerate(numbers)
            ],
        )
    result = subscriber.capture.poll(NOW + timedelta(seconds=1))
    assert result.published == 3000
    events = enrollment_events(subscriber.take_outbox(), personal=True)
    outcomes = master.applier.apply_enrollment_changes(events, STAMP)
    assert [o.result for o in outcomes].count("applied") == 3000
    assert subscriber.capture.full_scan(NOW + timedelta(seconds=2)).published == 0

    assert check.problems == []
    assert 1000 < check.most_parameters <= SQL_SERVER_PARAMETERS
    # Inserts of many rows travel as multi-row VALUES in batches SQLAlchemy keeps in bounds.
    assert sql_server().insertmanyvalues_max_parameters <= SQL_SERVER_PARAMETERS


def test_upsert_in_sets_inserts_and_updates_in_bounded_statements(tmp_path: Path) -> None:
    """The portable upsert (SQL Server's) keeps what it updates and inserts, with composite
    keys, in statements within SQL Server's parameter limit."""
    engine = make_engine(f"sqlite:///{tmp_path / 'state.db'}")
    migrate_state(engine)
    check = SqlServerCheck()
    check.attach(engine)

    def row(number: int, version: int) -> dict[str, Any]:
        return {
            "origin_school": SUBSCRIBER,
            "course_master": MASTER,
            "course_number": COURSE,
            "participant_number": number,
            "version": version,
            "status": "A",
            "enrollment_id": number,
        }

    with engine.begin() as connection:
        upsert_in_sets(connection, state.applied, [row(n, 1) for n in range(0, 1200, 2)])
        upsert_in_sets(connection, state.applied, [row(n, 2) for n in range(1200)])
        upsert_in_sets(connection, state.cursor, [{"id": 1, "watermark": STAMP}])
        upsert_in_sets(connection, state.cursor, [{"id": 1, "watermark": STAMP}])
    with engine.connect() as connection:
        versions = dict(
            connection.execute(
                select(state.applied.c.participant_number, state.applied.c.version)
            ).all()
        )
        assert connection.execute(select(state.cursor.c.watermark)).scalars().all() == [STAMP]
    engine.dispose()
    assert versions == dict.fromkeys(range(1200), 2)
    assert check.problems == []
    assert check.most_parameters <= SQL_SERVER_PARAMETERS


def test_sql_server_urls_pick_pymssql_or_say_what_to_install() -> None:
    """`mssql://` means pymssql (the `mssql` extra); a driver that is not installed is a
    readable error naming the extra, not an ImportError."""
    try:
        import pymssql  # noqa: F401
    except ImportError:
        with pytest.raises(DatabaseUrlError, match=r"install vhs-sync\[mssql\]"):
            make_engine("mssql://sync:secret@kufer/kufer")
    else:
        engine = make_engine("mssql://sync:secret@kufer/kufer")
        assert (engine.dialect.name, engine.dialect.driver) == ("mssql", "pymssql")
    if importlib.util.find_spec("pyodbc") is None:
        with pytest.raises(DatabaseUrlError, match=r"install vhs-sync\[mssql\]") as error:
            make_engine("mssql+pyodbc://sync:secret@kufer/kufer?driver=ODBC+Driver+18")
        assert "secret" not in str(error.value)
    with pytest.raises(DatabaseUrlError, match="unknown database driver 'mssql\\+nope'"):
        make_engine("mssql+nope://sync@kufer/kufer")
