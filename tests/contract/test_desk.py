"""The registration desk (issue 3) against each admin-DB backend: decisions across all schools,
D5 recognition, own-enrollments-only, promotion past max, automatic-advance reservation, mail."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from email import message_from_bytes
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import Engine, func, insert, select, update

from adapter.desk import (
    AlreadyEnrolledError,
    Desk,
    DeskError,
    ForeignEnrollmentError,
    ForeignParticipantError,
    InvalidStatusError,
    Person,
    SmtpMailer,
    UnknownCourseError,
    UnknownEnrollmentError,
    UnknownParticipantError,
    add_course,
    enroll,
    registration,
)
from adapter.domain import (
    CourseRef,
    Refusal,
    Refused,
    Registered,
    Status,
    Waitlisted,
    WaitReason,
)
from adapter.mapping.listing import listing_as_dict
from adapter.messages import PlaceAnswered, place_answered, place_requested
from adapter.ops.courses import load_listing
from adapter.store import admin, state
from adapter.store.db import create_admin_schema, keyed, make_engine, migrate_state

COURSE = "26-500"
OTHER = "26-501"
HERE = "vhs-sr"
THERE = "vhs-ka"
ANNA = Person("Berg", "Anna", birthday=date(1985, 3, 14), main_email="anna.berg@example.org")


def person(index: int) -> Person:
    return Person(
        f"Person{index}",
        "Test",
        birthday=date(1980, 1, 1 + index % 28),
        main_email=f"p{index}@example.org",
    )


class School:
    """One school's admin and state DB with two shared courses, and its desk."""

    def __init__(self, database_url: Callable[[str], str], mailer: Any = None) -> None:
        self.admin: Engine = make_engine(database_url(f"{HERE}-admin"))
        self.state: Engine = make_engine(database_url(f"{HERE}-state"))
        create_admin_schema(self.admin)
        migrate_state(self.state)
        with self.admin.begin() as connection:
            for number in (COURSE, OTHER):
                add_course(
                    connection,
                    number,
                    title="Rettungsschwimmen",
                    max_participants=10,
                    master_school=HERE,
                )
        self.desk = Desk(self.admin, self.state, HERE, mailer=mailer)

    def configure(self, course: str = COURSE, **columns: object) -> None:
        with self.admin.begin() as connection:
            connection.execute(
                update(admin.courses).where(admin.courses.c.number == course).values(**columns)
            )

    def register(self, who: Person, course: str = COURSE, *, consent: bool = True) -> Any:
        return self.desk.register(course, who, privacy_consent=consent)

    def foreign(self, status: Status = Status.REGISTERED, course: str = COURSE) -> int:
        """An enrollment that arrived by sync from another school (a row plus `applied`)."""
        with self.admin.begin() as connection:
            number, enrollment_id = enroll(
                connection, course, Person(THERE.upper(), ""), status=status
            )
        with self.state.begin() as connection:
            connection.execute(
                insert(state.applied).values(
                    origin_school=THERE,
                    course_master=HERE,
                    course_number=course,
                    participant_number=number + 1000,
                    version=1,
                    status=status.value,
                    enrollment_id=enrollment_id,
                )
            )
        return enrollment_id

    def enrollment(self, enrollment_id: int) -> dict[str, Any]:
        with self.admin.connect() as connection:
            row = connection.execute(
                select(*keyed(*admin.enrollments.c)).where(admin.enrollments.c.id == enrollment_id)
            ).one()
        return row._asdict()

    def count(self, table: Any) -> int:
        with self.admin.connect() as connection:
            return int(connection.execute(select(func.count()).select_from(table)).scalar_one())


@pytest.fixture
def school(database_url: Callable[[str], str]) -> School:
    return School(database_url)


def test_register_gives_a_regular_place(school: School) -> None:
    """A free course gives A, creates the person and stamps BEARBDATUM on both rows."""
    result = school.register(ANNA)
    assert result.decision == Registered()
    assert result.status is Status.REGISTERED
    assert not result.returning
    row = school.enrollment(result.enrollment_id)
    assert row["status"] == "A"
    assert row["participant_number"] == result.participant_number
    assert row["modified_at"] is not None
    assert row["waitlisted_since"] is None
    assert school.count(admin.participants) == 1


def test_register_without_consent_is_refused_and_writes_nothing(school: School) -> None:
    """Without the privacy consent (D6) the registration is refused and nothing is written."""
    result = school.register(ANNA, consent=False)
    assert result.decision == Refused(Refusal.NO_PRIVACY_CONSENT)
    assert result.enrollment_id is None
    assert result.participant_number is None
    assert school.count(admin.participants) == 0
    assert school.count(admin.enrollments) == 0


def test_register_in_a_closed_course_is_refused(school: School) -> None:
    """A course whose registration is not open refuses with COURSE_CLOSED."""
    school.configure(registration_open=False)
    assert school.register(ANNA).decision == Refused(Refusal.COURSE_CLOSED)
    assert school.count(admin.enrollments) == 0


def test_full_course_waitlists_then_refuses_when_the_waitlist_is_full(school: School) -> None:
    """Max 1 and waitlist 1: A, then W (full, stamped), then refused WAITLIST_FULL."""
    school.configure(max_participants=1, waitlist_max=1)
    assert school.register(person(1)).decision == Registered()
    waiting = school.register(person(2))
    assert waiting.decision == Waitlisted(WaitReason.FULL)
    row = school.enrollment(waiting.enrollment_id)
    assert row["status"] == "W"
    assert row["waitlisted_since"] is not None
    assert row["waitlisted_by_admin"] is False
    assert school.register(person(3)).decision == Refused(Refusal.WAITLIST_FULL)
    assert school.count(admin.enrollments) == 2
    assert school.count(admin.participants) == 2


def test_returning_person_keeps_the_participant_number(school: School) -> None:
    """D5: same names, birthday and email (trimmed, email in any case) is the same person."""
    first = school.register(ANNA)
    again = Person(" Berg ", "Anna ", birthday=ANNA.birthday, main_email=" Anna.Berg@EXAMPLE.org")
    second = school.register(again, OTHER)
    assert second.returning
    assert second.participant_number == first.participant_number
    assert school.count(admin.participants) == 1
    other_birthday = Person(
        "Berg", "Anna", birthday=date(1986, 3, 14), main_email="anna.berg@example.org"
    )
    assert not school.register(other_birthday, OTHER).returning
    assert school.count(admin.participants) == 2


def test_an_active_enrollment_is_not_doubled(school: School) -> None:
    """A person holding A or W in the course gets an error; after a cancel they may return."""
    first = school.register(ANNA)
    with pytest.raises(AlreadyEnrolledError, match="already holds enrollment"):
        school.register(ANNA)
    school.desk.cancel(first.enrollment_id)
    again = school.register(ANNA)
    assert again.returning
    assert again.participant_number == first.participant_number
    assert school.count(admin.enrollments) == 2
    assert school.count(admin.participants) == 1


def test_blocked_person_goes_to_the_waitlist(school: School) -> None:
    """D4: once blocked, a returning person always waits, even in an empty course."""
    first = school.register(ANNA)
    school.desk.block(first.participant_number)
    assert school.register(ANNA, OTHER).decision == Waitlisted(WaitReason.BLOCKED)
    school.desk.block(first.participant_number, blocked=False)
    with school.admin.connect() as connection:
        blocked = connection.execute(
            select(admin.participants.c.blocked).where(
                admin.participants.c.number == first.participant_number
            )
        ).scalar_one()
    assert blocked is False


def test_per_school_maximum_counts_only_this_schools_places(school: School) -> None:
    """D4: with max 1 per school, other schools' places do not count; the second own one waits."""
    school.configure(max_per_school=1)
    school.foreign()
    school.foreign()
    assert school.register(person(1)).decision == Registered()
    assert school.register(person(2)).decision == Waitlisted(WaitReason.SCHOOL_LIMIT)


def test_occupancy_counts_every_schools_places(school: School) -> None:
    """V2: places taken at other schools fill the course for this school too."""
    school.configure(max_participants=2)
    school.foreign()
    school.foreign()
    assert school.register(ANNA).decision == Waitlisted(WaitReason.FULL)


def test_foreign_enrollments_are_refused(school: School) -> None:
    """V6/V11: cancel, promote and to-waitlist refuse an enrollment that arrived by sync."""
    registered = school.foreign()
    waiting = school.foreign(Status.WAITLISTED)
    with pytest.raises(ForeignEnrollmentError, match=f"arrived by sync from {THERE}"):
        school.desk.cancel(registered)
    with pytest.raises(ForeignEnrollmentError):
        school.desk.promote(waiting)
    with pytest.raises(ForeignEnrollmentError):
        school.desk.to_waitlist(registered)
    assert school.enrollment(registered)["status"] == "A"
    assert school.enrollment(waiting)["status"] == "W"


def test_unknown_ids_raise_readable_errors(school: School) -> None:
    """Unknown enrollments, participants and courses raise DeskErrors that name them."""
    with pytest.raises(UnknownEnrollmentError, match="enrollment 999"):
        school.desk.cancel(999)
    with pytest.raises(UnknownParticipantError, match="participant 999"):
        school.desk.block(999)
    with pytest.raises(UnknownCourseError, match="99-999"):
        school.register(ANNA, "99-999")
    assert issubclass(ForeignEnrollmentError, DeskError)


def test_sync_created_participants_cannot_be_blocked(school: School) -> None:
    """A participant row that sync made for another school's person is not this school's."""
    with school.admin.begin() as connection:
        number, _ = enroll(connection, COURSE, Person("Remote", "Rita"))
    with school.state.begin() as connection:
        connection.execute(
            insert(state.remote_participants).values(
                origin_school=THERE, participant_number=7, local_number=number
            )
        )
    with pytest.raises(ForeignParticipantError):
        school.desk.block(number)


def test_promote_past_max_is_allowed_and_reported(school: School) -> None:
    """D3: the admin may promote beyond max; exceeds_max says so and the W stamps clear."""
    school.configure(max_participants=1)
    school.register(person(1))
    waiting = school.register(person(2))
    result = school.desk.promote(waiting.enrollment_id)
    assert result.exceeds_max
    assert not result.mailed
    row = school.enrollment(waiting.enrollment_id)
    assert row["status"] == "A"
    assert row["waitlisted_since"] is None
    with pytest.raises(InvalidStatusError):
        school.desk.promote(waiting.enrollment_id)


def test_promote_into_a_freed_place_does_not_exceed_max(school: School) -> None:
    """After a cancellation the promotion fills the freed place within max."""
    school.configure(max_participants=1)
    first = school.register(person(1))
    waiting = school.register(person(2))
    school.desk.cancel(first.enrollment_id)
    assert school.enrollment(first.enrollment_id)["status"] == "S"
    assert school.desk.promote(waiting.enrollment_id).exceeds_max is False


def test_cancel_marks_s_and_never_deletes(school: School) -> None:
    """V4: a cancellation is status S; the row stays, and cancelling again changes nothing."""
    result = school.register(ANNA)
    school.desk.cancel(result.enrollment_id)
    school.desk.cancel(result.enrollment_id)
    assert school.enrollment(result.enrollment_id)["status"] == "S"
    assert school.count(admin.enrollments) == 1


def test_to_waitlist_is_an_admin_move_that_keeps_manual_mode_open(school: School) -> None:
    """D2 manual: an admin's move to W is marked and does not close the course."""
    school.configure(waitlist_mode="manual")
    moved = school.register(person(1))
    school.desk.to_waitlist(moved.enrollment_id)
    row = school.enrollment(moved.enrollment_id)
    assert row["status"] == "W"
    assert row["waitlisted_by_admin"] is True
    assert row["waitlisted_since"] is not None
    assert school.register(person(2)).decision == Registered()
    with pytest.raises(InvalidStatusError):
        school.desk.to_waitlist(moved.enrollment_id)


def test_auto_advance_reserves_the_place_for_the_waiting_entry(school: School) -> None:
    """D3: one free place and one entry waiting with auto advance on: the newcomer waits."""
    school.configure(max_participants=3, auto_advance=True)
    school.register(person(1))
    school.register(person(2))
    blocker = school.register(person(3))
    waiting = school.register(person(4))
    assert waiting.decision == Waitlisted(WaitReason.FULL)
    school.desk.cancel(blocker.enrollment_id)
    assert school.register(person(5)).decision == Waitlisted(WaitReason.FULL)
    school.configure(auto_advance=False, waitlist_mode="free_places_first")
    assert school.register(person(6)).decision == Registered()


@pytest.mark.parametrize("process_lock", [True, False], ids=["process-lock", "row-lock-only"])
def test_concurrent_registrations_never_overbook(
    school: School, process_lock: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Twenty threads on two desks register for five places: exactly five get A, also when
    only the database's course-row lock serializes them (as between processes)."""
    if not process_lock:
        monkeypatch.setattr(registration, "course_lock", lambda *_: threading.Lock())
    school.configure(max_participants=5)
    second = Desk(make_engine(str(school.admin.url.render_as_string(False))), school.state, HERE)
    results: list[Any] = []
    failures: list[BaseException] = []

    def register(index: int) -> None:
        desk = school.desk if index % 2 else second
        try:
            results.append(desk.register(COURSE, person(index), privacy_consent=True))
        except BaseException as error:  # pragma: no cover - reported below
            failures.append(error)

    threads = [threading.Thread(target=register, args=(i,)) for i in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert sum(r.decision == Registered() for r in results) == 5
    assert sum(isinstance(r.decision, Waitlisted) for r in results) == 15


@dataclass
class Inbox:
    """What the local SMTP server received."""

    mails: list[tuple[list[str], bytes]] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        self.mails.append((list(envelope.rcpt_tos), bytes(envelope.content)))
        return "250 OK"


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


def test_promotion_mails_the_person(tmp_path: Any, smtp: tuple[Inbox, int]) -> None:
    """D3: a promoted person gets a German mail through the configured SMTP server."""
    inbox, port = smtp
    mailer = SmtpMailer("127.0.0.1", port, "kurse@vhs-sr.example")
    school = School(lambda name: f"sqlite:///{tmp_path / (name + '.db')}", mailer=mailer)
    school.configure(max_participants=1)
    school.register(person(1))
    waiting = school.register(ANNA)
    result = school.desk.promote(waiting.enrollment_id)
    assert result.mailed
    assert result.exceeds_max
    assert len(inbox.mails) == 1
    recipients, content = inbox.mails[0]
    assert recipients == ["anna.berg@example.org"]
    mail = message_from_bytes(content)
    assert mail["From"] == "kurse@vhs-sr.example"
    assert "Wartelistenplatz auf offiziellen Platz gesetzt" in str(mail["Subject"])
    assert COURSE in str(mail["Subject"])


def test_promotion_survives_an_unreachable_mail_server(tmp_path: Any) -> None:
    """A mail server that does not answer leaves the promotion in place, reported unmailed."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    mailer = SmtpMailer("127.0.0.1", port, "kurse@vhs-sr.example", timeout=2)
    school = School(lambda name: f"sqlite:///{tmp_path / (name + '.db')}", mailer=mailer)
    waiting = school.register(ANNA)
    school.desk.to_waitlist(waiting.enrollment_id)
    result = school.desk.promote(waiting.enrollment_id)
    assert not result.mailed
    assert school.enrollment(waiting.enrollment_id)["status"] == "A"


# No maximum known: an empty TEIL_MAX (issue 7, item 7).

SUBSCRIBED = "26-502"


@dataclass
class Master:
    """The master as a subscriber's desk reaches it: answers every place request."""

    granted: bool | None  # None: no answer in time
    asked: list[int] = field(default_factory=list)

    def request(self, course: CourseRef, participant_number: int) -> PlaceAnswered | None:
        self.asked.append(participant_number)
        if self.granted is None:
            return None
        now = datetime.now(UTC)
        request = place_requested(course, HERE, participant_number, event_id="r", time=now)
        reason = None if self.granted else WaitReason.FULL.value
        return place_answered(request, granted=self.granted, reason=reason, event_id="a", time=now)


def subscribed_course(school: School, master: Master) -> Desk:
    """A course this school subscribed to, before (or without) the master's maximum."""
    with school.admin.begin() as connection:
        add_course(connection, SUBSCRIBED, master_school=THERE, max_participants=None)
    return Desk(school.admin, school.state, HERE, places=master)


@pytest.mark.parametrize("answer", [True, None], ids=["granted", "unanswered"])
def test_a_subscriber_without_a_maximum_asks_the_master_instead_of_waitlisting(
    school: School, answer: bool | None
) -> None:
    """With no maximum known a subscriber's desk never decides "full": it asks the master for
    each place, and without an answer it registers (nobody is sent to W for it)."""
    master = Master(granted=answer)
    desk = subscribed_course(school, master)
    results = [desk.register(SUBSCRIBED, person(i), privacy_consent=True) for i in range(3)]
    assert [r.status for r in results] == [Status.REGISTERED] * 3
    assert master.asked == [r.participant_number for r in results]


def test_a_subscriber_without_a_maximum_follows_the_masters_full(school: School) -> None:
    """When the master answers that the course is full, the subscriber's entry waits."""
    desk = subscribed_course(school, Master(granted=False))
    result = desk.register(SUBSCRIBED, ANNA, privacy_consent=True)
    assert result.decision == Waitlisted(WaitReason.FULL)


def test_a_master_without_a_maximum_sets_no_limit(school: School) -> None:
    """At the master an empty maximum is no limit: everyone gets a regular place, in dominant
    mode too, and frei shows nothing rather than 0 or a negative number."""
    school.configure(max_participants=None, min_participants=2)
    results = [school.register(person(i)) for i in range(15)]
    assert {r.status for r in results} == {Status.REGISTERED}
    listing = load_listing(school.admin, school.state, COURSE, HERE)
    assert (listing.registered, listing.max_participants, listing.free) == (15, None, None)
    assert listing_as_dict(listing)["free"] is None
