"""The master's offer publisher on SQLite: what it writes to the outbox, and when."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy import Engine, select, update
from structlog.testing import capture_logs

from adapter.desk import add_course
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
