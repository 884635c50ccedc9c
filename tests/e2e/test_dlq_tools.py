"""`vhs-sync dlq` against the real broker: list, show, export, replay and purge a selection of
dead letters that the receiver wrote, without wearing any letter out.

Each test has a network of its own (a school's queue, DLQ and dead-letter exchange) on the
shared broker; the letters are made by the receiver's own dead-lettering of bad messages, so
they carry the headers the daemon writes. The commands run in-process (typer's runner), as an
operator types them."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aio_pika
import pytest
from typer.testing import CliRunner, Result

from adapter import broker
from adapter.cli import app
from adapter.config import DatabaseSection, PeerSchool, SchoolSection, Settings
from adapter.consumers.receiver import Receiver
from adapter.domain import CourseRef, EnrollmentKey, EnrollmentState, PersonalData, Status
from adapter.mapping import routes
from adapter.messages import REPLAYED_HEADER, enrollment_changed
from adapter.ops import dlq
from adapter.ops.sandbox import remove_network
from tests.secure import SecureNetwork
from tests.services import RABBITMQ_URL, RUN, require

pytestmark = pytest.mark.rabbitmq

SCHOOL = "vhs-sr"
C1, C2 = CourseRef(SCHOOL, "26-C1"), CourseRef(SCHOOL, "26-C2")


def enrollment(course: CourseRef, origin: str, *, version: int = 1, event_id: str) -> bytes:
    """An enrollment with personal data (Nowak, Jan); a version far ahead is refused."""
    state = EnrollmentState(
        EnrollmentKey(origin, 4711, course),
        Status.REGISTERED,
        None,
        PersonalData("Nowak", "Jan", main_email="jan.nowak@example.org", main_phone="0721 555"),
    )
    event = enrollment_changed(state, version=version, event_id=event_id, time=datetime.now(UTC))
    return event.model_dump_json().encode()


FAR_AHEAD = 2**62


@dataclass
class Network:
    """One test's network on the shared broker: this school's topology, as the daemon makes
    it (a DLQ with a delivery limit where asked), and its settings and config file."""

    name: str
    settings: Settings
    config: Path
    spec: broker.Topology = field(init=False)

    def __post_init__(self) -> None:
        self.spec = dlq._spec(self.settings)

    async def declare(self, *, dlq_delivery_limit: int | None = None) -> None:
        spec = self.spec
        if dlq_delivery_limit is not None:
            limited = {**spec.dlq.arguments, "x-delivery-limit": dlq_delivery_limit}
            spec = dataclasses.replace(spec, dlq=broker.QueueSpec(spec.dlq.name, limited))
        async with await aio_pika.connect(RABBITMQ_URL) as connection:
            declared = await broker.declare(await connection.channel(), spec, insecure=True)
            await declared.queue.bind(declared.exchange, "#")

    async def reject(self, *letters: tuple[str, bytes, str]) -> None:
        """Publish each (routing key, body, message id) to the network and let the receiver
        judge it: every one of these is bad, so each becomes a dead letter, in this order."""
        async with await aio_pika.connect(RABBITMQ_URL) as connection:
            channel = await connection.channel(publisher_confirms=True)
            exchange = await channel.get_exchange(self.spec.exchange.name)
            for key, body, message_id in letters:
                await exchange.publish(
                    aio_pika.Message(body, message_id=message_id, user_id="guest"), key
                )
        await self.judge(len(letters))

    async def judge(self, count: int) -> None:
        """The receiver takes `count` messages from the school's queue, one at a time."""
        async with await aio_pika.connect(RABBITMQ_URL) as connection:
            channel = await connection.channel(publisher_confirms=True)
            declared = await broker.declare(channel, self.spec, insecure=False)
            receiver = Receiver(
                declared.queue,
                declared.dead_letters,
                None,  # type: ignore[arg-type] - bad messages are never applied
                school=SCHOOL,
                broker_users={"vhs-ka": None, "vhs-hof": None},
                handlers={},
                own_user="guest",
            )
            await channel.set_qos(prefetch_count=1)
            async with declared.queue.iterator() as incoming:
                for _ in range(count):
                    await receiver.handle_batch([await asyncio.wait_for(anext(incoming), 5)])

    async def waiting(self, queue: str) -> int:
        async with await aio_pika.connect(RABBITMQ_URL) as connection:
            declared = await (await connection.channel()).get_queue(queue)
            return int(declared.declaration_result.message_count or 0)

    async def raw(self, queue: str) -> list[aio_pika.abc.AbstractIncomingMessage]:
        """Take every message out of a queue, as they are."""
        taken = []
        async with await aio_pika.connect(RABBITMQ_URL) as connection:
            channel = await connection.channel()
            source = await channel.get_queue(queue)
            while (message := await source.get(fail=False)) is not None:
                await message.ack()
                taken.append(message)
        return taken

    def cli(self, *args: str) -> Result:
        return CliRunner().invoke(app, ["dlq", *args, "--config", str(self.config)])

    def ids(self, *args: str) -> list[str]:
        listed = self.cli("list", "--json", *args)
        assert listed.exit_code == 0, listed.stderr
        return [letter["message_id"] for letter in json.loads(listed.stdout)["letters"]]


@pytest.fixture(scope="module")
def made() -> Iterator[list[str]]:
    """The networks the module's tests made, removed at its end."""
    require("RabbitMQ", RABBITMQ_URL)
    names: list[str] = []
    yield names
    for name in names:
        asyncio.run(remove_network(RABBITMQ_URL, name, [SCHOOL]))


@pytest.fixture
def network(made: list[str], tmp_path: Path) -> Network:
    name = f"vhs-sync-test-{RUN}-dlq-{uuid.uuid4().hex[:6]}"
    made.append(name)
    config = tmp_path / "school.toml"
    config.write_text(
        f"""
[school]
id = "{SCHOOL}"
name = "VHS SR"

[admin_db]
url = "sqlite:///{tmp_path / "admin.db"}"

[state_db]
url = "sqlite:///{tmp_path / "state.db"}"

[broker]
url = "{RABBITMQ_URL}"
network = "{name}"
insecure = true

[[schools]]
id = "vhs-ka"
name = "vhs Karlsruhe"
""",
        encoding="utf-8",
    )
    settings = Settings(
        school=SchoolSection(id=SCHOOL, name="VHS SR"),
        admin_db=DatabaseSection(url="sqlite://"),
        state_db=DatabaseSection(url="sqlite://"),
        broker={"url": RABBITMQ_URL, "network": name, "insecure": True},
        schools=[PeerSchool(id="vhs-ka", name="vhs Karlsruhe")],
    )
    return Network(name, settings, config)


def five_letters() -> list[tuple[str, bytes, str]]:
    """vhs-ka's broken JSON and far-ahead version for 26-C1, its schema violation for 26-C2,
    vhs-hof's broken JSON for 26-C1 and an event of an unknown school on vhs-hof's key."""
    ka1, ka2, hof1 = (
        routes.personal(c, o) for c, o in ((C1, "vhs-ka"), (C2, "vhs-ka"), (C1, "vhs-hof"))
    )
    return [
        (ka1, b'{"data": {"participant": {"last_name": "Nowak"', "ka-json"),
        (ka1, enrollment(C1, "vhs-ka", version=FAR_AHEAD, event_id="ka-ahead"), "ka-ahead"),
        (ka2, b'{"specversion": "1.0"}', "ka-schema"),
        (hof1, b"\xff\xfe not json", "hof-json"),
        (hof1, enrollment(C1, "vhs-zz", event_id="zz"), "zz"),
    ]


async def test_listing_a_letter_25_times_wears_it_out_no_more_than_once(network: Network) -> None:
    """On a DLQ that drops a letter at its second delivery, letters listed 25 times are all
    still there, in their order, and the broker counts no delivery of them (it counts a letter
    taken and given back: one is, before the listings, and its count is fresh after)."""
    await network.declare(dlq_delivery_limit=2)
    await network.reject(*five_letters()[:3])
    async with await aio_pika.connect(RABBITMQ_URL) as connection:  # taken and given back once
        channel = await connection.channel()
        first = await (await channel.get_queue(network.spec.dlq.name)).get()
        await first.nack(requeue=True)
    order = ["ka-json", "ka-ahead", "ka-schema"]
    for _ in range(25):
        listed = await dlq.list_dead_letters(network.settings)
        assert [letter.message_id for letter in listed] == order
    left = await network.raw(network.spec.dlq.name)
    assert [message.message_id for message in left] == order
    assert [message.headers[dlq.DELIVERY_COUNT_HEADER] for message in left] == [0, 0, 0]


def test_list_selects_groups_and_pages_by_reason_origin_and_course(network: Network) -> None:
    """Origin and course come from the routing key (an unknown school's event on vhs-hof's key
    is vhs-hof's); kinds narrow, values widen; groups count; pages say where the next starts."""
    asyncio.run(network.declare())
    asyncio.run(network.reject(*five_letters()))
    assert network.ids() == ["ka-json", "ka-ahead", "ka-schema", "hof-json", "zz"]
    assert network.ids("--origin", "vhs-hof") == ["hof-json", "zz"]
    assert network.ids("--reason", "invalid_json", "--course", "26-C1") == ["ka-json", "hof-json"]
    assert network.ids("--course", "vhs-sr/26-C2", "--course", "26-NONE") == ["ka-schema"]
    assert network.ids("--id", "zz", "--id", "ka-json") == ["ka-json", "zz"]
    assert network.ids("--limit", "2", "--offset", "1") == ["ka-ahead", "ka-schema"]

    by_origin = network.cli("list", "--json", "--group-by", "origin")
    assert json.loads(by_origin.stdout)["groups"] == [
        {"origin": "vhs-ka", "count": 3},
        {"origin": "vhs-hof", "count": 2},
    ]
    grouped = network.cli("list", "--json", "--group-by", "origin", "--group-by", "reason")
    assert json.loads(grouped.stdout)["groups"] == [
        {"origin": "vhs-hof", "reason": "invalid_json", "count": 1},
        {"origin": "vhs-hof", "reason": "unknown_school", "count": 1},
        {"origin": "vhs-ka", "reason": "invalid_json", "count": 1},
        {"origin": "vhs-ka", "reason": "schema_violation", "count": 1},
        {"origin": "vhs-ka", "reason": "version_in_future", "count": 1},
    ]
    by_course = network.cli("list", "--group-by", "course")
    assert "vhs-sr/26-C1" in by_course.stdout
    assert by_course.stdout.rstrip().endswith("5 dead letter(s) of 5")

    paged = network.cli("list", "--origin", "vhs-ka", "--limit", "2")
    assert paged.exit_code == 0
    footer = paged.stdout.rstrip().splitlines()[-1]
    assert footer == "3 dead letter(s) of 5 match; shown 1-2; next page: --offset 2"
    assert "Nowak" not in paged.stdout
    wrong = network.cli("list", "--group-by", "school")
    assert (wrong.exit_code, wrong.stderr) == (
        2,
        "error: --group-by takes reason, origin, course, not school\n",
    )


def test_show_pretty_prints_a_letter_with_personal_data_masked_unless_revealed(
    network: Network,
) -> None:
    """Headers and body of the far-ahead enrollment show `N***` for Nowak, its email and
    phone masked too; `--reveal` shows them. A body that is not JSON is a masked excerpt."""
    asyncio.run(network.declare())
    asyncio.run(network.reject(*five_letters()[:2]))
    shown = network.cli("show", "ka-ahead")
    assert shown.exit_code == 0, shown.stderr
    assert "reason        version_in_future" in shown.stdout
    assert "origin        vhs-ka" in shown.stdout
    assert '"x-vhs-sync-reason": "version_in_future"' in shown.stdout
    assert '"last_name": "N***"' in shown.stdout
    for personal in ("Nowak", "jan.nowak@example.org", "0721 555"):
        assert personal not in shown.stdout
    revealed = network.cli("show", "ka-ahead", "--reveal", "--json")
    [record] = json.loads(revealed.stdout)
    assert record["body"]["data"]["participant"]["main_email"] == "jan.nowak@example.org"
    broken = network.cli("show", "ka-json")
    assert 'body (not JSON):\n  {"d***": {"p***": {"l***": "N***"' in broken.stdout
    missing = network.cli("show", "nope")
    assert (missing.exit_code, missing.stderr) == (
        1,
        "error: no dead letter with message id 'nope'\n",
    )
    assert network.ids() == ["ka-json", "ka-ahead"], "showing must leave the letters"


async def test_replay_of_a_selection_dry_run_first_then_at_a_rate(network: Network) -> None:
    """A dry run names what it would replay and changes nothing; the replay puts vhs-ka's
    three letters back into the queue no faster than the rate, leaves the others in the DLQ
    in their order, and a replayed letter dead-lettered again still names vhs-ka as origin."""
    await network.declare()
    await network.reject(*five_letters())
    dry = await asyncio.to_thread(network.cli, "replay", "--origin", "vhs-ka", "--dry-run")
    assert dry.stdout.rstrip().endswith("would replay 3 message(s) (dry run)")
    assert await network.waiting(network.spec.queue.name) == 0

    started = time.monotonic()
    replayed = await dlq.replay(
        network.settings, selection=dlq.Selection.of(origins=["vhs-ka"]), rate=10
    )
    assert time.monotonic() - started >= 0.2, "three replays at 10 a second take 0.2 s"
    assert [letter.message_id for letter in replayed] == ["ka-json", "ka-ahead", "ka-schema"]
    assert [x.message_id for x in await dlq.list_dead_letters(network.settings)] == [
        "hof-json",
        "zz",
    ]
    await network.judge(3)  # still bad: dead-lettered again
    again = await dlq.list_dead_letters(network.settings)
    assert [x.message_id for x in again] == ["hof-json", "zz", "ka-json", "ka-ahead", "ka-schema"]
    assert [(x.origin, x.course_name) for x in again[2:]] == [
        ("vhs-ka", "vhs-sr/26-C1"),
        ("vhs-ka", "vhs-sr/26-C1"),
        ("vhs-ka", "vhs-sr/26-C2"),
    ]
    assert all(x.headers[REPLAYED_HEADER] for x in again[2:])


def test_purge_of_a_selection_asks_for_yes_and_keeps_the_rest(network: Network) -> None:
    """Without `--yes` nothing goes; with it only the selected letters; `--all` with a
    selection is refused; `purge --yes` alone drops every letter, as it always did."""
    asyncio.run(network.declare())
    asyncio.run(network.reject(*five_letters()))
    unsure = network.cli("purge", "--reason", "invalid_json")
    assert (unsure.exit_code, unsure.stderr) == (
        2,
        "error: purging drops messages for good: add --yes\n",
    )
    both = network.cli("purge", "--all", "--origin", "vhs-ka", "--yes")
    assert both.exit_code == 2
    dry = network.cli("purge", "--reason", "invalid_json", "--dry-run")
    assert dry.stdout.rstrip().endswith("would purge 2 message(s) (dry run)")
    purged = network.cli("purge", "--reason", "invalid_json", "--yes")
    assert purged.stdout == "purged 2 message(s)\n"
    assert network.ids() == ["ka-ahead", "ka-schema", "zz"]
    assert network.cli("purge", "--yes").stdout == "purged 3 message(s)\n"
    assert network.ids() == []


def test_export_writes_json_lines_and_leaves_the_letters(network: Network, tmp_path: Path) -> None:
    """One JSON object a letter, masked, in a file only its owner may read (also one that was
    there before); `-` writes to standard output, and `--reveal` gives a body that is not
    JSON byte for byte."""
    asyncio.run(network.declare())
    asyncio.run(network.reject(*five_letters()))
    target = tmp_path / "letters.jsonl"
    target.write_text("an older export that anyone may read\n", encoding="utf-8")
    target.chmod(0o644)
    exported = network.cli("export", str(target), "--origin", "vhs-ka")
    assert exported.stdout == f"exported 3 dead letter(s) to {target}\n"
    assert os.stat(target).st_mode & 0o777 == 0o600
    lines = [json.loads(line) for line in target.read_text(encoding="utf-8").splitlines()]
    assert [line["message_id"] for line in lines] == ["ka-json", "ka-ahead", "ka-schema"]
    assert lines[1]["body"]["data"]["participant"]["last_name"] == "N***"
    assert lines[1]["headers"]["x-vhs-sync-routing-key"] == routes.personal(C1, "vhs-ka")
    assert "Nowak" not in target.read_text(encoding="utf-8")

    revealed = network.cli("export", "-", "--id", "hof-json", "--reveal")
    [line] = [json.loads(text) for text in revealed.stdout.splitlines()]
    assert line["body_base64"] == "//4gbm90IGpzb24="
    assert network.ids()[:1] == ["ka-json"]
    assert len(network.ids()) == 5


async def test_a_schools_own_user_may_do_it_all_and_a_forged_letter_stays_unbelieved(
    secure_network: SecureNetwork,
) -> None:
    """With the rights `vhs-sync broker provision` gives, the school lists, replays and purges
    its letters. A letter of vhs-hof that the broker dead-lettered is vhs-hof's whatever its
    headers (and its own `x-death`) claim: listed twice, its copy still names vhs-hof's user
    and no origin it could not publish, and replayed, it goes back as vhs-hof's."""
    users, network_name = secure_network.users, secure_network.network
    settings = Settings(
        school=SchoolSection(id=SCHOOL, name="VHS SR"),
        admin_db=DatabaseSection(url="sqlite://"),
        state_db=DatabaseSection(url="sqlite://"),
        broker={"url": secure_network.urls[SCHOOL], "network": network_name},
        schools=[
            PeerSchool(id=school, name=school, broker_user=users[school])
            for school in ("vhs-ka", "vhs-hof")
        ],
    )
    spec = dlq._spec(settings)
    hof_key, ka_key = routes.personal(C1, "vhs-hof"), routes.personal(C1, "vhs-ka")
    forged: dict[str, Any] = {
        broker.REASON_HEADER: "replay_me",
        broker.ROUTING_KEY_HEADER: ka_key,
        broker.PUBLISHER_HEADER: users["vhs-ka"],
        "x-death": [
            {
                "count": 1,
                "reason": "rejected",
                "queue": spec.queue.name,
                "exchange": network_name,
                "routing-keys": [ka_key],
                "time": datetime.now(UTC),
            }
        ],
    }
    async with await aio_pika.connect(secure_network.admin_url) as admin:
        channel = await admin.channel()
        queue = await channel.get_queue(spec.queue.name)
        await queue.bind(network_name, f"enr.{SCHOOL}.*.*.personal")
        async with await aio_pika.connect(secure_network.urls["vhs-hof"]) as hof:
            exchange = await (await hof.channel()).get_exchange(network_name, ensure=False)
            for message_id, headers in (("honest", {}), ("forged", forged)):
                body = enrollment(C1, "vhs-hof", event_id=message_id)
                message = aio_pika.Message(
                    body, message_id=message_id, headers=headers, user_id=users["vhs-hof"]
                )
                await exchange.publish(message, hof_key)
        await channel.set_qos(prefetch_count=1)
        async with queue.iterator() as incoming:
            for _ in range(2):  # as the broker does at the delivery limit
                await (await asyncio.wait_for(anext(incoming), 5)).reject(requeue=False)

    def seen(letters: list[dlq.DeadLetter]) -> list[tuple[Any, ...]]:
        return [(x.message_id, x.reason, x.origin, x.publisher) for x in letters]

    expected = [
        ("honest", "rejected", "vhs-hof", users["vhs-hof"]),
        ("forged", "rejected", None, users["vhs-hof"]),
    ]
    for _ in range(3):
        assert seen(await dlq.list_dead_letters(settings)) == expected

    assert [x.message_id for x in await dlq.replay(settings, {"forged"})] == ["forged"]
    async with await aio_pika.connect(secure_network.admin_url) as admin:
        channel = await admin.channel()
        async with (await channel.get_queue(spec.queue.name)).iterator() as incoming:
            back = await asyncio.wait_for(anext(incoming), 5)
            await back.ack()
    assert back.user_id == users[SCHOOL]
    assert back.headers[broker.PUBLISHER_HEADER] == users["vhs-hof"]
    assert (
        broker.authenticated_publisher(back.user_id, back.headers, users[SCHOOL])
        == users["vhs-hof"]
    )
    assert await dlq.purge(settings) == 1
    assert await dlq.list_dead_letters(settings) == []


def test_mistakes_and_an_unreachable_broker_are_one_line(tmp_path: Path) -> None:
    """A selection and `--all` at once, neither, a rate of 0 are usage errors (exit 2); a
    broker that does not answer is exit 1; each one line, never a traceback."""
    config = tmp_path / "school.toml"
    config.write_text(
        '[school]\nid = "vhs-sr"\nname = "VHS SR"\n[admin_db]\nurl = "sqlite://"\n'
        '[state_db]\nurl = "sqlite:///state.db"\n[broker]\nurl = "amqp://guest:guest@127.0.0.1:1/"\n'
        "insecure = true\n",
        encoding="utf-8",
    )

    def run(*args: str) -> tuple[int, int]:
        result = CliRunner().invoke(app, ["dlq", *args, "--config", str(config)])
        assert result.stderr.startswith("error: "), result.stderr
        return result.exit_code, len(result.stderr.splitlines())

    assert run("replay") == (2, 1)
    assert run("replay", "--all", "--reason", "invalid_json") == (2, 1)
    assert run("replay", "--all", "--rate", "0") == (2, 1)
    assert run("list", "--limit", "0") == (2, 1)
    assert run("list") == (1, 1)
    assert run("export", "-") == (1, 1)
