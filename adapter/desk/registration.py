"""The registration desk as an admin uses it: register, cancel, promote, waitlist, block.

Every decision uses the whole course's occupancy (own rows and rows that arrived by sync,
V2) and the pure rules of `adapter.domain.capacity` (D1-D6). Decisions at one school are
serialized per course: a process-wide lock per (admin DB, course), and inside one admin
transaction from read to write a lock on the course row (`SELECT ... FOR UPDATE` on
PostgreSQL and MariaDB; on SQLite a no-op write to the course row takes the database's write
lock up front, which serializes against other processes as well).

Each operation changes only this school's own enrollments and participants (V6, V11); sync
carries the change to the other schools.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

import structlog
from sqlalchemy import Connection, Engine, Select, insert, select, update

from adapter.desk.grants import live_grants, with_grants
from adapter.desk.mail import Mailer
from adapter.desk.operations import Person, keep_status_marks, status_change
from adapter.domain import (
    CourseRef,
    Decision,
    Occupancy,
    Refusal,
    Refused,
    Registered,
    Role,
    Status,
    Waitlisted,
    WaitReason,
    can_promote,
    decide_registration,
    next_to_advance,
)
from adapter.domain.enrollment import ACTIVE_STATUSES
from adapter.mapping.courses import InvalidCourseSettingsError
from adapter.messages import PlaceAnswered
from adapter.ops.course_state import CourseNotFoundError, CourseState, read_course_state
from adapter.ops.logs import error_text
from adapter.store import admin, kept, state

log = structlog.get_logger("adapter.desk")

_course = admin.columns_of("courses")
_enrollment = admin.columns_of("enrollments")
_participant = admin.columns_of("participants")


class DeskError(Exception):
    """An operation the desk refuses, with a message an admin can act on."""


class UnknownCourseError(DeskError):
    """No course with that number in this school's admin DB."""


class CourseSettingsError(DeskError):
    """The course's settings contradict each other, so no decision can be made."""


class UnknownEnrollmentError(DeskError):
    """No enrollment with that id in this school's admin DB."""


class ForeignEnrollmentError(DeskError):
    """The enrollment arrived by sync; only the school where it was made may change it."""


class UnknownParticipantError(DeskError):
    """No participant with that number in this school's admin DB."""


class ForeignParticipantError(DeskError):
    """The participant row was created by sync for another school's person."""


class AlreadyEnrolledError(DeskError):
    """The person already holds a regular or waitlist place in the course."""


class InvalidStatusError(DeskError):
    """The enrollment's status does not allow the operation (say, promoting a cancellation)."""


class InvalidPersonError(DeskError):
    """The person data is not enough to register (a last name is needed)."""


@dataclass(frozen=True, slots=True)
class RegistrationResult:
    """What `Desk.register` decided and, unless refused, what it wrote.

    `participant_number` is None only for a refused newcomer; `enrollment_id` is None
    whenever the registration was refused. `returning`: the person was recognised (D5).
    """

    decision: Decision
    participant_number: int | None
    enrollment_id: int | None
    returning: bool

    @property
    def status(self) -> Status | None:
        """A or W, or None when refused."""
        if isinstance(self.decision, Registered | Waitlisted):
            return self.decision.status
        return None


@dataclass(frozen=True, slots=True)
class PromotionResult:
    """A promotion is always allowed (D3); `exceeds_max` warns that it overbooks the course.
    `mailed`: the person was told by mail."""

    exceeds_max: bool
    mailed: bool = False


@dataclass(frozen=True, slots=True)
class _Known:
    """A local participant recognised as the registering person (D5)."""

    number: int
    blocked: bool


@dataclass(frozen=True, slots=True)
class _EnrollmentRow:
    id: int
    participant_number: int
    status: str


_locks: dict[tuple[str, str], threading.RLock] = {}
_locks_guard = threading.Lock()


class PlaceRequester(Protocol):
    """Who allots a subscriber's regular places: the master (`adapter.desk.places`)."""

    def request(self, course: CourseRef, participant_number: int) -> PlaceAnswered | None: ...


def _allotted(
    places: PlaceRequester,
    course: CourseState,
    ref: CourseRef,
    number: int,
    decision: Registered | Waitlisted,
) -> Decision:
    """A subscriber's regular place stands only if the master allots it (see
    `adapter.desk.places`); without an answer the desk's own decision stands."""
    answer = places.request(ref, number)
    if answer is None or answer.data.granted:
        return decision
    reason = answer.data.reason or ""
    if reason in Refusal.__members__.values():
        return Refused(Refusal(reason))
    capacity = course.settings.waitlist_capacity
    if capacity is not None and course.occupancy().waitlisted >= capacity:
        return Refused(Refusal.WAITLIST_FULL)
    known = reason in WaitReason.__members__.values()
    return Waitlisted(WaitReason(reason) if known else WaitReason.FULL)


def reserved_occupancy(course: CourseState, school: str) -> tuple[Occupancy, int]:
    """The occupancy to decide on, with the places automatic advance would give to waiting
    entries already taken, so that a newcomer never jumps the waitlist (D3); and `school`'s
    regular places, likewise counting its entries about to advance."""
    occupancy = course.occupancy()
    by_school = course.registered_by_school()
    own = by_school.get(school, 0)
    if not course.settings.auto_advance:
        return occupancy, own
    advancing = next_to_advance(
        course.settings, occupancy, course.waiting(), school_registered=by_school
    )
    moved = len(advancing)
    reserved = Occupancy(
        registered=occupancy.registered + moved,
        waitlisted=occupancy.waitlisted - moved,
        waitlisted_by_admin=occupancy.waitlisted_by_admin,
    )
    return reserved, own + sum(entry.school == school for entry in advancing)


def course_lock(admin_engine: Engine, course_number: str) -> threading.RLock:
    """The process-wide lock for registration decisions on one course of one admin DB."""
    key = (admin_engine.url.render_as_string(hide_password=True), course_number)
    with _locks_guard:
        return _locks.setdefault(key, threading.RLock())


def lock_course_row(course_number: str) -> Select[tuple[str]]:
    """The course row, locked until the transaction ends: `FOR UPDATE`, which SQL Server
    leaves out, so there the table hint takes the lock."""
    return (
        select(_course.number)
        .where(_course.number == course_number)
        .with_for_update()
        .with_hint(admin.courses, "WITH (UPDLOCK, ROWLOCK)", dialect_name="mssql")
    )


def _norm(text: str | None) -> str:
    return (text or "").strip()


def _promotion_mail(first_name: str, last_name: str, course: str, title: str) -> tuple[str, str]:
    named = f"{course} „{title}“" if title else course
    subject = f"Wartelistenplatz auf offiziellen Platz gesetzt: Kurs {course}"
    body = (
        f"Guten Tag {first_name} {last_name},\n\n"
        f"Ihr Wartelistenplatz im Kurs {named} wurde auf einen offiziellen Platz gesetzt.\n"
        "Sie sind damit verbindlich für den Kurs angemeldet.\n\n"
        "Mit freundlichen Grüßen\n"
        "Ihre Volkshochschule\n"
    )
    return subject, body


class Desk:
    """The admin operations of one school on its reference admin DB."""

    def __init__(
        self,
        admin_engine: Engine,
        state_engine: Engine,
        school: str,
        *,
        mailer: Mailer | None = None,
        places: PlaceRequester | None = None,
        clock: Callable[[], datetime] = datetime.now,
    ) -> None:
        self.admin_engine = admin_engine
        self.state_engine = state_engine
        self.school = school
        self.mailer = mailer
        self.places = places
        self.clock = clock

    # -- registration -------------------------------------------------------------------

    def register(
        self, course_number: str, person: Person, *, privacy_consent: bool
    ) -> RegistrationResult:
        """Decide A, W or a refusal for one person and write it; a refusal writes nothing.

        A returning person (D5) keeps their participant number; a person who already holds
        an active place in the course gets `AlreadyEnrolledError`. At a subscriber, a regular
        place is asked of the master first, outside any transaction, so that the school's
        adapter can go on applying meanwhile.
        """
        if not _norm(person.last_name):
            raise InvalidPersonError("a registration needs the person's last name")
        now = self._now()
        stamp = now.replace(microsecond=0)
        with course_lock(self.admin_engine, course_number):
            with self.course_transaction(course_number) as connection:
                course = self.course_state(connection, course_number)
                existing = self._find_person(connection, person)
                if existing is not None:
                    self._refuse_second_enrollment(connection, course_number, existing, person)
                blocked = existing.blocked if existing is not None else person.blocked
                occupancy, school_registered = self._reserved(course)
                decision = decide_registration(
                    course.settings,
                    occupancy,
                    school_registered,
                    blocked=blocked,
                    privacy_consent=privacy_consent,
                )
                number = existing.number if existing is not None else None
                if isinstance(decision, Refused):
                    return self._refused(course_number, decision, number, existing is not None)
                if number is None:
                    number = self._insert_person(connection, person, stamp)
                ask_master = (
                    isinstance(decision, Registered)
                    and course.ref is not None
                    and course.ref.role_of(self.school) is Role.SUBSCRIBER
                )
                places = self.places if ask_master else None
                if places is None:
                    enrollment_id = self._insert_enrollment(
                        connection, course_number, number, decision, now, stamp
                    )
            if places is not None and course.ref is not None:
                decision = _allotted(places, course, course.ref, number, decision)
                if isinstance(decision, Refused):
                    return self._refused(course_number, decision, number, existing is not None)
                with self.course_transaction(course_number) as connection:
                    enrollment_id = self._insert_enrollment(
                        connection, course_number, number, decision, now, stamp
                    )
        log.info(
            "desk.registered",
            school=self.school,
            course=course_number,
            status=decision.status.value,
            participant_number=number,
            enrollment_id=enrollment_id,
        )
        return RegistrationResult(decision, number, enrollment_id, existing is not None)

    def _refuse_second_enrollment(
        self, connection: Connection, course_number: str, existing: _Known, person: Person
    ) -> None:
        active = connection.execute(
            select(_enrollment.id).where(
                _enrollment.course_number == course_number,
                _enrollment.participant_number == existing.number,
                _enrollment.status.in_(ACTIVE_STATUSES),
            )
        ).first()
        if active is not None:
            raise AlreadyEnrolledError(
                f"participant {existing.number} ({_norm(person.first_name)} "
                f"{_norm(person.last_name)}) already holds enrollment {active.id} "
                f"in course {course_number}"
            )

    def _refused(
        self, course_number: str, decision: Refused, number: int | None, returning: bool
    ) -> RegistrationResult:
        log.info(
            "desk.refused", school=self.school, course=course_number, reason=decision.reason.value
        )
        return RegistrationResult(decision, number, None, returning)

    def _insert_enrollment(
        self,
        connection: Connection,
        course_number: str,
        number: int,
        decision: Registered | Waitlisted,
        now: datetime,
        stamp: datetime,
    ) -> int:
        waiting = isinstance(decision, Waitlisted)
        fee = connection.execute(
            select(_course.fee).where(_course.number == course_number)
        ).scalar_one()
        values = {
            "course_number": course_number,
            "participant_number": number,
            "status": decision.status.value,
            "registered_on": now.date(),
            "waitlisted_since": now if waiting else None,
            "waitlisted_by_admin": False,
            "fee": fee,
            "balance": fee,
            "modified_at": stamp,
        }
        inserted = connection.execute(
            insert(admin.enrollments).values(**admin.writable("enrollments", values))
        ).inserted_primary_key
        assert inserted is not None
        if waiting:
            kept.keep_marks(self.state_engine, {int(inserted[0]): kept.marks_of(values)})
        return int(inserted[0])

    def _reserved(self, course: CourseState) -> tuple[Occupancy, int]:
        """At the master, the places it allotted to other schools' desks count as taken."""
        occupancy, held = reserved_occupancy(course, self.school)
        if course.ref is None or course.ref.role_of(self.school) is not Role.MASTER:
            return occupancy, held
        grants = live_grants(self.state_engine, course, datetime.now(UTC))
        return with_grants(occupancy, held, grants, self.school)

    def _find_person(self, connection: Connection, person: Person) -> _Known | None:
        """The local participant this person is (D5): first name, last name, birthday and
        main email all match (names trimmed, email trimmed and case-insensitive). Without a
        birthday or an email a person cannot be recognised. Rows that sync created for other
        schools' people are never matched."""
        email = _norm(person.main_email).casefold()
        if person.birthday is None or not email:
            return None
        candidates = connection.execute(
            select(
                _participant.number,
                _participant.first_name,
                _participant.last_name,
                _participant.main_email,
                _participant.blocked,
            )
            .where(_participant.birthday == person.birthday)
            .order_by(_participant.number)
        ).all()
        matching = [
            row
            for row in candidates
            if _norm(row.first_name) == _norm(person.first_name)
            and _norm(row.last_name) == _norm(person.last_name)
            and _norm(row.main_email).casefold() == email
        ]
        if not matching:
            return None
        foreign = self._foreign_participants([row.number for row in matching])
        return next(
            (
                _Known(int(row.number), bool(row.blocked))
                for row in matching
                if row.number not in foreign
            ),
            None,
        )

    def _insert_person(self, connection: Connection, person: Person, stamp: datetime) -> int:
        inserted = connection.execute(
            insert(admin.participants).values(
                last_name=_norm(person.last_name),
                first_name=_norm(person.first_name),
                birthday=person.birthday,
                main_email=_norm(person.main_email) or None,
                main_phone=_norm(person.main_phone) or None,
                iban=_norm(person.iban) or None,
                blocked=person.blocked,
                modified_at=stamp,
            )
        ).inserted_primary_key
        assert inserted is not None
        return int(inserted[0])

    # -- status changes -----------------------------------------------------------------

    def cancel(self, enrollment_id: int) -> None:
        """Cancel an own enrollment: status S, never a delete (V4). Cancelling a cancellation
        changes nothing."""
        course_number = self._own_course(enrollment_id)
        with self.course_transaction(course_number) as connection:
            row = self._enrollment(connection, enrollment_id)
            if row.status == Status.CANCELLED.value:
                return
            connection.execute(
                update(admin.enrollments)
                .where(_enrollment.id == enrollment_id)
                .values(**status_change(Status.CANCELLED, self._now()))
            )
        log.info("desk.cancelled", school=self.school, enrollment_id=enrollment_id)

    def promote(self, enrollment_id: int) -> PromotionResult:
        """Waitlist place set to regular place (W to A, D3): allowed even past max; the
        person is told by mail when a mailer is configured and they have a main email."""
        course_number = self._own_course(enrollment_id)
        with self.course_transaction(course_number) as connection:
            row = self._enrollment(connection, enrollment_id)
            if row.status != Status.WAITLISTED.value:
                raise InvalidStatusError(
                    f"enrollment {enrollment_id} has status {row.status}; only a waitlisted "
                    "enrollment (W) can be promoted"
                )
            course = self.course_state(connection, course_number)
            check = can_promote(course.settings, course.occupancy())
            connection.execute(
                update(admin.enrollments)
                .where(_enrollment.id == enrollment_id)
                .values(**status_change(Status.REGISTERED, self._now()))
            )
            person = connection.execute(
                select(
                    _participant.first_name, _participant.last_name, _participant.main_email
                ).where(_participant.number == row.participant_number)
            ).one()
            title = connection.execute(
                select(_course.title).where(_course.number == course_number)
            ).scalar_one()
        log.info(
            "desk.promoted",
            school=self.school,
            enrollment_id=enrollment_id,
            exceeds_max=check.exceeds_max,
        )
        mailed = False
        email = _norm(person.main_email)
        if self.mailer is not None and email:
            subject, body = _promotion_mail(
                _norm(person.first_name), _norm(person.last_name), course_number, title or ""
            )
            try:
                self.mailer.send(email, subject, body)
                mailed = True
            except OSError as error:  # smtplib's errors included; the promotion stands
                log.warning(
                    "desk.mail_failed",
                    school=self.school,
                    enrollment_id=enrollment_id,
                    error=error_text(error),  # smtplib's errors name the recipient
                )
        return PromotionResult(exceeds_max=check.exceeds_max, mailed=mailed)

    def to_waitlist(self, enrollment_id: int) -> None:
        """An admin moves a regular place to the waitlist (A to W, marked as the admin's
        move, which the manual mode does not count against new registrations, D2)."""
        course_number = self._own_course(enrollment_id)
        with self.course_transaction(course_number) as connection:
            row = self._enrollment(connection, enrollment_id)
            if row.status != Status.REGISTERED.value:
                raise InvalidStatusError(
                    f"enrollment {enrollment_id} has status {row.status}; only a registered "
                    "enrollment (A) can be moved to the waitlist"
                )
            now = self._now()
            connection.execute(
                update(admin.enrollments)
                .where(_enrollment.id == enrollment_id)
                .values(**status_change(Status.WAITLISTED, now, by_admin=True))
            )
            keep_status_marks(
                self.state_engine, enrollment_id, Status.WAITLISTED, now, by_admin=True
            )
        log.info("desk.waitlisted", school=self.school, enrollment_id=enrollment_id)

    def block(self, participant_number: int, blocked: bool = True) -> None:
        """Block (or unblock) an own participant: a blocked person always waits (D4)."""
        with self.admin_engine.begin() as connection:
            found = connection.execute(
                select(_participant.number).where(_participant.number == participant_number)
            ).first()
            if found is None:
                raise UnknownParticipantError(
                    f"participant {participant_number} is not in this school's admin DB"
                )
            if self._foreign_participants([participant_number]):
                raise ForeignParticipantError(
                    f"participant {participant_number} was created by sync for another "
                    "school's person; only that school can block them (V11)"
                )
            connection.execute(
                update(admin.participants)
                .where(_participant.number == participant_number)
                .values(blocked=blocked, modified_at=self._stamp())
            )
        log.info(
            "desk.blocked" if blocked else "desk.unblocked",
            school=self.school,
            participant_number=participant_number,
        )

    # -- helpers ------------------------------------------------------------------------

    def _now(self) -> datetime:
        now = self.clock()
        if now.tzinfo is not None:
            now = now.astimezone().replace(tzinfo=None)
        return now

    def _stamp(self) -> datetime:
        return self._now().replace(microsecond=0)

    @contextmanager
    def course_transaction(self, course_number: str) -> Iterator[Connection]:
        """One admin transaction holding the process-wide course lock and the course row."""
        with course_lock(self.admin_engine, course_number), self.admin_engine.begin() as conn:
            if conn.dialect.name == "sqlite":
                # pysqlite starts the transaction only at the first write: make that write the
                # first statement, so the whole read-decide-write runs under the write lock.
                found = conn.execute(
                    update(admin.courses)
                    .where(_course.number == course_number)
                    .values(title=_course.title)
                ).rowcount
            else:
                found = conn.execute(lock_course_row(course_number)).first() is not None
            if not found:
                raise UnknownCourseError(f"course {course_number} is not in this school's admin DB")
            yield conn

    def course_state(self, connection: Connection, course_number: str) -> CourseState:
        try:
            return read_course_state(connection, self.state_engine, course_number, self.school)
        except CourseNotFoundError as error:
            raise UnknownCourseError(str(error)) from error
        except InvalidCourseSettingsError as error:
            raise CourseSettingsError(str(error)) from error

    def _own_course(self, enrollment_id: int) -> str:
        """The course of an own enrollment; unknown and foreign enrollments are refused."""
        with self.admin_engine.connect() as connection:
            course_number = connection.execute(
                select(_enrollment.course_number).where(_enrollment.id == enrollment_id)
            ).scalar()
        if course_number is None:
            raise UnknownEnrollmentError(
                f"enrollment {enrollment_id} is not in this school's admin DB"
            )
        applied = state.applied.c
        with self.state_engine.connect() as connection:
            origin = connection.execute(
                select(applied.origin_school).where(applied.enrollment_id == enrollment_id)
            ).scalar()
        if origin is not None:
            raise ForeignEnrollmentError(
                f"enrollment {enrollment_id} in course {course_number} arrived by sync from "
                f"{origin}; only {origin} can change it (V6, V11)"
            )
        return str(course_number)

    def _enrollment(self, connection: Connection, enrollment_id: int) -> _EnrollmentRow:
        row = connection.execute(
            select(_enrollment.id, _enrollment.participant_number, _enrollment.status).where(
                _enrollment.id == enrollment_id
            )
        ).first()
        if row is None:
            raise UnknownEnrollmentError(
                f"enrollment {enrollment_id} is not in this school's admin DB"
            )
        return _EnrollmentRow(int(row.id), int(row.participant_number), str(row.status))

    def _foreign_participants(self, numbers: list[int]) -> set[int]:
        """Which of these local participant numbers sync created for other schools (V10)."""
        remote = state.remote_participants.c
        with self.state_engine.connect() as connection:
            return set(
                connection.execute(
                    select(remote.local_number).where(remote.local_number.in_(numbers))
                ).scalars()
            )
