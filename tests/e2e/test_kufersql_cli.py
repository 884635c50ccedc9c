"""Two schools on a KuferSQL-like admin DB (issue 8): other table and column names and none
of the optional columns, mapped in the config. Settings and master school are set with
`vhs-sync course settings`; two daemons sync over the real broker and the desk honours the
master's limit per school."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

from sqlalchemy import Engine, inspect

from adapter.store.db import make_engine
from tests.e2e.test_cli import VHS_SYNC, cli, network, write_config

__all__ = ["network"]  # the fixture, shared with test_cli

MAPPING = """
[admin_db.tables]
courses = "KURS"
participants = "PERSON"
enrollments = "BELEG"

[admin_db.columns.courses]
number = "KURSNR"
master_school = ""
desired_participants = ""
waitlist_enabled = ""
waitlist_max = ""
waitlist_mode = ""
auto_advance = ""
max_per_school = ""
registration_open = ""

[admin_db.columns.enrollments]
status = "STATUS"
waitlisted_since = ""
waitlisted_by_admin = ""
"""


def _mapped(path: Path) -> Path:
    text = path.read_text(encoding="utf-8")
    head, tail = text.split("[state_db]")
    path.write_text(head + MAPPING + "\n[state_db]" + tail, encoding="utf-8")
    return path


def _insert_course(tmp_path: Path, school: str, number: str, master_number: str | None) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / (school + '-admin.db')}")
    with engine.begin() as connection:
        connection.exec_driver_sql(
            'INSERT INTO "KURS" ("KURSNR", "TITEL", "GEBUEHR", "TEIL_MAX", "Master_knr") '
            "VALUES (?, 'Online', 0, 8, ?)",
            (number, master_number),
        )


def _kept_limit(state_db: Engine, course: str) -> object:
    with state_db.connect() as connection:
        return connection.exec_driver_sql(
            "SELECT max_per_school FROM course_settings WHERE course_number = ?", (course,)
        ).scalar()


def _statuses(admin_db: Engine) -> list[str]:
    with admin_db.connect() as connection:
        return sorted(connection.exec_driver_sql('SELECT "STATUS" FROM "BELEG"').scalars())


def _settings(config: Path, course: str, *options: str) -> dict[str, object]:
    shown: dict[str, object] = json.loads(
        cli("course", "settings", course, "--config", config, *options, "--json").stdout
    )
    return shown


def test_two_schools_on_a_mapped_schema_sync_and_honour_the_settings(
    tmp_path: Path, rabbitmq_url: str, network: str
) -> None:
    """The master's limit of one place per school, kept in its state DB, reaches the
    subscriber, whose second registration waits; the master sees both, as company bookings."""
    master = _mapped(
        write_config(
            tmp_path, "vhs-sr", "VHS SR", ("vhs-ka", "vhs Karlsruhe"), network, rabbitmq_url
        )
    )
    subscriber = _mapped(
        write_config(
            tmp_path, "vhs-ka", "vhs Karlsruhe", ("vhs-sr", "VHS SR"), network, rabbitmq_url
        )
    )
    cli("admin-db", "create", "--config", master)
    cli("admin-db", "create", "--config", subscriber)
    columns = inspect(make_engine(f"sqlite:///{tmp_path / 'vhs-sr-admin.db'}")).get_columns("KURS")
    assert "MASTER_VHS" not in {column["name"] for column in columns}
    _insert_course(tmp_path, "vhs-sr", "26-300", None)
    _insert_course(tmp_path, "vhs-ka", "26-300K", "26-300")
    shown = _settings(master, "26-300", "--master", "vhs-sr", "--max-per-school", "1")
    assert (shown["master_school"], shown["max_per_school"]) == ("vhs-sr", 1)
    _settings(subscriber, "26-300K", "--master", "vhs-sr")
    refused = cli(
        "course",
        "settings",
        "26-300K",
        "--config",
        subscriber,
        "--max-per-school",
        "5",
        check=False,
    )
    assert refused.returncode == 2
    assert "change them there" in refused.stderr
    assert "Traceback" not in refused.stderr

    processes = [
        subprocess.Popen([*VHS_SYNC, "run", "--config", str(c)], stdout=subprocess.PIPE, text=True)
        for c in (master, subscriber)
    ]
    try:
        deadline = time.monotonic() + 30
        while _settings(subscriber, "26-300K")["max_per_school"] != 1:
            assert time.monotonic() < deadline, "the master's settings did not arrive"
            time.sleep(0.2)
        decisions = [
            json.loads(
                cli(
                    "desk", "register", "26-300K", "--config", subscriber, "--consent", "--json",
                    "--last-name", f"Person{i}", "--first-name", "Test",
                ).stdout
            )
            for i in (1, 2)
        ]  # fmt: skip
        assert [(d["decision"], d["reason"]) for d in decisions] == [
            ("A", None),
            ("W", "school_limit"),
        ]
        master_admin = make_engine(f"sqlite:///{tmp_path / 'vhs-sr-admin.db'}")
        while _statuses(master_admin) != ["A", "W"]:
            assert time.monotonic() < deadline, "the enrollments did not reach the master"
            time.sleep(0.1)
        listing = json.loads(cli("course", "show", "26-300", "--config", master, "--json").stdout)
        assert (listing["registered"], listing["waitlisted"]) == (1, 1)
        assert {row["name"] for row in listing["rows"]} == {
            "Person1, Test (vhs Karlsruhe)",
            "Person2, Test (vhs Karlsruhe)",
        }
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            process.communicate(timeout=30)
    assert [process.returncode for process in processes] == [0, 0]
