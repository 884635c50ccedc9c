"""End-to-end throughput and lag of enrollment sync, against the raw broker.

A master and two subscribers of one course, each a separate `vhs-sync run` process with its
own SQLite admin and state DB, on the local RabbitMQ and a network of their own. Two writer
threads make new enrollments at the subscribers' admin DBs; the benchmark reads the
master's JSON log (at debug level) and takes each `enrollment.applied` line as the moment
that enrollment arrived:

- burst: CHANGES enrollments, committed PER_COMMIT to a transaction as fast as the writers
  can, so that the writers are not what is measured; changes/s from the first commit to the
  last apply at the master;
- paced: RATE changes/s for SECONDS, one transaction each; lag from commit at the origin
  to applied at the master (both wall-clock times of this machine), p50 and p99;
- raw: CHANGES messages of one event's size through RabbitMQ alone, persistent, published
  with confirms (batches awaited together, as the relay does) to a quorum queue and
  consumed with acks at the same time; messages/s. The ratio compares the burst with it.
- raw batched, for comparison: the same events in messages of 100, as the relay packs a
  burst; events/s.

Each change travels to the master (with personal data) and to the other subscriber
(anonymised); when many are due at once, the relay packs up to 100 states of one route
into one message (CloudEvents batch mode).

    python bench/e2e.py [--changes 2000] [--rate 100] [--seconds 10] [--per-commit 50]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import aio_pika
from sqlalchemy import Connection, insert

from adapter.config import BrokerSection
from adapter.desk import add_course
from adapter.domain import CourseRef, EnrollmentKey, EnrollmentState, PersonalData, Status
from adapter.messages import enrollment_changed
from adapter.ops import sandbox
from adapter.store import admin
from adapter.store.db import create_admin_schema, make_engine

SCHOOLS = [("vhs-sr", "VHS SR"), ("vhs-ka", "vhs Karlsruhe"), ("vhs-hof", "vhs Hofer Land")]
COURSE = "26-BENCH"
BATCH: int = BrokerSection.model_fields["events_per_message"].default  # as the relay packs


def write_config(folder: Path, school: str, broker: str, network: str) -> Path:
    peers = "".join(f'\n[[schools]]\nid = "{i}"\nname = "{n}"\n' for i, n in SCHOOLS if i != school)
    name = dict(SCHOOLS)[school]
    path = folder / f"{school}.toml"
    path.write_text(
        f'[school]\nid = "{school}"\nname = "{name}"\n'
        f'[admin_db]\nurl = "sqlite:///{school}-admin.db"\n'
        f'[state_db]\nurl = "sqlite:///{school}-state.db"\n'
        f'[broker]\nurl = "{broker}"\nnetwork = "{network}"\ninsecure = true\n'
        f"[capture]\npoll_interval = 0.1\n{peers}",
        encoding="utf-8",
    )
    engine = make_engine(f"sqlite:///{folder / (school + '-admin.db')}")
    create_admin_schema(engine)
    with engine.begin() as connection:
        local = COURSE if school == "vhs-sr" else f"{COURSE}-{school}"
        add_course(
            connection,
            local,
            max_participants=100_000,
            master_school="vhs-sr",
            master_number=COURSE,
        )
    engine.dispose()
    return path


def start_adapters(configs: dict[str, Path]) -> dict[str, subprocess.Popen[str]]:
    """One `vhs-sync run` process per school; only the master's log is read."""
    return {
        school: subprocess.Popen(
            [sys.executable, "-m", "adapter", "run", "--config", str(config)]
            # The master's debug lines name each enrollment it applied.
            + (["--log-level", "DEBUG"] if school == "vhs-sr" else []),
            stdout=subprocess.PIPE if school == "vhs-sr" else subprocess.DEVNULL,
            text=True,
        )
        for school, config in configs.items()
    }


class MasterLog:
    """Follows the master's JSON log: when each (origin, participant) was applied."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.applied: dict[tuple[str, int], float] = {}
        self.started = threading.Event()
        self.thread = threading.Thread(target=self._follow, args=(process,), daemon=True)
        self.thread.start()

    def _follow(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            event = json.loads(line)
            if event["event"] == "adapter.started":
                self.started.set()
            elif event["event"] == "enrollment.applied":
                moment = datetime.fromisoformat(event["timestamp"]).timestamp()
                self.applied.setdefault((event["origin"], event["participant_number"]), moment)


def enroll_many(connection: Connection, course: str, school: str, numbers: range) -> list[int]:
    """New participants booked into a course, one statement per table (a bulk import);
    returns their participant numbers."""
    stamp = datetime.now().replace(microsecond=0)
    people = [
        {
            "last_name": f"Person {n}",
            "first_name": school,
            "main_email": f"p{n}@{school}.example",
            "modified_at": stamp,
        }
        for n in numbers
    ]
    participants = admin.participants.c.number
    inserted = connection.execute(
        insert(admin.participants).returning(participants, sort_by_parameter_order=True), people
    )
    added = [int(number) for number in inserted.scalars()]
    connection.execute(
        insert(admin.enrollments),
        [
            {
                "course_number": course,
                "participant_number": number,
                "status": "A",
                "registered_on": stamp.date(),
                "payment_type": "Last",
                "modified_at": stamp,
            }
            for number in added
        ],
    )
    return added


def make_changes(
    folder: Path,
    school: str,
    count: int,
    interval: float,
    out: dict[tuple[str, int], float],
    per_commit: int = 1,
) -> None:
    """New enrollments at one subscriber, `per_commit` to a transaction, one transaction
    every `interval` seconds (0: as fast as they commit)."""
    engine = make_engine(f"sqlite:///{folder / (school + '-admin.db')}")
    start = time.monotonic()
    for first in range(0, count, per_commit):
        if interval:
            time.sleep(max(0.0, start + first * interval - time.monotonic()))
        with engine.begin() as connection:
            numbers = enroll_many(
                connection,
                f"{COURSE}-{school}",
                school,
                range(first, min(count, first + per_commit)),
            )
        moment = time.time()
        out.update(((school, number), moment) for number in numbers)
    engine.dispose()


async def sync_round(
    broker: str, changes: int, rate: float, per_commit: int = 1
) -> tuple[dict[tuple[str, int], float], dict[tuple[str, int], float]]:
    """Three adapter processes; `changes` enrollments over both subscribers at `rate` per
    second (0: as fast as possible), `per_commit` to a transaction. Returns commit and apply
    times."""
    network = f"vhs-sync-bench-{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory(prefix="vhs-sync-bench-") as name:
        folder = Path(name)
        configs = {school: write_config(folder, school, broker, network) for school, _ in SCHOOLS}
        processes = start_adapters(configs)
        master = MasterLog(processes["vhs-sr"])
        committed: dict[tuple[str, int], float] = {}
        try:
            master.started.wait(30)
            await asyncio.sleep(2)  # every adapter has joined the course and bound its queue
            interval = 2 / rate if rate else 0.0
            await asyncio.gather(
                *(
                    asyncio.to_thread(
                        make_changes, folder, school, changes // 2, interval, committed, per_commit
                    )
                    for school in ("vhs-ka", "vhs-hof")
                )
            )
            deadline = time.monotonic() + 300
            # The count grows in the log reader's thread; polling it is the simple way.
            while len(master.applied) < len(committed) and time.monotonic() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.1)
        finally:
            for process in processes.values():
                process.terminate()
            for process in processes.values():
                process.wait(30)
            await remove_network(broker, network)
    return committed, master.applied


async def remove_network(broker: str, network: str) -> None:
    await sandbox.remove_network(broker, network, [school for school, _ in SCHOOLS])


def sample_body() -> bytes:
    key = EnrollmentKey("vhs-ka", 123456, CourseRef("vhs-sr", COURSE))
    personal = PersonalData("Person 1000", "vhs-ka", "p1000@vhs-ka.example", None)
    state = EnrollmentState(key, Status.REGISTERED, datetime.now(UTC).date(), personal)
    event = enrollment_changed(state, version=1, event_id=str(uuid.uuid4()), time=datetime.now(UTC))
    return event.model_dump_json().encode()


async def raw_baseline(broker: str, count: int, body: bytes, batch: int = 500) -> float:
    """Messages/s through RabbitMQ alone."""
    connection = await aio_pika.connect_robust(broker)
    async with connection:
        publish = await connection.channel(publisher_confirms=True)
        consume = await connection.channel()
        await consume.set_qos(prefetch_count=256)
        name = f"vhs-sync-bench-raw-{uuid.uuid4().hex[:8]}"
        queue = await consume.declare_queue(
            name, durable=True, arguments={"x-queue-type": "quorum"}
        )
        received = 0
        done = asyncio.Event()

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            nonlocal received
            await message.ack()
            received += 1
            if received >= count:
                done.set()

        await queue.consume(on_message)
        started = time.monotonic()
        for start in range(0, count, batch):
            await asyncio.gather(
                *(
                    publish.default_exchange.publish(
                        aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                        routing_key=name,
                    )
                    for _ in range(min(batch, count - start))
                )
            )
        await asyncio.wait_for(done.wait(), 120)
        elapsed = time.monotonic() - started
        await consume.queue_delete(name)
    return count / elapsed


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=int, default=2000, help="changes in the burst")
    parser.add_argument("--rate", type=float, default=100.0, help="changes/s, paced round")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the paced round")
    parser.add_argument(
        "--per-commit", type=int, default=50, help="enrollments per transaction in the burst"
    )
    parser.add_argument("--broker", default="amqp://guest:guest@127.0.0.1:5672/")
    args = parser.parse_args()

    committed, applied = await sync_round(args.broker, args.changes, 0, args.per_commit)
    missing = len(committed) - len(applied)
    throughput = len(applied) / (max(applied.values()) - min(committed.values()))
    paced_committed, paced_applied = await sync_round(
        args.broker, int(args.rate * args.seconds), args.rate
    )
    lags = [
        paced_applied[key] - moment
        for key, moment in paced_committed.items()
        if key in paced_applied
    ]
    body = sample_body()
    raw = await raw_baseline(args.broker, args.changes, body)
    batch_body = b"[" + b",".join([body] * BATCH) + b"]"
    raw_batched = await raw_baseline(args.broker, max(1, args.changes // BATCH), batch_body)
    ratio = throughput / raw
    p99 = percentile(lags, 0.99)
    writing = max(committed.values()) - min(committed.values())

    print(
        f"end to end, burst of {len(committed)} changes: {throughput:7.0f} changes/s"
        + (f" ({missing} not applied)" if missing else "")
        + f" (the writers committed them in {writing:.2f} s)"
    )
    print(
        f"end to end, {args.rate:.0f} changes/s for {args.seconds:.0f} s: lag p50 "
        f"{percentile(lags, 0.5) * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, "
        f"max {max(lags) * 1000:.0f} ms"
    )
    print(f"raw RabbitMQ, {len(body)}-byte messages, confirms + acks: {raw:7.0f} msgs/s")
    print(f"ratio end to end / raw: {ratio:.2f}")
    print(
        f"raw RabbitMQ, {BATCH} such events a message ({len(batch_body) // 1024} KiB): "
        f"{raw_batched * BATCH:7.0f} events/s (ratio {throughput / (raw_batched * BATCH):.2f})"
    )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS of this process: {peak:.0f} MiB")
    print(f"target throughput >= 0.5 x raw: {'PASS' if ratio >= 0.5 else 'MISS'}")
    print(f"target lag p99 < 500 ms at {args.rate:.0f}/s: {'PASS' if p99 < 0.5 else 'MISS'}")


if __name__ == "__main__":
    asyncio.run(main())
