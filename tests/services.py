"""Reaching the real services: RabbitMQ, PostgreSQL and MariaDB on this machine.

Where a service is missing a test is skipped with its reason, except in CI (`CI=true`),
where a missing service is a failure.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

import pytest
from sqlalchemy import create_engine, text

RABBITMQ_URL = os.environ.get("VHS_SYNC_TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/")
POSTGRES_URL = os.environ.get(
    "VHS_SYNC_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
MARIADB_URL = os.environ.get(
    "VHS_SYNC_TEST_MARIADB_URL", "mysql+pymysql://root@127.0.0.1:3306/test"
)

# In the name of every network a test of this run declares on the shared broker, so that what
# a run leaves behind is told apart from what other runs on the same broker have declared.
RUN = uuid.uuid4().hex[:6]


def reachable(url: str) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 0), timeout=2):
            return True
    except OSError:
        return False


def require(name: str, url: str) -> None:
    """Skip (or, in CI, fail) when a service does not answer."""
    if reachable(url):
        return
    _missing(f"{name} is not reachable at {urlsplit(url).netloc.split('@')[-1]}")


def require_rabbitmqctl() -> None:
    """Skip (or, in CI, fail) where `rabbitmqctl` cannot set up the broker: the tests of
    per-school users and permissions make their vhosts and users with it."""
    if shutil.which("rabbitmqctl") is None:
        _missing("rabbitmqctl is not installed, so no broker users can be made")


def _missing(message: str) -> None:
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{message}; CI needs every service", pytrace=False)
    pytest.skip(message)


def leftovers_on_the_broker(url: str, mark: str) -> set[str] | None:
    """The exchanges and queues on the broker at `url` whose names contain `mark`; None when
    they cannot be listed (`rabbitmqctl` lists the local broker only, and needs its rights)."""
    host = urlsplit(url).hostname
    if host not in ("127.0.0.1", "localhost") or shutil.which("rabbitmqctl") is None:
        return None
    names: set[str] = set()
    for what in ("list_queues", "list_exchanges"):
        try:
            listed = subprocess.run(
                ["rabbitmqctl", what, "name", "--quiet", "--no-table-headers"],
                capture_output=True,
                text=True,
                timeout=120,
                check=True,
            )
        except (OSError, subprocess.SubprocessError):
            return None
        names.update(name for name in listed.stdout.split() if mark in name)
    return names


@contextmanager
def scratch_database(server_url: str) -> Iterator[str]:
    """A database of its own for one test, dropped afterwards."""
    name = f"vhs_test_{uuid.uuid4().hex[:12]}"
    engine = create_engine(server_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text(f"CREATE DATABASE {name}"))
    url = engine.url.set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        with engine.connect() as connection:
            if engine.dialect.name == "postgresql":
                connection.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            else:
                connection.execute(text(f"DROP DATABASE IF EXISTS {name}"))
        engine.dispose()
