"""Tests of the case, audit, participant, state and key functions of `storage.repo`.

Each runs on SQLite and PostgreSQL, on a freshly migrated database.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy.exc import IntegrityError, StatementError
from sqlalchemy.ext.asyncio import AsyncSession

from storage import CaseNotFoundError, TrustedMasterKey, repo
from tests.storage_fixtures import DECIDER, NOW, WORKER, Sessions, in_session


async def open_case(sessions: Sessions, *, status: str = "draft", now: datetime = NOW) -> int:
    async def work(session: AsyncSession) -> int:
        case = await repo.create_case(
            session, prefix="SJ", year=2026, created_by=WORKER, status=status, now=now
        )
        return case.id

    return await in_session(sessions, work)


async def status_of(sessions: Sessions, case_id: int) -> str:
    case = await in_session(sessions, lambda s: repo.get_case(s, case_id=case_id))
    assert case is not None
    return case.status


# --- cases -------------------------------------------------------------------------------


async def test_a_new_case_has_its_creator_as_worker_and_an_audit_entry(sessions: Sessions) -> None:
    async def work(session: AsyncSession) -> None:
        case = await repo.create_case(
            session,
            prefix="SJ",
            year=2026,
            created_by=WORKER,
            status="draft",
            now=NOW,
            form_id="lvu6",
            municipality_id="1496",
        )
        await repo.set_case_room(session, case_id=case.id, room_id="!case:socialjour.example")

    await in_session(sessions, work)

    async with sessions() as session:
        case = await repo.get_case_by_number(session, number="SJ-2026-0001")
        assert case is not None
        assert (case.status, case.form_id, case.municipality_id) == ("draft", "lvu6", "1496")
        assert case.created_at == case.updated_at == NOW
        assert [(p.user_id, p.role) for p in case.participants] == [(WORKER, "worker")]
        by_room = await repo.get_case_by_room(session, room_id="!case:socialjour.example")
        assert by_room is not None and by_room.id == case.id
        assert await repo.get_case_by_room(session, room_id="!duty:socialjour.example") is None
        audit = await repo.list_audit(session, case_id=case.id)
        assert [(a.actor, a.action, a.detail) for a in audit] == [
            (WORKER, "case.created", {"number": "SJ-2026-0001"})
        ]


async def test_a_room_belongs_to_one_case_only(sessions: Sessions) -> None:
    first, second = await open_case(sessions), await open_case(sessions)
    await in_session(sessions, lambda s: repo.set_case_room(s, case_id=first, room_id="!r"))
    with pytest.raises(IntegrityError):
        await in_session(sessions, lambda s: repo.set_case_room(s, case_id=second, room_id="!r"))
    with pytest.raises(CaseNotFoundError):
        await in_session(sessions, lambda s: repo.set_case_room(s, case_id=999, room_id="!x"))


async def test_cases_are_listed_oldest_first_and_filtered_by_status(sessions: Sessions) -> None:
    late = await open_case(sessions, status="sent", now=NOW + timedelta(hours=2))
    early = await open_case(sessions, status="draft", now=NOW)
    middle = await open_case(sessions, status="signed", now=NOW + timedelta(hours=1))

    async def ids(statuses: list[str] | None) -> list[int]:
        cases = await in_session(sessions, lambda s: repo.list_cases(s, statuses=statuses))
        return [case.id for case in cases]

    assert await ids(None) == [early, middle, late]
    assert await ids(["sent", "draft"]) == [early, late]
    assert await ids([]) == []


# --- status changes ----------------------------------------------------------------------


async def test_two_concurrent_moves_from_the_same_status_have_exactly_one_winner(
    sessions: Sessions,
) -> None:
    case_id = await open_case(sessions)

    def move(new: str, actor: str) -> Awaitable[bool]:
        return in_session(
            sessions,
            lambda s: repo.change_status(
                s, case_id=case_id, expected="draft", new=new, actor=actor, now=NOW
            ),
        )

    results = await asyncio.gather(move("sent", WORKER), move("cancelled", DECIDER))

    assert sorted(results) == [False, True]
    winner = "sent" if results[0] else "cancelled"
    assert await status_of(sessions, case_id) == winner
    audit = await in_session(sessions, lambda s: repo.list_audit(s, case_id=case_id))
    assert [a.action for a in audit] == ["case.created", f"status.{winner}"]


async def test_a_move_based_on_a_stale_read_changes_nothing(sessions: Sessions) -> None:
    case_id = await open_case(sessions)
    seen = await status_of(sessions, case_id)  # the worker looks at the case...
    await in_session(  # ...meanwhile the decider moves it on...
        sessions,
        lambda s: repo.change_status(
            s, case_id=case_id, expected="draft", new="sent", actor=DECIDER, now=NOW
        ),
    )
    moved = await in_session(  # ...so the worker's move, based on "draft", is refused.
        sessions,
        lambda s: repo.change_status(
            s, case_id=case_id, expected=seen, new="cancelled", actor=WORKER, now=NOW
        ),
    )
    assert moved is False
    assert await status_of(sessions, case_id) == "sent"


async def test_a_status_change_clears_the_cancel_request_and_updates_the_loaded_case(
    sessions: Sessions,
) -> None:
    case_id = await open_case(sessions)
    later = NOW + timedelta(minutes=5)
    async with sessions() as session, session.begin():
        await repo.request_cancel(session, case_id=case_id, user_id=WORKER, now=NOW)
        case = await repo.get_case(session, case_id=case_id)
        assert case is not None
        assert (case.cancel_requested_by, case.cancel_requested_at) == (WORKER, NOW)
        assert await repo.change_status(
            session, case_id=case_id, expected="draft", new="sent", actor=WORKER, now=later
        )
        # The object already in the session reflects the UPDATE without a reload.
        assert (case.status, case.updated_at, case.cancel_requested_by) == ("sent", later, None)

    async with sessions() as session:
        case = await repo.get_case(session, case_id=case_id)
        assert case is not None
        assert (case.status, case.updated_at) == ("sent", later)
        assert (case.cancel_requested_by, case.cancel_requested_at) == (None, None)
        audit = await repo.list_audit(session, case_id=case_id)
        assert (audit[-1].action, audit[-1].detail, audit[-1].at) == (
            "status.sent",
            {"from": "draft"},
            later,
        )


async def test_a_cancel_request_can_be_withdrawn(sessions: Sessions) -> None:
    case_id = await open_case(sessions)
    await in_session(
        sessions, lambda s: repo.request_cancel(s, case_id=case_id, user_id=WORKER, now=NOW)
    )
    await in_session(sessions, lambda s: repo.clear_cancel_request(s, case_id=case_id))
    case = await in_session(sessions, lambda s: repo.get_case(s, case_id=case_id))
    assert case is not None and case.cancel_requested_by is None
    assert case.cancel_requested_at is None


async def test_moving_an_unknown_case_is_an_error_not_a_lost_race(sessions: Sessions) -> None:
    async with sessions() as session:
        with pytest.raises(CaseNotFoundError):
            await repo.change_status(
                session, case_id=999, expected="draft", new="sent", actor=WORKER, now=NOW
            )


# --- participants ------------------------------------------------------------------------


async def test_participants_are_added_once_and_listed_in_order(sessions: Sessions) -> None:
    case_id = await open_case(sessions)
    async with sessions() as session, session.begin():
        case = await repo.get_case(session, case_id=case_id)
        assert case is not None
        added = await repo.add_participant(
            session, case_id=case_id, user_id=DECIDER, role="decider", now=NOW
        )
        again = await repo.add_participant(
            session, case_id=case_id, user_id=DECIDER, role="worker", now=NOW
        )
        assert (added, again) == (True, False)
        assert [p.user_id for p in case.participants] == [WORKER, DECIDER]

    async with sessions() as session:
        listed = await repo.list_participants(session, case_id=case_id)
        assert [(p.user_id, p.role) for p in listed] == [(WORKER, "worker"), (DECIDER, "decider")]
        assert await repo.is_participant(session, case_id=case_id, user_id=DECIDER)
        assert not await repo.is_participant(session, case_id=case_id, user_id="@eve:evil.example")


# --- audit trail -------------------------------------------------------------------------


async def test_audit_entries_come_back_in_the_order_they_were_written(sessions: Sessions) -> None:
    case_id = await open_case(sessions)

    async def write(session: AsyncSession) -> None:
        for step, action in enumerate(["report.answered", "report.sent", "decision.signed"]):
            await repo.add_audit(
                session,
                case_id=case_id,
                actor=WORKER,
                action=action,
                now=NOW + timedelta(seconds=step // 2),  # two entries share a timestamp
                detail={"step": step},
            )
        await repo.add_audit(session, case_id=None, actor="@bot:x", action="bot.started", now=NOW)

    await in_session(sessions, write)
    trail = await in_session(sessions, lambda s: repo.list_audit(s, case_id=case_id))
    assert [a.action for a in trail] == [
        "case.created",
        "report.answered",
        "report.sent",
        "decision.signed",
    ]
    assert [a.detail for a in trail[1:]] == [{"step": 0}, {"step": 1}, {"step": 2}]
    bot_trail = await in_session(sessions, lambda s: repo.list_audit(s, case_id=None))
    assert [a.action for a in bot_trail] == ["bot.started"]


# --- bot state and trusted keys ----------------------------------------------------------


async def test_state_is_stored_and_replaced(sessions: Sessions) -> None:
    assert await in_session(sessions, lambda s: repo.get_state(s, key="sync_token")) is None
    await in_session(sessions, lambda s: repo.set_state(s, key="sync_token", value="s1"))
    await in_session(sessions, lambda s: repo.set_state(s, key="other", value="x"))
    await in_session(sessions, lambda s: repo.set_state(s, key="sync_token", value="s2"))
    assert await in_session(sessions, lambda s: repo.get_state(s, key="sync_token")) == "s2"
    assert await in_session(sessions, lambda s: repo.get_state(s, key="other")) == "x"


async def test_master_keys_are_trusted_on_first_use(sessions: Sessions) -> None:
    def remember(key: str, now: datetime) -> Awaitable[None]:
        return in_session(
            sessions,
            lambda s: repo.remember_master_key(s, user_id=DECIDER, master_key=key, now=now),
        )

    async def stored() -> tuple[str | None, datetime | None]:
        async with sessions() as session:
            key = await repo.get_master_key(session, user_id=DECIDER)
            row = await session.get(TrustedMasterKey, DECIDER)
            return key, (row.first_seen if row else None)

    assert await stored() == (None, None)
    await remember("ed25519:KEY1", NOW)
    await remember("ed25519:KEY1", NOW + timedelta(days=1))  # seen again: nothing changes
    assert await stored() == ("ed25519:KEY1", NOW)
    later = NOW + timedelta(days=2)
    await remember("ed25519:KEY2", later)  # a confirmed reset replaces the key
    assert await stored() == ("ed25519:KEY2", later)


async def test_a_forgotten_master_key_lets_the_next_key_be_trusted(sessions: Sessions) -> None:
    def forget(session: AsyncSession) -> Awaitable[bool]:
        return repo.forget_master_key(session, user_id=DECIDER)

    await in_session(
        sessions,
        lambda s: repo.remember_master_key(s, user_id=DECIDER, master_key="ed25519:OLD", now=NOW),
    )
    assert await in_session(sessions, forget) is True
    assert await in_session(sessions, lambda s: repo.get_master_key(s, user_id=DECIDER)) is None
    assert await in_session(sessions, forget) is False


# --- timestamps --------------------------------------------------------------------------


async def test_timestamps_come_back_as_the_same_instant_in_utc(sessions: Sessions) -> None:
    stockholm_summer = timezone(timedelta(hours=2))
    local = datetime(2026, 7, 1, 3, 15, 30, 123456, tzinfo=stockholm_summer)
    case_id = await open_case(sessions, now=local)
    case = await in_session(sessions, lambda s: repo.get_case(s, case_id=case_id))
    assert case is not None
    assert case.created_at == local
    assert case.created_at.tzinfo is UTC
    assert case.created_at.hour == 1


async def test_naive_timestamps_are_refused(sessions: Sessions) -> None:
    with pytest.raises(StatementError, match="naive datetime"):
        await in_session(
            sessions,
            lambda s: repo.claim_event(s, event_id="$e", room_id="!r", now=datetime(2026, 1, 1)),
        )
