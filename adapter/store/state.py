"""The adapter's own state DB (DESIGN decision 4): outbox, published shadow, applied versions.

SQLite by default, any SQLAlchemy URL otherwise. Nothing here lives in the admin DB.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    String,
    Table,
    UniqueConstraint,
)

metadata = MetaData()

# Events waiting to be relayed to the broker, in the order they were captured.
outbox = Table(
    "outbox",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("message_id", String(64), nullable=False),
    Column("routing_key", String(255), nullable=False),
    Column("body", LargeBinary, nullable=False),
    Column("created_at", DateTime, nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", DateTime),
    Column("last_error", String(500)),
)

# The last state this school published of each of its own enrollments: what capture
# compares against, and what finds hard deletes. A fingerprint, not a copy of personal data.
published = Table(
    "published",
    metadata,
    Column("course_master", String(63), primary_key=True),
    Column("course_number", String(40), primary_key=True),
    Column("participant_number", Integer, primary_key=True),
    Column("enrollment_id", Integer, nullable=False),
    Column("status", String(1), nullable=False),
    Column("fingerprint", String(64), nullable=False),
    Column("version", BigInteger, nullable=False),
)

# What this school applied of other schools' enrollments, and where it lives locally.
applied = Table(
    "applied",
    metadata,
    Column("origin_school", String(63), primary_key=True),
    Column("course_master", String(63), primary_key=True),
    Column("course_number", String(40), primary_key=True),
    Column("participant_number", Integer, primary_key=True),
    Column("version", BigInteger, nullable=False),
    Column("status", String(1), nullable=False),
    Column("enrollment_id", Integer, nullable=False),
    Index("ix_applied_enrollment", "enrollment_id", unique=True),
)

# One local participant row per (origin school, participant number) at a master (V10),
# and per origin school one row that stands for the school itself (participant_number 0):
# the company of a master's company bookings, the name on a subscriber's anonymised rows.
remote_participants = Table(
    "remote_participants",
    metadata,
    Column("origin_school", String(63), primary_key=True),
    Column("participant_number", Integer, primary_key=True),
    Column("local_number", Integer, nullable=False),
    UniqueConstraint("local_number", name="uq_remote_participants_local"),
)

# The last course settings a master published, and the settings versions a subscriber applied.
published_courses = Table(
    "published_courses",
    metadata,
    Column("course_master", String(63), primary_key=True),
    Column("course_number", String(40), primary_key=True),
    Column("fingerprint", String(64), nullable=False),
    Column("version", BigInteger, nullable=False),
)

applied_courses = Table(
    "applied_courses",
    metadata,
    Column("course_master", String(63), primary_key=True),
    Column("course_number", String(40), primary_key=True),
    Column("version", BigInteger, nullable=False),
)

# Freed places a master offered to the schools of waiting entries (automatic advance, D3),
# until the entry shows up as registered or the offer expires.
advance_offers = Table(
    "advance_offers",
    metadata,
    Column("course_master", String(63), primary_key=True),
    Column("course_number", String(40), primary_key=True),
    Column("origin_school", String(63), primary_key=True),
    Column("participant_number", Integer, primary_key=True),
    Column("offer_id", String(64), nullable=False),
    Column("offered_at", DateTime, nullable=False),
)

# Regular places a master allotted to a school's desk and has not yet seen arrive (or expire).
place_grants = Table(
    "place_grants",
    metadata,
    Column("course_master", String(63), primary_key=True),
    Column("course_number", String(40), primary_key=True),
    Column("school", String(63), primary_key=True),
    Column("participant_number", Integer, primary_key=True),
    Column("expires_at", DateTime, nullable=False),
)

# Shared courses this school has joined; a new one triggers a sync request (V1).
joined_courses = Table(
    "joined_courses",
    metadata,
    Column("course_master", String(63), primary_key=True),
    Column("course_number", String(40), primary_key=True),
    Column("joined_at", DateTime, nullable=False),
)

# The settlement of a shared course at its master (V12): the rate entered per subscriber school,
# and once the balances of the school's company bookings were set, when and for how many.
settlements = Table(
    "settlements",
    metadata,
    Column("course_master", String(63), primary_key=True),
    Column("course_number", String(40), primary_key=True),
    Column("school", String(63), primary_key=True),
    Column("rate", Numeric(10, 2), nullable=False),
    Column("set_at", DateTime),
    Column("set_count", Integer),
)

# Course offers (issue 9): the last offer this master published of each of its shared courses,
# and every offer this school has heard of (its own included), as the offer's JSON (no
# personal data), with its version.
published_offers = Table(
    "published_offers",
    metadata,
    Column("course_master", String(63), primary_key=True),
    Column("course_number", String(40), primary_key=True),
    Column("fingerprint", String(64), nullable=False),
    Column("version", BigInteger, nullable=False),
)

course_offers = Table(
    "course_offers",
    metadata,
    Column("course_master", String(63), primary_key=True),
    Column("course_number", String(40), primary_key=True),
    Column("version", BigInteger, nullable=False),
    Column("offer", LargeBinary, nullable=False),
    Column("received_at", DateTime, nullable=False),
)

# Schools that left a shared course (`vhs-sync unsubscribe`), as they said so; a school that
# joins the course again (its sync request) is taken off.
course_leavers = Table(
    "course_leavers",
    metadata,
    Column("course_master", String(63), primary_key=True),
    Column("course_number", String(40), primary_key=True),
    Column("school", String(63), primary_key=True),
    Column("left_at", DateTime, nullable=False),
)

# Where capture stands: the newest modification stamp it has seen.
cursor = Table(
    "capture_cursor",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("watermark", DateTime),
)

# A batch of apply that inserted rows, from just before its admin-DB commit (when its mappings
# are committed here) until that commit returned. One found after a start or a failed write is
# checked against the admin DB, and what the admin DB does not hold is forgotten
# (consumers/apply.py).
apply_batch = Table(
    "apply_batch",
    metadata,
    Column("id", Integer, primary_key=True),  # always 1: one batch at a time
    Column("batch_id", String(32), nullable=False),
    Column("written_at", DateTime, nullable=False),
    # JSON: the enrollment ids with the course and participant row each was written with,
    # and the participant numbers with a digest of the fields written (no personal data).
    Column("entries", LargeBinary, nullable=False),
)

# What the admin DB has no columns for (a real KuferSQL; `adapter.store.kept`): per local
# course number its settings (D1-D4, NULL: the default) and the master school of a shared
# course (set by `vhs-sync course settings`, or at a subscriber from its master's settings).
course_settings = Table(
    "course_settings",
    metadata,
    Column("course_number", String(40), primary_key=True),
    Column("master_school", String(63)),
    Column("desired_participants", Integer),
    Column("waitlist_enabled", Boolean),
    Column("waitlist_max", Integer),
    Column("waitlist_mode", String(20)),
    Column("auto_advance", Boolean),
    Column("max_per_school", Integer),
    Column("registration_open", Boolean),
    Column("modified_at", DateTime, nullable=False),
)

# Per enrollment row: since when it waits and whether an admin put it on the waitlist, where
# the admin DB lacks those columns. Read for waiting rows only: a row that left the waitlist
# may keep its old marks.
waiting_marks = Table(
    "waiting_marks",
    metadata,
    Column("enrollment_id", Integer, primary_key=True),
    Column("waitlisted_since", DateTime),
    Column("waitlisted_by_admin", Boolean, nullable=False, default=False),
)

# The daemon that holds this school: one at a time (a second one refuses to start while this
# row's heartbeat is fresh), and how it fares, for `vhs-sync status`. `instance_id` is None
# once the daemon stopped cleanly. Times are UTC.
daemon = Table(
    "daemon",
    metadata,
    Column("school", String(63), primary_key=True),
    Column("instance_id", String(32)),
    Column("host", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("started_at", DateTime, nullable=False),
    Column("heartbeat_at", DateTime, nullable=False),
    Column("last_poll_at", DateTime),  # the last successful poll
    Column("last_poll_error", String(500)),  # why the polls since then failed
)
