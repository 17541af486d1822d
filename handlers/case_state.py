"""The case state machine: one status enum and one transition function.

Every status change in the system goes through :func:`transition`, so an illegal
move (signing a cancelled case, handing over an unsigned one) is refused in
exactly one place, every move is written with its audit row, and what must happen
because of it (escalation starts, stops) is decided here, on ``(old, new)``.
``storage.repo.change_status`` has no other caller.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy.ext.asyncio import AsyncSession

from handlers.errors import ConcurrentChange, IllegalTransition
from storage import escalation, repo


class CaseStatus(StrEnum):
    DRAFTING = "drafting"
    AWAITING_SIGNATURE = "awaiting_signature"
    SIGNED = "signed"
    DECLINED = "declined"
    #: A form whose ``signer`` is "none" (a skyddsbedömning): sealed as the worker's
    #: record, not a decision, so nothing is signed and nothing is carried out.
    RECORDED = "recorded"
    EXECUTED = "executed"
    HANDED_OVER = "handed_over"
    CLOSED = "closed"
    CANCELLED = "cancelled"

    @property
    def is_open(self) -> bool:
        return self not in (CaseStatus.CLOSED, CaseStatus.CANCELLED)


_ALLOWED: dict[CaseStatus, frozenset[CaseStatus]] = {
    # The worker fills in the report; it can be sent for signing or dropped, or (a
    # form nobody signs) sealed as the worker's record.
    CaseStatus.DRAFTING: frozenset(
        {CaseStatus.AWAITING_SIGNATURE, CaseStatus.RECORDED, CaseStatus.CANCELLED}
    ),
    # The decision-maker signs or declines; the worker may withdraw it to edit.
    CaseStatus.AWAITING_SIGNATURE: frozenset(
        {CaseStatus.SIGNED, CaseStatus.DECLINED, CaseStatus.DRAFTING, CaseStatus.CANCELLED}
    ),
    # A declined decision can be revised and sent again, or the case ends.
    CaseStatus.DECLINED: frozenset({CaseStatus.DRAFTING, CaseStatus.CLOSED, CaseStatus.CANCELLED}),
    # A signed decision is a legal fact: it is carried out (or not) and closed,
    # never cancelled as if it had not existed.
    CaseStatus.SIGNED: frozenset({CaseStatus.EXECUTED, CaseStatus.CLOSED}),
    # A sealed record is in the file like a signed decision: never cancelled, never
    # revised (a correction is a new entry). Nothing to carry out: it is handed over
    # to the home municipality, or closed.
    CaseStatus.RECORDED: frozenset({CaseStatus.HANDED_OVER, CaseStatus.CLOSED}),
    CaseStatus.EXECUTED: frozenset({CaseStatus.HANDED_OVER, CaseStatus.CLOSED}),
    CaseStatus.HANDED_OVER: frozenset({CaseStatus.CLOSED}),
    CaseStatus.CLOSED: frozenset(),
    CaseStatus.CANCELLED: frozenset(),
}


def allowed_next(status: CaseStatus) -> frozenset[CaseStatus]:
    return _ALLOWED[status]


def check_transition(old: CaseStatus | str, new: CaseStatus | str) -> tuple[CaseStatus, CaseStatus]:
    """Return the pair as enums, or raise :class:`IllegalTransition`."""
    old_s, new_s = CaseStatus(old), CaseStatus(new)
    if new_s not in _ALLOWED[old_s]:
        raise IllegalTransition(old_s.value, new_s.value)
    return old_s, new_s


@dataclass(frozen=True, slots=True)
class Effects:
    """What the caller runs after the transaction commits."""

    old: CaseStatus
    new: CaseStatus
    #: Escalation starts: wake the scheduler for the case's new steps.
    start_escalation: bool = False
    #: Escalation steps cancelled in the transaction: drop their scheduler jobs.
    cancelled_steps: tuple[int, ...] = ()


async def transition(
    session: AsyncSession,
    *,
    case_id: int,
    old: CaseStatus | str,
    new: CaseStatus | str,
    actor: str,
    now: datetime,
) -> Effects:
    """Check the move, write it (compare-and-set on ``old``) with its audit row, and
    do the database side of its effects in the same transaction.

    Raises :class:`IllegalTransition` for a move the machine forbids and
    :class:`ConcurrentChange` when the case is no longer in ``old`` (someone else
    moved it first); either way nothing is written by this call.
    """
    old_s, new_s = check_transition(old, new)
    moved = await repo.change_status(
        session, case_id=case_id, expected=old_s.value, new=new_s.value, actor=actor, now=now
    )
    if not moved:
        raise ConcurrentChange()
    return await _effects(session, case_id, old_s, new_s)


async def _effects(
    session: AsyncSession, case_id: int, old: CaseStatus, new: CaseStatus
) -> Effects:
    match (old, new):
        case (_, CaseStatus.AWAITING_SIGNATURE):
            # The caller writes the signing request and the policy's steps in this
            # same transaction; after commit the scheduler learns of them.
            return Effects(old, new, start_escalation=True)
        case (CaseStatus.AWAITING_SIGNATURE, CaseStatus.SIGNED | CaseStatus.DECLINED):
            # The deciding request is settled by the caller; the others close, saying
            # who decided, and nothing more is sent.
            cancelled = await escalation.cancel(session, case_id=case_id)
            return Effects(old, new, cancelled_steps=tuple(cancelled))
        case (CaseStatus.AWAITING_SIGNATURE, _):
            # Withdrawn (back to drafting) or cancelled: no link may still ask anyone.
            for request in await escalation.open_requests(session, case_id=case_id):
                await escalation.close(
                    session,
                    request_ids=[request.id],
                    status="cancelled" if new is CaseStatus.CANCELLED else "superseded",
                )
            cancelled = await escalation.cancel(session, case_id=case_id)
            return Effects(old, new, cancelled_steps=tuple(cancelled))
        case _:
            return Effects(old, new)
