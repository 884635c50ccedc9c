"""The master's offer publisher on SQLite: what it writes to the outbox, and when; leaving a
course, also when stopped half-way."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import Engine, delete, insert, select, update
from structlog.testing import capture_logs

from adapter.capture.poller import Capture
from adapter.desk import add_course
from adapter.desk.operations import Person, enroll
from adapter.domain import CourseRef
from adapter.mapping import routes
from adapter.ops import offers
from adapter.ops.offers import OfferPublisher
from adapter.store import admin, state
from adapter.store.db import create_admin_schema, make_engine, migrate_state

NOW = datetime(2026, 9, 1, 8, 0, tzinfo=UTC)


def engines() -> tuple[Engine, Engine]:
    admin_engine, state_engine = make_engine("sqlite://"), make_engine("sqlite://")
    create_admin_schema(admin_engine)
    migrate_state(state_engine)
    with admin_engine.begin() as connection:
        add_course(connection, "26-1", title="Linux", fee=Decimal("18.00"), master_school="vhs-sr")
        add_course(connection, "26-2", title="Local only")  # not shared: never offered
        add_course(connection, "26-3", master_school="vhs-ka", master_number="9")  # subscribed
    return admin_engine, state_engine


def outbox(state_engine: Engine) -> list[tuple[str, dict[str, object]]]:
    with state_engine.connect() as connection:
        rows = connection.execute(select(state.outbox.c.routing_key, state.outbox.c.body)).all()
    return [(row.routing_key, json.loads(row.body)) for row in rows]


def test_an_offer_is_published_when_it_changes_and_again_at_a_full_scan() -> None:
    """Only courses this school is master of; unchanged ones only with `everything`, with the
    version they had; a change gets a higher version."""
    admin_engine, state_engine = engines()
    publisher = OfferPublisher(admin_engine, state_engine, "vhs-sr")
    assert publisher.publish(NOW) == 1
    assert publisher.publish(NOW + timedelta(seconds=1)) == 0
    assert publisher.publish(NOW + timedelta(seconds=2), everything=True) == 1
    with admin_engine.begin() as connection:
        connection.execute(
            update(admin.courses).where(admin.courses.c.number == "26-1").values(cancelled=True)
        )
    assert publisher.publish(NOW + timedelta(seconds=3)) == 1
    sent = outbox(state_engine)
    assert [key for key, _ in sent] == ["off.vhs-sr.26-1"] * 3
    versions = [body["data"]["version"] for _, body in sent]  # type: ignore[index]
    assert versions[0] == versions[1] < versions[2]
    assert sent[2][1]["data"]["offer"]["cancelled"] is True  # type: ignore[index]


def test_a_course_the_wire_cannot_carry_is_not_offered_and_reported_once() -> None:
    """A negative fee: no offer, one warning naming the field, not its value."""
    admin_engine, state_engine = engines()
    with admin_engine.begin() as connection:
        connection.execute(
            update(admin.courses).where(admin.courses.c.number == "26-1").values(fee=-5)
        )
    publisher = OfferPublisher(admin_engine, state_engine, "vhs-sr")
    with capture_logs() as logs:
        assert publisher.publish(NOW) == 0
        assert publisher.publish(NOW) == 0
    assert logs == [
        {
            "event": "course.offer_invalid",
            "log_level": "warning",
            "school": "vhs-sr",
            "course": "26-1",
            "error": "fee: greater_than_equal",
        }
    ]


def test_a_course_shared_no_more_is_withdrawn_once_and_offered_again_when_shared() -> None:
    """Clearing MASTER_VHS withdraws the offer (its last details, `withdrawn`), sent again at
    full scans with its version; sharing it again offers it anew."""
    admin_engine, state_engine = engines()
    publisher = OfferPublisher(admin_engine, state_engine, "vhs-sr")
    assert publisher.publish(NOW) == 1

    def share(master: str | None) -> None:
        with admin_engine.begin() as connection:
            connection.execute(
                update(admin.courses)
                .where(admin.courses.c.number == "26-1")
                .values(master_school=master, master_number="26-1" if master else None)
            )

    share(None)
    assert publisher.publish(NOW + timedelta(seconds=1)) == 1
    assert publisher.publish(NOW + timedelta(seconds=2)) == 0
    assert publisher.publish(NOW + timedelta(seconds=3), everything=True) == 1
    share("vhs-sr")
    assert publisher.publish(NOW + timedelta(seconds=4)) == 1
    offers = [body["data"] for _, body in outbox(state_engine)]
    flags = [(o["offer"]["title"], o["offer"]["withdrawn"]) for o in offers]  # type: ignore[index]
    assert flags == [("Linux", False), ("Linux", True), ("Linux", True), ("Linux", False)]
    versions = [o["version"] for o in offers]  # type: ignore[index]
    assert versions[0] < versions[1] == versions[2] < versions[3]


class Interrupted(BaseException):
    """The process stops here (killed)."""


def stop_before_transaction(engines_: tuple[Engine, Engine], at: int) -> None:
    """Make the `at`-th transaction begun on either engine (counted from 0) never start."""
    begun = [0]
    for engine in engines_:
        original = engine.begin

        def begin(original: Any = original) -> Any:
            begun[0] += 1
            if begun[0] - 1 == at:
                raise Interrupted
            return original()

        engine.begin = begin  # type: ignore[method-assign]


@pytest.mark.parametrize("stop_at", range(4))
def test_leaving_stopped_at_any_point_cancels_no_own_enrollment_and_finishes_when_run_again(
    stop_at: int,
) -> None:
    """An unsubscribe killed between any two of its transactions: a full scan then publishes
    no cancellation of the school's own enrollment (it stays A, V7), and running unsubscribe
    again finishes the leave: course local, foreign row S, versions and join forgotten,
    the network told."""
    admin_engine, state_engine = make_engine("sqlite://"), make_engine("sqlite://")
    create_admin_schema(admin_engine)
    migrate_state(state_engine)
    course = CourseRef("vhs-sr", "26-1")
    with admin_engine.begin() as connection:
        add_course(connection, "K-1", master_school="vhs-sr", master_number="26-1")
        enroll(connection, "K-1", Person("Nowak", "Jan"))
        _, foreign_id = enroll(connection, "K-1", Person("vhs Hof", "-"), fee=Decimal(0))
    with state_engine.begin() as connection:
        connection.execute(
            insert(state.applied).values(
                origin_school="vhs-hof",
                course_master="vhs-sr",
                course_number="26-1",
                participant_number=7,
                version=1,
                status="A",
                enrollment_id=foreign_id,
            )
        )
        connection.execute(
            insert(state.joined_courses).values(
                course_master="vhs-sr", course_number="26-1", joined_at=NOW
            )
        )
    capture = Capture(admin_engine, state_engine, "vhs-ka")
    capture.full_scan(NOW)
    with state_engine.begin() as connection:
        connection.execute(delete(state.outbox))

    stamp = NOW.replace(tzinfo=None)
    real = (admin_engine.begin, state_engine.begin)
    stop_before_transaction((admin_engine, state_engine), stop_at)
    finished = True
    try:
        offers.unsubscribe(admin_engine, state_engine, "vhs-ka", "K-1", NOW, stamp)
    except Interrupted:
        finished = False
    admin_engine.begin, state_engine.begin = real  # type: ignore[method-assign]
    capture.full_scan(NOW + timedelta(seconds=5))
    cancelled = [
        key
        for key, body in outbox(state_engine)
        if key.startswith("enr.") and body["data"]["status"] == "S"  # type: ignore[index]
    ]
    assert cancelled == []

    if finished:
        with pytest.raises(offers.OfferError, match="is not a shared course"):
            offers.unsubscribe(admin_engine, state_engine, "vhs-ka", "K-1", NOW, stamp)
    else:
        offers.unsubscribe(admin_engine, state_engine, "vhs-ka", "K-1", NOW, stamp)
    with admin_engine.connect() as connection:
        statuses = dict(
            connection.execute(select(admin.enrollments.c.id, admin.enrollments.c.status)).all()
        )
        shared = connection.execute(select(admin.courses.c.master_school)).scalar()
    assert shared is None
    assert statuses[foreign_id] == "S"
    assert sorted(statuses.values()) == ["A", "S"]
    with state_engine.connect() as connection:
        for table in (state.applied, state.joined_courses, state.published):
            assert connection.execute(select(table)).all() == []
    assert routes.control(course, "vhs-ka") in [key for key, _ in outbox(state_engine)]
