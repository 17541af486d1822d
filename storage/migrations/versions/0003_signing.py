"""Decisions: signing requests, roster overrides, direct rooms.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24 00:00:00+00:00

Written by hand to match storage/models.py; tests compare the two.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MATRIX_ID = 255


def _utc() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "signing_requests",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("signer_user_id", sa.String(MATRIX_ID), nullable=False),
        sa.Column("signer_name", sa.String(200), nullable=False),
        sa.Column("signer_role", sa.String(64), nullable=False),
        sa.Column("municipality_id", sa.String(64), nullable=False),
        sa.Column("document_sha256", sa.String(64), nullable=False),
        sa.Column("document", sa.LargeBinary(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.Column("expires_at", _utc(), nullable=False),
        sa.Column("auth_method", sa.String(32), nullable=True),
        sa.Column("auth_state", sa.JSON(), nullable=True),
        sa.Column("auth_attempts", sa.Integer(), nullable=False),
        sa.Column("session_hash", sa.String(64), nullable=True),
        sa.Column("session_expires_at", _utc(), nullable=True),
        sa.Column("identity", sa.JSON(), nullable=True),
        sa.Column("decided_at", _utc(), nullable=True),
        sa.Column("decision_reason", sa.Text(), nullable=True),
        sa.Column("signed_document", sa.LargeBinary(), nullable=True),
        sa.Column("signed_sha256", sa.String(64), nullable=True),
        sa.Column("file_posted_at", _utc(), nullable=True),
        sa.Column("posted_at", _utc(), nullable=True),
        sa.ForeignKeyConstraint(
            ["case_id"],
            ["cases.id"],
            name=op.f("fk_signing_requests_case_id_cases"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_signing_requests")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_signing_requests_token_hash")),
    )
    op.create_index("ix_signing_requests_case_id", "signing_requests", ["case_id"])
    op.create_table(
        "roster_overrides",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("municipality_id", sa.String(64), nullable=False),
        sa.Column("user_id", sa.String(MATRIX_ID), nullable=False),
        sa.Column("starts_at", _utc(), nullable=False),
        sa.Column("ends_at", _utc(), nullable=False),
        sa.Column("created_by", sa.String(MATRIX_ID), nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_roster_overrides")),
    )
    op.create_index("ix_roster_overrides_municipality_id", "roster_overrides", ["municipality_id"])
    op.create_table(
        "direct_rooms",
        sa.Column("user_id", sa.String(MATRIX_ID), nullable=False),
        sa.Column("room_id", sa.String(MATRIX_ID), nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_direct_rooms")),
    )


def downgrade() -> None:
    op.drop_table("direct_rooms")
    op.drop_index("ix_roster_overrides_municipality_id", table_name="roster_overrides")
    op.drop_table("roster_overrides")
    op.drop_index("ix_signing_requests_case_id", table_name="signing_requests")
    op.drop_table("signing_requests")
