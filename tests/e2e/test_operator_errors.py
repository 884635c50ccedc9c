"""What an operator can get wrong ends as one line on stderr and exit 1 or 2, never a
traceback, never the password: real `vhs-sync` processes against the real services."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from tests.services import MARIADB_URL, POSTGRES_URL, require, scratch_database

VHS_SYNC = [sys.executable, "-m", "adapter"]
SECRET = "s3cret-" + uuid.uuid4().hex[:8]


def config(
    folder: Path,
    *,
    broker: str = "amqp://guest:guest@127.0.0.1:5672/",
    admin: str = "sqlite:///admin.db",
    state: str = "sqlite:///state.db",
    extra: str = "",
    state_extra: str = "",
) -> Path:
    path = folder / "school.toml"
    path.write_text(
        f"""
[school]
id = "vhs-ka"
name = "vhs Karlsruhe"

[admin_db]
url = "{admin}"

[state_db]
url = "{state}"
{state_extra}

[broker]
url = "{broker}"
insecure = true
{extra}
""",
        encoding="utf-8",
    )
    return path


def vhs_sync(*args: str | Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*VHS_SYNC, *map(str, args)], capture_output=True, text=True, timeout=timeout, check=False
    )


def one_line(result: subprocess.CompletedProcess[str], code: int, *said: str) -> str:
    """The process ended with `code` and one line on stderr that says each of `said`."""
    assert "Traceback" not in result.stderr
    assert SECRET not in result.stderr + result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert result.returncode == code, result.stderr
    for words in said:
        assert words in lines[0]
    return lines[0]


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def silent_broker() -> Iterator[tuple[int, threading.Event]]:
    """A port that takes connections and never says a word (a mistyped port, a firewall
    that swallows packets); the event is set once a client has connected."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(0.2)
    connected = threading.Event()
    done = threading.Event()
    held: list[socket.socket] = []

    def accept() -> None:
        while not done.is_set():
            try:
                held.append(listener.accept()[0])
                connected.set()
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield int(listener.getsockname()[1]), connected
    done.set()
    thread.join(timeout=5)
    for client in held:
        client.close()
    listener.close()


@pytest.mark.rabbitmq
def test_a_vhost_that_does_not_exist_is_named(tmp_path: Path, rabbitmq_url: str) -> None:
    """`run` against a vhost the broker lacks: exit 1, naming the vhost (the broker refuses
    the connection, nothing is created)."""
    del rabbitmq_url
    vhost = f"vhs-sync-missing-{uuid.uuid4().hex[:8]}"
    path = config(tmp_path, broker=f"amqp://guest:guest@127.0.0.1:5672/{vhost}")
    one_line(vhs_sync("run", "--config", path), 1, f"vhost '{vhost}'", "does not exist")


@pytest.mark.rabbitmq
def test_a_wrong_broker_password_is_named_without_the_password(
    tmp_path: Path, rabbitmq_url: str
) -> None:
    """A refused login: exit 1, naming the user, never the password."""
    del rabbitmq_url
    path = config(tmp_path, broker=f"amqp://guest:{SECRET}@127.0.0.1:5672/")
    one_line(vhs_sync("run", "--config", path), 1, "refused the login of user 'guest'")


@pytest.mark.parametrize("command", [["migrate"], ["course", "show", "26-1"]])
def test_a_state_db_that_cannot_be_reached_is_named(tmp_path: Path, command: list[str]) -> None:
    """A database server that is not there (a closed port): exit 1, naming the state DB and
    its URL without the password; `status` reports it among its problems."""
    url = f"postgresql://vhs:{SECRET}@127.0.0.1:{closed_port()}/state"
    path = config(tmp_path, state=url)
    line = one_line(vhs_sync(*command, "--config", path), 1, "cannot connect to the state DB")
    assert "vhs:***@127.0.0.1" in line
    status = vhs_sync("status", "--config", path, "--json")
    assert status.returncode == 1
    assert "state DB unreachable" in status.stdout
    assert "Traceback" not in status.stderr
    assert SECRET not in status.stdout + status.stderr


@pytest.mark.mariadb
def test_a_wrong_database_password_is_named_without_the_password(tmp_path: Path) -> None:
    """A database that refuses the login: exit 1, naming the admin DB and the server's
    reason, with the password hidden."""
    require("MariaDB", MARIADB_URL)
    server = make_url(MARIADB_URL)
    url = server.set(drivername="mysql", password=SECRET).render_as_string(hide_password=False)
    path = config(tmp_path, admin=url)
    one_line(
        vhs_sync("course", "show", "26-1", "--config", path),
        1,
        "cannot connect to the admin DB",
        "Access denied",
    )


def test_an_admin_db_without_the_schema_is_named(tmp_path: Path) -> None:
    """An empty SQLite file as admin DB: exit 1, saying which table is missing and what to do."""
    (tmp_path / "admin.db").touch()
    path = config(tmp_path)
    one_line(
        vhs_sync("course", "show", "26-1", "--config", path),
        1,
        "the admin DB",
        "no such table",
        "vhs-sync admin-db create",
    )


def test_a_metrics_port_in_use_is_named(tmp_path: Path) -> None:
    """`run` whose metrics port another process holds: exit 1, naming the address."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        path = config(tmp_path, extra=f"[metrics]\nport = {port}\n")
        one_line(vhs_sync("run", "--config", path), 1, f"127.0.0.1:{port}", "in use")


@pytest.mark.parametrize(
    ("field", "url", "said"),
    [
        ("admin", "foo://somewhere/db", "admin_db.url: no database driver for 'foo'"),
        ("broker", f"amqq://ka:{SECRET}@127.0.0.1:5672/", "broker.url: must start with amqp://"),
        ("broker", f"amqp://ka:{SECRET}@127.0.0.1:56720000/", "broker.url: the port must be"),
    ],
)
def test_a_url_that_cannot_work_is_a_config_error(
    tmp_path: Path, field: str, url: str, said: str
) -> None:
    """An unknown database driver or a mistyped broker URL: exit 2 when the config is read,
    naming the field."""
    path = config(tmp_path, **{field: url})
    for command in (["run"], ["status"], ["migrate"]):
        one_line(vhs_sync(*command, "--config", path), 2, said)


@pytest.mark.parametrize("command", ["run", "status"])
def test_ctrl_c_ends_a_command_waiting_for_a_silent_broker(
    tmp_path: Path, silent_broker: tuple[int, threading.Event], command: str
) -> None:
    """A broker URL whose port never answers: Ctrl-C ends `run` and `status` within seconds,
    with one line."""
    port, connected = silent_broker
    path = config(tmp_path, broker=f"amqp://guest:{SECRET}@127.0.0.1:{port}/")
    process = subprocess.Popen(
        [*VHS_SYNC, command, "--config", str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert connected.wait(timeout=60), "the command did not try the broker"
        process.send_signal(signal.SIGINT)
        interrupted = time.monotonic()
        out, err = process.communicate(timeout=5)
    finally:
        process.kill()
    assert time.monotonic() - interrupted < 5
    result = subprocess.CompletedProcess(process.args, process.returncode, out, err)
    one_line(result, 130, "error:")


def test_status_gives_up_on_a_silent_broker(
    tmp_path: Path, silent_broker: tuple[int, threading.Event]
) -> None:
    """`status` against a broker that never answers reports it after the connect timeout
    (exit 1: not healthy) instead of hanging."""
    port, _ = silent_broker
    path = config(tmp_path, broker=f"amqp://guest:{SECRET}@127.0.0.1:{port}/")
    result = vhs_sync("status", "--config", path, "--json", timeout=40)
    assert result.returncode == 1
    assert "no answer within 10 s" in result.stdout
    assert SECRET not in result.stdout + result.stderr


def test_version_prints_the_package_version() -> None:
    """`vhs-sync --version` prints the installed package's version and exits 0."""
    result = vhs_sync("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"vhs-sync {version('vhs-sync')}"


@pytest.mark.postgres
def test_passwords_from_files_are_used_and_never_shown(tmp_path: Path) -> None:
    """A state DB password and a broker password from files: `migrate` uses the first and
    shows its URL without it; `status` and `run` never show either, also when the broker
    refuses the password."""
    require("PostgreSQL", POSTGRES_URL)
    with scratch_database(POSTGRES_URL) as url:
        (tmp_path / "state.password").write_text(SECRET + "\n", encoding="utf-8")
        (tmp_path / "broker.password").write_text(SECRET + "\n", encoding="utf-8")
        state = make_url(url).set(drivername="postgresql", password=None)
        path = config(
            tmp_path,
            broker="amqp://guest@127.0.0.1:5672/",
            state=state.render_as_string(hide_password=False),
            state_extra='password_file = "state.password"',
            extra='password_file = "broker.password"',
        )
        migrated = vhs_sync("migrate", "--config", path)
        assert migrated.returncode == 0, migrated.stderr
        assert "***@" in migrated.stdout
        status = vhs_sync("status", "--config", path, "--json")
        assert status.returncode == 1  # the broker refuses the password from the file
        assert "ProbableAuthenticationError" in status.stdout
        run = vhs_sync("run", "--config", path)
        one_line(run, 1, "refused the login of user 'guest'")
        assert SECRET not in migrated.stdout + status.stdout + status.stderr + run.stdout
