"""The course listing on a terminal, with the seed's columns and German number format."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING

from rich.console import Group
from rich.table import Table
from rich.text import Text

from adapter.mapping.listing import CourseDetails, Listing
from adapter.mapping.offers import day_text, duration_text, time_text

if TYPE_CHECKING:
    from adapter.ops.offers import KnownOffer


def money(amount: Decimal) -> str:
    """`53,00`, as the admin product writes amounts."""
    return f"{amount:.2f}".replace(".", ",")


def _day(listing: Listing) -> str:
    """` Datum: Mo, 29.09.2025 bis: Mo, 17.11.2025`, as the seed's header."""
    if listing.starts_on is None:
        return ""
    end = listing.ends_on or listing.starts_on
    return f" Datum: {day_text(listing.starts_on)} bis: {day_text(end)}"


def _times(details: CourseDetails) -> str:
    if details.time_from is None:
        return ""
    end = f" bis: {time_text(details.time_to)}" if details.time_to else ""
    return f" Uhrzeit: {time_text(details.time_from)}{end}"


def _duration(details: CourseDetails) -> str:
    parts = []
    duration = duration_text(details.sessions, details.time_from)
    if duration:
        parts.append(f"Dauer: {duration}")
    if details.teaching_units is not None:
        parts.append(f"UE: {money(details.teaching_units)}")
    if details.place:
        parts.append(f"Ort: {details.place}")
    return " " + " ".join(parts) if parts else ""


def render_listing(listing: Listing, school_name: str = "") -> Group:
    """The seed's header (Kurs, Anmeldeschluss; Datum, TN, frei, min, Gebühr; Uhrzeit, WL,
    max; Dauer, UE, Ort; Dozent), each part where the course row has it, then the rows."""
    free = "-" if listing.free is None else str(listing.free)
    details = listing.details
    deadline = details.registration_deadline
    minimum = listing.min_participants if listing.min_participants is not None else "-"
    maximum = listing.max_participants if listing.max_participants is not None else "-"
    lines: list[str | tuple[str, str]] = [
        (f"Kurs: {listing.number} {listing.title}", "bold"),
        f" Anmeldeschluss: {deadline:%d.%m.%Y}" if deadline else "",
        ("  ABGESAGT", "bold red") if details.cancelled else "",
        f"  ({school_name})" if school_name else "",
        "\n",
        f"{_day(listing)} TN: {listing.registered} ",
        (f"frei: {free}", "bold"),
        f" min: {minimum}",
        f" Wunsch: {listing.desired_participants}" if listing.desired_participants else "",
        f" Gebühr: {money(listing.fee)}",
        "\n",
        f"{_times(details)} WL: {listing.waitlisted} max: {maximum}",
    ]
    if duration := _duration(details):
        lines += ["\n", duration]
    if details.lecturer:
        lines += ["\n", f" Dozent: {details.lecturer}"]
    header = Text.assemble(*lines)
    table = Table(show_lines=False, expand=False)
    for column, justify in (
        ("Nr.", "right"),
        ("Name, Vorname", "left"),
        ("Telefon", "left"),
        ("Mail", "left"),
        ("IBAN", "left"),
        ("Z-Art", "left"),
        ("Entgelt", "right"),
        ("Saldo", "right"),
        ("Bemerkung", "left"),
        ("St.", "center"),
    ):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for row in listing.rows:
        table.add_row(
            str(row.no),
            row.name,
            row.phone,
            row.mail,
            row.iban,
            row.payment_type,
            money(row.fee),
            money(row.balance),
            row.remark,
            row.status,
        )
    return Group(header, table)


def render_offers(known: Sequence[KnownOffer], names: Mapping[str, str]) -> Table:
    """The course offers this school knows, with the seed header's words: Anmeldeschluss,
    weekday and dates, Uhrzeit, Dauer, Ort, Dozent, Gebühr, max; and as which local course
    this school has it."""
    table = Table(show_lines=False, expand=False)
    for column in (
        "Master",
        "Kurs",
        "Titel",
        "Anmeldeschluss",
        "Datum",
        "Uhrzeit",
        "Dauer",
        "Ort",
        "Dozent",
        "Gebühr",
        "max",
        "Status",
        "hier als",
    ):
        table.add_column(column)
    for item in known:
        offer = item.offer
        master = offer.course.master_school
        dates = ""
        if offer.starts_on is not None:
            end = offer.ends_on or offer.starts_on
            dates = f"{day_text(offer.starts_on)} bis {day_text(end)}"
        times = ""
        if offer.time_from is not None:
            times = f"{offer.time_from:%H:%M}" + (
                f"-{offer.time_to:%H:%M}" if offer.time_to else ""
            )
        status = "abgesagt" if offer.cancelled else "offen"
        if offer.withdrawn:
            status = "zurückgezogen"
        if item.left:
            status += "; verlassen von " + ", ".join(names.get(s, s) for s in item.left)
        table.add_row(
            names.get(master, master),
            offer.course.number,
            offer.title,
            f"{offer.registration_deadline:%d.%m.%Y}" if offer.registration_deadline else "",
            dates,
            times,
            duration_text(offer.sessions, offer.time_from) or "",
            offer.place or "",
            offer.lecturer or "",
            money(offer.fee),
            "-" if offer.max_participants is None else str(offer.max_participants),
            status,
            item.local_course or "",
        )
    return table
