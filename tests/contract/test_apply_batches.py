"""Apply writes a batch with a few statements, whatever its size (issue 9), on each backend."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, event

from adapter.domain import Status
from tests.contract.test_apply_crash import MASTER, STAMP, Side

# SQL Server's limit, the lowest of the backends the adapter may meet.
MAX_PARAMETERS = 2100


@contextmanager
def statements(*engines: Engine) -> Iterator[list[tuple[str, int]]]:
    """Each statement run, with the parameters one execution of it carries."""
    seen: list[tuple[str, int]] = []

    def record(*args: Any) -> None:
        statement, parameters = args[2], args[3]
        # An executemany's rows come as a list; one execution's parameters (also those of a
        # multi-row INSERT rendered by SQLAlchemy) as one tuple or dict.
        one = parameters[0] if isinstance(parameters, list) and parameters else parameters
        seen.append((statement, len(one) if one else 0))

    for engine in engines:
        event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        for engine in engines:
            event.remove(engine, "before_cursor_execute", record)


def test_a_batch_of_changes_is_one_update_and_stays_under_the_parameter_limit(
    database_url: Callable[[str], str],
) -> None:
    """1,200 new enrollments at the master, then the same 1,200 cancelled: the cancellations
    are one UPDATE of the enrollments (an executemany), not one a row, and no query of either
    batch carries more than 2,100 parameters."""
    side = Side.create(database_url, MASTER)
    applier = side.applier()
    with statements(side.admin, side.state) as new_batch:
        applier.apply_enrollment_changes(
            side.events(range(1, 1201), version=10, status=Status.REGISTERED), STAMP
        )
    with statements(side.admin, side.state) as changed_batch:
        outcomes = applier.apply_enrollment_changes(
            side.events(range(1, 1201), version=11, status=Status.CANCELLED), STAMP
        )
    assert {o.result for o in outcomes} == {"applied"}
    assert side.statuses() == {"S": 1200}
    updates = [s for s, _ in changed_batch if s.startswith("UPDATE") and "BELEGUNG" in s]
    assert len(updates) == 1
    # Multi-row INSERTs are SQLAlchemy's, sized to each backend's own limit (2,099 on SQL
    # Server); every other statement's parameters are apply's IN lists.
    assert max(c for s, c in new_batch + changed_batch if not s.startswith("INSERT")) <= (
        MAX_PARAMETERS
    )
