"""The course listing on a terminal, with the seed's columns and German number format."""

from __future__ import annotations

from decimal import Decimal

from rich.console import Group
from rich.table import Table
from rich.text import Text

from adapter.mapping.listing import Listing


def money(amount: Decimal) -> str:
    """`53,00`, as the admin product writes amounts."""
    return f"{amount:.2f}".replace(".", ",")


def _day(listing: Listing) -> str:
    if listing.starts_on is None:
        return ""
    start = listing.starts_on.strftime("%d.%m.%Y")
    end = listing.ends_on.strftime("%d.%m.%Y") if listing.ends_on else start
    return f" Datum: {start} bis: {end}"


def render_listing(listing: Listing, school_name: str = "") -> Group:
    free = "-" if listing.free is None else str(listing.free)
    header = Text.assemble(
        (f"Kurs: {listing.number} {listing.title}", "bold"),
        f"  ({school_name})" if school_name else "",
        "\n",
        f"{_day(listing)} TN: {listing.registered} ",
        (f"frei: {free}", "bold"),
        f" min: {listing.min_participants if listing.min_participants is not None else '-'}",
        f" max: {listing.max_participants if listing.max_participants is not None else '-'}",
        f" Wunsch: {listing.desired_participants}" if listing.desired_participants else "",
        f" WL: {listing.waitlisted} Gebühr: {money(listing.fee)}",
    )
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
