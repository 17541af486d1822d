"""Escalation: due steps, delivery and acknowledgement of alerts, the scheduler lock.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30 00:00:00+00:00

Written by hand to match storage/models.py; tests compare the two.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MATRIX_ID = 255


def _utc() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("signing_requests") as batch:
        batch.add_column(sa.Column("token_sealed", sa.Text(), nullable=True))
        batch.add_column(sa.Column("delivered_at", _utc(), nullable=True))
        batch.add_column(sa.Column("acknowledged_at", _utc(), nullable=True))
        batch.add_column(sa.Column("acknowledged_via", sa.String(16), nullable=True))
    op.create_table(
        "escalation_steps",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("request_id", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.String(MATRIX_ID), nullable=True),
        sa.Column("due_at", _utc(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.Column("fired_at", _utc(), nullable=True),
        sa.ForeignKeyConstraint(
            ["case_id"],
            ["cases.id"],
            name=op.f("fk_escalation_steps_case_id_cases"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["request_id"],
            ["signing_requests.id"],
            name=op.f("fk_escalation_steps_request_id_signing_requests"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_escalation_steps")),
    )
    op.create_index("ix_escalation_steps_case_id", "escalation_steps", ["case_id"])
    op.create_index("ix_escalation_steps_status_due_at", "escalation_steps", ["status", "due_at"])
    op.create_table(
        "alert_events",
        sa.Column("event_id", sa.String(MATRIX_ID), nullable=False),
        sa.Column("request_id", sa.Integer(), nullable=False),
        sa.Column("sent_at", _utc(), nullable=False),
        sa.ForeignKeyConstraint(
            ["request_id"],
            ["signing_requests.id"],
            name=op.f("fk_alert_events_request_id_signing_requests"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_alert_events")),
    )
    op.create_index("ix_alert_events_request_id", "alert_events", ["request_id"])
    op.create_table(
        "instance_locks",
        sa.Column("name", sa.String(32), nullable=False),
        sa.Column("holder", sa.String(64), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("acquired_at", _utc(), nullable=False),
        sa.Column("heartbeat_at", _utc(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_instance_locks")),
    )


def downgrade() -> None:
    op.drop_table("instance_locks")
    op.drop_index("ix_alert_events_request_id", table_name="alert_events")
    op.drop_table("alert_events")
    op.drop_index("ix_escalation_steps_status_due_at", table_name="escalation_steps")
    op.drop_index("ix_escalation_steps_case_id", table_name="escalation_steps")
    op.drop_table("escalation_steps")
    with op.batch_alter_table("signing_requests") as batch:
        for column in (
            "acknowledged_via",
            "acknowledged_at",
            "delivered_at",
            "token_sealed",
        ):
            batch.drop_column(column)
