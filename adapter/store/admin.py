"""The reference admin DB: a KuferSQL-like schema, so the product runs without the vendor's DB.

KuferSQL's column names appear here and only here; each is renamed to English through its
`key`, and the rest of the code speaks English (`belegung.c.status`, never `STATUS_1`).
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    Connection,
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
    select,
)

from adapter.domain import CourseRef

metadata = MetaData()

courses = Table(
    "KURSE",
    metadata,
    Column("NR", String(40), key="number", primary_key=True),
    Column("TITEL", String(200), key="title", nullable=False, default=""),
    Column("BEGINN", Date, key="starts_on"),
    Column("ENDE", Date, key="ends_on"),
    Column("GEBUEHR", Numeric(10, 2), key="fee", nullable=False, default=0),
    Column("TEIL_MAX", Integer, key="max_participants"),
    Column("TEIL_MIN", Integer, key="min_participants"),
    # Capacity and waitlist settings (D1-D4); a subscriber's course follows its master's.
    Column("TEIL_WUNSCH", Integer, key="desired_participants"),
    Column("WL_AKTIV", Boolean, key="waitlist_enabled", nullable=False, default=True),
    Column("WL_MAX", Integer, key="waitlist_max"),
    Column("WL_MODUS", String(20), key="waitlist_mode", nullable=False, default="dominant"),
    Column("NACHRUECKEN", Boolean, key="auto_advance", nullable=False, default=False),
    Column("MAX_PRO_VHS", Integer, key="max_per_school"),
    Column("ANM_OFFEN", Boolean, key="registration_open", nullable=False, default=True),
    # A shared course names its master school and the master's course number; at the master
    # itself both point to the course. NULL: an ordinary local course, never synced.
    Column("MASTER_VHS", String(63), key="master_school"),
    Column("MASTER_KNR", String(40), key="master_number"),
    Column("BEARBDATUM", DateTime, key="modified_at"),
    # What a course offer shows and the listing's header (optional: NULL where unknown):
    # registration deadline, times of day, number of sessions and teaching units, place,
    # lecturer, and whether the course is cancelled (no more registrations; a master's
    # cancellation reaches every subscriber's course).
    Column("ANM_SCHLUSS", Date, key="registration_deadline"),
    Column("ZEIT_VON", Time, key="time_from"),
    Column("ZEIT_BIS", Time, key="time_to"),
    Column("TERMINE", Integer, key="sessions"),
    Column("UE", Numeric(6, 2), key="teaching_units"),
    Column("ORT", String(200), key="place"),
    Column("DOZENT", String(200), key="lecturer"),
    Column("ABGESAGT", Boolean, key="cancelled", default=False),
)

participants = Table(
    "TEILNEHM",
    metadata,
    Column("NR", Integer, key="number", primary_key=True, autoincrement=True),
    Column("NAME", String(100), key="last_name", nullable=False, default=""),
    Column("VORNAME", String(100), key="first_name", nullable=False, default=""),
    Column("GEBDAT", Date, key="birthday"),
    Column("TEL_ANZEIGE", String(50), key="main_phone"),
    Column("EMAIL_ANZEIGE", String(254), key="main_email"),
    Column("ANM_SPERRE", Boolean, key="blocked", nullable=False, default=False),
    Column("IBAN", String(34), key="iban"),
    Column("BEARBDATUM", DateTime, key="modified_at"),
    Index("ix_teilnehm_bearbdatum", "modified_at"),
)

communications = Table(
    "TEILNEHM_KOMM",
    metadata,
    Column("ID", Integer, key="id", primary_key=True, autoincrement=True),
    Column("TNR", Integer, ForeignKey("TEILNEHM.number"), key="participant_number", nullable=False),
    Column("ART", String(20), key="kind", nullable=False),
    Column("BEZEICHNUNG", String(50), key="label"),
    Column("WERT", String(254), key="value", nullable=False),
)

enrollments = Table(
    "BELEGUNG",
    metadata,
    Column("ID", Integer, key="id", primary_key=True, autoincrement=True),
    Column("KNR", String(40), ForeignKey("KURSE.number"), key="course_number", nullable=False),
    Column("TNR", Integer, ForeignKey("TEILNEHM.number"), key="participant_number", nullable=False),
    Column("STATUS_1", String(1), key="status", nullable=False, default="A"),
    Column("ANM_DATUM", Date, key="registered_on"),
    # Since when an entry waits (the order of advance, D3), and whether an admin put it there
    # rather than its registration (the manual mode, D2).
    Column("WL_SEIT", DateTime, key="waitlisted_since"),
    Column("WL_VERWALTER", Boolean, key="waitlisted_by_admin", nullable=False, default=False),
    # The company a booking is made for: the participant number of the company's row.
    Column("FIRMA", Integer, ForeignKey("TEILNEHM.number"), key="company_number"),
    Column("ZAHLART", String(10), key="payment_type"),
    Column("ENTGELT", Numeric(10, 2), key="fee", nullable=False, default=0),
    Column("BET_OFFEN", Numeric(10, 2), key="balance", nullable=False, default=0),
    Column("BEMERKUNG", Text, key="remark"),
    Column("BEARBDATUM", DateTime, key="modified_at"),
    Index("ix_belegung_bearbdatum", "modified_at"),
    Index("ix_belegung_knr", "course_number"),
)


def local_course_number(connection: Connection, course: CourseRef) -> str | None:
    """This school's number of a shared course, or None when the school does not have it."""
    number: str | None = connection.execute(
        select(courses.c.number).where(
            courses.c.master_school == course.master_school,
            courses.c.master_number == course.number,
        )
    ).scalar()
    return number
