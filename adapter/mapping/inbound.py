"""From another school's enrollment state to the rows this school must hold (V6, V9, V10, V12).

The master holds the real participant, booked as a company booking of the origin school; a
subscriber holds an anonymised row in the origin school's name. Either way fee and balance
start at 0, and the remark says where the enrollment was made.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from adapter.domain import EnrollmentState, PersonalData, Role, Status

REMARK_PREFIX = "Mehrfachanmeldung; vhsKOOB"
UNKNOWN_NAME = "(unbekannt)"


def sync_remark(origin_name: str) -> str:
    """The remark of every row that arrived by sync (V9)."""
    return f"{REMARK_PREFIX} Anmeldung von {origin_name}"


def arrived_by_sync(remark: str | None) -> bool:
    """Rows written by sync carry its remark: a second sign, besides the adapter's own record,
    that a row is foreign and must never be published as the school's own (V11)."""
    return (remark or "").startswith(REMARK_PREFIX)


@dataclass(frozen=True, slots=True)
class ParticipantFields:
    """The participant row a master keeps for a remote participant (V10)."""

    last_name: str
    first_name: str
    main_email: str | None
    main_phone: str | None

    def as_row(self) -> dict[str, Any]:
        return {
            "last_name": self.last_name,
            "first_name": self.first_name,
            "main_email": self.main_email,
            "main_phone": self.main_phone,
        }


@dataclass(frozen=True, slots=True)
class ForeignView:
    """What an event demands of this school's admin DB."""

    role: Role
    participant: ParticipantFields | None  # only at the master
    status: Status
    registered_on: date | None
    remark: str
    waitlisted_since: datetime | None = None
    waitlisted_by_admin: bool = False

    def enrollment_fields(self) -> dict[str, Any]:
        """The enrollment fields the origin school owns (DESIGN decision 7); never the balance."""
        return {
            "status": self.status.value,
            "registered_on": self.registered_on,
            "waitlisted_since": self.waitlisted_since,
            "waitlisted_by_admin": self.waitlisted_by_admin,
        }

    def new_enrollment(self) -> dict[str, Any]:
        """A new foreign row: fee 0, balance 0, the sync remark (V9, V10)."""
        return {
            **self.enrollment_fields(),
            "fee": Decimal("0.00"),
            "balance": Decimal("0.00"),
            "remark": self.remark,
            "payment_type": None,
        }


def participant_fields(personal: PersonalData | None) -> ParticipantFields:
    if personal is None:
        return ParticipantFields(UNKNOWN_NAME, "", None, None)
    return ParticipantFields(
        personal.last_name, personal.first_name, personal.main_email, personal.main_phone
    )


def foreign_view(state: EnrollmentState, school: str, origin_name: str) -> ForeignView:
    """The view of a foreign enrollment that this school's role in the course allows."""
    role = state.key.course.role_of(school)
    participant = participant_fields(state.personal) if role is Role.MASTER else None
    return ForeignView(
        role,
        participant,
        state.status,
        state.registered_on,
        sync_remark(origin_name),
        waitlisted_since=state.waitlisted_since,
        waitlisted_by_admin=state.waitlisted_by_admin,
    )


def changed_fields(current: Mapping[str, Any], demanded: dict[str, Any]) -> dict[str, Any]:
    """Only what differs: apply writes nothing when the row already is as demanded."""
    return {name: value for name, value in demanded.items() if current.get(name) != value}


def participant_update(current: dict[str, Any], personal: PersonalData | None) -> dict[str, Any]:
    """Fields to change on a master's remote participant row.

    A state without personal data (a cancellation of a row deleted at its origin) keeps the
    participant as it is.
    """
    if personal is None:
        return {}
    return changed_fields(current, participant_fields(personal).as_row())
