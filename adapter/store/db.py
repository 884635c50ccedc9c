"""Engines and the few statements every backend needs in the same form."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    Label,
    Table,
    any_,
    bindparam,
    create_engine,
    event,
    insert,
    update,
)
from sqlalchemy.dialects.mysql import insert as mysql_insert
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
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
    # Parameters are rows of people: never part of an error's text (nor of any log line).
    if parsed.get_backend_name() == "sqlite":
        engine = create_engine(
            parsed,
            connect_args={"check_same_thread": False, "timeout": 10},
            hide_parameters=True,
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(parsed, pool_pre_ping=True, hide_parameters=True)


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


def upsert(connection: Connection, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert these rows, or update the rows with the same primary key: one statement for
    all of them, in each backend's own form."""
    if not rows:
        return
    keys = [column.name for column in table.primary_key.columns]
    dialect = connection.dialect.name
    if dialect in ("sqlite", "postgresql"):
        statement = (sqlite_insert if dialect == "sqlite" else postgresql_insert)(table)
        changes = {name: statement.excluded[name] for name in rows[0] if name not in keys}
        connection.execute(
            statement.on_conflict_do_update(index_elements=keys, set_=changes), list(rows)
        )
    elif dialect in ("mysql", "mariadb"):
        upserting = mysql_insert(table)
        connection.execute(
            upserting.on_duplicate_key_update(
                {name: upserting.inserted[name] for name in rows[0] if name not in keys}
            ),
            list(rows),
        )
    else:  # any other backend: update, and insert where nothing was there
        for row in rows:
            condition = [table.c[name] == row[name] for name in keys]
            values = {name: value for name, value in row.items() if name not in keys}
            if connection.execute(update(table).where(*condition).values(**values)).rowcount == 0:
                connection.execute(insert(table).values(**row))


def keyed(*columns: ColumnElement[Any]) -> list[Label[Any]]:
    """Columns labelled with their English keys, so that result rows speak English too
    (`row._asdict()["status"]`, not `["STATUS_1"]`)."""
    return [column.label(column.key) for column in columns]


# Values of one IN list: far below SQL Server's 2,100 parameters a statement, with room for the
# statement's other parameters.
IN_LIST_LIMIT = 1000


def one_of(
    connection: Connection, column: ColumnElement[Any], values: Sequence[Any]
) -> Iterator[ColumnElement[bool]]:
    """Conditions `column IN values`, one a statement to run: on PostgreSQL one array
    parameter (`= ANY(:values)`, planned the same whatever the count), elsewhere IN lists of
    at most `IN_LIST_LIMIT` values. Nothing for no values."""
    if not values:
        return
    if connection.dialect.name == "postgresql":
        yield column == any_(bindparam(None, list(values), type_=ARRAY(column.type), unique=True))
        return
    for start in range(0, len(values), IN_LIST_LIMIT):
        yield column.in_(values[start : start + IN_LIST_LIMIT])
