"""Settlement rates and amounts (V12), without a database."""

from __future__ import annotations

from decimal import Decimal

import pytest

from adapter.domain.settlement import Booking, InvalidRateError, SchoolSettlement, parse_rate


@pytest.mark.parametrize(
    ("text", "rate"), [("18,00", "18.00"), ("18.5", "18.50"), (" 7 ", "7.00"), ("0", "0.00")]
)
def test_a_rate_is_read_as_the_admin_product_writes_amounts(text: str, rate: str) -> None:
    assert parse_rate(text) == Decimal(rate)


@pytest.mark.parametrize("text", ["", "abc", "-1", "1,234", "NaN", "Infinity", "1e12", "1.2.3"])
def test_what_is_no_amount_is_refused_with_the_reason(text: str) -> None:
    with pytest.raises(InvalidRateError, match=r"amount|decimals"):
        parse_rate(text)


def test_the_amount_is_the_rate_for_each_regular_place() -> None:
    bookings = tuple(Booking(i, i, f"P{i}", Decimal(0)) for i in range(3))
    school = SchoolSettlement("vhs-ka", "vhs Karlsruhe", bookings, Decimal("15.50"), None)
    assert (school.participants, school.amount, school.settled) == (3, Decimal("46.50"), False)
    assert SchoolSettlement("vhs-ka", "vhs Karlsruhe", bookings, None, None).amount is None


def test_once_set_the_amount_is_what_was_billed_though_a_booking_is_cancelled_later() -> None:
    from datetime import UTC, datetime

    left = (Booking(1, 1, "P1", Decimal("15.50")),)  # of three set, two cancelled since
    school = SchoolSettlement(
        "vhs-ka", "vhs Karlsruhe", left, Decimal("15.50"), datetime.now(UTC), set_count=3
    )
    assert (school.participants, school.amount) == (1, Decimal("46.50"))
