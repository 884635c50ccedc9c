"""`vhs-sync reconcile`: does this school hold what every origin school says it has?

Per shared course, this school sends each member the digest of what it holds of that member's
enrollments (`DigestRequested`, on the course's control route); each member answers on a
route that only this school binds with the digest of its own enrollments as it published
them, and lists them when the digests differ (`DigestAnswered`). The drift (missing, stale,
extra) is reported; `repair` asks the members to send the course again (a sync request
through the outbox, relayed by the daemon). Besides, this school's admin DB is read for the
local actions that break sync (edited or removed foreign rows, merged participants, a changed
course number). The daemon runs it on a schedule (`[reconcile] interval`).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import aio_pika
import structlog
from aio_pika.abc import AbstractIncomingMessage
from pydantic import ValidationError
from sqlalchemy import Engine, select

from adapter.capture.outbox import enqueue_sync_request
from adapter.capture.poller import Capture
from adapter.config import Settings
from adapter.domain import CourseRef, Role
from adapter.mapping import routes
from adapter.mapping.reconcile import (
    CourseReport,
    Entries,
    LocalIssue,
    OriginDrift,
    compare,
    digest,
    entries_of,
)
from adapter.messages import (
    EVENT_CONTENT_TYPE,
    DigestAnswerData,
    DigestAnswered,
    DigestRequested,
    digest_answered,
    digest_requested,
)
from adapter.ops.offers import leavers
from adapter.store import admin, kept, state

log = structlog.get_logger("adapter.reconcile")

# How long to wait for the members' answers; once every expected member has answered, how
# much longer for members this school knows nothing of yet.
ANSWER_TIMEOUT = 3.0
STRAGGLERS = 0.3
_CHUNK = 500


def _chunks(items: Sequence[Any]) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


# -- what this school holds, and what it has of its own ---------------------------------------


def held_by_origin(
    state_engine: Engine, course: CourseRef, school: str
) -> dict[str, dict[int, tuple[int, str]]]:
    """Per origin school, the enrollments of the course this school applied."""
    applied = state.applied.c
    held: dict[str, dict[int, tuple[int, str]]] = {}
    with state_engine.connect() as connection:
        for origin, number, version, status in connection.execute(
            select(
                applied.origin_school, applied.participant_number, applied.version, applied.status
            )
            .where(
                applied.course_master == course.master_school,
                applied.course_number == course.number,
            )
            .where(applied.origin_school != school)
        ):
            held.setdefault(origin, {})[number] = (version, status)
    return held


def own_entries(state_engine: Engine, course: CourseRef) -> dict[int, tuple[int, str]]:
    """This school's own enrollments of the course, as it last published them."""
    published = state.published.c
    with state_engine.connect() as connection:
        return entries_of(
            connection.execute(
                select(published.participant_number, published.version, published.status).where(
                    published.course_master == course.master_school,
                    published.course_number == course.number,
                )
            )
        )


def answer_digest(
    admin_engine: Engine, state_engine: Engine, school: str, request: DigestRequested, now: datetime
) -> DigestAnswered:
    """The daemon's answer to a member reconciling a course."""
    course = CourseRef(request.data.course.master_school, request.data.course.number)
    with admin_engine.connect() as connection:
        has_course = kept.local_course_number(connection, state_engine, course) is not None
    own = own_entries(state_engine, course)
    log.info(
        "reconcile.answered",
        school=school,
        course=course.number,
        requested_by=request.data.requested_by,
        enrollments=len(own),
    )
    return digest_answered(
        request,
        school,
        digest=digest(own),
        entries=[(n, v, s) for n, (v, s) in sorted(own.items())],
        has_course=has_course,
        event_id=str(uuid.uuid4()),
        time=now,
    )


# -- local actions that break sync --------------------------------------------------------------


def local_issues(
    admin_engine: Engine, state_engine: Engine, school: str, course: CourseRef, local: str | None
) -> list[LocalIssue]:
    """What staff did here that sync cannot follow (the seed forbids each of them)."""
    issues: list[LocalIssue] = []
    if local is None:
        issues.append(
            LocalIssue(
                "course_renumbered",
                course.number,
                None,
                f"no course here names master course {course.master_school}/{course.number} any "
                "more: its number was changed or its sharing removed",
            )
        )
    applied, published = state.applied.c, state.published.c
    remote = state.remote_participants.c
    with state_engine.connect() as connection:
        foreign = connection.execute(
            select(
                applied.enrollment_id,
                applied.status,
                applied.origin_school,
                applied.participant_number,
            ).where(
                applied.course_master == course.master_school,
                applied.course_number == course.number,
                applied.origin_school != school,
            )
        ).all()
        own = connection.execute(
            select(published.enrollment_id, published.participant_number).where(
                published.course_master == course.master_school,
                published.course_number == course.number,
            )
        ).all()
        origins = sorted({row.origin_school for row in foreign})
        local_numbers = {
            (row.origin_school, row.participant_number): row.local_number
            for row in connection.execute(
                select(remote.origin_school, remote.participant_number, remote.local_number).where(
                    remote.origin_school.in_(origins)
                )
            )
        }
    rows = _enrollment_rows(admin_engine, [r.enrollment_id for r in (*foreign, *own)])
    people = _existing_participants(admin_engine, {r["participant_number"] for r in rows.values()})
    label = local or course.number
    master = course.role_of(school) is Role.MASTER
    for entry in foreign:
        row = rows.get(entry.enrollment_id)
        where = f"enrollment of {entry.origin_school}, participant {entry.participant_number}"
        if row is None:
            issues.append(
                LocalIssue(
                    "foreign_deleted",
                    label,
                    entry.enrollment_id,
                    f"{where}: removed here",
                    entry.origin_school,
                )
            )
            continue
        if row["status"] != entry.status:
            issues.append(
                LocalIssue(
                    "foreign_edited",
                    label,
                    entry.enrollment_id,
                    f"{where}: status {row['status']} here, {entry.status} at its school",
                    entry.origin_school,
                )
            )
        # A master books the real participant, a subscriber the origin school's own row; the
        # same person may have both here when this school masters another of the origin's.
        expected = local_numbers.get(
            (entry.origin_school, entry.participant_number if master else 0)
        )
        if row["participant_number"] not in people or (
            expected is not None and row["participant_number"] != expected
        ):
            issues.append(
                LocalIssue(
                    "participant_merged",
                    label,
                    entry.enrollment_id,
                    f"{where}: its participant row here was replaced or removed",
                )
            )
        if local is not None and row["course_number"] != local:
            issues.append(
                LocalIssue(
                    "course_renumbered",
                    label,
                    entry.enrollment_id,
                    f"{where}: moved to course {row['course_number']}",
                )
            )
    for mine in own:
        row = rows.get(mine.enrollment_id)
        if row is None:
            continue  # a hard delete: capture publishes it as cancelled
        if row["participant_number"] != mine.participant_number:
            issues.append(
                LocalIssue(
                    "participant_merged",
                    label,
                    mine.enrollment_id,
                    f"own enrollment: participant {mine.participant_number} became "
                    f"{row['participant_number']} (participants merged?)",
                )
            )
        elif row["participant_number"] not in people:
            issues.append(
                LocalIssue(
                    "participant_merged",
                    label,
                    mine.enrollment_id,
                    f"own enrollment: participant {mine.participant_number} no longer exists",
                )
            )
        if local is not None and row["course_number"] != local:
            issues.append(
                LocalIssue(
                    "course_renumbered",
                    label,
                    mine.enrollment_id,
                    f"own enrollment: moved to course {row['course_number']}",
                )
            )
    return issues


def _enrollment_rows(admin_engine: Engine, ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    enrollment = admin.enrollments.c
    found: dict[int, dict[str, Any]] = {}
    with admin_engine.connect() as connection:
        for chunk in _chunks(sorted(set(ids))):
            for row in connection.execute(
                select(
                    enrollment.id,
                    enrollment.status,
                    enrollment.course_number,
                    enrollment.participant_number,
                ).where(enrollment.id.in_(chunk))
            ):
                found[row.id] = {
                    "status": row.status,
                    "course_number": row.course_number,
                    "participant_number": row.participant_number,
                }
    return found


def _existing_participants(admin_engine: Engine, numbers: set[int]) -> set[int]:
    participant = admin.participants.c
    found: set[int] = set()
    with admin_engine.connect() as connection:
        for chunk in _chunks(sorted(numbers)):
            found.update(
                connection.execute(
                    select(participant.number).where(participant.number.in_(chunk))
                ).scalars()
            )
    return found


# -- asking the members ---------------------------------------------------------------------


async def ask_members(
    settings: Settings,
    course: CourseRef,
    held: Mapping[str, Entries],
    expected: set[str],
    *,
    wait: float = ANSWER_TIMEOUT,
) -> dict[str, DigestAnswerData]:
    """Send the request and gather the answers: until every expected member answered (and a
    moment more), or the timeout. An answer counts only from the school its route names,
    which a school's broker user may publish only for itself."""
    me = settings.school.id
    request = digest_requested(
        course,
        requested_by=me,
        held={origin: digest(entries) for origin, entries in held.items()},
        event_id=str(uuid.uuid4()),
        time=datetime.now().astimezone(),
    )
    answers: dict[str, DigestAnswerData] = {}
    complete = asyncio.Event()
    connection = await aio_pika.connect(
        settings.broker.url,
        timeout=wait,
        client_properties={"connection_name": f"vhs-sync reconcile {me}"},
    )
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        queue = await channel.declare_queue(exclusive=True, auto_delete=True)
        exchange = await channel.get_exchange(settings.broker.network, ensure=False)
        await queue.bind(exchange, routes.answers_to(me))

        async def on_answer(message: AbstractIncomingMessage) -> None:
            if message.correlation_id != request.id:
                return
            if len(message.body) > settings.broker.max_message_bytes:  # as the receiver does
                log.warning("reconcile.answer_too_large", school=me, course=course.number)
                return
            try:
                answer = DigestAnswered.model_validate_json(message.body, strict=True)
            except ValidationError:
                log.warning("reconcile.answer_invalid", school=me, course=course.number)
                return
            data = answer.data
            if message.routing_key != routes.place_answers(me, data.school) or (
                data.requested_by != me
                or (data.course.master_school, data.course.number)
                != (course.master_school, course.number)
            ):
                log.warning("reconcile.answer_refused", school=me, course=course.number)
                return
            answers[data.school] = data
            if expected <= set(answers):
                complete.set()

        await queue.consume(on_answer, no_ack=True)
        await exchange.publish(
            aio_pika.Message(
                request.model_dump_json().encode(),
                content_type=EVENT_CONTENT_TYPE,
                correlation_id=request.id,
                reply_to=queue.name,
                user_id=connection.url.user,
            ),
            routing_key=routes.control(course, me),
        )
        try:
            await asyncio.wait_for(complete.wait(), wait)
            await asyncio.sleep(STRAGGLERS)
        except TimeoutError:
            pass
    return answers


def _drift(origin: str, held: Entries, answer: DigestAnswerData | None) -> OriginDrift:
    if answer is None:
        return OriginDrift(origin, held=len(held), unanswered=True)
    if answer.entries is None:  # the digests matched
        return OriginDrift(origin, held=len(held), told=answer.count)
    return compare(origin, held, entries_of(answer.entries))


async def reconcile_course(
    settings: Settings,
    admin_engine: Engine,
    state_engine: Engine,
    course: CourseRef,
    local: str | None,
    *,
    repair: bool = False,
    wait: float = ANSWER_TIMEOUT,
    now: datetime,
) -> CourseReport:
    me = settings.school.id
    held = await asyncio.to_thread(held_by_origin, state_engine, course, me)
    # A school that left the course (`vhs-sync unsubscribe`) answers no more: not expected.
    left = await asyncio.to_thread(leavers, state_engine, course)
    expected = (set(held) | {course.master_school}) - {me} - left
    answers = await ask_members(settings, course, held, expected, wait=wait)
    origins = sorted((expected | set(answers)) - {me})
    drifts = tuple(_drift(origin, held.get(origin, {}), answers.get(origin)) for origin in origins)
    issues = await asyncio.to_thread(local_issues, admin_engine, state_engine, me, course, local)
    master_answer = answers.get(course.master_school)
    if master_answer is not None and not master_answer.has_course and local is not None:
        issues.insert(
            0,
            LocalIssue(
                "course_renumbered",
                local,
                None,
                f"the master {course.master_school} has no course {course.number}: this "
                "course names a master number that does not exist (changed here?)",
            ),
        )
    repaired: tuple[str, ...] = ()
    fixable = {drift.origin for drift in drifts if drift.repairable} | {
        str(issue.origin) for issue in issues if issue.repairable
    }
    if repair and fixable:
        await asyncio.to_thread(_request_sync, state_engine, me, course, now)
        repaired = tuple(sorted(fixable))
    report = CourseReport(
        master=course.master_school,
        course=course.number,
        local_number=local,
        origins=drifts,
        local=tuple(issues),
        repair_requested=repaired,
    )
    counts = {kind: count for kind, count in report.counts().items() if count}
    if report.drifted:
        log.warning(
            "reconcile.drift", school=me, course=course.number, repair=bool(repaired), **counts
        )
    else:
        log.info("reconcile.clean", school=me, course=course.number, origins=len(drifts))
    return report


def _request_sync(state_engine: Engine, school: str, course: CourseRef, now: datetime) -> None:
    with state_engine.begin() as connection:
        enqueue_sync_request(connection, school, course, now)


def courses_here(
    admin_engine: Engine, state_engine: Engine, school: str
) -> dict[CourseRef, str | None]:
    """Every shared course this school has or has joined, with its local number (None: joined
    once, but no course here names it now)."""
    shared: dict[CourseRef, str | None] = dict(
        Capture(admin_engine, state_engine, school).shared_courses()
    )
    joined = state.joined_courses.c
    with state_engine.connect() as connection:
        for master, number in connection.execute(
            select(joined.course_master, joined.course_number)
        ):
            shared.setdefault(CourseRef(master, number), None)
    return shared


async def reconcile(
    settings: Settings,
    admin_engine: Engine,
    state_engine: Engine,
    *,
    local_number: str | None = None,
    repair: bool = False,
    wait: float = ANSWER_TIMEOUT,
    now: datetime,
) -> list[CourseReport]:
    """Reconcile one course (by its local number) or every shared course of this school."""
    me = settings.school.id
    courses = await asyncio.to_thread(courses_here, admin_engine, state_engine, me)
    if local_number is not None:
        courses = {ref: local for ref, local in courses.items() if local == local_number}
        if not courses:
            raise LookupError(f"course {local_number} is not a shared course of this school")
    return [
        await reconcile_course(
            settings,
            admin_engine,
            state_engine,
            ref,
            local,
            repair=repair,
            wait=wait,
            now=now,
        )
        for ref, local in sorted(
            courses.items(), key=lambda item: (item[0].master_school, item[0].number)
        )
    ]


def report_as_dict(report: CourseReport) -> dict[str, Any]:
    return {
        "master": report.master,
        "course": report.course,
        "local_number": report.local_number,
        "drifted": report.drifted,
        "counts": report.counts(),
        "origins": [
            {
                "origin": o.origin,
                "held": o.held,
                "told": o.told,
                "unanswered": o.unanswered,
                "missing": list(o.missing),
                "stale": list(o.stale),
                "extra": list(o.extra),
                "ahead": list(o.ahead),
            }
            for o in report.origins
        ],
        "local": [
            {
                "kind": i.kind,
                "course": i.course,
                "enrollment_id": i.enrollment_id,
                "detail": i.detail,
            }
            for i in report.local
        ],
        "repair_requested": list(report.repair_requested),
    }
