"""Health over HTTP, the metric label sets and systemd's notifications, without I/O beyond
a local socket."""

from __future__ import annotations

import ast
import json
import socket
import typing
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from wsgiref.util import setup_testing_defaults

import pytest
from prometheus_client import REGISTRY

from adapter import messages
from adapter.ops import metrics, systemd
from adapter.ops.health import Health, application, poll_problem

NOW = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
ADAPTER = Path(__file__).resolve().parents[2] / "adapter"


def healthy() -> Health:
    return Health(
        max_poll_age=60,
        started_at=NOW - timedelta(minutes=5),
        broker_connected=lambda: True,
        consuming=lambda: True,
        last_poll_at=NOW - timedelta(seconds=1),
        admin_db_error=None,
        state_db_error=None,
        broker_error=None,
        dead_letters=0,
        queue_messages=0,
    )


def get(health: Health, path: str) -> tuple[str, dict[str, str], bytes]:
    environ: dict[str, Any] = {"PATH_INFO": path}
    setup_testing_defaults(environ)
    answer: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], *_: Any) -> Any:
        answer.update(status=status, headers=dict(headers))

    body: Iterable[bytes] = application(health, lambda: NOW)(environ, start_response)
    return answer["status"], answer["headers"], b"".join(body)


def test_readyz_is_200_when_every_check_passes_and_503_naming_the_failing_ones() -> None:
    """`/readyz` answers 200 with no failing checks, and 503 with a JSON body naming each
    failing check and why: admin DB, letters in the DLQ, an old poll, no broker."""
    status, headers, body = get(healthy(), "/readyz")
    assert (status, json.loads(body)) == ("200 OK", {"ready": True, "failing": {}})
    assert headers["Content-Type"] == "application/json"
    sick = healthy()
    sick.admin_db_error = "OperationalError (psycopg.OperationalError, sqlstate 08006)"
    sick.dead_letters = 3
    sick.last_poll_at = NOW - timedelta(seconds=61)
    sick.broker_connected = lambda: False
    status, _, body = get(sick, "/readyz")
    assert status == "503 Service Unavailable"
    failing = json.loads(body)["failing"]
    assert failing == {
        "broker": "not connected to the broker",
        "admin_db": "OperationalError (psycopg.OperationalError, sqlstate 08006)",
        "last_poll": "last successful poll 61 s ago (max_poll_age 60)",
        "dead_letters": "3 dead letter(s) in the DLQ: see `vhs-sync dlq list`",
    }


def test_before_its_first_checks_a_daemon_is_not_ready() -> None:
    """A daemon whose checks have not run yet is not ready: nothing is assumed healthy."""
    fresh = Health(max_poll_age=60, started_at=NOW)
    status, _, body = get(fresh, "/readyz")
    assert status == "503 Service Unavailable"
    assert set(json.loads(body)["failing"]) == {
        "broker",
        "consumer",
        "admin_db",
        "state_db",
        "dead_letters",
    }


def test_healthz_is_200_while_the_loops_run_and_503_when_they_are_stuck() -> None:
    """`/healthz` says the process lives; a daemon whose health loop has not ticked for
    longer than `stuck_after` is not alive (its event loop is stuck)."""
    health = healthy()
    assert get(health, "/healthz")[0] == "200 OK"
    health.ticked -= health.stuck_after + 1
    status, _, body = get(health, "/healthz")
    assert (status, json.loads(body)) == ("503 Service Unavailable", {"alive": False})


def test_metrics_are_served_at_metrics_only() -> None:
    """`/metrics` is the Prometheus text with the build info; another path is 404."""
    status, _, body = get(healthy(), "/metrics")
    assert status == "200 OK"
    assert 'vhs_sync_build_info{version="' in body.decode()
    assert get(healthy(), "/")[0] == "404 Not Found"


def test_poll_problem_counts_from_the_start_until_the_first_poll() -> None:
    """Before the first successful poll the age counts from the daemon's start."""
    assert poll_problem(None, NOW - timedelta(seconds=5), NOW, 60) is None
    assert poll_problem(None, NOW - timedelta(seconds=61), NOW, 60) == (
        "no successful poll in the 61 s since the start (max_poll_age 60)"
    )


def test_every_labelled_series_of_a_school_exists_from_the_start() -> None:
    """After `start_series`, each counter has a series for each value of its label set, at
    zero, so that `rate()` and `increase()` see them before the first increment."""
    metrics.start_series("vhs-series")
    for name, label, values in (
        ("vhs_sync_events_received_total", "result", metrics.RECEIVED_RESULTS),
        ("vhs_sync_control_messages_total", "type", metrics.CONTROL_TYPES),
        ("vhs_sync_messages_dead_lettered_total", "reason", metrics.DEAD_LETTER_REASONS),
        ("vhs_sync_publish_failures_total", "reason", metrics.PUBLISH_FAILURE_REASONS),
    ):
        for value in values:
            sample = REGISTRY.get_sample_value(name, {"school": "vhs-series", label: value})
            assert sample == 0, (name, value)
    assert REGISTRY.get_sample_value("vhs_sync_dlq_depth", {"school": "vhs-series"}) == 0


def test_the_control_types_are_the_events_besides_enrollment_changes() -> None:
    """The `type` label's values are exactly the other kinds of event."""
    events = {kind.__name__ for kind in typing.get_args(messages.AnyEvent)}
    assert set(metrics.CONTROL_TYPES) == events - {"EnrollmentChanged"}


def _dead_letter_reasons_in_the_code() -> set[str]:
    """Reasons the code gives: `InvalidMessageError("...")`, `reason = "..."` of the rejection
    classes, and `dead_letter(message, "...", ...)`."""
    found: set[str] = set()
    for path in ADAPTER.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call):
                name = getattr(node.func, "attr", getattr(node.func, "id", ""))
                position = {"InvalidMessageError": 0, "dead_letter": 1}.get(name)
                if position is not None and len(node.args) > position:
                    argument = node.args[position]
                    if isinstance(argument, ast.Constant) and isinstance(argument.value, str):
                        found.add(argument.value)
            elif isinstance(node, ast.ClassDef) and node.name.endswith("Error"):
                for statement in node.body:
                    if (
                        isinstance(statement, ast.Assign)
                        and [getattr(t, "id", None) for t in statement.targets] == ["reason"]
                        and isinstance(statement.value, ast.Constant)
                    ):
                        found.add(statement.value.value)
    return found


def test_every_dead_letter_reason_of_the_code_has_its_label_value() -> None:
    """No reason the code dead-letters with falls into `other` unnoticed."""
    reasons = _dead_letter_reasons_in_the_code()
    assert len(reasons) > 10
    assert reasons <= set(metrics.DEAD_LETTER_REASONS), reasons - set(metrics.DEAD_LETTER_REASONS)
    assert metrics.known("something_new", metrics.DEAD_LETTER_REASONS) == "other"


def test_notify_sends_one_datagram_to_the_notify_socket(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With `NOTIFY_SOCKET` set (run by systemd), `notify` sends the message to it;
    without, it sends nothing."""
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert systemd.notify("READY=1") is False
    address = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind(address)
        monkeypatch.setenv("NOTIFY_SOCKET", address)
        assert systemd.notify("READY=1") is True
        assert listener.recv(100) == b"READY=1"
