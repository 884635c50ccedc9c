"""`vhs-sync settlement`: at course end the master bills each subscriber school (V12).

Reads the master's company bookings of each subscriber school (the rows sync booked, found
through the state DB, status A), keeps the rate entered per school in the state DB, and sets
the rate as open balance of each of those bookings, once per school. Sync never writes a
balance (consumers/apply.py), so what is set here stays until staff change it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import Connection, Engine, and_, select, update

from adapter.domain import Status
from adapter.domain.settlement import Booking, SchoolSettlement, Settlement
from adapter.store import admin, kept, state
from adapter.store.db import upsert


class SettlementError(Exception):
    """A settlement that cannot be made as asked, with what to do instead."""


def _master_course(
    connection: Connection, state_engine: Engine, number: str, school: str
) -> tuple[str, date | None]:
    rows = kept.course_rows(connection, state_engine, admin.courses.c.number == number)
    if not rows:
        raise SettlementError(f"course {number} is not in this school's admin DB")
    row = rows[0]
    if row["master_school"] is None:
        raise SettlementError(f"course {number} is not shared: there is nothing to settle")
    if row["master_school"] != school:
        raise SettlementError(
            f"course {number} belongs to {row['master_school']}: only its master settles it"
        )
    return str(row["master_number"] or number), row["ends_on"]


def _bookings(
    admin_connection: Connection, state_connection: Connection, master: str, course: str
) -> dict[str, list[Booking]]:
    """Per subscriber school, its company bookings at the master that hold a regular place."""
    applied = state.applied.c
    origins = {
        enrollment_id: (origin, number)
        for origin, number, enrollment_id in state_connection.execute(
            select(applied.origin_school, applied.participant_number, applied.enrollment_id).where(
                applied.course_master == master,
                applied.course_number == course,
                applied.origin_school != master,
            )
        )
    }
    enrollment, participant = admin.enrollments.c, admin.participants.c
    found: dict[str, list[Booking]] = {}
    ids = sorted(origins)
    for start in range(0, len(ids), 500):
        rows = admin_connection.execute(
            select(
                enrollment.id,
                enrollment.balance,
                participant.last_name,
                participant.first_name,
            )
            .join_from(
                admin.enrollments,
                admin.participants,
                enrollment.participant_number == participant.number,
            )
            .where(
                enrollment.id.in_(ids[start : start + 500]),
                enrollment.status == Status.REGISTERED.value,
            )
            .order_by(enrollment.id)
        )
        for row in rows:
            origin, number = origins[row.id]
            found.setdefault(origin, []).append(
                Booking(
                    enrollment_id=row.id,
                    participant_number=number,
                    name=", ".join(part for part in (row.last_name, row.first_name) if part),
                    balance=Decimal(row.balance or 0),
                )
            )
    return found


def load_settlement(
    admin_engine: Engine, state_engine: Engine, number: str, school: str, names: Mapping[str, str]
) -> Settlement:
    """The settlement of the course with this local number, as far as it is entered and set.
    `names`: the subscriber schools this school knows, by id."""
    with admin_engine.connect() as admin_connection, state_engine.connect() as state_connection:
        course, ends_on = _master_course(admin_connection, state_engine, number, school)
        bookings = _bookings(admin_connection, state_connection, school, course)
        entered = {
            row.school: row
            for row in state_connection.execute(
                select(state.settlements).where(
                    state.settlements.c.course_master == school,
                    state.settlements.c.course_number == course,
                )
            )
        }
    schools = sorted(set(bookings) | set(entered) | (set(names) - {school}))
    return Settlement(
        course=course,
        ends_on=ends_on,
        schools=tuple(
            SchoolSettlement(
                school=peer,
                name=names.get(peer, peer),
                bookings=tuple(bookings.get(peer, ())),
                rate=Decimal(entered[peer].rate) if peer in entered else None,
                set_at=entered[peer].set_at if peer in entered else None,
                set_count=entered[peer].set_count if peer in entered else None,
            )
            for peer in schools
        ),
    )


def enter_rates(
    state_engine: Engine, settlement: Settlement, master: str, rates: Mapping[str, Decimal]
) -> None:
    """Keep the rate of each school; a school whose balances are set keeps its rate."""
    by_school = {entry.school: entry for entry in settlement.schools}
    unknown = sorted(set(rates) - set(by_school))
    if unknown:
        raise SettlementError(
            f"not a subscriber school of this network: {', '.join(unknown)} (see [[schools]])"
        )
    settled = sorted(s for s in rates if by_school[s].settled and by_school[s].rate != rates[s])
    if settled:
        raise SettlementError(
            f"already settled, the rate stays: {', '.join(settled)} (change the balances in "
            "the admin product if the bill must change)"
        )
    with state_engine.begin() as connection:
        upsert(
            connection,
            state.settlements,
            [
                {
                    "course_master": master,
                    "course_number": settlement.course,
                    "school": school,
                    "rate": rate,
                }
                for school, rate in sorted(rates.items())
                if not by_school[school].settled
            ],
        )


def set_balances(
    admin_engine: Engine,
    state_engine: Engine,
    settlement: Settlement,
    master: str,
    schools: Iterable[str] | None,
    *,
    today: date,
    now: datetime,
    admin_now: datetime,
) -> list[SchoolSettlement]:
    """Write each chosen school's rate as open balance of its company bookings (status A),
    once per school; every school with a rate when `schools` is None. Returns those set."""
    if settlement.ends_on is not None and settlement.ends_on > today:
        raise SettlementError(
            f"course {settlement.course} ends on {settlement.ends_on:%d.%m.%Y}: settle it at "
            "course end"
        )
    by_school = {entry.school: entry for entry in settlement.schools}
    if schools is None:
        # A school with no regular place yet is left for later: settled, its rate would stay.
        chosen = [
            s
            for s in settlement.schools
            if s.rate is not None and not s.settled and s.participants > 0
        ]
    else:
        wanted = sorted(set(schools))
        problems = [
            f"{s}: unknown" if s not in by_school else f"{s}: no rate entered (--rate {s}=...)"
            for s in wanted
            if s not in by_school or by_school[s].rate is None
        ]
        done = [s for s in wanted if s in by_school and by_school[s].settled]
        if problems:
            raise SettlementError("cannot settle " + "; ".join(problems))
        if done:
            raise SettlementError(f"already settled, once per school: {', '.join(done)}")
        chosen = [by_school[s] for s in wanted]
    enrollment = admin.enrollments.c
    # The admin DB first: a crash before the state DB notes it leaves the school unsettled,
    # and setting it again writes the same rate on the same bookings.
    with admin_engine.begin() as connection:
        for entry in chosen:
            ids = [booking.enrollment_id for booking in entry.bookings]
            for start in range(0, len(ids), 500):
                connection.execute(
                    update(admin.enrollments)
                    .where(
                        and_(
                            enrollment.id.in_(ids[start : start + 500]),
                            enrollment.status == Status.REGISTERED.value,
                        )
                    )
                    .values(balance=entry.rate, modified_at=admin_now)
                )
    with state_engine.begin() as connection:
        for entry in chosen:
            connection.execute(
                update(state.settlements)
                .where(
                    state.settlements.c.course_master == master,
                    state.settlements.c.course_number == settlement.course,
                    state.settlements.c.school == entry.school,
                )
                .values(set_at=now, set_count=entry.participants)
            )
    return chosen
