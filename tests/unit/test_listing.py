"""The course listing reproduces the seed's two example listings (V6, V9, V10, V13).

The seed's screenshots hide the names and contact data of real participants; those cells are
empty here too, so that every cell can be compared with the seed as printed. Two cells of the
seed are cut by the admin product's screen at 20 characters (`(vhs Villingen-Schwe`,
`vhs@villingen-schwen`); the listing holds the full text, of which the seed shows the start.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from adapter.domain import CourseRef, EnrollmentKey, EnrollmentState, Role, Status
from adapter.mapping.inbound import foreign_view
from adapter.mapping.listing import (
    ListedEnrollment,
    Listing,
    build_listing,
    listing_as_dict,
    mask_iban,
)

KOOB = "Mehrfachanmeldung; vhsKOOB"
SCREEN_WIDTH = 20
SCHOOL_EMAILS = {"vhs Villingen-Schwenningen": "vhs@villingen-schwenningen.de"}


def money(value: Decimal) -> str:
    """An amount as the admin product prints it: `53,00`."""
    return f"{value:.2f}".replace(".", ",")


def table(listing: Listing) -> list[tuple[str, ...]]:
    """The listing's rows in the seed's columns: Nr., name, phone, mail, IBAN, Z-Art, fee,
    balance, remark."""
    return [
        (
            str(row.no),
            row.name,
            row.phone,
            row.mail,
            row.iban,
            row.payment_type,
            money(row.fee),
            money(row.balance),
            row.remark,
        )
        for row in listing.rows
    ]


def assert_shown_as(listing: Listing, seed: list[tuple[str, ...]]) -> None:
    """Every cell equals the seed's, or starts with it where the seed's screen cut it."""
    actual = table(listing)
    assert len(actual) == len(seed)
    for got, shown in zip(actual, seed, strict=True):
        for cell, seed_cell in zip(got, shown, strict=True):
            cut = len(seed_cell) == SCREEN_WIDTH and cell.startswith(seed_cell)
            assert cell == seed_cell or cut, f"row {got[0]}: {cell!r} is not {seed_cell!r}"


def local(
    enrollment_id: int,
    status: str,
    *,
    iban: str | None = None,
    pay: str | None = "Last",
    fee: str,
    balance: str = "0.00",
    remark: str = "",
    last_name: str = "",
    first_name: str = "",
    company: str | None = None,
) -> ListedEnrollment:
    """An own enrollment (names left empty as in the seed unless given)."""
    return ListedEnrollment(
        enrollment_id=enrollment_id,
        status=status,
        last_name=last_name,
        first_name=first_name,
        main_phone=None,
        main_email=None,
        iban=iban,
        payment_type=pay,
        fee=Decimal(fee),
        balance=Decimal(balance),
        remark=remark,
        company_name=company,
    )


def synced(
    enrollment_id: int,
    course: CourseRef,
    school: str,
    origin: str,
    origin_name: str,
    status: Status = Status.REGISTERED,
    *,
    last_name: str = "",
    first_name: str = "",
) -> ListedEnrollment:
    """A foreign row as apply writes it (inbound view): at a subscriber booked on the participant
    row that stands for the origin school, at the master on the real person under the school."""
    state = EnrollmentState(EnrollmentKey(origin, enrollment_id, course), status, None, None)
    view = foreign_view(state, school, origin_name)
    row = view.new_enrollment()
    at_master = view.role is Role.MASTER
    return ListedEnrollment(
        enrollment_id=enrollment_id,
        status=row["status"],
        last_name=last_name if at_master else origin_name,
        first_name=first_name if at_master else "",
        main_phone=None,
        main_email=None if at_master else SCHOOL_EMAILS.get(origin_name),
        iban=None,
        payment_type=row["payment_type"],
        fee=row["fee"],
        balance=row["balance"],
        remark=row["remark"],
        company_name=origin_name if at_master else None,
        foreign=True,
    )


# The subscriber's listing: VHS SR (`vhs-sr`) sells course 25-64901B of vhs Villingen-
# Schwenningen (`vhs-vs`, the master); vhs Hofer Land (`vhs-hof`) is another subscriber.
ANDROID = CourseRef("vhs-vs", "25-64901B")


def subscriber_rows() -> list[ListedEnrollment]:
    return [
        local(
            1,
            "S",
            iban="DE12 5001 0517 0648 4835 92",
            fee="5.00",
            remark="TN per Mail storniert Internetanmeldung (Tan: 15357) LS 18.09.2025",
        ),
        local(
            2,
            "A",
            iban="DE44500105175407329769",
            fee="53.00",
            remark="Internetanmeldung (Tan: 16132) LS 01.10.2025",
        ),
        synced(3, ANDROID, "vhs-sr", "vhs-vs", "vhs Villingen-Schwenningen"),
        synced(4, ANDROID, "vhs-sr", "vhs-hof", "vhs Hofer Land"),
        local(5, "A", iban="DE02 1203 0000 0000 2005 03", fee="31.80", remark="LS 01.10.2025"),
        synced(6, ANDROID, "vhs-sr", "vhs-vs", "vhs Villingen-Schwenningen"),
    ]


def subscriber_listing(rows: list[ListedEnrollment]) -> Listing:
    return build_listing(
        number="25-64901B",
        title="Online-Kurs: Entwickeln von Android Apps - Grundlagen",
        starts_on=date(2025, 9, 29),
        ends_on=date(2025, 11, 17),
        fee=Decimal("53.00"),
        min_participants=5,
        max_participants=8,
        role=Role.SUBSCRIBER,
        enrollments=rows,
    )


def test_subscriber_listing_of_the_seed() -> None:
    """Course 25-64901B at a subscriber: TN 5, frei 3, min 5, max 8, WL 0; the local
    cancellation is listed, foreign rows bear the school's name, fee 0,00 and the sync remark."""
    listing = subscriber_listing(subscriber_rows())
    header = (
        listing.registered,
        listing.free,
        listing.min_participants,
        listing.max_participants,
        listing.waitlisted,
        money(listing.fee),
    )
    assert header == (5, 3, 5, 8, 0, "53,00")
    vs = "vhs Villingen-Schwenningen"
    assert_shown_as(
        listing,
        [
            ("1", "", "", "", "..3592", "Last", "5,00", "0,00",
             "TN per Mail storniert Internetanmeldung (Tan: 15357) LS 18.09.2025"),
            ("2", "", "", "", "..9769", "Last", "53,00", "0,00",
             "Internetanmeldung (Tan: 16132) LS 01.10.2025"),
            ("3", vs, "", "vhs@villingen-schwen", "", "", "0,00", "0,00",
             "Mehrfachanmeldung; vhsKOOB Anmeldung von vhs Villingen-Schwenningen"),
            ("4", "vhs Hofer Land", "", "", "", "", "0,00", "0,00",
             "Mehrfachanmeldung; vhsKOOB Anmeldung von vhs Hofer Land"),
            ("5", "", "", "", "..0503", "Last", "31,80", "0,00", "LS 01.10.2025"),
            ("6", vs, "", "vhs@villingen-schwen", "", "", "0,00", "0,00",
             "Mehrfachanmeldung; vhsKOOB Anmeldung von vhs Villingen-Schwenningen"),
        ],
    )  # fmt: skip
    assert [row.status for row in listing.rows] == ["S", "A", "A", "A", "A", "A"]


# The master's listing: VHS SR (`vhs-sr`) is master of course 25-64643; vhs Karlsruhe
# (`vhs-ka`) and vhs Villingen-Schwenningen (`vhs-vs`) subscribe.
LINUX = CourseRef("vhs-sr", "25-64643")


def master_rows() -> list[ListedEnrollment]:
    ka, vs = "vhs Karlsruhe", "vhs Villingen-Schwenningen"
    return [
        local(1, "S", pay=None, fee="0.00", remark=KOOB, last_name=ka),
        synced(2, LINUX, "vhs-sr", "vhs-ka", ka),
        synced(3, LINUX, "vhs-sr", "vhs-ka", ka, Status.CANCELLED),
        local(
            4,
            "A",
            iban="DE75 5121 0800 1245 1262 84",
            fee="18.00",
            balance="18.00",
            remark="Internetanmeldung (Tan: 15834)",
        ),
        local(
            5,
            "A",
            iban="DE27100777770209294166",
            fee="18.00",
            balance="18.00",
            remark="Internetanmeldung (Tan: 15896) onlinevhs.bayern",
        ),
        synced(6, LINUX, "vhs-sr", "vhs-ka", ka),
        local(7, "A", pay="O/Rcht", fee="23.00"),
        local(8, "S", pay=None, fee="0.00", remark=KOOB, last_name=vs),
        synced(9, LINUX, "vhs-sr", "vhs-vs", vs),
        synced(10, LINUX, "vhs-sr", "vhs-ka", ka),
    ]


def master_listing(rows: list[ListedEnrollment]) -> Listing:
    return build_listing(
        number="25-64643",
        title="Online-Seminar: Linux - kostenfreie Alternative zu Windows 10",
        starts_on=date(2025, 9, 23),
        ends_on=date(2025, 9, 23),
        fee=Decimal("18.00"),
        min_participants=1,
        max_participants=99,
        role=Role.MASTER,
        enrollments=rows,
    )


def test_master_listing_of_the_seed() -> None:
    """Course 25-64643 at the master: TN 7, frei 92, min 1, max 99, WL 0, and the real
    participants of the subscriber schools booked as company bookings, `(vhs Karlsruhe)`.

    The seed prints no statuses; these make its header true. Rows 1 and 8 are the company
    bookings of the schools themselves (remark without "Anmeldung von", where the master
    enters the settlement at course end, V12): they are no participants, so they carry S and
    do not count. Of the eight participants (2-7, 9, 10), row 3 was cancelled at vhs Karlsruhe
    and stays at the master as an ordinary S row (V6): 8 - 1 = 7 registered, 99 - 7 = 92 free,
    nobody on the waitlist.
    """
    listing = master_listing(master_rows())
    header = (
        listing.registered,
        listing.free,
        listing.min_participants,
        listing.max_participants,
        listing.waitlisted,
        money(listing.fee),
    )
    assert header == (7, 92, 1, 99, 0, "18,00")
    ka = "Mehrfachanmeldung; vhsKOOB Anmeldung von vhs Karlsruhe"
    assert_shown_as(
        listing,
        [
            ("1", "vhs Karlsruhe", "", "", "", "", "0,00", "0,00", KOOB),
            ("2", "(vhs Karlsruhe)", "", "", "", "", "0,00", "0,00", ka),
            ("3", "(vhs Karlsruhe)", "", "", "", "", "0,00", "0,00", ka),
            ("4", "", "", "", "..6284", "Last", "18,00", "18,00", "Internetanmeldung (Tan: 15834)"),
            ("5", "", "", "", "..4166", "Last", "18,00", "18,00",
             "Internetanmeldung (Tan: 15896) onlinevhs.bayern"),
            ("6", "(vhs Karlsruhe)", "", "", "", "", "0,00", "0,00", ka),
            ("7", "", "", "", "", "O/Rcht", "23,00", "0,00", ""),
            ("8", "vhs Villingen-Schwenningen", "", "", "", "", "0,00", "0,00", KOOB),
            ("9", "(vhs Villingen-Schwe", "", "", "", "", "0,00", "0,00",
             "Mehrfachanmeldung; vhsKOOB Anmeldung von vhs Villingen-Schwenningen"),
            ("10", "(vhs Karlsruhe)", "", "", "", "", "0,00", "0,00", ka),
        ],
    )  # fmt: skip
    assert listing.rows[8].name == "(vhs Villingen-Schwenningen)"
    assert listing.rows[2].status == "S"


def test_a_named_participant_at_the_master_shows_name_and_school() -> None:
    """Outside the seed's hidden cells, the master sees `Nowak, Jan (vhs Karlsruhe)`."""
    row = synced(2, LINUX, "vhs-sr", "vhs-ka", "vhs Karlsruhe", last_name="Nowak", first_name="Jan")
    assert master_listing([row]).rows[0].name == "Nowak, Jan (vhs Karlsruhe)"
    own = local(3, "A", fee="18.00", last_name="Berg", first_name="Eva")
    assert master_listing([own]).rows[0].name == "Berg, Eva"


def test_a_cancelled_foreign_row_disappears_at_a_subscriber() -> None:
    """When vhs Hofer Land cancels, its anonymised row vanishes at VHS SR and TN drops (V6)."""
    rows = subscriber_rows()
    rows[3] = synced(4, ANDROID, "vhs-sr", "vhs-hof", "vhs Hofer Land", Status.CANCELLED)
    listing = subscriber_listing(rows)
    assert [row.name for row in listing.rows if row.name] == ["vhs Villingen-Schwenningen"] * 2
    assert [row.no for row in listing.rows] == [1, 2, 3, 4, 5]  # numbered without a gap
    assert (listing.registered, listing.free) == (4, 4)


def test_a_cancelled_foreign_row_stays_at_the_master_as_status_s() -> None:
    """The same cancellation is an ordinary S row at the master, still listed (V6)."""
    listing = master_listing(master_rows())
    cancelled = [row for row in listing.rows if row.remark.endswith("von vhs Karlsruhe")]
    assert [row.status for row in cancelled] == ["A", "S", "A", "A"]
    assert len(listing.rows) == 10


def test_a_local_cancellation_stays_listed_at_a_subscriber() -> None:
    """Only foreign cancellations vanish; the school's own S row is still shown (V7)."""
    listing = subscriber_listing(subscriber_rows())
    assert listing.rows[0].status == "S"
    assert listing.rows[0].iban == "..3592"


def test_the_iban_is_masked_to_its_last_four_characters() -> None:
    """An IBAN is never listed in full: `..3592`, with or without spaces; none is empty."""
    assert mask_iban("DE12 5001 0517 0648 4835 92") == "..3592"
    assert mask_iban("DE12500105170648483592") == "..3592"
    assert mask_iban(None) == ""
    assert mask_iban("") == ""
    listing = subscriber_listing(subscriber_rows())
    assert all("5001" not in row.iban for row in listing.rows)


def test_waitlisted_rows_count_in_wl_not_in_tn() -> None:
    """W rows of any school count as WL; only A rows count as TN (V13)."""
    rows = [
        *subscriber_rows(),
        synced(7, ANDROID, "vhs-sr", "vhs-hof", "vhs Hofer Land", Status.WAITLISTED),
        local(8, "W", fee="53.00"),
    ]
    listing = subscriber_listing(rows)
    assert (listing.registered, listing.free, listing.waitlisted) == (5, 3, 2)
    assert len(listing.rows) == 8


def test_free_never_goes_below_zero() -> None:
    """An admin may overbook (D3): frei shows 0, not a negative number."""
    listing = build_listing(
        number="K-1",
        title="",
        starts_on=None,
        ends_on=None,
        fee=Decimal("0"),
        min_participants=1,
        max_participants=2,
        role=None,
        enrollments=[local(n, "A", fee="0") for n in range(1, 4)],
    )
    assert (listing.registered, listing.free) == (3, 0)


def test_the_json_form_carries_header_and_rows() -> None:
    """`course show --json` gives TN, frei, min, max, WL, fee and each row's columns."""
    data = listing_as_dict(subscriber_listing(subscriber_rows()))
    assert {k: data[k] for k in ("course", "registered", "free", "min", "max", "waitlisted")} == {
        "course": "25-64901B",
        "registered": 5,
        "free": 3,
        "min": 5,
        "max": 8,
        "waitlisted": 0,
    }
    assert (data["fee"], data["role"], data["starts_on"]) == ("53.00", "subscriber", "2025-09-29")
    rows = data["rows"]
    assert isinstance(rows, list)
    assert rows[3] == {
        "no": 4,
        "name": "vhs Hofer Land",
        "phone": "",
        "mail": "",
        "iban": "",
        "payment_type": "",
        "fee": "0.00",
        "balance": "0.00",
        "remark": "Mehrfachanmeldung; vhsKOOB Anmeldung von vhs Hofer Land",
        "status": "A",
    }
