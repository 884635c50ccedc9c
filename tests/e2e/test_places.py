"""Regular places are allotted by the master: schools registering at the same moment never
overbook the course (issue 3)."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

import pytest
from sqlalchemy import update
from structlog.testing import capture_logs

from adapter.desk import Desk, Person
from adapter.desk.places import PlaceClient
from adapter.domain import Registered, Status
from adapter.store import admin
from tests.cluster import Cluster, School

pytestmark = pytest.mark.rabbitmq


def register_many(school: School, count: int) -> list[str]:
    desk = school.desk
    results = [
        desk.register(school.course, Person(f"P{n}", school.id), privacy_consent=True)
        for n in range(count)
    ]
    return [r.status.value for r in results if r.status is not None]


async def test_schools_registering_at_once_never_overbook(cluster: Cluster) -> None:
    """Three schools register 10 people each at the same moment for 5 places: exactly 5
    get a regular place, and every school's listing agrees."""
    master, karlsruhe, hof = cluster.three_schools()
    with master.admin.begin() as connection:
        connection.execute(
            update(admin.courses).values(
                max_participants=5, min_participants=1, modified_at=datetime.now()
            )
        )
    await cluster.start_all()
    await cluster.wait_until(lambda: hof.listing().max_participants == 5, what="max 5 everywhere")
    loop = asyncio.get_running_loop()
    with ThreadPoolExecutor(3) as pool:
        outcomes = await asyncio.gather(
            *(loop.run_in_executor(pool, register_many, s, 10) for s in (master, karlsruhe, hof))
        )
    given = [status for statuses in outcomes for status in statuses]
    assert given.count("A") == 5
    assert given.count("W") == 25
    await cluster.wait_until(lambda: cluster.agree((5, 25)), what="TN 5, WL 25 everywhere")


async def test_without_an_answer_the_desk_keeps_its_own_decision(cluster: Cluster) -> None:
    """With the master's adapter down, a subscriber still registers (on what it sees), and
    the log says the master did not answer."""
    _, karlsruhe, _ = cluster.three_schools()
    await cluster.start(karlsruhe)
    desk = Desk(
        karlsruhe.admin,
        karlsruhe.state,
        karlsruhe.id,
        places=PlaceClient(cluster.rabbitmq_url, cluster.network, karlsruhe.id, timeout=0.5),
    )
    with capture_logs() as logs:
        result = await asyncio.to_thread(
            desk.register, karlsruhe.course, Person("Nowak", "Jan"), privacy_consent=True
        )
    assert isinstance(result.decision, Registered)
    assert result.status is Status.REGISTERED
    assert [e["event"] for e in logs if e["log_level"] == "warning"] == ["place.request_unanswered"]
