"""Archive and retention: when a closed case's room was locked, when its personal data
was deleted.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01 00:00:00+00:00

Written by hand to match storage/models.py; tests compare the two. Both columns are
empty for every case so far: no case was closed before this revision, and a case
cancelled earlier has its personal data deleted by the first retention run after
its retention time (counted from the cancellation in its audit trail).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _utc() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("cases") as batch:
        batch.add_column(sa.Column("archived_at", _utc(), nullable=True))
        batch.add_column(sa.Column("purged_at", _utc(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("cases") as batch:
        batch.drop_column("purged_at")
        batch.drop_column("archived_at")
