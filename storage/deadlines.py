"""The deadline clocks of cases and the court's decisions on custody.

Same rules as :mod:`storage.repo`: the caller's session first, keyword-only
arguments, flush but never commit. Where two actors can race (two people marking
the same act, a command and the sweep, a start repeated after a crash) the
database settles it: inserts ignore a row that exists, state changes are
compare-and-set on the status.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import date, datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Case, CourtDecision, Deadline
from storage.repo import _insert, _rowcount

#: Its trigger has not happened yet.
WAITING = "waiting"
#: The clock runs: reminded until its act is marked.
RUNNING = "running"
DONE = "done"
#: Never started, or no longer matters (the court revoked the custody).
VOID = "void"
#: Not done and not void: what still keeps a case open.
OPEN = (WAITING, RUNNING)


async def add(
    session: AsyncSession,
    *,
    case_id: int,
    name: str,
    trigger: str,
    rule: str,
    actor: str,
    act: str,
    ends_if_revoked: bool,
    now: datetime,
) -> bool:
    """A waiting deadline; False (nothing changed) when the case has one by that name."""
    stmt = (
        _insert(session, Deadline)
        .values(
            case_id=case_id,
            name=name,
            trigger=trigger,
            rule=rule,
            actor=actor,
            act=act,
            ends_if_revoked=ends_if_revoked,
            status=WAITING,
            created_at=now,
        )
        .on_conflict_do_nothing(index_elements=["case_id", "name"])
    )
    return _rowcount(await session.execute(stmt)) == 1


async def start(
    session: AsyncSession,
    *,
    deadline_id: int,
    started_at: datetime,
    due_on: date | None,
    outer_limit: date | None,
) -> bool:
    """Waiting -> running from ``started_at``; False when it had started (or ended)."""
    result = await session.execute(
        update(Deadline)
        .where(Deadline.id == deadline_id, Deadline.status == WAITING)
        .values(status=RUNNING, started_at=started_at, due_on=due_on, outer_limit=outer_limit)
        .execution_options(synchronize_session=False)
    )
    return _rowcount(result) == 1


async def set_due(
    session: AsyncSession, *, deadline_id: int, due_on: date, outer_limit: date
) -> None:
    """The last day once known (a next-meeting deadline whose meeting is now known)."""
    await session.execute(
        update(Deadline)
        .where(Deadline.id == deadline_id)
        .values(due_on=due_on, outer_limit=outer_limit)
        .execution_options(synchronize_session=False)
    )


async def finish(
    session: AsyncSession,
    *,
    deadline_id: int,
    status: str,
    by: str,
    via: str,
    now: datetime,
    statuses: Collection[str] = OPEN,
) -> bool:
    """End an open deadline as ``done`` or ``void``; False when it had ended already."""
    result = await session.execute(
        update(Deadline)
        .where(Deadline.id == deadline_id, Deadline.status.in_(list(statuses)))
        .values(status=status, done_at=now, done_by=by, done_via=via)
        .execution_options(synchronize_session=False)
    )
    return _rowcount(result) == 1


async def get(session: AsyncSession, *, deadline_id: int) -> Deadline | None:
    return await session.get(Deadline, deadline_id, populate_existing=True)


async def for_case(
    session: AsyncSession, *, case_id: int, statuses: Collection[str] | None = None
) -> list[Deadline]:
    """The case's deadlines in the order they were declared."""
    query = select(Deadline).where(Deadline.case_id == case_id)
    if statuses is not None:
        query = query.where(Deadline.status.in_(list(statuses)))
    query = query.order_by(Deadline.id).execution_options(populate_existing=True)
    return list(await session.scalars(query))


async def running(session: AsyncSession) -> list[tuple[Deadline, Case]]:
    """Every running clock with its case, the earliest last day first."""
    query = (
        select(Deadline, Case)
        .join(Case, Case.id == Deadline.case_id)
        .where(Deadline.status == RUNNING)
        .order_by(Deadline.due_on, Deadline.id)
        .execution_options(populate_existing=True)
    )
    return [(deadline, case) for deadline, case in (await session.execute(query)).all()]


async def open_with_act(
    session: AsyncSession, *, act: str, municipality_id: str
) -> list[tuple[Deadline, Case]]:
    """Open deadlines marked by ``act`` of the municipality's cases (what an intake room
    can mean by a command without a case number), the earliest last day first."""
    query = (
        select(Deadline, Case)
        .join(Case, Case.id == Deadline.case_id)
        .where(
            Deadline.status.in_(list(OPEN)),
            Deadline.act == act,
            Case.municipality_id == municipality_id,
        )
        .order_by(Deadline.due_on, Deadline.id)
    )
    return [(deadline, case) for deadline, case in (await session.execute(query)).all()]


async def note(session: AsyncSession, *, deadline_id: int, **values: object) -> None:
    """Record what the sweep has told about a deadline (``announced_at``,
    ``last_reminder_at``, ``missed_alerted_on``, ``no_meeting_told_at``) and the event
    id of its latest message in the actor's room (``last_event_id``)."""
    allowed = {
        "announced_at",
        "last_reminder_at",
        "missed_alerted_on",
        "no_meeting_told_at",
        "last_event_id",
    }
    unknown = set(values) - allowed
    if unknown:
        raise ValueError(f"not a reminder field: {sorted(unknown)}")
    await session.execute(
        update(Deadline)
        .where(Deadline.id == deadline_id)
        .values(**values)
        .execution_options(synchronize_session=False)
    )


async def by_event(session: AsyncSession, *, event_id: str) -> Deadline | None:
    """The deadline whose latest message is ``event_id`` (a reply to it means it)."""
    query = select(Deadline).where(Deadline.last_event_id == event_id).limit(1)
    return await session.scalar(query)


# --- the court's decision ----------------------------------------------------------------


async def record_court_decision(
    session: AsyncSession,
    *,
    case_id: int,
    decided_on: date,
    outcome: str,
    by: str,
    now: datetime,
) -> bool:
    """Record the court's decision; False (nothing changed) when one is recorded."""
    stmt = (
        _insert(session, CourtDecision)
        .values(
            case_id=case_id,
            decided_on=decided_on,
            outcome=outcome,
            recorded_by=by,
            recorded_at=now,
        )
        .on_conflict_do_nothing(index_elements=["case_id"])
    )
    return _rowcount(await session.execute(stmt)) == 1


async def court_decision(session: AsyncSession, *, case_id: int) -> CourtDecision | None:
    return await session.get(CourtDecision, case_id, populate_existing=True)
