"""A school joining a course, and a school asking for a course again (V1), on the real broker:
the enrollments go to that school alone, at once, and come back where they were lost."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import delete, select

from adapter.desk import Person, add_course
from adapter.domain import Status
from adapter.mapping.inbound import arrived_by_sync
from adapter.store import admin, state
from tests.cluster import Cluster, School
from tests.e2e.test_cli import cli

pytestmark = pytest.mark.rabbitmq

PEOPLE = [Person(f"Person {n}", "Join") for n in range(6)]
# What can become of an enrollment event at a receiver (`Outcome.result`).
RESULTS = ("applied", "unchanged", "stale", "own", "rejected", "failed")


def enrollment_events(school: School) -> float:
    """Enrollment events this school's receiver has taken from its queue so far."""
    return sum(
        REGISTRY.get_sample_value(
            "vhs_sync_events_received_total", {"school": school.id, "result": result}
        )
        or 0.0
        for result in RESULTS
    )


def synced_rows(school: School) -> list[dict[str, object]]:
    return [row for row in school.enrollment_rows() if arrived_by_sync(row["remark"])]


async def test_a_school_subscribing_while_running_gets_every_enrollment_and_nobody_else_does(
    cluster: Cluster,
) -> None:
    """vhs-hof's adapter runs when its course row appears: it holds the five enrollments made
    before at the master and vhs-ka well before a full scan (a minute), and neither the
    master nor vhs-ka receives a single enrollment event again for it."""
    master, karlsruhe, hof = cluster.three_schools()
    with hof.admin.begin() as connection:
        connection.execute(delete(admin.courses).where(admin.courses.c.number == hof.course))
    await cluster.start_all()
    for person in PEOPLE[:2]:
        master.enroll(person)
    for person in PEOPLE[2:4]:
        karlsruhe.enroll(person)
    karlsruhe.enroll(PEOPLE[4], Status.WAITLISTED)
    await cluster.wait_until(
        lambda: master.occupancy() == karlsruhe.occupancy() == (4, 1), what="the first two"
    )
    await cluster.quiet(0.5)
    before = {school.id: enrollment_events(school) for school in (master, karlsruhe, hof)}

    started = time.monotonic()
    with hof.admin.begin() as connection:
        add_course(
            connection,
            hof.course,
            max_participants=20,
            master_school="vhs-sr",
            master_number=cluster.master_course,
        )
    await cluster.wait_until(lambda: hof.occupancy() == (4, 1), within=10, what="the join")
    assert time.monotonic() - started < 10  # the full scan would come after 60 s
    await cluster.quiet(0.5)

    after = {school.id: enrollment_events(school) for school in (master, karlsruhe, hof)}
    assert {school: after[school] - before[school] for school in after} == {
        "vhs-sr": 0,
        "vhs-ka": 0,
        "vhs-hof": 5,
    }
    assert {row.name for row in hof.listing().rows} == {"VHS SR", "vhs Karlsruhe"}


async def test_resync_books_again_what_a_school_lost_and_only_there(
    cluster: Cluster, tmp_path: Path
) -> None:
    """At vhs-hof a synced row is deleted from the admin DB and the mapping of another from
    the state DB; `vhs-sync resync` brings the first back and takes the second over (no row
    twice), while the master and vhs-ka receive nothing again."""
    master, karlsruhe, hof = cluster.three_schools()
    await cluster.start_all()
    master.enroll(PEOPLE[0])
    karlsruhe.enroll(PEOPLE[1])
    karlsruhe.enroll(PEOPLE[2], Status.WAITLISTED)
    await cluster.wait_until(lambda: cluster.agree((2, 1)), what="three schools agreeing")
    await cluster.quiet(0.3)
    before = {school.id: enrollment_events(school) for school in (master, karlsruhe)}
    lost, unmapped = sorted(row["id"] for row in synced_rows(hof))[:2]
    with hof.admin.begin() as connection:
        connection.execute(delete(admin.enrollments).where(admin.enrollments.c.id == lost))
    with hof.state.begin() as connection:
        connection.execute(delete(state.applied).where(state.applied.c.enrollment_id == unmapped))
    assert len(synced_rows(hof)) == 2

    config = tmp_path / "vhs-hof.toml"
    config.write_text(
        f'[school]\nid = "vhs-hof"\nname = "vhs Hofer Land"\n'
        f'[admin_db]\nurl = "{hof.settings.admin_db.url}"\n'
        f'[state_db]\nurl = "{hof.settings.state_db.url}"\n',
        encoding="utf-8",
    )
    refused = cli("resync", "26-NOT-SHARED", "--config", config, check=False)
    assert refused.returncode == 2
    assert "26-NOT-SHARED is not a shared course" in refused.stderr
    assert "Traceback" not in refused.stderr
    done = cli("resync", hof.course, "--config", config)
    assert cluster.master_course in done.stdout

    def repaired() -> bool:
        with hof.state.connect() as connection:
            mapped = set(connection.execute(select(state.applied.c.enrollment_id)).scalars())
        rows = synced_rows(hof)
        return len(rows) == 3 and {row["id"] for row in rows} <= mapped

    await cluster.wait_until(repaired, what="the lost rows booked again")
    await cluster.quiet(0.5)
    assert hof.occupancy() == (2, 1)
    assert len(synced_rows(hof)) == 3
    assert {s.id: enrollment_events(s) for s in (master, karlsruhe)} == before
