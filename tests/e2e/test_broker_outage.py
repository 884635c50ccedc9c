"""The broker stops while schools keep enrolling: nothing is lost."""

from __future__ import annotations

import asyncio
import shutil

import pytest
from structlog.testing import capture_logs

from adapter.desk import Person
from tests.cluster import Cluster

pytestmark = pytest.mark.rabbitmq


async def rabbitmqctl(*args: str) -> None:
    process = await asyncio.create_subprocess_exec(
        "rabbitmqctl", *args, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    _, stderr = await process.communicate()
    assert process.returncode == 0, f"rabbitmqctl {' '.join(args)}: {stderr.decode()}"


@pytest.mark.skipif(
    shutil.which("rabbitmqctl") is None, reason="needs rabbitmqctl of the local broker"
)
async def test_changes_made_while_the_broker_is_down_all_arrive(cluster: Cluster) -> None:
    """While the broker is stopped, changes pile up in the outbox; once it is back, every one
    of them is published and applied (decision 5)."""
    master, karlsruhe, hof = cluster.three_schools()
    await cluster.start_all()
    karlsruhe.enroll(Person("Vorher", "Vera"))
    await cluster.wait_until(lambda: cluster.agree((1, 0)))

    with capture_logs() as logs:
        await rabbitmqctl("stop_app")
        try:
            for number in range(10):
                karlsruhe.enroll(Person("Waehrend", f"Person {number}"))
                hof.enroll(Person("Hof", f"Person {number}"))
            await cluster.wait_until(
                lambda: any(e["event"] == "outbox.publish_failed" for e in logs),
                what="a failed publish while the broker is down",
            )
            assert master.occupancy() == (1, 0)
        finally:
            await rabbitmqctl("start_app")
            await rabbitmqctl("await_startup")
    await cluster.wait_until(lambda: cluster.agree((21, 0)), within=60, what="all 21 everywhere")
