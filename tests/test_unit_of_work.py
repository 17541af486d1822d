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
#: locate, authorise, load, step, save, what is asked next). No other transaction.
WRITE_TRANSACTIONS = 1
#: When the next question has a poll, one small write more: the poll's id.
WITH_POLL = 2
#: Statements of an answer followed by a poll (7 on both backends when this was
#: written: the claim, the case with its participants, the report, its update; the
#: poll id's read and update; 10 since each answer is on the audit trail (which
#: question): the chain's head locked, the row inserted, the head moved; 9 since the
#: participants come in the case's statement, joined, instead of a second one).
STATEMENTS = 9


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


#: A form of its own, so changes to the real templates do not move these questions.
FORM = """
id = "budget"
version = 1
title = "Budget"
decision_type = "Test"
legal_reference = "Ingen"
next_step = "Inget"
description = "Fyra frågor."

[[fields]]
id = "namn"
type = "text"
label = "Namn"

[[fields]]
id = "plats"
type = "text"
label = "Plats"

[[fields]]
id = "val"
type = "choice"
label = "Ett val"
choices = [{ value = "a", label = "Alfa" }, { value = "b", label = "Beta" }]

[[fields]]
id = "slut"
type = "text"
label = "Sist"
"""


def desk_with_readers(engine: AsyncEngine, folder: Path) -> Desk:
    desk = Desk(write_settings(folder, extra_form=FORM), session_factory(engine))
    desk.dispatcher = Dispatcher(
        settings=desk.settings,
        sessions=desk.sessions,
        messenger=desk.messenger,
        clock=desk.clock,
        readers=read_session_factory(engine),
    )
    desk.dispatcher.duty_room_id = DUTY
    return desk


async def test_an_answer_is_one_write_transaction(engine: AsyncEngine, tmp_path: Path) -> None:
    desk = desk_with_readers(engine, tmp_path)
    case = await desk.open("budget")
    room = case.room_id
    assert room is not None

    # An answer followed by a question in words: one write transaction, nothing more.
    counter = count(engine)
    said = await desk.say(room, "Anna")
    assert "Fråga 2 av 4" in said.text  # the answer was taken and the next question asked
    assert (counter.reads, counter.writes) == (0, WRITE_TRANSACTIONS), counter

    # Followed by a poll: one small write more, for the poll's id.
    counter.reset()
    said = await desk.say(room, "Skövde")
    assert "Fråga 3 av 4" in said.text
    assert (counter.reads, counter.writes) == (0, WITH_POLL), counter
    assert len(counter.statements) <= STATEMENTS, counter.statements

    # A wrong answer costs the same: the polite complaint and the question again.
    counter.reset()
    said = await desk.say(room, "Gamma")
    assert "Fråga 3 av 4" in said.text
    assert (counter.reads, counter.writes) == (0, WITH_POLL), counter


async def test_a_summary_is_read_while_another_transaction_writes(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    """Read-only work takes no write lock: on SQLite a summary is answered while a
    writer holds the lock (with BEGIN IMMEDIATE it would wait for it)."""
    desk = desk_with_readers(engine, tmp_path)
    case = await desk.open("budget")
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
