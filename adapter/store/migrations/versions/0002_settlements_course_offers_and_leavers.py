"""Settlements (V12), course offers, the schools that left a course, the daemon's lease.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01

These tables came to state.py while it was still made by `create_all`: a state DB adopted at
0001 may hold them already, and keeps them.
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


def downgrade() -> None:
    op.drop_table("settlements")
    op.drop_table("published_offers")
    op.drop_table("course_offers")
    op.drop_table("course_leavers")
    op.drop_table("daemon")
