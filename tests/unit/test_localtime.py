"""The admin DB's wall-clock stamps across daylight-saving changes (Europe/Berlin, 2026)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from adapter.store.localtime import AdminClock, aware, poll_since, repeated_by, wall_time

BERLIN = ZoneInfo("Europe/Berlin")
OVERLAP = timedelta(seconds=2)
# The clock goes back at 01:00 UTC on 2026-10-25 (03:00 CEST -> 02:00 CET) and forward at
# 01:00 UTC on 2026-03-29 (02:00 CET -> 03:00 CEST).
FALL_BACK = datetime(2026, 10, 25, 1, 0, tzinfo=UTC)
SPRING_FORWARD = datetime(2026, 3, 29, 1, 0, tzinfo=UTC)


def test_the_admin_clock_gives_naive_wall_time_in_its_zone() -> None:
    """Half an hour before and after the fall-back both read 02:30, without a zone."""
    before = AdminClock(
        BERLIN, clock=lambda: FALL_BACK - timedelta(minutes=30) + timedelta(microseconds=5)
    )
    after = AdminClock(BERLIN, clock=lambda: FALL_BACK + timedelta(minutes=30))
    assert before() == after() == datetime(2026, 10, 25, 2, 30)
    assert (before().fold, after().fold, before().tzinfo) == (0, 0, None)


def test_a_repeated_wall_time_is_told_from_one_that_occurs_once() -> None:
    """02:30 on the fall-back day occurs twice, an hour apart; 02:30 in spring not at all."""
    assert repeated_by(datetime(2026, 10, 25, 2, 30), BERLIN) == timedelta(hours=1)
    assert repeated_by(datetime(2026, 10, 25, 3, 0), BERLIN) == timedelta(0)
    assert repeated_by(datetime(2026, 10, 25, 1, 59, 59), BERLIN) == timedelta(0)
    assert repeated_by(datetime(2026, 3, 29, 2, 30), BERLIN) == timedelta(0)
    first = aware(datetime(2026, 10, 25, 2, 30), BERLIN)
    second = aware(datetime(2026, 10, 25, 2, 30), BERLIN, later=True)
    assert second.astimezone(UTC) - first.astimezone(UTC) == timedelta(hours=1)


def test_a_poll_next_to_a_repeated_hour_reads_all_of_it() -> None:
    """A watermark in (or `overlap` after) the repeated hour reads from before 02:00; any
    other watermark reads `overlap` back."""
    assert poll_since(datetime(2026, 10, 25, 2, 59, 59), OVERLAP, BERLIN) == datetime(
        2026, 10, 25, 1, 59, 57
    )
    assert poll_since(datetime(2026, 10, 25, 3, 0, 1), OVERLAP, BERLIN) < datetime(
        2026, 10, 25, 2, 0
    )
    for plain in (datetime(2026, 10, 25, 1, 30), datetime(2026, 10, 25, 3, 0, 5)):
        assert poll_since(plain, OVERLAP, BERLIN) == plain - OVERLAP
    wide = timedelta(hours=3)  # an overlap wider than the repeated hour still finds it
    assert poll_since(datetime(2026, 10, 25, 4, 30), wide, BERLIN) == datetime(2026, 10, 25, 0, 30)


def test_spring_forward_needs_no_wider_window() -> None:
    """Stamps only grow when the clock skips an hour: polls read `overlap` back as always."""
    for stamp in (datetime(2026, 3, 29, 1, 59, 59), datetime(2026, 3, 29, 3, 0)):
        assert poll_since(stamp, OVERLAP, BERLIN) == stamp - OVERLAP


def _missed(since_of: object, start: datetime, minutes: int) -> list[datetime]:
    """Rows stamped once a minute, polled after each: the stamps a poll's window left out."""
    watermark = wall_time(start, BERLIN)
    missed = []
    for minute in range(1, minutes):
        stamp = wall_time(start + timedelta(minutes=minute), BERLIN)
        if stamp < since_of(watermark):  # type: ignore[operator]
            missed.append(stamp)
        watermark = max(watermark, stamp)
    return missed


def test_no_stamp_of_the_repeated_hour_falls_below_a_poll_window() -> None:
    """Stamped every minute from 01:00 CEST to 04:00 CET, each row lies in the window of the
    poll after it; a window of `overlap` alone would leave out the repeated hour."""
    start = FALL_BACK - timedelta(hours=2)
    assert _missed(lambda w: poll_since(w, OVERLAP, BERLIN), start, 240) == []
    naive = _missed(lambda w: w - OVERLAP, start, 240)
    assert len(naive) == 59
    assert (min(naive), max(naive)) == (datetime(2026, 10, 25, 2, 0), datetime(2026, 10, 25, 2, 58))


def test_no_stamp_around_spring_forward_falls_below_a_poll_window() -> None:
    """Across the skipped hour every row lies in the window of the poll after it."""
    start = SPRING_FORWARD - timedelta(hours=2)
    assert _missed(lambda w: poll_since(w, OVERLAP, BERLIN), start, 240) == []
