"""One answer, one unit of work: the database round trips an answer costs, counted
with SQLAlchemy's own events, on SQLite and PostgreSQL; and read-only work that
does not wait for a writer."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from handlers.dispatcher import Dispatcher
from handlers.messenger import IncomingMessage
from storage import read_session_factory, session_factory
from storage.db import READ_ONLY
from tests.test_reports import ANNA, DUTY, Desk, write_settings

#: The budget of one ordinary answer: one write transaction doing everything (claim,
#: locate, authorise, load, step, save, what is asked next) and one small write
#: noting that the question went out. No other transaction.
WRITE_TRANSACTIONS = 2
#: Statements in those two (7 on both backends when this was written: the claim, the
#: case with its participants, the report, its update; the confirmation's read and
#: update).
STATEMENTS = 8


@dataclass
class Counter:
    writes: int = 0
    reads: int = 0
    statements: list[str] = field(default_factory=list)

    def reset(self) -> None:
        self.writes, self.reads, self.statements = 0, 0, []


def count(engine: AsyncEngine) -> Counter:
    counter = Counter()

    def on_begin(connection: Any) -> None:
        if connection.get_execution_options().get(READ_ONLY):
            counter.reads += 1
        else:
            counter.writes += 1

    def on_execute(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if not statement.startswith(("BEGIN", "PRAGMA")):
            counter.statements.append(" ".join(statement.split()[:4]))

    event.listen(engine.sync_engine, "begin", on_begin)
    event.listen(engine.sync_engine, "before_cursor_execute", on_execute)
    return counter


def desk_with_readers(engine: AsyncEngine, folder: Path) -> Desk:
    desk = Desk(write_settings(folder), session_factory(engine))
    desk.dispatcher = Dispatcher(
        settings=desk.settings,
        sessions=desk.sessions,
        messenger=desk.messenger,
        clock=desk.clock,
        readers=read_session_factory(engine),
    )
    desk.dispatcher.duty_room_id = DUTY
    return desk


async def test_an_answer_is_one_write_transaction_and_one_small_write(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    desk = desk_with_readers(engine, tmp_path)
    case = await desk.open("lvu6")
    assert case.room_id is not None
    said = await desk.say(case.room_id, "Test Testsson")
    assert "Fråga 2 av" in said.text

    counter = count(engine)
    said = await desk.say(case.room_id, "19121212-1212")
    assert "Fråga 3 av" in said.text  # the answer was taken and the next question asked
    assert counter.reads == 0, counter
    assert counter.writes == WRITE_TRANSACTIONS, counter
    assert len(counter.statements) <= STATEMENTS, counter.statements

    # A wrong answer costs the same: the polite complaint and the question again.
    counter.reset()
    said = await desk.say(case.room_id, "Skövdeee")
    assert "Fråga 3 av" in said.text
    assert counter.writes == WRITE_TRANSACTIONS, counter


async def test_a_summary_is_read_while_another_transaction_writes(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    """Read-only work takes no write lock: on SQLite a summary is answered while a
    writer holds the lock (with BEGIN IMMEDIATE it would wait for it)."""
    desk = desk_with_readers(engine, tmp_path)
    case = await desk.open("lvu6")
    assert case.room_id is not None
    await desk.say(case.room_id, "Test Testsson")

    writer_holds = asyncio.Event()
    release = asyncio.Event()

    async def long_writer() -> None:
        async with desk.sessions() as session, session.begin():
            from storage import repo

            await repo.set_state(session, key="test.hold", value="1")
            writer_holds.set()
            await release.wait()

    holder = asyncio.create_task(long_writer())
    await writer_holds.wait()
    try:
        before = len(desk.messenger.sent)
        await asyncio.wait_for(
            desk.dispatcher.handle(
                IncomingMessage(
                    room_id=case.room_id, sender=ANNA, event_id="$summary", body="!sammanfattning"
                )
            ),
            timeout=10,
        )
        replies = [m.text for _, m in desk.messenger.sent[before:]]
        assert any("Test Testsson" in text for text in replies), replies
    finally:
        release.set()
        await holder
