"""A master before any subscriber (issue 7, item 8): nobody to tell is a normal state, and a
school that subscribes later still receives everything (V1)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import func, select

from adapter.desk import Person
from adapter.domain import Status
from adapter.ops.status import read_status
from adapter.store import state
from tests.cluster import Cluster, School

pytestmark = pytest.mark.rabbitmq


def outbox(school: School) -> list[tuple[str, str | None]]:
    """(routing key, last error) of every row still in the school's outbox."""
    with school.state.connect() as connection:
        rows = connection.execute(
            select(state.outbox.c.routing_key, state.outbox.c.last_error)
        ).all()
    return [(row.routing_key, row.last_error) for row in rows]


def published(school: School) -> int:
    with school.state.connect() as connection:
        return int(
            connection.execute(select(func.count()).select_from(state.published)).scalar_one()
        )


def unheard(school: School) -> float:
    value = REGISTRY.get_sample_value("vhs_sync_messages_unheard_total", {"school": school.id})
    return value or 0.0


async def test_a_master_alone_drains_its_outbox_stays_healthy_and_a_late_school_gets_all(
    cluster: Cluster,
) -> None:
    """A master's enrollments made before any subscriber leave its outbox (counted as heard
    by nobody, not as failures), its status stays healthy past the 5 minutes, and schools
    that subscribe later receive every enrollment."""
    master, karlsruhe, hof = cluster.three_schools()
    await cluster.start(master)
    before = unheard(master)
    for n in range(5):
        master.enroll(Person(f"Person{n}", "Sr"))
    master.enroll(Person("Wartend", "Sr"), Status.WAITLISTED)
    await cluster.wait_until(
        lambda: published(master) == 6 and outbox(master) == [], what="the master's outbox drained"
    )
    assert unheard(master) - before >= 6
    six_minutes_on = datetime.now(UTC) + timedelta(minutes=6)
    later = await read_status(
        master.settings, master.state, six_minutes_on, admin_engine=master.admin
    )
    assert (later.outbox_pending, later.outbox_failing) == (0, 0)
    # Six minutes on, the heartbeat is old too; the outbox is no problem.
    assert [problem for problem in later.problems if "outbox" in problem] == []

    await cluster.start(karlsruhe)
    await cluster.wait_until(lambda: karlsruhe.occupancy() == (5, 1), what="the first subscriber")
    await cluster.start(hof)
    await cluster.wait_until(lambda: cluster.agree((5, 1)), what="TN 5, WL 1 everywhere")


async def test_a_subscribers_personal_states_wait_for_the_master(cluster: Cluster) -> None:
    """Personal data for a master whose queue is not there yet stays in the outbox, retried,
    and reaches the master once it runs."""
    master, karlsruhe, _ = cluster.three_schools()
    await cluster.start(karlsruhe)
    karlsruhe.enroll(Person("Nowak", "Jan"))
    await cluster.wait_until(
        lambda: (
            [error for key, error in outbox(karlsruhe) if key.endswith(".personal")]
            == ["unroutable"]
        ),
        what="the personal state pending, unroutable",
    )
    await cluster.start(master)
    await cluster.wait_until(lambda: master.occupancy() == (1, 0), what="Jan at the master")
