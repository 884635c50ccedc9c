"""What went wrong, for an operator: the errors a setting or a service can cause, each as one
line and an exit code (2: the configuration, 1: a service), never a traceback.

`explain` knows the broker's and the databases' errors; `cli.py` prints what it says. Never a
password (URLs pass through `broker.safe_url` or SQLAlchemy's hiding), never a database
message that could quote a row (only connection, schema and server-state messages are shown).
"""

from __future__ import annotations

import errno
from dataclasses import dataclass

from aiormq.exceptions import (
    AMQPConnectionError,
    AMQPError,
    InvalidFrameError,
    ProbableAuthenticationError,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError, ProgrammingError

from adapter import broker
from adapter.config import ConfigError, Settings
from adapter.store.db import DatabaseUrlError
from adapter.store.migrations import StateSchemaError

__all__ = ["Explained", "explain"]

CONFIG = 2
SERVICE = 1

# A missing table or column: SQLSTATE (PostgreSQL), error numbers (MariaDB), SQLite's words.
_MISSING_SQLSTATES = frozenset({"42P01", "42703", "3F000"})
_MISSING_MYSQL = frozenset({1146, 1054, 1049})
_MISSING_SQLITE = ("no such table", "no such column")


@dataclass(frozen=True, slots=True)
class Explained:
    message: str
    code: int


def explain(error: BaseException, settings: Settings | None) -> Explained | None:
    """One line and an exit code for an error an operator can cause, or None for a bug."""
    if isinstance(error, ConfigError | DatabaseUrlError | broker.BrokerSetupError):
        return Explained(str(error), CONFIG)
    if isinstance(error, StateSchemaError):
        return Explained(str(error), SERVICE)
    if isinstance(error, DBAPIError):
        return _database(error, settings)
    if isinstance(error, OSError) and error.errno in (errno.EADDRINUSE, errno.EACCES):
        # The only socket vhs-sync listens on: the metrics server.
        where = f"{settings.metrics.host}:{settings.metrics.port}" if settings else "its port"
        reason = "the port is in use" if error.errno == errno.EADDRINUSE else "not allowed"
        return Explained(f"cannot serve metrics on {where}: {reason} ([metrics] port)", SERVICE)
    if isinstance(error, AMQPError | ConnectionError | OSError):
        return _broker(error, settings)
    return None


def _broker(error: BaseException, settings: Settings | None) -> Explained:
    url = settings.broker.url if settings is not None else None
    at = f"the broker at {_without_scheme(broker.safe_url(url))}" if url else "the broker"
    if isinstance(error, TimeoutError):
        return Explained(
            f"{at} did not answer within {broker.CONNECT_TIMEOUT:g} s (is [broker] url right?)",
            SERVICE,
        )
    if isinstance(error, ProbableAuthenticationError):
        user = broker.broker_user(url) if url else "?"
        return Explained(
            f"{at} refused the login of user {user!r}: wrong user or password ([broker] url)",
            SERVICE,
        )
    if isinstance(error, InvalidFrameError) and "Connection.Close" in str(error):
        # RabbitMQ closes the connection instead of opening a vhost that is not there, or
        # that the user may not use.
        where = repr(broker.vhost(url)) if url else "the vhost"
        return Explained(
            f"{at} refused to open the vhost {where}: it does not exist or the user may not "
            "use it (provision it with `vhs-sync broker provision`, or fix [broker] url)",
            SERVICE,
        )
    cause = error.__cause__ if isinstance(error, AMQPConnectionError) else None
    reason = _os_reason(cause if isinstance(cause, OSError) else error)
    return Explained(f"cannot reach {at.removeprefix('the ')}: {reason}", SERVICE)


def _os_reason(error: BaseException) -> str:
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    text = str(error).strip()
    if isinstance(error, AMQPConnectionError) and error.args:
        text = str(error.args[-1])
    return text or type(error).__name__


def _without_scheme(url: str) -> str:
    return url.split("://", 1)[-1]


def _database(error: DBAPIError, settings: Settings | None) -> Explained | None:
    url = getattr(error, "database_url", None)
    name = _name_of(url, settings)
    orig = error.orig
    if error.statement is None:  # it failed to connect
        return Explained(f"cannot connect to {name}: {_driver_message(orig)}", SERVICE)
    if _is_missing(orig):
        hint = (
            "run `vhs-sync migrate`"
            if name.startswith("the state DB")
            else "create the reference schema with `vhs-sync admin-db create`, or check the URL"
        )
        return Explained(
            f"{name} lacks what vhs-sync needs ({_driver_message(orig)}): {hint}", SERVICE
        )
    if isinstance(error, OperationalError | InterfaceError | ProgrammingError):
        return Explained(f"{name} failed: {_driver_message(orig)}", SERVICE)
    return None  # a refused write, bad data: the message may quote a row, and it is a bug


def _name_of(url: str | None, settings: Settings | None) -> str:
    shown = make_url(url).render_as_string(hide_password=True) if url else None
    if settings is not None and url is not None:
        if url == settings.admin_db.url:
            return f"the admin DB ({shown})"
        if url == settings.state_db.url:
            return f"the state DB ({shown})"
    return f"the database {shown}" if shown else "a database"


def _driver_message(orig: BaseException | None) -> str:
    if orig is None:
        return "no answer"
    args = orig.args
    text = str(args[1]) if len(args) >= 2 and isinstance(args[0], int) else str(orig)  # pymysql
    first = text.strip().splitlines()[0] if text.strip() else type(orig).__name__
    return first.removeprefix("connection failed: ")[:300]


def _is_missing(orig: BaseException | None) -> bool:
    if orig is None:
        return False
    if getattr(orig, "sqlstate", None) in _MISSING_SQLSTATES:
        return True
    if orig.args and orig.args[0] in _MISSING_MYSQL:
        return True
    return str(orig).startswith(_MISSING_SQLITE)
