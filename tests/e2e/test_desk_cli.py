"""`vhs-sync desk ...` as an admin runs it: real processes on a SQLite school, no broker."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import update

from adapter.desk import add_course
from adapter.store import admin
from adapter.store.db import make_engine

VHS_SYNC = [sys.executable, "-m", "adapter"]
COURSE = "26-64901B"


def cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*VHS_SYNC, *map(str, args)], capture_output=True, text=True, timeout=60, check=False
    )


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """A school on SQLite with one shared course of two places and a waitlist of one."""
    path = tmp_path / "vhs-sr.toml"
    path.write_text(
        """
[school]
id = "vhs-sr"
name = "VHS SR"

[admin_db]
url = "sqlite:///vhs-sr-admin.db"

[state_db]
url = "sqlite:///vhs-sr-state.db"
""",
        encoding="utf-8",
    )
    created = cli("admin-db", "create", "--config", path)
    assert created.returncode == 0, created.stderr
    engine = make_engine(f"sqlite:///{tmp_path / 'vhs-sr-admin.db'}")
    with engine.begin() as connection:
        add_course(connection, COURSE, max_participants=2, master_school="vhs-sr")
        connection.execute(
            update(admin.courses).where(admin.courses.c.number == COURSE).values(waitlist_max=1)
        )
    engine.dispose()
    return path


def register(config: Path, last: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return cli(
        "desk", "register", COURSE, "--config", config, "--last-name", last,
        "--first-name", "Eva", "--birthday", "1990-05-01", "--email", f"{last}@example.org",
        *extra,
    )  # fmt: skip


def test_desk_register_answers_a_w_and_refusals(config: Path) -> None:
    """register prints A, then W with its reason, then a refusal with exit 1 and no traceback."""
    first = register(config, "Adler", "--consent")
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("A: regular place")
    assert register(config, "Bauer", "--consent").returncode == 0
    waiting = register(config, "Conrad", "--consent")
    assert waiting.returncode == 0, waiting.stderr
    assert waiting.stdout.startswith("W: waitlist (full")
    full = register(config, "Dorn", "--consent")
    assert full.returncode == 1
    assert "refused (waitlist_full)" in full.stderr
    assert "Traceback" not in full.stderr
    no_consent = register(config, "Engel")
    assert no_consent.returncode == 1
    assert "privacy" in no_consent.stderr


def test_desk_register_json_and_returning_person(config: Path) -> None:
    """--json gives the decision and numbers; the same person again is refused readably."""
    first = register(config, "Adler", "--consent", "--json")
    assert first.returncode == 0, first.stderr
    body = json.loads(first.stdout)
    assert body["decision"] == "A"
    assert body["reason"] is None
    assert body["returning"] is False
    again = register(config, "Adler", "--consent")
    assert again.returncode == 1
    assert "already holds enrollment" in again.stderr
    assert "Traceback" not in again.stderr
    cancelled = cli("desk", "cancel", str(body["enrollment_id"]), "--config", config)
    assert cancelled.returncode == 0, cancelled.stderr
    back = json.loads(register(config, "Adler", "--consent", "--json").stdout)
    assert back["returning"] is True
    assert back["participant_number"] == body["participant_number"]


def test_desk_promote_block_and_errors(config: Path) -> None:
    """to-waitlist, promote and block work by id; an unknown id exits 1 with a message."""
    body = json.loads(register(config, "Adler", "--consent", "--json").stdout)
    enrollment = str(body["enrollment_id"])
    moved = cli("desk", "to-waitlist", enrollment, "--config", config)
    assert moved.returncode == 0, moved.stderr
    promoted = cli("desk", "promote", enrollment, "--config", config)
    assert promoted.returncode == 0, promoted.stderr
    assert "promoted to a regular place" in promoted.stdout
    blocked = cli("desk", "block", str(body["participant_number"]), "--config", config)
    assert blocked.returncode == 0, blocked.stderr
    unknown = cli("desk", "promote", "999", "--config", config)
    assert unknown.returncode == 1
    assert "enrollment 999" in unknown.stderr
    assert "Traceback" not in unknown.stderr
