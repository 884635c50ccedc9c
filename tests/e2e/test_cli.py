"""The `vhs-sync` command as operators use it: real processes, real broker, SQLite."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from adapter.desk import Person, add_course, enroll
from adapter.ops.sandbox import remove_network
from adapter.store.db import make_engine
from tests.services import RUN

pytestmark = pytest.mark.rabbitmq

VHS_SYNC = [sys.executable, "-m", "adapter"]


def write_config(
    folder: Path, school: str, name: str, peer: tuple[str, str], network: str, url: str
) -> Path:
    path = folder / f"{school}.toml"
    path.write_text(
        f"""
[school]
id = "{school}"
name = "{name}"

[admin_db]
url = "sqlite:///{school}-admin.db"

[state_db]
url = "sqlite:///{school}-state.db"

[broker]
url = "{url}"
network = "{network}"

[capture]
poll_interval = 0.05

[[schools]]
id = "{peer[0]}"
name = "{peer[1]}"
""",
        encoding="utf-8",
    )
    return path


def cli(*args: str | Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [*VHS_SYNC, *map(str, args)], capture_output=True, text=True, timeout=60, check=False
    )
    if check:
        assert result.returncode == 0, result.stderr
    return result


@pytest.fixture
def network(rabbitmq_url: str) -> Iterator[str]:
    """A network of the test's own, removed from the broker afterwards."""
    name = f"vhs-sync-cli-{RUN}-{uuid.uuid4().hex[:8]}"
    yield name
    asyncio.run(remove_network(rabbitmq_url, name, ["vhs-sr", "vhs-ka"]))


def test_a_bad_config_exits_with_a_readable_message(tmp_path: Path) -> None:
    """A config with a wrong field names the field and exits 2, without a traceback."""
    config = tmp_path / "school.toml"
    config.write_text('[school]\nid = "Not An Id!"\nname = "x"\n', encoding="utf-8")
    result = cli("run", "--config", config, check=False)
    assert result.returncode == 2
    assert "school.id" in result.stderr
    assert "admin_db" in result.stderr
    assert "Traceback" not in result.stderr
    missing = cli("run", "--config", tmp_path / "nowhere.toml", check=False)
    assert missing.returncode == 2
    assert "does not exist" in missing.stderr


def test_two_daemons_sync_and_stop_cleanly_on_sigterm(
    tmp_path: Path, rabbitmq_url: str, network: str
) -> None:
    """`vhs-sync run` as two processes: an enrollment reaches the master, logs are JSON lines,
    SIGTERM ends each daemon with exit code 0."""
    master = write_config(
        tmp_path, "vhs-sr", "VHS SR", ("vhs-ka", "vhs Karlsruhe"), network, rabbitmq_url
    )
    subscriber = write_config(
        tmp_path, "vhs-ka", "vhs Karlsruhe", ("vhs-sr", "VHS SR"), network, rabbitmq_url
    )
    for config, number in ((master, "26-100"), (subscriber, "26-100K")):
        cli("admin-db", "create", "--config", config)
        engine = make_engine(f"sqlite:///{tmp_path / (config.stem + '-admin.db')}")
        with engine.begin() as connection:
            add_course(
                connection,
                number,
                max_participants=8,
                master_school="vhs-sr",
                master_number="26-100",
            )

    processes = [
        subprocess.Popen([*VHS_SYNC, "run", "--config", str(c)], stdout=subprocess.PIPE, text=True)
        for c in (master, subscriber)
    ]
    try:
        with make_engine(f"sqlite:///{tmp_path / 'vhs-ka-admin.db'}").begin() as connection:
            enroll(connection, "26-100K", Person("Nowak", "Jan", main_email="jan@example.org"))
        deadline = time.monotonic() + 30
        while True:
            shown = json.loads(cli("course", "show", "26-100", "--config", master, "--json").stdout)
            if shown["registered"] == 1:
                break
            assert time.monotonic() < deadline, "the enrollment did not reach the master"
            time.sleep(0.2)
        assert shown["rows"][0]["name"] == "Nowak, Jan (vhs Karlsruhe)"
        assert (shown["free"], shown["max"]) == (7, 8)
        status = json.loads(cli("status", "--config", master, "--json").stdout)
        assert status["healthy"] is True
        assert status["applied_enrollments"] == 1
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        outputs = [process.communicate(timeout=30)[0] for process in processes]
    assert [process.returncode for process in processes] == [0, 0]
    events = [json.loads(line) for line in outputs[0].splitlines() if line.strip()]
    names = [event["event"] for event in events]
    assert "enrollment.applied" in names
    assert names[-1] == "adapter.stopped"
    assert "Nowak" not in outputs[0] + outputs[1]
