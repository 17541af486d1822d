"""Initial schema: bot state, event dedupe, cases, participants, audit trail, trusted keys.

Revision ID: 0001
Revises:
Create Date: 2026-01-01 00:00:00+00:00

Written by hand to match storage/models.py; tests compare the two.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MATRIX_ID = 255


def _utc() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "bot_state",
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_bot_state")),
    )
    op.create_table(
        "processed_events",
        sa.Column("event_id", sa.String(MATRIX_ID), nullable=False),
        sa.Column("room_id", sa.String(MATRIX_ID), nullable=False),
        sa.Column("processed_at", _utc(), nullable=False),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_processed_events")),
    )
    op.create_index(op.f("ix_processed_events_processed_at"), "processed_events", ["processed_at"])
    op.create_table(
        "case_sequences",
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("year", sa.Integer(), nullable=False),
        sa.Column("last", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("prefix", "year", name=op.f("pk_case_sequences")),
    )
    op.create_table(
        "cases",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("number", sa.String(32), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("room_id", sa.String(MATRIX_ID), nullable=True),
        sa.Column("form_id", sa.String(64), nullable=True),
        sa.Column("municipality_id", sa.String(64), nullable=True),
        sa.Column("created_by", sa.String(MATRIX_ID), nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.Column("updated_at", _utc(), nullable=False),
        sa.Column("cancel_requested_by", sa.String(MATRIX_ID), nullable=True),
        sa.Column("cancel_requested_at", _utc(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cases")),
        sa.UniqueConstraint("number", name=op.f("uq_cases_number")),
        sa.UniqueConstraint("room_id", name=op.f("uq_cases_room_id")),
    )
    op.create_table(
        "case_participants",
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.String(MATRIX_ID), nullable=False),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("added_at", _utc(), nullable=False),
        sa.ForeignKeyConstraint(
            ["case_id"],
            ["cases.id"],
            name=op.f("fk_case_participants_case_id_cases"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("case_id", "user_id", name=op.f("pk_case_participants")),
    )
    op.create_table(
        "audit_entries",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=True),
        sa.Column("at", _utc(), nullable=False),
        sa.Column("actor", sa.String(MATRIX_ID), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(
            ["case_id"], ["cases.id"], name=op.f("fk_audit_entries_case_id_cases")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_entries")),
    )
    op.create_index(op.f("ix_audit_entries_case_id"), "audit_entries", ["case_id"])
    op.create_table(
        "trusted_master_keys",
        sa.Column("user_id", sa.String(MATRIX_ID), nullable=False),
        sa.Column("master_key", sa.String(128), nullable=False),
        sa.Column("first_seen", _utc(), nullable=False),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_trusted_master_keys")),
    )


def downgrade() -> None:
    op.drop_table("trusted_master_keys")
    op.drop_index(op.f("ix_audit_entries_case_id"), table_name="audit_entries")
    op.drop_table("audit_entries")
    op.drop_table("case_participants")
    op.drop_table("cases")
    op.drop_table("case_sequences")
    op.drop_index(op.f("ix_processed_events_processed_at"), table_name="processed_events")
    op.drop_table("processed_events")
    op.drop_table("bot_state")
