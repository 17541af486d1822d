"""Archive and retention in the database: which cases close, which are archived, and
deleting an ended case's personal data (issue 9 §5).

Same rules as :mod:`storage.repo`: the caller's session first, keyword-only arguments,
flush but never commit. Every change is a compare-and-set, so a sweep that runs twice,
or two at once, changes each case once.

What retention deletes is the *content* the bot holds about the person a case is about,
and the evidence of who signed: the report's answers, every document (the decisions as
reviewed and as sealed, the sealed record, the handover package), the execution record,
the signing evidence (the identification's result and state, a decline's reason, the
sealed link) and any inbox payload from the case's room. What stays is what the audit
trail and the case's history need and that says nothing about the person: the case's
number, status and times, who took part (staff), the documents' SHA-256 hashes and file
names, deadline dates, and the audit trail itself, which is never touched (its rows
hold no personal data and their hashes cover no deleted field, so the chain stays
valid).

A database does not forget by overwriting a value: SQLite keeps old row versions in
free space and in its write-ahead log, PostgreSQL keeps dead row versions until
vacuum. :func:`scrub` rebuilds a SQLite file after a purge; on PostgreSQL, autovacuum
reclaims the space and backups and WAL archives keep what they hold until they expire
(see the README).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from storage import audit
from storage.models import (
    AuditEntry,
    Case,
    CaseRecord,
    Execution,
    Handover,
    HandoverDocument,
    OidcState,
    ProcessedEvent,
    Report,
    SigningRequest,
)
from storage.repo import _rowcount

__all__ = [
    "ENDED",
    "closable",
    "due_for_purge",
    "ended_at",
    "mark_archived",
    "next_purge",
    "purge_case",
    "scrub",
    "unarchived",
]

#: The statuses a case ends in; both are final, and both are subject to retention.
ENDED = ("closed", "cancelled")
_ENDING_ACTIONS = tuple(audit.STATUS_PREFIX + status for status in ENDED)


def _ended_at() -> Any:
    """When the case ended: the moment of its move to closed or cancelled, as its own
    audit trail records it (the state machine writes one row per move; both statuses
    are final, so there is one)."""
    return (
        select(func.max(AuditEntry.at))
        .where(AuditEntry.case_id == Case.id, AuditEntry.action.in_(_ENDING_ACTIONS))
        .correlate(Case)
        .scalar_subquery()
    )


async def ended_at(session: AsyncSession, *, case_id: int) -> datetime | None:
    """When the case was closed or cancelled (None while it is open)."""
    return await session.scalar(
        select(func.max(AuditEntry.at)).where(
            AuditEntry.case_id == case_id, AuditEntry.action.in_(_ENDING_ACTIONS)
        )
    )


# --- closing and archiving -------------------------------------------------------------


async def closable(session: AsyncSession) -> list[int]:
    """Handed-over cases whose handover is acknowledged and the case room told so:
    they close once no deadline is open (the caller checks that, in its transaction)."""
    rows = await session.scalars(
        select(Case.id)
        .join(Handover, Handover.case_id == Case.id)
        .where(
            Case.status == "handed_over",
            Handover.received_at.is_not(None),
            Handover.receipt_posted_at.is_not(None),
        )
        .order_by(Case.id)
    )
    return list(rows)


async def unarchived(session: AsyncSession) -> list[Case]:
    """Closed cases whose room is still to be told and locked."""
    rows = await session.scalars(
        select(Case).where(Case.status == "closed", Case.archived_at.is_(None)).order_by(Case.id)
    )
    return list(rows)


async def mark_archived(session: AsyncSession, *, case_id: int, now: datetime) -> bool:
    """Record that the closed case's room was told and locked; False if it was already."""
    result = await session.execute(
        update(Case)
        .where(Case.id == case_id, Case.status == "closed", Case.archived_at.is_(None))
        .values(archived_at=now)
        .execution_options(synchronize_session=False)
    )
    return _rowcount(result) == 1


# --- retention --------------------------------------------------------------------------


async def due_for_purge(session: AsyncSession, *, ended_before: datetime) -> list[int]:
    """Ended cases, not purged yet, that ended at or before ``ended_before``, oldest first."""
    ended = _ended_at()
    rows = await session.execute(
        select(Case.id, ended)
        .where(Case.status.in_(ENDED), Case.purged_at.is_(None))
        .order_by(Case.id)
    )
    due = [(at, case_id) for case_id, at in rows.all() if at is not None and at <= ended_before]
    return [case_id for _, case_id in sorted(due)]


async def next_purge(session: AsyncSession) -> datetime | None:
    """When the earliest ended, unpurged case ended (its purge is due that long after)."""
    ended = _ended_at()
    rows = await session.scalars(
        select(ended).where(Case.status.in_(ENDED), Case.purged_at.is_(None))
    )
    moments = [at for at in rows if at is not None]
    return min(moments, default=None)


async def purge_case(
    session: AsyncSession, *, case_id: int, now: datetime
) -> dict[str, int] | None:
    """Delete the personal data held for the ended case ``case_id`` and mark it purged.

    Returns how many rows of each kind had content deleted (for the audit row), or None
    when there is nothing to do: the case is not ended, or was purged already (by an
    earlier run, or a concurrent one: the mark is a compare-and-set, taken first).
    Everything happens in the caller's transaction: a crash half-way leaves the case
    untouched and unmarked, and the next run does it whole.
    """
    marked = await session.execute(
        update(Case)
        .where(Case.id == case_id, Case.status.in_(ENDED), Case.purged_at.is_(None))
        .values(purged_at=now)
        .execution_options(synchronize_session=False)
    )
    if _rowcount(marked) != 1:
        return None
    room_id = await session.scalar(select(Case.room_id).where(Case.id == case_id))
    counts = {
        # The guided report: every answer, and the frozen report made from them.
        "report": await _wipe(session, Report, Report.case_id == case_id, state={}, submitted=None),
        # Each decision as reviewed and as sealed, and the evidence of the signature:
        # the identification's result (the signer's name and personal identity number)
        # and its provider state, a decline's grounds, and the link sealed for repeats.
        "decisions": await _wipe(
            session,
            SigningRequest,
            SigningRequest.case_id == case_id,
            document=b"",
            signed_document=None,
            identity=None,
            auth_state=None,
            auth_binding=None,
            decision_reason=None,
            token_sealed=None,
        ),
        # OpenID Connect sign-ins still waiting (they expire in minutes; none should be
        # left by now): a sealed link and hashes, deleted with the rest.
        "oidc": _rowcount(
            await session.execute(
                delete(OidcState)
                .where(
                    OidcState.request_id.in_(
                        select(SigningRequest.id).where(SigningRequest.case_id == case_id)
                    )
                )
                .execution_options(synchronize_session=False)
            )
        ),
        "execution": await _wipe(
            session, Execution, Execution.case_id == case_id, state={}, record=None
        ),
        "handover": await _wipe(
            session, HandoverDocument, HandoverDocument.case_id == case_id, data=b""
        ),
        "record": await _wipe(session, CaseRecord, CaseRecord.case_id == case_id, document=b""),
    }
    if room_id is not None:
        # The inbox clears an event's payload once it is handled; one still waiting
        # from the case's room (the room is read-only by now) is dropped unhandled.
        in_room = ProcessedEvent.room_id == room_id
        counts["inbox"] = (
            await session.scalar(
                select(func.count())
                .select_from(ProcessedEvent)
                .where(in_room, ProcessedEvent.state == "pending")
            )
            or 0
        )
        await _wipe(session, ProcessedEvent, in_room, payload=None, state="done")
    return {kind: count for kind, count in counts.items() if count}


async def _wipe(session: AsyncSession, model: type[Any], *where: Any, **values: Any) -> int:
    result = await session.execute(
        update(model).where(*where).values(**values).execution_options(synchronize_session=False)
    )
    return _rowcount(result)


async def scrub(engine: AsyncEngine) -> None:
    """After a purge on SQLite: rebuild the file without its free space (``VACUUM``: a
    deleted value's old bytes stay in freed pages and cells until then) and empty the
    write-ahead log (which holds earlier images of the pages). It takes the write lock
    for as long as the copy lasts (a second or two for a large installation). Nothing
    to do on PostgreSQL here (autovacuum)."""
    if engine.dialect.name != "sqlite":
        return
    async with engine.connect() as connection:
        # VACUUM cannot run inside a transaction, and every SQLAlchemy transaction on
        # SQLite begins one (storage.db): use the driver's connection, in autocommit.
        raw = await connection.get_raw_connection()
        driver = raw.driver_connection
        assert driver is not None
        for statement in ("VACUUM", "PRAGMA wal_checkpoint(TRUNCATE)"):
            cursor = await driver.execute(statement)
            await cursor.close()
