"""Regular places of a shared course are allotted by its master.

Each school's desk decides a registration on the occupancy it sees; but two schools that
register for the last place within the same moment each see it free. So a subscriber's desk
that would give a regular place first asks the master (`PlaceRequested`, a request over the
broker). The master sees every school's enrollments and the
places it has allotted but not yet seen arrive, decides with the same rules, and answers. A
place it grants is held for that participant until the enrollment arrives by sync or the
grant expires. Without an answer in time the desk keeps its own decision and says so in the
log: sync must never stop a school from registering.

The answer travels on the network's topic exchange, on a route that names the requester and
that only the requester may bind (an exclusive queue of the desk's own). Direct reply-to
would need each school's user to write to the default exchange, and with that it could put
messages into any queue by its name.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import aio_pika
import structlog
from pydantic import ValidationError
from sqlalchemy import Engine

from adapter.desk.grants import live_grants, record_grant, with_grants
from adapter.desk.registration import Desk, reserved_occupancy
from adapter.domain import CourseRef, Registered, Waitlisted, decide_registration
from adapter.mapping import routes
from adapter.messages import (
    EVENT_CONTENT_TYPE,
    PlaceAnswered,
    PlaceRequested,
    place_answered,
    place_requested,
)
from adapter.ops.logs import error_text
from adapter.store import kept

log = structlog.get_logger("adapter.desk")

GRANT_TTL = timedelta(seconds=30)


class PlaceAllocator:
    """At the master: answers place requests, one course at a time, under the desk's lock."""

    def __init__(
        self, admin_engine: Engine, state_engine: Engine, school: str, *, ttl: timedelta = GRANT_TTL
    ) -> None:
        self.desk = Desk(admin_engine, state_engine, school)
        self.admin_engine = admin_engine
        self.school = school
        self.state_engine = state_engine
        self.ttl = ttl

    def answer(self, request: PlaceRequested, now: datetime) -> PlaceAnswered:
        course = CourseRef(request.data.course.master_school, request.data.course.number)
        granted, reason = self._decide(course, request, now)
        log.info(
            "place.granted" if granted else "place.denied",
            school=self.school,
            course=course.number,
            to_school=request.data.school,
            participant_number=request.data.participant_number,
            reason=reason,
        )
        return place_answered(
            request, granted=granted, reason=reason, event_id=str(uuid.uuid4()), time=now
        )

    def _decide(
        self, course: CourseRef, request: PlaceRequested, now: datetime
    ) -> tuple[bool, str | None]:
        with self.admin_engine.connect() as connection:
            local = kept.local_course_number(connection, self.desk.state_engine, course)
        if local is None or course.master_school != self.school:
            return False, "unknown_course"
        with self.desk.course_transaction(local) as connection:
            state = self.desk.course_state(connection, local)
            grants = live_grants(self.state_engine, state, now)
            occupancy, held = with_grants(
                *reserved_occupancy(state, request.data.school), grants, request.data.school
            )
            decision = decide_registration(
                state.settings, occupancy, held, blocked=False, privacy_consent=True
            )
            if isinstance(decision, Registered):
                record_grant(
                    self.state_engine,
                    course,
                    request.data.school,
                    request.data.participant_number,
                    now + self.ttl,
                )
        if isinstance(decision, Registered):
            return True, None
        if isinstance(decision, Waitlisted):
            return False, decision.reason.value
        return False, decision.reason.value


class PlaceClient:
    """At a subscriber's desk: asks the master for a place and waits for the answer."""

    def __init__(self, broker_url: str, network: str, school: str, *, timeout: float = 5.0):
        self.broker_url = broker_url
        self.network = network
        self.school = school
        self.timeout = timeout

    def request(self, course: CourseRef, participant_number: int) -> PlaceAnswered | None:
        """The master's answer, or None when it gave none in time (or cannot be reached)."""
        try:
            return asyncio.run(self._request(course, participant_number))
        except (TimeoutError, OSError, aio_pika.exceptions.AMQPError) as error:
            log.warning(
                "place.request_unanswered",
                school=self.school,
                course=course.number,
                error=error_text(error),
            )
            return None

    async def _request(self, course: CourseRef, participant_number: int) -> PlaceAnswered | None:
        request = place_requested(
            course,
            self.school,
            participant_number,
            event_id=str(uuid.uuid4()),
            time=datetime.now(UTC),
        )
        connection = await aio_pika.connect(self.broker_url, timeout=self.timeout)
        async with connection:
            channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
            # A queue of this desk alone, server-named: the answers to this school bind it.
            answers_queue = await channel.declare_queue(exclusive=True, auto_delete=True)
            exchange = await channel.get_exchange(self.network, ensure=False)
            await answers_queue.bind(
                exchange, routes.place_answers(self.school, course.master_school)
            )
            answers: asyncio.Queue[bytes] = asyncio.Queue()

            async def on_answer(message: aio_pika.abc.AbstractIncomingMessage) -> None:
                if message.correlation_id == request.id:
                    await answers.put(message.body)

            await answers_queue.consume(on_answer, no_ack=True)
            await exchange.publish(
                aio_pika.Message(
                    request.model_dump_json().encode(),
                    content_type=EVENT_CONTENT_TYPE,
                    correlation_id=request.id,
                    reply_to=answers_queue.name,
                    user_id=connection.url.user,
                ),
                routing_key=routes.place_requests(course.master_school, self.school),
                mandatory=True,
            )
            body = await asyncio.wait_for(answers.get(), self.timeout)
        try:
            answer = PlaceAnswered.model_validate_json(body, strict=True)
        except ValidationError:
            return None
        return answer if answer.source_school == course.master_school else None
