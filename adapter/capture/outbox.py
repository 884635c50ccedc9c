"""Writing events into the outbox, in the caller's state-DB transaction."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import Connection, insert

from adapter.domain import CourseRef, EnrollmentKey, EnrollmentState
from adapter.domain.capacity import CourseSettings
from adapter.domain.offers import CourseOffer
from adapter.mapping import routes
from adapter.mapping.outbound import answer_delivery, deliveries
from adapter.messages import (
    course_left,
    course_offered,
    course_settings_changed,
    course_sync_requested,
    enrollment_changed,
    place_offered,
)
from adapter.store.state import outbox


def enqueue_states(
    connection: Connection,
    school: str,
    states: Iterable[tuple[EnrollmentState, int]],
    now: datetime,
    *,
    answer_to: str | None = None,
) -> int:
    """One outbox row per delivery of each (state, version); returns how many rows.

    `answer_to`: the states answer that school's sync request, and go to it alone."""
    rows = []
    for state, version in states:
        routed = (
            [answer_delivery(state, answer_to)]
            if answer_to is not None
            else deliveries(state, school)
        )
        for routing_key, delivered in routed:
            event_id = str(uuid.uuid4())
            event = enrollment_changed(delivered, version=version, event_id=event_id, time=now)
            rows.append(
                {
                    "message_id": event_id,
                    "routing_key": routing_key,
                    "body": event.model_dump_json().encode(),
                    "created_at": now,
                    "attempts": 0,
                }
            )
    if rows:
        connection.execute(insert(outbox), rows)
    return len(rows)


def enqueue_sync_request(
    connection: Connection, school: str, course: CourseRef, now: datetime
) -> None:
    """Ask every school of a course for its own enrollments of it, answered to this school
    alone (V1; `vhs-sync resync`)."""
    event_id = str(uuid.uuid4())
    event = course_sync_requested(course, requested_by=school, event_id=event_id, time=now)
    _insert(
        connection, event_id, routes.control(course, school), event.model_dump_json().encode(), now
    )


def enqueue_course_settings(
    connection: Connection,
    course: CourseRef,
    settings: CourseSettings,
    version: int,
    now: datetime,
) -> None:
    """The master's settings of a course, for its subscribers (they bind its control route)."""
    event_id = str(uuid.uuid4())
    event = course_settings_changed(course, settings, version=version, event_id=event_id, time=now)
    route = routes.control(course, course.master_school)
    _insert(connection, event_id, route, event.model_dump_json().encode(), now)


def enqueue_place_offer(
    connection: Connection, key: EnrollmentKey, offer_id: str, now: datetime
) -> None:
    """A freed place for the school that owns the longest-waiting entry (D3)."""
    event_id = str(uuid.uuid4())
    event = place_offered(key, offer_id=offer_id, event_id=event_id, time=now)
    body = event.model_dump_json().encode()
    _insert(
        connection, event_id, routes.offers(key.origin_school, key.course.master_school), body, now
    )


def enqueue_course_offer(
    connection: Connection, offer: CourseOffer, version: int, now: datetime
) -> None:
    """The master's offer of a shared course, for every school of the network."""
    event_id = str(uuid.uuid4())
    event = course_offered(offer, version=version, event_id=event_id, time=now)
    route = routes.course_offer(offer.course)
    _insert(connection, event_id, route, event.model_dump_json().encode(), now)


def enqueue_course_left(
    connection: Connection, school: str, course: CourseRef, now: datetime
) -> None:
    """A subscriber leaves a course: on the course's control route, which its master and
    every other school of the course bind."""
    event_id = str(uuid.uuid4())
    event = course_left(course, school, event_id=event_id, time=now)
    route = routes.control(course, school)
    _insert(connection, event_id, route, event.model_dump_json().encode(), now)


def _insert(
    connection: Connection, event_id: str, routing_key: str, body: bytes, now: datetime
) -> None:
    connection.execute(
        insert(outbox).values(
            message_id=event_id, routing_key=routing_key, body=body, created_at=now, attempts=0
        )
    )
