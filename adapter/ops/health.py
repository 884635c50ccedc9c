"""Health over HTTP: `/metrics` for Prometheus, `/healthz` and `/readyz` for orchestrators.

The checks read what the daemon already knows (`Health`, fed by its loops: the broker
connection, the consumer, the last successful poll, the database pings and queue samples of
its health loop), so a request never waits for a database or the broker.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from socketserver import ThreadingMixIn
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import make_wsgi_app
from sqlalchemy import Engine, select

from adapter.store import admin

if TYPE_CHECKING:
    from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

# Before the first check has run, a check fails with this.
NOT_YET = "not checked yet"


def poll_problem(
    last_poll_at: datetime | None, since: datetime, now: datetime, max_age: float
) -> str | None:
    """Why the polls are not keeping up, or None: no successful poll within `max_age`
    seconds (counted from `since`, the daemon's start, before the first one)."""
    age = (now - (last_poll_at or since)).total_seconds()
    if age <= max_age:
        return None
    if last_poll_at is None:
        return f"no successful poll in the {age:.0f} s since the start (max_poll_age {max_age:g})"
    return f"last successful poll {age:.0f} s ago (max_poll_age {max_age:g})"


def ping_admin_db(engine: Engine) -> None:
    """One cheap read of the admin DB's courses table; raises when it cannot be read."""
    with engine.connect() as connection:
        connection.execute(select(admin.courses.c.number).limit(1)).all()


@dataclass(slots=True)
class Health:
    """What the daemon knows of itself. Written by its event loop, read by the HTTP threads
    (each field is replaced whole, never changed in place)."""

    max_poll_age: float
    started_at: datetime
    # A loop that has not ticked for this many seconds is stuck: the process is not alive.
    stuck_after: float = 30.0
    broker_connected: Callable[[], bool] = lambda: False
    consuming: Callable[[], bool] = lambda: False
    last_poll_at: datetime | None = None
    last_poll_error: str | None = None
    admin_db_error: str | None = NOT_YET
    state_db_error: str | None = NOT_YET
    broker_error: str | None = NOT_YET
    dead_letters: int | None = None
    queue_messages: int | None = None
    ticked: float = field(default_factory=time.monotonic)

    def tick(self) -> None:
        self.ticked = time.monotonic()

    def alive(self) -> bool:
        """The daemon's health loop ran lately: its event loop is not stuck."""
        return time.monotonic() - self.ticked <= self.stuck_after

    def failing(self, now: datetime) -> dict[str, str]:
        """Each failing readiness check with the reason."""
        checks: dict[str, str | None] = {
            "alive": None if self.alive() else "the daemon's loops have not run lately",
            "broker": None if self.broker_connected() else "not connected to the broker",
            "consumer": None if self.consuming() else "not consuming the school's queue",
            "admin_db": self.admin_db_error,
            "state_db": self.state_db_error,
            "last_poll": poll_problem(self.last_poll_at, self.started_at, now, self.max_poll_age),
            "dead_letters": (
                self.broker_error
                if self.dead_letters is None
                else f"{self.dead_letters} dead letter(s) in the DLQ: see `vhs-sync dlq list`"
                if self.dead_letters
                else None
            ),
        }
        return {name: reason for name, reason in checks.items() if reason is not None}


def _json(start_response: StartResponse, status: str, body: dict[str, Any]) -> list[bytes]:
    payload = json.dumps(body).encode()
    start_response(
        status, [("Content-Type", "application/json"), ("Content-Length", str(len(payload)))]
    )
    return [payload]


def application(health: Health, clock: Callable[[], datetime]) -> WSGIApplication:
    """`/metrics`, `/healthz` (200 while the process lives, 503 when its loops are stuck),
    `/readyz` (200 when every check passes, else 503 with the failing checks as JSON)."""
    metrics = make_wsgi_app()

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO") or "/"
        if path == "/metrics":
            scraped: Iterable[bytes] = metrics(environ, start_response)
            return scraped
        if path == "/healthz":
            alive = health.alive()
            return _json(
                start_response, "200 OK" if alive else "503 Service Unavailable", {"alive": alive}
            )
        if path == "/readyz":
            failing = health.failing(clock())
            status = "503 Service Unavailable" if failing else "200 OK"
            return _json(start_response, status, {"ready": not failing, "failing": failing})
        return _json(start_response, "404 Not Found", {"error": f"no such path: {path}"})

    return app


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """No access log: a scrape every few seconds is not news."""


class ServeError(Exception):
    """The port for metrics and health cannot be served."""


def serve(host: str, port: int, health: Health, clock: Callable[[], datetime]) -> WSGIServer:
    """Serve `application` on a thread of its own, until `shutdown()`."""
    try:
        server = make_server(
            host,
            port,
            application(health, clock),
            server_class=_Server,
            handler_class=_QuietHandler,
        )
    except OSError as error:
        raise ServeError(f"cannot serve metrics and health on {host}:{port}: {error}") from error
    threading.Thread(target=server.serve_forever, name="http", daemon=True).start()
    return server
