"""Reports sealed as the worker's own record (a form whose ``signer`` is "none").

Same rules as :mod:`storage.repo`: the caller's session first, keyword-only
arguments, flush but never commit.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import CaseRecord

__all__ = ["add_record", "get_record", "list_unposted", "mark_file_posted", "mark_posted"]


async def add_record(
    session: AsyncSession,
    *,
    case_id: int,
    form_id: str,
    recorded_by: str,
    recorded_at: datetime,
    document: bytes,
    sha256: str,
) -> CaseRecord:
    """The case's sealed record (one per case: a second raises an integrity error)."""
    record = CaseRecord(
        case_id=case_id,
        form_id=form_id,
        recorded_by=recorded_by,
        recorded_at=recorded_at,
        document=document,
        sha256=sha256,
    )
    session.add(record)
    await session.flush()
    return record


async def get_record(session: AsyncSession, *, case_id: int) -> CaseRecord | None:
    return await session.get(CaseRecord, case_id, populate_existing=True)


async def mark_file_posted(session: AsyncSession, *, case_id: int, now: datetime) -> None:
    """The sealed PDF is in the case room (its announcement may still be missing)."""
    await session.execute(
        update(CaseRecord).where(CaseRecord.case_id == case_id).values(file_posted_at=now)
    )


async def mark_posted(session: AsyncSession, *, case_id: int, now: datetime) -> None:
    await session.execute(
        update(CaseRecord).where(CaseRecord.case_id == case_id).values(posted_at=now)
    )


async def list_unposted(session: AsyncSession) -> list[CaseRecord]:
    """Records whose PDF or announcement never reached the case room (a crash in between)."""
    return list(
        await session.scalars(
            select(CaseRecord).where(CaseRecord.posted_at.is_(None)).order_by(CaseRecord.case_id)
        )
    )
