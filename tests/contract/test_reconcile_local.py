"""`reconcile`'s reading of this school's admin DB for local actions that break sync, against
SQLite admin and state DBs (no broker)."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
from sqlalchemy import Engine, insert
from typer.testing import CliRunner

from adapter.cli import app
from adapter.config import load_settings
from adapter.domain import CourseRef
from adapter.ops.reconcile import ask_members, local_issues
from adapter.store import admin, state
from adapter.store.db import create_admin_schema, make_engine, migrate_state
from tests.services import RUN

ME = "vhs-x"


def databases(folder: Path) -> tuple[Engine, Engine]:
    admin_engine = make_engine(f"sqlite:///{folder / 'admin.db'}")
    state_engine = make_engine(f"sqlite:///{folder / 'state.db'}")
    create_admin_schema(admin_engine)
    migrate_state(state_engine)
    return admin_engine, state_engine


def test_a_subscriber_that_also_masters_a_course_of_the_same_person_sees_no_merge(
    tmp_path: Path,
) -> None:
    """vhs-x subscribes to vhs-m's course K and masters its own course L; vhs-t's participant
    5 is in both. In K vhs-x holds the anonymised row in vhs-t's name, in L the real person:
    neither is a merged participant."""
    admin_engine, state_engine = databases(tmp_path)
    k, l_course = CourseRef("vhs-m", "26-K"), CourseRef(ME, "26-L")
    with admin_engine.begin() as connection:
        for ref in (k, l_course):
            connection.execute(
                insert(admin.courses).values(
                    number=ref.number, master_school=ref.master_school, master_number=ref.number
                )
            )
        school_row = connection.execute(
            insert(admin.participants).values(last_name="vhs T")
        ).inserted_primary_key[0]
        person_row = connection.execute(
            insert(admin.participants).values(last_name="Nowak", first_name="Jan")
        ).inserted_primary_key[0]
        in_k = connection.execute(
            insert(admin.enrollments).values(
                course_number=k.number, participant_number=school_row, status="A"
            )
        ).inserted_primary_key[0]
        in_l = connection.execute(
            insert(admin.enrollments).values(
                course_number=l_course.number,
                participant_number=person_row,
                company_number=school_row,
                status="A",
            )
        ).inserted_primary_key[0]
    with state_engine.begin() as connection:
        connection.execute(
            insert(state.remote_participants),
            [
                {"origin_school": "vhs-t", "participant_number": 0, "local_number": school_row},
                {"origin_school": "vhs-t", "participant_number": 5, "local_number": person_row},
            ],
        )
        connection.execute(
            insert(state.applied),
            [
                {
                    "origin_school": "vhs-t",
                    "course_master": ref.master_school,
                    "course_number": ref.number,
                    "participant_number": 5,
                    "version": 1,
                    "status": "A",
                    "enrollment_id": enrollment_id,
                }
                for ref, enrollment_id in ((k, in_k), (l_course, in_l))
            ],
        )
    for ref in (k, l_course):
        assert local_issues(admin_engine, state_engine, ME, ref, ref.number) == []


async def test_asking_gives_up_on_a_broker_that_never_answers(tmp_path: Path) -> None:
    """A broker address where something accepts the connection but never speaks AMQP (a hung
    broker, a wrong port) ends the ask within its wait, instead of hanging the command or
    the daemon's reconcile loop for ever."""
    silent = await asyncio.start_server(lambda _reader, _writer: None, "127.0.0.1", 0)
    port = silent.sockets[0].getsockname()[1]
    config = tmp_path / "vhs-x.toml"
    config.write_text(
        f'[school]\nid = "{ME}"\nname = "vhs X"\n'
        f'[admin_db]\nurl = "sqlite:///{tmp_path / "admin.db"}"\n'
        f'[state_db]\nurl = "sqlite:///{tmp_path / "state.db"}"\n'
        f'[broker]\nurl = "amqp://guest:guest@127.0.0.1:{port}/"\ninsecure = true\n',
        encoding="utf-8",
    )
    settings = load_settings(config)
    started = time.monotonic()
    async with silent:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(
                ask_members(settings, CourseRef("vhs-m", "26-K"), {}, {"vhs-m"}, wait=0.5), 10
            )
    assert time.monotonic() - started < 5


@pytest.mark.rabbitmq
def test_a_network_the_broker_does_not_have_is_one_line(tmp_path: Path, rabbitmq_url: str) -> None:
    """A mistyped `[broker] network` (no such exchange on the broker): one readable line and
    exit 1, no traceback."""
    admin_engine, _state = databases(tmp_path)
    with admin_engine.begin() as connection:
        connection.execute(
            insert(admin.courses).values(number="26-K", master_school="vhs-m", master_number="26-K")
        )
    config = tmp_path / "vhs-x.toml"
    config.write_text(
        f'[school]\nid = "{ME}"\nname = "vhs X"\n'
        f'[admin_db]\nurl = "sqlite:///{tmp_path / "admin.db"}"\n'
        f'[state_db]\nurl = "sqlite:///{tmp_path / "state.db"}"\n'
        f'[broker]\nurl = "{rabbitmq_url}"\nnetwork = "no-such-network-{RUN}"\n'
        "insecure = true\n[reconcile]\nwait = 1.0\n",
        encoding="utf-8",
    )
    result = CliRunner().invoke(app, ["reconcile", "--config", str(config)])
    assert result.exit_code == 1, result.output
    [line] = result.output.strip().splitlines()
    assert line.startswith("error: the broker refused"), line
    assert "no-such-network" in line


@pytest.fixture(autouse=True)
def _logging_as_it_was() -> Iterator[None]:
    """A command run in this process points structlog at its own stderr, which the runner
    closes afterwards: later tests must log as before."""
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


def test_a_broker_that_never_answers_is_one_line_that_says_so(tmp_path: Path) -> None:
    """`vhs-sync reconcile` against a port that accepts but never speaks AMQP ends within its
    wait, and its line says why (a timeout has no text of its own)."""
    admin_engine, _state = databases(tmp_path)
    with admin_engine.begin() as connection:
        connection.execute(
            insert(admin.courses).values(number="26-K", master_school="vhs-m", master_number="26-K")
        )
    with socket.create_server(("127.0.0.1", 0)) as silent:
        port = silent.getsockname()[1]
        config = tmp_path / "vhs-x.toml"
        config.write_text(
            f'[school]\nid = "{ME}"\nname = "vhs X"\n'
            f'[admin_db]\nurl = "sqlite:///{tmp_path / "admin.db"}"\n'
            f'[state_db]\nurl = "sqlite:///{tmp_path / "state.db"}"\n'
            f'[broker]\nurl = "amqp://guest:guest@127.0.0.1:{port}/"\ninsecure = true\n'
            "[reconcile]\nwait = 0.5\n",
            encoding="utf-8",
        )
        result = CliRunner().invoke(app, ["reconcile", "--config", str(config)])
    assert result.exit_code == 1, result.output
    [line] = result.output.strip().splitlines()
    assert line == f"error: cannot reach the broker at 127.0.0.1:{port}/: no answer within 0.5 s"
