"""Engines and the few statements every backend needs in the same form."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    Label,
    Table,
    create_engine,
    event,
    insert,
    update,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, OperationalError, ProgrammingError

from adapter.store import admin, state


class DatabaseUrlError(ValueError):
    """A database URL that SQLAlchemy cannot use."""


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets the admin product read while the adapter writes; the timeout waits out a writer.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def make_engine(url: str) -> Engine:
    """An engine for any SQLAlchemy URL; plain `postgresql://` and `mysql://` pick the drivers
    this package installs."""
    try:
        parsed = make_url(url)
    except ArgumentError as error:
        raise DatabaseUrlError(f"not a database URL: {url!r}") from error
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    elif parsed.drivername in ("mysql", "mariadb"):
        parsed = parsed.set(drivername=f"{parsed.drivername}+pymysql")
    if parsed.get_backend_name() == "sqlite":
        engine = create_engine(parsed, connect_args={"check_same_thread": False, "timeout": 10})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(parsed, pool_pre_ping=True)


def create_admin_schema(engine: Engine) -> None:
    """The reference admin DB (`vhs-sync admin-db create`)."""
    admin.metadata.create_all(engine)


def migrate_state(engine: Engine) -> None:
    """The adapter's state DB (`vhs-sync migrate`); safe to run again, and alongside another
    process doing the same (a command started while the daemon starts)."""
    try:
        state.metadata.create_all(engine)
    except (OperationalError, ProgrammingError):
        # Another process created a table between our check and our CREATE: check again.
        state.metadata.create_all(engine)


def upsert(
    connection: Connection, table: Table, key: Mapping[str, Any], values: Mapping[str, Any]
) -> None:
    """Update the row with this key, or insert it: the same on every backend.

    Only the adapter writes its state DB, and one adapter runs per school (single active
    consumer), so the update-then-insert pair does not race.
    """
    condition = [table.c[name] == value for name, value in key.items()]
    result = connection.execute(update(table).where(*condition).values(**values))
    if result.rowcount == 0:
        connection.execute(insert(table).values(**key, **values))


def keyed(*columns: ColumnElement[Any]) -> list[Label[Any]]:
    """Columns labelled with their English keys, so that result rows speak English too
    (`row._asdict()["status"]`, not `["STATUS_1"]`)."""
    return [column.label(column.key) for column in columns]
