"""Health that tells the truth: `vhs-sync status` and `/readyz` of a real `vhs-sync run`.

The admin DB is a PostgreSQL database of the test's own, which can be taken down and brought
back (`ALLOW_CONNECTIONS`), and whose enrollments table can be renamed away (polls fail,
while the admin DB itself answers); the state DB is SQLite; the broker the machine's.
"""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aio_pika
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from adapter.ops.sandbox import remove_network
from tests.e2e.test_cli import VHS_SYNC, cli
from tests.services import POSTGRES_URL, RUN, require, scratch_database

pytestmark = [pytest.mark.rabbitmq, pytest.mark.postgres]

SCHOOL = "vhs-ka"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def readyz(port: int) -> tuple[int | None, dict[str, Any]]:
    """(HTTP status, body) of `/readyz`; (None, {}) when nothing answers."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())
    except OSError:
        return None, {}


def wait_ready(port: int, ready: bool, failing: str | None = None) -> dict[str, Any]:
    """Wait until `/readyz` says `ready` (and, if given, names `failing`); its body."""
    deadline = time.monotonic() + 20
    while True:
        code, body = readyz(port)
        if (code == 200) == ready and (failing is None or failing in body.get("failing", {})):
            return body
        assert time.monotonic() < deadline, f"/readyz stayed at {code} {body}"
        time.sleep(0.1)


def status(config: Path) -> tuple[int, dict[str, Any]]:
    result = cli("status", "--config", config, "--json", check=False)
    assert result.returncode in (0, 1), result.stderr
    return result.returncode, json.loads(result.stdout)


def assert_unhealthy(config: Path, said: str) -> None:
    code, shown = status(config)
    assert (code, shown["healthy"]) == (1, False), shown
    assert any(said in problem for problem in shown["problems"]), shown["problems"]


def assert_healthy(config: Path) -> None:
    code, shown = status(config)
    assert (code, shown["healthy"], shown["problems"]) == (0, True, []), shown


@pytest.fixture
def admin_db() -> Iterator[str]:
    require("PostgreSQL", POSTGRES_URL)
    with scratch_database(POSTGRES_URL) as url:
        yield url


@pytest.fixture
def network(rabbitmq_url: str) -> Iterator[str]:
    name = f"vhs-sync-health-{RUN}-{uuid.uuid4().hex[:8]}"
    yield name
    asyncio.run(remove_network(rabbitmq_url, name, [SCHOOL]))


def write_config(folder: Path, admin_url: str, network: str, url: str, port: int) -> Path:
    path = folder / f"{SCHOOL}.toml"
    path.write_text(
        f"""
[school]
id = "{SCHOOL}"
name = "vhs Karlsruhe"

[admin_db]
url = "{admin_url}"

[state_db]
url = "sqlite:///{SCHOOL}-state.db"

[broker]
url = "{url}"
network = "{network}"
insecure = true

[capture]
poll_interval = 0.05

[metrics]
port = {port}

[health]
max_poll_age = 2
heartbeat_timeout = 3
interval = 0.3

[[schools]]
id = "vhs-sr"
name = "VHS SR"
""",
        encoding="utf-8",
    )
    return path


async def put_dead_letter(url: str, queue: str) -> None:
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        await channel.default_exchange.publish(aio_pika.Message(b"not json"), routing_key=queue)


def test_status_and_readyz_turn_unhealthy_in_each_case_and_healthy_again(
    tmp_path: Path, admin_db: str, rabbitmq_url: str, network: str
) -> None:
    """Daemon not running, admin DB down, letters in the DLQ, no successful poll within
    max_poll_age: each makes `status` exit 1 naming it and `/readyz` answer 503 naming it
    (or not answer at all), and each, once mended, makes both healthy again. A second daemon
    of the school refuses to start while the first runs; one killed is not running at once,
    and a daemon started after it takes its school at once."""
    port = free_port()
    config = write_config(tmp_path, admin_db, network, rabbitmq_url, port)
    cli("admin-db", "create", "--config", config)
    server = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    admin = create_engine(admin_db, isolation_level="AUTOCOMMIT")
    database = make_url(admin_db).database

    def allow_connections(allowed: bool) -> None:
        with server.connect() as connection:
            connection.execute(
                text(f"ALTER DATABASE {database} WITH ALLOW_CONNECTIONS {str(allowed).lower()}")
            )
            if not allowed:
                connection.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :d"
                    ),
                    {"d": database},
                )

    assert_unhealthy(config, "daemon not running")
    assert readyz(port) == (None, {})

    def start() -> subprocess.Popen[str]:
        return subprocess.Popen(
            [*VHS_SYNC, "run", "--config", str(config)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    daemon = start()
    try:
        wait_ready(port, True)
        assert_healthy(config)

        second = cli("run", "--config", config, check=False, timeout=30)
        assert second.returncode == 1
        assert f"another daemon of school {SCHOOL} is running" in second.stderr
        assert len(second.stderr.strip().splitlines()) == 1, second.stderr

        allow_connections(False)
        try:
            wait_ready(port, False, "admin_db")
            assert_unhealthy(config, "admin DB unreachable")
        finally:
            allow_connections(True)
        wait_ready(port, True)
        assert_healthy(config)

        asyncio.run(put_dead_letter(rabbitmq_url, f"{network}.{SCHOOL}.dlq"))
        body = wait_ready(port, False, "dead_letters")
        assert "1 dead letter" in body["failing"]["dead_letters"]
        assert_unhealthy(config, "1 dead letter(s) in the DLQ")
        cli("dlq", "purge", "--yes", "--config", config)
        wait_ready(port, True)
        assert_healthy(config)

        with admin.connect() as connection:
            connection.execute(text('ALTER TABLE "BELEGUNG" RENAME TO "BELEGUNG_AWAY"'))
        try:
            body = wait_ready(port, False, "last_poll")
            assert "admin_db" not in body["failing"], body
            assert_unhealthy(config, "last successful poll")
        finally:
            with admin.connect() as connection:
                connection.execute(text('ALTER TABLE "BELEGUNG_AWAY" RENAME TO "BELEGUNG"'))
        wait_ready(port, True)
        assert_healthy(config)

        daemon.kill()  # no clean stop: its heartbeat row still names it
        daemon.communicate(timeout=30)
        assert_unhealthy(config, "daemon not running: last heartbeat")
        daemon = start()
        wait_ready(port, True)  # the killed daemon's school is taken at once, on this host
    finally:
        daemon.send_signal(signal.SIGTERM)
        stdout, stderr = daemon.communicate(timeout=30)
        admin.dispose()
        server.dispose()
    assert daemon.returncode == 0, stderr
    assert "daemon.taken_over" in stdout
    assert readyz(port) == (None, {})
    assert_unhealthy(config, "daemon not running: stopped")
