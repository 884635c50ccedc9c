"""Automatic advance across schools (D3, V11).

Only the master decides: it sees every school's entries of its course, so it alone picks the
longest-waiting entry for a freed place, and two schools can never both promote for the same
place. Its own entries it promotes itself; for another school's entry it sends that school a
`PlaceOffered`, and only that school changes its enrollment (V11). An offer holds the place
until the entry shows up as registered, or until it expires and the place is offered anew.
"""

from __future__ import annotations

import threading
import uuid
from datetime import datetime, timedelta

import structlog
from sqlalchemy import Engine, delete, insert, select, update

from adapter.capture.outbox import enqueue_place_offer
from adapter.desk.operations import status_change
from adapter.domain import CourseRef, EnrollmentKey, Occupancy, Status, Waiting, next_to_advance
from adapter.mapping.courses import InvalidCourseSettingsError
from adapter.messages import PlaceOffered, course_ref
from adapter.ops.course_state import read_course_state
from adapter.store import admin, kept, state

log = structlog.get_logger("adapter.desk")

OFFER_TTL = timedelta(seconds=30)
_enrollment = admin.columns_of("enrollments")
_course = admin.columns_of("courses")


class Advancer:
    """Runs automatic advance for the courses this school is master of."""

    def __init__(
        self,
        admin_engine: Engine,
        state_engine: Engine,
        school: str,
        *,
        sync_lock: threading.Lock | None = None,
        offer_ttl: timedelta = OFFER_TTL,
    ) -> None:
        self.admin_engine = admin_engine
        self.state_engine = state_engine
        self.school = school
        self.sync_lock = sync_lock or threading.Lock()
        self.offer_ttl = offer_ttl
        self._reported: set[str] = set()

    def advance(self, now: datetime, admin_now: datetime) -> list[Waiting]:
        """Give every free place of every auto-advance course to the longest-waiting entry;
        returns the entries promoted here or offered to their school."""
        with self.admin_engine.connect() as connection:
            shared = kept.shared_courses(connection, self.state_engine)
            own = [number for number, ref in shared.items() if ref.master_school == self.school]
            numbers = [
                row["number"]
                for row in kept.course_rows(connection, self.state_engine, _course.number.in_(own))
                if row["auto_advance"]
            ]
        moved: list[Waiting] = []
        for number in numbers:
            try:
                moved.extend(self._advance_course(number, now, admin_now))
            except InvalidCourseSettingsError as error:
                if number not in self._reported:
                    self._reported.add(number)
                    log.warning("course.settings_invalid", school=self.school, reason=str(error))
        return moved

    def _advance_course(self, number: str, now: datetime, admin_now: datetime) -> list[Waiting]:
        with self.sync_lock, self.admin_engine.begin() as connection:
            course = read_course_state(connection, self.state_engine, number, self.school)
            if course.ref is None:
                return []
            waiting = course.waiting()
            offers = self._live_offers(course.ref, waiting, now)
            pending = [w for w in waiting if (w.school, w.key.participant_number) in offers]
            occupancy = course.occupancy()
            registered = dict(course.registered_by_school())
            for entry in pending:
                registered[entry.school] = registered.get(entry.school, 0) + 1
            reserved = Occupancy(
                registered=occupancy.registered + len(pending),
                waitlisted=occupancy.waitlisted - len(pending),
                waitlisted_by_admin=occupancy.waitlisted_by_admin,
            )
            chosen = next_to_advance(
                course.settings,
                reserved,
                [w for w in waiting if w not in pending],
                school_registered=registered,
            )
            own = [w for w in chosen if w.school == self.school]
            for entry in own:
                connection.execute(
                    update(admin.enrollments)
                    .where(
                        _enrollment.course_number == number,
                        _enrollment.participant_number == entry.key.participant_number,
                        _enrollment.status == Status.WAITLISTED.value,
                    )
                    .values(**status_change(Status.REGISTERED, admin_now))
                )
        offered = [w for w in chosen if w.school != self.school]
        with self.state_engine.begin() as connection:
            for entry in offered:
                offer_id = str(uuid.uuid4())
                connection.execute(
                    insert(state.advance_offers).values(
                        course_master=course.ref.master_school,
                        course_number=course.ref.number,
                        origin_school=entry.school,
                        participant_number=entry.key.participant_number,
                        offer_id=offer_id,
                        offered_at=now.replace(tzinfo=None),
                    )
                )
                enqueue_place_offer(connection, entry.key, offer_id, now)
        for entry in chosen:
            log.info(
                "place.advanced" if entry.school == self.school else "place.offered",
                school=self.school,
                course=course.ref.number,
                to_school=entry.school,
                participant_number=entry.key.participant_number,
            )
        return list(chosen)

    def _live_offers(
        self, course: CourseRef, waiting: list[Waiting], now: datetime
    ) -> set[tuple[str, int]]:
        """Offers still holding a place: their entry still waits and they have not expired.
        The others are settled (taken or declined) and forgotten."""
        offers = state.advance_offers.c
        still_waiting = {(w.school, w.key.participant_number) for w in waiting}
        cutoff = now.replace(tzinfo=None) - self.offer_ttl
        live: set[tuple[str, int]] = set()
        with self.state_engine.begin() as connection:
            rows = connection.execute(
                select(state.advance_offers).where(
                    offers.course_master == course.master_school,
                    offers.course_number == course.number,
                )
            ).all()
            for row in rows:
                key = (row.origin_school, row.participant_number)
                if key in still_waiting and row.offered_at > cutoff:
                    live.add(key)
                    continue
                connection.execute(
                    delete(state.advance_offers).where(
                        offers.course_master == row.course_master,
                        offers.course_number == row.course_number,
                        offers.origin_school == row.origin_school,
                        offers.participant_number == row.participant_number,
                    )
                )
        return live


def accept_place_offer(
    admin_engine: Engine,
    state_engine: Engine,
    school: str,
    offer: PlaceOffered,
    admin_now: datetime,
) -> bool:
    """At the school that owns the entry: take the offered place if the entry still waits and
    the person is not blocked. Returns whether it moved; a second delivery changes nothing."""
    course: CourseRef = course_ref(offer.data.course)
    key = EnrollmentKey(offer.data.origin_school, offer.data.participant_number, course)
    if key.origin_school != school:
        log.warning("place.misrouted", school=school, offer_id=offer.data.offer_id)
        return False
    with admin_engine.begin() as connection:
        local = kept.local_course_number(connection, state_engine, course)
        if local is None:
            log.warning(
                "place.declined", school=school, course=course.number, reason="unknown_course"
            )
            return False
        participant = admin.participants.c
        row = connection.execute(
            select(_enrollment.id, participant.blocked)
            .join_from(
                admin.enrollments,
                admin.participants,
                _enrollment.participant_number == participant.number,
            )
            .where(
                _enrollment.course_number == local,
                _enrollment.participant_number == key.participant_number,
                _enrollment.status == Status.WAITLISTED.value,
            )
            .order_by(_enrollment.id.desc())
        ).first()
        reason = "not_waiting" if row is None else "blocked" if row.blocked else None
        if row is not None and reason is None:
            connection.execute(
                update(admin.enrollments)
                .where(_enrollment.id == row.id)
                .values(**status_change(Status.REGISTERED, admin_now))
            )
    if reason is not None:
        log.info("place.declined", school=school, course=course.number, reason=reason)
        return False
    log.info(
        "place.accepted",
        school=school,
        course=course.number,
        participant_number=key.participant_number,
        offer_id=offer.data.offer_id,
    )
    return True
