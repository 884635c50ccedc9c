"""The `vhs-sync` command as operators use it: real processes, real broker, SQLite."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
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
    folder: Path,
    school: str,
    name: str,
    peer: tuple[str, str],
    network: str,
    url: str,
    *,
    insecure: bool = True,
    peer_user: str | None = None,
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
insecure = {str(insecure).lower()}

[capture]
poll_interval = 0.05

[[schools]]
id = "{peer[0]}"
name = "{peer[1]}"
{f'broker_user = "{peer_user}"' if peer_user else ""}
""",
        encoding="utf-8",
    )
    return path


def cli(
    *args: str | Path, check: bool = True, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [*VHS_SYNC, *map(str, args)], capture_output=True, text=True, timeout=timeout, check=False
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


def test_a_sql_server_url_without_its_driver_says_what_to_install() -> None:
    """An admin DB on SQL Server through a driver that is not installed: one line naming the
    extra to install, exit 2, no traceback, no password."""
    result = cli("admin-db", "create", "--url", "mssql+pyodbc://sa:secret@kufer/KUFER", check=False)
    assert result.returncode == 2
    assert "install vhs-sync[mssql]" in result.stderr
    assert "Traceback" not in result.stderr
    assert "secret" not in result.stderr


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
    applied = [event for event in events if event["event"] == "apply.batch"]
    assert sum(event["applied"] for event in applied) >= 1
    assert names[-1] == "adapter.stopped"
    assert "Nowak" not in outputs[0] + outputs[1]


@pytest.mark.parametrize(
    ("url", "peer_user", "said"),
    [
        ("amqp://ka:secret@127.0.0.1:5672/", None, "schools without broker_user: vhs-sr"),
        ("amqp://guest:guest@127.0.0.1:5672/", "sr", "as guest"),
        ("amqp://ka:secret@127.0.0.1:5672/", "ka", "shared by two schools: ka"),
    ],
)
def test_the_daemon_refuses_to_start_unless_each_school_has_its_own_broker_user(
    tmp_path: Path, network: str, url: str, peer_user: str | None, said: str
) -> None:
    """Without `insecure`, a peer without broker user, this school as guest, or one user for
    two schools stops `vhs-sync run` with one readable line and exit code 2."""
    config = write_config(
        tmp_path,
        "vhs-ka",
        "vhs Karlsruhe",
        ("vhs-sr", "VHS SR"),
        network,
        url,
        insecure=False,
        peer_user=peer_user,
    )
    result = cli("run", "--config", config, check=False, timeout=20)
    assert result.returncode == 2
    assert said in result.stderr
    assert "insecure" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr


def test_run_insecure_starts_without_broker_users(
    tmp_path: Path, rabbitmq_url: str, network: str
) -> None:
    """`vhs-sync run --insecure` starts as guest with peers without broker users, and stops
    with exit code 0 on SIGTERM."""
    config = write_config(
        tmp_path,
        "vhs-ka",
        "vhs Karlsruhe",
        ("vhs-sr", "VHS SR"),
        network,
        rabbitmq_url,
        insecure=False,
    )
    cli("admin-db", "create", "--config", config)
    process = subprocess.Popen(
        [*VHS_SYNC, "run", "--insecure", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        first = json.loads(next(line for line in process.stdout if line.strip()))
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
        asyncio.run(remove_network(rabbitmq_url, network, ["vhs-ka"]))
    assert first["event"] in ("course.joined", "adapter.started"), first
    assert process.returncode == 0, stderr


def provisioning_config(folder: Path) -> Path:
    """vhs-ka's config naming its own user `ka` and vhs-sr's `sr`, as provisioning reads it."""
    return write_config(
        folder,
        "vhs-ka",
        "vhs Karlsruhe",
        ("vhs-sr", "VHS SR"),
        "vhskoob",
        "amqp://ka@broker.example:5672/vhskoob",
        insecure=False,
        peer_user="sr",
    )


def test_provision_writes_definitions_and_private_password_files(tmp_path: Path) -> None:
    """`vhs-sync broker provision` writes a user per school whose password hash matches its
    password file (mode 0600), prints no password, and keeps the passwords when run again."""
    config = provisioning_config(tmp_path)
    out, folder = tmp_path / "definitions.json", tmp_path / "secrets"
    first = cli("broker", "provision", "--config", config, "--out", out, "--secrets-dir", folder)
    passwords = {s: (folder / f"{s}.password").read_text().strip() for s in ("vhs-ka", "vhs-sr")}
    assert {(folder / f"{s}.password").stat().st_mode & 0o777 for s in passwords} == {0o600}
    assert out.stat().st_mode & 0o777 == 0o600
    definitions = json.loads(out.read_text())
    hashes = {
        user["name"]: base64.b64decode(user["password_hash"]) for user in definitions["users"]
    }
    for school, user in (("vhs-ka", "ka"), ("vhs-sr", "sr")):
        salt, digest = hashes[user][:4], hashes[user][4:]
        assert hashlib.sha256(salt + passwords[school].encode()).digest() == digest
        assert passwords[school] not in first.stdout + first.stderr + out.read_text()
    assert {p["user"] for p in definitions["topic_permissions"]} == {"ka", "sr"}
    assert {v["name"] for v in definitions["vhosts"]} == {"vhskoob"}
    cli("broker", "provision", "--config", config, "--out", out, "--secrets-dir", folder)
    assert (folder / "vhs-ka.password").read_text().strip() == passwords["vhs-ka"]


def test_provision_apply_loads_the_definitions_into_the_node_named(tmp_path: Path) -> None:
    """`broker provision --apply --node NODE` runs `rabbitmqctl -n NODE import_definitions`
    with the definitions on standard input (a stand-in rabbitmqctl first on PATH records the
    call, so no broker is touched); `--node` without `--apply` is refused."""
    config = provisioning_config(tmp_path)
    bin_dir, calls = tmp_path / "bin", tmp_path / "calls"
    bin_dir.mkdir()
    fake = bin_dir / "rabbitmqctl"
    fake.write_text(f"#!/bin/sh\nprintf '%s\\n' \"$@\" > {calls}.args\ncat > {calls}.stdin\n")
    fake.chmod(0o755)
    out = tmp_path / "definitions.json"
    node = f"vhs-{uuid.uuid4().hex[:8]}@elsewhere"
    command = [*VHS_SYNC, "broker", "provision", "--config", str(config), "--out", str(out)]
    environment = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(
        [*command, "--apply", "--node", node],
        capture_output=True,
        text=True,
        timeout=60,
        env=environment,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert Path(f"{calls}.args").read_text().split() == [
        "-n",
        node,
        "import_definitions",
        "--format",
        "json",
    ]
    assert json.loads(Path(f"{calls}.stdin").read_text()) == json.loads(out.read_text())
    assert f"loaded into node {node}" in result.stdout
    refused = cli(*command[3:], "--node", node, check=False)
    assert refused.returncode == 2
    assert "add --apply" in refused.stderr
