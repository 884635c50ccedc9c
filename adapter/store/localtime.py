"""The admin DB's time: KuferSQL stamps `BEARBDATUM` in local wall-clock time, without a zone.

The zone is `[admin_db] timezone` (an IANA name such as `Europe/Berlin`), or this machine's
when unset. Every stamp the adapter writes into the admin DB is naive wall time in that zone
(`AdminClock`), as the admin product's own are, and capture keeps its watermark in the same
wall time. Wall time is not monotonic: in autumn the clock goes back an hour (Europe/Berlin,
2026-10-25: 03:00 CEST becomes 02:00 CET), so the rows stamped in the repeated hour carry
lower stamps than those stamped just before. A poll whose window reaches into a repeated hour
therefore reads from before that hour (`poll_since`). In spring the wall clock skips an hour
(02:00 CET becomes 03:00 CEST) and stamps only grow: nothing to do.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

# A repeated hour is found by looking at the window in steps shorter than any of them.
_STEP = timedelta(minutes=15)


def _utcnow() -> datetime:
    return datetime.now(UTC)


def wall_time(moment: datetime, zone: ZoneInfo | None) -> datetime:
    """An aware moment as naive wall time in `zone` (None: this machine's zone)."""
    local = moment.astimezone(zone) if zone is not None else moment.astimezone()
    return local.replace(tzinfo=None, fold=0)


def aware(stamp: datetime, zone: ZoneInfo | None, *, later: bool = False) -> datetime:
    """A naive wall time in `zone` as an aware moment. Of a wall time that occurs twice, the
    first occurrence, or with `later` the second."""
    if zone is None:
        return stamp.replace(fold=int(later)).astimezone()
    return stamp.replace(tzinfo=zone, fold=int(later))


def repeated_by(stamp: datetime, zone: ZoneInfo | None) -> timedelta:
    """How far the clock goes back over this wall time: zero unless it occurs twice (an hour
    in Europe/Berlin from 02:00 to 03:00 on the last Sunday of October)."""
    first, second = aware(stamp, zone), aware(stamp, zone, later=True)
    jump = (first.utcoffset() or timedelta(0)) - (second.utcoffset() or timedelta(0))
    return max(jump, timedelta(0))


def poll_since(watermark: datetime, overlap: timedelta, zone: ZoneInfo | None) -> datetime:
    """The lowest stamp a poll reads: `overlap` before the watermark, and, when the window
    from there to the watermark reaches into a wall time that occurs twice, also the whole
    repeated hour before it. Rows stamped after the clock went back carry lower stamps than
    the watermark; reading them again before that is harmless (capture publishes only what
    changed)."""
    since = watermark - overlap
    widest = timedelta(0)
    moment = since
    while True:
        widest = max(widest, repeated_by(min(moment, watermark), zone))
        if moment >= watermark:
            return since - widest
        moment += _STEP


class AdminClock:
    """Now, as the admin DB stamps it: naive wall time in the admin DB's zone, whole
    seconds. `clock` gives the aware moment (UTC by default; tests pass their own)."""

    def __init__(
        self, zone: ZoneInfo | None = None, clock: Callable[[], datetime] = _utcnow
    ) -> None:
        self.zone = zone
        self.clock = clock

    def __call__(self) -> datetime:
        return wall_time(self.clock(), self.zone).replace(microsecond=0)
