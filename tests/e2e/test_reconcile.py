"""`vhs-sync reconcile` with three schools on the real broker: what each holds of every origin
against what the origin says it has, the local actions that break sync, and the repair."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import aio_pika
import pytest
from sqlalchemy import delete, select, update

from adapter.desk import Person
from adapter.domain import CourseRef
from adapter.mapping import routes
from adapter.mapping.reconcile import CourseReport, digest
from adapter.messages import DigestRequested, digest_answered
from adapter.ops.reconcile import ask_members, reconcile
from adapter.ops.sandbox import SandboxSchool
from adapter.store import admin, state
from tests.cluster import Cluster

pytestmark = pytest.mark.rabbitmq

ANNA = Person("Berger", "Anna")
JAN = Person("Nowak", "Jan")
EVA = Person("Hofmann", "Eva")
LEA = Person("Fischer", "Lea")


async def reconciled(school: SandboxSchool, *, repair: bool = False) -> CourseReport:
    [report] = await reconcile(
        school.settings,
        school.admin,
        school.state,
        local_number=school.course,
        repair=repair,
        wait=5.0,
        now=datetime.now(UTC),
    )
    return report


async def vhs_sync(*args: str) -> subprocess.CompletedProcess[str]:
    """The command as an operator runs it, in a process of its own."""
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "adapter", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def applied_rows(school: SandboxSchool, origin: str) -> list[tuple[int, int]]:
    """(participant number, enrollment id) of each row this school applied from `origin`."""
    with school.state.connect() as connection:
        rows = connection.execute(
            select(state.applied.c.participant_number, state.applied.c.enrollment_id).where(
                state.applied.c.origin_school == origin
            )
        ).all()
    return [(row.participant_number, row.enrollment_id) for row in rows]


async def test_drift_is_found_reported_and_repaired(cluster: Cluster) -> None:
    master, karlsruhe, hof = cluster.three_schools()
    await cluster.start_all()
    master.enroll(ANNA)
    jan, _ = karlsruhe.enroll(JAN)
    karlsruhe.enroll(LEA)
    hof.enroll(EVA)
    await cluster.wait_until(lambda: cluster.agree((4, 0)), what="TN 4 everywhere")

    report = await reconciled(hof)
    assert not report.drifted, report
    assert {o.origin: (o.held, o.told) for o in report.origins} == {
        "vhs-sr": (1, 1),
        "vhs-ka": (2, 2),
    }

    # Hof loses the master's enrollment from both its DBs (a restored backup, say), holds an
    # older version of Jan's and staff cancel that foreign row by hand, and Lea's row is
    # deleted here.
    [(anna, anna_row)] = applied_rows(hof, "vhs-sr")
    ka_rows = dict(applied_rows(hof, "vhs-ka"))
    jan_row = ka_rows.pop(jan)
    [lea_row] = ka_rows.values()
    with hof.state.begin() as connection:
        connection.execute(delete(state.applied).where(state.applied.c.enrollment_id == anna_row))
        connection.execute(
            update(state.applied)
            .where(state.applied.c.enrollment_id == jan_row)
            .values(version=state.applied.c.version - 1)
        )
    with hof.admin.begin() as connection:
        connection.execute(
            delete(admin.enrollments).where(admin.enrollments.c.id.in_([anna_row, lea_row]))
        )
        connection.execute(
            update(admin.enrollments).where(admin.enrollments.c.id == jan_row).values(status="S")
        )

    report = await reconciled(hof, repair=True)
    drift = {o.origin: o for o in report.origins}
    assert drift["vhs-sr"].missing == (anna,)
    assert drift["vhs-ka"].stale == (jan,)
    assert sorted((i.kind, i.enrollment_id) for i in report.local) == [
        ("foreign_deleted", lea_row),
        ("foreign_edited", jan_row),
    ]
    assert set(report.repair_requested) == {"vhs-sr", "vhs-ka"}

    # The repair asked the members to send the course again: Anna and Lea are back at Hof,
    # and Jan's row is Jan's state at Karlsruhe again.
    await cluster.wait_until(lambda: hof.occupancy() == (4, 0), what="the repair")
    report = await reconciled(hof)
    assert not report.drifted, report


async def test_merged_participants_and_a_changed_course_number_are_reported(
    cluster: Cluster, tmp_path: Path
) -> None:
    _master, karlsruhe, hof = cluster.three_schools()
    await cluster.start_all()
    participant, enrollment = karlsruhe.enroll(JAN)
    other, _ = karlsruhe.enroll(EVA)
    await cluster.wait_until(lambda: cluster.agree((2, 0)), what="TN 2 everywhere")
    await cluster.stop(karlsruhe)
    await cluster.stop(hof)

    # At Karlsruhe staff merge Jan into Eva's participant row; at Hof the course's master
    # number is changed.
    with karlsruhe.admin.begin() as connection:
        connection.execute(
            update(admin.enrollments)
            .where(admin.enrollments.c.id == enrollment)
            .values(participant_number=other)
        )
    with hof.admin.begin() as connection:
        connection.execute(
            update(admin.courses)
            .where(admin.courses.c.number == hof.course)
            .values(master_number="26-OTHER")
        )

    merged = await reconciled(karlsruhe)
    assert [(i.kind, i.enrollment_id) for i in merged.local] == [("participant_merged", enrollment)]
    assert f"participant {participant} became {other}" in merged.local[0].detail

    config = tmp_path / "hof.toml"
    config.write_text(
        f'[school]\nid = "vhs-hof"\nname = "vhs Hofer Land"\n'
        f'[admin_db]\nurl = "{hof.settings.admin_db.url}"\n'
        f'[state_db]\nurl = "{hof.settings.state_db.url}"\n'
        f'[broker]\nurl = "{hof.settings.broker.url}"\nnetwork = "{cluster.network}"\n'
        "insecure = true\n[reconcile]\nwait = 2.0\n",
        encoding="utf-8",
    )
    result = await vhs_sync("reconcile", "--config", str(config), "--json")
    assert result.returncode == 1, result.stderr
    # The course row now names another master course; the one Hof joined is found nowhere.
    courses = {course["course"]: course for course in json.loads(result.stdout)}
    course = courses[cluster.master_course]
    assert course["local_number"] is None
    assert courses["26-OTHER"]["local_number"] == hof.course
    assert course["counts"]["course_renumbered"] == 1
    assert "its number was changed or its sharing removed" in course["local"][0]["detail"]
    result = await vhs_sync("reconcile", hof.course, "--config", str(config))
    assert result.returncode == 1, result.stderr
    assert "local course_renumbered: the master vhs-sr has no course 26-OTHER" in result.stdout


async def test_an_answer_larger_than_a_message_may_be_is_not_read(cluster: Cluster) -> None:
    """A member that answers a digest request with a body larger than `[broker]
    max_message_bytes` (valid JSON, padded) is not heard: the receiver reads no such message
    either, and the school asking would otherwise hold and parse whatever size it was sent."""
    master, karlsruhe, _ = cluster.three_schools()
    await cluster.start(master)
    course = CourseRef("vhs-sr", cluster.master_course)
    connection = await aio_pika.connect(karlsruhe.settings.broker.url)
    async with connection:
        channel = await connection.channel()
        exchange = await channel.get_exchange(cluster.network, ensure=False)
        requests = await channel.declare_queue(exclusive=True)
        await requests.bind(exchange, routes.control(course, "vhs-ka"))

        async def answer_hugely() -> None:
            async with requests.iterator() as incoming:
                async for message in incoming:
                    await message.ack()
                    request = DigestRequested.model_validate_json(message.body)
                    body = digest_answered(
                        request,
                        "vhs-zz",
                        digest=digest({}),
                        entries=[],
                        event_id="huge",
                        time=datetime.now(UTC),
                    ).model_dump_json()
                    padded = body[:-1] + " " * karlsruhe.settings.broker.max_message_bytes + "}"
                    await exchange.publish(
                        aio_pika.Message(padded.encode(), correlation_id=message.correlation_id),
                        routing_key=routes.place_answers("vhs-ka", "vhs-zz"),
                    )
                    return

        answering = asyncio.create_task(answer_hugely())
        answers = await ask_members(karlsruhe.settings, course, {}, {"vhs-zz"}, wait=3.0)
        await answering
    assert "vhs-zz" not in answers
    assert "vhs-sr" in answers  # the master's own answer is heard
