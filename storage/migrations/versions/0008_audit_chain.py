"""The audit trail becomes a hash chain: seq, prev_hash and hash on every row.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 00:00:00+00:00

Written by hand to match storage/models.py; tests compare the two. The rows written
before this revision are chained here, in id order (the order they were written), and
the chain's head is stored in ``bot_state`` under ``audit.head``.

The hash below is a frozen copy of ``storage.audit.entry_hash`` (format 1): a
migration must give the same result whatever later code looks like, and a change of
the format would break every chain already written. A test chains rows here and
verifies them with ``storage.audit``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

GENESIS_HASH = "0" * 64
HEAD_KEY = "audit.head"

_audit = sa.table(
    "audit_entries",
    sa.column("id", sa.Integer()),
    sa.column("case_id", sa.Integer()),
    sa.column("at", sa.DateTime(timezone=True)),
    sa.column("actor", sa.String()),
    sa.column("action", sa.String()),
    sa.column("detail", sa.JSON()),
    sa.column("seq", sa.BigInteger()),
    sa.column("prev_hash", sa.String()),
    sa.column("hash", sa.String()),
)
_state = sa.table("bot_state", sa.column("key", sa.String()), sa.column("value", sa.Text()))


def _hash(
    *,
    seq: int,
    case_id: int | None,
    at: datetime,
    actor: str,
    action: str,
    detail: Any,
    prev_hash: str,
) -> str:
    moment = at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
    body = {
        "seq": seq,
        "case_id": case_id,
        "at": moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "actor": actor,
        "action": action,
        "detail": detail,
        "prev_hash": prev_hash,
    }
    encoded = json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(encoded.encode("ascii")).hexdigest()


def _chain_existing() -> None:
    bind = op.get_bind()
    rows = bind.execute(
        sa.select(
            _audit.c.id,
            _audit.c.case_id,
            _audit.c.at,
            _audit.c.actor,
            _audit.c.action,
            _audit.c.detail,
        ).order_by(_audit.c.id)
    ).all()
    seq, prev = 0, GENESIS_HASH
    for row in rows:
        seq += 1
        digest = _hash(
            seq=seq,
            case_id=row.case_id,
            at=row.at,
            actor=row.actor,
            action=row.action,
            detail=row.detail,
            prev_hash=prev,
        )
        bind.execute(
            sa.update(_audit)
            .where(_audit.c.id == row.id)
            .values(seq=seq, prev_hash=prev, hash=digest)
        )
        prev = digest
    bind.execute(sa.delete(_state).where(_state.c.key == HEAD_KEY))
    bind.execute(
        sa.insert(_state).values(key=HEAD_KEY, value=json.dumps({"seq": seq, "hash": prev}))
    )


def upgrade() -> None:
    with op.batch_alter_table("audit_entries") as batch:
        batch.add_column(sa.Column("seq", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("prev_hash", sa.String(64), nullable=True))
        batch.add_column(sa.Column("hash", sa.String(64), nullable=True))
        batch.create_unique_constraint("uq_audit_entries_seq", ["seq"])
        batch.create_index("ix_audit_entries_actor", ["actor"])
    _chain_existing()
    with op.batch_alter_table("audit_entries") as batch:
        batch.alter_column("seq", existing_type=sa.BigInteger(), nullable=False)
        batch.alter_column("prev_hash", existing_type=sa.String(64), nullable=False)
        batch.alter_column("hash", existing_type=sa.String(64), nullable=False)


def downgrade() -> None:
    op.get_bind().execute(sa.delete(_state).where(_state.c.key == HEAD_KEY))
    with op.batch_alter_table("audit_entries") as batch:
        batch.drop_index("ix_audit_entries_actor")
        batch.drop_constraint("uq_audit_entries_seq", type_="unique")
        batch.drop_column("hash")
        batch.drop_column("prev_hash")
        batch.drop_column("seq")
