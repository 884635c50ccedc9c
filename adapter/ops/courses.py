"""Reading a course as this school sees it: header and rows (`vhs-sync course show`)."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import aliased

from adapter.domain import CourseRef
from adapter.mapping.listing import CourseDetails, ListedEnrollment, Listing, build_listing
from adapter.store import admin, kept, state


class CourseNotFoundError(LookupError):
    """No course with that number in this school's admin DB."""


def course_details(row: Mapping[str, Any]) -> CourseDetails:
    """The header details of a course row; a column this admin DB lacks is unknown."""
    units = row.get("teaching_units")
    return CourseDetails(
        registration_deadline=row.get("registration_deadline"),
        time_from=row.get("time_from"),
        time_to=row.get("time_to"),
        sessions=row.get("sessions"),
        teaching_units=None if units is None else Decimal(units),
        place=row.get("place") or None,
        lecturer=row.get("lecturer") or None,
        cancelled=bool(row.get("cancelled")),
    )


def load_listing(admin_engine: Engine, state_engine: Engine, number: str, school: str) -> Listing:
    course = admin.courses.c
    enrollment = admin.enrollments.c
    participant = admin.participants.c
    company = aliased(admin.participants)
    with admin_engine.connect() as connection:
        found = kept.course_rows(connection, state_engine, course.number == number)
        if not found:
            raise CourseNotFoundError(f"course {number} is not in this school's admin DB")
        header = found[0]
        rows = connection.execute(
            select(
                enrollment.id,
                enrollment.status,
                participant.last_name,
                participant.first_name,
                participant.main_phone,
                participant.main_email,
                participant.iban,
                enrollment.payment_type,
                enrollment.fee,
                enrollment.balance,
                enrollment.remark,
                company.c.last_name.label("company_name"),
            )
            .join_from(
                admin.enrollments,
                admin.participants,
                enrollment.participant_number == participant.number,
            )
            .outerjoin(company, enrollment.company_number == company.c.number)
            .where(enrollment.course_number == number)
        ).all()
    ids = [row.id for row in rows]
    with state_engine.connect() as connection:
        foreign = (
            set(
                connection.execute(
                    select(state.applied.c.enrollment_id).where(
                        state.applied.c.enrollment_id.in_(ids)
                    )
                ).scalars()
            )
            if ids
            else set()
        )
    ref = (
        CourseRef(header["master_school"], header["master_number"] or number)
        if header["master_school"]
        else None
    )
    return build_listing(
        number=header["number"],
        title=header["title"] or "",
        starts_on=header["starts_on"],
        ends_on=header["ends_on"],
        fee=Decimal(header["fee"] or 0),
        min_participants=header["min_participants"],
        max_participants=header["max_participants"],
        desired_participants=header["desired_participants"],
        details=course_details(header),
        role=ref.role_of(school) if ref else None,
        enrollments=[
            ListedEnrollment(
                enrollment_id=row.id,
                status=row.status,
                last_name=row.last_name or "",
                first_name=row.first_name or "",
                main_phone=row.main_phone,
                main_email=row.main_email,
                iban=row.iban,
                payment_type=row.payment_type,
                fee=Decimal(row.fee or 0),
                balance=Decimal(row.balance or 0),
                remark=row.remark,
                company_name=row.company_name,
                foreign=row.id in foreign,
            )
            for row in rows
        ],
    )
