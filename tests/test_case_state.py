"""The case state machine: exactly the moves the law and the workflow allow, nothing else."""

from __future__ import annotations

import itertools

import pytest

from handlers.case_state import CaseStatus, allowed_next, check_transition
from handlers.errors import HandlerError, IllegalTransition

S = CaseStatus

#: The transition table as the design describes it, written out independently of the code.
EXPECTED: dict[CaseStatus, set[CaseStatus]] = {
    S.DRAFTING: {S.AWAITING_SIGNATURE, S.RECORDED, S.CANCELLED},
    S.AWAITING_SIGNATURE: {S.SIGNED, S.DECLINED, S.DRAFTING, S.CANCELLED},
    S.DECLINED: {S.DRAFTING, S.CLOSED, S.CANCELLED},
    S.SIGNED: {S.EXECUTED, S.CLOSED},
    S.RECORDED: {S.HANDED_OVER, S.CLOSED},
    S.EXECUTED: {S.HANDED_OVER, S.CLOSED},
    S.HANDED_OVER: {S.CLOSED},
    S.CLOSED: set(),
    S.CANCELLED: set(),
}

ALL_PAIRS = list(itertools.product(CaseStatus, repeat=2))
ALLOWED_PAIRS = [(old, new) for old, new in ALL_PAIRS if new in EXPECTED[old]]
REFUSED_PAIRS = [(old, new) for old, new in ALL_PAIRS if new not in EXPECTED[old]]


def _ids(pair: tuple[CaseStatus, CaseStatus]) -> str:
    return f"{pair[0].value}->{pair[1].value}"


def test_the_expected_table_covers_every_status() -> None:
    assert set(EXPECTED) == set(CaseStatus)
    assert len(ALLOWED_PAIRS) + len(REFUSED_PAIRS) == len(CaseStatus) ** 2


@pytest.mark.parametrize("pair", ALLOWED_PAIRS, ids=_ids)
def test_every_allowed_move_is_accepted(pair: tuple[CaseStatus, CaseStatus]) -> None:
    old, new = pair
    assert check_transition(old, new) == (old, new)
    # The database stores plain strings: they are accepted and come back as enums.
    result = check_transition(old.value, new.value)
    assert result == (old, new)
    assert all(isinstance(status, CaseStatus) for status in result)


@pytest.mark.parametrize("pair", REFUSED_PAIRS, ids=_ids)
def test_every_other_move_is_refused(pair: tuple[CaseStatus, CaseStatus]) -> None:
    old, new = pair
    with pytest.raises(IllegalTransition) as caught:
        check_transition(old, new)
    error = caught.value
    assert (error.old, error.new) == (old.value, new.value)
    # The dispatcher turns it into a polite reply naming both states.
    assert isinstance(error, HandlerError)
    assert error.key == "error.illegal_transition"
    assert error.params == {"old": old.value, "new": new.value}


@pytest.mark.parametrize("status", list(CaseStatus), ids=str)
def test_allowed_next_matches_the_table(status: CaseStatus) -> None:
    assert allowed_next(status) == frozenset(EXPECTED[status])


@pytest.mark.parametrize("status", list(CaseStatus), ids=str)
def test_no_status_moves_to_itself(status: CaseStatus) -> None:
    with pytest.raises(IllegalTransition):
        check_transition(status, status)


@pytest.mark.parametrize("terminal", [S.CLOSED, S.CANCELLED], ids=str)
def test_terminal_states_have_no_exits(terminal: CaseStatus) -> None:
    assert allowed_next(terminal) == frozenset()
    assert not terminal.is_open
    for new in CaseStatus:
        with pytest.raises(IllegalTransition):
            check_transition(terminal, new)


def test_only_closed_and_cancelled_are_not_open() -> None:
    assert {status for status in CaseStatus if not status.is_open} == {S.CLOSED, S.CANCELLED}


@pytest.mark.parametrize("signed_state", [S.SIGNED, S.EXECUTED, S.HANDED_OVER], ids=str)
def test_a_signed_case_can_never_be_cancelled(signed_state: CaseStatus) -> None:
    """A signed decision is a legal fact: no path from signing onwards leads to cancelled."""
    with pytest.raises(IllegalTransition):
        check_transition(signed_state, S.CANCELLED)


def test_no_path_from_signed_ever_reaches_cancelled_or_back_to_drafting() -> None:
    reachable: set[CaseStatus] = set()
    frontier = [S.SIGNED]
    while frontier:
        status = frontier.pop()
        for new in allowed_next(status):
            if new not in reachable:
                reachable.add(new)
                frontier.append(new)
    assert reachable == {S.EXECUTED, S.HANDED_OVER, S.CLOSED}
    assert S.CANCELLED not in reachable
    assert S.DRAFTING not in reachable


@pytest.mark.parametrize("bad", ["", "open", "DRAFTING", "avbrutet"])
def test_an_unknown_status_string_is_not_silently_accepted(bad: str) -> None:
    with pytest.raises(ValueError):
        check_transition(bad, S.CANCELLED)
    with pytest.raises(ValueError):
        check_transition(S.DRAFTING, bad)
