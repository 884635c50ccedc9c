"""The state DB's revisions on each backend: they make exactly `state.metadata`, adopt a DB
made before there were revisions, upgrade an older DB keeping its rows, and let two processes
migrate one DB at once."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, insert, inspect, select, text

from adapter.store import state
from adapter.store.db import make_engine, migrate_state
from adapter.store.migrations import (
    BASELINE,
    BASELINE_TABLES,
    StateSchemaError,
    alembic_config,
    head,
    upgrade,
)

UrlFactory = Callable[[str], str]


def revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def made_before_migrations(engine: Engine) -> None:
    """A state DB as the release before revisions left it: 0001's tables, no alembic_version,
    and rows in it."""
    with engine.begin() as connection:
        command.upgrade(alembic_config(connection), BASELINE)
        connection.execute(text("DROP TABLE alembic_version"))
    with engine.begin() as connection:
        connection.execute(
            insert(state.outbox).values(
                message_id="m-1",
                routing_key="enr.vhs-sr.26-1.vhs-ka.anon",
                body=b"{}",
                created_at=datetime(2026, 11, 30, 12, 0),
                attempts=3,
            )
        )
        connection.execute(
            insert(state.published).values(
                course_master="vhs-sr",
                course_number="26-1",
                participant_number=7,
                enrollment_id=70,
                status="A",
                fingerprint="f" * 64,
                version=5,
            )
        )


def test_the_revisions_make_exactly_the_state_schema(database_url: UrlFactory) -> None:
    """A DB migrated to the newest revision is what state.py declares: no table, column,
    index or type that state.py has lacks a revision."""
    engine = make_engine(database_url("state"))
    migrate_state(engine)
    with engine.connect() as connection:
        found = compare_metadata(MigrationContext.configure(connection), state.metadata)
    assert found == []
    assert revision(engine) == head()
    engine.dispose()


def test_a_state_db_made_before_migrations_is_adopted_with_its_rows(
    database_url: UrlFactory,
) -> None:
    """`create_all`'s DB of the last release is stamped at 0001 and upgraded, and keeps its
    outbox and shadow."""
    engine = make_engine(database_url("state"))
    made_before_migrations(engine)
    migrated = migrate_state(engine)
    assert migrated.adopted
    assert (migrated.before, migrated.after) == (None, head())
    assert revision(engine) == head()
    with engine.connect() as connection:
        assert connection.execute(
            select(state.outbox.c.message_id, state.outbox.c.attempts)
        ).all() == [("m-1", 3)]
        assert connection.execute(select(state.published.c.version)).scalars().all() == [5]
    assert not migrate_state(engine).adopted  # and the second time it is just at the head
    engine.dispose()


def test_a_state_db_that_create_all_made_of_todays_tables_is_adopted(
    database_url: UrlFactory,
) -> None:
    """A state DB that `create_all` made of a state.py newer than 0001 (before revisions
    existed) is adopted and upgraded without creating a table twice."""
    engine = make_engine(database_url("state"))
    state.metadata.create_all(engine)
    migrated = migrate_state(engine)
    assert (migrated.adopted, migrated.after) == (True, head())
    with engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), state.metadata) == []
    engine.dispose()


def test_an_older_release_missing_a_table_is_completed_at_0001(tmp_path: Path) -> None:
    """A DB of a release before the last lacks a table that `create_all` would have added:
    adopting it creates that table and keeps the others' rows."""
    engine = make_engine(f"sqlite:///{tmp_path / 'state.db'}")
    made_before_migrations(engine)
    with engine.begin() as connection:
        connection.execute(text("DROP TABLE apply_batch"))
    migrate_state(engine)
    assert set(inspect(engine).get_table_names()) >= BASELINE_TABLES
    with engine.connect() as connection:
        assert connection.execute(select(state.outbox.c.message_id)).scalars().all() == ["m-1"]
    engine.dispose()


LATER_REVISION = '''
"""outbox rows get a note"""
import sqlalchemy as sa
from alembic import op

revision = "9001"
down_revision = {parent!r}
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("note", sa.String(40), nullable=False, server_default="-"))


def downgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("note")
'''


def test_an_older_state_db_gets_the_later_column_and_keeps_its_rows(
    database_url: UrlFactory, tmp_path: Path
) -> None:
    """A DB from before a revision that adds a column is upgraded through it (adopted at
    0001 first), and its rows are all still there, with the new column filled."""
    later = tmp_path / "later"
    later.mkdir()
    (later / "9001_outbox_note.py").write_text(LATER_REVISION.format(parent=head()))
    engine = make_engine(database_url("state"))
    made_before_migrations(engine)
    migrated = upgrade(engine, extra_versions=[later])
    assert (migrated.before, migrated.after, migrated.adopted) == (None, "9001", True)
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT message_id, attempts, note FROM outbox")).all()
        assert [tuple(row) for row in rows] == [("m-1", 3, "-")]
        assert connection.execute(select(state.published.c.version)).scalars().all() == [5]
    again = upgrade(engine, extra_versions=[later])
    assert (again.before, again.after) == ("9001", "9001")
    engine.dispose()


def test_two_processes_migrating_one_db_at_once_both_succeed(database_url: UrlFactory) -> None:
    """Four migrations started together on one empty DB (the daemon, a status, a course
    show...) all end well, and exactly one of them created the schema."""
    url = database_url("state")
    engines = [make_engine(url) for _ in range(4)]
    start = threading.Barrier(len(engines))
    results: list[object] = []

    def migrate(engine: Engine) -> None:
        start.wait()
        try:
            results.append(migrate_state(engine))
        except Exception as error:  # collected and asserted below
            results.append(error)

    threads = [threading.Thread(target=migrate, args=(engine,)) for engine in engines]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert all(not isinstance(result, Exception) for result in results), results
    created = [r for r in results if getattr(r, "before", "x") is None]
    assert len(results) == 4
    assert len(created) == 1
    assert revision(engines[0]) == head()
    for engine in engines:
        engine.dispose()


def test_a_db_at_head_is_not_locked_to_find_that_out(tmp_path: Path) -> None:
    """While another process holds the state DB's write lock (the daemon writing), a command
    that finds the DB at the newest revision goes on at once."""
    url = f"sqlite:///{tmp_path / 'state.db'}"
    migrate_state(make_engine(url))
    writer = make_engine(url)
    with writer.connect() as holding:
        holding.exec_driver_sql("BEGIN IMMEDIATE")
        reader = make_engine(url)
        assert migrate_state(reader).after == head()
        holding.rollback()
    reader.dispose()
    writer.dispose()


def test_a_db_of_a_newer_release_is_refused_with_a_reason(tmp_path: Path) -> None:
    """A revision this release does not know means a newer release migrated the DB: one
    readable error, nothing changed."""
    engine = make_engine(f"sqlite:///{tmp_path / 'state.db'}")
    migrate_state(engine)
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '7777'"))
    with pytest.raises(StateSchemaError, match=r"7777.*newer vhs-sync"):
        migrate_state(engine)
    assert revision(engine) == "7777"
    engine.dispose()
