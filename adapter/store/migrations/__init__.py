"""The state DB's schema history: Alembic revisions, run from the code (no alembic.ini).

`upgrade(engine)` (what `vhs-sync migrate` and every command that opens the state DB run)
brings a state DB to the newest revision. A state DB made before there were revisions (by
`create_all`: the tables, no `alembic_version`) is adopted at revision 0001, the schema as it
was then, and upgraded from there. One process at a time migrates a state DB: a lock of the
database's own (SQLite's write lock, a PostgreSQL advisory lock, a MariaDB named lock) makes
another wait and then find the work done. When the DB is at the newest revision already, one
query finds that, and nothing is locked.

Adding a table or a column: change `adapter/store/state.py`, then write its revision with

    python -m adapter.store.migrations revision "what changed"

which compares state.py with a scratch SQLite DB at the newest revision and writes
`versions/NNNN_what_changed.py` (batch form, so SQLite can alter tables too). Read it (a
renamed column comes out as a drop and an add; a new non-null column of a table that holds
rows needs a `server_default`), and run `tests/contract/test_migrations.py`: it fails while
state.py and the revisions disagree, on SQLite, PostgreSQL and MariaDB.
`python -m adapter.store.migrations check` says the same without writing anything.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import tenacity
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, inspect, text
from sqlalchemy.exc import DBAPIError, OperationalError, ProgrammingError

__all__ = ["BASELINE", "Migrated", "StateSchemaError", "alembic_config", "head", "upgrade"]

HERE = Path(__file__).parent
BASELINE = "0001"
# The tables revision 0001 creates: one of them in a DB without `alembic_version` is a state
# DB that `create_all` made before there were revisions.
BASELINE_TABLES = frozenset(
    {
        "outbox",
        "published",
        "applied",
        "remote_participants",
        "published_courses",
        "applied_courses",
        "advance_offers",
        "place_grants",
        "joined_courses",
        "capture_cursor",
        "apply_batch",
    }
)
LOCK_SECONDS = 60
# pg_advisory_xact_lock's key: any fixed number; PostgreSQL keeps advisory locks per database.
_PG_LOCK_KEY = 0x76687373796E63  # "vhssync"


class StateSchemaError(Exception):
    """A state DB that this release cannot migrate, and why, in one line."""


@dataclass(frozen=True, slots=True)
class Migrated:
    """What `upgrade` found and left: revisions before (None: no revision) and after."""

    before: str | None
    after: str
    adopted: bool = False

    def describe(self) -> str:
        if self.adopted:
            return f"adopted at revision {BASELINE} (made before migrations), now at {self.after}"
        if self.before == self.after:
            return f"at revision {self.after}, up to date"
        if self.before is None:
            return f"created at revision {self.after}"
        return f"upgraded from revision {self.before} to {self.after}"


def alembic_config(
    connection: Connection | None = None, *, extra_versions: Sequence[Path] = ()
) -> Config:
    """Alembic's settings without an ini file; `env.py` migrates on `connection`.
    `extra_versions` adds folders of revisions (the tests' made-up later ones)."""
    config = Config()
    config.set_main_option("script_location", str(HERE))
    config.set_main_option("path_separator", "os")
    locations = [HERE / "versions", *extra_versions]
    config.set_main_option("version_locations", os.pathsep.join(str(p) for p in locations))
    config.set_main_option("file_template", "%%(rev)s_%%(slug)s")
    if connection is not None:
        config.attributes["connection"] = connection
    return config


@functools.cache
def _script(extra_versions: tuple[Path, ...]) -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config(extra_versions=extra_versions))


def head(extra_versions: Sequence[Path] = ()) -> str:
    """The newest revision."""
    heads = _script(tuple(extra_versions)).get_heads()
    if len(heads) != 1:  # two revisions with the same parent: a merge forgot to renumber one
        raise StateSchemaError(f"the state DB's revisions have {len(heads)} heads: {heads}")
    return heads[0]


def upgrade(engine: Engine, *, extra_versions: Sequence[Path] = ()) -> Migrated:
    """Bring the state DB at `engine` to the newest revision; see the module's docstring."""
    newest = head(extra_versions)
    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception(lambda error: _contended(engine, error)),
        stop=tenacity.stop_after_attempt(5),
        wait=tenacity.wait_random(0.05, 0.5),
        reraise=True,
    )
    for attempt in retrying:
        with attempt:
            with engine.connect() as connection:
                current = _current(connection)
            if current == newest:
                return Migrated(current, newest)
            return _upgrade(engine, newest, tuple(extra_versions))
    raise AssertionError("unreachable: tenacity reraises")  # pragma: no cover


_LOCKED = frozenset({"sqlite", "postgresql", "mysql", "mariadb"})


def _contended(engine: Engine, error: BaseException) -> bool:
    """Whether another process in the middle of the same work explains `error`, so that a
    second try finds it done: SQLite's "database is locked" that no busy timeout waits out
    (seen when several connections open a new DB at once), or, on a backend without
    our lock, a table another process created between our look and our CREATE. What failed
    was rolled back (SQLite's DDL is transactional), or is skipped as done."""
    if not isinstance(error, OperationalError | ProgrammingError):
        return False
    if engine.dialect.name == "sqlite":
        return "locked" in str(error.orig)
    return engine.dialect.name not in _LOCKED


def _upgrade(engine: Engine, newest: str, extra_versions: tuple[Path, ...]) -> Migrated:
    with engine.connect() as connection, _exclusive(connection):
        before = _current(connection)
        if before == newest:  # another process migrated it while we waited
            return Migrated(before, newest)
        known = {script.revision for script in _script(extra_versions).walk_revisions()}
        if before is not None and before not in known:
            raise StateSchemaError(
                f"the state DB is at revision {before}, which this release does not know "
                f"(its newest is {newest}): a newer vhs-sync migrated it; run that one"
            )
        adopted = before is None and bool(
            BASELINE_TABLES & set(inspect(connection).get_table_names())
        )
        config = alembic_config(connection, extra_versions=extra_versions)
        if adopted:
            # The tables are there already; 0001 creates only those an older release lacked.
            command.upgrade(config, BASELINE)
        command.upgrade(config, "head")
        return Migrated(before, _current(connection) or newest, adopted)


def _current(connection: Connection) -> str | None:
    heads = MigrationContext.configure(connection).get_current_heads()
    if len(heads) > 1:
        raise StateSchemaError(f"the state DB records {len(heads)} revisions at once: {heads}")
    return heads[0] if heads else None


@contextmanager
def _exclusive(connection: Connection) -> Iterator[None]:
    """One transaction that holds the database's migration lock: committed at the end (and
    on a DB that cannot roll back DDL, MariaDB, whatever was done stays done)."""
    dialect = connection.dialect.name
    lock_name = f"vhs-sync.migrate.{connection.engine.url.database}"[:64]
    try:
        if dialect == "sqlite":
            # The write lock, taken now, not at the first write: the second process waits
            # here (busy_timeout) instead of failing halfway.
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        elif dialect == "postgresql":
            connection.execute(text(f"SET LOCAL lock_timeout = '{LOCK_SECONDS}s'"))
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
        elif dialect in ("mysql", "mariadb"):
            got = connection.execute(
                text("SELECT GET_LOCK(:name, :seconds)"),
                {"name": lock_name, "seconds": LOCK_SECONDS},
            ).scalar()
            if got != 1:
                raise StateSchemaError(_still_locked())
    except OperationalError as error:
        # SQLite's "database is locked" is left to `upgrade`'s second try.
        if getattr(error.orig, "sqlstate", None) == "55P03":  # PostgreSQL: lock_timeout
            raise StateSchemaError(_still_locked()) from error
        raise
    try:
        yield
        connection.commit()
    except BaseException:
        connection.rollback()
        raise
    finally:
        if dialect in ("mysql", "mariadb"):
            try:
                connection.execute(text("SELECT RELEASE_LOCK(:name)"), {"name": lock_name})
                connection.commit()
            except DBAPIError:
                # A connection that cannot release its lock is not given back to the pool:
                # closing it ends the session, and the lock with it.
                connection.invalidate()


def _still_locked() -> str:
    return "another process is migrating the state DB and did not finish in time; try again"
