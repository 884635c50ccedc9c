"""Automatic advance at the master, on each backend: who gets a freed place, and that a
place is never offered twice."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, delete, insert, select, update

from adapter.desk import Person, add_course, enroll
from adapter.desk.advance import Advancer, accept_place_offer
from adapter.domain import Status
from adapter.messages import PlaceOffered
from adapter.store import admin, state
from adapter.store.db import create_admin_schema, make_engine, migrate_state

COURSE = "26-ADV"
T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


class Master:
    def __init__(self, database_url: Callable[[str], str]) -> None:
        self.admin: Engine = make_engine(database_url("master-admin"))
        self.state: Engine = make_engine(database_url("master-state"))
        create_admin_schema(self.admin)
        migrate_state(self.state)
        with self.admin.begin() as connection:
            add_course(
                connection, COURSE, max_participants=2, min_participants=1, master_school="vhs-sr"
            )
            connection.execute(update(admin.courses).values(auto_advance=True))
        self.advancer = Advancer(self.admin, self.state, "vhs-sr", offer_ttl=timedelta(seconds=30))

    def add(self, name: str, status: Status, *, origin: str | None = None, minute: int = 0) -> int:
        """An entry of the master's own, or (with `origin`) one that arrived by sync."""
        with self.admin.begin() as connection:
            number, enrollment = enroll(connection, COURSE, Person(name, "X"), status=status)
            connection.execute(
                update(admin.enrollments)
                .where(admin.enrollments.c.id == enrollment)
                .values(
                    waitlisted_since=datetime(2026, 11, 1, 9, minute) if status == "W" else None
                )
            )
        if origin is not None:
            with self.state.begin() as connection:
                connection.execute(
                    insert(state.applied).values(
                        origin_school=origin,
                        course_master="vhs-sr",
                        course_number=COURSE,
                        participant_number=number + 1000,
                        version=1,
                        status=status.value,
                        enrollment_id=enrollment,
                    )
                )
        return enrollment

    def status(self, enrollment: int) -> str:
        with self.admin.connect() as connection:
            return str(
                connection.execute(
                    select(admin.enrollments.c.status).where(admin.enrollments.c.id == enrollment)
                ).scalar_one()
            )

    def offers(self) -> list[PlaceOffered]:
        with self.state.begin() as connection:
            rows = connection.execute(select(state.outbox.c.body)).scalars().all()
            connection.execute(delete(state.outbox))
        return [PlaceOffered.model_validate_json(body) for body in rows]


@pytest.fixture
def master(database_url: Callable[[str], str]) -> Master:
    return Master(database_url)


def test_the_longest_waiting_entry_of_another_school_is_offered_the_place_once(
    master: Master,
) -> None:
    """The freed place goes to the earliest waiting entry; while the offer is open, no second
    offer is made for the same place."""
    master.add("Berger", Status.REGISTERED)
    master.add("Late", Status.WAITLISTED, minute=30)
    master.add("Early", Status.WAITLISTED, origin="vhs-ka", minute=5)
    [moved] = master.advancer.advance(T0, T0.replace(tzinfo=None))
    assert moved.school == "vhs-ka"
    [offer] = master.offers()
    assert (offer.data.origin_school, offer.data.participant_number) == (
        "vhs-ka",
        moved.key.participant_number,
    )
    assert master.advancer.advance(T0 + timedelta(seconds=5), T0.replace(tzinfo=None)) == []
    assert master.offers() == []


def test_an_expired_offer_frees_the_place_again(master: Master) -> None:
    """An offer nobody took is made anew after it expires."""
    master.add("Berger", Status.REGISTERED)
    master.add("Early", Status.WAITLISTED, origin="vhs-ka", minute=5)
    master.advancer.advance(T0, T0.replace(tzinfo=None))
    assert len(master.offers()) == 1
    master.advancer.advance(T0 + timedelta(seconds=31), T0.replace(tzinfo=None))
    assert len(master.offers()) == 1


def test_the_master_promotes_its_own_entry_itself(master: Master) -> None:
    """The master's own waiting entry is moved up directly, with no message."""
    master.add("Berger", Status.REGISTERED)
    own = master.add("Own", Status.WAITLISTED, minute=1)
    master.add("Later", Status.WAITLISTED, origin="vhs-ka", minute=9)
    master.advancer.advance(T0, T0.replace(tzinfo=None))
    assert master.status(own) == "A"
    assert master.offers() == []


def test_nothing_moves_without_a_free_place_or_without_auto_advance(master: Master) -> None:
    """A full course, or one without automatic advance, moves nobody."""
    master.add("A", Status.REGISTERED)
    master.add("B", Status.REGISTERED)
    waiting = master.add("C", Status.WAITLISTED, minute=1)
    assert master.advancer.advance(T0, T0.replace(tzinfo=None)) == []
    with master.admin.begin() as connection:
        connection.execute(update(admin.courses).values(auto_advance=False, max_participants=5))
    assert master.advancer.advance(T0, T0.replace(tzinfo=None)) == []
    assert master.status(waiting) == "W"


def test_the_owning_school_takes_an_offered_place_once(database_url: Callable[[str], str]) -> None:
    """The school that owns the entry moves it from W to A; a second delivery changes nothing,
    and an entry that no longer waits declines."""
    engine, state_engine = (
        make_engine(database_url("ka-admin")),
        make_engine(database_url("ka-state")),
    )
    create_admin_schema(engine)
    migrate_state(state_engine)
    with engine.begin() as connection:
        add_course(
            connection, "26-ADV-K", master_school="vhs-sr", master_number=COURSE, max_participants=2
        )
        number, enrollment = enroll(
            connection, "26-ADV-K", Person("Nowak", "Jan"), status=Status.WAITLISTED
        )
    offer = PlaceOffered.model_validate(
        {
            "id": "1",
            "source": "vhs-sync/vhs-sr",
            "time": T0,
            "subject": "x",
            "data": {
                "offer_id": "o-1",
                "course": {"master_school": "vhs-sr", "number": COURSE},
                "origin_school": "vhs-ka",
                "participant_number": number,
            },
        }
    )
    now = T0.replace(tzinfo=None)
    assert accept_place_offer(engine, state_engine, "vhs-ka", offer, now) is True
    assert accept_place_offer(engine, state_engine, "vhs-ka", offer, now) is False
    with engine.connect() as connection:
        row = connection.execute(
            select(admin.enrollments.c.status, admin.enrollments.c.waitlisted_since).where(
                admin.enrollments.c.id == enrollment
            )
        ).one()
    assert tuple(row) == ("A", None)
