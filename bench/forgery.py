"""Forged origins for `chaos.py --forgeries N`: a hostile school's attempts, and their fate.

The hostile school is a subscriber of the course (vhs-hof) using its own broker user and
password, as any school's operator could. During the chaos run it tries N forgeries, the
kinds in turn (KINDS), spread over the writing, each with a message id `forgery-<kind>-<n>`
(and, where it is an event, the same event id) so that its dead letters can be found. Each
attempt ends as one of:

- refused: the broker closed the channel (ACCESS_REFUSED, or PRECONDITION_FAILED for a
  `user_id` that is not the connection's); the forger opens a new channel and goes on;
- dead-lettered: a letter with its id is in a school's dead-letter queue (by school and
  reason, read at the end and left there);
- APPLIED: what it forged took effect (an enrollment at some school now has the forged
  status while its origin's ledger says otherwise, a course's maximum or registration was
  changed, a waiting entry took a place, or the broker let it bind a route or write into a
  dead-letter exchange that is not its own);
- unaccounted: the broker took it, and no school dead-lettered it or shows its effect.

Only APPLIED and unaccounted are failures; an attempt the broker could not be reached for
(it was being killed) is tried again until it is sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import threading
import time
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractConnection
from aio_pika.exceptions import DeliveryError
from aiormq.exceptions import ChannelAccessRefused, ChannelPreconditionFailed

from adapter import broker
from adapter.domain import CourseRef, EnrollmentKey, EnrollmentState, PersonalData, Status
from adapter.domain.capacity import CourseSettings
from adapter.mapping import routes
from adapter.messages import (
    EVENT_CONTENT_TYPE,
    ORIGIN_HEADER,
    course_settings_changed,
    enrollment_changed,
    place_offered,
)

HOSTILE = "vhs-hof"
VICTIM = "vhs-ka"  # the school whose name the forged cancellations and offers claim
# A version that wins against every real change of the run yet lies within the receivers'
# bound (an hour ahead of their clock): an applied forgery would stick and show as stale.
AHEAD = timedelta(minutes=30)

KINDS = [
    "cancel as vhs-ka, own route",
    "cancel as vhs-ka, vhs-ka's route",
    "settings as master, own route",
    "settings as master, master's route",
    "offer as master, own route",
    "offer as master, master's route",
    "bind master's .personal",
    "into another's dead letters",
    "user_id of another",
    "string participant number",
    "version 2**62",
    "oversized body",
]
# The kinds whose forged event targets one enrollment (origin, participant, forged status).
ENROLLMENT_KINDS = {KINDS[0], KINDS[1], KINDS[7], KINDS[8], KINDS[9], KINDS[10]}
SETTINGS_KINDS = {KINDS[2], KINDS[3]}
OFFER_KINDS = {KINDS[4], KINDS[5]}
# The kinds for which the broker's consent is the breach itself.
BROKER_KINDS = {KINDS[6], KINDS[7]}


@dataclass
class Attempt:
    id: str
    kind: str
    outcome: str = "unsent"  # refused, accepted, unroutable, unsent
    refusal: str = ""
    target: tuple[str, int, str] | None = None  # origin, participant, forged status


@dataclass
class Forger:
    """Tries `count` forgeries over `seconds` as the hostile school's user at `url`.

    `targets(school, status)` gives the participant numbers of that school's enrollments with
    that status in the writer's ledger (the forger aims at real ones)."""

    url: str
    network: str
    course: CourseRef
    users: dict[str, str]
    count: int
    seconds: float
    max_bytes: int
    targets: Callable[[str, str], list[int]]
    rng: random.Random
    deadline: float
    attempts: list[Attempt] = field(default_factory=list)
    done: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None

    def run(self) -> None:
        # The broker is killed under it: the client libraries' tracebacks of lost connections
        # are expected here, and would only hide the figures.
        for name in ("aio_pika", "aiormq", "asyncio"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
        warnings.filterwarnings("ignore", category=RuntimeWarning, module="aio_pika")
        try:
            asyncio.run(self._run())
        except BaseException as error:
            self.error = error
        finally:
            self.done.set()

    async def _run(self) -> None:
        begun = time.monotonic()
        connection: AbstractConnection | None = None
        channel: AbstractChannel | None = None
        for number in range(self.count):
            due = begun + number * self.seconds / max(self.count, 1)
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            kind = KINDS[number % len(KINDS)]
            attempt = Attempt(f"forgery-{KINDS.index(kind):02d}-{number}", kind)
            self.attempts.append(attempt)
            while time.monotonic() < self.deadline:
                try:
                    if connection is None or connection.is_closed:
                        connection = await asyncio.wait_for(aio_pika.connect(self.url), 10)
                        channel = None
                    if channel is None or channel.is_closed:
                        channel = await connection.channel(publisher_confirms=True)
                    await asyncio.wait_for(self._try(channel, attempt), 10)
                    attempt.outcome = "accepted"
                except (ChannelAccessRefused, ChannelPreconditionFailed) as error:
                    attempt.outcome, attempt.refusal = "refused", type(error).__name__
                    channel = None  # the broker closed it: a new one for the next attempt
                except DeliveryError:
                    attempt.outcome = "unroutable"
                except Exception:  # the broker is being killed or restarted: try again
                    if connection is not None:
                        await _close_quietly(connection)
                    connection = channel = None
                    await asyncio.sleep(1)
                    continue
                break
        if connection is not None:
            await _close_quietly(connection)

    async def _try(self, channel: AbstractChannel, attempt: Attempt) -> None:
        """One forgery of `attempt.kind`; raises what the broker answers."""
        kind, hostile_user = attempt.kind, self.users[HOSTILE]
        course, network = self.course, self.network
        now = datetime.now(UTC)
        ahead = int((now + AHEAD).timestamp() * 1_000_000)
        flip = int(attempt.id.rsplit("-", 1)[1]) // len(KINDS) % 2 == 0
        exchange_name, user_id = network, hostile_user
        headers: dict[str, Any] = {ORIGIN_HEADER: HOSTILE}  # its own adapter passes them over
        if kind in (KINDS[0], KINDS[1], KINDS[7], KINDS[8]):
            origin = VICTIM
            body = self._enrollment(attempt, origin, Status.CANCELLED, ahead, personal=flip)
            headers[broker.PUBLISHER_HEADER] = self.users[VICTIM]
            view = routes.personal if flip else routes.anonymised
            key = view(course, HOSTILE if kind == KINDS[0] else VICTIM)
            if kind == KINDS[7]:
                exchange_name = broker.topology(network, VICTIM, delivery_limit=1).dead_letters.name
                key = broker.DEAD_LETTER_KEY if flip else broker.REPLAY_KEY
                headers["x-vhs-sync-reason"] = "apply_failed"
            if kind == KINDS[8]:
                key, user_id = view(course, HOSTILE), self.users[VICTIM]
        elif kind in SETTINGS_KINDS:
            closed = CourseSettings(max_participants=0, registration_open=False)
            body = (
                course_settings_changed(
                    course, closed, version=ahead, event_id=attempt.id, time=now
                )
                .model_dump_json()
                .encode()
            )
            key = routes.control(course, HOSTILE if kind == KINDS[2] else course.master_school)
        elif kind in OFFER_KINDS:
            waiting = self.targets(VICTIM, "W") or [1]
            participant = self.rng.choice(waiting)
            attempt.target = (VICTIM, participant, "A")
            offer = place_offered(
                EnrollmentKey(VICTIM, participant, course),
                offer_id=attempt.id,
                event_id=attempt.id,
                time=now,
            )
            body = offer.model_dump_json().encode()
            key = routes.offers(VICTIM, HOSTILE if kind == KINDS[4] else course.master_school)
        elif kind == KINDS[6]:
            patterns = [
                routes.personal(course, VICTIM),
                f"enr.{course.master_school}.*.*.personal",
                "enr.#",
                "#",
            ]
            key = patterns[int(attempt.id.rsplit("-", 1)[1]) // len(KINDS) % len(patterns)]
            queue = await channel.get_queue(f"{network}.{HOSTILE}", ensure=False)
            await queue.bind(network, key)
            await queue.unbind(network, key)  # bound: the breach is counted; leave no trace
            return
        elif kind == KINDS[9]:
            body = self._enrollment(attempt, HOSTILE, Status.CANCELLED, ahead, personal=flip)
            number = attempt.target[1] if attempt.target else 1
            body = body.replace(
                f'"participant_number":{number}'.encode(),
                f'"participant_number":"{number}"'.encode(),
            )
            key = (routes.personal if flip else routes.anonymised)(course, HOSTILE)
        elif kind == KINDS[10]:
            body = self._enrollment(attempt, HOSTILE, Status.CANCELLED, 2**62, personal=flip)
            key = (routes.personal if flip else routes.anonymised)(course, HOSTILE)
        else:
            body = json.dumps({"id": attempt.id, "pad": "x" * self.max_bytes}).encode()
            key = (routes.personal if flip else routes.anonymised)(course, HOSTILE)
        exchange = await channel.get_exchange(exchange_name, ensure=False)
        await exchange.publish(
            aio_pika.Message(
                body,
                content_type=EVENT_CONTENT_TYPE,
                headers=headers,
                user_id=user_id,
                message_id=attempt.id,
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            ),
            routing_key=key,
            mandatory=True,
        )

    def _enrollment(
        self, attempt: Attempt, origin: str, status: Status, version: int, *, personal: bool
    ) -> bytes:
        """A change of a real enrollment of `origin` (one that is registered in the ledger)."""
        registered = self.targets(origin, "A") or [1]
        participant = self.rng.choice(registered)
        attempt.target = (origin, participant, status.value)
        data = PersonalData("Forged", "Name", "forged@example.org") if personal else None
        state = EnrollmentState(
            EnrollmentKey(origin, participant, self.course), status, date.today(), data
        )
        event = enrollment_changed(
            state, version=version, event_id=attempt.id, time=datetime.now(UTC)
        )
        return event.model_dump_json().encode()


async def _close_quietly(connection: AbstractConnection) -> None:
    with contextlib.suppress(Exception):  # the broker is gone: nothing to close
        await asyncio.wait_for(connection.close(), 5)


@dataclass(frozen=True)
class Letter:
    school: str
    message_id: str
    reason: str


async def read_letters(url: str, network: str, schools: list[str]) -> list[Letter]:
    """Every letter in the schools' dead-letter queues, left there (taken unacknowledged,
    then given back): its school, message id and reason."""
    found: list[Letter] = []
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        for school in schools:
            queue = await channel.get_queue(f"{network}.{school}.dlq", ensure=False)
            taken = []
            while (message := await queue.get(fail=False, timeout=10)) is not None:
                taken.append(message)
                headers = message.headers or {}
                reason = headers.get("x-vhs-sync-reason") or (
                    "broker: " + str(headers.get("x-first-death-reason", "unknown"))
                )
                found.append(Letter(school, message.message_id or "", str(reason)))
            for message in taken:
                await message.nack(requeue=True)
    return found


@dataclass
class Verdict:
    """Per kind: attempts, outcomes, and dead letters by (school, reason)."""

    attempted: Counter[str] = field(default_factory=Counter)
    refused: Counter[str] = field(default_factory=Counter)
    dead_lettered: Counter[str] = field(default_factory=Counter)
    applied: Counter[str] = field(default_factory=Counter)
    unaccounted: Counter[str] = field(default_factory=Counter)
    unsent: Counter[str] = field(default_factory=Counter)
    reasons: dict[str, Counter[str]] = field(default_factory=dict)

    @property
    def clean(self) -> bool:
        return not (sum(self.applied.values()) or sum(self.unaccounted.values()))


def judge(
    attempts: list[Attempt],
    letters: list[Letter],
    views: Callable[[str, int], dict[str, str]],
    truth: Callable[[str, int], str | None],
    settings_changed: bool,
) -> Verdict:
    """What became of each attempt. `views(origin, participant)` gives each school's status
    of that enrollment, `truth` the writer's ledger status; `settings_changed` whether any
    school's course lost its maximum or closed."""
    by_id: dict[str, list[Letter]] = {}
    for letter in letters:
        by_id.setdefault(letter.message_id, []).append(letter)
    verdict = Verdict()
    for attempt in attempts:
        kind = attempt.kind
        verdict.attempted[kind] += 1
        reasons = verdict.reasons.setdefault(kind, Counter())
        for letter in by_id.get(attempt.id, []):
            reasons[f"{letter.school} {letter.reason}"] += 1
        if _took_effect(attempt, views, truth, settings_changed):
            verdict.applied[kind] += 1
        elif attempt.id in by_id:
            verdict.dead_lettered[kind] += 1
        elif attempt.outcome == "refused":
            verdict.refused[kind] += 1
            reasons[f"broker {attempt.refusal}"] += 1
        elif attempt.outcome == "unsent":
            verdict.unsent[kind] += 1
        else:
            verdict.unaccounted[kind] += 1
    return verdict


def _took_effect(
    attempt: Attempt,
    views: Callable[[str, int], dict[str, str]],
    truth: Callable[[str, int], str | None],
    settings_changed: bool,
) -> bool:
    if attempt.outcome == "refused":
        return False
    if attempt.kind in BROKER_KINDS and attempt.outcome == "accepted":
        return True
    if attempt.kind in SETTINGS_KINDS:
        return settings_changed
    if attempt.target is None:
        return False
    origin, participant, forged = attempt.target
    if truth(origin, participant) == forged:
        return False  # the writer itself changed it so: nothing to tell
    return forged in views(origin, participant).values()
