"""Course offers (issue 9) on a provisioned network: three schools, each adapter as its own
broker user on the real broker. The master offers a shared course, the others hear it and
subscribe, the master's changes and its cancellation reach them, and one leaves."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, time
from decimal import Decimal
from pathlib import Path

import aio_pika
import pytest
from aiormq.exceptions import ChannelAccessRefused
from sqlalchemy import delete, insert, select, update

from adapter import broker
from adapter.desk import Person
from adapter.domain import CourseRef, Refusal, Refused
from adapter.domain.offers import CourseOffer
from adapter.mapping import routes
from adapter.messages import EVENT_CONTENT_TYPE, course_offered
from adapter.ops import offers, reconcile
from adapter.store import admin
from adapter.store.db import keyed
from tests.cluster import SCHOOLS, Cluster, School
from tests.e2e.test_forgery import letters
from tests.secure import SecureNetwork

pytestmark = pytest.mark.rabbitmq

ANNA = Person("Berger", "Anna", main_email="anna@example.org")
JAN = Person("Nowak", "Jan", main_email="jan@example.org")
EVA = Person("Hofmann", "Eva")
TOM = Person("Wagner", "Tom")


@pytest.fixture
async def cluster(secure_network: SecureNetwork, tmp_path: Path) -> AsyncIterator[Cluster]:
    """Each adapter as its own user; full scans every 0.3 s, so that a new course is joined
    at once (as it is within a minute)."""
    network = Cluster(
        secure_network.admin_url,
        lambda name: f"sqlite:///{tmp_path / (name + '.db')}",
        network=secure_network.network,
        school_urls=secure_network.urls,
        full_scan_interval=0.3,
    )
    yield network
    await network.close()


def stamp() -> datetime:
    return datetime.now().replace(microsecond=0)


def three_schools(cluster: Cluster) -> tuple[School, School, School]:
    """VHS SR offers the seed's Android course; vhs-ka and vhs-hof have no course yet."""
    made = [
        cluster.add_school(i, n, master="vhs-sr", peers=[p for p in SCHOOLS if p[0] != i])
        for i, n in SCHOOLS
    ]
    master, karlsruhe, hof = made
    with master.admin.begin() as connection:
        connection.execute(
            update(admin.courses)
            .where(admin.courses.c.number == master.course)
            .values(
                max_participants=8,
                starts_on=date(2026, 9, 28),
                ends_on=date(2026, 11, 16),
                time_from=time(18, 0),
                time_to=time(19, 30),
                sessions=4,
                teaching_units=Decimal("3.00"),
                place="VHS SR, virtueller Kursraum",
                lecturer="vhs Villingen-Schwenningen",
                registration_deadline=date(2026, 9, 22),
                modified_at=stamp(),
            )
        )
    for school in (karlsruhe, hof):
        with school.admin.begin() as connection:
            connection.execute(delete(admin.courses))
        school.course = f"{cluster.master_course}-{school.id.removeprefix('vhs-').upper()}"
    return master, karlsruhe, hof


def offer_at(school: School, course: CourseRef) -> CourseOffer | None:
    return offers.find_offer(school.state, course)


def course_row(school: School) -> dict[str, object] | None:
    with school.admin.connect() as connection:
        row = connection.execute(
            select(*keyed(*admin.courses.c)).where(admin.courses.c.number == school.course)
        ).first()
    return None if row is None else row._asdict()


def known_to(*schools: School, course: CourseRef, when: object = None) -> bool:
    for school in schools:
        offer = offer_at(school, course)
        if offer is None or (when is not None and not when(offer)):  # type: ignore[operator]
            return False
    return True


async def subscribed(cluster: Cluster) -> tuple[School, School, School, CourseRef]:
    """The three schools running, vhs-ka subscribed through the adapter, vhs-hof by staff who
    created the course that `--print` showed them."""
    master, karlsruhe, hof = three_schools(cluster)
    course = CourseRef("vhs-sr", cluster.master_course)
    await cluster.start_all()
    await cluster.wait_until(lambda: known_to(karlsruhe, hof, course=course), what="the offer")
    offers.subscribe(karlsruhe.admin, karlsruhe.state, "vhs-ka", course, karlsruhe.course, stamp())
    printed = offers.subscription(hof.admin, hof.state, "vhs-hof", course, hof.course)
    with hof.admin.begin() as connection:  # staff type it into the admin product
        connection.execute(insert(admin.courses).values(**printed, modified_at=stamp()))
    return master, karlsruhe, hof, course


async def test_an_offer_reaches_every_school_and_subscribing_joins_the_course(
    cluster: Cluster,
) -> None:
    """Both other schools hear the offer with every field; a school that subscribes (the
    adapter creating the course, or staff from the printed fields) gets the enrollments made
    before (V1) and its own reach the master; its listing shows the seed's header fields."""
    master, karlsruhe, hof, course = await subscribed(cluster)
    heard = offer_at(hof, course)
    assert heard is not None
    assert (heard.title, heard.fee, heard.max_participants, heard.min_participants) == (
        "Online-Kurs: Entwickeln von Android Apps - Grundlagen",
        Decimal("53.00"),
        8,
        5,
    )
    assert (heard.starts_on, heard.ends_on) == (date(2026, 9, 28), date(2026, 11, 16))
    assert (heard.time_from, heard.time_to, heard.sessions) == (time(18, 0), time(19, 30), 4)
    assert (heard.place, heard.lecturer) == (
        "VHS SR, virtueller Kursraum",
        "vhs Villingen-Schwenningen",
    )
    assert heard.registration_deadline == date(2026, 9, 22)

    master.enroll(ANNA)
    await cluster.wait_until(lambda: karlsruhe.occupancy() == (1, 0), what="V1 at vhs-ka")
    await cluster.wait_until(lambda: hof.occupancy() == (1, 0), what="V1 at vhs-hof")
    karlsruhe.enroll(JAN)
    hof.enroll(EVA)
    await cluster.wait_until(lambda: cluster.agree((3, 0)), what="three schools on TN 3")

    listing = karlsruhe.listing()
    details = listing.details
    assert (listing.max_participants, listing.free) == (8, 5)
    assert (details.place, details.lecturer, details.sessions) == (
        "VHS SR, virtueller Kursraum",
        "vhs Villingen-Schwenningen",
        4,
    )
    assert (details.time_from, details.registration_deadline) == (time(18, 0), date(2026, 9, 22))
    [own] = [k for k in offers.known_offers(master.admin, master.state) if k.offer.course == course]
    assert own.local_course == master.course
    [at_ka] = offers.known_offers(karlsruhe.admin, karlsruhe.state)
    assert at_ka.local_course == karlsruhe.course


async def test_the_masters_changes_and_cancellation_reach_every_subscriber(
    cluster: Cluster,
) -> None:
    """New dates, times and capacity at the master appear in both subscribers' courses;
    its cancellation marks their courses cancelled and their desks refuse registrations."""
    master, karlsruhe, hof, course = await subscribed(cluster)
    await cluster.wait_until(
        lambda: all(course_row(s) is not None for s in (karlsruhe, hof)), what="both courses"
    )
    with master.admin.begin() as connection:
        connection.execute(
            update(admin.courses)
            .where(admin.courses.c.number == master.course)
            .values(
                starts_on=date(2026, 10, 5),
                ends_on=date(2026, 11, 23),
                time_from=time(18, 30),
                time_to=time(20, 0),
                max_participants=12,
                modified_at=stamp(),
            )
        )

    def moved(school: School) -> bool:
        row = course_row(school)
        return row is not None and (
            row["starts_on"],
            row["ends_on"],
            row["time_from"],
            row["time_to"],
            row["max_participants"],
        ) == (date(2026, 10, 5), date(2026, 11, 23), time(18, 30), time(20, 0), 12)

    await cluster.wait_until(lambda: moved(karlsruhe) and moved(hof), what="the changes")
    assert course_row(karlsruhe)["title"] == master.listing().title  # type: ignore[index]

    with master.admin.begin() as connection:
        connection.execute(
            update(admin.courses)
            .where(admin.courses.c.number == master.course)
            .values(cancelled=True, modified_at=stamp())
        )

    def cancelled(school: School) -> bool:
        row = course_row(school)
        return row is not None and row["cancelled"] is True

    await cluster.wait_until(
        lambda: cancelled(karlsruhe) and cancelled(hof), what="the cancellation"
    )
    assert karlsruhe.listing().details.cancelled
    assert known_to(hof, course=course, when=lambda offer: offer.cancelled)
    for school in (karlsruhe, hof):
        result = school.desk.register(school.course, TOM, privacy_consent=True)
        assert result.decision == Refused(Refusal.COURSE_CLOSED)


async def test_a_subscriber_leaves_its_enrollments_stay_and_the_others_learn_of_it(
    cluster: Cluster,
) -> None:
    """vhs-ka unsubscribes: its own enrollment stays A, the others' rows at vhs-ka no longer
    count (S, not deleted), the master keeps vhs-ka's enrollment, master and vhs-hof see
    that vhs-ka left, vhs-ka's queue hears the course no more, and the master's reconcile
    does not wait for vhs-ka's answer."""
    master, karlsruhe, hof, course = await subscribed(cluster)
    master.enroll(ANNA)
    await cluster.wait_until(lambda: karlsruhe.occupancy() == (1, 0) and hof.occupancy() == (1, 0))
    karlsruhe.enroll(JAN)
    await cluster.wait_until(lambda: cluster.agree((2, 0)), what="TN 2 everywhere")

    offers.unsubscribe(
        karlsruhe.admin, karlsruhe.state, "vhs-ka", karlsruhe.course, datetime.now(UTC), stamp()
    )
    await offers.unbind_course(karlsruhe.settings, course)

    def left_seen(school: School) -> bool:
        return any(k.left == ["vhs-ka"] for k in offers.known_offers(school.admin, school.state))

    await cluster.wait_until(lambda: left_seen(master) and left_seen(hof), what="vhs-ka left")
    rows = karlsruhe.enrollment_rows()
    assert sorted(row["status"] for row in rows) == ["A", "S"]  # own A stays, foreign now S
    assert len(rows) == 2
    assert karlsruhe.occupancy() == (1, 0)
    assert course_row(karlsruhe)["master_school"] is None  # type: ignore[index]
    assert master.occupancy() == (2, 0)  # vhs-ka's enrollment stays booked at the master

    hof.enroll(EVA)
    await cluster.wait_until(lambda: master.occupancy() == (3, 0), what="vhs-hof's enrollment")
    await cluster.quiet(0.5)
    assert len(karlsruhe.enrollment_rows()) == 2
    assert await letters(cluster, "vhs-ka") == []
    report = await reconcile.reconcile_course(
        master.settings, master.admin, master.state, course, master.course, now=datetime.now(UTC)
    )
    assert [(drift.origin, drift.drifted) for drift in report.origins] == [("vhs-hof", False)]


async def test_only_the_master_may_publish_its_offer(secure_network: SecureNetwork) -> None:
    """vhs-ka's broker user may publish offers of its own courses, never the master's."""
    url = secure_network.urls["vhs-ka"]

    async def publish(master: str) -> bool:
        offer = CourseOffer(CourseRef(master, "26-1"), "x", Decimal("1.00"))
        body = course_offered(offer, version=1, event_id="e", time=datetime.now(UTC))
        connection = await aio_pika.connect(url)
        async with connection:
            channel = await connection.channel(publisher_confirms=True)
            exchange = await channel.get_exchange(secure_network.network, ensure=False)
            try:
                await exchange.publish(
                    aio_pika.Message(
                        body.model_dump_json().encode(),
                        content_type=EVENT_CONTENT_TYPE,
                        user_id=connection.url.user,
                    ),
                    routing_key=routes.course_offer(offer.course),
                )
            except ChannelAccessRefused:
                return False
        return True

    assert broker.vhost(url) == secure_network.vhost
    assert await publish("vhs-ka") is True
    assert await publish("vhs-sr") is False
