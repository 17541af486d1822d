"""The inbox: events are stored pending before the sync token moves on.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 00:00:00+00:00

Written by hand to match storage/models.py; tests compare the two. Rows written
before this revision were handled already: they become ``done``.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("processed_events") as batch:
        batch.add_column(sa.Column("state", sa.String(16), server_default="done", nullable=False))
        batch.add_column(sa.Column("position", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("payload", sa.JSON(), nullable=True))
        batch.create_index("ix_processed_events_state_room", ["state", "room_id"])


def downgrade() -> None:
    with op.batch_alter_table("processed_events") as batch:
        batch.drop_index("ix_processed_events_state_room")
        batch.drop_column("payload")
        batch.drop_column("position")
        batch.drop_column("state")
