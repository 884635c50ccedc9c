"""End-to-end throughput and lag of enrollment sync, against the raw broker, in one run.

A master and two subscribers of one shared course run as in-process `Daemon`s (the sandbox
the demo uses: SQLite admin and state DBs in a temporary folder, the local RabbitMQ, a fresh
network that is deleted afterwards). The subscribers' staff make CHANGES enrollment changes
in their admin DBs through `adapter.desk` (new enrollments, and cancellations of enrollments
made and synced before the round), one committed transaction per change (or per GROUP), in
one writer thread per school. A structlog processor notes when the master's receiver logs
`enrollment.applied` for each of them (see bench/README.md for why that is the moment).

- raw: the same number of messages of the same size through RabbitMQ alone: published with
  confirms in concurrent batches as the relay does, consumed with acks as the receiver does;
- burst: all changes as fast as the writers commit them; changes/s from the first commit to
  the last apply at the master;
- paced: the changes at RATE changes/s; lag from commit at the origin to applied at the
  master, p50 and p99, split into commit -> captured and captured -> applied.

    python bench/e2e.py [--changes 2000] [--rate 100] [--poll-interval 0.2]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import multiprocessing
import resource
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Mapping, MutableMapping
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import aio_pika
import structlog
from aio_pika.abc import AbstractIncomingMessage
from sqlalchemy import create_engine, func, select

from adapter import broker
from adapter.capture.outbox import enqueue_states
from adapter.config import BrokerSection, CaptureSection
from adapter.desk import Person, enroll, set_status
from adapter.domain import CourseRef, EnrollmentKey, EnrollmentState, PersonalData, Status
from adapter.ops.sandbox import Sandbox, SandboxSchool
from adapter.store import state
from adapter.store.db import make_engine, migrate_state

MASTER = ("vhs-sr", "VHS SR")
SUBSCRIBERS = (("vhs-ka", "vhs Karlsruhe"), ("vhs-vs", "vhs Villingen-Schwenningen"))
BROKER = "amqp://guest:guest@127.0.0.1:5672/"

Key = tuple[str, int, str]  # (origin school, participant number, status)


# -- observing the daemons ------------------------------------------------------------------


class Recorder:
    """A structlog processor: when each change was captured at its origin and applied at the
    master. Info and debug events end here; warnings and errors go on to stderr."""

    def __init__(self, master: str) -> None:
        self.master = master
        self.captured: dict[Key, float] = {}
        self.applied: dict[Key, float] = {}
        self.warnings = 0

    def reset(self) -> None:
        self.captured.clear()
        self.applied.clear()

    def __call__(self, _logger: Any, method: str, event: MutableMapping[str, Any]) -> Any:
        name = event.get("event")
        if name == "enrollment.applied" and event.get("school") == self.master:
            key = (event["origin"], event["participant_number"], event["status"])
            self.applied.setdefault(key, time.monotonic())
        elif name == "enrollment.captured" and event.get("school") != self.master:
            key = (event["school"], event["participant_number"], event["status"])
            self.captured.setdefault(key, time.monotonic())
        if method in ("debug", "info"):
            raise structlog.DropEvent
        self.warnings += 1
        return event


def observe(recorder: Recorder) -> None:
    structlog.configure(
        processors=[
            recorder,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.dev.ConsoleRenderer(colors=False),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=False,
    )


# -- the staff of the subscribers -------------------------------------------------------------


@dataclass
class Staff:
    """One subscriber's changes: new enrollments, and every `cancel_every`-th change a
    cancellation of an enrollment seeded (and synced) before the round. Plain data, for
    the staff's own process."""

    school: str
    name: str
    admin_url: str
    course: str
    changes: int
    cancel_every: int
    seeded: list[tuple[int, int]] = field(default_factory=list)  # (enrollment, participant)

    @property
    def cancellations(self) -> int:
        return self.changes // self.cancel_every if self.cancel_every else 0

    def person(self, n: int) -> Person:
        return Person(
            f"Teilnehmer {n}",
            self.name,
            birthday=date(1980, 1, 1),
            main_email=f"t{n}@{self.school}.example",
            main_phone="0721 555 0100",
        )

    def seed(self) -> list[Key]:
        """The enrollments the round cancels, made (in one transaction) before it."""
        engine = make_engine(self.admin_url)
        with engine.begin() as connection:
            for n in range(self.cancellations):
                self.seeded.append(enroll(connection, self.course, self.person(-n - 1)))
        engine.dispose()
        return [(self.school, number, Status.REGISTERED.value) for _, number in self.seeded]


def make_changes(staff: Staff, start_at: float, interval: float, group: int) -> dict[Key, float]:
    """The staff's work, in a process of its own as the admin product is: `group` changes
    per transaction, one transaction every `interval` seconds from `start_at` (0: as fast
    as they commit). Returns each change's commit time (CLOCK_MONOTONIC, shared by all
    processes of the machine)."""
    engine = make_engine(staff.admin_url)
    cancels = iter(staff.seeded)
    committed: dict[Key, float] = {}
    made = 0
    time.sleep(max(0.0, start_at - time.monotonic()))
    started = time.monotonic()
    while made < staff.changes:
        if interval:
            time.sleep(max(0.0, started + made / group * interval - time.monotonic()))
        keys = []
        with engine.begin() as connection:
            for n in range(made, min(made + group, staff.changes)):
                if staff.cancel_every and n % staff.cancel_every == staff.cancel_every - 1:
                    enrollment, number = next(cancels)
                    set_status(connection, enrollment, Status.CANCELLED)
                    status = Status.CANCELLED
                else:
                    number, _ = enroll(connection, staff.course, staff.person(n))
                    status = Status.REGISTERED
                keys.append((staff.school, number, status.value))
        committed.update(dict.fromkeys(keys, time.monotonic()))
        made += len(keys)
    engine.dispose()
    return committed


# -- one round of end-to-end sync -------------------------------------------------------------


@dataclass
class Round:
    committed: dict[Key, float]
    applied: dict[Key, float]
    captured: dict[Key, float]
    writers_took: float
    check: str  # what the master's databases hold at the end

    @property
    def last_commit(self) -> float:
        return max(self.committed.values())

    @property
    def last_apply(self) -> float:
        return max((self.applied[key] for key in self.committed if key in self.applied), default=0)

    @property
    def missing(self) -> int:
        return sum(key not in self.applied for key in self.committed)

    def throughput(self) -> float:
        done = len(self.committed) - self.missing
        return done / (self.last_apply - min(self.committed.values())) if done else 0.0

    def lags(self, start: Mapping[Key, float], end: Mapping[Key, float]) -> list[float]:
        return [end[key] - start[key] for key in self.committed if key in start and key in end]


async def sync_round(
    args: argparse.Namespace,
    recorder: Recorder,
    pool: ProcessPoolExecutor,
    *,
    paced: bool,
    folder: Path,
) -> Round:
    """A fresh network of three schools; CHANGES changes at the two subscribers, as fast as
    they commit or at RATE per second; waits until the master applied them all."""
    recorder.reset()
    tag = "paced" if paced else "burst"
    sandbox = Sandbox(
        args.broker,
        lambda name: f"sqlite:///{folder / f'{tag}-{name}.db'}",
        prefix="vhs-sync-bench",
        poll_interval=args.poll_interval,
        batch_size=args.batch_size,
    )
    for school_id, name in (MASTER, *SUBSCRIBERS):
        sandbox.add_school(school_id, name, master=MASTER[0], max_participants=1_000_000)
    per_school = [args.changes // 2 + args.changes % 2, args.changes // 2]
    cancel_every = round(1 / args.cancel_share) if args.cancel_share else 0
    staff = [
        Staff(
            school.id,
            school.name,
            school.settings.admin_db.url,
            school.course,
            count,
            cancel_every,
        )
        for school, count in zip(
            (sandbox.schools[school_id] for school_id, _ in SUBSCRIBERS), per_school, strict=True
        )
    ]
    try:
        await sandbox.start_all()
        seeds = [key for member in staff for key in member.seed()]
        await sandbox.wait_until(
            lambda: all(key in recorder.applied for key in seeds), within=60, what="seeding"
        )
        interval = len(staff) * args.group / args.rate if paced else 0.0
        loop = asyncio.get_running_loop()
        start_at = time.monotonic() + 2  # time enough for the processes to start
        writers = [
            loop.run_in_executor(pool, make_changes, member, start_at, interval, args.group)
            for member in staff
        ]
        committed: dict[Key, float] = {}
        for done in await asyncio.gather(*writers):
            committed.update(done)
        writers_took = max(committed.values()) - min(committed.values())
        try:
            await sandbox.wait_until(
                lambda: all(key in recorder.applied for key in committed),
                within=args.timeout,
                what="apply of every change at the master",
            )
        except TimeoutError as error:
            print(f"  ! {error}", file=sys.stderr)
        check = master_check(sandbox.schools[MASTER[0]], staff, len(seeds))
        return Round(
            committed, dict(recorder.applied), dict(recorder.captured), writers_took, check
        )
    finally:
        await sandbox.close()


def master_check(master: SandboxSchool, staff: list[Staff], seeds: int) -> str:
    """The master's admin DB and state DB, as a check of what the log said."""
    statuses = Counter(row["status"] for row in master.enrollment_rows())
    cancelled = sum(member.cancellations for member in staff)
    registered = seeds + sum(member.changes for member in staff) - 2 * cancelled
    with master.state.connect() as connection:
        mapped = connection.execute(select(func.count()).select_from(state.applied)).scalar_one()
    return (
        f"master's admin DB: {statuses[Status.REGISTERED]} registered, "
        f"{statuses[Status.CANCELLED]} cancelled (expected {registered}, {cancelled}); "
        f"state DB: {mapped} mapped (expected {registered + cancelled})"
    )


# -- the raw broker ---------------------------------------------------------------------------


def message_sizes() -> list[int]:
    """The bodies one new enrollment at a subscriber puts in its outbox (anonymised for the
    subscribers, personal for the master), built by the adapter's own code."""
    engine = create_engine("sqlite://")
    migrate_state(engine)
    key = EnrollmentKey("vhs-ka", 123456, CourseRef(MASTER[0], "26-ABC123"))
    personal = PersonalData("Teilnehmer 1234", "vhs Karlsruhe", "t1234@vhs-ka.example", "0721 5")
    current = EnrollmentState(key, Status.REGISTERED, date.today(), personal)
    version = int(time.time() * 1_000_000)
    with engine.begin() as connection:
        enqueue_states(connection, "vhs-ka", [(current, version)], datetime.now(UTC))
        bodies = connection.execute(select(state.outbox.c.body)).scalars().all()
    engine.dispose()
    return [len(body) for body in bodies]


async def raw_baseline(url: str, count: int, size: int, batch_size: int, prefetch: int) -> float:
    """Messages/s through RabbitMQ alone: a throwaway network with the adapter's own
    topology (topic exchange, quorum queue); persistent, mandatory messages published in
    concurrent batches awaited together with confirms, as the relay does, and consumed at
    the same time with one acknowledgement per batch, as the receiver does."""
    network = f"vhs-sync-bench-raw-{uuid.uuid4().hex[:10]}"
    spec = broker.topology(network, "raw", delivery_limit=20)
    connection = await broker.connect(url, name="vhs-sync bench raw")
    async with connection:
        publishing = await connection.channel(publisher_confirms=True, on_return_raises=True)
        consuming = await connection.channel()
        await consuming.set_qos(prefetch_count=prefetch)
        declared = await broker.declare(publishing, spec)
        queue = await consuming.get_queue(spec.queue.name)
        await queue.bind(declared.exchange, "raw.#")
        inbox: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()
        body = b"x" * size
        user = broker.broker_user(url)

        async def consume() -> None:
            received = 0
            while received < count:
                batch = [await inbox.get()]
                while len(batch) < batch_size and not inbox.empty():
                    batch.append(inbox.get_nowait())
                await batch[-1].ack(multiple=True)
                received += len(batch)

        async def publish(n: int) -> None:
            message = aio_pika.Message(
                body,
                content_type="application/cloudevents+json",
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                message_id=f"raw-{n}",
                user_id=user,
                app_id="vhs-sync",
            )
            await declared.exchange.publish(message, routing_key="raw.1", mandatory=True)

        try:
            tag = await queue.consume(inbox.put)
            started = time.monotonic()
            consumer = asyncio.create_task(consume())
            for start in range(0, count, batch_size):
                await asyncio.gather(*map(publish, range(start, min(start + batch_size, count))))
            await asyncio.wait_for(consumer, 120)
            took = time.monotonic() - started
            await queue.cancel(tag)
        finally:
            await publishing.queue_delete(spec.queue.name)
            await publishing.queue_delete(spec.dlq.name)
            await publishing.exchange_delete(spec.exchange.name)
            await publishing.exchange_delete(spec.dead_letters.name)
    return count / took


# -- figures ----------------------------------------------------------------------------------


def percentile(values: list[float], share: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(share * len(ordered)) - 1))]


def ms(values: list[float], share: float) -> str:
    return f"{percentile(values, share) * 1000:6.0f} ms" if values else "     - ms"


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def report_round(title: str, result: Round) -> None:
    missing = f", {result.missing} NOT applied" if result.missing else ""
    took = result.writers_took
    print(f"{title}: {len(result.committed)} changes committed in {took:.1f} s{missing}")
    print(f"  {result.check}")


def spread(label: str, values: list[float], *, top: bool = False) -> None:
    line = f"  {label:<36} p50 {ms(values, 0.5)}  p99 {ms(values, 0.99)}"
    print(line + (f"  max {ms(values, 1)}" if top else ""))


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--changes", type=int, default=2000, help="changes per round (burst and paced)"
    )
    parser.add_argument("--rate", type=float, default=100.0, help="changes/s of the paced round")
    parser.add_argument("--group", type=int, default=1, help="changes per admin transaction")
    parser.add_argument(
        "--cancel-share", type=float, default=0.25, help="share of changes that cancel"
    )
    parser.add_argument(
        "--poll-interval",
        type=float,
        default=CaptureSection.model_fields["poll_interval"].default,
        help="capture poll interval, s (default: the adapter's default)",
    )
    parser.add_argument(
        "--batch-size", type=int, default=BrokerSection.model_fields["batch_size"].default
    )
    parser.add_argument("--raw-messages", type=int, default=0, help="default: 2 x changes")
    parser.add_argument("--timeout", type=float, default=120.0, help="s to wait for the apply")
    parser.add_argument("--skip", choices=["raw", "burst", "paced"], action="append", default=[])
    parser.add_argument("--broker", default=BROKER)
    return parser.parse_args()


async def main() -> None:
    args = parse()
    recorder = Recorder(MASTER[0])
    observe(recorder)
    sizes = message_sizes()
    size = round(sum(sizes) / len(sizes))
    print(
        f"vhs-sync end to end: master {MASTER[0]}, subscribers "
        f"{', '.join(s for s, _ in SUBSCRIBERS)}; {args.changes} changes per round "
        f"({args.cancel_share:.0%} cancellations, {args.group} per transaction), "
        f"poll interval {args.poll_interval} s, batch size {args.batch_size}"
    )
    print(f"message bodies {sizes} bytes; each change: 2 publishes, 3 deliveries (1 skipped)")

    raw = throughput = p99 = None
    if "raw" not in args.skip:
        count = args.raw_messages or 2 * args.changes
        raw = await raw_baseline(
            args.broker, count, size, args.batch_size, BrokerSection().prefetch
        )
        print(f"raw RabbitMQ, {count} x {size} B, confirms + acks: {raw:8.0f} msgs/s")

    with (
        tempfile.TemporaryDirectory(prefix="vhs-sync-bench-") as name,
        ProcessPoolExecutor(
            len(SUBSCRIBERS), mp_context=multiprocessing.get_context("spawn")
        ) as pool,
    ):
        if "burst" not in args.skip:
            burst = await sync_round(args, recorder, pool, paced=False, folder=Path(name))
            report_round("burst", burst)
            throughput = burst.throughput()
            commit_rate = len(burst.committed) / burst.writers_took
            behind = burst.last_apply - burst.last_commit
            print(
                f"  end to end: {throughput:8.0f} changes/s (staff committed {commit_rate:.0f}/s; "
                f"last apply {behind:.1f} s after the last commit)"
            )
        if "paced" not in args.skip:
            paced = await sync_round(args, recorder, pool, paced=True, folder=Path(name))
            report_round(f"paced at {args.rate:.0f}/s", paced)
            total = paced.lags(paced.committed, paced.applied)
            to_capture = paced.lags(paced.committed, paced.captured)
            to_apply = paced.lags(paced.captured, paced.applied)
            spread("lag commit -> applied at master", total, top=True)
            spread("    commit -> captured at origin", to_capture)
            spread("    captured -> applied at master", to_apply)
            p99 = percentile(total, 0.99) if total and not paced.missing else None

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS of this process (3 daemons, writers, raw client): {peak:.0f} MiB")
    if recorder.warnings:
        print(f"{recorder.warnings} warnings or errors logged (on stderr)")
    if raw is not None and throughput is not None:
        ratio = throughput / raw
        print(f"ratio end to end / raw: {ratio:.2f}")
        print(f"target throughput >= 0.5 x raw ({0.5 * raw:.0f}/s): {verdict(ratio >= 0.5)}")
    if "paced" not in args.skip:
        shown = f"{p99 * 1000:.0f} ms" if p99 is not None else "not all applied"
        ok = p99 is not None and p99 < 0.5
        print(f"target lag p99 < 500 ms at {args.rate:.0f}/s ({shown}): {verdict(ok)}")


if __name__ == "__main__":
    asyncio.run(main())
