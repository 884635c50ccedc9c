"""Apply across a crash between its two commits (issue 7, item 2), on each admin-DB backend:
whatever stops a write between the admin-DB commit and the state-DB commit, a retry books
nothing twice and loses nothing, at the master and at a subscriber, on a school's first batch
and on a later one."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event, func, insert, select

from adapter.capture.poller import Capture
from adapter.consumers.apply import Applier, School
from adapter.consumers.receiver import Receiver
from adapter.desk import Person, add_course, enroll
from adapter.domain import CourseRef, EnrollmentKey, EnrollmentState, PersonalData, Status
from adapter.messages import EnrollmentChanged, enrollment_changed
from adapter.store import admin, state
from adapter.store.db import create_admin_schema, make_engine, migrate_state

MASTER = "vhs-sr"
ORIGIN = "vhs-ka"
SUBSCRIBER = "vhs-hd"
DIRECTORY = {
    MASTER: School(MASTER, "VHS SR"),
    ORIGIN: School(ORIGIN, "vhs Karlsruhe", "kurse@vhs-ka.example"),
    SUBSCRIBER: School(SUBSCRIBER, "VHS HD"),
}
STAMP = datetime(2026, 11, 23, 9, 0)
TIME = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
CRASHED = 17


class CrashBetweenCommitsError(Exception):
    """Stands for whatever stops a write after one of its two commits."""


class Side:
    """The admin and state DB of the school receiving the events: the course's master, or a
    subscriber of it."""

    def __init__(self, admin_url: str, state_url: str, school: str, course: str) -> None:
        self.school = school
        self.master_number = course
        self.local_course = course if school == MASTER else f"{course}-HD"
        self.admin: Engine = make_engine(admin_url)
        self.state: Engine = make_engine(state_url)

    @classmethod
    def create(cls, database_url: Callable[[str], str], school: str) -> Side:
        course = f"26-{uuid.uuid4().hex[:8]}"
        side = cls(database_url(f"{school}-admin"), database_url(f"{school}-state"), school, course)
        create_admin_schema(side.admin)
        migrate_state(side.state)
        with side.admin.begin() as connection:
            add_course(
                connection,
                side.local_course,
                max_participants=500,
                master_school=MASTER,
                master_number=course,
            )
        return side

    def applier(self) -> Applier:
        """A freshly started adapter's applier."""
        return Applier(self.admin, self.state, self.school, DIRECTORY)

    def events(self, numbers: range, *, version: int, status: Status) -> list[EnrollmentChanged]:
        """One state per participant of the origin school, as this side receives it: with
        personal data at the master, anonymised at a subscriber."""
        course = CourseRef(MASTER, self.master_number)
        result = []
        for number in numbers:
            personal = PersonalData(f"Name{number}", f"Vorname{number}", f"p{number}@example.org")
            state = EnrollmentState(
                EnrollmentKey(ORIGIN, number, course),
                status,
                date(2026, 11, 1),
                personal if self.school == MASTER else None,
            )
            result.append(
                enrollment_changed(
                    state, version=version, event_id=f"e-{number}-{version}", time=TIME
                )
            )
        return result

    def counts(self) -> tuple[int, int]:
        """Enrollment rows in the course, and participant rows, in the admin DB."""
        with self.admin.connect() as connection:
            enrollments = connection.execute(
                select(func.count()).where(admin.enrollments.c.course_number == self.local_course)
            ).scalar_one()
            participants = connection.execute(
                select(func.count()).select_from(admin.participants)
            ).scalar_one()
        return int(enrollments), int(participants)

    def statuses(self) -> dict[str, int]:
        with self.admin.connect() as connection:
            rows = connection.execute(
                select(admin.enrollments.c.status, func.count())
                .where(admin.enrollments.c.course_number == self.local_course)
                .group_by(admin.enrollments.c.status)
            ).all()
        return {status: int(count) for status, count in rows}

    def expected_participants(self, enrollments: int) -> int:
        """The origin school's own row, and at the master one row per remote participant."""
        return 1 + (enrollments if self.school == MASTER else 0)


@contextmanager
def stopped_between_commits(side: Side, stop: Callable[[], None]) -> Iterator[None]:
    """`stop()` at the second of the two commits of a write, whichever DB commits first."""
    committed: set[str] = set()

    def hook(name: str, other: str) -> Callable[[Any], None]:
        def on_commit(_connection: Any) -> None:
            if other in committed:
                stop()
            committed.add(name)

        return on_commit

    hooks = [(side.admin, hook("admin", "state")), (side.state, hook("state", "admin"))]
    for engine, on_commit in hooks:
        event.listen(engine, "commit", on_commit)
    try:
        yield
    finally:
        for engine, on_commit in hooks:
            event.remove(engine, "commit", on_commit)


@contextmanager
def stopped_after_the_admin_commit(side: Side) -> Iterator[None]:
    """Stop at the first state-DB commit after the admin DB committed."""
    committed: list[str] = []

    def on_admin_commit(_connection: Any) -> None:
        committed.append("admin")

    def on_state_commit(_connection: Any) -> None:
        if committed:
            crash()

    event.listen(side.admin, "commit", on_admin_commit)
    event.listen(side.state, "commit", on_state_commit)
    try:
        yield
    finally:
        event.remove(side.admin, "commit", on_admin_commit)
        event.remove(side.state, "commit", on_state_commit)


def crash() -> None:
    raise CrashBetweenCommitsError


@pytest.fixture(params=[MASTER, SUBSCRIBER])
def side(request: pytest.FixtureRequest, database_url: Callable[[str], str]) -> Side:
    return Side.create(database_url, request.param)


def test_a_first_batch_stopped_between_the_commits_is_booked_once(side: Side) -> None:
    """A school's first batch (its own row, the master's remote participants and 45
    enrollments created in the failed write), stopped between the two commits and applied
    again after a restart, leaves each row once."""
    events = side.events(range(1, 46), version=10, status=Status.REGISTERED)
    with stopped_between_commits(side, crash), pytest.raises(CrashBetweenCommitsError):
        side.applier().apply_enrollment_changes(events, STAMP)
    outcomes = side.applier().apply_enrollment_changes(events, STAMP)
    assert {o.result for o in outcomes} <= {"applied", "unchanged", "stale"}
    assert side.counts() == (45, side.expected_participants(45))
    assert side.statuses() == {"A": 45}
    assert {o.result for o in side.applier().apply_enrollment_changes(events, STAMP)} == {"stale"}


def test_a_later_batch_stopped_between_the_commits_is_booked_once(side: Side) -> None:
    """A batch of 40 new enrollments and 5 changed ones after a first batch, stopped between
    the commits and applied again, books the new ones once and keeps the changes."""
    applier = side.applier()
    applier.apply_enrollment_changes(
        side.events(range(1, 6), version=10, status=Status.REGISTERED), STAMP
    )
    later = [
        *side.events(range(1, 6), version=11, status=Status.CANCELLED),
        *side.events(range(6, 46), version=11, status=Status.WAITLISTED),
    ]
    with stopped_between_commits(side, crash), pytest.raises(CrashBetweenCommitsError):
        applier.apply_enrollment_changes(later, STAMP)
    applier.apply_enrollment_changes(later, STAMP)
    assert side.counts() == (45, side.expected_participants(45))
    assert side.statuses() == {"S": 5, "W": 40}
    restarted = side.applier()
    assert {o.result for o in restarted.apply_enrollment_changes(later, STAMP)} == {"stale"}
    assert side.counts() == (45, side.expected_participants(45))


def test_a_crash_right_after_the_admin_commit_books_nothing_twice(side: Side) -> None:
    """Stopped once the admin DB has committed, before the state DB learns more: after a
    restart the noted batch is found whole in the admin DB and kept, so the redelivered events
    are stale and nothing is booked again, on a first and on a later batch."""
    first = side.events(range(1, 6), version=10, status=Status.REGISTERED)
    later = [
        *side.events(range(1, 6), version=11, status=Status.CANCELLED),
        *side.events(range(6, 21), version=11, status=Status.WAITLISTED),
    ]
    for batch in (first, later):
        with stopped_after_the_admin_commit(side), pytest.raises(CrashBetweenCommitsError):
            side.applier().apply_enrollment_changes(batch, STAMP)
        side.applier().apply_enrollment_changes(batch, STAMP)
    assert side.counts() == (20, side.expected_participants(20))
    assert side.statuses() == {"S": 5, "W": 15}
    assert {o.result for o in side.applier().apply_enrollment_changes(later, STAMP)} == {"stale"}


def test_ids_of_a_rolled_back_batch_taken_by_own_rows_are_not_taken_over(side: Side) -> None:
    """After a batch rolled back, the school's own new rows may get its ids (SQLite reuses
    them): the check forgets the batch's mapping, the own rows stay own, the events are booked
    again."""
    events = side.events(range(1, 11), version=10, status=Status.REGISTERED)
    with stopped_between_commits(side, crash), pytest.raises(CrashBetweenCommitsError):
        side.applier().apply_enrollment_changes(events, STAMP)
    with side.admin.begin() as connection:
        for n in range(12):
            number = connection.execute(
                insert(admin.participants).values(last_name=f"Own{n}", first_name="Eigen")
            ).inserted_primary_key[0]
            connection.execute(
                insert(admin.enrollments).values(
                    course_number=side.local_course, participant_number=number, status="A"
                )
            )
    side.applier().apply_enrollment_changes(events, STAMP)
    assert side.counts() == (22, 12 + side.expected_participants(10))
    with side.admin.connect() as connection:
        own = connection.execute(
            select(func.count()).where(
                admin.enrollments.c.course_number == side.local_course,
                admin.enrollments.c.remark.is_(None),
            )
        ).scalar_one()
    assert own == 12


def test_an_adopted_row_whose_update_rolled_back_is_updated_again(side: Side) -> None:
    """Rows adopted after the state DB lost its record (restored from an older copy) whose
    update is stopped between the commits are not taken as applied: the retry cancels them."""
    applier = side.applier()
    applier.apply_enrollment_changes(
        side.events(range(1, 4), version=10, status=Status.REGISTERED), STAMP
    )
    with side.state.begin() as connection:
        connection.execute(state.applied.delete())
    cancellations = side.events(range(1, 4), version=11, status=Status.CANCELLED)
    with stopped_between_commits(side, crash), pytest.raises(CrashBetweenCommitsError):
        side.applier().apply_enrollment_changes(cancellations, STAMP)
    assert side.statuses() == {"A": 3}
    outcomes = side.applier().apply_enrollment_changes(cancellations, STAMP)
    assert [o.result for o in outcomes] == ["applied"] * 3
    assert side.statuses() == {"S": 3}
    assert side.counts() == (3, side.expected_participants(3))


def test_a_started_adapter_checks_a_cut_batch_before_capture_reads(side: Side) -> None:
    """After a crash between the commits, a started adapter's capture first recovers
    (`ensure_recovered`), which forgets what the admin DB rolled back: an own row that got a
    rolled-back id is published as the school's own, not taken for a foreign one."""
    events = side.events(range(1, 4), version=10, status=Status.REGISTERED)
    with stopped_between_commits(side, crash), pytest.raises(CrashBetweenCommitsError):
        side.applier().apply_enrollment_changes(events, STAMP)
    with side.admin.begin() as connection:
        own = enroll(connection, side.local_course, Person("Eigen", "Erna"))[1]
    side.applier().ensure_recovered()
    capture = Capture(side.admin, side.state, side.school)
    result = capture.full_scan(TIME)
    assert result.published == 1
    with side.state.connect() as connection:
        mapped = connection.execute(select(state.applied.c.enrollment_id)).scalars().all()
    assert own not in mapped


def test_a_participant_edited_after_a_cut_batch_is_kept(side: Side) -> None:
    """Staff edit a participant row the cut batch wrote, before the adapter starts again: the
    row its kept enrollment points to is kept, so no second participant row is booked."""
    events = side.events(range(1, 4), version=10, status=Status.REGISTERED)
    with stopped_after_the_admin_commit(side), pytest.raises(CrashBetweenCommitsError):
        side.applier().apply_enrollment_changes(events, STAMP)
    with side.admin.begin() as connection:
        connection.execute(admin.participants.update().values(main_phone="0721 0000"))
    restarted = side.applier()
    restarted.recover()
    restarted.apply_enrollment_changes(
        side.events(range(1, 4), version=11, status=Status.CANCELLED), STAMP
    )
    assert side.counts() == (3, side.expected_participants(3))
    assert side.statuses() == {"S": 3}


async def test_a_batch_with_a_version_the_state_db_cannot_store_doubles_nothing(
    side: Side,
) -> None:
    """One event of a batch whose version the state DB refuses (2**63, past BigInteger): the
    batch is applied event by event, every other event is booked once, the refused one leaves
    no row and is reported as failed."""
    events = side.events(range(1, 11), version=10, status=Status.REGISTERED)
    bad = events[4]
    events[4] = bad.model_copy(update={"data": bad.data.model_copy(update={"version": 2**63})})
    receiver = Receiver(
        None,  # type: ignore[arg-type]  # _apply touches neither queue nor exchange
        None,  # type: ignore[arg-type]
        side.applier(),
        school=side.school,
        broker_users={},
        handlers={},
        admin_clock=lambda: STAMP,
    )
    outcomes = await receiver._apply(events)
    assert [o.result for o in outcomes] == ["applied"] * 4 + ["failed"] + ["applied"] * 5
    assert outcomes[4].failure is not None
    assert side.counts() == (9, side.expected_participants(9))


def crash_child(admin_url: str, state_url: str, school: str, course: str) -> None:
    """In a process of its own: apply a first batch of 45 and die (os._exit) between the
    two commits."""
    side = Side(admin_url, state_url, school, course)
    events = side.events(range(1, 46), version=10, status=Status.REGISTERED)
    with stopped_between_commits(side, lambda: os._exit(CRASHED)):
        side.applier().apply_enrollment_changes(events, STAMP)
    raise SystemExit("the write was not stopped")


@pytest.mark.parametrize("school", [MASTER, SUBSCRIBER])
def test_a_process_killed_between_the_commits_books_nothing_twice(
    school: str, tmp_path: Path
) -> None:
    """An adapter process that dies (os._exit) between the two commits of a school's first
    batch: the restarted adapter books each of the 45 enrollments once (SQLite)."""
    side = Side.create(lambda name: f"sqlite:///{tmp_path / (name + '.db')}", school)
    admin_url, state_url = str(side.admin.url), str(side.state.url)
    code = (
        "from tests.contract.test_apply_crash import crash_child; "
        f"crash_child({admin_url!r}, {state_url!r}, {school!r}, {side.master_number!r})"
    )
    child = subprocess.run(
        [sys.executable, "-c", code],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert child.returncode == CRASHED, child.stderr[-2000:]
    events = side.events(range(1, 46), version=10, status=Status.REGISTERED)
    side.applier().apply_enrollment_changes(events, STAMP)
    assert side.counts() == (45, side.expected_participants(45))
    assert side.statuses() == {"A": 45}
