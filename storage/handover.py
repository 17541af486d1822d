"""Reading and writing the execution record and the handover of a case (issue 9 §2).

Keyword-only functions that flush and never commit, like :mod:`storage.repo`.
Where two actors can race (two workers answering, the command and the periodic
repair delivering the same handover, two intake members acknowledging at once)
the write is a compare-and-set the database settles.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Execution, Handover, HandoverDocument, SigningRequest
from storage.repo import _insert, _rowcount

# --- the execution record ------------------------------------------------------------


async def get_execution(session: AsyncSession, *, case_id: int) -> Execution | None:
    return await session.get(Execution, case_id, populate_existing=True)


async def save_execution_state(
    session: AsyncSession,
    *,
    case_id: int,
    form_id: str,
    form_version: int,
    state: dict[str, Any],
    expected_version: int | None,
    actor: str,
    now: datetime,
) -> int | None:
    """Store the execution dialogue's state if nobody saved since ``expected_version``.

    ``expected_version=None`` starts the record (``actor`` started it). Returns the new
    version, or None when another save won the race or the record is confirmed.
    """
    if expected_version is None:
        result = await session.execute(
            _insert(session, Execution)
            .values(
                case_id=case_id,
                form_id=form_id,
                form_version=form_version,
                state=state,
                version=1,
                started_by=actor,
                started_at=now,
                updated_at=now,
            )
            .on_conflict_do_nothing(index_elements=["case_id"])
        )
        return 1 if _rowcount(result) == 1 else None
    result = await session.execute(
        update(Execution)
        .where(
            Execution.case_id == case_id,
            Execution.version == expected_version,
            Execution.recorded_at.is_(None),
        )
        .values(state=state, version=expected_version + 1, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    return expected_version + 1 if _rowcount(result) == 1 else None


async def record_execution(
    session: AsyncSession,
    *,
    case_id: int,
    expected_version: int,
    record: dict[str, Any],
    executed_at: datetime,
    by: str,
    now: datetime,
    state: dict[str, Any] | None = None,
) -> bool:
    """Freeze the answers as the execution record (and the dialogue's last ``state``,
    if given); False if they changed since ``expected_version`` or were recorded."""
    values: dict[str, Any] = {
        "record": record,
        "executed_at": executed_at,
        "recorded_by": by,
        "recorded_at": now,
        "version": expected_version + 1,
        "updated_at": now,
    }
    if state is not None:
        values["state"] = state
    result = await session.execute(
        update(Execution)
        .where(
            Execution.case_id == case_id,
            Execution.version == expected_version,
            Execution.recorded_at.is_(None),
        )
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return _rowcount(result) == 1


async def decided_at(session: AsyncSession, *, case_id: int) -> datetime | None:
    """The moment of the case's signed decision (the signature), if it has one."""
    return await session.scalar(
        select(SigningRequest.decided_at)
        .where(SigningRequest.case_id == case_id, SigningRequest.status == "signed")
        .order_by(SigningRequest.decided_at.desc())
        .limit(1)
    )


async def list_open_executions(session: AsyncSession) -> list[Execution]:
    """Execution dialogues begun and not yet confirmed (to resume after a restart)."""
    rows = await session.scalars(
        select(Execution).where(Execution.recorded_at.is_(None)).order_by(Execution.case_id)
    )
    return list(rows)


# --- the handover --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Attachment:
    """One document of the package as it will be sent."""

    part: str
    filename: str
    data: bytes
    sha256: str


async def create_handover(
    session: AsyncSession,
    *,
    case_id: int,
    municipality_id: str,
    room_id: str,
    requested_by: str,
    now: datetime,
    next_reminder_at: datetime,
    documents: Sequence[Attachment],
) -> bool:
    """Record the handover and its documents; False if the case was handed over already."""
    result = await session.execute(
        _insert(session, Handover)
        .values(
            case_id=case_id,
            municipality_id=municipality_id,
            room_id=room_id,
            requested_by=requested_by,
            requested_at=now,
            reminders=0,
            next_reminder_at=next_reminder_at,
        )
        .on_conflict_do_nothing(index_elements=["case_id"])
    )
    if _rowcount(result) != 1:
        return False
    for position, document in enumerate(documents):
        session.add(
            HandoverDocument(
                case_id=case_id,
                part=document.part,
                position=position,
                filename=document.filename,
                data=document.data,
                sha256=document.sha256,
            )
        )
    await session.flush()
    return True


async def get_handover(session: AsyncSession, *, case_id: int) -> Handover | None:
    return await session.get(Handover, case_id, populate_existing=True)


async def list_documents(session: AsyncSession, *, case_id: int) -> list[HandoverDocument]:
    rows = await session.scalars(
        select(HandoverDocument)
        .where(HandoverDocument.case_id == case_id)
        .order_by(HandoverDocument.position)
        .execution_options(populate_existing=True)
    )
    return list(rows)


async def mark_document_sent(
    session: AsyncSession, *, case_id: int, part: str, event_id: str, now: datetime
) -> None:
    await session.execute(
        update(HandoverDocument)
        .where(
            HandoverDocument.case_id == case_id,
            HandoverDocument.part == part,
            HandoverDocument.sent_at.is_(None),
        )
        .values(event_id=event_id, sent_at=now)
        .execution_options(synchronize_session=False)
    )


async def mark_message_sent(
    session: AsyncSession, *, case_id: int, event_id: str, now: datetime
) -> None:
    """The message to the intake members is out: ``!mottaget`` replies name ``event_id``."""
    await session.execute(
        update(Handover)
        .where(Handover.case_id == case_id, Handover.sent_at.is_(None))
        .values(message_event_id=event_id, sent_at=now)
        .execution_options(synchronize_session=False)
    )


async def mark_announced(session: AsyncSession, *, case_id: int, now: datetime) -> None:
    await session.execute(
        update(Handover)
        .where(Handover.case_id == case_id, Handover.announced_at.is_(None))
        .values(announced_at=now)
        .execution_options(synchronize_session=False)
    )


async def list_undelivered(session: AsyncSession) -> list[Handover]:
    """Handovers with a part still to send (the case room's notice is the last part)."""
    rows = await session.scalars(
        select(Handover).where(Handover.announced_at.is_(None)).order_by(Handover.requested_at)
    )
    return list(rows)


async def find_by_event(session: AsyncSession, *, room_id: str, event_id: str) -> Handover | None:
    """The handover whose message (or latest reminder) in ``room_id`` is ``event_id``."""
    return await session.scalar(
        select(Handover).where(
            Handover.room_id == room_id,
            or_(Handover.message_event_id == event_id, Handover.last_reminder_event_id == event_id),
        )
    )


async def receive(session: AsyncSession, *, case_id: int, user_id: str, now: datetime) -> bool:
    """Acknowledge the handover; False if it was acknowledged before (by anyone)."""
    result = await session.execute(
        update(Handover)
        .where(Handover.case_id == case_id, Handover.received_at.is_(None))
        .values(received_at=now, received_by=user_id, next_reminder_at=None)
        .execution_options(synchronize_session=False)
    )
    return _rowcount(result) == 1


async def list_due_reminders(session: AsyncSession, *, now: datetime) -> list[Handover]:
    """Handovers sent, not acknowledged, whose next reminder is due at ``now``."""
    rows = await session.scalars(
        select(Handover)
        .where(
            Handover.received_at.is_(None),
            Handover.sent_at.is_not(None),
            Handover.next_reminder_at <= now,
        )
        .order_by(Handover.next_reminder_at, Handover.case_id)
    )
    return list(rows)


async def record_reminder(
    session: AsyncSession,
    *,
    case_id: int,
    expected: int,
    event_id: str,
    next_at: datetime,
) -> bool:
    """Count reminder ``expected + 1`` as sent; False if another run counted it first."""
    result = await session.execute(
        update(Handover)
        .where(
            Handover.case_id == case_id,
            Handover.reminders == expected,
            Handover.received_at.is_(None),
        )
        .values(reminders=expected + 1, next_reminder_at=next_at, last_reminder_event_id=event_id)
        .execution_options(synchronize_session=False)
    )
    return _rowcount(result) == 1


async def mark_receipt_posted(session: AsyncSession, *, case_id: int, now: datetime) -> None:
    """The case room was told who acknowledged the handover."""
    await session.execute(
        update(Handover)
        .where(Handover.case_id == case_id, Handover.receipt_posted_at.is_(None))
        .values(receipt_posted_at=now)
        .execution_options(synchronize_session=False)
    )


async def list_unposted_receipts(session: AsyncSession) -> list[Handover]:
    """Acknowledged handovers whose case room has not been told yet (a crash in between)."""
    rows = await session.scalars(
        select(Handover)
        .where(Handover.received_at.is_not(None), Handover.receipt_posted_at.is_(None))
        .order_by(Handover.received_at)
    )
    return list(rows)
