"""The course listing on a terminal, with the seed's columns and German number format."""

from __future__ import annotations

from decimal import Decimal

from rich.console import Group
from rich.table import Table
from rich.text import Text

from adapter.mapping.listing import CourseDetails, Listing
from adapter.mapping.offers import day_text, duration_text, time_text


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
