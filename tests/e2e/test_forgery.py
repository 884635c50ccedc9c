"""Forgery on a provisioned network: each school's broker user may do only what its adapter
needs, and what the broker did not authenticate is never trusted (DESIGN decision 8).

Each test has a vhost of its own with one user per school, made as `vhs-sync broker
provision` makes them (tests/secure.py)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import aio_pika
import pytest
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage
from aiormq.exceptions import ChannelAccessRefused
from sqlalchemy import select

from adapter import broker
from adapter.desk import Person, add_course
from adapter.desk.places import PlaceClient
from adapter.domain import CourseRef, EnrollmentKey, EnrollmentState, PersonalData, Status
from adapter.mapping import routes
from adapter.messages import EVENT_CONTENT_TYPE, enrollment_changed
from adapter.ops import dlq
from adapter.ops.reconcile import reconcile
from adapter.ops.resync import request_resync
from adapter.store import admin
from tests.cluster import Cluster, School
from tests.secure import SecureNetwork

pytestmark = pytest.mark.rabbitmq


@pytest.fixture
async def cluster(secure_network: SecureNetwork, tmp_path: Path) -> AsyncIterator[Cluster]:
    """Master VHS SR and subscribers vhs-ka and vhs-hof, each adapter as its own user."""
    network = Cluster(
        secure_network.admin_url,
        lambda name: f"sqlite:///{tmp_path / (name + '.db')}",
        network=secure_network.network,
        school_urls=secure_network.urls,
    )
    yield network
    await network.close()


def course_of(cluster: Cluster, number: str | None = None) -> CourseRef:
    return CourseRef("vhs-sr", number or cluster.master_course)


def spec(cluster: Cluster, school: str) -> broker.Topology:
    return broker.topology(cluster.network, school, delivery_limit=20)


async def refused(url: str, action: Callable[[AbstractChannel], Awaitable[Any]]) -> bool:
    """Whether the broker refuses `action` to the user of `url` (ACCESS_REFUSED)."""
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        try:
            await action(channel)
        except ChannelAccessRefused:
            return True
    return False


def enrollment(
    course: CourseRef,
    status: Status,
    version: int,
    *,
    origin: str = "vhs-ka",
    participant: int = 4711,
) -> bytes:
    key = EnrollmentKey(origin, participant, course)
    state = EnrollmentState(
        key, status, date(2026, 11, 2), PersonalData("Nowak", "Jan", "jan@example.org", None)
    )
    event = enrollment_changed(
        state, version=version, event_id=str(uuid.uuid4()), time=datetime.now(UTC)
    )
    return event.model_dump_json().encode()


async def publish(
    url: str, routing_key: str, body: bytes, headers: dict[str, Any] | None = None
) -> None:
    """Publish as the user of `url` on its network's exchange (each test network is named as
    its vhost), as an adapter would."""
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(broker.vhost(url), ensure=False)
        await exchange.publish(
            aio_pika.Message(
                body,
                content_type=EVENT_CONTENT_TYPE,
                headers=headers or {},
                user_id=connection.url.user,
                message_id=str(uuid.uuid4()),
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            ),
            routing_key=routing_key,
            mandatory=True,
        )


async def letters(cluster: Cluster, school: str) -> list[AbstractIncomingMessage]:
    """What is in a school's DLQ now, left there (taken unacknowledged, then given back)."""
    connection = await aio_pika.connect(cluster.broker_url)
    async with connection:
        channel = await connection.channel()
        queue = await channel.get_queue(spec(cluster, school).dlq.name)
        taken = []
        while (message := await queue.get(fail=False)) is not None:
            taken.append(message)
        for message in taken:
            await message.nack(requeue=True)
    return taken


async def wait_for_letters(
    cluster: Cluster, school: str, count: int, *, reason: str | None = None
) -> list[AbstractIncomingMessage]:
    """The DLQ's letters once it holds `count` of them (with `reason`, when given)."""
    for _ in range(200):
        found = await letters(cluster, school)
        if len(found) >= count and all(
            reason is None or m.headers["x-vhs-sync-reason"] == reason for m in found
        ):
            return found
        await asyncio.sleep(0.05)
    raise AssertionError(f"{school}'s DLQ did not reach {count} letter(s)")


def statuses(school: School, course: str) -> list[str]:
    """The statuses of the enrollments of one course in a school's admin DB."""
    enrollments = admin.enrollments.c
    with school.admin.connect() as connection:
        query = select(enrollments.status).where(enrollments.course_number == course)
        return list(connection.execute(query).scalars())


async def test_a_subscriber_cannot_bind_another_masters_personal_route(
    cluster: Cluster, secure_network: SecureNetwork
) -> None:
    """vhs-ka's user may bind the anonymised and control routes of vhs-sr's course, but no
    `.personal` route of vhs-sr, also not through `*` or `#` in any word."""
    course, ka = course_of(cluster), secure_network.urls["vhs-ka"]
    queue = spec(cluster, "vhs-ka").queue.name

    def bind(key: str) -> Callable[[AbstractChannel], Awaitable[Any]]:
        async def action(channel: AbstractChannel) -> None:
            await (await channel.get_queue(queue)).bind(cluster.network, key)

        return action

    for key in routes.subscriber_bindings(course):
        assert not await refused(ka, bind(key)), key
    forbidden = [
        routes.personal(course, "vhs-hof"),
        "enr.vhs-sr.*.*.personal",
        "enr.*.*.*.personal",
        "enr.vhs-sr.#",
        "enr.#",
        "#",
        "*.vhs-sr.*.*.personal",
        "enr.#.personal",
        routes.offers("vhs-hof", "vhs-sr"),
        routes.place_answers("vhs-hof", "vhs-sr"),
        routes.answers_to("vhs-hof"),
        "req.vhs-sr.*",
        routes.sync_answer("vhs-hof", course, "vhs-sr", personal=False),
        "syn.vhs-sr.vhs-sr.*.*.personal",
        "syn.vhs-ka.vhs-sr.*.*.personal",
        "syn.vhs-ka.*.*.*.*",
        "syn.#",
    ]
    assert [key for key in forbidden if not await refused(ka, bind(key))] == []


async def test_reconcile_needs_no_more_than_a_schools_own_rights(cluster: Cluster) -> None:
    """Each school's user may ask the members of a course for their digests and hear the
    answers meant for it; the answers name their members by the routes they came on."""
    master, karlsruhe, hof = cluster.three_schools()
    await cluster.start_all()
    karlsruhe.enroll(Person("Nowak", "Jan"))
    await cluster.wait_until(lambda: hof.occupancy() == (1, 0))
    [report] = await reconcile(hof.settings, hof.admin, hof.state, wait=5.0, now=datetime.now(UTC))
    assert {o.origin: (o.held, o.told) for o in report.origins} == {
        "vhs-sr": (0, 0),
        "vhs-ka": (1, 1),
    }
    assert not report.drifted
    assert master.occupancy() == (1, 0)


async def test_a_school_cannot_publish_a_route_of_another_origin(
    cluster: Cluster, secure_network: SecureNetwork
) -> None:
    """vhs-hof's user may publish its own routes only: not an enrollment of vhs-ka, not the
    master's course settings, not a place offer or answer of the master."""
    course, hof = course_of(cluster), secure_network.urls["vhs-hof"]

    def send(key: str) -> Callable[[AbstractChannel], Awaitable[Any]]:
        async def action(channel: AbstractChannel) -> None:
            exchange = await channel.get_exchange(cluster.network, ensure=False)
            await exchange.publish(aio_pika.Message(b"{}", user_id=hof_user), routing_key=key)

        return action

    hof_user = secure_network.users["vhs-hof"]
    own = [
        routes.anonymised(course, "vhs-hof"),
        routes.personal(course, "vhs-hof"),
        routes.sync_answer("vhs-ka", course, "vhs-hof", personal=False),
    ]
    for key in own:
        assert not await refused(hof, send(key)), key
    forged = [
        routes.anonymised(course, "vhs-ka"),
        routes.personal(course, "vhs-ka"),
        routes.control(course, "vhs-sr"),
        routes.offers("vhs-hof", "vhs-sr"),
        routes.place_answers("vhs-ka", "vhs-sr"),
        routes.place_requests("vhs-sr", "vhs-ka"),
        routes.sync_answer("vhs-ka", course, "vhs-sr", personal=False),
        routes.sync_answer("vhs-sr", course, "vhs-ka", personal=True),
    ]
    assert [key for key in forged if not await refused(hof, send(key))] == []


async def test_a_school_cannot_reach_another_schools_queues_or_dead_letters(
    cluster: Cluster, secure_network: SecureNetwork
) -> None:
    """vhs-ka's user cannot declare, consume or get vhs-hof's queue or DLQ, cannot publish
    into vhs-hof's dead-letter exchange (neither as a dead letter nor as a replay), cannot
    put a message into any queue by its name through the default exchange, and cannot make
    an exchange of its own to route around its topic permissions."""
    ka = secure_network.urls["vhs-ka"]
    hof = spec(cluster, "vhs-hof")

    async def declare(channel: AbstractChannel) -> None:
        await channel.declare_queue(hof.queue.name, durable=True, arguments=hof.queue.arguments)

    async def ignore(message: AbstractIncomingMessage) -> None:
        return None

    async def consume(channel: AbstractChannel) -> None:
        await (await channel.get_queue(hof.queue.name)).consume(ignore)

    async def get_dead_letter(channel: AbstractChannel) -> None:
        await (await channel.get_queue(hof.dlq.name)).get(fail=False)

    async def purge_dead_letters(channel: AbstractChannel) -> None:
        await (await channel.get_queue(hof.dlq.name)).purge()

    def into_exchange(name: str, key: str) -> Callable[[AbstractChannel], Awaitable[Any]]:
        async def action(channel: AbstractChannel) -> None:
            exchange = await channel.get_exchange(name, ensure=False)
            message = aio_pika.Message(b"{}", user_id=secure_network.users["vhs-ka"])
            await exchange.publish(message, routing_key=key)

        return action

    async def own_exchange(channel: AbstractChannel) -> None:
        await channel.declare_exchange(spec(cluster, "vhs-ka").queue.name, "fanout")

    actions = {
        "declare": declare,
        "consume": consume,
        "get a dead letter": get_dead_letter,
        "purge dead letters": purge_dead_letters,
        "write a dead letter": into_exchange(hof.dead_letters.name, broker.DEAD_LETTER_KEY),
        "write a replay": into_exchange(hof.dead_letters.name, broker.REPLAY_KEY),
        "default exchange": into_exchange("", hof.queue.name),
        "own exchange": own_exchange,
    }
    assert [name for name, action in actions.items() if not await refused(ka, action)] == []
    own = spec(cluster, "vhs-ka")

    async def own_dead_letters(channel: AbstractChannel) -> None:
        await (await channel.get_queue(own.dlq.name)).get(fail=False)

    assert not await refused(ka, own_dead_letters)


async def test_a_forged_cancellation_is_dead_lettered_not_applied(
    cluster: Cluster, secure_network: SecureNetwork
) -> None:
    """vhs-hof publishes a cancellation of vhs-ka's enrollment (origin vhs-ka claimed, a
    publisher header naming vhs-ka's user) on the one route it may reach the master by: the
    master dead-letters it as not authenticated, naming vhs-hof's user, and keeps the place."""
    master, _, _ = cluster.three_schools()
    await cluster.start(master)
    course = course_of(cluster)
    ka, hof = secure_network.urls["vhs-ka"], secure_network.urls["vhs-hof"]
    await publish(ka, routes.personal(course, "vhs-ka"), enrollment(course, Status.REGISTERED, 1))
    await cluster.wait_until(lambda: statuses(master, master.course) == ["A"])

    forged = enrollment(course, Status.CANCELLED, 2)
    header = {broker.PUBLISHER_HEADER: secure_network.users["vhs-ka"]}
    await publish(hof, routes.personal(course, "vhs-hof"), forged, header)
    [letter] = await wait_for_letters(cluster, "vhs-sr", 1)
    assert letter.headers["x-vhs-sync-reason"] == "origin_not_authenticated"
    assert letter.headers[broker.PUBLISHER_HEADER] == secure_network.users["vhs-hof"]
    assert statuses(master, master.course) == ["A"]


async def test_a_dead_letter_with_a_forged_publisher_is_not_trusted_after_replay(
    cluster: Cluster, secure_network: SecureNetwork
) -> None:
    """A forged cancellation that the broker itself dead-letters keeps vhs-hof's verified
    user and its forged header naming vhs-ka's user; replayed, it is judged by vhs-hof's user
    and dead-lettered again, and the enrollment stays registered."""
    master, _, _ = cluster.three_schools()
    await cluster.start(master)  # binds its routes
    await cluster.stop(master)
    course = course_of(cluster)
    ka, hof = secure_network.urls["vhs-ka"], secure_network.urls["vhs-hof"]
    header = {broker.PUBLISHER_HEADER: secure_network.users["vhs-ka"]}
    await publish(
        hof, routes.personal(course, "vhs-hof"), enrollment(course, Status.CANCELLED, 2), header
    )
    connection = await aio_pika.connect(cluster.broker_url)
    async with connection:  # as the broker does when a message exceeds its delivery limit
        channel = await connection.channel()
        queue = await channel.get_queue(spec(cluster, "vhs-sr").queue.name)
        async with queue.iterator() as incoming:
            async for message in incoming:
                # The master's own messages from its short run may come first: passed over.
                if message.user_id != secure_network.users["vhs-hof"]:
                    await message.ack()
                    continue
                await message.reject(requeue=False)
                break
    [letter] = await wait_for_letters(cluster, "vhs-sr", 1)
    assert letter.user_id == secure_network.users["vhs-hof"]

    await publish(ka, routes.personal(course, "vhs-ka"), enrollment(course, Status.REGISTERED, 1))
    await cluster.start(master)
    await cluster.wait_until(lambda: statuses(master, master.course) == ["A"])
    assert len(await dlq.replay(master.settings, None)) == 1
    [again] = await wait_for_letters(cluster, "vhs-sr", 1, reason="origin_not_authenticated")
    assert again.headers[broker.PUBLISHER_HEADER] == secure_network.users["vhs-hof"]
    assert statuses(master, master.course) == ["A"]


async def test_a_letter_replayed_twice_keeps_its_sender_and_is_applied_once_fixed(
    cluster: Cluster, secure_network: SecureNetwork
) -> None:
    """vhs-ka's enrollment for a course the master has not set up yet is dead-lettered,
    replayed and dead-lettered twice more; each letter still names vhs-ka's user, and once
    the course exists the next replay applies it."""
    master, _, _ = cluster.three_schools()
    await cluster.start(master)
    late = course_of(cluster, f"26-L{uuid.uuid4().hex[:5].upper()}")
    ka_user = secure_network.users["vhs-ka"]
    await publish(
        secure_network.urls["vhs-ka"],
        routes.personal(late, "vhs-ka"),
        enrollment(late, Status.REGISTERED, 1),
    )
    for _ in range(2):  # dead-lettered, replayed; dead-lettered again, replayed again
        [letter] = await wait_for_letters(cluster, "vhs-sr", 1, reason="unknown_course")
        assert letter.headers[broker.PUBLISHER_HEADER] == ka_user
        assert len(await dlq.replay(master.settings, None)) == 1
    [letter] = await wait_for_letters(cluster, "vhs-sr", 1, reason="unknown_course")
    assert letter.headers[broker.PUBLISHER_HEADER] == ka_user
    with master.admin.begin() as connection:
        add_course(connection, late.number, max_participants=5, master_school="vhs-sr")
    assert len(await dlq.replay(master.settings, None)) == 1
    await cluster.wait_until(lambda: statuses(master, late.number) == ["A"], what="the replay")
    assert await letters(cluster, "vhs-sr") == []


async def test_a_joining_school_and_a_masters_resync_are_answered_with_least_privilege(
    cluster: Cluster,
) -> None:
    """On a provisioned network vhs-hof, joining late, gets the enrollments of the master and
    vhs-ka anonymised; the master, having lost its booking of vhs-ka's participant, asks
    again and books the real participant again from vhs-ka's personal answer."""
    master, karlsruhe, hof = cluster.three_schools()
    await cluster.start(master)
    await cluster.start(karlsruhe)
    master.enroll(Person("Berger", "Anna"))
    karlsruhe.enroll(Person("Nowak", "Jan", main_email="jan@example.org"))
    await cluster.wait_until(lambda: master.occupancy() == karlsruhe.occupancy() == (2, 0))
    await cluster.start(hof)
    await cluster.wait_until(lambda: hof.occupancy() == (2, 0), what="the join")
    assert {row.name for row in hof.listing().rows} == {"VHS SR", "vhs Karlsruhe"}

    [booking] = [row for row in master.enrollment_rows() if row["remark"]]
    with master.admin.begin() as connection:
        connection.execute(
            admin.enrollments.delete().where(admin.enrollments.c.id == booking["id"])
        )
    assert master.occupancy() == (1, 0)
    request_resync(master.admin, master.state, "vhs-sr", master.course, datetime.now(UTC))
    await cluster.wait_until(lambda: master.occupancy() == (2, 0), what="the master's resync")
    names = {row.name for row in master.listing().rows}
    assert "Nowak, Jan (vhs Karlsruhe)" in names
    assert await letters(cluster, "vhs-sr") == []


async def test_a_subscribers_desk_gets_the_masters_answer_on_its_own_route(
    cluster: Cluster, secure_network: SecureNetwork
) -> None:
    """With least privilege (no default exchange), vhs-ka's desk asks the master for a place
    and gets its answer."""
    master, _, _ = cluster.three_schools()
    await cluster.start(master)
    client = PlaceClient(secure_network.urls["vhs-ka"], cluster.network, "vhs-ka")
    answer = await asyncio.to_thread(client.request, course_of(cluster), 77)
    assert answer is not None
    assert (answer.data.granted, answer.data.school, answer.data.participant_number) == (
        True,
        "vhs-ka",
        77,
    )


async def test_a_daemon_on_a_network_not_provisioned_says_to_provision(
    cluster: Cluster, secure_network: SecureNetwork
) -> None:
    """A school's adapter may not declare the network: on a network that was not provisioned
    it stops with a message telling the operator to provision it."""
    master, _, _ = cluster.three_schools()
    master.settings.broker.network = f"{cluster.network}-missing"
    with pytest.raises(broker.BrokerSetupError, match="vhs-sync broker provision"):
        await cluster.start(master)
    master.task = None
