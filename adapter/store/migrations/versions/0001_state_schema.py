"""The state schema as released before there were revisions.

Revision ID: 0001
Revises:
Create Date: 2026-12-01

A state DB that `create_all` made then is adopted here: it holds these tables already (an
older release's perhaps not all of them), and only the missing ones are created, as
`create_all` did.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    existing = set(sa.inspect(op.get_bind()).get_table_names())

    def create(name: str, *elements: sa.schema.SchemaItem) -> bool:
        if name in existing:
            return False
        op.create_table(name, *elements)
        return True

    create(
        "outbox",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("message_id", sa.String(length=64), nullable=False),
        sa.Column("routing_key", sa.String(length=255), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(), nullable=True),
        sa.Column("last_error", sa.String(length=500), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    create(
        "published",
        sa.Column("course_master", sa.String(length=63), nullable=False),
        sa.Column("course_number", sa.String(length=40), nullable=False),
        sa.Column("participant_number", sa.Integer(), nullable=False),
        sa.Column("enrollment_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=1), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("course_master", "course_number", "participant_number"),
    )
    if create(
        "applied",
        sa.Column("origin_school", sa.String(length=63), nullable=False),
        sa.Column("course_master", sa.String(length=63), nullable=False),
        sa.Column("course_number", sa.String(length=40), nullable=False),
        sa.Column("participant_number", sa.Integer(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=1), nullable=False),
        sa.Column("enrollment_id", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint(
            "origin_school", "course_master", "course_number", "participant_number"
        ),
    ):
        op.create_index("ix_applied_enrollment", "applied", ["enrollment_id"], unique=True)
    create(
        "remote_participants",
        sa.Column("origin_school", sa.String(length=63), nullable=False),
        sa.Column("participant_number", sa.Integer(), nullable=False),
        sa.Column("local_number", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("origin_school", "participant_number"),
        sa.UniqueConstraint("local_number", name="uq_remote_participants_local"),
    )
    create(
        "published_courses",
        sa.Column("course_master", sa.String(length=63), nullable=False),
        sa.Column("course_number", sa.String(length=40), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("course_master", "course_number"),
    )
    create(
        "applied_courses",
        sa.Column("course_master", sa.String(length=63), nullable=False),
        sa.Column("course_number", sa.String(length=40), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("course_master", "course_number"),
    )
    create(
        "advance_offers",
        sa.Column("course_master", sa.String(length=63), nullable=False),
        sa.Column("course_number", sa.String(length=40), nullable=False),
        sa.Column("origin_school", sa.String(length=63), nullable=False),
        sa.Column("participant_number", sa.Integer(), nullable=False),
        sa.Column("offer_id", sa.String(length=64), nullable=False),
        sa.Column("offered_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint(
            "course_master", "course_number", "origin_school", "participant_number"
        ),
    )
    create(
        "place_grants",
        sa.Column("course_master", sa.String(length=63), nullable=False),
        sa.Column("course_number", sa.String(length=40), nullable=False),
        sa.Column("school", sa.String(length=63), nullable=False),
        sa.Column("participant_number", sa.Integer(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("course_master", "course_number", "school", "participant_number"),
    )
    create(
        "joined_courses",
        sa.Column("course_master", sa.String(length=63), nullable=False),
        sa.Column("course_number", sa.String(length=40), nullable=False),
        sa.Column("joined_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("course_master", "course_number"),
    )
    create(
        "capture_cursor",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("watermark", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    create(
        "apply_batch",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("batch_id", sa.String(length=32), nullable=False),
        sa.Column("written_at", sa.DateTime(), nullable=False),
        sa.Column("entries", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )


def downgrade() -> None:
    op.drop_index("ix_applied_enrollment", table_name="applied")
    for name in (
        "apply_batch",
        "capture_cursor",
        "joined_courses",
        "place_grants",
        "advance_offers",
        "applied_courses",
        "published_courses",
        "remote_participants",
        "applied",
        "published",
        "outbox",
    ):
        op.drop_table(name)
