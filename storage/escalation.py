"""Due escalation steps, alert delivery and acknowledgement, and the scheduler lock.

Same rules as :mod:`storage.repo`: the caller's session first, keyword-only
arguments, flush but never commit. A step is claimed with compare-and-set, so a
scheduler job that runs twice (or a job and the periodic check together) acts once.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import AlertEvent, EscalationStep, InstanceLock, SigningRequest
from storage.repo import _insert, _rowcount

PENDING = "pending"
#: Claimed and acting; a row left ``running`` by a crash is run again at start-up.
RUNNING = "running"
DONE = "done"
FAILED = "failed"
CANCELLED = "cancelled"

POLICY = "policy"
CHANNEL = "channel"
EXPIRE = "expire"


async def add_step(
    session: AsyncSession,
    *,
    case_id: int,
    kind: str,
    action: str,
    due_at: datetime,
    now: datetime,
    seq: int = 0,
    request_id: int | None = None,
    user_id: str | None = None,
) -> EscalationStep:
    step = EscalationStep(
        case_id=case_id,
        request_id=request_id,
        kind=kind,
        action=action,
        seq=seq,
        user_id=user_id,
        due_at=due_at,
        status=PENDING,
        attempts=0,
        created_at=now,
    )
    session.add(step)
    await session.flush()
    return step


async def get_step(session: AsyncSession, *, step_id: int) -> EscalationStep | None:
    return await session.get(EscalationStep, step_id, populate_existing=True)


async def list_pending(
    session: AsyncSession,
    *,
    case_id: int | None = None,
    kinds: Collection[str] | None = None,
    due_before: datetime | None = None,
) -> list[EscalationStep]:
    """Pending steps, earliest first (ties in the order they were planned)."""
    query = select(EscalationStep).where(EscalationStep.status == PENDING)
    if case_id is not None:
        query = query.where(EscalationStep.case_id == case_id)
    if kinds is not None:
        query = query.where(EscalationStep.kind.in_(list(kinds)))
    if due_before is not None:
        query = query.where(EscalationStep.due_at <= due_before)
    query = query.order_by(EscalationStep.due_at, EscalationStep.id)
    return list(await session.scalars(query.execution_options(populate_existing=True)))


async def list_steps(session: AsyncSession, *, case_id: int) -> list[EscalationStep]:
    query = (
        select(EscalationStep)
        .where(EscalationStep.case_id == case_id)
        .order_by(EscalationStep.due_at, EscalationStep.id)
    )
    return list(await session.scalars(query))


async def claim(session: AsyncSession, *, step_id: int, now: datetime) -> bool:
    """Take a pending step for running; False when someone else took (or cancelled) it.

    The step stays ``running`` until :func:`mark` records how it ended, so a crash in
    between leaves it to :func:`release_running` (at-least-once, never lost).
    """
    result = await session.execute(
        update(EscalationStep)
        .where(EscalationStep.id == step_id, EscalationStep.status == PENDING)
        .values(status=RUNNING, fired_at=now, attempts=EscalationStep.attempts + 1)
    )
    return _rowcount(result) == 1


async def release_running(
    session: AsyncSession, *, started_before: datetime | None = None
) -> list[EscalationStep]:
    """Steps a crash left half-done go back to pending (to run again); returns them.

    At start-up (the one process holding the lock) every running step is such a
    step; later, only one running far longer than any step takes.
    """
    query = select(EscalationStep).where(EscalationStep.status == RUNNING)
    if started_before is not None:
        query = query.where(EscalationStep.fired_at < started_before)
    found = list(await session.scalars(query))
    for step in found:
        step.status = PENDING
    await session.flush()
    return found


async def retry_at(session: AsyncSession, *, step_id: int, due_at: datetime) -> None:
    """A claimed step that failed goes back to pending for another try."""
    await session.execute(
        update(EscalationStep)
        .where(EscalationStep.id == step_id)
        .values(status=PENDING, due_at=due_at)
    )


async def mark(session: AsyncSession, *, step_id: int, status: str) -> None:
    await session.execute(
        update(EscalationStep).where(EscalationStep.id == step_id).values(status=status)
    )


async def cancel(
    session: AsyncSession,
    *,
    case_id: int,
    kinds: Collection[str] | None = None,
    user_id: str | None = None,
    request_ids: Collection[int] | None = None,
) -> list[int]:
    """Cancel pending steps; returns their ids (for the scheduler to drop)."""
    query = select(EscalationStep.id).where(
        EscalationStep.case_id == case_id, EscalationStep.status == PENDING
    )
    if kinds is not None:
        query = query.where(EscalationStep.kind.in_(list(kinds)))
    if user_id is not None:
        query = query.where(EscalationStep.user_id == user_id)
    if request_ids is not None:
        query = query.where(EscalationStep.request_id.in_(list(request_ids)))
    ids = list(await session.scalars(query))
    if ids:
        await session.execute(
            update(EscalationStep)
            .where(EscalationStep.id.in_(ids), EscalationStep.status == PENDING)
            .values(status=CANCELLED)
        )
    return ids


async def shift(session: AsyncSession, *, step_ids: Iterable[int], by: timedelta) -> None:
    """Move pending steps later (an acknowledgement pauses the policy)."""
    for step in await session.scalars(
        select(EscalationStep).where(
            EscalationStep.id.in_(list(step_ids)), EscalationStep.status == PENDING
        )
    ):
        step.due_at = step.due_at + by
    await session.flush()


async def last_policy_seq(session: AsyncSession, *, case_id: int) -> int:
    found = await session.scalar(
        select(func.max(EscalationStep.seq)).where(
            EscalationStep.case_id == case_id, EscalationStep.kind == POLICY
        )
    )
    return int(found) if found is not None else -1


# --- alert delivery and acknowledgement ---------------------------------------------------


async def mark_delivered(
    session: AsyncSession, *, request_id: int, now: datetime, event_id: str
) -> None:
    """The alert reached a device that can read it; remember its event (for a ✅)."""
    await session.execute(
        update(SigningRequest)
        .where(SigningRequest.id == request_id)
        .values(delivered_at=func.coalesce(SigningRequest.delivered_at, now))
    )
    await session.execute(
        _insert(session, AlertEvent)
        .values(event_id=event_id, request_id=request_id, sent_at=now)
        .on_conflict_do_nothing(index_elements=["event_id"])
    )


async def acknowledge(
    session: AsyncSession, *, request_ids: Collection[int], now: datetime, via: str
) -> list[int]:
    """Record "I am on it" on pending requests (again, if already); returns which."""
    ids = list(
        await session.scalars(
            select(SigningRequest.id).where(
                SigningRequest.id.in_(list(request_ids)), SigningRequest.status == "pending"
            )
        )
    )
    if ids:
        await session.execute(
            update(SigningRequest)
            .where(SigningRequest.id.in_(ids))
            .values(acknowledged_at=now, acknowledged_via=via)
        )
    return ids


async def open_requests(
    session: AsyncSession, *, case_id: int | None = None, user_id: str | None = None
) -> list[SigningRequest]:
    """Pending requests (expired or not: expiry is a step of its own)."""
    query = select(SigningRequest).where(SigningRequest.status == "pending")
    if case_id is not None:
        query = query.where(SigningRequest.case_id == case_id)
    if user_id is not None:
        query = query.where(SigningRequest.signer_user_id == user_id)
    return list(
        await session.scalars(
            query.order_by(SigningRequest.id).execution_options(populate_existing=True)
        )
    )


async def alert_events(session: AsyncSession, *, request_id: int) -> list[str]:
    """The alerts and reminders sent for a request, oldest first."""
    return list(
        await session.scalars(
            select(AlertEvent.event_id)
            .where(AlertEvent.request_id == request_id)
            .order_by(AlertEvent.sent_at, AlertEvent.event_id)
        )
    )


async def request_by_alert(session: AsyncSession, *, event_id: str) -> SigningRequest | None:
    """The request an alert or reminder was sent for."""
    return await session.scalar(
        select(SigningRequest)
        .join(AlertEvent, AlertEvent.request_id == SigningRequest.id)
        .where(AlertEvent.event_id == event_id)
    )


async def expire(session: AsyncSession, *, request_id: int) -> bool:
    result = await session.execute(
        update(SigningRequest)
        .where(SigningRequest.id == request_id, SigningRequest.status == "pending")
        .values(status="expired")
    )
    return _rowcount(result) == 1


async def close(session: AsyncSession, *, request_ids: Collection[int], status: str) -> int:
    result = await session.execute(
        update(SigningRequest)
        .where(SigningRequest.id.in_(list(request_ids)), SigningRequest.status == "pending")
        .values(status=status)
    )
    return _rowcount(result)


# --- the scheduler lock -----------------------------------------------------------------------


async def acquire_lock(
    session: AsyncSession,
    *,
    name: str,
    holder: str,
    host: str,
    pid: int,
    now: datetime,
    stale_before: datetime,
    take_over: Collection[str] = (),
) -> InstanceLock | None:
    """Take ``name`` for ``holder``; None on success, else the live holder's row.

    A row whose heartbeat is older than ``stale_before``, or whose holder is listed in
    ``take_over`` (a process on this host known to be gone), is taken over.
    """
    insert = _insert(session, InstanceLock).values(
        name=name, holder=holder, host=host, pid=pid, acquired_at=now, heartbeat_at=now
    )
    await session.execute(insert.on_conflict_do_nothing(index_elements=["name"]))
    result = await session.execute(
        update(InstanceLock)
        .where(InstanceLock.name == name)
        .where(
            (InstanceLock.holder == holder)
            | (InstanceLock.heartbeat_at < stale_before)
            | (InstanceLock.holder.in_(list(take_over) or [""]))
        )
        .values(holder=holder, host=host, pid=pid, acquired_at=now, heartbeat_at=now)
    )
    if _rowcount(result) == 1:
        return None
    return await session.get(InstanceLock, name, populate_existing=True)


async def get_lock(session: AsyncSession, *, name: str) -> InstanceLock | None:
    return await session.get(InstanceLock, name, populate_existing=True)


async def heartbeat(session: AsyncSession, *, name: str, holder: str, now: datetime) -> bool:
    """Renew the lock; False when another process has taken it."""
    result = await session.execute(
        update(InstanceLock)
        .where(InstanceLock.name == name, InstanceLock.holder == holder)
        .values(heartbeat_at=now)
    )
    return _rowcount(result) == 1


async def release_lock(session: AsyncSession, *, name: str, holder: str) -> None:
    await session.execute(
        delete(InstanceLock).where(InstanceLock.name == name, InstanceLock.holder == holder)
    )
