"""Deadline clocks and the court's decision on a custody.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 00:00:00+00:00

Written by hand to match storage/models.py; tests compare the two.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MATRIX_ID = 255


def _utc() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "deadlines",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("trigger", sa.String(16), nullable=False),
        sa.Column("rule", sa.String(32), nullable=False),
        sa.Column("actor", sa.String(16), nullable=False),
        sa.Column("act", sa.String(16), nullable=False),
        sa.Column("ends_if_revoked", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("started_at", _utc(), nullable=True),
        sa.Column("due_on", sa.Date(), nullable=True),
        sa.Column("outer_limit", sa.Date(), nullable=True),
        sa.Column("done_at", _utc(), nullable=True),
        sa.Column("done_by", sa.String(MATRIX_ID), nullable=True),
        sa.Column("done_via", sa.String(32), nullable=True),
        sa.Column("announced_at", _utc(), nullable=True),
        sa.Column("last_reminder_at", _utc(), nullable=True),
        sa.Column("missed_alerted_on", sa.Date(), nullable=True),
        sa.Column("no_meeting_told_at", _utc(), nullable=True),
        sa.Column("last_event_id", sa.String(MATRIX_ID), nullable=True),
        sa.Column("created_at", _utc(), nullable=False),
        sa.ForeignKeyConstraint(
            ["case_id"],
            ["cases.id"],
            name=op.f("fk_deadlines_case_id_cases"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deadlines")),
        sa.UniqueConstraint("case_id", "name", name=op.f("uq_deadlines_case_id")),
    )
    op.create_index("ix_deadlines_status", "deadlines", ["status"])
    op.create_table(
        "court_decisions",
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("decided_on", sa.Date(), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("recorded_by", sa.String(MATRIX_ID), nullable=False),
        sa.Column("recorded_at", _utc(), nullable=False),
        sa.ForeignKeyConstraint(
            ["case_id"],
            ["cases.id"],
            name=op.f("fk_court_decisions_case_id_cases"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("case_id", name=op.f("pk_court_decisions")),
    )


def downgrade() -> None:
    op.drop_table("court_decisions")
    op.drop_index("ix_deadlines_status", table_name="deadlines")
    op.drop_table("deadlines")
