"""One capacity across schools: the master's settings everywhere, automatic advance by the
master's decision and the owning school's hand (issue 3, D1-D3, V11)."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select, update

from adapter.desk import Person, set_status
from adapter.domain import Status
from adapter.store import admin
from tests.cluster import Cluster, School

pytestmark = pytest.mark.rabbitmq

JAN = Person("Nowak", "Jan", birthday=date(1990, 5, 1), main_email="jan@example.org")


def configure(school: School, **settings: object) -> None:
    """The master's admin changes the course settings, as in the admin product."""
    with school.admin.begin() as connection:
        connection.execute(
            update(admin.courses)
            .where(admin.courses.c.number == school.course)
            .values(modified_at=datetime.now(), **settings)
        )


def course_row(school: School) -> dict[str, object]:
    with school.admin.connect() as connection:
        row = connection.execute(
            select(
                admin.courses.c.max_participants,
                admin.courses.c.waitlist_mode,
                admin.courses.c.auto_advance,
                admin.courses.c.waitlist_max,
                admin.courses.c.desired_participants,
            ).where(admin.courses.c.number == school.course)
        ).one()
    return dict(row._mapping)


async def test_subscribers_follow_the_masters_settings(cluster: Cluster) -> None:
    """Capacity and waitlist settings set at the master reach every subscriber's course."""
    master, karlsruhe, hof = cluster.three_schools()
    await cluster.start_all()
    configure(
        master,
        max_participants=12,
        desired_participants=10,
        waitlist_max=3,
        waitlist_mode="free_places_first",
        auto_advance=True,
    )
    expected = course_row(master)
    await cluster.wait_until(
        lambda: course_row(karlsruhe) == expected and course_row(hof) == expected,
        what="the master's settings at both subscribers",
    )
    listing = hof.listing()
    assert (listing.max_participants, listing.desired_participants, listing.free) == (12, 10, 12)


async def test_advance_gives_a_freed_place_to_the_longest_waiting_of_any_school(
    cluster: Cluster,
) -> None:
    """When the master's participant cancels, the person who waits longest (at another school)
    moves up, by that school's own change; all three listings agree (D3, V11)."""
    master, karlsruhe, hof = cluster.three_schools()
    configure(master, max_participants=3, min_participants=1, auto_advance=True)
    await cluster.start_all()
    _, anna = master.enroll(Person("Berger", "Anna"))
    karlsruhe.enroll(Person("Nowak", "Jan"))
    hof.enroll(Person("Hofmann", "Eva"))
    # The master must know the course is full before anyone waits, or it rightly advances.
    await cluster.wait_until(lambda: cluster.agree((3, 0)), what="TN 3 everywhere")
    hof.enroll(Person("Wagner", "Tom"), Status.WAITLISTED)
    await asyncio.sleep(0.05)
    karlsruhe.enroll(Person("Keller", "Mia"), Status.WAITLISTED)
    await cluster.wait_until(lambda: cluster.agree((3, 2)), what="TN 3, WL 2 everywhere")

    with master.admin.begin() as connection:
        set_status(connection, anna, Status.CANCELLED)
    await cluster.wait_until(lambda: cluster.agree((3, 1)), what="TN 3, WL 1 everywhere")

    tom = [row for row in hof.listing().rows if row.name == "Wagner, Tom"]
    mia = [row for row in karlsruhe.listing().rows if row.name == "Keller, Mia"]
    assert [row.status for row in tom] == ["A"]
    assert [row.status for row in mia] == ["W"]
    master_view = {row.name: row.status for row in master.listing().rows}
    assert master_view["Wagner, Tom (vhs Hofer Land)"] == "A"
    assert master_view["Keller, Mia (vhs Karlsruhe)"] == "W"


async def test_the_master_promotes_its_own_longest_waiting_entry(cluster: Cluster) -> None:
    """If the longest-waiting entry is the master's own, the master moves it up itself."""
    master, karlsruhe, _ = cluster.three_schools()
    configure(master, max_participants=1, min_participants=1, auto_advance=True)
    await cluster.start_all()
    _, jan = karlsruhe.enroll(Person("Nowak", "Jan"))
    await cluster.wait_until(lambda: master.occupancy() == (1, 0))
    master.enroll(Person("Berger", "Anna"), Status.WAITLISTED)
    await cluster.wait_until(lambda: cluster.agree((1, 1)))
    with karlsruhe.admin.begin() as connection:
        set_status(connection, jan, Status.CANCELLED)
    await cluster.wait_until(lambda: cluster.agree((1, 0)))
    assert {row.name: row.status for row in master.listing().rows}["Berger, Anna"] == "A"


def edit_fee(school: School, enrollment_id: int) -> None:
    """Staff edit a row (a cancellation fee); the admin product stamps it, here a second later
    than its last stamp at least, so that capture sees the edit."""
    rows = admin.enrollments.c
    with school.admin.begin() as connection:
        last = connection.execute(
            select(rows.modified_at).where(rows.id == enrollment_id)
        ).scalar_one()
        stamp = max(datetime.now(), last + timedelta(seconds=1)).replace(microsecond=0)
        connection.execute(
            update(admin.enrollments)
            .where(rows.id == enrollment_id)
            .values(fee=Decimal("15.00"), balance=Decimal("15.00"), modified_at=stamp)
        )


async def test_editing_a_cancelled_row_of_a_re_enrolled_person_never_overbooks(
    cluster: Cluster,
) -> None:
    """The issue's repro: Jan cancels (row 1), registers again (row 2), staff edit row 1, the
    master would advance, a full scan runs: Jan is registered once everywhere, TN 2 of 2."""
    master, karlsruhe, hof = cluster.three_schools()
    configure(master, max_participants=2, min_participants=1, auto_advance=True)
    await cluster.start_all()
    await cluster.wait_until(lambda: karlsruhe.listing().max_participants == 2)
    _, first = karlsruhe.enroll(JAN)
    await cluster.wait_until(lambda: cluster.agree((1, 0)), what="Jan registered everywhere")
    with karlsruhe.admin.begin() as connection:
        set_status(connection, first, Status.CANCELLED)
    await cluster.wait_until(lambda: cluster.agree((0, 0)), what="Jan cancelled everywhere")
    again = await asyncio.to_thread(
        karlsruhe.desk.register, karlsruhe.course, JAN, privacy_consent=True
    )
    assert again.returning
    assert again.status is Status.REGISTERED
    master.enroll(Person("Berger", "Anna"))
    await cluster.wait_until(lambda: cluster.agree((2, 0)), what="TN 2 everywhere")
    hof.enroll(Person("Wagner", "Tom"), Status.WAITLISTED)
    await cluster.wait_until(lambda: cluster.agree((2, 1)), what="TN 2, WL 1 everywhere")

    edit_fee(karlsruhe, first)
    await cluster.quiet(1.5)  # the poll, and any advance it would cause at the master
    assert karlsruhe.daemon is not None
    await asyncio.to_thread(karlsruhe.daemon.capture.full_scan, datetime.now(UTC))
    await cluster.quiet(1.5)  # the relay publishes what the scan found within a second
    await cluster.wait_until(lambda: cluster.agree((2, 1)), within=10, what="TN 2, WL 1")
    master_view = [(row.name, row.status) for row in master.listing().rows]
    assert [s for name, s in master_view if name == "Nowak, Jan (vhs Karlsruhe)"] == ["A"]
    assert [s for name, s in master_view if name == "Wagner, Tom (vhs Hofer Land)"] == ["W"]
    assert [row.status for row in hof.listing().rows if row.name == "vhs Karlsruhe"] == ["A"]


async def test_a_subscriber_without_settings_sends_nobody_to_the_waitlist(
    cluster: Cluster,
) -> None:
    """A subscriber registering before the master's settings arrived (no TEIL_MAX) gives
    regular places, not W; so the master's own registrations in dominant mode stay A too."""
    master, karlsruhe, hof = cluster.three_schools()
    configure(master, max_participants=5, min_participants=1)
    for school in (karlsruhe, hof):
        configure(school, max_participants=None, min_participants=None)
    await cluster.start(karlsruhe)
    await cluster.start(hof)
    desk = karlsruhe.desk
    registered = [
        await asyncio.to_thread(
            desk.register, karlsruhe.course, Person(f"P{n}", "Ka"), privacy_consent=True
        )
        for n in range(3)
    ]
    assert [r.status for r in registered] == [Status.REGISTERED] * 3
    assert karlsruhe.listing().free is None

    await cluster.start(master)
    await cluster.wait_until(lambda: cluster.agree((3, 0)), what="TN 3 everywhere")
    own = [
        await asyncio.to_thread(
            master.desk.register, master.course, Person(f"M{n}", "Sr"), privacy_consent=True
        )
        for n in range(2)
    ]
    assert [r.status for r in own] == [Status.REGISTERED] * 2
    await cluster.wait_until(lambda: cluster.agree((5, 0)), what="TN 5 everywhere")
    await cluster.wait_until(lambda: hof.listing().max_participants == 5, what="max 5 at hof")
    assert hof.listing().free == 0
