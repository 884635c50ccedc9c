"""Settlement at course end (V12): what each subscriber school owes the master.

The master enters a settlement rate per subscriber school; each regular place (A) the school
booked in the course costs that rate. Setting it writes the rate as the open balance of each of
the school's company bookings, so that the master's invoice run bills the school; sync never
writes a balance again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation

CENT = Decimal("0.01")
# The largest amount the admin DB's balance column holds (Numeric(10, 2)).
MAX_RATE = Decimal("99999999.99")


class InvalidRateError(ValueError):
    """A settlement rate that is no amount of money."""


def parse_rate(text: str) -> Decimal:
    """`18,00`, `18.00` or `18`: a non-negative amount with at most two decimals."""
    cleaned = text.strip().replace(",", ".")
    try:
        rate = Decimal(cleaned)
    except InvalidOperation:
        raise InvalidRateError(f"{text!r} is not an amount (write it like 18,00)") from None
    if not rate.is_finite() or rate < 0 or rate > MAX_RATE:
        raise InvalidRateError(f"{text!r} is not an amount between 0 and {MAX_RATE}")
    if rate != rate.quantize(CENT):
        raise InvalidRateError(f"{text!r} has more than two decimals")
    return rate.quantize(CENT)


@dataclass(frozen=True, slots=True)
class Booking:
    """One company booking of a subscriber school at the master: a regular place (A)."""

    enrollment_id: int
    participant_number: int  # at the subscriber school
    name: str
    balance: Decimal


@dataclass(frozen=True, slots=True)
class SchoolSettlement:
    school: str
    name: str
    bookings: tuple[Booking, ...]
    rate: Decimal | None  # None: not entered yet
    set_at: datetime | None  # when the balances were set; None: not yet
    set_count: int | None = None  # how many bookings were set then

    @property
    def participants(self) -> int:
        return len(self.bookings)

    @property
    def amount(self) -> Decimal | None:
        """What the school owes: the rate for each of its regular places; once set, for each
        booking that was set then (a booking cancelled later keeps its open balance)."""
        if self.rate is None:
            return None
        places = self.set_count if self.set_count is not None else self.participants
        return (self.rate * places).quantize(CENT)

    @property
    def settled(self) -> bool:
        return self.set_at is not None


@dataclass(frozen=True, slots=True)
class Settlement:
    course: str  # the master's course number
    ends_on: date | None
    schools: tuple[SchoolSettlement, ...]

    @property
    def total(self) -> Decimal:
        return sum((s.amount or Decimal(0) for s in self.schools), Decimal(0))
