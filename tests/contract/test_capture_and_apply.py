"""Capture and apply against each admin-DB backend (SQLite, PostgreSQL, MariaDB), no broker:
the outbox of one school is applied directly at another."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import Engine, delete, event, select, update
from structlog.testing import capture_logs

from adapter.capture.poller import Capture
from adapter.consumers.apply import Applier, School
from adapter.desk import Person, add_course, delete_enrollment, enroll, set_status, update_person
from adapter.domain import CourseRef, Status
from adapter.messages import EnrollmentChanged
from adapter.store import admin, state
from adapter.store.db import create_admin_schema, keyed, make_engine, migrate_state, upsert

COURSE = "26-777"
JAN = Person(
    "Nowak",
    "Jan",
    birthday=date(1990, 5, 1),
    main_email="jan@example.org",
    iban="DE02120300000000202051",
)


class Side:
    """One school's admin and state DB."""

    def __init__(self, database_url: Callable[[str], str], school: str, course: str) -> None:
        self.school = school
        self.course = course
        self.admin: Engine = make_engine(database_url(f"{school}-admin"))
        self.state: Engine = make_engine(database_url(f"{school}-state"))
        create_admin_schema(self.admin)
        migrate_state(self.state)
        with self.admin.begin() as connection:
            add_course(
                connection,
                course,
                max_participants=10,
                master_school="vhs-sr",
                master_number=COURSE,
            )
            add_course(connection, f"{course}-LOCAL", max_participants=10)
        self.capture = Capture(self.admin, self.state, school, overlap=timedelta(seconds=2))
        directory = {
            "vhs-sr": School("vhs-sr", "VHS SR"),
            "vhs-ka": School("vhs-ka", "vhs Karlsruhe"),
        }
        self.applier = Applier(self.admin, self.state, school, directory)

    def take_outbox(self) -> list[EnrollmentChanged]:
        with self.state.begin() as connection:
            rows = connection.execute(select(state.outbox).order_by(state.outbox.c.id)).all()
            connection.execute(delete(state.outbox))
        return [
            EnrollmentChanged.model_validate_json(row.body)
            for row in rows
            if b"enrollment.changed" in row.body
        ]

    def rows(self) -> list[dict[str, object]]:
        with self.admin.connect() as connection:
            return [
                r._asdict()
                for r in connection.execute(
                    select(*keyed(*admin.enrollments.c)).where(
                        admin.enrollments.c.course_number == self.course
                    )
                )
            ]


@pytest.fixture
def schools(database_url: Callable[[str], str]) -> tuple[Side, Side]:
    return Side(database_url, "vhs-sr", COURSE), Side(database_url, "vhs-ka", f"{COURSE}K")


NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)  # the adapter's clock
STAMP = NOW.replace(tzinfo=None)  # the admin DB's


def test_upsert_inserts_then_updates(schools: tuple[Side, Side]) -> None:
    """The state DB's update-or-insert works the same on every backend."""
    master, _ = schools
    with master.state.begin() as connection:
        upsert(connection, state.cursor, [{"id": 1, "watermark": STAMP}])
        upsert(connection, state.cursor, [{"id": 1, "watermark": STAMP + timedelta(hours=1)}])
    with master.state.connect() as connection:
        assert connection.execute(select(state.cursor.c.watermark)).scalars().all() == [
            STAMP + timedelta(hours=1)
        ]


def test_a_subscriber_publishes_anonymised_and_personal_states(schools: tuple[Side, Side]) -> None:
    """A new enrollment becomes one anonymised event and one with the four personal fields."""
    _, karlsruhe = schools
    with karlsruhe.admin.begin() as connection:
        enroll(connection, karlsruhe.course, JAN)
        enroll(connection, f"{karlsruhe.course}-LOCAL", Person("Lokal", "Lara"))
    result = karlsruhe.capture.poll(NOW)
    assert (result.published, result.outbox_rows) == (1, 2)
    anonymised, personal = karlsruhe.take_outbox()
    assert anonymised.data.participant is None
    assert personal.data.participant is not None
    assert personal.data.participant.model_dump() == {
        "last_name": "Nowak",
        "first_name": "Jan",
        "main_email": "jan@example.org",
        "main_phone": None,
    }
    assert "DE02" not in personal.model_dump_json()
    assert "1990" not in personal.model_dump_json()
    assert karlsruhe.capture.poll(NOW + timedelta(seconds=1)).published == 0


def test_only_synced_fields_cause_an_event(schools: tuple[Side, Side]) -> None:
    """A new IBAN or birthday publishes nothing; a new main phone does (V5)."""
    _, karlsruhe = schools
    with karlsruhe.admin.begin() as connection:
        number, _ = enroll(connection, karlsruhe.course, JAN)
    karlsruhe.capture.poll(NOW)
    karlsruhe.take_outbox()
    with karlsruhe.admin.begin() as connection:
        update_person(connection, number, iban="DE89370400440532013000", birthday=date(1991, 1, 1))
    assert karlsruhe.capture.full_scan(NOW + timedelta(seconds=1)).published == 0
    with karlsruhe.admin.begin() as connection:
        update_person(connection, number, main_phone="0721 99")
    assert karlsruhe.capture.full_scan(NOW + timedelta(seconds=2)).published == 1


def test_apply_at_the_master_is_idempotent(schools: tuple[Side, Side]) -> None:
    """Applying the same events twice books one company booking, and changes nothing the
    second time."""
    master, karlsruhe = schools
    with karlsruhe.admin.begin() as connection:
        enroll(connection, karlsruhe.course, JAN)
    karlsruhe.capture.poll(NOW)
    events = [e for e in karlsruhe.take_outbox() if e.data.participant is not None]
    first = master.applier.apply_enrollment_changes(events, STAMP)
    second = master.applier.apply_enrollment_changes(events, STAMP)
    assert [o.result for o in first] == ["applied"]
    assert [o.result for o in second] == ["stale"]
    [row] = master.rows()
    assert (row["status"], row["fee"], row["balance"]) == ("A", Decimal("0"), Decimal("0"))


def test_a_crash_between_the_two_commits_books_nothing_twice(schools: tuple[Side, Side]) -> None:
    """If the adapter stopped after writing the admin DB but before recording the version, the
    redelivered event takes over the row it wrote instead of booking it again."""
    master, karlsruhe = schools
    with karlsruhe.admin.begin() as connection:
        enroll(connection, karlsruhe.course, JAN)
    karlsruhe.capture.poll(NOW)
    events = [e for e in karlsruhe.take_outbox() if e.data.participant is not None]
    master.applier.apply_enrollment_changes(events, STAMP)
    with master.state.begin() as connection:
        connection.execute(delete(state.applied))
    restarted = Applier(master.admin, master.state, "vhs-sr", master.applier.directory)
    with capture_logs() as logs:
        restarted.apply_enrollment_changes(events, STAMP)
    assert len(master.rows()) == 1
    assert [e["event"] for e in logs if e["event"] == "enrollment.adopted"] == [
        "enrollment.adopted"
    ]


def test_an_answer_to_the_masters_resync_books_again_what_it_lost(
    schools: tuple[Side, Side],
) -> None:
    """The master lost one company booking (row deleted; the same events again change
    nothing) and the mapping of another: vhs-ka's answer to the master's sync request, on the
    master's personal answer route and applied as a repair, books the first again and takes
    the second over: two rows, none twice."""
    master, karlsruhe = schools
    with karlsruhe.admin.begin() as connection:
        enroll(connection, karlsruhe.course, JAN)
        enroll(connection, karlsruhe.course, Person("Fischer", "Lea"))
    karlsruhe.capture.poll(NOW)
    events = [e for e in karlsruhe.take_outbox() if e.data.participant is not None]
    master.applier.apply_enrollment_changes(events, STAMP)
    lost, unmapped = sorted(row["id"] for row in master.rows())
    with master.admin.begin() as connection:
        connection.execute(delete(admin.enrollments).where(admin.enrollments.c.id == lost))
    assert {o.result for o in master.applier.apply_enrollment_changes(events, STAMP)} == {"stale"}
    with master.state.begin() as connection:
        connection.execute(delete(state.applied).where(state.applied.c.enrollment_id == unmapped))

    karlsruhe.capture.resend_course(CourseRef("vhs-sr", COURSE), "vhs-sr", NOW)
    with karlsruhe.state.connect() as connection:
        routes_used = set(connection.execute(select(state.outbox.c.routing_key)).scalars())
    assert routes_used == {f"syn.vhs-sr.vhs-sr.{COURSE}.vhs-ka.personal"}
    answers = karlsruhe.take_outbox()
    outcomes = master.applier.apply_enrollment_changes(answers, STAMP, repair=True)
    assert [o.result for o in outcomes] == ["applied", "applied"]
    rows = master.rows()
    assert len(rows) == 2
    assert unmapped in {row["id"] for row in rows}
    with master.state.connect() as connection:
        mapped = set(connection.execute(select(state.applied.c.enrollment_id)).scalars())
    assert {row["id"] for row in rows} == mapped


def test_a_re_enrollment_after_a_cancellation_is_the_current_state(
    schools: tuple[Side, Side],
) -> None:
    """Of two rows of one person in one course, the newer one is what the network sees."""
    _, karlsruhe = schools
    with karlsruhe.admin.begin() as connection:
        number, first = enroll(connection, karlsruhe.course, JAN)
        set_status(connection, first, Status.CANCELLED)
        connection.execute(
            admin.enrollments.insert().values(
                course_number=karlsruhe.course,
                participant_number=number,
                status="W",
                modified_at=STAMP,
            )
        )
    karlsruhe.capture.poll(NOW)
    statuses = {e.data.status for e in karlsruhe.take_outbox()}
    assert statuses == {Status.WAITLISTED}


def test_a_full_scan_publishes_a_hard_delete_as_cancelled(schools: tuple[Side, Side]) -> None:
    """A deleted row is found by the full scan and published as status S (V4)."""
    _, karlsruhe = schools
    with karlsruhe.admin.begin() as connection:
        _, jan = enroll(connection, karlsruhe.course, JAN)
    karlsruhe.capture.poll(NOW)
    karlsruhe.take_outbox()
    with karlsruhe.admin.begin() as connection:
        delete_enrollment(connection, jan)
    result = karlsruhe.capture.full_scan(NOW + timedelta(seconds=1))
    assert result.deleted == 1
    assert {e.data.status for e in karlsruhe.take_outbox()} == {Status.CANCELLED}
    assert karlsruhe.capture.full_scan(NOW + timedelta(seconds=2)).deleted == 0


# Re-enrolment: one key, several rows (issue 7, item 6).


def _stamp(seconds: int) -> datetime:
    """An admin-DB stamp `seconds` after the test began (the admin product's clock)."""
    return datetime.now().replace(microsecond=0) + timedelta(seconds=seconds)


def _re_enrolled(side: Side) -> tuple[int, int, int]:
    """Jan registered (row 1), cancelled and registered again (row 2), each step published;
    returns (participant, row 1, row 2)."""
    with side.admin.begin() as connection:
        number, first = enroll(connection, side.course, JAN, now=_stamp(0))
    side.capture.poll(NOW)
    with side.admin.begin() as connection:
        set_status(connection, first, Status.CANCELLED, now=_stamp(1))
    side.capture.poll(NOW + timedelta(seconds=1))
    with side.admin.begin() as connection:
        inserted = connection.execute(
            admin.enrollments.insert().values(
                course_number=side.course,
                participant_number=number,
                status="A",
                registered_on=_stamp(2).date(),
                modified_at=_stamp(2),
            )
        ).inserted_primary_key
    assert inserted is not None
    side.capture.poll(NOW + timedelta(seconds=2))
    return number, first, int(inserted[0])


def _edit_fee(side: Side, enrollment_id: int, seconds: int) -> None:
    """Staff edit a row (a cancellation fee), as the admin product does: it stamps the row."""
    with side.admin.begin() as connection:
        connection.execute(
            update(admin.enrollments)
            .where(admin.enrollments.c.id == enrollment_id)
            .values(fee=Decimal("15.00"), balance=Decimal("15.00"), modified_at=_stamp(seconds))
        )


def test_editing_the_cancelled_row_of_a_re_enrolled_person_publishes_nothing(
    schools: tuple[Side, Side],
) -> None:
    """The issue's sequence: cancel row 1, register row 2, edit row 1: the poll and the full
    scan publish nothing, and the master holds the person once, registered."""
    master, karlsruhe = schools
    _, first, _ = _re_enrolled(karlsruhe)
    published = [e for e in karlsruhe.take_outbox() if e.data.participant is not None]
    assert [e.data.status for e in published] == [
        Status.REGISTERED,
        Status.CANCELLED,
        Status.REGISTERED,
    ]
    _edit_fee(karlsruhe, first, 3)
    assert karlsruhe.capture.poll(NOW + timedelta(seconds=3)).published == 0
    assert karlsruhe.capture.full_scan(NOW + timedelta(seconds=4)).published == 0
    assert karlsruhe.take_outbox() == []
    karlsruhe.capture.resend_course(CourseRef("vhs-sr", COURSE), "vhs-sr", NOW)
    # The answer to the master's sync request: the person, for the master alone.
    assert [e.data.status for e in karlsruhe.take_outbox()] == [Status.REGISTERED]

    master.applier.apply_enrollment_changes(published, STAMP)
    assert [row["status"] for row in master.rows()] == ["A"]


@pytest.mark.parametrize("order", [(1,), (2,), (1, 2), (2, 1)], ids=str)
def test_a_re_enrolled_person_stays_registered_whatever_row_is_edited(
    schools: tuple[Side, Side], order: tuple[int, ...]
) -> None:
    """Edits of either row in any order, one poll each, never publish the person as S."""
    _, karlsruhe = schools
    _, first, second = _re_enrolled(karlsruhe)
    karlsruhe.take_outbox()
    rows = {1: first, 2: second}
    for step, which in enumerate(order, start=3):
        _edit_fee(karlsruhe, rows[which], step)
        karlsruhe.capture.poll(NOW + timedelta(seconds=step))
    karlsruhe.capture.full_scan(NOW + timedelta(seconds=9))
    assert karlsruhe.take_outbox() == []


def _re_enroll_many(side: Side, count: int, seconds: int) -> list[int]:
    """`count` people cancelled and registered again; returns their cancelled rows."""
    cancelled = []
    with side.admin.begin() as connection:
        for index in range(count):
            person = Person(f"Person{seconds}x{index}", "Test")
            number, row_1 = enroll(connection, side.course, person, now=_stamp(seconds))
            set_status(connection, row_1, Status.CANCELLED, now=_stamp(seconds))
            connection.execute(
                admin.enrollments.insert().values(
                    course_number=side.course,
                    participant_number=number,
                    status="A",
                    modified_at=_stamp(seconds),
                )
            )
            cancelled.append(row_1)
    return cancelled


def _admin_queries_of_a_poll(side: Side, at: datetime) -> int:
    statements: list[str] = []

    def count(*args: object) -> None:
        statements.append(str(args[2]))

    event.listen(side.admin, "before_cursor_execute", count)
    try:
        assert side.capture.poll(at).published == 0
    finally:
        event.remove(side.admin, "before_cursor_execute", count)
    return sum("BELEGUNG" in statement for statement in statements)


def test_a_poll_reads_the_rows_of_all_changed_keys_in_one_query(
    schools: tuple[Side, Side],
) -> None:
    """A poll that sees the cancelled rows of 30 re-enrolled people change reads their other
    rows too (nobody is published as S): two queries (the changed rows, then all rows of
    their keys), not one a row."""
    _, karlsruhe = schools
    cancelled = _re_enroll_many(karlsruhe, 30, 0)
    karlsruhe.capture.poll(NOW)
    karlsruhe.take_outbox()
    with karlsruhe.admin.begin() as connection:
        connection.execute(
            update(admin.enrollments)
            .where(admin.enrollments.c.id.in_(cancelled))
            .values(fee=Decimal("15.00"), modified_at=_stamp(10))
        )
    assert _admin_queries_of_a_poll(karlsruhe, NOW + timedelta(seconds=10)) == 2
    assert karlsruhe.take_outbox() == []


def test_a_hard_delete_of_the_cancelled_row_changes_nothing(schools: tuple[Side, Side]) -> None:
    """Deleting row 1 (S) of a re-enrolled person leaves their state A: nothing to publish."""
    _, karlsruhe = schools
    _, first, _ = _re_enrolled(karlsruhe)
    karlsruhe.take_outbox()
    with karlsruhe.admin.begin() as connection:
        delete_enrollment(connection, first)
    assert karlsruhe.capture.full_scan(NOW + timedelta(seconds=3)).published == 0
    assert karlsruhe.take_outbox() == []


def test_a_hard_delete_of_the_current_row_publishes_the_row_left(
    schools: tuple[Side, Side],
) -> None:
    """Deleting row 2 (A) of a re-enrolled person leaves row 1 (S) as their state: the full
    scan publishes S and reports the delete once; a later edit of row 1 agrees."""
    _, karlsruhe = schools
    _, first, second = _re_enrolled(karlsruhe)
    karlsruhe.take_outbox()
    with karlsruhe.admin.begin() as connection:
        delete_enrollment(connection, second)
    with capture_logs() as logs:
        result = karlsruhe.capture.full_scan(NOW + timedelta(seconds=3))
        again = karlsruhe.capture.full_scan(NOW + timedelta(seconds=4))
    assert (result.published, result.deleted) == (1, 1)
    assert (again.published, again.deleted) == (0, 0)
    assert {e.data.status for e in karlsruhe.take_outbox()} == {Status.CANCELLED}
    assert [e["enrollment_id"] for e in logs if e["event"] == "enrollment.hard_deleted"] == [second]
    _edit_fee(karlsruhe, first, 5)
    assert karlsruhe.capture.poll(NOW + timedelta(seconds=5)).published == 0


# Bounded memory (issue 9): a poll or scan reads and writes a page at a time.


def _outbox_rows_per_statement(side: Side) -> list[int]:
    """Records, for each outbox insert into the state DB, how many rows it carried."""
    sizes: list[int] = []

    def count(*args: object) -> None:
        statement, parameters, executemany = args[2], args[3], args[5]
        if str(statement).startswith("INSERT INTO outbox"):
            sizes.append(len(parameters) if executemany else 1)  # type: ignore[arg-type]

    event.listen(side.state, "before_cursor_execute", count)
    return sizes


def test_a_burst_is_captured_page_by_page(schools: tuple[Side, Side]) -> None:
    """With pages of 4 rows, 10 new enrollments (two of them re-enrolled, their rows in
    different pages) are each published once, at most 4 states (8 outbox rows) a statement;
    the polls after it, which read the burst again in their overlap, publish nothing; a full
    scan in pages finds the one hard delete."""
    _, karlsruhe = schools
    karlsruhe.capture.page_rows = 4
    with karlsruhe.admin.begin() as connection:
        people = [
            enroll(connection, karlsruhe.course, Person(f"Burst{n}", "Test")) for n in range(8)
        ]
        for number, row in people[:2]:
            set_status(connection, row, Status.CANCELLED)
            connection.execute(
                admin.enrollments.insert().values(
                    course_number=karlsruhe.course,
                    participant_number=number,
                    status="A",
                    modified_at=STAMP,
                )
            )
    karlsruhe.capture.full_scan(NOW)  # an empty state DB starts with a scan
    first = karlsruhe.take_outbox()
    assert len(first) == 16
    assert {e.data.status for e in first} == {Status.REGISTERED}
    with karlsruhe.admin.begin() as connection:
        more = [enroll(connection, karlsruhe.course, Person(f"More{n}", "Test")) for n in range(10)]
    sizes = _outbox_rows_per_statement(karlsruhe)
    result = karlsruhe.capture.poll(NOW + timedelta(seconds=1))
    assert (result.published, result.outbox_rows) == (10, 20)
    assert sizes
    assert max(sizes) <= 8
    published = karlsruhe.take_outbox()
    assert sorted(e.data.participant_number for e in published) == sorted(
        [number for number, _ in more] * 2
    )
    assert karlsruhe.capture.poll(NOW + timedelta(seconds=2)).published == 0
    assert karlsruhe.capture.poll(NOW + timedelta(seconds=3)).published == 0
    with karlsruhe.admin.begin() as connection:
        delete_enrollment(connection, more[5][1])
    scan = karlsruhe.capture.full_scan(NOW + timedelta(seconds=4))
    assert (scan.published, scan.deleted) == (1, 1)
    assert {(e.data.participant_number, e.data.status) for e in karlsruhe.take_outbox()} == {
        (more[5][0], Status.CANCELLED)
    }
    assert karlsruhe.capture.full_scan(NOW + timedelta(seconds=5)).published == 0


def test_an_edit_in_the_second_the_row_was_stamped_is_published(
    schools: tuple[Side, Side],
) -> None:
    """Stamps of whole seconds: a cancellation stamped in the same second as the registration
    the last poll read is still a change the next poll publishes."""
    _, karlsruhe = schools
    with karlsruhe.admin.begin() as connection:
        _, jan = enroll(connection, karlsruhe.course, JAN, now=_stamp(0))
    karlsruhe.capture.full_scan(NOW)
    assert karlsruhe.capture.poll(NOW + timedelta(seconds=1)).published == 0  # reads it again
    karlsruhe.take_outbox()
    with karlsruhe.admin.begin() as connection:
        set_status(connection, jan, Status.CANCELLED, now=_stamp(0))
    assert karlsruhe.capture.poll(NOW + timedelta(seconds=2)).published == 1
    assert {e.data.status for e in karlsruhe.take_outbox()} == {Status.CANCELLED}


def test_a_foreign_row_deleted_here_does_not_block_the_next_one_given_its_id(
    schools: tuple[Side, Side],
) -> None:
    """Staff delete the newest synced row; SQLite hands its id to the next row sync inserts.
    The deleted row's mapping gives way, so the new enrollment is applied, not dead-lettered
    as a constraint violation; the one deleted comes back with the next sync answer."""
    master, karlsruhe = schools
    with master.admin.begin() as connection:
        enroll(connection, COURSE, JAN)
    master.capture.poll(NOW)
    [first] = master.take_outbox()
    assert [o.result for o in karlsruhe.applier.apply_enrollment_changes([first], STAMP)] == [
        "applied"
    ]
    [row] = karlsruhe.rows()
    with karlsruhe.admin.begin() as connection:
        delete_enrollment(connection, row["id"])
    with master.admin.begin() as connection:
        enroll(connection, COURSE, Person("Berg", "Anna"))
    master.capture.poll(NOW + timedelta(seconds=3))
    [second] = master.take_outbox()
    outcomes = karlsruhe.applier.apply_enrollment_changes([second], STAMP)
    assert [o.result for o in outcomes] == ["applied"]
    assert len(karlsruhe.rows()) == 1
    again = karlsruhe.applier.apply_enrollment_changes([first], STAMP, repair=True)
    assert [o.result for o in again] == ["applied"]
    assert len(karlsruhe.rows()) == 2
