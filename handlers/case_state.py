"""The case state machine: one status enum and one transition function.

Every status change in the system goes through :func:`check_transition`, so an
illegal move (signing a cancelled case, handing over an unsigned one) is refused
in exactly one place.
"""

from __future__ import annotations

from enum import StrEnum

from handlers.errors import IllegalTransition


class CaseStatus(StrEnum):
    DRAFTING = "drafting"
    AWAITING_SIGNATURE = "awaiting_signature"
    SIGNED = "signed"
    DECLINED = "declined"
    EXECUTED = "executed"
    HANDED_OVER = "handed_over"
    CLOSED = "closed"
    CANCELLED = "cancelled"

    @property
    def is_open(self) -> bool:
        return self not in (CaseStatus.CLOSED, CaseStatus.CANCELLED)


_ALLOWED: dict[CaseStatus, frozenset[CaseStatus]] = {
    # The worker fills in the report; it can be sent for signing or dropped.
    CaseStatus.DRAFTING: frozenset({CaseStatus.AWAITING_SIGNATURE, CaseStatus.CANCELLED}),
    # The decision-maker signs or declines; the worker may withdraw it to edit.
    CaseStatus.AWAITING_SIGNATURE: frozenset(
        {CaseStatus.SIGNED, CaseStatus.DECLINED, CaseStatus.DRAFTING, CaseStatus.CANCELLED}
    ),
    # A declined decision can be revised and sent again, or the case ends.
    CaseStatus.DECLINED: frozenset({CaseStatus.DRAFTING, CaseStatus.CLOSED, CaseStatus.CANCELLED}),
    # A signed decision is a legal fact: it is carried out (or not) and closed,
    # never cancelled as if it had not existed.
    CaseStatus.SIGNED: frozenset({CaseStatus.EXECUTED, CaseStatus.CLOSED}),
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
