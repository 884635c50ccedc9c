"""Course offers and the course header (issue 9): the pure parts."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any

import pytest
from rich.console import Console

from adapter.consumers.receiver import InvalidMessageError, check_origin, parse_event
from adapter.domain import CourseRef, Role
from adapter.domain.offers import CourseOffer
from adapter.mapping import routes
from adapter.mapping.courses import course_settings
from adapter.mapping.listing import CourseDetails, build_listing, listing_as_dict
from adapter.mapping.offers import (
    day_text,
    duration_text,
    followed_columns,
    offer_as_dict,
    offer_fingerprint,
    offer_of_row,
    subscribed_course,
)
from adapter.messages import course_left, course_offered, offer_of, sender
from adapter.ops.render import render_listing

ANDROID = CourseRef("vhs-sr", "25-64901B")
NOW = datetime(2025, 9, 1, 8, 0, tzinfo=UTC)


def course_row(**changes: Any) -> dict[str, Any]:
    """The master's course row of the seed's subscriber listing, keys as in `admin.courses`."""
    row: dict[str, Any] = {
        "number": "25-64901B",
        "title": "Online-Kurs: Entwickeln von Android Apps - Grundlagen",
        "starts_on": date(2025, 9, 29),
        "ends_on": date(2025, 11, 17),
        "fee": Decimal("53.00"),
        "max_participants": 8,
        "min_participants": 5,
        "master_school": "vhs-sr",
        "master_number": "25-64901B",
        "registration_deadline": date(2025, 9, 23),
        "time_from": time(18, 0),
        "time_to": time(19, 30),
        "sessions": 4,
        "teaching_units": Decimal("3.00"),
        "place": "VHS SR, virtueller Kursraum",
        "lecturer": "vhs Villingen-Schwenningen",
        "cancelled": False,
    }
    row.update(changes)
    return row


def test_an_offer_carries_what_the_seeds_header_shows() -> None:
    """Title, dates, times, sessions, units, place, lecturer, fee, capacity and deadline."""
    offer = offer_of_row(course_row(), "vhs-sr")
    assert offer.course == ANDROID
    assert (offer.starts_on, offer.ends_on) == (date(2025, 9, 29), date(2025, 11, 17))
    assert (offer.time_from, offer.time_to) == (time(18, 0), time(19, 30))
    assert (offer.place, offer.lecturer) == (
        "VHS SR, virtueller Kursraum",
        "vhs Villingen-Schwenningen",
    )
    assert (offer.fee, offer.max_participants, offer.min_participants) == (Decimal("53.00"), 8, 5)
    assert offer.registration_deadline == date(2025, 9, 23)
    assert offer.cancelled is False


def test_an_admin_db_without_the_optional_columns_offers_what_it_has() -> None:
    """A KuferSQL without times, place or lecturer columns still offers its courses."""
    row = {k: v for k, v in course_row().items() if k not in ("time_from", "place", "cancelled")}
    offer = offer_of_row(row, "vhs-sr")
    assert (offer.time_from, offer.place, offer.cancelled) == (None, None, False)


def test_the_fingerprint_changes_with_each_field_the_offer_shows() -> None:
    """Dates, times, capacity and cancellation each make a new offer; the same row does not."""
    base = offer_fingerprint(offer_of_row(course_row(), "vhs-sr"))
    assert offer_fingerprint(offer_of_row(course_row(), "vhs-sr")) == base
    for change in (
        {"starts_on": date(2025, 10, 6)},
        {"time_to": time(20, 0)},
        {"max_participants": 10},
        {"cancelled": True},
        {"place": "Raum 3"},
    ):
        assert offer_fingerprint(offer_of_row(course_row(**change), "vhs-sr")) != base


def test_the_offer_travels_unchanged() -> None:
    """Master's offer -> CourseOffered JSON -> strict parse -> the same offer."""
    offer = offer_of_row(course_row(), "vhs-sr")
    event = course_offered(offer, version=7, event_id="e1", time=NOW)
    parsed = parse_event(event.model_dump_json().encode())
    assert offer_of(parsed.data) == offer  # type: ignore[union-attr, arg-type]
    assert sender(parsed) == "vhs-sr"


def test_only_the_master_may_offer_its_course() -> None:
    """An offer published by another school's user is refused as not authenticated."""
    event = course_offered(offer_of_row(course_row(), "vhs-sr"), version=7, event_id="e", time=NOW)
    users = {"vhs-sr": "u-sr", "vhs-ka": "u-ka"}
    check_origin(event, "u-sr", users)
    with pytest.raises(InvalidMessageError) as refused:
        check_origin(event, "u-ka", users)
    assert refused.value.reason == "origin_not_authenticated"


def test_the_school_that_leaves_is_the_sender() -> None:
    """A CourseLeft names the leaving school as its sender, on its own control route."""
    event = course_left(ANDROID, "vhs-ka", event_id="e", time=NOW)
    assert sender(parse_event(event.model_dump_json().encode())) == "vhs-ka"


def test_every_school_may_bind_offers_and_only_the_master_publish_them() -> None:
    """`off.*.*` is in every school's bindings and read permission; the write permission
    allows a school only its own offers."""
    import re

    key = routes.course_offer(ANDROID)
    for school in ("vhs-ka", "vhs-hof", "vhs-sr"):
        assert "off.*.*" in routes.school_bindings(school)
        assert re.search(routes.bind_permission(school), "off.*.*")
    assert re.search(routes.publish_permission("vhs-sr"), key)
    assert not re.search(routes.publish_permission("vhs-ka"), key)


def test_a_subscribed_course_is_made_from_the_offer() -> None:
    """The local row: the offer's title, fee, dates, times, capacity, shared with its master."""
    offer = offer_of_row(course_row(), "vhs-sr")
    row = subscribed_course(offer, "25-64901B-KA")
    assert row["number"] == "25-64901B-KA"
    assert (row["master_school"], row["master_number"]) == ("vhs-sr", "25-64901B")
    assert (row["title"], row["fee"], row["max_participants"]) == (offer.title, Decimal("53.00"), 8)
    assert (row["time_from"], row["place"]) == (time(18, 0), "VHS SR, virtueller Kursraum")


def test_a_subscriber_follows_the_schedule_not_the_title_or_fee() -> None:
    """What a master's change sets at a subscriber: dates, times, place, lecturer, deadline,
    cancellation; the subscriber's own title and fee stay."""
    followed = followed_columns(offer_of_row(course_row(cancelled=True), "vhs-sr"))
    assert followed["cancelled"] is True
    assert followed["starts_on"] == date(2025, 9, 29)
    assert {"title", "fee"}.isdisjoint(followed)


def test_a_cancelled_course_takes_no_registrations() -> None:
    """ABGESAGT closes registration, whatever ANM_OFFEN says (the desk refuses)."""
    settings = {
        "max_participants": 8,
        "min_participants": 5,
        "desired_participants": None,
        "waitlist_enabled": True,
        "waitlist_max": None,
        "waitlist_mode": "dominant",
        "auto_advance": False,
        "max_per_school": None,
        "registration_open": True,
    }
    assert course_settings(settings).registration_open is True
    assert course_settings({**settings, "cancelled": True}).registration_open is False


def test_weekday_and_duration_as_the_seed_writes_them() -> None:
    """`Mo, 29.09.2025`, `Di, 23.09.2025`; `4 Abende`, `1 Abend`; daytime sessions `Termine`."""
    assert day_text(date(2025, 9, 29)) == "Mo, 29.09.2025"
    assert day_text(date(2025, 9, 23)) == "Di, 23.09.2025"
    assert duration_text(4, time(18, 0)) == "4 Abende"
    assert duration_text(1, time(19, 0)) == "1 Abend"
    assert duration_text(3, time(9, 0)) == "3 Termine"
    assert duration_text(None, time(18, 0)) is None


def seed_listing(details: CourseDetails) -> str:
    listing = build_listing(
        number="25-64901B",
        title="Online-Kurs: Entwickeln von Android Apps - Grundlagen",
        starts_on=date(2025, 9, 29),
        ends_on=date(2025, 11, 17),
        fee=Decimal("53.00"),
        min_participants=5,
        max_participants=8,
        role=Role.SUBSCRIBER,
        enrollments=[],
        details=details,
    )
    console = Console(width=200)
    with console.capture() as captured:
        console.print(render_listing(listing).renderables[0])
    return captured.get()


def test_the_header_of_the_seeds_subscriber_listing() -> None:
    """Anmeldeschluss, weekdays, Uhrzeit, Dauer, UE, Ort and Dozent as the seed prints them."""
    text = seed_listing(
        CourseDetails(
            registration_deadline=date(2025, 9, 23),
            time_from=time(18, 0),
            time_to=time(19, 30),
            sessions=4,
            teaching_units=Decimal("3.00"),
            place="VHS SR, virtueller Kursraum",
            lecturer="vhs Villingen-Schwenningen",
        )
    )
    assert text.splitlines() == [
        "Kurs: 25-64901B Online-Kurs: Entwickeln von Android Apps - Grundlagen"
        " Anmeldeschluss: 23.09.2025",
        " Datum: Mo, 29.09.2025 bis: Mo, 17.11.2025 TN: 0 frei: 8 min: 5 Gebühr: 53,00",
        " Uhrzeit: 18:00 Uhr bis: 19:30 Uhr WL: 0 max: 8",
        " Dauer: 4 Abende UE: 3,00 Ort: VHS SR, virtueller Kursraum",
        " Dozent: vhs Villingen-Schwenningen",
    ]


def test_a_header_without_the_details_leaves_them_out() -> None:
    """Where the admin DB has no times, place or lecturer, the header shows no empty words."""
    text = seed_listing(CourseDetails())
    assert [word for word in ("Uhrzeit", "Ort", "Dozent", "Dauer") if word in text] == []
    assert "Datum: Mo, 29.09.2025" in text


def test_a_cancelled_course_says_so_in_its_header_and_json() -> None:
    """ABGESAGT in the header; `cancelled` in `course show --json` and `offers --json`."""
    assert "ABGESAGT" in seed_listing(CourseDetails(cancelled=True))
    listing = build_listing(
        number="1",
        title="",
        starts_on=date(2025, 9, 29),
        ends_on=None,
        fee=Decimal(0),
        min_participants=None,
        max_participants=None,
        role=None,
        enrollments=[],
        details=CourseDetails(cancelled=True, time_from=time(18, 0), sessions=4),
    )
    body = listing_as_dict(listing)
    assert (body["cancelled"], body["weekday"], body["duration"]) == (True, "Mo", "4 Abende")
    offer = CourseOffer(ANDROID, "x", Decimal("1.00"), starts_on=date(2025, 9, 29), cancelled=True)
    assert offer_as_dict(offer)["cancelled"] is True
    assert offer_as_dict(offer)["weekday"] == "Mo"


def test_an_offer_route_names_its_master_as_origin() -> None:
    """A dead letter of an offer is known by its route as the master's, for that course."""
    assert routes.parse(routes.course_offer(ANDROID)) == routes.Route("off", "vhs-sr", ANDROID)
