"""Execution and handover: the execution record, the handover and its documents.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 00:00:00+00:00

Written by hand to match storage/models.py; tests compare the two.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MATRIX_ID = 255


def _utc() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "executions",
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("form_id", sa.String(64), nullable=False),
        sa.Column("form_version", sa.Integer(), nullable=False),
        sa.Column("state", sa.JSON(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("started_by", sa.String(MATRIX_ID), nullable=False),
        sa.Column("started_at", _utc(), nullable=False),
        sa.Column("updated_at", _utc(), nullable=False),
        sa.Column("executed_at", _utc(), nullable=True),
        sa.Column("recorded_by", sa.String(MATRIX_ID), nullable=True),
        sa.Column("recorded_at", _utc(), nullable=True),
        sa.Column("record", sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(
            ["case_id"], ["cases.id"], name=op.f("fk_executions_case_id_cases"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("case_id", name=op.f("pk_executions")),
    )
    op.create_table(
        "handovers",
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("municipality_id", sa.String(64), nullable=False),
        sa.Column("room_id", sa.String(MATRIX_ID), nullable=False),
        sa.Column("requested_by", sa.String(MATRIX_ID), nullable=False),
        sa.Column("requested_at", _utc(), nullable=False),
        sa.Column("message_event_id", sa.String(MATRIX_ID), nullable=True),
        sa.Column("sent_at", _utc(), nullable=True),
        sa.Column("announced_at", _utc(), nullable=True),
        sa.Column("received_at", _utc(), nullable=True),
        sa.Column("received_by", sa.String(MATRIX_ID), nullable=True),
        sa.Column("receipt_posted_at", _utc(), nullable=True),
        sa.Column("reminders", sa.Integer(), server_default="0", nullable=False),
        sa.Column("next_reminder_at", _utc(), nullable=True),
        sa.Column("last_reminder_event_id", sa.String(MATRIX_ID), nullable=True),
        sa.ForeignKeyConstraint(
            ["case_id"], ["cases.id"], name=op.f("fk_handovers_case_id_cases"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("case_id", name=op.f("pk_handovers")),
    )
    op.create_index("ix_handovers_message_event_id", "handovers", ["message_event_id"])
    op.create_index("ix_handovers_received_at", "handovers", ["received_at"])
    op.create_table(
        "handover_documents",
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("part", sa.String(16), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("filename", sa.String(200), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("event_id", sa.String(MATRIX_ID), nullable=True),
        sa.Column("sent_at", _utc(), nullable=True),
        sa.ForeignKeyConstraint(
            ["case_id"],
            ["handovers.case_id"],
            name=op.f("fk_handover_documents_case_id_handovers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("case_id", "part", name=op.f("pk_handover_documents")),
    )


def downgrade() -> None:
    op.drop_table("handover_documents")
    op.drop_index("ix_handovers_received_at", table_name="handovers")
    op.drop_index("ix_handovers_message_event_id", table_name="handovers")
    op.drop_table("handovers")
    op.drop_table("executions")
