"""Course offers (issue 9): a master publishes its shared courses, every school hears them,
a school subscribes to one (the local course is made from the offer) and may leave it again.

- The master's adapter publishes the offer of each course it is master of whenever what the
  offer shows changes (`OfferPublisher`, from the capture loop), and all of them again at
  start and at each full scan, so that a school that starts later hears them too.
- Every school keeps the offers it heard in its state DB (`course_offers`); a subscriber's
  course follows the master's dates, times, place, lecturer, registration deadline and
  cancellation (`receive_offer`). Capacity follows through the master's course settings.
- `subscribe` creates the local course row from an offer, as staff would, or returns its
  fields for staff to create in the admin product; the daemon then joins the course (V1).
- `unsubscribe`: the school's own enrollments stay as they are; the foreign anonymised rows
  no longer count here and are set to S (as a foreign row that disappears at a subscriber,
  V6: never deleted, V4), the course is no longer shared, and the master and the other
  schools hear that the school left (`CourseLeft`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import structlog
from pydantic import ValidationError
from sqlalchemy import Connection, Engine, delete, insert, select, update

from adapter import broker
from adapter.capture.outbox import enqueue_course_left, enqueue_course_offer
from adapter.config import Settings
from adapter.domain import CourseRef, Role, Status, is_newer, next_version
from adapter.domain.offers import CourseOffer
from adapter.mapping import routes
from adapter.mapping.offers import (
    followed_columns,
    offer_fingerprint,
    offer_of_row,
    subscribed_course,
)
from adapter.messages import (
    CourseLeft,
    CourseOffered,
    OfferModel,
    course_offered,
    course_ref,
    offer_of,
)
from adapter.store import admin, kept, state
from adapter.store.db import keyed, upsert

log = structlog.get_logger("adapter.offers")


class OfferError(Exception):
    """A subscription or withdrawal that cannot be done, with what to do."""


def _microseconds(moment: datetime) -> int:
    return int(moment.timestamp() * 1_000_000)


def _existing(values: dict[str, Any]) -> dict[str, Any]:
    """Only the course columns this admin DB has (the optional ones may be missing)."""
    return {key: value for key, value in values.items() if key in admin.courses.c}


def _stored(offer: CourseOffer, now: datetime) -> bytes:
    """An offer as the state DB keeps it: the wire model's JSON, without the course."""
    event = course_offered(offer, version=1, event_id="stored", time=now)
    return event.data.offer.model_dump_json().encode()


def _where(error: Exception) -> str:
    """Which field is wrong, without the value (a log carries no data of a row)."""
    if isinstance(error, ValidationError):
        first = error.errors()[0]
        return ".".join(str(part) for part in first["loc"]) + f": {first['type']}"
    return type(error).__name__


def _loaded(course: CourseRef, body: bytes) -> CourseOffer:
    model = OfferModel.model_validate(json.loads(body))
    return CourseOffer(course=course, **dict(model))


# -- at the master: publishing --------------------------------------------------------------


class OfferPublisher:
    """Publishes the offers of the courses this school is master of."""

    def __init__(self, admin_engine: Engine, state_engine: Engine, school: str) -> None:
        self.admin_engine = admin_engine
        self.state_engine = state_engine
        self.school = school
        self._reported: set[tuple[Any, str]] = set()

    def publish(self, now: datetime, *, everything: bool = False) -> int:
        """Enqueue the offer of each of this school's shared courses whose offer changed, or
        (`everything`) of all of them, with their current version; returns how many."""
        with self.admin_engine.connect() as connection:
            shared = kept.shared_courses(connection, self.state_engine)
            own = sorted(n for n, ref in shared.items() if ref.master_school == self.school)
            rows = kept.course_rows(connection, self.state_engine, admin.courses.c.number.in_(own))
        published = state.published_offers.c
        with self.state_engine.connect() as connection:
            shadow = {
                row.course_number: row
                for row in connection.execute(
                    select(state.published_offers).where(published.course_master == self.school)
                ).all()
            }
        if not rows and not shadow:
            return 0
        now_us = _microseconds(now)
        due: list[tuple[CourseOffer, int, str | None]] = []  # offer, version, new fingerprint
        present = {row["master_number"] or row["number"] for row in rows}
        for number, gone in shadow.items():
            if number in present:
                continue
            last = find_offer(self.state_engine, CourseRef(self.school, number))
            if last is None:
                continue
            if last.withdrawn:
                if everything:
                    due.append((last, gone.version, None))
                continue
            withdrawn = replace(last, withdrawn=True)
            version = next_version(gone.version, now_us)
            due.append((withdrawn, version, offer_fingerprint(withdrawn)))
        for row in rows:
            offer = self._offer(row, now)
            if offer is None:
                continue
            digest = offer_fingerprint(offer)
            previous = shadow.get(offer.course.number)
            if previous is not None and previous.fingerprint == digest:
                if everything:
                    due.append((offer, previous.version, None))
                continue
            due.append(
                (offer, next_version(previous.version if previous else None, now_us), digest)
            )
        if not due:
            return 0
        with self.state_engine.begin() as connection:
            for offer, version, fingerprint in due:
                enqueue_course_offer(connection, offer, version, now)
                if fingerprint is None:
                    continue
                key = {"course_master": self.school, "course_number": offer.course.number}
                upsert(
                    connection,
                    state.published_offers,
                    [{**key, "fingerprint": fingerprint, "version": version}],
                )
                upsert(
                    connection,
                    state.course_offers,
                    [{**key, "version": version, "offer": _stored(offer, now), "received_at": now}],
                )
        for offer, version, fingerprint in due:
            if fingerprint is not None:
                log.info(
                    "course.offer_published",
                    school=self.school,
                    course=offer.course.number,
                    version=version,
                    cancelled=offer.cancelled,
                    withdrawn=offer.withdrawn,
                )
        return len(due)

    def _offer(self, row: dict[str, Any], now: datetime) -> CourseOffer | None:
        """The offer of a course row, or None (logged once a row) when the wire cannot carry
        it: a negative fee, say. The course is then not offered until its row is fixed."""
        try:
            offer = offer_of_row(row, self.school)
            course_offered(offer, version=1, event_id="check", time=now)
        except (ValueError, ArithmeticError) as error:  # pydantic's ValidationError too
            marker = (row.get("number"), type(error).__name__)
            if marker not in self._reported:
                self._reported.add(marker)
                log.warning(
                    "course.offer_invalid",
                    school=self.school,
                    course=row.get("number"),
                    error=_where(error),
                )
            return None
        return offer


# -- at every school: hearing offers, and schools that leave ---------------------------------


def receive_offer(
    admin_engine: Engine, state_engine: Engine, school: str, event: CourseOffered, now: datetime
) -> bool:
    """Keep a newer offer; a subscriber's course follows it. Returns whether it was newer."""
    course = course_ref(event.data.course)
    if course.role_of(school) is Role.MASTER:
        return False
    offers = state.course_offers.c
    with state_engine.connect() as connection:
        held = connection.execute(
            select(offers.version).where(
                offers.course_master == course.master_school,
                offers.course_number == course.number,
            )
        ).scalar()
    if not is_newer(event.data.version, held):
        return False
    offer = offer_of(event.data)
    local = _follow(admin_engine, state_engine, offer)
    with state_engine.begin() as connection:
        upsert(
            connection,
            state.course_offers,
            [
                {
                    "course_master": course.master_school,
                    "course_number": course.number,
                    "version": event.data.version,
                    "offer": event.data.offer.model_dump_json().encode(),
                    "received_at": now,
                }
            ],
        )
    log.info(
        "course.offer_received",
        school=school,
        course=course.number,
        master=course.master_school,
        version=event.data.version,
        cancelled=offer.cancelled,
        local_course=local,
    )
    return True


def _follow(admin_engine: Engine, state_engine: Engine, offer: CourseOffer) -> str | None:
    """A subscriber's course takes the master's dates, times, place, lecturer, deadline and
    cancellation; only what differs is written. Returns the local course number, if any."""
    course = admin.courses.c
    wanted = _existing(followed_columns(offer))
    with admin_engine.begin() as connection:
        local = kept.local_course_number(connection, state_engine, offer.course)
        row = (
            None
            if local is None
            else connection.execute(
                select(*keyed(*admin.courses.c)).where(course.number == local)
            ).first()
        )
        if row is None:
            return None
        current = row._asdict()
        changed = {key: value for key, value in wanted.items() if current.get(key) != value}
        if changed:
            connection.execute(
                update(admin.courses).where(course.number == row.number).values(**changed)
            )
    number: str = row.number
    return number


def record_leaver(state_engine: Engine, school: str, event: CourseLeft, now: datetime) -> None:
    """Another school left a course this school is part of: the master and the others see it."""
    course = course_ref(event.data.course)
    with state_engine.begin() as connection:
        upsert(
            connection,
            state.course_leavers,
            [
                {
                    "course_master": course.master_school,
                    "course_number": course.number,
                    "school": event.data.school,
                    "left_at": now,
                }
            ],
        )
    log.info(
        "course.school_left",
        school=school,
        course=course.number,
        master=course.master_school,
        left=event.data.school,
    )


def leavers(state_engine: Engine, course: CourseRef) -> set[str]:
    """The schools that said they left this course (and have not joined it again)."""
    columns = state.course_leavers.c
    with state_engine.connect() as connection:
        return set(
            connection.execute(
                select(columns.school).where(
                    columns.course_master == course.master_school,
                    columns.course_number == course.number,
                )
            ).scalars()
        )


def record_rejoined(state_engine: Engine, course: CourseRef, school: str) -> None:
    """A school that asks for a course's enrollments (it joins) is no longer one that left."""
    leavers = state.course_leavers.c
    with state_engine.begin() as connection:
        connection.execute(
            delete(state.course_leavers).where(
                leavers.course_master == course.master_school,
                leavers.course_number == course.number,
                leavers.school == school,
            )
        )


# -- the commands: offers, subscribe, unsubscribe -------------------------------------------


@dataclass(frozen=True, slots=True)
class KnownOffer:
    """An offer as this school knows it: whether and as which local course it has it, and
    which schools have left the course."""

    offer: CourseOffer
    version: int
    local_course: str | None
    left: list[str] = field(default_factory=list)


def known_offers(admin_engine: Engine, state_engine: Engine) -> list[KnownOffer]:
    """Every offer this school has heard of (its own too), by master and course number."""
    with state_engine.connect() as connection:
        rows = connection.execute(
            select(state.course_offers).order_by(
                state.course_offers.c.course_master, state.course_offers.c.course_number
            )
        ).all()
        leavers: dict[tuple[str, str], list[str]] = {}
        for leaver in connection.execute(
            select(state.course_leavers).order_by(state.course_leavers.c.school)
        ):
            leavers.setdefault((leaver.course_master, leaver.course_number), []).append(
                leaver.school
            )
    with admin_engine.connect() as connection:
        local = {
            (ref.master_school, ref.number): number
            for number, ref in kept.shared_courses(connection, state_engine).items()
        }
    return [
        KnownOffer(
            offer=_loaded(CourseRef(row.course_master, row.course_number), row.offer),
            version=row.version,
            local_course=local.get((row.course_master, row.course_number)),
            left=leavers.get((row.course_master, row.course_number), []),
        )
        for row in rows
    ]


def find_offer(state_engine: Engine, course: CourseRef) -> CourseOffer | None:
    offers = state.course_offers.c
    with state_engine.connect() as connection:
        body = connection.execute(
            select(offers.offer).where(
                offers.course_master == course.master_school,
                offers.course_number == course.number,
            )
        ).scalar()
    return None if body is None else _loaded(course, body)


def subscription(
    admin_engine: Engine, state_engine: Engine, school: str, course: CourseRef, local_number: str
) -> dict[str, Any]:
    """The course row this school would create to subscribe to `course` as `local_number`;
    `OfferError` when it cannot subscribe."""
    if course.role_of(school) is Role.MASTER:
        raise OfferError(f"course {course.number} is this school's own: it is its master")
    offer = find_offer(state_engine, course)
    if offer is None:
        raise OfferError(
            f"no offer of course {course.number} by {course.master_school} is known here: "
            "`vhs-sync offers` lists the offers this school's adapter has heard"
        )
    if offer.cancelled:
        raise OfferError(f"course {course.number} was cancelled by {course.master_school}")
    if offer.withdrawn:
        raise OfferError(f"{course.master_school} offers course {course.number} no more")
    columns = admin.courses.c
    with admin_engine.connect() as connection:
        held = kept.local_course_number(connection, state_engine, course)
        taken = connection.execute(
            select(columns.number).where(columns.number == local_number)
        ).scalar()
    if held is not None:
        raise OfferError(f"this school subscribed to course {course.number} already, as {held}")
    if taken is not None:
        raise OfferError(f"course number {local_number} is taken in this school's admin DB")
    return _existing(subscribed_course(offer, local_number))


def subscribe(
    admin_engine: Engine,
    state_engine: Engine,
    school: str,
    course: CourseRef,
    local_number: str,
    stamp: datetime,
) -> dict[str, Any]:
    """Create the local course from the offer, as staff would (stamped `stamp`, the admin
    DB's wall clock); the daemon joins it. Returns the row's fields."""
    values = subscription(admin_engine, state_engine, school, course, local_number)
    with admin_engine.begin() as connection:
        connection.execute(
            insert(admin.courses).values(**values, **_existing({"modified_at": stamp}))
        )
        if "master_school" not in values:  # kept in the state DB (adapter.store.kept)
            kept.write_course_fields(
                connection, state_engine, local_number, {"master_school": course.master_school}
            )
    log.info(
        "course.subscribed",
        school=school,
        course=course.number,
        master=course.master_school,
        local_course=local_number,
    )
    return values


def unsubscribe(
    admin_engine: Engine,
    state_engine: Engine,
    school: str,
    local_number: str,
    now: datetime,
    stamp: datetime,
) -> CourseRef:
    """Leave the shared course `local_number`: own enrollments stay, foreign rows are set to
    S, the course is an ordinary local one, and the network hears of it."""
    columns = admin.courses.c
    with admin_engine.connect() as connection:
        found = kept.course_rows(connection, state_engine, columns.number == local_number)
    if not found:
        raise OfferError(f"course {local_number} is not in this school's admin DB")
    row = found[0]
    if row["master_school"] is None:
        raise OfferError(f"course {local_number} is not a shared course")
    course = CourseRef(row["master_school"], row["master_number"] or local_number)
    if course.role_of(school) is Role.MASTER:
        raise OfferError(
            f"this school is the master of course {local_number}: a master cannot leave it"
        )
    applied = state.applied.c
    key = (applied.course_master == course.master_school, applied.course_number == course.number)
    with state_engine.connect() as connection:
        foreign = [
            enrollment_id
            for (enrollment_id,) in connection.execute(select(applied.enrollment_id).where(*key))
        ]
    with admin_engine.begin() as connection:
        kept.write_course_fields(
            connection,
            state_engine,
            local_number,
            {"master_school": None, "master_number": None, **_existing({"modified_at": stamp})},
        )
        _cancel_foreign(connection, foreign)
    with state_engine.begin() as connection:
        # Forgotten: the versions applied (so that a school that subscribes again, under any
        # local number, is sent every enrollment anew and books it there), and the shadow of
        # what this school published (the course is no longer shared: a full scan must not
        # take its own enrollments for hard deletes). The rows stay in the admin DB.
        for table in (
            state.applied,
            state.joined_courses,
            state.applied_courses,
            state.published,
        ):
            connection.execute(
                delete(table).where(
                    table.c.course_master == course.master_school,
                    table.c.course_number == course.number,
                )
            )
        enqueue_course_left(connection, school, course, now)
    log.info(
        "course.unsubscribed",
        school=school,
        course=course.number,
        master=course.master_school,
        local_course=local_number,
        foreign_rows=len(foreign),
    )
    return course


def _cancel_foreign(connection: Connection, enrollment_ids: Sequence[int]) -> None:
    enrollments = admin.enrollments.c
    for start in range(0, len(enrollment_ids), 400):
        connection.execute(
            update(admin.enrollments)
            .where(
                enrollments.id.in_(enrollment_ids[start : start + 400]),
                enrollments.status != Status.CANCELLED.value,
            )
            .values(status=Status.CANCELLED.value)
        )


async def unbind_course(settings: Settings, course: CourseRef) -> None:
    """Remove this school's queue bindings of a course it left. A daemon that runs removes
    them as well at its next look at the shared courses (and a stopped one never binds
    them again)."""
    spec = broker.topology(settings.broker.network, settings.school.id, delivery_limit=1)
    connection = await broker.connect(settings.broker.url, name=f"vhs-sync {settings.school.id}")
    async with connection:
        channel = await connection.channel()
        queue = await channel.get_queue(spec.queue.name, ensure=False)
        for key in routes.subscriber_bindings(course):
            await queue.unbind(spec.exchange.name, key)


def column_names(values: dict[str, Any]) -> dict[str, Any]:
    """The fields of a course row under the admin DB's own column names (`KURSE.TITEL`), for
    staff who create the course in the admin product."""
    return {admin.courses.c[key].name: value for key, value in values.items()}
