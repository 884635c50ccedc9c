"""How fast the dlq tools pass over a DLQ: `dlq list` copies every letter back to the tail.

    .venv/bin/python bench/dlq.py [--letters 2000] [--url amqp://guest:guest@127.0.0.1:5672/]

Fills a network of its own (removed afterwards) with letters of one event's size, as the
receiver writes them, takes a tenth of them and gives them back (as the old listing did),
then times three listings (each must find every letter once), one replay of a tenth of them
(a selection by id) and one selective purge; prints letters/s for each."""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid

import aio_pika

from adapter import broker
from adapter.config import DatabaseSection, SchoolSection, Settings
from adapter.ops import dlq
from adapter.ops.sandbox import remove_network

BODY = b'{"specversion": "1.0", "id": "x", "data": {"participant": {"last_name": "Nowak"}}}' * 8


async def main(url: str, count: int) -> None:
    network = f"vhs-sync-bench-dlq-{uuid.uuid4().hex[:6]}"
    settings = Settings(
        school=SchoolSection(id="vhs-sr", name="VHS SR"),
        admin_db=DatabaseSection(url="sqlite://"),
        state_db=DatabaseSection(url="sqlite://"),
        broker={"url": url, "network": network, "insecure": True},
    )
    spec = broker.topology(network, "vhs-sr", delivery_limit=20)
    try:
        async with await aio_pika.connect(url) as connection:
            channel = await connection.channel(publisher_confirms=True)
            declared = await broker.declare(channel, spec, insecure=True)
            headers = {broker.REASON_HEADER: "unknown_course", broker.ROUTING_KEY_HEADER: "x"}
            for start in range(0, count, 200):
                await asyncio.gather(
                    *(
                        declared.dead_letters.publish(
                            aio_pika.Message(
                                BODY, message_id=f"m-{n}", headers=headers, user_id="guest"
                            ),
                            broker.DEAD_LETTER_KEY,
                        )
                        for n in range(start, min(start + 200, count))
                    )
                )
            dlq_queue = await channel.get_queue(spec.dlq.name)
            given_back = [await dlq_queue.get() for _ in range(count // 10)]
            for message in given_back:
                await message.nack(requeue=True)
        for _ in range(3):
            started = time.perf_counter()
            listed = await dlq.list_dead_letters(settings)
            took = time.perf_counter() - started
            ids = [letter.message_id for letter in listed]
            twice = len(ids) - len(set(ids))
            print(
                f"list:   {len(ids)} letters in {took:.2f} s, {count / took:.0f} letters/s, "
                f"{twice} twice"
            )
        ids = {f"m-{n}" for n in range(0, count, 10)}
        started = time.perf_counter()
        replayed = await dlq.replay(settings, ids)
        took = time.perf_counter() - started
        print(f"replay: {len(replayed)} of {count} in {took:.2f} s, {count / took:.0f} letters/s")
        started = time.perf_counter()
        purged = await dlq.purge(
            settings, dlq.Selection.of(ids={f"m-{n}" for n in range(1, count, 10)})
        )
        took = time.perf_counter() - started
        print(f"purge:  {purged} of {len(listed) - len(replayed)} in {took:.2f} s")
    finally:
        await remove_network(url, network, ["vhs-sr"])


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--letters", type=int, default=2000)
    parser.add_argument("--url", default="amqp://guest:guest@127.0.0.1:5672/")
    arguments = parser.parse_args()
    asyncio.run(main(arguments.url, arguments.letters))
