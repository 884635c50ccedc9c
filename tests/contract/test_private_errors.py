"""No personal data in any log line or header, ever (issue 7, item 12): a write the admin DB
refuses, whose error message quotes the row ("Failing row contains (..., Greta, ...)", "Key
(EMAIL)=(greta@...) already exists", "Duplicate entry 'greta@...'"), is logged and
dead-lettered by its class and codes only, in-process and in a process of its own."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, text
from sqlalchemy.exc import IntegrityError
from structlog.testing import capture_logs

from adapter.consumers.apply import Applier, School
from adapter.consumers.receiver import Receiver
from adapter.desk import add_course
from adapter.domain import CourseRef, EnrollmentKey, EnrollmentState, PersonalData, Status
from adapter.messages import BATCH_CONTENT_TYPE, EnrollmentChanged, enrollment_changed
from adapter.ops.logs import error_text
from adapter.store import admin
from adapter.store.db import create_admin_schema, make_engine, migrate_state
from tests.fakes import DeadLetters, Message
from tests.services import MARIADB_URL, POSTGRES_URL, require, scratch_database

PRIVATE = ("Greta", "Grünwald", "greta@example.org", "0721 4711")
NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
STAMP = NOW.replace(tzinfo=None)
DIRECTORY = {"vhs-sr": School("vhs-sr", "VHS SR"), "vhs-ka": School("vhs-ka", "vhs Karlsruhe")}


@pytest.fixture(params=["postgresql", "mariadb"])
def server_db(request: pytest.FixtureRequest) -> Iterator[tuple[str, str, str]]:
    """An admin DB and a state DB on PostgreSQL or MariaDB, and a course at the master."""
    server = POSTGRES_URL if request.param == "postgresql" else MARIADB_URL
    require(request.param, server)
    with scratch_database(server) as admin_url, scratch_database(server) as state_url:
        course = f"26-{uuid.uuid4().hex[:8]}"
        engine = make_engine(admin_url)
        create_admin_schema(engine)
        migrate_state(make_engine(state_url))
        with engine.begin() as connection:
            add_course(
                connection,
                course,
                max_participants=10,
                master_school="vhs-sr",
                master_number=course,
            )
        engine.dispose()
        yield admin_url, state_url, course


def greta(course: str, number: int = 31) -> EnrollmentChanged:
    state = EnrollmentState(
        EnrollmentKey("vhs-ka", number, CourseRef("vhs-sr", course)),
        Status.REGISTERED,
        date(2026, 11, 1),
        PersonalData("Grünwald", "Greta", "greta@example.org", "0721 4711"),
    )
    return enrollment_changed(state, version=1_764_000_000_000_000, event_id="e-greta", time=NOW)


def refuse_greta(admin_url: str) -> None:
    """The school's admin DB allows one participant per e-mail address, and has Greta
    already: the master's insert of the remote participant fails, quoting her address."""
    engine = make_engine(admin_url)
    with engine.begin() as connection:
        connection.execute(
            text('ALTER TABLE "TEILNEHM" ADD CONSTRAINT uq_email UNIQUE ("EMAIL_ANZEIGE")')
            if engine.dialect.name == "postgresql"
            else text("ALTER TABLE TEILNEHM ADD CONSTRAINT uq_email UNIQUE (EMAIL_ANZEIGE)")
        )
        connection.execute(
            insert(admin.participants).values(
                last_name="Grünwald", first_name="Greta", main_email="greta@example.org"
            )
        )
    engine.dispose()


def leaks(value: Any) -> list[str]:
    rendered = json.dumps(value, default=str, ensure_ascii=False)
    return [private for private in PRIVATE if private in rendered]


async def test_a_refused_write_leaves_no_personal_data_in_logs_or_dead_letters(
    server_db: tuple[str, str, str],
) -> None:
    """A batch the admin DB refuses is dead-lettered as `apply_failed` whose detail names the
    error's class and codes; no log line and no header carries Greta's name or address."""
    admin_url, state_url, course = server_db
    refuse_greta(admin_url)
    applier = Applier(make_engine(admin_url), make_engine(state_url), "vhs-sr", DIRECTORY)
    receiver = Receiver(
        None,  # type: ignore[arg-type]  # handle_batch does not consume
        dead_letters := DeadLetters(),  # type: ignore[arg-type]
        applier,
        school="vhs-sr",
        broker_users={"vhs-sr": "sr-user", "vhs-ka": "ka-user"},
        handlers={},
        own_user="sr-user",
        clock=lambda: NOW,
        admin_clock=lambda: STAMP,
    )
    body = json.dumps(
        [json.loads(greta(course, n).model_dump_json()) for n in (31, 32)], ensure_ascii=False
    ).encode()
    message = Message(body, user_id="ka-user", content_type=BATCH_CONTENT_TYPE)
    with capture_logs() as logs:
        await receiver.handle_batch([message])  # type: ignore[list-item]
    reasons = [letter.headers["x-vhs-sync-reason"] for letter in dead_letters.published]
    assert "apply_failed" in reasons
    details = [letter.headers["x-vhs-sync-detail"] for letter in dead_letters.published]
    assert any("IntegrityError" in detail for detail in details)
    assert leaks([letter.headers for letter in dead_letters.published]) == []
    assert leaks(logs) == []
    assert any(entry["event"] == "apply.batch_failed" for entry in logs)


CHILD = """
import asyncio, gc, logging, sys, warnings
from adapter.consumers.apply import Applier
from adapter.ops import logs
from adapter.store.db import make_engine
from tests.contract.test_private_errors import DIRECTORY, STAMP, greta

logs.configure(json=True)
admin_url, state_url, course = sys.argv[1:4]
applier = Applier(make_engine(admin_url), make_engine(state_url), "vhs-sr", DIRECTORY)
try:
    applier.apply_enrollment_changes([greta(course)], STAMP)
except Exception as error:
    refused = error
logging.getLogger("sqlalchemy.pool").error("reset failed", exc_info=refused)
warnings.warn("a library warning")

async def main():
    async def fail():
        raise refused
    task = asyncio.ensure_future(fail())
    await asyncio.sleep(0.05)
    del task
    gc.collect()

asyncio.run(main())
raise refused
"""


def test_a_process_that_fails_on_a_refused_write_prints_no_personal_data(
    server_db: tuple[str, str, str],
) -> None:
    """A process with `logs.configure(json=True)` whose write is refused: the library records
    (SQLAlchemy, asyncio, warnings) and the uncaught exception are JSON lines on stdout that
    name the error by class and codes; nothing of Greta on stdout or stderr."""
    admin_url, state_url, course = server_db
    refuse_greta(admin_url)
    child = subprocess.run(
        [sys.executable, "-c", CHILD, admin_url, state_url, course],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert child.returncode == 1
    assert [p for p in PRIVATE if p in child.stdout + child.stderr] == []
    assert child.stderr == ""
    lines = [json.loads(line) for line in child.stdout.splitlines()]
    events = {line["event"].split("\n")[0]: line for line in lines}
    assert "IntegrityError" in events["process.crashed"]["error"]
    assert "IntegrityError" in events["reset failed"]["error"]
    assert events["reset failed"]["logger"] == "sqlalchemy.pool"
    assert "Task exception was never retrieved" in events
    assert any("a library warning" in event for event in events)


def test_error_text_names_codes_and_never_the_message() -> None:
    """`error_text` of a database error: the driver's class and code, where it was raised,
    nothing of the message."""

    class DriverError(Exception):
        sqlstate = "23505"

    error = IntegrityError("INSERT ...", {"email": "greta@example.org"}, DriverError("greta"))
    described = error_text(error)
    assert "IntegrityError" in described
    assert "sqlstate 23505" in described
    assert "greta" not in described


def test_an_engines_error_never_quotes_its_parameters(tmp_path: Path) -> None:
    """SQLAlchemy's own error text leaves out the statement's parameters (the rows of people),
    should anything ever log it."""
    engine = make_engine(f"sqlite:///{tmp_path / 'admin.db'}")
    create_admin_schema(engine)
    with pytest.raises(IntegrityError) as raised, engine.begin() as connection:
        connection.execute(
            insert(admin.enrollments).values(
                course_number=None, participant_number=1, remark="greta@example.org"
            )
        )
    assert "greta@example.org" not in str(raised.value)
    assert "hidden due to hide_parameters" in str(raised.value)
