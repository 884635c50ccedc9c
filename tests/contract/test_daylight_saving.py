"""Capture across the daylight-saving changes of Europe/Berlin in 2026: the admin DB stamps
BEARBDATUM in wall-clock time, which repeats an hour on 2026-10-25 and skips one on
2026-03-29. Every change is published once: none missed, none published again."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine, delete, select

from adapter.bootstrap import Daemon
from adapter.capture.poller import Capture
from adapter.config import Settings
from adapter.desk import Person, add_course, enroll, set_status
from adapter.domain import Status
from adapter.messages import EnrollmentChanged
from adapter.store import state
from adapter.store.db import create_admin_schema, make_engine, migrate_state
from adapter.store.localtime import AdminClock

BERLIN = ZoneInfo("Europe/Berlin")
SCHOOL = "vhs-ka"
COURSE = "26-DST1"


class Clock:
    """The moment the test says it is."""

    def __init__(self, moment: datetime) -> None:
        self.moment = moment

    def __call__(self) -> datetime:
        return self.moment


def _published(state_engine: Engine) -> list[tuple[int, str]]:
    """(participant number, status) of every anonymised enrollment event in the outbox,
    which is then emptied."""
    with state_engine.begin() as connection:
        bodies = connection.execute(select(state.outbox.c.body)).scalars().all()
        connection.execute(delete(state.outbox))
    events = [
        EnrollmentChanged.model_validate_json(body)
        for body in bodies
        if b"enrollment.changed" in body
    ]
    return [
        (e.data.participant_number, e.data.status.value)
        for e in events
        if e.data.participant is None
    ]


def _run_across(
    database_url: Callable[[str], str], start: datetime, steps: int, cancel_later: int
) -> None:
    """Every 10 minutes from `start` (UTC) a person enrolls, stamped by the admin clock, and
    capture polls; at step `cancel_later` the first enrollment of the hour before is
    cancelled. Each poll must publish exactly what changed in that step."""
    clock = Clock(start)
    admin_clock = AdminClock(BERLIN, clock=clock)
    admin_engine = make_engine(database_url("dst-admin"))
    state_engine = make_engine(database_url("dst-state"))
    create_admin_schema(admin_engine)
    migrate_state(state_engine)
    with admin_engine.begin() as connection:
        add_course(connection, f"{COURSE}K", master_school="vhs-sr", master_number=COURSE)
    capture = Capture(
        admin_engine,
        state_engine,
        SCHOOL,
        overlap=timedelta(seconds=2),
        admin_clock=admin_clock,
        timezone=BERLIN,
    )
    capture.full_scan(clock())  # nothing yet: polls start from the admin clock's now
    enrolled: list[tuple[int, int]] = []
    expected: list[tuple[int, str]] = []
    for step in range(1, steps + 1):
        clock.moment = start + timedelta(minutes=10 * step)
        stamp = admin_clock()
        changes = []
        with admin_engine.begin() as connection:
            number, enrollment_id = enroll(
                connection, f"{COURSE}K", Person("Person", f"P{step}"), now=stamp
            )
            enrolled.append((number, enrollment_id))
            changes.append((number, "A"))
            if step == cancel_later:
                earlier_number, earlier_id = enrolled[step - 7]
                set_status(connection, earlier_id, Status.CANCELLED, now=stamp)
                changes.append((earlier_number, "S"))
        result = capture.poll(clock())
        published = _published(state_engine)
        assert sorted(published) == sorted(changes), f"step {step}, stamped {stamp}"
        assert result.published == len(changes)
        expected.extend(changes)
    assert len(Counter(expected)) == len(expected) == steps + 1
    # The next full scan finds nothing left over: polls published everything.
    assert capture.full_scan(clock()).published == 0


def test_the_repeated_hour_of_the_autumn_change_loses_no_change(
    database_url: Callable[[str], str],
) -> None:
    """From 01:00 CEST to 03:30 CET on 2026-10-25 the hour from 02:00 comes twice; the rows
    stamped in its second pass (lower stamps than those before) are each published once, also
    the cancellation at 02:40 CET of the row stamped 02:40 CEST."""
    start = datetime(2026, 10, 24, 23, 0, tzinfo=UTC)  # 01:00 CEST
    _run_across(database_url, start, steps=21, cancel_later=16)  # up to 04:30 CET


def test_the_skipped_hour_of_the_spring_change_loses_no_change(
    database_url: Callable[[str], str],
) -> None:
    """From 01:00 CET to 04:30 CEST on 2026-03-29 the stamps jump from 01:50 to 03:00; every
    change is published once."""
    start = datetime(2026, 3, 29, 0, 0, tzinfo=UTC)  # 01:00 CET
    _run_across(database_url, start, steps=15, cancel_later=9)


def test_the_daemon_stamps_and_polls_in_the_configured_zone() -> None:
    """`[admin_db] timezone` reaches capture and the clock the daemon stamps rows with."""
    settings = Settings(
        school={"id": SCHOOL, "name": "vhs Karlsruhe"},
        admin_db={"url": "sqlite://", "timezone": "Europe/Berlin"},
        state_db={"url": "sqlite://"},
        broker={"insecure": True},
    )
    daemon = Daemon(settings, clock=lambda: datetime(2026, 10, 25, 1, 30, tzinfo=UTC))
    assert daemon.capture.timezone == BERLIN
    assert isinstance(daemon.admin_clock, AdminClock)
    assert daemon.admin_clock.zone == BERLIN


@pytest.fixture(autouse=True)
def _no_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The shell's `VHS_SYNC_*` variables must not reach the settings built here."""
    for name in list(os.environ):
        if name.upper().startswith("VHS_SYNC_"):
            monkeypatch.delenv(name)
