"""Alembic's environment for the state DB: always on a connection that
`adapter.store.migrations` hands over (no alembic.ini, no URL of its own)."""

from __future__ import annotations

from alembic import context

from adapter.store import state

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run the state DB's migrations through adapter.store.migrations")
context.configure(
    connection=connection,
    target_metadata=state.metadata,
    # SQLite alters a table by copying it: revisions come out in batch form for every backend.
    render_as_batch=True,
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
