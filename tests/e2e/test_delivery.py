"""What arrives twice, late, or broken: idempotent apply and the dead-letter queue."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, date, datetime

import aio_pika
import pytest
from sqlalchemy import select

from adapter import broker
from adapter.desk import Person, add_course, enroll
from adapter.domain import CourseRef, EnrollmentKey, EnrollmentState, PersonalData, Status
from adapter.mapping import routes
from adapter.messages import BATCH_CONTENT_TYPE, EVENT_CONTENT_TYPE, enrollment_changed
from adapter.ops import dlq
from adapter.store import admin
from tests.cluster import Cluster, School

pytestmark = pytest.mark.rabbitmq


def event(
    cluster: Cluster,
    status: Status,
    version: int,
    *,
    origin: str = "vhs-ka",
    participant: int = 4711,
    event_id: str | None = None,
) -> bytes:
    key = EnrollmentKey(origin, participant, CourseRef("vhs-sr", cluster.master_course))
    state = EnrollmentState(key, status, date(2026, 11, 2), PersonalData("Nowak", "Jan"))
    return (
        enrollment_changed(
            state, version=version, event_id=event_id or str(uuid.uuid4()), time=datetime.now(UTC)
        )
        .model_dump_json()
        .encode()
    )


async def deliver(
    cluster: Cluster,
    school: School,
    *bodies: bytes,
    content_type: str | None = None,
    message_id: str | None = None,
) -> None:
    """Put messages straight into a school's queue, as the broker would deliver them."""
    queue = broker.topology(cluster.network, school.id, delivery_limit=20).queue.name
    connection = await broker.connect(cluster.rabbitmq_url, name="vhs-sync tests")
    async with connection:
        channel = await connection.channel()
        for body in bodies:
            await channel.default_exchange.publish(
                aio_pika.Message(
                    body, user_id="guest", content_type=content_type, message_id=message_id
                ),
                routing_key=queue,
            )


async def dead_letters(
    cluster: Cluster, school: School, count: int
) -> list[aio_pika.abc.AbstractIncomingMessage]:
    """Take at least `count` messages from a school's dead-letter queue (waiting up to 10 s)."""
    queue_name = broker.topology(cluster.network, school.id, delivery_limit=20).dlq.name
    connection = await broker.connect(cluster.rabbitmq_url, name="vhs-sync tests")
    found = []
    async with connection:
        channel = await connection.channel()
        queue = await channel.get_queue(queue_name)

        for _ in range(200):
            message = await queue.get(fail=False)
            if message is None:
                if len(found) >= count:
                    break
                await cluster.quiet(0.05)
                continue
            await message.ack()
            found.append(message)
    return found


async def test_duplicates_and_old_versions_change_nothing(cluster: Cluster) -> None:
    """The same event twice, or an older one after a newer one, leaves the row as the newest
    made it (DESIGN decision 1)."""
    master, _, _ = cluster.three_schools()
    await cluster.start(master)
    await deliver(
        cluster,
        master,
        event(cluster, Status.REGISTERED, 1),
        event(cluster, Status.WAITLISTED, 3),
        event(cluster, Status.WAITLISTED, 3),
        event(cluster, Status.CANCELLED, 2),
        event(cluster, Status.REGISTERED, 1),
    )
    await cluster.wait_until(lambda: master.occupancy() == (0, 1))
    await cluster.quiet(0.5)
    assert [row["status"] for row in master.enrollment_rows()] == ["W"]
    await deliver(cluster, master, event(cluster, Status.CANCELLED, 4))
    await cluster.wait_until(lambda: master.occupancy() == (0, 0))
    await deliver(cluster, master, event(cluster, Status.REGISTERED, 3))
    await cluster.quiet(0.5)
    assert [row["status"] for row in master.enrollment_rows()] == ["S"]


async def test_bad_messages_go_to_the_dead_letter_queue_with_their_reason(cluster: Cluster) -> None:
    """Not JSON, a schema violation, an unknown school or course: each is dead-lettered with
    its reason, and the consumer goes on with the next message (decision 9)."""
    master, _, _ = cluster.three_schools()
    await cluster.start(master)
    unknown_course = event(cluster, Status.REGISTERED, 1).replace(
        cluster.master_course.encode(), b"99-NOPE"
    )
    await deliver(
        cluster,
        master,
        b"{not json",
        b'{"specversion": "1.0", "type": "org.vhs-sync.enrollment.changed.v1"}',
        event(cluster, Status.REGISTERED, 1, origin="vhs-unknown"),
        unknown_course,
        event(cluster, Status.REGISTERED, 5),
    )
    await cluster.wait_until(lambda: master.occupancy() == (1, 0), what="the valid event applied")
    rejected = await dead_letters(cluster, master, 4)
    reasons = [m.headers["x-vhs-sync-reason"] for m in rejected]
    assert sorted(reasons) == [
        "invalid_json",
        "schema_violation",
        "unknown_course",
        "unknown_school",
    ]
    assert rejected[0].body == b"{not json"
    assert all(m.headers["x-vhs-sync-detail"] for m in rejected)


async def test_an_operator_replays_dead_letters_once_the_cause_is_fixed(cluster: Cluster) -> None:
    """`dlq list` shows why a message was rejected; after the course is set up, `dlq replay`
    brings it back and it is applied."""
    master, _, _ = cluster.three_schools()
    await cluster.start(master)
    late = event(cluster, Status.REGISTERED, 7).replace(cluster.master_course.encode(), b"26-LATE")
    await deliver(cluster, master, late)

    async def listed() -> list[dlq.DeadLetter]:
        return await dlq.list_dead_letters(master.settings)

    letters: list[dlq.DeadLetter] = []
    for _ in range(100):
        letters = await listed()
        if letters:
            break
        await cluster.quiet(0.05)
    assert [letter.reason for letter in letters] == ["unknown_course"]
    assert "26-LATE" in letters[0].detail
    assert len(await listed()) == 1, "listing must not consume dead letters"

    with master.admin.begin() as connection:
        add_course(connection, "26-LATE", max_participants=5, master_school="vhs-sr")
    replayed = await dlq.replay(master.settings, None)
    assert [letter.message_id for letter in replayed] == [letters[0].message_id]

    def applied_in_late_course() -> bool:
        with master.admin.connect() as connection:
            return connection.execute(
                select(admin.enrollments.c.status).where(
                    admin.enrollments.c.course_number == "26-LATE"
                )
            ).scalars().all() == ["A"]

    await cluster.wait_until(applied_in_late_course, what="the replayed enrollment")
    assert await listed() == []


async def test_a_burst_travels_in_batches_and_every_school_agrees(cluster: Cluster) -> None:
    """Sixty enrollments committed at once leave the subscriber as a handful of batch messages,
    not sixty, and all three schools agree on them."""
    _, karlsruhe, _ = cluster.three_schools()
    await cluster.start_all()
    observed: list[aio_pika.abc.AbstractIncomingMessage] = []
    connection = await broker.connect(cluster.rabbitmq_url, name="vhs-sync tests")
    async with connection:
        channel = await connection.channel()
        watcher = await channel.declare_queue(exclusive=True)
        route = routes.subscriber_bindings(CourseRef("vhs-sr", cluster.master_course))[0]
        await watcher.bind(cluster.network, route)

        async def watch(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            observed.append(message)

        await watcher.consume(watch, no_ack=True)

        with karlsruhe.admin.begin() as transaction:
            for n in range(60):
                enroll(transaction, karlsruhe.course, Person(f"Person {n}", "Burst"))
        await cluster.wait_until(lambda: cluster.agree((60, 0)), what="sixty enrollments synced")

    events = [json.loads(message.body) for message in observed]
    assert sum(len(e) if isinstance(e, list) else 1 for e in events) == 60
    assert len(observed) <= 2, "a burst must not travel one message per enrollment"
    assert observed[0].content_type == BATCH_CONTENT_TYPE


async def test_a_bad_event_in_a_batch_is_dead_lettered_alone(cluster: Cluster) -> None:
    """In a batch of four, the event for an unknown course and the one that breaks the schema
    go to the dead-letter queue, each as a message of its own with its reason and event id;
    the two good events are applied."""
    master, _, _ = cluster.three_schools()
    await cluster.start(master)
    unknown_course = event(cluster, Status.REGISTERED, 1, participant=2, event_id="e-2").replace(
        cluster.master_course.encode(), b"99-NOPE"
    )
    broken = json.loads(event(cluster, Status.REGISTERED, 1, participant=3, event_id="e-3"))
    broken["data"]["status"] = "X"
    batch = [
        event(cluster, Status.REGISTERED, 1, participant=1),
        unknown_course,
        json.dumps(broken).encode(),
        event(cluster, Status.WAITLISTED, 1, participant=4),
    ]
    await deliver(
        cluster,
        master,
        b"[" + b",".join(batch) + b"]",
        content_type=BATCH_CONTENT_TYPE,
        message_id="batch-1",
    )
    await cluster.wait_until(lambda: master.occupancy() == (1, 1), what="the good events applied")
    rejected = sorted(
        await dead_letters(cluster, master, 2), key=lambda m: m.headers["x-vhs-sync-reason"]
    )
    assert [m.headers["x-vhs-sync-reason"] for m in rejected] == [
        "schema_violation",
        "unknown_course",
    ]
    assert all(m.content_type == EVENT_CONTENT_TYPE for m in rejected)
    assert all(m.headers["x-vhs-sync-batch-id"] == "batch-1" for m in rejected)
    assert json.loads(rejected[0].body) == broken
    assert rejected[0].message_id == "e-3"
    assert rejected[1].message_id == "e-2"
    assert json.loads(rejected[1].body) == json.loads(unknown_course)


async def test_replay_all_ends_while_the_daemon_runs_and_the_letters_stay_bad(
    cluster: Cluster,
) -> None:
    """`dlq replay --all` replays what the DLQ held when it started and ends, although the
    running daemon dead-letters the still-bad letters straight back; they wait in the DLQ."""
    master, _, _ = cluster.three_schools()
    await cluster.start(master)
    bad = [
        event(cluster, Status.REGISTERED, 1, participant=n).replace(
            cluster.master_course.encode(), b"26-NEVER"
        )
        for n in (1, 2)
    ]
    await deliver(cluster, master, *bad)
    await dead_letters_present(cluster, master, 2)

    replayed = await asyncio.wait_for(dlq.replay(master.settings, None), timeout=30)
    assert len(replayed) == 2
    await dead_letters_present(cluster, master, 2)
    assert master.task is not None
    assert not master.task.done(), "the daemon must still run"
    assert {letter.reason for letter in await dlq.list_dead_letters(master.settings)} == {
        "unknown_course"
    }


async def dead_letters_present(cluster: Cluster, school: School, count: int) -> None:
    """Wait until `count` dead letters wait in the school's DLQ."""

    async def listed() -> int:
        return len(await dlq.list_dead_letters(school.settings))

    for _ in range(200):
        if await listed() >= count:
            return
        await cluster.quiet(0.05)
    raise AssertionError(f"{count} dead letters did not arrive")
