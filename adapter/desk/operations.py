"""Admin operations on the reference admin DB (the school's own enrollments only)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import Connection, Engine, delete, insert, select, update

from adapter.domain import Status
from adapter.store import admin, kept


@dataclass(frozen=True, slots=True)
class Person:
    last_name: str
    first_name: str
    birthday: date | None = None
    main_email: str | None = None
    main_phone: str | None = None
    iban: str | None = None
    blocked: bool = False


def _now() -> datetime:
    return datetime.now().replace(microsecond=0)


def add_course(
    connection: Connection,
    number: str,
    *,
    title: str = "",
    fee: Decimal = Decimal("0"),
    max_participants: int | None = None,
    min_participants: int | None = None,
    master_school: str | None = None,
    master_number: str | None = None,
    starts_on: date | None = None,
    ends_on: date | None = None,
    state_engine: Engine | None = None,
) -> None:
    """A course; with `master_school` it is shared (at the master, `master_number` = `number`).
    Where the admin DB has no master school column, it is kept in `state_engine`."""
    values = {
        "number": number,
        "title": title,
        "fee": fee,
        "max_participants": max_participants,
        "min_participants": min_participants,
        "master_school": master_school,
        "master_number": master_number or (number if master_school else None),
        "starts_on": starts_on,
        "ends_on": ends_on,
        "modified_at": _now(),
    }
    connection.execute(insert(admin.courses).values(**admin.writable("courses", values)))
    if master_school is not None and not admin.has("courses", "master_school"):
        if state_engine is None:
            raise ValueError("this admin DB keeps the master school in the state DB: give it")
        kept.write_course_fields(
            connection, state_engine, number, {"master_school": master_school}, _now()
        )


def enroll(
    connection: Connection,
    course_number: str,
    person: Person,
    *,
    status: Status = Status.REGISTERED,
    fee: Decimal | None = None,
    payment_type: str | None = "Last",
    remark: str | None = None,
    registered_on: date | None = None,
    now: datetime | None = None,
    state_engine: Engine | None = None,
) -> tuple[int, int]:
    """A new participant booked into a course; returns (participant number, enrollment id)."""
    stamp = now or _now()
    participant = connection.execute(
        insert(admin.participants).values(
            last_name=person.last_name,
            first_name=person.first_name,
            birthday=person.birthday,
            main_email=person.main_email,
            main_phone=person.main_phone,
            iban=person.iban,
            blocked=person.blocked,
            modified_at=stamp,
        )
    ).inserted_primary_key
    assert participant is not None
    if fee is None:
        fee = connection.execute(
            select(admin.courses.c.fee).where(admin.courses.c.number == course_number)
        ).scalar_one()
    since = datetime.now() if status is Status.WAITLISTED else None
    enrollment = connection.execute(
        insert(admin.enrollments).values(
            **admin.writable(
                "enrollments",
                {
                    "course_number": course_number,
                    "participant_number": participant[0],
                    "status": status.value,
                    "registered_on": registered_on or stamp.date(),
                    "waitlisted_since": since,
                    "payment_type": payment_type,
                    "fee": fee,
                    "balance": fee,
                    "remark": remark,
                    "modified_at": stamp,
                },
            )
        )
    ).inserted_primary_key
    assert enrollment is not None
    if state_engine is not None and since is not None:
        kept.keep_marks(state_engine, {int(enrollment[0]): {"waitlisted_since": since}})
    return int(participant[0]), int(enrollment[0])


def _status_fields(status: Status, now: datetime, by_admin: bool) -> dict[str, object]:
    waiting = status is Status.WAITLISTED
    return {
        "status": status.value,
        "waitlisted_since": now if waiting else None,
        "waitlisted_by_admin": waiting and by_admin,
        "modified_at": now.replace(microsecond=0),
    }


def status_change(status: Status, now: datetime, *, by_admin: bool = False) -> dict[str, object]:
    """The enrollment-row fields a new status sets: waiting since now (and whether an admin
    put it there) for W; nothing of the waitlist otherwise. Stamped for capture. Where the
    admin DB lacks the waitlist columns, `keep_status_marks` records them."""
    return admin.writable("enrollments", _status_fields(status, now, by_admin))


def keep_status_marks(
    state_engine: Engine,
    enrollment_id: int,
    status: Status,
    now: datetime,
    *,
    by_admin: bool = False,
) -> None:
    """The waitlist marks of a move to W, in the state DB where the admin DB has no columns
    for them (only waiting rows' marks are read). Call before the admin DB commits."""
    if status is Status.WAITLISTED:
        fields = _status_fields(status, now, by_admin)
        kept.keep_marks(state_engine, {enrollment_id: kept.marks_of(fields)})


def set_status(
    connection: Connection,
    enrollment_id: int,
    status: Status,
    *,
    now: datetime | None = None,
    state_engine: Engine | None = None,
) -> None:
    """Cancel (S), waitlist (W) or register (A) an enrollment: never a delete (V4)."""
    moment = now or datetime.now()
    connection.execute(
        update(admin.enrollments)
        .where(admin.enrollments.c.id == enrollment_id)
        .values(**status_change(status, moment))
    )
    if state_engine is not None:
        keep_status_marks(state_engine, enrollment_id, status, moment)


def update_person(connection: Connection, participant_number: int, **fields: object) -> None:
    connection.execute(
        update(admin.participants)
        .where(admin.participants.c.number == participant_number)
        .values(modified_at=_now(), **fields)
    )


def delete_enrollment(connection: Connection, enrollment_id: int) -> None:
    """A hard delete ("Entfernung"), as a careless admin would do it: sync reports it."""
    connection.execute(delete(admin.enrollments).where(admin.enrollments.c.id == enrollment_id))
