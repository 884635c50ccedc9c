"""A school's real KuferSQL through a schema mapping (issue 8): other table and column names,
none of the optional columns. Capture and apply between a master and a subscriber, and the
course settings set by `vhs-sync course settings` (kept in the state DB) decide the desk's
registrations, on each admin-DB backend."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, delete, inspect, select, update

from adapter.capture.poller import Capture
from adapter.consumers.apply import Applier, School
from adapter.desk import Desk, Person, add_course
from adapter.domain import CourseRef, Status, Waitlisted, WaitReason
from adapter.messages import CourseOffered, CourseSettingsChanged, EnrollmentChanged
from adapter.ops.course_settings import CourseSettingsError, change_settings, read_settings
from adapter.ops.course_state import read_course_state
from adapter.ops.courses import load_listing
from adapter.ops.offers import OfferPublisher, receive_offer, subscribe, unsubscribe
from adapter.store import admin, kept, state
from adapter.store.admin import OPTIONAL, REFERENCE_SCHEMA, SchemaMapping
from adapter.store.db import create_admin_schema, keyed, make_engine, migrate_state
from tests.contract.test_mssql_dialect import SqlServerCheck
from tests.services import POSTGRES_URL, require, scratch_database

RENAMED = SchemaMapping(
    tables={
        "courses": "KURS_X",
        "participants": "PERSON_X",
        "communications": "KOMM_X",
        "enrollments": "BELEG_X",
    },
    columns={
        "courses": {"number": "KURSNR", "max_participants": "MAXTN"}
        | dict.fromkeys(OPTIONAL["courses"], ""),
        "participants": {"number": "PNR", "last_name": "NACHNAME", "main_email": "MAIL"},
        "enrollments": {"id": "BID", "status": "STAT", "course_number": "KURS"}
        | dict.fromkeys(OPTIONAL["enrollments"], ""),
    },
)
MASTER, SUBSCRIBER = "vhs-sr", "vhs-ka"
MASTER_COURSE, LOCAL_COURSE = "26-900", "26-900KA"
NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
DIRECTORY = {MASTER: School(MASTER, "VHS SR"), SUBSCRIBER: School(SUBSCRIBER, "vhs Karlsruhe")}


def person(index: int) -> Person:
    return Person(f"Person{index}", "Test", date(1980, 1, 1 + index), f"p{index}@example.org")


class Side:
    """One school on the renamed schema: its databases, capture, apply and desk."""

    def __init__(self, database_url: Callable[[str], str], school: str, course: str) -> None:
        self.school, self.course = school, course
        self.admin: Engine = make_engine(database_url(f"{school}-admin"))
        self.state: Engine = make_engine(database_url(f"{school}-state"))
        create_admin_schema(self.admin)
        migrate_state(self.state)
        self.capture = Capture(self.admin, self.state, school, overlap=timedelta(seconds=2))
        self.applier = Applier(self.admin, self.state, school, DIRECTORY)
        self.desk = Desk(self.admin, self.state, school)

    def take_outbox(self) -> list[bytes]:
        with self.state.begin() as connection:
            bodies = list(
                connection.execute(select(state.outbox.c.body).order_by(state.outbox.c.id))
                .scalars()
                .all()
            )
            connection.execute(delete(state.outbox))
        return bodies

    def statuses(self) -> list[str]:
        with self.admin.connect() as connection:
            return sorted(
                connection.execute(
                    select(admin.enrollments.c.status).where(
                        admin.enrollments.c.course_number == self.course
                    )
                ).scalars()
            )


@pytest.fixture
def renamed() -> Iterator[None]:
    admin.use(RENAMED)
    try:
        yield
    finally:
        admin.use(REFERENCE_SCHEMA)


@pytest.fixture
def schools(database_url: Callable[[str], str], renamed: None) -> tuple[Side, Side]:
    master = Side(database_url, MASTER, MASTER_COURSE)
    subscriber = Side(database_url, SUBSCRIBER, LOCAL_COURSE)
    with master.admin.begin() as connection:
        # At the master `Master_knr` stays empty: the course is its own master course.
        add_course(connection, MASTER_COURSE, max_participants=3)
    with subscriber.admin.begin() as connection:
        add_course(connection, LOCAL_COURSE, max_participants=3, master_number=MASTER_COURSE)
    now = NOW.replace(tzinfo=None)
    change_settings(
        master.admin, master.state, MASTER, MASTER_COURSE, {"master_school": MASTER}, now
    )
    change_settings(
        subscriber.admin,
        subscriber.state,
        SUBSCRIBER,
        LOCAL_COURSE,
        {"master_school": MASTER},
        now,
    )
    return master, subscriber


def _relay(bodies: list[bytes], to: Side) -> None:
    """Apply at `to` what another school's outbox holds, as its queue would hand it over: the
    personal states at the master, the anonymised ones elsewhere."""
    events = [
        event
        for event in (
            EnrollmentChanged.model_validate_json(b) for b in bodies if b"enrollment." in b
        )
        if (event.data.participant is not None) == (to.school == MASTER)
    ]
    to.applier.apply_enrollment_changes(events, NOW)
    for body in bodies:
        if b"settings-changed" in body:
            to.applier.apply_course_settings(CourseSettingsChanged.model_validate_json(body))


def test_the_vendor_tables_have_only_the_mapped_columns(schools: tuple[Side, Side]) -> None:
    """The schema made from the mapping has the renamed tables and none of the optional
    columns: nothing the adapter does needs them."""
    master, _ = schools
    tables = inspect(master.admin)
    assert {"KURS_X", "PERSON_X", "KOMM_X", "BELEG_X"} <= set(tables.get_table_names())
    course_columns = {column["name"] for column in tables.get_columns("KURS_X")}
    assert {"KURSNR", "MAXTN", "Master_knr"} <= course_columns
    assert not course_columns & {"MASTER_VHS", "WL_MODUS", "MAX_PRO_VHS", "TEIL_WUNSCH"}
    enrollment_columns = {column["name"] for column in tables.get_columns("BELEG_X")}
    assert not enrollment_columns & {"WL_SEIT", "WL_VERWALTER"}


def test_settings_set_at_the_master_reach_the_subscriber_and_limit_its_desk(
    schools: tuple[Side, Side],
) -> None:
    """The master's max per school and waitlist mode, kept in its state DB, are published and
    kept in the subscriber's; the subscriber's desk waitlists past the school limit, and the
    master receives both enrollments as company bookings, with since when one waits."""
    master, subscriber = schools
    change_settings(
        master.admin,
        master.state,
        MASTER,
        MASTER_COURSE,
        {"max_per_school": 1, "waitlist_max": 5},
        NOW.replace(tzinfo=None),
    )
    master.capture.full_scan(NOW)
    _relay(master.take_outbox(), subscriber)
    shown = read_settings(subscriber.admin, subscriber.state, LOCAL_COURSE)
    assert (shown["max_per_school"], shown["waitlist_max"], shown["max_participants"]) == (1, 5, 3)

    first = subscriber.desk.register(LOCAL_COURSE, person(1), privacy_consent=True)
    second = subscriber.desk.register(LOCAL_COURSE, person(2), privacy_consent=True)
    assert first.status is Status.REGISTERED
    assert second.decision == Waitlisted(WaitReason.SCHOOL_LIMIT)
    assert subscriber.statuses() == ["A", "W"]

    subscriber.capture.full_scan(NOW)
    _relay(subscriber.take_outbox(), master)
    assert master.statuses() == ["A", "W"]
    with master.admin.begin() as connection:
        course = read_course_state(connection, master.state, MASTER_COURSE, MASTER)
    assert {e.school for e in course.entries} == {SUBSCRIBER}
    (waiting,) = course.waiting()
    assert waiting.key.participant_number == second.participant_number
    assert waiting.waiting_since > 0  # the subscriber's mark, kept in the master's state DB
    with master.admin.connect() as connection:
        names = connection.execute(
            select(*keyed(admin.participants.c.last_name, admin.participants.c.main_email))
        ).all()
    assert ("Person2", "p2@example.org") in [tuple(row) for row in names]


def test_a_waitlist_mode_set_by_the_command_decides_at_the_master(
    schools: tuple[Side, Side],
) -> None:
    """All on waitlist, kept in the state DB: the master's own desk waitlists a newcomer
    although places are free, the next poll publishes the change (no stamp in the admin DB
    moved), and the subscriber refuses settings of the master's course."""
    master, subscriber = schools
    master.capture.full_scan(NOW)
    _relay(master.take_outbox(), subscriber)
    change_settings(
        master.admin,
        master.state,
        MASTER,
        MASTER_COURSE,
        {"waitlist_mode": "all_on_waitlist"},
        NOW.replace(tzinfo=None),
    )
    with master.admin.begin() as connection:  # the course row was stamped long ago
        connection.execute(update(admin.courses).values(modified_at=datetime(2020, 1, 1)))
    master.capture.poll(NOW + timedelta(seconds=1))
    _relay(master.take_outbox(), subscriber)
    shown = read_settings(subscriber.admin, subscriber.state, LOCAL_COURSE)
    assert shown["waitlist_mode"] == "all_on_waitlist"
    result = master.desk.register(MASTER_COURSE, person(3), privacy_consent=True)
    assert result.status is Status.WAITLISTED
    with master.state.connect() as connection:
        marks = connection.execute(select(state.waiting_marks)).all()
    assert [row.enrollment_id for row in marks] == [result.enrollment_id]
    with pytest.raises(CourseSettingsError, match="follows the settings of its master"):
        change_settings(
            subscriber.admin,
            subscriber.state,
            SUBSCRIBER,
            LOCAL_COURSE,
            {"max_per_school": 9},
            NOW.replace(tzinfo=None),
        )


def test_a_course_without_a_master_school_is_not_shared(schools: tuple[Side, Side]) -> None:
    """Only courses whose master school the command set are shared: a local course of the
    same admin DB is never captured."""
    master, _ = schools
    with master.admin.begin() as connection:
        add_course(connection, "26-LOCAL", max_participants=3)
    master.desk.register("26-LOCAL", person(4), privacy_consent=True)
    with master.admin.connect() as connection:
        assert set(kept.shared_courses(connection, master.state)) == {MASTER_COURSE}
    assert master.capture.full_scan(NOW).published == 0


def test_tables_in_a_schema_of_their_own_sync_on_postgresql(renamed: None, tmp_path: Path) -> None:
    """`[admin_db] schema` (KuferSQL's `dbo`): the tables are found in that schema, and a
    subscriber's enrollment reaches the master."""
    require("PostgreSQL", POSTGRES_URL)
    admin.use(SchemaMapping(tables=RENAMED.tables, columns=RENAMED.columns, schema="kufer"))
    with scratch_database(POSTGRES_URL) as one, scratch_database(POSTGRES_URL) as two:
        admin_urls = {MASTER: one, SUBSCRIBER: two}
        for url in admin_urls.values():
            with make_engine(url).begin() as connection:
                connection.exec_driver_sql("CREATE SCHEMA kufer")

        def database_url(name: str) -> str:
            school = name.removesuffix("-admin").removesuffix("-state")
            if name.endswith("-admin"):
                return admin_urls[school]
            return f"sqlite:///{tmp_path / (name + '.db')}"

        master = Side(database_url, MASTER, MASTER_COURSE)
        subscriber = Side(database_url, SUBSCRIBER, LOCAL_COURSE)
        with master.admin.begin() as connection:
            add_course(connection, MASTER_COURSE, max_participants=3)
        with subscriber.admin.begin() as connection:
            add_course(connection, LOCAL_COURSE, max_participants=3, master_number=MASTER_COURSE)
        for side in (master, subscriber):
            change_settings(
                side.admin, side.state, side.school, side.course, {"master_school": MASTER}, NOW
            )
        assert "KURS_X" in inspect(master.admin).get_table_names(schema="kufer")
        subscriber.desk.register(LOCAL_COURSE, person(5), privacy_consent=True)
        subscriber.capture.full_scan(NOW)
        _relay(subscriber.take_outbox(), master)
        assert master.statuses() == ["A"]
        for side in (master, subscriber):
            side.admin.dispose()


def test_on_the_reference_schema_the_command_writes_the_course_row(
    database_url: Callable[[str], str],
) -> None:
    """Where the admin DB has the columns (the demo's reference schema), the settings go into
    the course row, stamped, so that the master's next poll publishes them; the state DB
    keeps nothing."""
    master = Side(database_url, MASTER, MASTER_COURSE)
    with master.admin.begin() as connection:
        add_course(connection, MASTER_COURSE, max_participants=3, master_school=MASTER)
    master.capture.full_scan(NOW)
    master.take_outbox()
    change_settings(
        master.admin,
        master.state,
        MASTER,
        MASTER_COURSE,
        {"max_per_school": 2, "waitlist_mode": "manual"},
        datetime.now(),
    )
    with master.admin.connect() as connection:
        row = connection.execute(
            select(admin.courses.c.max_per_school, admin.courses.c.waitlist_mode)
        ).one()
    assert tuple(row) == (2, "manual")
    with master.state.connect() as connection:
        assert connection.execute(select(state.course_settings)).all() == []
    master.capture.poll(NOW + timedelta(seconds=1))
    (published,) = [b for b in master.take_outbox() if b"settings-changed" in b]
    settings = CourseSettingsChanged.model_validate_json(published).data.settings
    assert (settings.max_per_school, settings.mode) == (2, "manual")


def test_the_mapped_schema_runs_only_statements_sql_server_takes(
    renamed: None, tmp_path: Path
) -> None:
    """KuferSQL runs on SQL Server: with the mapping (other names, no optional columns) the
    admin-DB statements of settings, the desk, capture, apply and the listings compile for
    it, within its parameter limit (the flows run on SQLite)."""
    check = SqlServerCheck()

    def database_url(name: str) -> str:
        return f"sqlite:///{tmp_path / (name + '.db')}"

    master = Side(database_url, MASTER, MASTER_COURSE)
    subscriber = Side(database_url, SUBSCRIBER, LOCAL_COURSE)
    for side in (master, subscriber):
        check.attach(side.admin)
    with master.admin.begin() as connection:
        add_course(connection, MASTER_COURSE, max_participants=3)
    with subscriber.admin.begin() as connection:
        add_course(connection, LOCAL_COURSE, max_participants=3, master_number=MASTER_COURSE)
    for side in (master, subscriber):
        change_settings(
            side.admin, side.state, side.school, side.course, {"master_school": MASTER}, NOW
        )
    change_settings(master.admin, master.state, MASTER, MASTER_COURSE, {"max_per_school": 1}, NOW)
    master.capture.full_scan(NOW)
    _relay(master.take_outbox(), subscriber)
    for index in (1, 2):
        subscriber.desk.register(LOCAL_COURSE, person(index), privacy_consent=True)
    subscriber.capture.full_scan(NOW)
    subscriber.capture.poll(NOW + timedelta(seconds=1))
    _relay(subscriber.take_outbox(), master)
    load_listing(master.admin, master.state, MASTER_COURSE, MASTER)
    with master.admin.connect() as connection:
        read_course_state(connection, master.state, MASTER_COURSE, MASTER)
    assert master.statuses() == ["A", "W"]
    assert check.problems == []
    assert len(check.statements) > 20


def test_an_offer_is_subscribed_to_and_left_on_the_mapped_schema(
    database_url: Callable[[str], str], renamed: None
) -> None:
    """The master offers its course; a subscriber without a master-school column subscribes
    (the course row is created, its master kept in the state DB, so the course is shared) and
    leaves it again (an ordinary local course)."""
    master = Side(database_url, MASTER, MASTER_COURSE)
    subscriber = Side(database_url, SUBSCRIBER, "26-NEW")
    with master.admin.begin() as connection:
        add_course(connection, MASTER_COURSE, title="Linux", max_participants=3)
    change_settings(
        master.admin, master.state, MASTER, MASTER_COURSE, {"master_school": MASTER}, NOW
    )
    assert OfferPublisher(master.admin, master.state, MASTER).publish(NOW) == 1
    (body,) = [b for b in master.take_outbox() if b"course.offered" in b]
    receive_offer(
        subscriber.admin, subscriber.state, SUBSCRIBER, CourseOffered.model_validate_json(body), NOW
    )
    course = CourseRef(MASTER, MASTER_COURSE)
    subscribe(subscriber.admin, subscriber.state, SUBSCRIBER, course, "26-NEW", NOW)
    with subscriber.admin.connect() as connection:
        assert kept.shared_courses(connection, subscriber.state) == {"26-NEW": course}
    assert read_settings(subscriber.admin, subscriber.state, "26-NEW")["master_school"] == MASTER
    unsubscribe(subscriber.admin, subscriber.state, SUBSCRIBER, "26-NEW", NOW, NOW)
    with subscriber.admin.connect() as connection:
        assert kept.shared_courses(connection, subscriber.state) == {}
