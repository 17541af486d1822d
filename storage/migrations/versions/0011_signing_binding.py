"""Identification bound to its browser; OpenID Connect sign-ins kept in the database.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-15 00:00:00+00:00

Written by hand to match storage/models.py; tests compare the two.
``signing_requests.auth_binding`` holds the SHA-256 of the pre-auth cookie of the
browser that started identification; ``oidc_states`` replaces the web app's in-memory
map from an OIDC ``state`` to its signing link, so a restart mid-login no longer
loses it. An identification still unfinished at this revision was started without a
cookie and is bound to no browser: it is reset (the page asks to start again).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | Sequence[str] | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _utc() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("signing_requests") as batch:
        batch.add_column(sa.Column("auth_binding", sa.String(64), nullable=True))
    op.execute(
        sa.text(
            "UPDATE signing_requests SET auth_method = NULL"
            " WHERE status = 'pending' AND session_hash IS NULL"
        )
    )
    op.create_table(
        "oidc_states",
        sa.Column("state_hash", sa.String(64), nullable=False),
        sa.Column("request_id", sa.Integer(), nullable=False),
        sa.Column("binding_hash", sa.String(64), nullable=False),
        sa.Column("link_sealed", sa.Text(), nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.Column("expires_at", _utc(), nullable=False),
        sa.ForeignKeyConstraint(
            ["request_id"],
            ["signing_requests.id"],
            name=op.f("fk_oidc_states_request_id_signing_requests"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("state_hash", name=op.f("pk_oidc_states")),
    )
    op.create_index("ix_oidc_states_request_id", "oidc_states", ["request_id"])


def downgrade() -> None:
    op.drop_index("ix_oidc_states_request_id", table_name="oidc_states")
    op.drop_table("oidc_states")
    with op.batch_alter_table("signing_requests") as batch:
        batch.drop_column("auth_binding")
