"""A master and two subscribers of one course, synced through the real broker."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import select

from adapter.desk import Person, set_status, update_person
from adapter.domain import Status
from adapter.store import admin
from adapter.store.db import keyed
from tests.cluster import Cluster

pytestmark = pytest.mark.rabbitmq

ANNA = Person("Berger", "Anna", main_email="anna@example.org", main_phone="0721 1")
JAN = Person(
    "Nowak",
    "Jan",
    main_email="jan@example.org",
    main_phone="0721 2",
    iban="DE02120300000000202051",
)
EVA = Person("Hofmann", "Eva", main_email="eva@example.org")
LEA = Person("Fischer", "Lea")
TOM = Person("Wagner", "Tom", main_email="tom@example.org")


def participants(school_admin: object) -> list[dict[str, object]]:
    with school_admin.connect() as connection:  # type: ignore[attr-defined]
        return [
            row._asdict() for row in connection.execute(select(*keyed(*admin.participants.c))).all()
        ]


async def test_every_school_sees_the_true_occupancy(any_backend_cluster: Cluster) -> None:
    """Enrollments, a waitlist entry and a cancellation agree at all three schools (V2, V3, V13)."""
    cluster = any_backend_cluster
    master, karlsruhe, hof = cluster.three_schools()
    await cluster.start_all()

    master.enroll(ANNA)
    karlsruhe.enroll(JAN)
    _, lea = karlsruhe.enroll(LEA)
    hof.enroll(EVA)
    hof.enroll(TOM, Status.WAITLISTED)
    with karlsruhe.admin.begin() as connection:
        set_status(connection, lea, Status.CANCELLED)

    await cluster.wait_until(
        lambda: cluster.agree((3, 1)), what="three schools agreeing on TN 3, WL 1"
    )
    for school in (master, karlsruhe, hof):
        listing = school.listing()
        assert (listing.registered, listing.free, listing.waitlisted) == (3, 17, 1)


async def test_master_books_real_participants_as_company_bookings(cluster: Cluster) -> None:
    """The master gets name, first name, main email and phone, as a company booking of the
    origin school with fee 0, balance 0 and the sync remark; nothing else travels (V5, V10)."""
    master, karlsruhe, _ = cluster.three_schools()
    await cluster.start_all()
    karlsruhe.enroll(JAN)
    await cluster.wait_until(lambda: master.occupancy() == (1, 0))

    [row] = master.enrollment_rows()
    assert (row["fee"], row["balance"]) == (Decimal("0"), Decimal("0"))
    assert row["remark"] == "Mehrfachanmeldung; vhsKOOB Anmeldung von vhs Karlsruhe"
    people = {p["number"]: p for p in participants(master.admin)}
    person, company = people[row["participant_number"]], people[row["company_number"]]
    assert (person["last_name"], person["first_name"]) == ("Nowak", "Jan")
    assert (person["main_email"], person["main_phone"]) == ("jan@example.org", "0721 2")
    assert (person["iban"], person["birthday"]) == (None, None)
    assert company["last_name"] == "vhs Karlsruhe"
    assert master.listing().rows[0].name == "Nowak, Jan (vhs Karlsruhe)"


async def test_subscribers_see_only_anonymised_rows(cluster: Cluster) -> None:
    """A subscriber holds the origin school's name, fee 0, balance 0 and the remark; no
    personal data of another school's participant ever reaches its admin DB (V9, decision 6)."""
    master, karlsruhe, hof = cluster.three_schools()
    await cluster.start_all()
    karlsruhe.enroll(JAN)
    master.enroll(ANNA)
    await cluster.wait_until(lambda: hof.occupancy() == (2, 0))

    names = {row.name for row in hof.listing().rows}
    assert names == {"vhs Karlsruhe", "VHS SR"}
    for row in hof.listing().rows:
        assert (row.fee, row.balance, row.iban) == (Decimal("0"), Decimal("0"), "")
        assert row.remark.startswith("Mehrfachanmeldung; vhsKOOB Anmeldung von ")
    stored = str(participants(hof.admin))
    for secret in ("Nowak", "jan@example.org", "Berger", "anna@example.org", "0721"):
        assert secret not in stored


async def test_cancellation_reaches_every_school(cluster: Cluster) -> None:
    """A cancellation is status S at the master; the anonymised row disappears at the other
    subscriber, and neither school deletes a row (V4, V6)."""
    master, karlsruhe, hof = cluster.three_schools()
    await cluster.start_all()
    _, jan = karlsruhe.enroll(JAN)
    await cluster.wait_until(lambda: cluster.agree((1, 0)))
    with karlsruhe.admin.begin() as connection:
        set_status(connection, jan, Status.CANCELLED)
    await cluster.wait_until(lambda: cluster.agree((0, 0)))

    assert [row["status"] for row in master.enrollment_rows()] == ["S"]
    assert [row.status for row in master.listing().rows] == ["S"]
    assert hof.listing().rows == []
    assert [row["status"] for row in hof.enrollment_rows()] == ["S"]


async def test_waitlisted_stays_waitlisted_everywhere(cluster: Cluster) -> None:
    """A waitlist entry is W at the master and at the other subscriber (V3, V9)."""
    master, karlsruhe, hof = cluster.three_schools()
    await cluster.start_all()
    karlsruhe.enroll(TOM, Status.WAITLISTED)
    await cluster.wait_until(lambda: cluster.agree((0, 1)))
    assert [row.status for row in hof.listing().rows] == ["W"]
    assert [row.status for row in master.listing().rows] == ["W"]


async def test_participant_changes_reach_the_master(cluster: Cluster) -> None:
    """A changed main email or last name at the origin updates the master's participant row."""
    master, karlsruhe, _ = cluster.three_schools()
    await cluster.start_all()
    number, _ = karlsruhe.enroll(JAN)
    await cluster.wait_until(lambda: master.occupancy() == (1, 0))
    with karlsruhe.admin.begin() as connection:
        update_person(connection, number, main_email="jan.nowak@example.org", last_name="Nowak-Ott")

    def updated() -> bool:
        return any(p["main_email"] == "jan.nowak@example.org" for p in participants(master.admin))

    await cluster.wait_until(updated, what="the new email at the master")
    assert master.listing().rows[0].name == "Nowak-Ott, Jan (vhs Karlsruhe)"
    assert len(master.enrollment_rows()) == 1


async def test_master_balance_is_never_overwritten(cluster: Cluster) -> None:
    """A balance the master entered on a company booking survives later sync (V12)."""
    master, karlsruhe, _ = cluster.three_schools()
    await cluster.start_all()
    _, tom = karlsruhe.enroll(TOM, Status.WAITLISTED)
    await cluster.wait_until(lambda: master.occupancy() == (0, 1))
    [row] = master.enrollment_rows()
    with master.admin.begin() as connection:
        connection.execute(
            admin.enrollments.update()
            .where(admin.enrollments.c.id == row["id"])
            .values(balance=Decimal("31.80"))
        )
    with karlsruhe.admin.begin() as connection:
        set_status(connection, tom, Status.REGISTERED)
    await cluster.wait_until(lambda: master.occupancy() == (1, 0))
    [row] = master.enrollment_rows()
    assert row["balance"] == Decimal("31.80")
