"""A worker's answers under attack (issue 10): edits and redactions by the wrong
person, invisible characters that disguise text, and a database error that must not
put an answer into the log.

The Matrix side runs over the real Synapse with the bot as a real process (an edit
and a redaction are Matrix events); the rules behind it run on a real dispatcher and
a real, migrated database (SQLite and PostgreSQL) with the in-memory messenger.
"""

from __future__ import annotations

import itertools
import logging
import urllib.parse
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.logs import setup_logging
from bot.synapse_local import LocalSynapse
from config import load_settings
from handlers.dialogue import DialogueState
from handlers.fields import InvalidAnswer, parse_answer, strip_invisible
from handlers.messenger import IncomingMessage, IncomingRedaction
from storage import create_engine, repo, session_factory
from storage import handover as execution_store
from storage.models import AuditEntry, Case
from tests.conftest import BotFactory, UserFactory
from tests.test_bot_matrix import join_duty_room, open_case
from tests.test_handover import (
    Office,
    make_office,  # noqa: F401 - its fixture, used by name
)
from tests.test_report_matrix import Worker
from tests.test_reports import ANNA, BO, INTERNAL_ERROR, Desk, Sessions, write_settings
from tests.test_signing_api import MakeEnv, dev_pki, make_env  # noqa: F401 - fixtures

#: Every invisible format character the issue names, and a few more of the kind.
INVISIBLE = (
    "\u202a\u202b\u202c\u202d\u202e"  # bidi embeddings and overrides
    "\u2066\u2067\u2068\u2069"  # bidi isolates
    "\u200b\u200c\u200d\u2060\ufeff"  # zero-width space, (non-)joiner, word joiner, BOM
    "\u200e\u200f\u061c"  # left-to-right, right-to-left and Arabic letter marks
    "\u00ad"  # soft hyphen
)

#: A form of its own: a required question, an optional one, two more required.
FORM = """
id = "harda"
version = 1
title = "Härdning"
decision_type = "Test"
legal_reference = "Ingen"
next_step = "Inget"
description = "Fyra frågor, en frivillig."

[[fields]]
id = "namn"
type = "text"
label = "Namn"

[[fields]]
id = "notering"
type = "text"
label = "Notering"
required = false

[[fields]]
id = "plats"
type = "text"
label = "Plats"

[[fields]]
id = "slut"
type = "text"
label = "Sist"
"""

_events = itertools.count(1)
_folders = itertools.count(1)


# -- helpers ------------------------------------------------------------------------------


@pytest.fixture
def desk(sessions: Sessions, tmp_path: Path) -> Desk:
    folder = tmp_path / f"config{next(_folders)}"
    return Desk(write_settings(folder, extra_form=FORM), sessions)


async def said(
    dispatcher_of: Desk | Office,
    room: str,
    body: str,
    *,
    sender: str = ANNA,
    replaces: str | None = None,
) -> tuple[str, list[str]]:
    """Send a message; (its event id, what the bot said in the room in answer)."""
    sent = dispatcher_of.messenger.sent
    before = len(sent)
    event_id = f"$hard{next(_events)}"
    await dispatcher_of.dispatcher.handle(
        IncomingMessage(
            room_id=room, sender=sender, event_id=event_id, body=body, replaces=replaces
        )
    )
    return event_id, [m.text for r, m in sent[before:] if r == room]


async def redacted(
    dispatcher_of: Desk | Office,
    room: str,
    redacts: str,
    *,
    sender: str = ANNA,
    moderator: bool = False,
    event_id: str | None = None,
) -> list[str]:
    """A redaction of ``redacts``; what the bot said in the room in answer."""
    sent = dispatcher_of.messenger.sent
    before = len(sent)
    await dispatcher_of.dispatcher.handle_redaction(
        IncomingRedaction(
            room_id=room,
            sender=sender,
            event_id=event_id or f"$redaction{next(_events)}",
            redacts=redacts,
            moderator=moderator,
        )
    )
    return [m.text for r, m in sent[before:] if r == room]


async def harda_case(desk: Desk) -> tuple[Case, str]:
    case = await desk.open("harda")
    assert case.room_id is not None
    await desk.add_participant(case, BO)
    return case, case.room_id


def joined(texts: list[str]) -> str:
    return "\n".join(texts)


# -- invisible characters ------------------------------------------------------------------


@pytest.mark.parametrize("character", list(INVISIBLE))
def test_every_invisible_format_character_is_stripped(character: str) -> None:
    assert strip_invisible(f"Tol{character}van") == "Tolvan"


def test_legitimate_text_is_kept_and_zwj_sequences_fall_apart_as_documented() -> None:
    kept = "Åsa Öberg-Ärlig, é, ñ, 日本, Привет, 😀 ❤️ 1/2 kl. 03:15\nrad två"
    assert strip_invisible(kept) == kept
    # A report is legal text: the joiner goes even inside an emoji sequence.
    assert strip_invisible("👩\u200d⚕\ufe0f") == "👩⚕\ufe0f"


def test_a_bidi_override_cannot_disguise_an_answer_of_any_text_type(desk: Desk) -> None:
    spec = desk.settings.forms["harda"].field("namn")
    disguised = "\u202eznalsoT\u202c Tol\u200bvan\u2066\u2069"
    answer = parse_answer(spec, disguised, lang="sv", municipalities=(), now=desk.clock.now)
    assert answer.value == answer.display == "znalsoT Tolvan"
    # Nothing but invisible characters is no answer at all.
    with pytest.raises(InvalidAnswer, match=r"field\.empty"):
        parse_answer(spec, "\u200b\u202e\ufeff", lang="sv", municipalities=(), now=desk.clock.now)


async def test_a_stored_and_echoed_answer_has_no_invisible_characters(desk: Desk) -> None:
    case, room = await harda_case(desk)
    _, replies = await said(desk, room, f"Kalle{INVISIBLE}Anka")
    assert "Fråga 2 av 4" in joined(replies)
    state = await desk.state(case)
    assert state.answers["namn"]["value"] == "KalleAnka"
    _, summary = await said(desk, room, "!sammanfattning")
    assert "KalleAnka" in joined(summary)
    assert not set(INVISIBLE) & set(joined(summary))
    # An unknown form named with invisible characters is not echoed with them.
    other = await desk.open()
    assert other.room_id is not None
    _, replies = await said(desk, other.room_id, "x\u202eyz")
    assert "xyz" in joined(replies) and "\u202e" not in joined(replies)


# -- edits ----------------------------------------------------------------------------------


async def test_an_edit_by_another_participant_is_refused_and_the_answer_stays(
    desk: Desk,
) -> None:
    case, room = await harda_case(desk)
    answer, _ = await said(desk, room, "Anna Andersson")
    _, replies = await said(desk, room, "Bo Bosson", sender=BO, replaces=answer)
    assert "Bara den som skrev ett svar kan ändra det" in joined(replies)
    assert "fråga 1" in joined(replies)
    state = await desk.state(case)
    assert state.answers["namn"]["value"] == "Anna Andersson"
    assert state.answers["namn"]["by"] == ANNA
    # The author's own edit still counts.
    _, replies = await said(desk, room, "Anna Berg", replaces=answer)
    assert "ändrat till: Anna Berg" in joined(replies)
    assert (await desk.state(case)).answers["namn"]["value"] == "Anna Berg"


# -- redactions -----------------------------------------------------------------------------


async def test_a_redacted_required_answer_is_removed_and_asked_again(desk: Desk) -> None:
    case, room = await harda_case(desk)
    first, _ = await said(desk, room, "Anna Andersson")
    await said(desk, room, "!hoppa")
    await said(desk, room, "Skövde")
    assert desk.last_question(room) == 4
    replies = await redacted(desk, room, first)
    assert "Svaret på fråga 1 togs bort" in joined(replies)
    assert "Fråga 1 av 4" in joined(replies)
    assert "Anna Andersson" not in joined(replies)
    state = await desk.state(case)
    assert "namn" not in state.answers and state.current == "namn"
    # Answered again, the dialogue goes on where it was.
    _, replies = await said(desk, room, "Anna Berg")
    assert "Fråga 4 av 4" in joined(replies)
    # Which question lost its answer is on the audit trail, never what it was.
    audit = [(e.action, e.detail) for e in await _audit(desk, case)]
    assert (
        "answer.changed",
        {"question": 1, "field": "namn", "form": "harda", "removed": True},
    ) in audit


async def _audit(desk: Desk, case: Case) -> list[AuditEntry]:
    async with desk.sessions() as session:
        return await repo.list_audit(session, case_id=case.id)


async def test_a_redacted_optional_answer_is_cleared_and_the_worker_told(desk: Desk) -> None:
    case, room = await harda_case(desk)
    await said(desk, room, "Anna Andersson")
    note, _ = await said(desk, room, "Ringde kl 02")
    assert desk.last_question(room) == 3
    replies = await redacted(desk, room, note)
    assert "Svaret på fråga 2 togs bort" in joined(replies)
    assert "obesvarad" in joined(replies)
    state = await desk.state(case)
    assert "notering" not in state.answers and "notering" in state.skipped
    assert state.current == "plats"  # not asked again


async def test_a_redacted_later_answer_is_asked_when_the_dialogue_gets_there(desk: Desk) -> None:
    _, room = await harda_case(desk)
    await said(desk, room, "Anna Andersson")
    await said(desk, room, "!hoppa")
    place, _ = await said(desk, room, "Skövde")
    await said(desk, room, "!ändra 1")
    replies = await redacted(desk, room, place)
    assert "Svaret på fråga 3 togs bort" in joined(replies)
    assert "Fråga 1 av 4" in joined(replies)  # still where the worker was
    _, replies = await said(desk, room, "Anna Berg")
    assert "Fråga 3 av 4" in joined(replies)


async def test_only_the_author_or_a_moderator_removes_an_answer(desk: Desk) -> None:
    case, room = await harda_case(desk)
    answer, _ = await said(desk, room, "Anna Andersson")
    replies = await redacted(desk, room, answer, sender=BO)
    assert "Bara den som skrev ett svar, eller en moderator" in joined(replies)
    assert (await desk.state(case)).answers["namn"]["value"] == "Anna Andersson"
    replies = await redacted(desk, room, answer, sender=BO, moderator=True)
    assert "Svaret på fråga 1 togs bort" in joined(replies)
    assert "namn" not in (await desk.state(case)).answers


async def test_a_redaction_handled_twice_changes_nothing_the_second_time(desk: Desk) -> None:
    case, room = await harda_case(desk)
    answer, _ = await said(desk, room, "Anna Andersson")
    await redacted(desk, room, answer, event_id="$the-redaction")
    await said(desk, room, "Anna Berg")
    version = (await desk.report(case)).version
    desk.restart()
    # The same redaction delivered again after a restart, and a second redaction of
    # the same message: the new answer stays, nothing is said, nothing is saved.
    assert await redacted(desk, room, answer, event_id="$the-redaction") == []
    assert await redacted(desk, room, answer) == []
    assert (await desk.report(case)).version == version
    assert (await desk.state(case)).answers["namn"]["value"] == "Anna Berg"


async def test_a_redaction_after_submission_leaves_the_report_as_sent(desk: Desk) -> None:
    case, room = await harda_case(desk)
    answer, _ = await said(desk, room, "Anna Andersson")
    for reply in ("!hoppa", "Skövde", "Slut"):
        await said(desk, room, reply)
    _, replies = await said(desk, room, "!skicka")
    assert (await desk.case(case)).status == "awaiting_signature", replies
    replies = await redacted(desk, room, answer)
    assert "står kvar" in joined(replies)
    assert (await desk.state(case)).answers["namn"]["value"] == "Anna Andersson"
    # A removed remark that answered nothing gets no reply at all.
    remark, _ = await said(desk, room, "Tack!")
    assert await redacted(desk, room, remark) == []


# -- the execution record's questions --------------------------------------------------------


async def test_execution_answers_take_only_their_authors_edits_and_redactions(
    make_office: Callable[..., Office],  # noqa: F811 - the fixture imported above
) -> None:
    office = make_office()
    case = await office.signed_case()
    room = case.room_id
    assert room is not None
    async with office.sessions() as session, session.begin():
        await repo.add_participant(
            session, case_id=case.id, user_id=BO, role="worker", now=office.clock()
        )
    await said(office, room, "!verkställt")
    await said(office, room, "nu")
    place, replies = await said(office, room, "jourhem i Sk\u200böv\u202ede")
    assert "Fråga 3 av" in joined(replies)

    async def state() -> DialogueState:
        async with office.sessions() as session:
            row = await execution_store.get_execution(session, case_id=case.id)
        assert row is not None
        return DialogueState.from_json(row.state)

    assert (await state()).answers["plats"]["value"] == "jourhem i Skövde"
    # Bo edits Anna's answer: refused, it stays.
    _, replies = await said(office, room, "häktet", sender=BO, replaces=place)
    assert "Bara den som skrev ett svar kan ändra det" in joined(replies)
    assert (await state()).answers["plats"]["value"] == "jourhem i Skövde"
    # Bo removes it: refused. Anna removes it: gone, and the question asked again.
    replies = await redacted(office, room, place, sender=BO)
    assert "står kvar" in joined(replies)
    replies = await redacted(office, room, place)
    assert "Svaret på fråga 2 togs bort" in joined(replies)
    assert "Fråga 2 av" in joined(replies)
    assert "plats" not in (await state()).answers
    _, replies = await said(office, room, "jourhem i Mariestad")
    assert "Fråga 3 av" in joined(replies)
    assert (await state()).answers["plats"]["value"] == "jourhem i Mariestad"


# -- a database error during an answer ---------------------------------------------------------

MARKER = "Hemligt7Q3XZ"


@pytest.fixture
def bot_logging() -> Iterator[None]:
    """The bot's own logging set-up at DEBUG (as ``--log-level debug`` gives it)."""
    root = logging.getLogger()
    level = root.level
    setup_logging("DEBUG")
    try:
        yield
    finally:
        for handler in [h for h in root.handlers if h.get_name() == "socialjour"]:
            root.removeHandler(handler)
        root.setLevel(level)


async def test_a_database_error_during_an_answer_logs_no_answer_and_loses_nothing(
    engine: AsyncEngine,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    bot_logging: None,
) -> None:
    desk = Desk(write_settings(tmp_path / "config", extra_form=FORM), session_factory(engine))
    case, room = await harda_case(desk)
    postgres = engine.dialect.name == "postgresql"
    # A real refusal by the database of a report holding the marker: a constraint
    # (PostgreSQL quotes the failing row in its error) or a trigger (SQLite).
    fault = (
        "ALTER TABLE reports ADD CONSTRAINT hardening_fault "
        f"CHECK (strpos(state::text, '{MARKER}') = 0)"
        if postgres
        else "CREATE TRIGGER hardening_fault BEFORE UPDATE ON reports "
        f"WHEN instr(NEW.state, '{MARKER}') > 0 BEGIN SELECT RAISE(ABORT, 'refused'); END"
    )
    async with engine.begin() as connection:
        await connection.execute(text(fault))

    caplog.set_level(logging.DEBUG)
    for name in ("sqlalchemy", "sqlalchemy.engine", "sqlalchemy.pool", "asyncpg"):
        caplog.set_level(logging.DEBUG, logger=name)
    # The marker is the whole answer: PostgreSQL quotes each value of the failing row
    # up to 64 bytes, and an answer early in the report is within them.
    _, replies = await said(desk, room, MARKER)
    assert INTERNAL_ERROR in joined(replies)  # told politely, at once
    assert any(r.levelno >= logging.ERROR for r in caplog.records)  # and it was logged
    # Everything logged, as formatted when it was logged (tracebacks included).
    assert MARKER not in caplog.text
    assert "namn" not in (await desk.state(case)).answers

    repair = (
        "ALTER TABLE reports DROP CONSTRAINT hardening_fault"
        if postgres
        else "DROP TRIGGER hardening_fault"
    )
    async with engine.begin() as connection:
        await connection.execute(text(repair))
    caplog.clear()
    # Nothing was lost: sent again, the answer is taken.
    _, replies = await said(desk, room, MARKER)
    assert "Fråga 2 av 4" in joined(replies)
    assert (await desk.state(case)).answers["namn"]["value"] == MARKER


# -- over Matrix --------------------------------------------------------------------------------


def invite_as_the_bot(
    synapse: LocalSynapse, bot_user: str, password: str, room: str, user: str
) -> None:
    """Invite ``user`` with the bot's own power (a short-lived extra login, logged out)."""
    token = str(synapse.login(bot_user[1:].split(":", 1)[0], password)["access_token"])
    try:
        synapse.request(
            "POST",
            f"/_matrix/client/v3/rooms/{urllib.parse.quote(room)}/invite",
            {"user_id": user},
            token=token,
        )
    finally:
        synapse.request("POST", "/_matrix/client/v3/logout", {}, token=token)


@pytest.mark.integration
async def test_over_matrix_edits_redactions_and_invisible_characters(
    make_user: UserFactory, make_bot: BotFactory, synapse: LocalSynapse
) -> None:
    anna = await make_user("anna")
    bo = await make_user("bo")
    bot = make_bot(members=[anna.user_id])
    duty = await join_duty_room(anna, bot.duty_alias)
    _, room = await open_case(anna, duty)
    w = Worker(anna, room)
    await anna.wait_message(room, contains="Vilket beslut gäller ärendet?")
    await w.vote(None, ["lvu6"], "Fråga 1 av 27")

    # Bo becomes a participant of the case and is invited to its room.
    settings = load_settings(bot.config_path, environ={"SOCIALJOUR_MATRIX_PASSWORD": "x"})
    engine = create_engine(settings.storage.database_url)
    try:
        async with session_factory(engine)() as session, session.begin():
            case = await repo.get_case_by_room(session, room_id=room)
            assert case is not None
            await repo.add_participant(
                session, case_id=case.id, user_id=bo.user_id, role="worker", now=datetime.now(UTC)
            )
            case_id = case.id
    finally:
        await engine.dispose()
    # The bot learns of a participant added behind its back at start-up (its room
    # guard would otherwise turn Bo away as an intruder).
    bot.process.stop()
    bot.process.start()
    password = bot.process.env["SOCIALJOUR_MATRIX_PASSWORD"]
    invite_as_the_bot(synapse, bot.user_id, password, room, bo.user_id)
    await bo.wait(lambda: room in bo.invites)
    await bo.join(room)

    # An answer full of invisible characters is stored and echoed without them.
    name = await w.say("Tol\u200bvan \u202eTol\u2066vansson\ufeff", "Fråga 2 av 27")
    # Bo edits Anna's answer: refused, politely, in Swedish.
    mark = w.mark()
    await bo.edit(room, name, "Bo Bosson")
    refusal = await anna.wait_message(room, contains="Bara den som skrev", after=mark)
    assert "fråga 1" in refusal.body

    # Anna removes her answer to question 2: it is gone and asked again.
    number = await w.say("20160412-2380", "Fråga 3 av 27")
    mark = w.mark()
    await anna.client.room_redact(room, number)
    removed = await anna.wait_message(room, contains="Svaret på fråga 2 togs bort", after=mark)
    assert "20160412" not in removed.body
    await anna.wait_message(room, contains="Fråga 2 av 27", after=mark)
    await w.say("20160412-2380", "Fråga 3 av 27")

    mark = w.mark()
    await anna.send(room, "!sammanfattning")
    summary = await anna.wait_message(room, contains="Sammanfattning", after=mark)
    assert "Tolvan Tolvansson" in summary.body and "Bo Bosson" not in summary.body
    shown = summary.body + str(summary.event.source["content"].get("formatted_body", ""))
    assert not set(INVISIBLE) & set(shown)

    engine = create_engine(settings.storage.database_url)
    try:
        async with session_factory(engine)() as session:
            report = await repo.get_report(session, case_id=case_id)
    finally:
        await engine.dispose()
    assert report is not None
    answers = DialogueState.from_json(report.state).answers
    assert answers["namn"]["value"] == "Tolvan Tolvansson"
    assert answers["personnummer"]["value"] == "20160412-2380"
    assert "Tolvan" not in bot.process.log_text()


# -- the signer's decline reason ----------------------------------------------------------------


async def test_a_decline_reason_is_kept_and_shown_without_invisible_characters(
    sessions: Sessions,
    make_env: MakeEnv,  # noqa: F811 - the fixture imported above
) -> None:
    env = await make_env(sessions)
    sub = await env.submit()
    cookie = await env.identify(sub.token)
    # Nothing but invisible characters is no reason at all.
    empty = await env.decline(sub.token, "\u200b\u202e\ufeff", cookie)
    assert empty.status == 400
    answer = await env.decline(sub.token, "Fel \u202eparagraf\u200b, se\u2066 LVU 2 §.", cookie)
    assert answer.status == 200, answer.body
    await env.posted()
    request = await env.request(sub.token)
    assert request.decision_reason == "Fel paragraf, se LVU 2 §."
    told = env.messenger.in_room(sub.room_id)[-1]
    assert "Fel paragraf, se LVU 2 §." in told.text
    assert not set(INVISIBLE) & set(told.text)
