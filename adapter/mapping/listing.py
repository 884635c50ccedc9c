"""The course listing as a school sees it (V13 and the seed's two example listings)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, time
from decimal import Decimal

from adapter.domain import Role, Status
from adapter.mapping.offers import duration_text, weekday


@dataclass(frozen=True, slots=True)
class ListedEnrollment:
    """One enrollment row of a course in the admin DB, with its participant and company."""

    enrollment_id: int
    status: str
    last_name: str
    first_name: str
    main_phone: str | None
    main_email: str | None
    iban: str | None
    payment_type: str | None
    fee: Decimal
    balance: Decimal
    remark: str | None
    company_name: str | None = None
    foreign: bool = False


@dataclass(frozen=True, slots=True)
class ListingRow:
    no: int
    name: str
    phone: str
    mail: str
    iban: str
    payment_type: str
    fee: Decimal
    balance: Decimal
    remark: str
    status: str


@dataclass(frozen=True, slots=True)
class CourseDetails:
    """What the seed's header shows of a course besides dates and counts, where the course
    row has it: registration deadline (Anmeldeschluss), times (Uhrzeit), sessions (Dauer),
    teaching units (UE), place (Ort), lecturer (Dozent), and whether it is cancelled."""

    registration_deadline: date | None = None
    time_from: time | None = None
    time_to: time | None = None
    sessions: int | None = None
    teaching_units: Decimal | None = None
    place: str | None = None
    lecturer: str | None = None
    cancelled: bool = False


@dataclass(frozen=True, slots=True)
class Listing:
    number: str
    title: str
    starts_on: date | None
    ends_on: date | None
    fee: Decimal
    min_participants: int | None
    max_participants: int | None
    registered: int
    waitlisted: int
    role: Role | None
    rows: list[ListingRow] = field(default_factory=list)
    desired_participants: int | None = None
    details: CourseDetails = field(default_factory=lambda: CourseDetails())

    @property
    def free(self) -> int | None:
        """Places left (V13: frei = max - TN); never negative, even when an admin overbooked."""
        if self.max_participants is None:
            return None
        return max(0, self.max_participants - self.registered)


def mask_iban(iban: str | None) -> str:
    """Only the last four characters, as the admin product shows them: `..3592`."""
    compact = (iban or "").replace(" ", "")
    return f"..{compact[-4:]}" if compact else ""


def _name(row: ListedEnrollment) -> str:
    name = ", ".join(part for part in (row.last_name, row.first_name) if part)
    if row.company_name and row.company_name != name:
        return f"{name} ({row.company_name})" if name else f"({row.company_name})"
    return name


def is_listed(row: ListedEnrollment, role: Role | None) -> bool:
    """A cancelled foreign row disappears at a subscriber; the master keeps it as status S (V6)."""
    return not (row.foreign and role is Role.SUBSCRIBER and row.status == Status.CANCELLED)


def build_listing(
    *,
    number: str,
    title: str,
    starts_on: date | None,
    ends_on: date | None,
    fee: Decimal,
    min_participants: int | None,
    max_participants: int | None,
    role: Role | None,
    enrollments: Sequence[ListedEnrollment],
    desired_participants: int | None = None,
    details: CourseDetails | None = None,
) -> Listing:
    """The listing: header counts across all schools' rows, then the visible rows in order."""
    visible = [
        row for row in sorted(enrollments, key=lambda r: r.enrollment_id) if is_listed(row, role)
    ]
    rows = [
        ListingRow(
            no=index,
            name=_name(row),
            phone=row.main_phone or "",
            mail=row.main_email or "",
            iban=mask_iban(row.iban),
            payment_type=row.payment_type or "",
            fee=row.fee,
            balance=row.balance,
            remark=row.remark or "",
            status=row.status,
        )
        for index, row in enumerate(visible, start=1)
    ]
    return Listing(
        number=number,
        title=title,
        starts_on=starts_on,
        ends_on=ends_on,
        fee=fee,
        min_participants=min_participants,
        max_participants=max_participants,
        registered=sum(row.status == Status.REGISTERED for row in enrollments),
        waitlisted=sum(row.status == Status.WAITLISTED for row in enrollments),
        role=role,
        rows=rows,
        desired_participants=desired_participants,
        details=details or CourseDetails(),
    )


def listing_as_dict(listing: Listing) -> dict[str, object]:
    """The JSON form of a listing (`vhs-sync course show --json`)."""
    details = listing.details
    return {
        "course": listing.number,
        "title": listing.title,
        "starts_on": listing.starts_on.isoformat() if listing.starts_on else None,
        "ends_on": listing.ends_on.isoformat() if listing.ends_on else None,
        "role": listing.role.value if listing.role else None,
        "fee": str(listing.fee),
        "registered": listing.registered,
        "free": listing.free,
        "min": listing.min_participants,
        "max": listing.max_participants,
        "desired": listing.desired_participants,
        "waitlisted": listing.waitlisted,
        "weekday": weekday(listing.starts_on) if listing.starts_on else None,
        "registration_deadline": (
            details.registration_deadline.isoformat() if details.registration_deadline else None
        ),
        "time_from": f"{details.time_from:%H:%M}" if details.time_from else None,
        "time_to": f"{details.time_to:%H:%M}" if details.time_to else None,
        "duration": duration_text(details.sessions, details.time_from),
        "teaching_units": (
            str(details.teaching_units) if details.teaching_units is not None else None
        ),
        "place": details.place,
        "lecturer": details.lecturer,
        "cancelled": details.cancelled,
        "rows": [
            {
                "no": row.no,
                "name": row.name,
                "phone": row.phone,
                "mail": row.mail,
                "iban": row.iban,
                "payment_type": row.payment_type,
                "fee": str(row.fee),
                "balance": str(row.balance),
                "remark": row.remark,
                "status": row.status,
            }
            for row in listing.rows
        ],
    }
