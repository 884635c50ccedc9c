"""`vhs-sync resync COURSE`: this school asks every member of a shared course to send it
their own enrollments of the course again.

The request is the one a school sends when it joins a course (`CourseSyncRequested`, V1),
written to the outbox, so the running daemon relays it (at the latest a second later) and,
with the daemon stopped, relays it when it starts. Every member answers on the route only
this school's queue binds (`syn.<school>.…`): the repair is for this school alone, and the
others, which have the enrollments, get nothing again. An answer is applied as a repair (at
the version held too), so a synced row deleted or edited here is booked again as its origin
school has it, and one whose mapping the state DB lost is taken over, not booked twice.
"""

from __future__ import annotations

from datetime import datetime

import structlog
from sqlalchemy import Engine

from adapter.capture.outbox import enqueue_sync_request
from adapter.capture.poller import Capture
from adapter.domain import CourseRef

log = structlog.get_logger("adapter.ops")


class NotSharedError(LookupError):
    """No shared course of that number in this school's admin DB."""


def shared_course(capture: Capture, number: str) -> CourseRef:
    """The shared course that `number` names: this school's own course number, or the
    master's number of the course."""
    courses = capture.shared_courses()
    for course, local in courses.items():
        if local == number:
            return course
    matching = [course for course in courses if course.number == number]
    if len(matching) == 1:
        return matching[0]
    raise NotSharedError(f"course {number} is not a shared course in this school's admin DB")


def request_resync(
    admin_engine: Engine, state_engine: Engine, school: str, number: str, now: datetime
) -> CourseRef:
    """Write this school's sync request for course `number` into its outbox; returns the
    course. `NotSharedError` when the admin DB holds no shared course of that number."""
    course = shared_course(Capture(admin_engine, state_engine, school), number)
    with state_engine.begin() as connection:
        enqueue_sync_request(connection, school, course, now)
    log.info("course.resync_requested", school=school, course=course.number)
    return course
