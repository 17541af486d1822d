"""After the signature: ``!verkställt``, ``!överlämna`` and ``!mottaget`` (issue 9 §2).

A real dispatcher on a real, migrated database (SQLite and PostgreSQL), the
in-memory messenger standing in for Matrix (it deduplicates idempotency keys as a
homeserver does) and a clock the test moves by hand. A signed case is set up
directly in the database (report submitted, a signed decision) so each test starts
where the worker types ``!verkställt``.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
from pyhanko.pdf_utils.reader import PdfFileReader
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from config import Settings, load_settings
from handlers import deadlines, dialogue
from handlers.case_state import transition
from handlers.dialogue import DialogueState
from handlers.dispatcher import Dispatcher
from handlers.messenger import IncomingMessage, IncomingVote, MemoryMessenger, Message
from handlers.workdays import SWEDEN
from signing.document import render_decision
from storage import audit as audit_store
from storage import decisions as decisions_repo
from storage import handover as store
from storage import records, repo
from storage.models import Case
from tests.test_signing_document import pdf_text

Sessions = async_sessionmaker[AsyncSession]

ANNA = "@anna:example.org"  # duty worker and lead
BO = "@bo:example.org"  # duty worker
CECILIA = "@cecilia:example.org"  # Skövde's intake
DORA = "@dora:example.org"  # Mariestad's intake
DUTY = "!duty:test"
INTAKE = "!intake-skovde:test"
INTAKE_M = "!intake-mariestad:test"
NAME, PNR = "Test Testsson", "20160412-2380"
#: Thursday 2 April 2026, 21:00 in Stockholm: the decision is signed (skärtorsdag;
#: långfredag, påskafton, påskdagen and annandag påsk follow).
SIGNED_AT = datetime(2026, 4, 2, 19, 0, tzinfo=UTC)

CONFIG = """
[matrix]
homeserver = "http://127.0.0.1:8008"
user_id = "@socialjour:example.org"
password = {{ env = "SOCIALJOUR_MATRIX_PASSWORD" }}

[storage]
data_dir = "data"

[duty]
room_alias = "#socialjour:example.org"
members = ["@anna:example.org", "@bo:example.org"]
leads = ["@anna:example.org"]
language = "{language}"

[[municipalities]]
id = "skovde"
name = "Skövde kommun"
intake_room_alias = "#mottagning-skovde:example.org"
intake_members = ["@cecilia:example.org"]

[[municipalities]]
id = "mariestad"
name = "Mariestads kommun"
intake_room_alias = "#mottagning-mariestad:example.org"
intake_members = ["@dora:example.org"]
"""


class FakeClock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def at(self, moment: datetime) -> None:
        self.now = moment


def local(year: int, month: int, day: int, hour: int, minute: int = 0) -> datetime:
    """A Stockholm wall-clock time (CEST in April, CET in March) as UTC."""
    return datetime(year, month, day, hour, minute, tzinfo=SWEDEN).astimezone(UTC)


_events = itertools.count(1)


@dataclass
class Office:
    """One installation: the dispatcher, its messenger (the homeserver) and clock."""

    settings: Settings
    sessions: Sessions
    clock: FakeClock = field(default_factory=lambda: FakeClock(SIGNED_AT))
    messenger: MemoryMessenger = field(default_factory=MemoryMessenger)
    dispatcher: Dispatcher = field(init=False)

    def __post_init__(self) -> None:
        self.restart()

    def restart(self) -> Dispatcher:
        """A new dispatcher on the same database and homeserver, as after a restart."""
        self.dispatcher = Dispatcher(
            settings=self.settings,
            sessions=self.sessions,
            messenger=self.messenger,
            clock=self.clock,
        )
        self.dispatcher.duty_room_id = DUTY
        self.dispatcher.intake_rooms = {INTAKE: "skovde", INTAKE_M: "mariestad"}
        return self.dispatcher

    async def say(
        self, room: str, body: str, *, sender: str = ANNA, in_reply_to: str | None = None
    ) -> list[Message]:
        """Send a message; what the bot said in that room in answer."""
        before = len(self.messenger.sent)
        await self.dispatcher.handle(
            IncomingMessage(
                room_id=room,
                sender=sender,
                event_id=f"$in{next(_events)}",
                body=body,
                in_reply_to=in_reply_to,
            )
        )
        return [m for r, m in self.messenger.sent[before:] if r == room]

    async def case(self, case_id: int) -> Case:
        async with self.sessions() as session:
            found = await repo.get_case(session, case_id=case_id)
        assert found is not None
        return found

    async def audit(self, case_id: int) -> list[tuple[str, dict[str, Any] | None]]:
        async with self.sessions() as session:
            return [(e.action, e.detail) for e in await repo.list_audit(session, case_id=case_id)]

    def sent_to(self, room: str) -> list[Message]:
        return [m for r, m in self.messenger.sent if r == room]

    def files_in(self, room: str) -> list[tuple[str, bytes]]:
        return [(name, data) for r, name, data in self.messenger.files if r == room]

    async def signed_case(self, *, form_id: str = "lvu6", signed_at: datetime = SIGNED_AT) -> Case:
        """``!ny``, then (in the database) a submitted report and a signed decision."""
        self.clock.at(signed_at - timedelta(minutes=40))
        await self.say(DUTY, f"!ny {form_id}")
        async with self.sessions() as session:
            case = (await repo.list_cases(session))[-1]
        form = self.settings.forms[form_id]
        state = DialogueState(form_id=form_id)
        for field_id, value, shown in (
            ("namn", NAME, NAME),
            ("personnummer", PNR, PNR),
            ("hemkommun", "skovde", "Skövde kommun"),
            ("forslag", "NN omhändertas omedelbart.", "NN omhändertas omedelbart."),
        ):
            state.answers[field_id] = {"value": value, "display": shown, "by": ANNA, "at": "x"}
        submitted = signed_at - timedelta(minutes=20)
        report = dialogue.build_report(
            form, state, case_number=case.number, submitted_by=ANNA, at=submitted
        )
        pdf = render_decision(
            report,
            form,
            municipality_name="Skövde kommun",
            signer_name="Dag Dagsson",
            signer_role="ordförande",
            decided_at=signed_at,
        )
        async with self.sessions() as session, session.begin():
            stored = await repo.get_report(session, case_id=case.id)
            assert stored is not None
            assert await repo.submit_report(
                session,
                case_id=case.id,
                expected_version=stored.version,
                report=report,
                now=submitted,
            )
            await repo.set_case_municipality(session, case_id=case.id, municipality_id="skovde")
            await transition(
                session,
                case_id=case.id,
                old="drafting",
                new="awaiting_signature",
                actor=ANNA,
                now=submitted,
            )
            request = await decisions_repo.create_signing_request(
                session,
                case_id=case.id,
                token_hash=hashlib.sha256(case.number.encode()).hexdigest(),
                signer_user_id="@dag:example.org",
                signer_name="Dag Dagsson",
                signer_role="ordförande",
                municipality_id="skovde",
                document=pdf,
                document_sha256=hashlib.sha256(pdf).hexdigest(),
                now=submitted,
                expires_at=submitted + timedelta(hours=12),
            )
            assert await decisions_repo.decide(
                session,
                request_id=request.id,
                status="signed",
                now=signed_at,
                signed_document=pdf,
                signed_sha256=hashlib.sha256(pdf).hexdigest(),
            )
            await transition(
                session,
                case_id=case.id,
                old="awaiting_signature",
                new="signed",
                actor="@dag:example.org",
                now=signed_at,
            )
        self.clock.at(signed_at + timedelta(minutes=30))
        return await self.case(case.id)

    async def execute(self, case: Case, *, police: str = "ja") -> None:
        """``!verkställt`` answered through to the record."""
        room = case.room_id
        assert room is not None
        for answer in ("!verkställt", "nu", "jourhem i Skövde", police, "1", "nu", "jag", "!hoppa"):
            await self.say(room, answer)
        said = await self.say(room, "!verkställt")
        assert "Verkställigheten är registrerad" in said[-1].text, said

    async def handed_over(self, *, signed_at: datetime = SIGNED_AT) -> Case:
        case = await self.signed_case(signed_at=signed_at)
        await self.execute(case)
        await self.say(case.room_id or "", "!överlämna")
        return await self.case(case.id)


@pytest.fixture
def make_office(sessions: Sessions, tmp_path: Path) -> Callable[..., Office]:
    def make(*, language: str = "sv") -> Office:
        folder = tmp_path / f"config-{language}"
        folder.mkdir(exist_ok=True)
        path = folder / "config.toml"
        path.write_text(textwrap.dedent(CONFIG.format(language=language)), encoding="utf-8")
        settings = load_settings(path, environ={"SOCIALJOUR_MATRIX_PASSWORD": "secret"})
        return Office(settings, sessions)

    return make


@pytest.fixture
def office(make_office: Callable[..., Office]) -> Office:
    return make_office()


@pytest.fixture
def clocks(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """The clocks started, as :func:`handlers.deadlines.start_clocks` is called."""
    calls: list[dict[str, Any]] = []
    real = deadlines.start_clocks

    async def record(session: AsyncSession, **kwargs: Any) -> None:
        # What the caller's transaction holds at that moment: the status it wrote.
        status = await session.scalar(select(Case.status).where(Case.id == kwargs["case_id"]))
        calls.append({**kwargs, "status": status})
        await real(session, **kwargs)

    monkeypatch.setattr(deadlines, "start_clocks", record)
    return calls


QUESTION = re.compile(r"Fråga (\d+) av (\d+)")


def asked(messages: list[Message]) -> int | None:
    """The number of the last question in ``messages``."""
    numbers = [int(m[1]) for message in messages for m in [QUESTION.search(message.text)] if m]
    return numbers[-1] if numbers else None


# -- !verkställt ----------------------------------------------------------------------------


async def test_execution_questions_are_recorded_and_move_the_case_to_executed(
    office: Office, clocks: list[dict[str, Any]]
) -> None:
    case = await office.signed_case()
    room = case.room_id
    assert room is not None

    said = await office.say(room, "!verkställt")
    assert "Verkställighet – ärende" in said[0].text and asked(said) == 1
    # The police question cites the statute of the case's law: LVU 43 §.
    assert asked(await office.say(room, "nu")) == 2
    police = await office.say(room, "jourhem i Skövde")
    assert asked(police) == 3 and "43 § LVU" in police[-1].text
    assert office.messenger.polls[-1][1].options == (("ja", "Ja"), ("nej", "Nej"))
    # A vote on the poll answers it like text.
    poll_id = office.messenger.polls[-1][2]
    await office.dispatcher.handle_vote(
        IncomingVote(room, ANNA, f"$vote{next(_events)}", poll_id, ("nej",))
    )
    assert asked(office.sent_to(room)) == 4
    assert asked(await office.say(room, "Ja")) == 5  # guardians informed: when?
    assert asked(await office.say(room, "idag 21:25")) == 7  # 6 (why not) is not asked
    assert asked(await office.say(room, "jag")) == 8
    done = await office.say(room, "!hoppa")
    assert "Alla frågor om verkställigheten" in done[-1].text
    assert "jourhem i Skövde" in done[-1].text and ANNA in done[-1].text
    assert (await office.case(case.id)).status == "signed"  # not before the worker confirms

    said = await office.say(room, "!verkställt")
    assert "Verkställigheten är registrerad" in said[-1].text
    assert "!överlämna" in said[-1].text
    assert (await office.case(case.id)).status == "executed"
    async with office.sessions() as session:
        row = await store.get_execution(session, case_id=case.id)
    assert row is not None and row.record is not None
    assert row.executed_at == office.clock.now.replace(second=0, microsecond=0)
    answers = {a["id"]: a["value"] for a in row.record["answers"]}
    assert answers["plats"] == "jourhem i Skövde" and answers["polis"] is False
    assert answers["verkstallt_av"] == ANNA and answers["underrattade"] == "ja"
    # The clocks that count from the execution start in the same transaction, at the
    # time answered (8 § LVU: four weeks from the day the custody was carried out).
    started = [c for c in clocks if c["trigger"] == "execution"]
    assert [(c["case_id"], c["at"], c["status"]) for c in started] == [
        (case.id, row.executed_at, "executed")
    ]
    # The audit trail says which question was answered, never the answer.
    trail = await office.audit(case.id)
    answered = [
        d
        for action, d in trail
        if action == "answer.given" and d and d.get("form") == "verkstallighet_lvu6"
    ]
    assert {d["field"] for d in answered} >= {"tidpunkt", "plats", "polis", "verkstallt_av"}
    assert {d["question"] for d in answered} >= {1, 2, 3, 7}
    assert "jourhem" not in json.dumps(trail) and ANNA not in json.dumps([d for _, d in trail])
    actions = [action for action, _ in trail]
    assert actions.index("execution.recorded") < actions.index("status.executed")
    # And again: nothing changes.
    again = await office.say(room, "!verkställt")
    assert "redan registrerad" in again[-1].text


async def test_bad_answers_are_explained_and_the_question_asked_again(office: Office) -> None:
    case = await office.signed_case()
    room = case.room_id or ""
    await office.say(room, "!verkställt")
    for bad, why in (
        ("i natt", "Skriv"),  # not a time at all
        ("2026-04-02 25:00", "Skriv"),
        ("2099-01-01 10:00", "har inte hänt än"),
        ("2026-04-02 20:30", "före beslutet"),  # signed at 21:00 Stockholm time
    ):
        said = await office.say(room, bad)
        assert why in said[0].text, (bad, said[0].text)
        assert asked(said) == 1, bad
    async with office.sessions() as session:
        row = await store.get_execution(session, case_id=case.id)
    assert row is not None and row.state["answers"] == {}
    assert asked(await office.say(room, "2026-04-02 21:30")) == 2
    # A required question cannot be skipped; a text that is too long is refused.
    said = await office.say(room, "!hoppa")
    assert "obligatorisk" in said[0].text
    said = await office.say(room, "x" * 201)
    assert asked(said) == 2 and "200" in said[0].text
    # The report's commands act on these questions while they are open: back goes to
    # the time, with its answer shown; the summary is the execution's.
    said = await office.say(room, "!tillbaka")
    assert asked(said) == 1 and "2026-04-02 21:30" in said[-1].text
    said = await office.say(room, "!ändra 9")
    assert "1–8" in said[-1].text
    said = await office.say(room, "!ändra 2")
    assert asked(said) == 2
    said = await office.say(room, "!sammanfattning")
    assert "Verkställighet enligt LVU" in said[-1].text and NAME not in said[-1].text
    assert "1. När verkställdes beslutet?" in said[-1].text


async def test_execution_before_it_is_signed_is_refused(office: Office) -> None:
    await office.say(DUTY, "!ny lvu6")
    async with office.sessions() as session:
        case = (await repo.list_cases(session))[-1]
    said = await office.say(case.room_id or "", "!verkställt")
    assert "när beslutet är undertecknat" in said[-1].text
    said = await office.say(case.room_id or "", "!överlämna")
    assert "!verkställt" in said[-1].text


async def test_the_questions_resume_after_a_restart_without_asking_twice(office: Office) -> None:
    case = await office.signed_case(form_id="lvm13")
    room = case.room_id or ""
    await office.say(room, "!verkställt")
    await office.say(room, "nu")
    said = await office.say(room, "sjukhus i Skövde")
    assert asked(said) == 3 and "45 § LVM" in said[-1].text  # LVM's police assistance

    # A crash: the next answer is stored, but its question never goes out.
    real_send = office.messenger.send

    async def broken(room_id: str, message: Message, *, key: str | None = None) -> str:
        raise ConnectionError("homeserver gone")

    office.messenger.send = broken  # type: ignore[method-assign]
    await office.say(room, "nej")
    office.messenger.send = real_send  # type: ignore[method-assign]
    before = len(office.sent_to(room))

    office.restart()
    await office.dispatcher.resume()
    resumed = office.sent_to(room)[before:]
    assert asked(resumed) == 4 and len(resumed) == 1
    await office.dispatcher.resume()  # again: the same key, nothing new
    assert len(office.sent_to(room)) == before + 1
    assert asked(await office.say(room, "2")) == 6  # "Nej, inte än": why not?
    async with office.sessions() as session:
        row = await store.get_execution(session, case_id=case.id)
    assert row is not None
    assert set(row.state["answers"]) == {"tidpunkt", "plats", "polis", "underrattade"}


# -- !överlämna -----------------------------------------------------------------------------


async def test_handover_sends_the_package_and_mentions_the_intake(
    office: Office, tmp_path: Path
) -> None:
    case = await office.signed_case()
    await office.execute(case)
    said = await office.say(case.room_id or "", "!överlämna")
    assert "är överlämnat" in said[-1].text and "Skövde kommun" in said[-1].text
    assert (await office.case(case.id)).status == "handed_over"

    files = office.files_in(INTAKE)
    assert [name for name, _ in files] == [
        f"{case.number}-beslut.pdf",
        f"{case.number}-rapport.pdf",
        f"{case.number}-verkstallighet.pdf",
        f"{case.number}-handelselogg.pdf",
    ]
    texts = {}
    for name, data in files:
        assert data.startswith(b"%PDF")
        PdfFileReader(BytesIO(data))  # parses
        texts[name] = pdf_text(data, tmp_path, name=name)
    assert (
        NAME in texts[f"{case.number}-rapport.pdf"] and PNR in texts[f"{case.number}-rapport.pdf"]
    )
    execution = texts[f"{case.number}-verkstallighet.pdf"]
    assert "jourhem i Skövde" in execution and "polishandräckning" in execution
    timeline = texts[f"{case.number}-handelselogg.pdf"]
    assert "öppnade ärendet" in timeline and "ärendet fick läget ”undertecknat”" in timeline
    assert "besvarade fråga 2" in timeline  # which question, never the answer
    assert NAME not in timeline and PNR not in timeline and "jourhem" not in timeline
    # The signed decision goes as it was sealed.
    async with office.sessions() as session:
        [request] = await decisions_repo.list_signing_requests(session, case_id=case.id)
    assert files[0][1] == request.signed_document

    # The message: last, mentioning the intake, with no personal data in its text.
    [message] = office.sent_to(INTAKE)
    assert message.mentions == (CECILIA,) and not message.notice
    assert f'href="https://matrix.to/#/{CECILIA}"' in (message.html or "")
    assert case.number in message.text and "Omedelbart omhändertagande enligt LVU" in message.text
    assert "2026-04-02" in message.text  # the decision date
    assert NAME not in message.text and PNR not in message.text and "jourhem" not in message.text
    trail = await office.audit(case.id)
    [sent] = [d for action, d in trail if action == "handover.sent"]
    assert sent is not None and set(sent["files"]) == {
        "decision",
        "report",
        "execution",
        "timeline",
    }

    # The case file (``socialjour audit export``) keeps the package as sent.
    async with office.sessions() as session:
        kept = dict(await audit_store.case_documents(session, case.id))
    assert kept["handover-report.pdf"] == files[1][1]
    assert {"handover-execution.pdf", "handover-timeline.pdf"} <= set(kept)

    # Again: nothing is sent twice.
    again = await office.say(case.room_id or "", "!överlämna")
    assert "redan" in again[-1].text
    await office.dispatcher.handover.check()
    assert len(office.files_in(INTAKE)) == 4 and len(office.sent_to(INTAKE)) == 1


async def test_a_handover_cut_short_by_a_crash_is_finished_once(
    office: Office, monkeypatch: pytest.MonkeyPatch
) -> None:
    case = await office.signed_case()
    await office.execute(case)
    real = store.mark_document_sent

    async def lost(session: AsyncSession, **kwargs: Any) -> None:
        if kwargs["part"] == "report":
            # The report reached the room, but the crash came before it was recorded.
            raise ConnectionError("database gone")
        await real(session, **kwargs)

    monkeypatch.setattr(store, "mark_document_sent", lost)
    said = await office.say(case.room_id or "", "!överlämna")
    assert "skickar resten automatiskt" in said[-1].text
    assert len(office.files_in(INTAKE)) == 2 and office.sent_to(INTAKE) == []
    assert (await office.case(case.id)).status == "handed_over"

    monkeypatch.setattr(store, "mark_document_sent", real)
    office.restart()
    await office.dispatcher.resume()  # sends the report again under its key: no copy
    await office.dispatcher.handover.check()
    parts = [name.rsplit("-", 1)[1] for name, _ in office.files_in(INTAKE)]
    assert parts == ["beslut.pdf", "rapport.pdf", "verkstallighet.pdf", "handelselogg.pdf"]
    assert len(office.sent_to(INTAKE)) == 1
    announced = [m for m in office.sent_to(case.room_id or "") if "är överlämnat" in m.text]
    assert len(announced) == 1
    async with office.sessions() as session:
        documents = await store.list_documents(session, case_id=case.id)
    assert all(d.sent_at is not None for d in documents)


# -- !mottaget ------------------------------------------------------------------------------


async def test_received_as_a_reply_by_an_intake_member_only(office: Office) -> None:
    case = await office.handed_over()
    message_id = office.messenger.keys[f"handover:{case.id}:message"]

    # Bo is on duty but not in Skövde's intake: refused politely, nothing recorded.
    said = await office.say(INTAKE, "!mottaget", sender=BO, in_reply_to=message_id)
    assert "behörighet" in said[-1].text
    # Dora is Mariestad's intake: this handover is not hers to acknowledge.
    said = await office.say(INTAKE_M, f"!mottaget {case.number}", sender=DORA)
    assert "hittar inget överlämnat ärende" in said[-1].text
    said = await office.say(INTAKE, "!mottaget", sender=CECILIA)  # not a reply, no number
    assert "hittar inget överlämnat ärende" in said[-1].text
    async with office.sessions() as session:
        handover = await store.get_handover(session, case_id=case.id)
    assert handover is not None and handover.received_at is None

    office.clock.at(local(2026, 4, 7, 9, 12))
    said = await office.say(INTAKE, "!mottaget", sender=CECILIA, in_reply_to=message_id)
    assert "kvitterat av @cecilia:example.org kl. 09:12" in said[-1].text
    told = office.sent_to(case.room_id or "")[-1]
    assert told.text.startswith("Mottaget av @cecilia:example.org kl. 09:12")
    assert ANNA in told.mentions
    assert ("handover.received", None) in await office.audit(case.id)

    said = await office.say(INTAKE, f"!mottaget {case.number}", sender=CECILIA)
    assert "redan kvitterat" in said[-1].text
    status = await office.say(case.room_id or "", "!status")
    assert "mottaget av @cecilia:example.org 2026-04-07 kl. 09:12" in status[-1].text
    assert "Verkställt:" in status[-1].text


async def test_reminders_on_working_mornings_then_the_leads(office: Office) -> None:
    # Handed over on skärtorsdag evening; Easter follows (långfredag to annandag påsk).
    case = await office.handed_over()
    check = office.dispatcher.handover.check
    message_id = office.messenger.keys[f"handover:{case.id}:message"]
    for moment in (local(2026, 4, 3, 8, 0), local(2026, 4, 4, 8, 0), local(2026, 4, 6, 9, 0)):
        office.clock.at(moment)
        await check()
    assert len(office.sent_to(INTAKE)) == 1  # the handover message alone

    office.clock.at(local(2026, 4, 7, 7, 59))
    await check()
    assert len(office.sent_to(INTAKE)) == 1
    office.clock.at(local(2026, 4, 7, 8, 0))
    await check()
    await check()  # twice in the same minute: one reminder
    reminder = office.sent_to(INTAKE)[-1]
    assert len(office.sent_to(INTAKE)) == 2
    assert "Påminnelse" in reminder.text and case.number in reminder.text
    assert reminder.mentions == (CECILIA,) and reminder.reply_to == message_id
    assert not any("inte kvitterad" in m.text for m in office.sent_to(DUTY))  # not yet

    # After a restart, the next working morning: the second reminder, and the leads.
    office.restart()
    office.clock.at(local(2026, 4, 8, 8, 0))
    await office.dispatcher.resume()
    assert len(office.sent_to(INTAKE)) == 3
    leads = office.sent_to(DUTY)[-1]
    assert "inte kvitterad" in leads.text and leads.mentions == (ANNA,)
    assert "Skövde kommun" in leads.text and NAME not in leads.text

    # A reply to the latest reminder acknowledges too; then the reminders stop.
    second = office.messenger.keys[f"handover:{case.id}:reminder:2"]
    await office.say(INTAKE, "!mottaget", sender=CECILIA, in_reply_to=second)
    office.clock.at(local(2026, 4, 9, 8, 0))
    await check()
    assert len(office.sent_to(INTAKE)) == 4  # the acknowledgement's answer, no reminder
    reminded = [d for a, d in await office.audit(case.id) if a == "handover.reminded"]
    assert reminded == [{"reminder": 1, "leads": False}, {"reminder": 2, "leads": True}]


async def test_a_friday_handover_is_reminded_on_monday_morning(office: Office) -> None:
    # Signed on Friday 6 March 2026 at 14:30 (CET), handed over at 15:00.
    case = await office.handed_over(signed_at=local(2026, 3, 6, 14, 30))
    check = office.dispatcher.handover.check
    for moment in (local(2026, 3, 7, 8, 0), local(2026, 3, 8, 12, 0), local(2026, 3, 9, 7, 59)):
        office.clock.at(moment)
        await check()
    assert [m for m in office.sent_to(INTAKE) if "Påminnelse" in m.text] == []
    office.clock.at(local(2026, 3, 9, 8, 0))
    await check()
    [reminder] = [m for m in office.sent_to(INTAKE) if "Påminnelse" in m.text]
    assert "Överlämnat 2026-03-06 kl. 15:00" in reminder.text and case.number in reminder.text


async def test_status_and_english(make_office: Callable[..., Office]) -> None:
    office = make_office(language="en")
    case = await office.signed_case()
    room = case.room_id or ""
    said = await office.say(room, "!executed")
    assert "Execution – case" in said[0].text and "Question 1 of" in said[-1].text
    status = await office.say(room, "!status")
    assert "Execution: being recorded (question 1 of" in status[-1].text
    for answer in ("now", "foster home", "no", "3", "me", "!skip"):
        await office.say(room, answer)
    status = await office.say(room, "!status")
    assert "record it with !executed" in status[-1].text
    await office.say(room, "!executed")
    said = await office.say(room, "!handover")
    assert "is handed over" in said[-1].text
    assert [n.rsplit("-", 1)[1] for n, _ in office.files_in(INTAKE)] == [
        "decision.pdf",
        "report.pdf",
        "execution.pdf",
        "timeline.pdf",
    ]
    assert "replying to this message with !received" in office.sent_to(INTAKE)[-1].text


async def test_a_documented_case_is_handed_over_with_its_record_and_no_execution(
    office: Office,
) -> None:
    """A skyddsbedömning is documented, not decided: nothing to carry out, and the
    sealed documentation goes in place of a decision."""
    office.clock.at(SIGNED_AT)
    await office.say(DUTY, "!ny skyddsbedomning")
    async with office.sessions() as session:
        case = (await repo.list_cases(session))[-1]
    form = office.settings.forms["skyddsbedomning"]
    state = DialogueState(form_id=form.id)
    state.answers["namn"] = {"value": NAME, "display": NAME, "by": ANNA, "at": "x"}
    report = dialogue.build_report(
        form, state, case_number=case.number, submitted_by=ANNA, at=SIGNED_AT
    )
    sealed = b"%PDF-1.4 the worker's sealed record"
    async with office.sessions() as session, session.begin():
        stored = await repo.get_report(session, case_id=case.id)
        assert stored is not None
        await repo.submit_report(
            session, case_id=case.id, expected_version=stored.version, report=report, now=SIGNED_AT
        )
        await repo.set_case_municipality(session, case_id=case.id, municipality_id="skovde")
        await transition(
            session, case_id=case.id, old="drafting", new="recorded", actor=ANNA, now=SIGNED_AT
        )
        await records.add_record(
            session,
            case_id=case.id,
            form_id=form.id,
            recorded_by=ANNA,
            recorded_at=SIGNED_AT,
            document=sealed,
            sha256=hashlib.sha256(sealed).hexdigest(),
        )
    room = case.room_id or ""
    said = await office.say(room, "!verkställt")
    assert "dokumenterat" in said[-1].text  # "… är dokumenterat och kan inte bli verkställt"
    await office.say(room, "!överlämna")
    assert (await office.case(case.id)).status == "handed_over"
    files = office.files_in(INTAKE)
    assert [name.split("-", 3)[3] for name, _ in files] == [
        "dokumentation.pdf",
        "rapport.pdf",
        "handelselogg.pdf",
    ]
    assert files[0][1] == sealed
    assert "beslutsdatum 2026-04-02" in office.sent_to(INTAKE)[-1].text
