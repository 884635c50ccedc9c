"""Chaos: enrollment sync through adapter kill -9, broker kill -9 and broker restarts.

On a RabbitMQ node of its own (never the machine's broker), a master and two subscribers of
one course run as real `vhs-sync run` processes with SQLite admin and state DBs in a
temporary folder. The network is set up as documented: `adapter.ops.provision` writes its
definitions (a vhost of its own, one broker user per school with least privilege) and they
are loaded into the bench's node with `rabbitmqctl -n NODE import_definitions`; each daemon
connects as its own user and knows each peer's `broker_user`. `--insecure` runs them all as
guest with `insecure = true` instead, for comparison. A writer makes CHANGES changes at all
three schools' admin DBs (registrations, cancellations, re-registrations of cancelled
enrollments), while, one after the other and spread over the writing, an adapter is killed
with SIGKILL and started again (ADAPTER_KILLS times), the broker node is killed with SIGKILL
and booted again on its data (BROKER_KILLS) and the broker inside it is stopped and started
(BROKER_RESTARTS). Then it waits until nothing is pending (every outbox empty, every queue
empty, SETTLE seconds in a row; if the figures are not clean by then, a further GRACE
seconds for the adapters' full scan), stops the adapters with SIGTERM and counts, each
receiver holding every other school's enrollments of the course:

- attempted: changes the writer committed;
- lost: (receiver, origin enrollment) pairs where the receiver has no admin row for an
  enrollment of another school (none recorded as applied, or its row is gone);
- stale: such pairs where the receiver's row has another status than the origin's row;
- duplicated: admin rows at a receiver that stand for other schools' enrollments, beyond one
  per enrollment (rows of the course the writer did not make there, minus the enrollments
  they stand for);
- unexpected exits: adapters that ended without being killed, and SIGTERMs at the end that
  did not end an adapter with exit code 0 within 10 s;
- changed at origin: own rows at their origin whose status is not the writer's;
- course settings: schools whose course lost the master's maximum or was closed;
- dead-lettered: letters in the schools' dead-letter queues, forgeries not counted;
- non-JSON log lines: lines the adapters wrote to stdout or stderr that are not JSON.

With `--forgeries N` a subscriber, vhs-hof, tries N forgeries of varied kinds with its own
broker user during the run (bench/forgery.py), each counted as refused by the broker,
dead-lettered (by school and reason) or APPLIED.

It exits 1 on any loss, staleness, duplicate, changed row or setting, unexpected exit,
forgery applied or unaccounted, or when the network did not come to rest within the
timeout; it is bounded by --timeout and removes its node and files at the end.

    python bench/chaos.py [--changes 10000] [--adapter-kills 50] [--broker-kills 5]
        [--broker-restarts 10] [--rate 25] [--per-commit 5] [--timeout 1800] [--seed 7]
        [--forgeries [N]] [--insecure]
    python bench/chaos.py --quick   # a smoke run: 300 changes, 3 adapter kills, 1 and 1
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import Any

import forgery  # bench/forgery.py, beside this script
from sqlalchemy import Engine, func, insert, select, update
from yarl import URL

from adapter.broker import broker_user
from adapter.config import DatabaseSection, PeerSchool, SchoolSection, Settings
from adapter.desk import add_course
from adapter.domain import CourseRef
from adapter.ops import provision
from adapter.ops.broker_node import BrokerNode
from adapter.store import admin, state
from adapter.store.db import create_admin_schema, make_engine

SCHOOLS = [("vhs-sr", "VHS SR"), ("vhs-ka", "vhs Karlsruhe"), ("vhs-hof", "vhs Hofer Land")]
MASTER = "vhs-sr"
COURSE = "26-CHAOS"
NETWORK = "vhs-sync-chaos"
STOP_WITHIN = 10.0
MAX_PARTICIPANTS = 1_000_000
# What a receiver reads at most: small, so that oversized forgeries stay cheap to carry
# (a relay's batch of 100 events is a tenth of it).
MAX_MESSAGE_BYTES = 256 * 1024
WAITING = 10  # waiting entries at vhs-ka when forging: what a forged place offer aims at


def local_course(school: str) -> str:
    return COURSE if school == MASTER else f"{COURSE}-{school}"


def write_config(folder: Path, school: str, broker_url: str, *, secure: bool) -> Path:
    """The one place where the adapters' configs are written: what every daemon runs with.
    Secure, as documented: the school's own user in `broker_url` and each peer's
    `broker_user` (user names are the school ids); else as guest with `insecure = true`."""
    peers = "".join(
        f'\n[[schools]]\nid = "{i}"\nname = "{n}"\n' + (f'broker_user = "{i}"\n' if secure else "")
        for i, n in SCHOOLS
        if i != school
    )
    path = folder / f"{school}.toml"
    path.write_text(
        f'[school]\nid = "{school}"\nname = "{dict(SCHOOLS)[school]}"\n'
        f'[admin_db]\nurl = "sqlite:///{school}-admin.db"\n'
        f'[state_db]\nurl = "sqlite:///{school}-state.db"\n'
        f'[broker]\nurl = "{broker_url}"\nnetwork = "{NETWORK}"\n'
        f"max_message_bytes = {MAX_MESSAGE_BYTES}\n"
        + ("" if secure else "insecure = true\n")
        + f"[capture]\npoll_interval = 0.1\n{peers}",
        encoding="utf-8",
    )
    return path


def provision_network(node: BrokerNode, folder: Path) -> tuple[dict[str, str], str]:
    """The documented set-up on the bench's own node: `adapter.ops.provision` writes the
    network's definitions (a vhost of its own, one user per school named as the school,
    least privilege) and passwords, as `vhs-sync broker provision` does, and they are loaded
    with `rabbitmqctl -n NODE import_definitions` into this node only. Each school's broker
    URL, and the URL of the node's administrator (guest), who reads the dead letters."""
    (own, name), *peers = SCHOOLS
    base = URL(node.url).with_path(f"/{NETWORK}")
    settings = Settings(
        school=SchoolSection(id=own, name=name),
        admin_db=DatabaseSection(url="sqlite://"),
        state_db=DatabaseSection(url="sqlite://"),
        broker={"url": str(base.with_user(own).with_password(None)), "network": NETWORK},
        schools=[PeerSchool(id=i, name=n, broker_user=i) for i, n in peers],
    )
    definitions, secrets = folder / "definitions.json", folder / "secrets"
    users = provision.provision(settings, definitions, secrets)
    node.ctl(
        "import_definitions", "--format", "json", stdin=definitions.read_text(encoding="utf-8")
    )
    node.ctl("set_permissions", "-p", NETWORK, "guest", ".*", ".*", ".*")
    passwords = provision.passwords_in(secrets, [user.school for user in users])
    urls = {
        user.school: str(base.with_user(user.user).with_password(passwords[user.school]))
        for user in users
    }
    return urls, str(base)


def create_school(folder: Path, school: str) -> None:
    engine = make_engine(f"sqlite:///{folder / (school + '-admin.db')}")
    create_admin_schema(engine)
    with engine.begin() as connection:
        add_course(
            connection,
            local_course(school),
            max_participants=MAX_PARTICIPANTS,
            master_school=MASTER,
            master_number=COURSE,
        )
    engine.dispose()


class Adapter:
    """One school's `vhs-sync run` process, restarted as often as the chaos asks; counts the
    lines it prints that are not JSON."""

    def __init__(self, school: str, config: Path) -> None:
        self.school = school
        self.config = config
        self.process: subprocess.Popen[str] | None = None
        self.started = threading.Event()
        self.non_json = 0
        self.unexpected: list[int] = []
        self.last_lines: deque[str] = deque(maxlen=3)  # what it said before it ended

    def start(self, within: float = 60.0) -> None:
        self.started = threading.Event()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "adapter", "run", "--config", str(self.config)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=self.config.parent,
        )
        threading.Thread(target=self._read, args=(self.process, self.started), daemon=True).start()
        deadline = time.monotonic() + within
        while not self.started.wait(0.2):
            self.check()
            if time.monotonic() > deadline:
                raise TimeoutError(f"the adapter of {self.school} did not start in {within} s")

    def _read(self, process: subprocess.Popen[str], started: threading.Event) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            self.last_lines.append(line.strip()[:300])
            try:
                event = json.loads(line)
            except ValueError:
                self.non_json += 1
                continue
            if isinstance(event, dict) and event.get("event") == "adapter.started":
                started.set()

    def check(self) -> None:
        """An adapter that ended by itself is counted and started again."""
        if self.process is not None and (code := self.process.poll()) is not None:
            self.unexpected.append(code)
            print(f"  unexpected exit of {self.school}: code {code}", flush=True)
            for line in self.last_lines:
                print(f"    {line}", flush=True)
            self.process = None
            self.start()

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(30)
            self.process = None

    def stop(self) -> None:
        """SIGTERM; anything but exit code 0 within STOP_WITHIN is unexpected."""
        if self.process is None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(STOP_WITHIN)
        except subprocess.TimeoutExpired:
            code = -1
            self.kill()
        if code != 0:
            self.unexpected.append(code)
        self.process = None


@dataclass
class Writer:
    """Makes the changes at the schools' admin DBs, in transactions of `per_commit` changes
    at one school, at `rate` changes a second."""

    engines: dict[str, Engine]
    changes: int
    rate: float
    per_commit: int
    rng: random.Random
    made: Counter[str] = field(default_factory=Counter)
    own: dict[str, dict[int, str]] = field(default_factory=dict)  # school: row id -> status
    numbers: dict[str, dict[int, int]] = field(default_factory=dict)  # row id -> participant
    done: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None

    def run(self) -> None:
        try:
            self._run()
        except BaseException as error:
            self.error = error
        finally:
            self.done.set()

    def _run(self) -> None:
        schools = [school for school, _ in SCHOOLS]
        for school in schools:
            self.own.setdefault(school, {})
        started = time.monotonic()
        attempted = 0
        while attempted < self.changes:
            school = schools[(attempted // self.per_commit) % len(schools)]
            count = min(self.per_commit, self.changes - attempted)
            self._commit(school, count)
            attempted += count
            time.sleep(max(0.0, started + attempted / self.rate - time.monotonic()))

    def seed_waiting(self, school: str, count: int) -> None:
        """`count` waiting entries (W) at `school`, in the ledger, which the writer leaves."""
        with self.engines[school].begin() as connection:
            stamp = datetime.now().replace(microsecond=0)
            for _ in range(count):
                row_id = self._register(connection, school, stamp, status="W")
                self.own.setdefault(school, {})[row_id] = "W"

    def targets(self, school: str, status: str) -> list[int]:
        """Participant numbers of the school's enrollments with `status` in the ledger."""
        numbers = self.numbers.get(school, {})
        rows = list(self.own.get(school, {}).items())
        return [numbers[i] for i, s in rows if s == status and i in numbers]

    def _commit(self, school: str, count: int) -> None:
        rows = self.own[school]
        planned: dict[int, str] = {}
        with self.engines[school].begin() as connection:
            stamp = datetime.now().replace(microsecond=0)
            kinds: Counter[str] = Counter()
            for _ in range(count):
                active = [i for i, s in rows.items() if s == "A" and i not in planned]
                cancelled = [i for i, s in rows.items() if s == "S" and i not in planned]
                draw = self.rng.random()
                if cancelled and draw < 0.15:
                    planned[self.rng.choice(cancelled)] = "A"
                    kinds["re-registrations"] += 1
                elif active and draw < 0.4:
                    planned[self.rng.choice(active)] = "S"
                    kinds["cancellations"] += 1
                else:
                    planned[self._register(connection, school, stamp)] = "A"
                    kinds["registrations"] += 1
            for row_id, status in planned.items():
                connection.execute(
                    update(admin.enrollments)
                    .where(admin.enrollments.c.id == row_id)
                    .values(status=status, modified_at=stamp)
                )
        rows.update(planned)
        self.made.update(kinds)

    def _register(self, connection: Any, school: str, stamp: datetime, status: str = "A") -> int:
        serial = sum(self.made.values()) + len(self.own.setdefault(school, {}))
        number = connection.execute(
            insert(admin.participants).values(
                last_name=f"Chaos {serial}",
                first_name=school,
                main_email=f"c{serial}@{school}.example",
                modified_at=stamp,
            )
        ).inserted_primary_key[0]
        row_id = int(
            connection.execute(
                insert(admin.enrollments).values(
                    course_number=local_course(school),
                    participant_number=number,
                    status=status,
                    registered_on=stamp.date(),
                    waitlisted_since=stamp if status == "W" else None,
                    payment_type="Last",
                    modified_at=stamp,
                )
            ).inserted_primary_key[0]
        )
        self.numbers.setdefault(school, {})[row_id] = int(number)
        return row_id


@dataclass(frozen=True)
class Figures:
    lost: int
    stale: int
    duplicated: int
    expected: int
    changed: int = 0  # own rows at their origin whose status is not the writer's

    @property
    def clean(self) -> bool:
        return not (self.lost or self.stale or self.duplicated or self.changed)


def origin_enrollments(engine: Engine, school: str, own_ids: set[int]) -> dict[int, str]:
    """The origin's truth: participant number -> status of each enrollment the writer made."""
    e = admin.enrollments.c
    with engine.connect() as connection:
        rows = connection.execute(
            select(e.id, e.participant_number, e.status).where(
                e.course_number == local_course(school)
            )
        ).all()
    return {row.participant_number: row.status for row in rows if row.id in own_ids}


def figures(admins: dict[str, Engine], states: dict[str, Engine], writer: Writer) -> Figures:
    truth = {
        school: origin_enrollments(admins[school], school, set(writer.own[school]))
        for school, _ in SCHOOLS
    }
    lost = stale = duplicated = expected = changed = 0
    for school, _ in SCHOOLS:
        own = writer.own[school]
        e = admin.enrollments.c
        with admins[school].connect() as connection:
            rows = dict(connection.execute(select(e.id, e.status).where(e.id.in_(list(own)))).all())
        changed += sum(1 for row_id, status in own.items() if rows.get(row_id) != status)
    for receiver, _ in SCHOOLS:
        e = admin.enrollments.c
        with admins[receiver].connect() as connection:
            rows = dict(
                connection.execute(
                    select(e.id, e.status).where(e.course_number == local_course(receiver))
                ).all()
            )
        a = state.applied.c
        with states[receiver].connect() as connection:
            applied = {
                (row.origin_school, row.participant_number): row.enrollment_id
                for row in connection.execute(
                    select(a.origin_school, a.participant_number, a.enrollment_id).where(
                        a.course_master == MASTER, a.course_number == COURSE
                    )
                )
            }
        standing_for = 0
        for origin, enrollments in truth.items():
            if origin == receiver:
                continue
            for participant, status in enrollments.items():
                expected += 1
                row_id = applied.get((origin, participant))
                if row_id is None or row_id not in rows:
                    lost += 1
                    continue
                standing_for += 1
                if rows[row_id] != status:
                    stale += 1
        foreign_rows = len(set(rows) - set(writer.own[receiver]))
        duplicated += max(0, foreign_rows - standing_for)
    return Figures(lost, stale, duplicated, expected, changed)


def views(
    admins: dict[str, Engine], states: dict[str, Engine]
) -> Callable[[str, int], dict[str, str]]:
    """Each school's status of an enrollment (origin, participant number): its own row at
    the origin, the row apply recorded for it elsewhere."""

    def view(origin: str, participant: int) -> dict[str, str]:
        found: dict[str, str] = {}
        e, a = admin.enrollments.c, state.applied.c
        for school, _ in SCHOOLS:
            if school == origin:
                query = select(e.status).where(
                    e.course_number == local_course(school), e.participant_number == participant
                )
            else:
                with states[school].connect() as connection:
                    row_id = connection.execute(
                        select(a.enrollment_id).where(
                            a.origin_school == origin,
                            a.participant_number == participant,
                            a.course_master == MASTER,
                            a.course_number == COURSE,
                        )
                    ).scalar()
                if row_id is None:
                    continue
                query = select(e.status).where(e.id == row_id)
            with admins[school].connect() as connection:
                for status in connection.execute(query).scalars():
                    found[school] = status
        return found

    return view


def ledger(writer: Writer) -> Callable[[str, int], str | None]:
    """The writer's status of an enrollment (origin, participant number)."""

    def status(origin: str, participant: int) -> str | None:
        numbers = writer.numbers.get(origin, {})
        for row_id, current in writer.own.get(origin, {}).items():
            if numbers.get(row_id) == participant:
                return current
        return None

    return status


def settings_changed(admins: dict[str, Engine]) -> list[str]:
    """Schools whose course no longer has the master's settings (its maximum, open)."""
    c = admin.courses.c
    changed = []
    for school, engine in admins.items():
        with engine.connect() as connection:
            row = connection.execute(
                select(c.max_participants, c.registration_open).where(
                    c.number == local_course(school)
                )
            ).one()
        if row.max_participants != MAX_PARTICIPANTS or not row.registration_open:
            changed.append(school)
    return changed


def pending(states: dict[str, Engine], node: BrokerNode) -> int:
    """Outbox rows and queued messages (ready or unacknowledged) not yet done."""
    rows = 0
    for engine in states.values():
        with engine.connect() as connection:
            rows += int(
                connection.execute(select(func.count()).select_from(state.outbox)).scalar_one()
            )
    queued = sum(n for name, n in node.queue_depths().items() if not name.endswith(".dlq"))
    return rows + queued


def chaos(
    node: BrokerNode,
    adapters: dict[str, Adapter],
    plan: list[str],
    writing: float,
    rng: random.Random,
    deadline: float,
) -> Counter[str]:
    """The planned faults one after the other, spread evenly over the `writing` seconds the
    writer is expected to take (a fault that takes longer delays the next ones)."""
    done: Counter[str] = Counter()
    begun = time.monotonic()
    for number, fault in enumerate(plan, 1):
        time.sleep(max(0.0, begun + number * writing / (len(plan) + 1) - time.monotonic()))
        if time.monotonic() > deadline:
            break
        for adapter in adapters.values():
            adapter.check()
        if fault == "adapter":
            adapter = adapters[rng.choice(sorted(adapters))]
            adapter.kill()
            adapter.start()
        elif fault == "broker-kill":
            node.kill()
            node.start()
        else:
            node.restart_app()
        done[fault] += 1
        print(f"  fault {number}/{len(plan)}: {fault}", flush=True)
    return done


FULL = {"changes": 10_000, "adapter_kills": 50, "broker_kills": 5, "broker_restarts": 10}
QUICK = {"changes": 300, "adapter_kills": 3, "broker_kills": 1, "broker_restarts": 1}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--changes", type=int, help="changes the writer makes")
    parser.add_argument("--adapter-kills", type=int, help="adapter kill -9s")
    parser.add_argument("--broker-kills", type=int, help="broker node kill -9s")
    parser.add_argument("--broker-restarts", type=int, help="broker app restarts")
    parser.add_argument("--rate", type=float, help="changes a second")
    parser.add_argument("--per-commit", type=int, default=5, help="changes a transaction")
    parser.add_argument("--settle", type=float, default=10.0, help="s with nothing pending")
    parser.add_argument("--grace", type=float, default=90.0, help="s more for a full scan")
    parser.add_argument("--timeout", type=float, default=1800.0, help="s for the whole run")
    parser.add_argument("--seed", type=int, default=7, help="of the writer and the faults")
    parser.add_argument(
        "--quick", action="store_true", help="a smoke run: 300 changes, 3, 1 and 1 faults"
    )
    parser.add_argument(
        "--forgeries",
        type=int,
        nargs="?",
        const=200,
        default=0,
        help=f"forgeries {forgery.HOSTILE} tries during the run (200 when given without N)",
    )
    parser.add_argument(
        "--insecure",
        action="store_true",
        help="for comparison: every daemon as guest with `insecure = true`, no broker users",
    )
    quick = "--quick" in sys.argv[1:]
    parser.set_defaults(**(QUICK if quick else FULL), rate=20.0 if quick else 25.0)
    args = parser.parse_args()

    def terminate(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminate)
    rng = random.Random(args.seed)
    started = time.monotonic()
    deadline = started + args.timeout
    with (
        tempfile.TemporaryDirectory(prefix="vhs-sync-chaos-") as name,
        BrokerNode(prefix="vhs-chaos") as node,
    ):
        folder = Path(name)
        schools = [school for school, _ in SCHOOLS]
        for school in schools:
            create_school(folder, school)
        if args.insecure:
            urls, admin_url = dict.fromkeys(schools, node.url), node.url
        else:
            urls, admin_url = provision_network(node, folder)
        admins = {s: make_engine(f"sqlite:///{folder / (s + '-admin.db')}") for s in schools}
        states = {s: make_engine(f"sqlite:///{folder / (s + '-state.db')}") for s in schools}
        adapters = {
            s: Adapter(s, write_config(folder, s, urls[s], secure=not args.insecure))
            for s in schools
        }
        writer_rng = random.Random(rng.random())
        writer = Writer(admins, args.changes, args.rate, args.per_commit, writer_rng)
        forger = forger_for(args, urls, writer, random.Random(rng.random()), deadline)
        if forger is not None:
            writer.seed_waiting(forgery.VICTIM, WAITING)
        try:
            for adapter in adapters.values():
                adapter.start()
            writing = threading.Thread(target=writer.run, daemon=True)
            writing.start()
            if forger is not None:
                threading.Thread(target=forger.run, daemon=True).start()
            plan = (
                ["adapter"] * args.adapter_kills
                + ["broker-kill"] * args.broker_kills
                + ["broker-restart"] * args.broker_restarts
            )
            rng.shuffle(plan)
            faults = chaos(node, adapters, plan, args.changes / args.rate, rng, deadline)
            while not writer.done.wait(1):
                for adapter in adapters.values():
                    adapter.check()
            if writer.error is not None:
                raise writer.error
            if forger is not None:
                while not forger.done.wait(1):
                    for adapter in adapters.values():
                        adapter.check()
                if forger.error is not None:
                    raise forger.error
            written = time.monotonic()
            result, rest = settle(node, admins, states, writer, adapters, args, deadline)
        finally:
            for adapter in adapters.values():
                adapter.stop()
        letters = asyncio.run(forgery.read_letters(admin_url, NETWORK, schools))
        verdict = (
            forgery.judge(
                forger.attempts,
                letters,
                views(admins, states),
                ledger(writer),
                bool(settings_changed(admins)),
            )
            if forger is not None
            else None
        )
        result = figures(admins, states, writer)  # after SIGTERM: what the schools hold
        courses_changed = settings_changed(admins)
        for engine in [*admins.values(), *states.values()]:
            engine.dispose()
    dead_letters = sum(1 for letter in letters if not letter.message_id.startswith("forgery-"))
    unexpected = sum(len(adapter.unexpected) for adapter in adapters.values())
    non_json = sum(adapter.non_json for adapter in adapters.values())
    made = writer.made
    setup = "insecure, all as guest" if args.insecure else "provisioned, a broker user per school"
    print(f"set-up: {setup}; forgeries: {args.forgeries}")
    print(
        f"chaos: {sum(made.values())} changes at 3 schools with {faults['adapter']} adapter "
        f"kill -9, {faults['broker-kill']} broker kill -9 and {faults['broker-restart']} broker "
        f"restarts in {written - started:.0f} s; at rest {rest:.0f} s later"
        if rest is not None
        else "chaos: the network did not come to rest within the timeout"
    )
    rows = [
        ("attempted", sum(made.values()), ", ".join(f"{k} {v}" for k, v in sorted(made.items()))),
        ("lost", result.lost, f"of {result.expected} (receiver, enrollment) pairs"),
        ("stale", result.stale, "present with another status than at the origin"),
        ("duplicated", result.duplicated, "admin rows beyond one per enrollment they stand for"),
        ("changed at origin", result.changed, "own rows whose status is not the writer's"),
        ("course settings", len(courses_changed), "schools whose course lost max or opening"),
        ("dead-lettered", dead_letters, "messages in the dead-letter queues (no forgeries)"),
        ("unexpected exits", unexpected, "adapters that ended unkilled or not 0 on SIGTERM"),
        ("non-JSON log lines", non_json, "lines of the adapters that are not JSON"),
    ]
    for label, value, what in rows:
        print(f"{label:<20}{value:>8}   {what}")
    if verdict is not None:
        print_verdict(verdict)
    forged = verdict is not None and not verdict.clean
    failed = not result.clean or courses_changed or unexpected or rest is None or forged
    print("result: FAIL" if failed else "result: PASS")
    return 1 if failed else 0


def forger_for(
    args: argparse.Namespace,
    urls: dict[str, str],
    writer: Writer,
    rng: random.Random,
    deadline: float,
) -> forgery.Forger | None:
    """The hostile school's forger, with its own user's URL, when forgeries are asked for."""
    if args.forgeries <= 0:
        return None
    return forgery.Forger(
        url=urls[forgery.HOSTILE],
        network=NETWORK,
        course=CourseRef(MASTER, COURSE),
        users={school: broker_user(url) for school, url in urls.items()},
        count=args.forgeries,
        seconds=args.changes / args.rate,
        max_bytes=MAX_MESSAGE_BYTES,
        targets=writer.targets,
        rng=rng,
        deadline=deadline,
    )


def print_verdict(verdict: forgery.Verdict) -> None:
    """One row per kind of forgery: what the broker refused, what the victims dead-lettered
    (and why), what took effect."""
    print(
        f"forgeries by {forgery.HOSTILE} as its own broker user: "
        f"{sum(verdict.attempted.values())} tried"
    )
    header = ("kind", "tried", "refused", "dead-lettered", "APPLIED", "unaccounted", "how")
    print(f"{header[0]:<36}{''.join(f'{h:>14}' for h in header[1:6])}   {header[6]}")
    for kind in forgery.KINDS:
        if not verdict.attempted[kind]:
            continue
        how = ", ".join(f"{k} {v}" for k, v in sorted(verdict.reasons.get(kind, {}).items()))
        counts = (
            verdict.attempted[kind],
            verdict.refused[kind],
            verdict.dead_lettered[kind],
            verdict.applied[kind],
            verdict.unaccounted[kind] + verdict.unsent[kind],
        )
        print(f"{kind:<36}{''.join(f'{n:>14}' for n in counts)}   {how}")
    totals = (
        sum(verdict.attempted.values()),
        sum(verdict.refused.values()),
        sum(verdict.dead_lettered.values()),
        sum(verdict.applied.values()),
        sum(verdict.unaccounted.values()) + sum(verdict.unsent.values()),
    )
    print(f"{'all':<36}{''.join(f'{n:>14}' for n in totals)}")


def settle(
    node: BrokerNode,
    admins: dict[str, Engine],
    states: dict[str, Engine],
    writer: Writer,
    adapters: dict[str, Adapter],
    args: argparse.Namespace,
    deadline: float,
) -> tuple[Figures, float | None]:
    """Wait until nothing is pending for `settle` seconds; then, while the figures are not
    clean, up to `grace` seconds more. The figures, and how long it took (None: timed out)."""
    begun = time.monotonic()
    quiet_since: float | None = None
    while time.monotonic() < deadline:
        for adapter in adapters.values():
            adapter.check()
        if pending(states, node):
            quiet_since = None
        elif quiet_since is None:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since >= args.settle:
            break
        time.sleep(1)
    else:
        return figures(admins, states, writer), None
    rest = time.monotonic() - begun
    result = figures(admins, states, writer)
    grace_until = min(deadline, time.monotonic() + args.grace)
    while not result.clean and time.monotonic() < grace_until:
        time.sleep(5)
        result = figures(admins, states, writer)
    return result, rest


if __name__ == "__main__":
    sys.exit(main())
