"""The state tables that came to state.py while the state DB was still made by `create_all`.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01

Settlements (V12), course offers, the schools that left a course, the daemon's lease, course
settings and waiting marks. A state DB adopted at 0001 may hold some of them already (made by
`create_all` of a state.py newer than 0001), and keeps them.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    existing = set(sa.inspect(op.get_bind()).get_table_names())
    if "course_leavers" not in existing:
        op.create_table(
            "course_leavers",
            sa.Column("course_master", sa.String(length=63), nullable=False),
            sa.Column("course_number", sa.String(length=40), nullable=False),
            sa.Column("school", sa.String(length=63), nullable=False),
            sa.Column("left_at", sa.DateTime(), nullable=False),
            sa.PrimaryKeyConstraint("course_master", "course_number", "school"),
        )
    if "course_offers" not in existing:
        op.create_table(
            "course_offers",
            sa.Column("course_master", sa.String(length=63), nullable=False),
            sa.Column("course_number", sa.String(length=40), nullable=False),
            sa.Column("version", sa.BigInteger(), nullable=False),
            sa.Column("offer", sa.LargeBinary(), nullable=False),
            sa.Column("received_at", sa.DateTime(), nullable=False),
            sa.PrimaryKeyConstraint("course_master", "course_number"),
        )
    if "course_settings" not in existing:
        op.create_table(
            "course_settings",
            sa.Column("course_number", sa.String(length=40), nullable=False),
            sa.Column("master_school", sa.String(length=63), nullable=True),
            sa.Column("desired_participants", sa.Integer(), nullable=True),
            sa.Column("waitlist_enabled", sa.Boolean(), nullable=True),
            sa.Column("waitlist_max", sa.Integer(), nullable=True),
            sa.Column("waitlist_mode", sa.String(length=20), nullable=True),
            sa.Column("auto_advance", sa.Boolean(), nullable=True),
            sa.Column("max_per_school", sa.Integer(), nullable=True),
            sa.Column("registration_open", sa.Boolean(), nullable=True),
            sa.Column("modified_at", sa.DateTime(), nullable=False),
            sa.PrimaryKeyConstraint("course_number"),
        )
    if "daemon" not in existing:
        op.create_table(
            "daemon",
            sa.Column("school", sa.String(length=63), nullable=False),
            sa.Column("instance_id", sa.String(length=32), nullable=True),
            sa.Column("host", sa.String(length=255), nullable=False),
            sa.Column("pid", sa.Integer(), nullable=False),
            sa.Column("started_at", sa.DateTime(), nullable=False),
            sa.Column("heartbeat_at", sa.DateTime(), nullable=False),
            sa.Column("last_poll_at", sa.DateTime(), nullable=True),
            sa.Column("last_poll_error", sa.String(length=500), nullable=True),
            sa.PrimaryKeyConstraint("school"),
        )
    if "published_offers" not in existing:
        op.create_table(
            "published_offers",
            sa.Column("course_master", sa.String(length=63), nullable=False),
            sa.Column("course_number", sa.String(length=40), nullable=False),
            sa.Column("fingerprint", sa.String(length=64), nullable=False),
            sa.Column("version", sa.BigInteger(), nullable=False),
            sa.PrimaryKeyConstraint("course_master", "course_number"),
        )
    if "settlements" not in existing:
        op.create_table(
            "settlements",
            sa.Column("course_master", sa.String(length=63), nullable=False),
            sa.Column("course_number", sa.String(length=40), nullable=False),
            sa.Column("school", sa.String(length=63), nullable=False),
            sa.Column("rate", sa.Numeric(precision=10, scale=2), nullable=False),
            sa.Column("set_at", sa.DateTime(), nullable=True),
            sa.Column("set_count", sa.Integer(), nullable=True),
            sa.PrimaryKeyConstraint("course_master", "course_number", "school"),
        )
    if "waiting_marks" not in existing:
        op.create_table(
            "waiting_marks",
            sa.Column("enrollment_id", sa.Integer(), nullable=False),
            sa.Column("waitlisted_since", sa.DateTime(), nullable=True),
            sa.Column("waitlisted_by_admin", sa.Boolean(), nullable=False),
            sa.PrimaryKeyConstraint("enrollment_id"),
        )


def downgrade() -> None:
    op.drop_table("waiting_marks")
    op.drop_table("settlements")
    op.drop_table("published_offers")
    op.drop_table("daemon")
    op.drop_table("course_settings")
    op.drop_table("course_offers")
    op.drop_table("course_leavers")
