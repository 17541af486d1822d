"""Signer kinds: whom a signing request asks, and reports sealed as the worker's record.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01 00:00:00+00:00

Written by hand to match storage/models.py; tests compare the two. Requests made
before this revision asked a committee member: they become ``committee_member``.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MATRIX_ID = 255


def _utc() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("signing_requests") as batch:
        batch.add_column(
            sa.Column(
                "signer_kind",
                sa.String(32),
                server_default="committee_member",
                nullable=False,
            )
        )
    op.create_table(
        "case_records",
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("form_id", sa.String(64), nullable=False),
        sa.Column("recorded_by", sa.String(MATRIX_ID), nullable=False),
        sa.Column("recorded_at", _utc(), nullable=False),
        sa.Column("document", sa.LargeBinary(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("file_posted_at", _utc(), nullable=True),
        sa.Column("posted_at", _utc(), nullable=True),
        sa.ForeignKeyConstraint(
            ["case_id"],
            ["cases.id"],
            name=op.f("fk_case_records_case_id_cases"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("case_id", name=op.f("pk_case_records")),
    )


def downgrade() -> None:
    op.drop_table("case_records")
    with op.batch_alter_table("signing_requests") as batch:
        batch.drop_column("signer_kind")
