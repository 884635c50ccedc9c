"""The admin DB's tables: the reference schema (KuferSQL-like, so the product runs without the
vendor's DB), or a school's real KuferSQL through a mapping of table and column names.

KuferSQL's column names appear here and only here; each is renamed to English through its
`key`, and the rest of the code speaks English (`belegung.c.status`, never `STATUS_1`).

One mapping holds per process: `use(mapping)` builds the tables from it and binds them to
this module's names (`admin.courses`, `admin.enrollments`, ...), so code reads `admin.courses`
at call time, never `from adapter.store.admin import courses`. `columns_of("enrollments")`
is a stand-in for `admin.enrollments.c` that follows `use` too.

Some columns of the reference schema are optional (`OPTIONAL`): the real KuferSQL lacks them.
A mapping names them absent, and then what they hold lives in the adapter's state DB
(`adapter.store.kept`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    ColumnElement,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    Time,
    null,
)
from sqlalchemy.types import TypeEngine


@dataclass(frozen=True, slots=True)
class _Field:
    key: str
    name: str  # the reference schema's (KuferSQL's) column name
    type: TypeEngine[Any] | type[TypeEngine[Any]]
    optional: bool = False  # the real KuferSQL lacks it: a mapping may name it absent
    options: Mapping[str, Any] = field(default_factory=dict)
    references: str | None = None  # "table.key" of a foreign key


def _f(
    key: str, name: str, type_: TypeEngine[Any] | type[TypeEngine[Any]], **options: Any
) -> _Field:
    optional = bool(options.pop("optional", False))
    references = options.pop("references", None)
    return _Field(key, name, type_, optional, options, references)


# The reference schema: per table key its name and fields.
REFERENCE: dict[str, tuple[str, tuple[_Field, ...]]] = {
    "courses": (
        "KURSE",
        (
            _f("number", "NR", String(40), primary_key=True),
            _f("title", "TITEL", String(200), nullable=False, default=""),
            _f("starts_on", "BEGINN", Date),
            _f("ends_on", "ENDE", Date),
            _f("fee", "GEBUEHR", Numeric(10, 2), nullable=False, default=0),
            _f("max_participants", "TEIL_MAX", Integer),
            _f("min_participants", "TEIL_MIN", Integer),
            # Capacity and waitlist settings (D1-D4); a subscriber's course follows its master's.
            _f("desired_participants", "TEIL_WUNSCH", Integer, optional=True),
            _f(
                "waitlist_enabled",
                "WL_AKTIV",
                Boolean,
                optional=True,
                nullable=False,
                default=True,
            ),
            _f("waitlist_max", "WL_MAX", Integer, optional=True),
            _f(
                "waitlist_mode",
                "WL_MODUS",
                String(20),
                optional=True,
                nullable=False,
                default="dominant",
            ),
            _f(
                "auto_advance", "NACHRUECKEN", Boolean, optional=True, nullable=False, default=False
            ),
            _f("max_per_school", "MAX_PRO_VHS", Integer, optional=True),
            _f(
                "registration_open",
                "ANM_OFFEN",
                Boolean,
                optional=True,
                nullable=False,
                default=True,
            ),
            # A shared course names its master school and the master's course number; at the
            # master itself both point to the course. No master school: an ordinary local
            # course, never synced. KuferSQL has `Master_knr`, not the master school.
            _f("master_school", "MASTER_VHS", String(63), optional=True),
            _f("master_number", "Master_knr", String(40)),
            _f("modified_at", "BEARBDATUM", DateTime),
            # What a course offer shows and the listing's header (optional: NULL where unknown,
            # and a mapping may name them absent): registration deadline, times of day, number
            # of sessions and teaching units, place, lecturer, and whether the course is
            # cancelled (no more registrations; a master's cancellation reaches every
            # subscriber's course).
            _f("registration_deadline", "ANM_SCHLUSS", Date, optional=True),
            _f("time_from", "ZEIT_VON", Time, optional=True),
            _f("time_to", "ZEIT_BIS", Time, optional=True),
            _f("sessions", "TERMINE", Integer, optional=True),
            _f("teaching_units", "UE", Numeric(6, 2), optional=True),
            _f("place", "ORT", String(200), optional=True),
            _f("lecturer", "DOZENT", String(200), optional=True),
            _f("cancelled", "ABGESAGT", Boolean, optional=True, default=False),
        ),
    ),
    "participants": (
        "TEILNEHM",
        (
            _f("number", "NR", Integer, primary_key=True, autoincrement=True),
            _f("last_name", "NAME", String(100), nullable=False, default=""),
            _f("first_name", "VORNAME", String(100), nullable=False, default=""),
            _f("birthday", "GEBDAT", Date),
            _f("main_phone", "TEL_ANZEIGE", String(50)),
            _f("main_email", "EMAIL_ANZEIGE", String(254)),
            _f("blocked", "ANM_SPERRE", Boolean, nullable=False, default=False),
            _f("iban", "IBAN", String(34)),
            _f("modified_at", "BEARBDATUM", DateTime),
        ),
    ),
    "communications": (
        "TEILNEHM_KOMM",
        (
            _f("id", "ID", Integer, primary_key=True, autoincrement=True),
            _f(
                "participant_number",
                "TNR",
                Integer,
                references="participants.number",
                nullable=False,
            ),
            _f("kind", "ART", String(20), nullable=False),
            _f("label", "BEZEICHNUNG", String(50)),
            _f("value", "WERT", String(254), nullable=False),
        ),
    ),
    "enrollments": (
        "BELEGUNG",
        (
            _f("id", "ID", Integer, primary_key=True, autoincrement=True),
            _f("course_number", "KNR", String(40), references="courses.number", nullable=False),
            _f(
                "participant_number",
                "TNR",
                Integer,
                references="participants.number",
                nullable=False,
            ),
            _f("status", "STATUS_1", String(1), nullable=False, default="A"),
            _f("registered_on", "ANM_DATUM", Date),
            # Since when an entry waits (the order of advance, D3), and whether an admin put it
            # there rather than its registration (the manual mode, D2).
            _f("waitlisted_since", "WL_SEIT", DateTime, optional=True),
            _f(
                "waitlisted_by_admin",
                "WL_VERWALTER",
                Boolean,
                optional=True,
                nullable=False,
                default=False,
            ),
            # The company a booking is made for: the participant number of the company's row.
            _f("company_number", "FIRMA", Integer, references="participants.number"),
            _f("payment_type", "ZAHLART", String(10)),
            _f("fee", "ENTGELT", Numeric(10, 2), nullable=False, default=0),
            _f("balance", "BET_OFFEN", Numeric(10, 2), nullable=False, default=0),
            _f("remark", "BEMERKUNG", Text),
            _f("modified_at", "BEARBDATUM", DateTime),
        ),
    ),
}

# Indexes of the reference schema (created by `vhs-sync admin-db create` only).
_INDEXES = {
    "participants": [("ix_teilnehm_bearbdatum", "modified_at")],
    "enrollments": [
        ("ix_belegung_bearbdatum", "modified_at"),
        ("ix_belegung_knr", "course_number"),
    ],
}

OPTIONAL = {
    table: tuple(f.key for f in fields if f.optional) for table, (_, fields) in REFERENCE.items()
}


@dataclass(frozen=True, slots=True)
class SchemaMapping:
    """Table and column names of a school's admin DB; what is not named is as in the
    reference schema. A column named "" is absent (only an optional one may be)."""

    tables: Mapping[str, str] = field(default_factory=dict)
    columns: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    schema: str | None = None

    def problems(self) -> list[str]:
        """What is wrong with the mapping, each naming its field; empty when usable."""
        found = []
        for table, name in self.tables.items():
            if table not in REFERENCE:
                found.append(f"tables.{table}: no such table (known: {', '.join(REFERENCE)})")
            elif not name.strip():
                found.append(f"tables.{table}: the table name is empty")
        if self.schema is not None and not self.schema.strip():
            found.append("schema: empty; leave it out for the database's default schema")
        named = [self.tables.get(table, REFERENCE[table][0]) for table in REFERENCE]
        doubled_tables = sorted({n for n in named if n.strip() and named.count(n) > 1})
        if doubled_tables:
            found.append(f"tables: one name for two tables: {', '.join(doubled_tables)}")
        for table, columns in self.columns.items():
            if table not in REFERENCE:
                found.append(f"columns.{table}: no such table (known: {', '.join(REFERENCE)})")
                continue
            fields = {f.key: f for f in REFERENCE[table][1]}
            for key, name in columns.items():
                if key not in fields:
                    found.append(
                        f"columns.{table}.{key}: no such column (known: {', '.join(fields)})"
                    )
                elif not name.strip() and not fields[key].optional:
                    found.append(
                        f"columns.{table}.{key}: required, it cannot be absent "
                        f"(optional: {', '.join(OPTIONAL[table]) or 'none'})"
                    )
            names = [self.column_name(table, key) for key in fields]
            doubled = sorted({n for n in names if n and names.count(n) > 1})
            if doubled:
                found.append(f"columns.{table}: one name for two columns: {', '.join(doubled)}")
        return found

    def table_name(self, table: str) -> str:
        return self.tables.get(table) or REFERENCE[table][0]

    def column_name(self, table: str, key: str) -> str | None:
        """The vendor's name of a column, None when the mapping names it absent."""
        reference = next(f.name for f in REFERENCE[table][1] if f.key == key)
        name = self.columns.get(table, {}).get(key, reference).strip()
        return name or None

    def absent(self, table: str) -> set[str]:
        return {f.key for f in REFERENCE[table][1] if self.column_name(table, f.key) is None}


REFERENCE_SCHEMA = SchemaMapping()


def build(mapping: SchemaMapping) -> tuple[MetaData, dict[str, Table]]:
    """The tables of a mapping (it must have no `problems`)."""
    problems = mapping.problems()
    if problems:
        raise ValueError("; ".join(problems))
    metadata = MetaData(schema=mapping.schema)
    tables: dict[str, Table] = {}
    for table, (_, fields) in REFERENCE.items():
        columns: list[Any] = []
        for f in fields:
            name = mapping.column_name(table, f.key)
            if name is None:
                continue
            extra: list[Any] = []
            if f.references:
                target, target_key = f.references.split(".")
                extra.append(ForeignKey(tables[target].c[target_key]))
            columns.append(Column(name, f.type, *extra, key=f.key, **f.options))
        indexes = [
            Index(index if mapping == REFERENCE_SCHEMA else f"ix_{table}_{key}", key)
            for index, key in _INDEXES.get(table, [])
            if key in {c.key for c in columns}
        ]
        tables[table] = Table(mapping.table_name(table), metadata, *columns, *indexes)
    return metadata, tables


metadata: MetaData
courses: Table
participants: Table
communications: Table
enrollments: Table
mapping: SchemaMapping = REFERENCE_SCHEMA
_tables: dict[str, Table] = {}


def use(new: SchemaMapping) -> None:
    """Bind this process's admin tables to a mapping (bootstrap does, from the config)."""
    global metadata, courses, participants, communications, enrollments, mapping, _tables
    if _tables and new == mapping:
        return  # the same tables: statements compiled for them stay cached
    built_metadata, tables = build(new)
    metadata, mapping = built_metadata, new
    courses, participants = tables["courses"], tables["participants"]
    communications, enrollments = tables["communications"], tables["enrollments"]
    _tables = tables  # one assignment: a reader in another thread sees old or new, whole


use(REFERENCE_SCHEMA)


def has(table: str, key: str) -> bool:
    """Whether the admin DB has this column (an optional one may be absent)."""
    return key in _tables[table].c


def column_or_null(table: str, key: str) -> ColumnElement[Any]:
    """The column, or NULL labelled with its key where the admin DB lacks it: a query reads
    it either way, and `adapter.store.kept` fills in what the state DB holds."""
    if has(table, key):
        return _tables[table].c[key].label(key)
    return null().label(key)


def writable(table: str, values: Mapping[str, Any]) -> dict[str, Any]:
    """The values the admin DB has columns for (optional columns it lacks are left out)."""
    present = _tables[table].c
    return {key: value for key, value in values.items() if key in present}


class LiveColumns:
    """`admin.<table>.c` of the mapping in use, looked up at each access: module-level
    shorthands (`_enrollment = admin.columns_of("enrollments")`) follow `use`."""

    __slots__ = ("_table",)

    def __init__(self, table: str) -> None:
        self._table = table

    def __getattr__(self, key: str) -> Column[Any]:
        columns = _tables[self._table].c
        if key not in columns:
            raise AttributeError(f"{self._table} has no column {key!r} in this mapping")
        column: Column[Any] = columns[key]
        return column

    def __iter__(self) -> Iterator[Column[Any]]:
        return iter(_tables[self._table].c)

    def __contains__(self, key: str) -> bool:
        return key in _tables[self._table].c


def columns_of(table: str) -> LiveColumns:
    return LiveColumns(table)
