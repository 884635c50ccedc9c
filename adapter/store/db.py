"""Engines and the few statements every backend needs in the same form."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    Label,
    Table,
    and_,
    any_,
    bindparam,
    create_engine,
    event,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.mysql import insert as mysql_insert
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import URL, ExceptionContext, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

from adapter.store import admin

if TYPE_CHECKING:
    from adapter.store.migrations import Migrated

# Bound parameters one statement of ours may carry: below SQL Server's limit of 2,100, the
# lowest of the backends the admin DB may be on.
MAX_PARAMETERS = 2000

# The package extra that installs the driver of a backend this package does not install.
_EXTRAS = {"mssql": "vhs-sync[mssql]"}


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
    this package installs, `mssql://` the one of its `mssql` extra (pymssql). A driver that
    is unknown or not installed is a `DatabaseUrlError` naming what to install."""
    try:
        parsed = make_url(url)
    except ArgumentError as error:
        # Not repeated: it may hold a password.
        raise DatabaseUrlError("not a database URL (like sqlite:///file.db)") from error
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    elif parsed.drivername in ("mysql", "mariadb"):
        parsed = parsed.set(drivername=f"{parsed.drivername}+pymysql")
    elif parsed.drivername == "mssql":
        parsed = parsed.set(drivername="mssql+pymssql")
    try:
        engine = _create_engine(parsed)
    except NoSuchModuleError as error:
        raise DatabaseUrlError(f"unknown database driver {parsed.drivername!r}") from error
    except ImportError as error:  # the backend is known, its driver not installed
        extra = _EXTRAS.get(parsed.get_backend_name())
        hint = f"install {extra}" if extra else "install its driver"
        raise DatabaseUrlError(
            f"the driver of {parsed.drivername!r} is not installed: {hint}"
        ) from error
    event.listen(engine, "handle_error", _names_its_database(url))
    return engine


def _create_engine(parsed: URL) -> Engine:
    # Parameters are rows of people: never part of an error's text (nor of any log line).
    if parsed.get_backend_name() == "sqlite":
        engine = create_engine(
            parsed,
            connect_args={"check_same_thread": False, "timeout": 10},
            hide_parameters=True,
        )
        event.listen(engine, "connect", _sqlite_pragmas)
    else:
        engine = create_engine(parsed, pool_pre_ping=True, hide_parameters=True)
    return engine


def _names_its_database(url: str) -> Any:
    """A listener that marks each error of an engine with the URL it was made from
    (`error.database_url`), so that a command can say which database failed."""

    def mark(context: ExceptionContext) -> None:
        if context.sqlalchemy_exception is not None:
            context.sqlalchemy_exception.database_url = url  # type: ignore[attr-defined]

    return mark


def create_admin_schema(engine: Engine) -> None:
    """The reference admin DB (`vhs-sync admin-db create`)."""
    admin.metadata.create_all(engine)


def migrate_state(engine: Engine) -> Migrated:
    """The adapter's state DB at the newest revision (`vhs-sync migrate`, and every command
    that opens it): safe to run again, and alongside another process doing the same (a
    command started while the daemon starts); one query when there is nothing to do.
    Raises `StateSchemaError` for a DB this release cannot migrate."""
    from adapter.store.migrations import upgrade

    return upgrade(engine)


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
    else:  # SQL Server and any other backend
        upsert_in_sets(connection, table, rows)


def upsert_in_sets(connection: Connection, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """`upsert` in statements every backend runs: read which keys exist, update those rows,
    insert the others, each in statements of at most `MAX_PARAMETERS` bound parameters.

    Not atomic against another writer inserting the same key in between (that one fails
    with an integrity error and is retried by its caller): each school's state DB has one
    writer, its adapter."""
    if not rows:
        return
    keys = [column.key for column in table.primary_key.columns]
    latest = {tuple(row[name] for name in keys): row for row in rows}  # the last row of a key
    existing: set[tuple[Any, ...]] = set()
    key_columns = [table.c[name] for name in keys]
    for chunk in _sets(list(latest), MAX_PARAMETERS // len(keys)):
        condition: ColumnElement[bool]
        if len(keys) == 1:
            condition = key_columns[0].in_([key for (key,) in chunk])
        else:
            condition = or_(
                *(and_(*(c == v for c, v in zip(key_columns, key, strict=True))) for key in chunk)
            )
        existing.update(tuple(r) for r in connection.execute(select(*key_columns).where(condition)))
    changing = [name for name in next(iter(latest.values())) if name not in keys]
    updates = [row for key, row in latest.items() if key in existing]
    if updates and changing:
        statement = (
            update(table)
            .where(*(table.c[name] == bindparam(f"key_{name}") for name in keys))
            .values({name: bindparam(f"new_{name}") for name in changing})
        )
        connection.execute(
            statement,
            [
                {**{f"key_{n}": row[n] for n in keys}, **{f"new_{n}": row[n] for n in changing}}
                for row in updates
            ],
        )
    inserts = [dict(row) for key, row in latest.items() if key not in existing]
    if inserts:
        connection.execute(insert(table), inserts)


def _sets(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), max(1, size)):
        yield items[start : start + max(1, size)]


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
