"""The course listing reproduces the seed's two example listings (V9, V10, V13)."""

from __future__ import annotations

from decimal import Decimal

from adapter.domain import Role
from adapter.mapping.listing import ListedEnrollment, build_listing, listing_as_dict, mask_iban

KOOB = "Mehrfachanmeldung; vhsKOOB"


def local(
    no: int, status: str, iban: str | None, fee: str, remark: str, pay: str = "Last"
) -> ListedEnrollment:
    return ListedEnrollment(
        no, status, "", "", None, None, iban, pay, Decimal(fee), Decimal("0"), remark
    )


def school_row(
    no: int, school: str, status: str = "A", mail: str | None = None
) -> ListedEnrollment:
    return ListedEnrollment(
        no,
        status,
        school,
        "",
        None,
        mail,
        None,
        None,
        Decimal("0"),
        Decimal("0"),
        f"{KOOB} Anmeldung von {school}",
        foreign=True,
    )


def test_subscriber_listing_of_the_seed() -> None:
    """Course 25-64901B at a subscriber: TN 5, frei 3, min 5, max 8, WL 0; the local
    cancellation is listed, the foreign rows show the school's name, fee 0,00 and the remark."""
    rows = [
        local(
            1,
            "S",
            "DE00 0000 0000 0000 3592",
            "5.00",
            "TN per Mail storniert Internetanmeldung (Tan: 15357) LS 18.09.2025",
        ),
        local(
            2,
            "A",
            "DE00000000000000009769",
            "53.00",
            "Internetanmeldung (Tan: 16132) LS 01.10.2025",
        ),
        school_row(3, "vhs Villingen-Schwenningen", mail="vhs@villingen-schwen"),
        school_row(4, "vhs Hofer Land"),
        local(5, "A", "DE00000000000000000503", "31.80", "LS 01.10.2025"),
        school_row(6, "vhs Villingen-Schwenningen", mail="vhs@villingen-schwen"),
        school_row(7, "vhs Hofer Land", status="S"),  # cancelled at its school: not listed
    ]
    listing = build_listing(
        number="25-64901B",
        title="Online-Kurs: Entwickeln von Android Apps - Grundlagen",
        starts_on=None,
        ends_on=None,
        fee=Decimal("53.00"),
        min_participants=5,
        max_participants=8,
        role=Role.SUBSCRIBER,
        enrollments=rows,
    )
    assert (
        listing.registered,
        listing.free,
        listing.min_participants,
        listing.max_participants,
        listing.waitlisted,
    ) == (5, 3, 5, 8, 0)
    assert [r.no for r in listing.rows] == [1, 2, 3, 4, 5, 6]
    assert [r.iban for r in listing.rows] == ["..3592", "..9769", "", "", "..0503", ""]
    assert listing.rows[2].name == "vhs Villingen-Schwenningen"
    assert listing.rows[2].mail == "vhs@villingen-schwen"
    assert (listing.rows[3].fee, listing.rows[3].balance) == (Decimal("0"), Decimal("0"))
    assert listing.rows[3].remark == "Mehrfachanmeldung; vhsKOOB Anmeldung von vhs Hofer Land"


def test_master_listing_of_the_seed() -> None:
    """Course 25-64643 at the master: the schools' participants booked under their school,
    shown as `(vhs Karlsruhe)`; TN 7, frei 92, max 99. Of the seed's ten rows, the two
    bookings of the schools themselves and row 7 count as cancelled here (the seed does not
    show statuses; these are the ones that make its header true)."""

    def booked(no: int, school: str, status: str = "A") -> ListedEnrollment:
        return ListedEnrollment(
            no,
            status,
            "",
            "",
            None,
            None,
            None,
            None,
            Decimal("0"),
            Decimal("0"),
            f"{KOOB} Anmeldung von {school}",
            company_name=school,
            foreign=True,
        )

    rows = [
        local(1, "S", None, "0.00", KOOB, pay=""),
        booked(2, "vhs Karlsruhe"),
        booked(3, "vhs Karlsruhe"),
        local(4, "A", "DE00000000000000006284", "18.00", "Internetanmeldung (Tan: 15834)"),
        local(
            5,
            "A",
            "DE00000000000000004166",
            "18.00",
            "Internetanmeldung (Tan: 15896) onlinevhs.bayern",
        ),
        booked(6, "vhs Karlsruhe"),
        local(7, "S", None, "23.00", "", pay="O/Rcht"),
        local(8, "S", None, "0.00", KOOB, pay=""),
        booked(9, "vhs Villingen-Schwenningen"),
        booked(10, "vhs Karlsruhe"),
    ]
    listing = build_listing(
        number="25-64643",
        title="Online-Seminar: Linux - kostenfreie Alternative zu Windows 10",
        starts_on=None,
        ends_on=None,
        fee=Decimal("18.00"),
        min_participants=1,
        max_participants=99,
        role=Role.MASTER,
        enrollments=rows,
    )
    assert (listing.registered, listing.free, listing.waitlisted) == (7, 92, 0)
    assert len(listing.rows) == 10
    assert listing.rows[1].name == "(vhs Karlsruhe)"
    assert listing.rows[8].name == "(vhs Villingen-Schwenningen)"
    assert [r.iban for r in listing.rows[3:5]] == ["..6284", "..4166"]


def test_a_cancelled_foreign_row_stays_at_the_master_as_status_s() -> None:
    """At the master a cancellation is an ordinary S row; at a subscriber it disappears (V6)."""
    rows = [school_row(1, "vhs Karlsruhe", status="S")]
    kwargs = {
        "number": "K",
        "title": "",
        "starts_on": None,
        "ends_on": None,
        "fee": Decimal("0"),
        "min_participants": None,
        "max_participants": None,
        "enrollments": rows,
    }
    assert [r.status for r in build_listing(role=Role.MASTER, **kwargs).rows] == ["S"]  # type: ignore[arg-type]
    assert build_listing(role=Role.SUBSCRIBER, **kwargs).rows == []  # type: ignore[arg-type]


def test_free_never_goes_below_zero_and_the_json_form_has_the_header() -> None:
    """An admin may overbook (D3); frei shows 0 then, and the JSON form carries TN, frei, WL."""
    rows = [local(n, "A", None, "0", "") for n in range(3)]
    listing = build_listing(
        number="K",
        title="",
        starts_on=None,
        ends_on=None,
        fee=Decimal("0"),
        min_participants=1,
        max_participants=2,
        role=None,
        enrollments=rows,
        desired_participants=2,
    )
    data = listing_as_dict(listing)
    assert (data["registered"], data["free"], data["waitlisted"], data["desired"]) == (3, 0, 0, 2)
    assert mask_iban(None) == ""
