"""The guided report in a case room, as the worker on duty meets it.

A real dispatcher on a real, migrated database (SQLite and PostgreSQL through the
storage fixtures), the in-memory messenger standing in for Matrix and a clock the
test moves by hand. The property tests at the end drive whole conversations of
arbitrary messages on SQLite and check, after every message, what a worker relies
on: the bot answers, the stored report stays consistent, and nothing given is lost.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import textwrap
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from config import Settings, load_settings
from config.forms import FieldSpec, FormTemplate
from handlers import dialogue
from handlers.commands import fold
from handlers.commands import parse as parse_command
from handlers.dialogue import DialogueState
from handlers.dispatcher import Dispatcher
from handlers.fields import STOCKHOLM, InvalidAnswer, parse_answer
from handlers.messenger import IncomingMessage, IncomingVote, MemoryMessenger, Message, Poll
from storage import create_engine, repo, session_factory, upgrade
from storage.models import Case, Report

Sessions = async_sessionmaker[AsyncSession]

ANNA = "@anna:example.org"
BO = "@bo:example.org"
EVE = "@eve:example.org"
DUTY = "!duty:test"
START = datetime(2026, 3, 1, 2, 30, tzinfo=UTC)  # 03:30 in Stockholm, a night shift

INTERNAL_ERROR = "Något gick fel"
LOCKED = "Rapporten är redan skickad och kan inte ändras nu."
COMPLETE = "Alla frågor är besvarade"
CONCURRENT = "Ärendet ändrades samtidigt av någon annan"
QUESTION = re.compile(r"Fråga (\d+) av (\d+)")

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
language = "sv"

[[municipalities]]
id = "skovde"
name = "Skövde kommun"
intake_room_alias = "#mottagning-skovde:example.org"
intake_members = ["@cecilia:example.org"]

[[municipalities]]
id = "mariestad"
name = "Mariestads kommun"
intake_room_alias = "#mottagning-mariestad:example.org"
intake_members = ["@cecilia:example.org"]
{extra}
"""

#: A form with one question of every type, to take the types no shipped form uses
#: (phone, Matrix user) through the whole flow as well.
ALL_TYPES_FORM = """
id = "alla_typer"
version = 3
title = "Alla frågetyper"
decision_type = "Test"
legal_reference = "Ingen"
next_step = "Inget"
description = "Varje frågetyp en gång."

[[fields]]
id = "kort"
type = "text"
label = "Kort text"

[[fields]]
id = "lang"
type = "long_text"
label = "Lång text"

[[fields]]
id = "val"
type = "choice"
label = "Ett val"
choices = [{ value = "a", label = "Alfa" }, { value = "b", label = "Beta" }]

[[fields]]
id = "flera"
type = "multi_choice"
label = "Flera val"
choices = [
  { value = "x", label = "Xylofon" },
  { value = "y", label = "Yxa" },
  { value = "z", label = "Zebra" },
]

[[fields]]
id = "janej"
type = "yes_no"
label = "Ja eller nej"

[[fields]]
id = "datum"
type = "date"
label = "Datum"

[[fields]]
id = "tid"
type = "datetime"
label = "Tidpunkt"

[[fields]]
id = "pnr"
type = "personnummer"
label = "Personnummer"

[[fields]]
id = "telefon"
type = "phone"
label = "Telefon"

[[fields]]
id = "kommun"
type = "municipality"
label = "Kommun"

[[fields]]
id = "kontakt"
type = "matrix_user"
label = "Kontakt i Matrix"
"""

#: A valid answer, as typed on a phone, for every field type ...
TYPED: dict[str, str] = {
    "text": "Kalle Anka",
    "long_text": "Första raden\nAndra raden",
    "choice": "1",
    "multi_choice": "1, 2",
    "yes_no": "ja",
    "date": "2026-11-24",
    "datetime": "nu",
    "personnummer": "20160412-2380",
    "phone": "070-123 45 67",
    "municipality": "Skövde",
    "matrix_user": "@x:example.org",
}


def expected_value(spec: FieldSpec) -> object:
    """... and what must be stored for it (written out, not computed by the parser)."""
    return {
        "text": "Kalle Anka",
        "long_text": "Första raden\nAndra raden",
        "choice": spec.choices[0].value if spec.choices else None,
        "multi_choice": [c.value for c in spec.choices[:2]],
        "yes_no": True,
        "date": "2026-11-24",
        "datetime": "2026-03-01T03:30:00+01:00",  # "nu" at START, Stockholm time
        "personnummer": "20160412-2380",
        "phone": "+46701234567",
        "municipality": "skovde",
        "matrix_user": "@x:example.org",
    }[spec.type]


#: The conditional questions that the answers in TYPED leave out, per form.
HIDDEN_BY_DEFAULTS = {
    "lvm13": {"lakarundersokning", "sis_ej_begaran"},  # a doctor's certificate; a SiS request
    "lvu6": {"grund_3", "ej_underrattade", "unge_part"},  # a child under 15, guardians told
    "skyddsbedomning": {"anmalare_annan"},  # only when the reporter is "another authority"
    "sol_placering": {"vardnadshavare"},  # not when the person consents alone
    "alla_typer": set(),
}

_events = itertools.count(1)
_folders = itertools.count(1)


def write_settings(folder: Path, *, extra_form: str | None = None) -> Settings:
    folder.mkdir(parents=True, exist_ok=True)
    extra = ""
    if extra_form is not None:
        forms = folder / "forms"
        forms.mkdir()
        (forms / "extra.toml").write_text(textwrap.dedent(extra_form), encoding="utf-8")
        extra = '\n[forms]\nextra_dirs = ["forms"]\n'
    path = folder / "config.toml"
    path.write_text(CONFIG.format(extra=extra), encoding="utf-8")
    return load_settings(path, environ={"SOCIALJOUR_MATRIX_PASSWORD": "secret"})


class FakeClock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@dataclass
class Said:
    """One message from a worker and what the bot sent back into the same room."""

    event_id: str
    replies: list[Message]

    @property
    def texts(self) -> list[str]:
        return [m.text for m in self.replies]

    @property
    def text(self) -> str:
        return "\n".join(self.texts)


@dataclass
class Desk:
    """A worker's view of one installation: a dispatcher, its messenger and clock."""

    settings: Settings
    sessions: Sessions
    clock: FakeClock = field(default_factory=lambda: FakeClock(START))
    messenger: MemoryMessenger = field(default_factory=MemoryMessenger)
    dispatcher: Dispatcher = field(init=False)

    def __post_init__(self) -> None:
        self.dispatcher = self.restart()

    def restart(self) -> Dispatcher:
        """A new dispatcher on the same database and homeserver, as after a restart."""
        self.dispatcher = Dispatcher(
            settings=self.settings,
            sessions=self.sessions,
            messenger=self.messenger,
            clock=self.clock,
        )
        self.dispatcher.duty_room_id = DUTY
        return self.dispatcher

    def form(self, form_id: str) -> FormTemplate:
        return self.settings.forms[form_id]

    # -- talking ----------------------------------------------------------------------

    async def say(
        self, room: str, body: str, *, sender: str = ANNA, replaces: str | None = None
    ) -> Said:
        before = len(self.messenger.sent)
        event_id = f"$in{next(_events)}"
        await self.dispatcher.handle(
            IncomingMessage(
                room_id=room, sender=sender, event_id=event_id, body=body, replaces=replaces
            )
        )
        return Said(event_id, [m for r, m in self.messenger.sent[before:] if r == room])

    async def vote(
        self, room: str, poll_id: str, answers: tuple[str, ...], *, sender: str = ANNA
    ) -> Said:
        before = len(self.messenger.sent)
        event_id = f"$vote{next(_events)}"
        await self.dispatcher.handle_vote(
            IncomingVote(
                room_id=room,
                sender=sender,
                event_id=event_id,
                poll_event_id=poll_id,
                answers=answers,
            )
        )
        return Said(event_id, [m for r, m in self.messenger.sent[before:] if r == room])

    async def open(self, form_id: str | None = None, *, sender: str = ANNA) -> Case:
        await self.say(DUTY, f"!ny {form_id}" if form_id else "!ny", sender=sender)
        async with self.sessions() as session:
            cases = await repo.list_cases(session)
        case = max(cases, key=lambda c: c.id)
        assert case.room_id is not None
        return case

    # -- reading ----------------------------------------------------------------------

    async def case(self, case: Case) -> Case:
        async with self.sessions() as session:
            fresh = await repo.get_case(session, case_id=case.id)
        assert fresh is not None
        return fresh

    async def report(self, case: Case) -> Report:
        async with self.sessions() as session:
            report = await repo.get_report(session, case_id=case.id)
        assert report is not None
        return report

    async def state(self, case: Case) -> DialogueState:
        return DialogueState.from_json((await self.report(case)).state)

    def texts(self, room: str) -> list[str]:
        return self.messenger.texts(room)

    def polls(self, room: str) -> list[tuple[Poll, str]]:
        return [(poll, event_id) for r, poll, event_id in self.messenger.polls if r == room]

    def last_question(self, room: str) -> int:
        """The number of the question the bot asked last in the room."""
        for text in reversed(self.texts(room)):
            if match := QUESTION.search(text):
                return int(match[1])
        raise AssertionError("no question asked in the room")

    async def answer_all(
        self, case: Case, form: FormTemplate, overrides: dict[str, str] | None = None
    ) -> list[str]:
        """Answer each question the bot asks by text until it says all are answered."""
        assert case.room_id is not None
        asked: list[str] = []
        for _ in range(3 * len(form.fields)):
            last = self.texts(case.room_id)[-1]
            if COMPLETE in last:
                return asked
            match = QUESTION.search(last)
            assert match, last
            spec = form.fields[int(match[1]) - 1]
            asked.append(spec.id)
            said = await self.say(case.room_id, (overrides or {}).get(spec.id, TYPED[spec.type]))
            assert said.replies, spec.id
        raise AssertionError(f"the form never completed: asked {asked}")

    async def answer_until(
        self, case: Case, form: FormTemplate, stop_at: str, **texts: str
    ) -> None:
        """Answer by text until question ``stop_at`` is the one asked."""
        assert case.room_id is not None
        for _ in range(3 * len(form.fields)):
            spec = form.fields[self.last_question(case.room_id) - 1]
            if spec.id == stop_at:
                return
            await self.say(case.room_id, texts.get(spec.id, TYPED[spec.type]))
        raise AssertionError(f"{stop_at} was never asked")

    async def add_participant(self, case: Case, user_id: str) -> None:
        async with self.sessions() as session, session.begin():
            await repo.add_participant(
                session, case_id=case.id, user_id=user_id, role="worker", now=self.clock.now
            )


@pytest.fixture
def make_desk(sessions: Sessions, tmp_path: Path) -> Callable[..., Desk]:
    def make(*, extra_form: str | None = None) -> Desk:
        folder = tmp_path / f"config{next(_folders)}"
        return Desk(write_settings(folder, extra_form=extra_form), sessions)

    return make


@pytest.fixture
def desk(make_desk: Callable[..., Desk]) -> Desk:
    return make_desk()


def room_of(case: Case) -> str:
    assert case.room_id is not None
    return case.room_id


def no_internal_error(desk: Desk) -> None:
    assert not any(INTERNAL_ERROR in m.text for _, m in desk.messenger.sent)


# -- choosing the form -------------------------------------------------------------------


async def test_new_asks_which_form_with_a_poll_of_the_four_forms(desk: Desk) -> None:
    case = await desk.open()
    room = room_of(case)
    forms = list(desk.settings.forms.values())

    question = desk.texts(room)[-1]
    assert "Vilket beslut gäller ärendet?" in question
    for number, form in enumerate(forms, 1):
        assert f"{number}. {form.title}" in question
    [(poll, poll_id)] = desk.polls(room)
    assert poll.max_selections == 1
    assert sorted(option for option, _ in poll.options) == [
        "lvm13",
        "lvu6",
        "skyddsbedomning",
        "sol_placering",
    ]
    assert dict(poll.options) == {f.id: f.title for f in forms}
    state = await desk.state(case)
    assert state.form_id is None
    assert state.poll_event == poll_id


@pytest.mark.parametrize("how", ["vote", "number", "title", "id"])
async def test_the_form_is_chosen_by_vote_number_or_title(desk: Desk, how: str) -> None:
    case = await desk.open()
    room = room_of(case)
    [(poll, poll_id)] = desk.polls(room)
    number = [option for option, _ in poll.options].index("lvu6") + 1
    assert f"{number}. Omedelbart omhändertagande enligt LVU" in desk.texts(room)[-1]
    if how == "vote":
        said = await desk.vote(room, poll_id, ("lvu6",))
    else:
        typed = {"number": f"{number}.", "title": "omedelbart omhändertagande enligt lvu"}
        said = await desk.say(room, typed.get(how, "LVU6"))

    form_id = "lvu6"
    form = desk.form(form_id)
    assert f"Formulär: {form.title} ({len(form.fields)} frågor)" in said.text
    assert said.texts[-1].startswith(f"Fråga 1 av {len(form.fields)} – {form.fields[0].label}")
    assert (await desk.case(case)).form_id == form_id
    state = await desk.state(case)
    assert (state.form_id, state.current, state.asked) == (form_id, "namn", "namn")
    # The answers go to the form from now on.
    said = await desk.say(room, "Kalle")
    assert said.texts[-1].startswith("Fråga 2 av")
    assert (await desk.state(case)).answers["namn"]["value"] == "Kalle"


async def test_new_with_a_form_name_starts_at_question_one(desk: Desk) -> None:
    case = await desk.open("lvu6")
    room = room_of(case)
    texts = desk.texts(room)
    assert not any("Vilket beslut" in t for t in texts)
    assert texts[-1].startswith("Fråga 1 av 27 – Barnets namn")
    assert desk.polls(room) == []  # a text question has no poll
    assert (await desk.state(case)).current == "namn"


@pytest.mark.parametrize("answer", ["blomkål", "5", "0", "lvu", "!", "LVU 6 §"])
async def test_an_unknown_form_answer_asks_again(desk: Desk, answer: str) -> None:
    case = await desk.open()
    room = room_of(case)
    [(_, first_poll)] = desk.polls(room)

    said = await desk.say(room, answer)

    assert "Det finns inget formulär som heter" in said.texts[0]
    assert said.replies[0].reply_to == said.event_id
    assert "Vilket beslut gäller ärendet?" in said.texts[-1]
    state = await desk.state(case)
    assert state.form_id is None
    [_, (_, second_poll)] = desk.polls(room)
    assert state.poll_event == second_poll
    # The first poll no longer counts.
    late = await desk.vote(room, first_poll, ("lvu6",))
    assert "gäller inte längre" in late.text
    assert (await desk.state(case)).form_id is None
    no_internal_error(desk)


@pytest.mark.parametrize("answer", ["\u1369", "1" * 5000], ids=["ethiopic-one", "5000-digits"])
async def test_an_odd_number_as_the_form_answer_asks_again(desk: Desk, answer: str) -> None:
    case = await desk.open()
    said = await desk.say(room_of(case), answer)
    assert "Det finns inget formulär som heter" in said.texts[0]
    assert "Vilket beslut gäller ärendet?" in said.texts[-1]


# -- whole forms, end to end -------------------------------------------------------------


async def _complete_and_submit(desk: Desk, form_id: str) -> None:
    form = desk.form(form_id)
    case = await desk.open(form_id)
    room = room_of(case)

    asked = await desk.answer_all(case, form)

    hidden = HIDDEN_BY_DEFAULTS[form_id]
    assert asked == [f.id for f in form.fields if f.id not in hidden]
    said = await desk.say(room, "!skicka")
    assert f"Rapporten för {case.number} är skickad och låst" in said.text
    assert f"formulärversion {form.version}" in said.text

    assert (await desk.case(case)).status == "awaiting_signature"
    report = await desk.report(case)
    assert report.submitted_at is not None
    submitted = report.submitted
    assert submitted is not None
    assert submitted["form"]["id"] == form_id
    assert submitted["form"]["version"] == form.version
    assert submitted["case_number"] == case.number
    assert submitted["submitted_by"] == ANNA
    stored = {a["id"]: a["value"] for a in submitted["answers"]}
    assert stored == {f.id: expected_value(f) for f in form.fields if f.id not in hidden}
    assert all(a["answered_by"] == ANNA for a in submitted["answers"])
    assert [a["number"] for a in submitted["answers"]] == [
        form.number_of(a["id"]) for a in submitted["answers"]
    ]
    json.dumps(submitted)
    async with desk.sessions() as session:
        actions = [e.action for e in await repo.list_audit(session, case_id=case.id)]
    assert "report.submitted" in actions
    no_internal_error(desk)


@pytest.mark.parametrize("form_id", ["lvm13", "lvu6", "skyddsbedomning", "sol_placering"])
async def test_each_shipped_form_can_be_completed_by_text_and_submitted(
    desk: Desk, form_id: str
) -> None:
    await _complete_and_submit(desk, form_id)


async def test_every_field_type_goes_through_the_whole_flow(
    make_desk: Callable[..., Desk],
) -> None:
    desk = make_desk(extra_form=ALL_TYPES_FORM)
    assert {f.type for f in desk.form("alla_typer").fields} == set(TYPED)
    await _complete_and_submit(desk, "alla_typer")


async def test_a_municipality_answer_sets_the_case_municipality(desk: Desk) -> None:
    form = desk.form("lvu6")
    case = await desk.open("lvu6")
    await desk.answer_until(case, form, "vistelse", hemkommun="Mariestad")
    assert (await desk.case(case)).municipality_id == "mariestad"


# -- invalid answers ----------------------------------------------------------------------


async def test_a_wrong_check_digit_is_explained_and_the_same_question_asked_again(
    desk: Desk,
) -> None:
    case = await desk.open("lvu6")
    room = room_of(case)
    await desk.say(room, "Kalle Anka")

    said = await desk.say(room, "20160412-2381")

    assert "Kontrollsiffran stämmer inte" in said.texts[0]
    assert said.replies[0].reply_to == said.event_id
    assert said.texts[-1].startswith("Fråga 2 av 27 – Barnets personnummer")
    state = await desk.state(case)
    assert state.current == "personnummer"
    assert "personnummer" not in state.answers
    assert state.answers["namn"]["value"] == "Kalle Anka"

    said = await desk.say(room, "20160412-2380")
    assert said.texts[-1].startswith("Fråga 3 av 27")
    state = await desk.state(case)
    assert state.answers["personnummer"]["value"] == "20160412-2380"
    assert state.answers["namn"]["value"] == "Kalle Anka"


@pytest.mark.parametrize(
    ("field_id", "typed", "reason"),
    [
        ("hemkommun", "Göteborg", "Den kommunen hör inte till jouren"),
        ("grund", "1, 9", "Det finns inget alternativ 9"),
        ("underrattade", "kanske", "Svara ja eller nej"),
        ("tidpunkt", "igår kväll", "Jag förstår inte tidpunkten"),
        ("namn", "   ", "Svaret var tomt"),
        ("namn", "x" * 201, "Svaret är för långt: 201 tecken"),
    ],
)
async def test_invalid_answers_of_each_kind_are_refused_with_a_reason(
    desk: Desk, field_id: str, typed: str, reason: str
) -> None:
    form = desk.form("lvu6")
    case = await desk.open("lvu6")
    await desk.answer_until(case, form, field_id)
    before = await desk.state(case)

    said = await desk.say(room_of(case), typed)

    assert reason in said.texts[0]
    assert said.texts[-1].startswith(f"Fråga {form.number_of(field_id)} av")
    after = await desk.state(case)
    assert after.answers == before.answers
    assert after.current == field_id


async def test_a_stored_answer_is_in_nfc_even_with_a_control_character_in_it(
    desk: Desk,
) -> None:
    case = await desk.open("lvu6")
    await desk.say(room_of(case), "Jose\x00\u0301 Öberg")
    stored = (await desk.state(case)).answers["namn"]["value"]
    assert stored == unicodedata.normalize("NFC", stored)
    assert stored == "José Öberg"


# -- commands ------------------------------------------------------------------------------


async def test_skip_refuses_a_required_question(desk: Desk) -> None:
    case = await desk.open("lvu6")
    before = await desk.state(case)
    said = await desk.say(room_of(case), "!hoppa")
    assert said.texts == ["Fråga 1 är obligatorisk och kan inte hoppas över."]
    after = await desk.state(case)
    assert (after.current, after.skipped, after.answers) == ("namn", [], before.answers)


async def test_skip_moves_past_an_optional_question(desk: Desk) -> None:
    form = desk.form("lvu6")
    case = await desk.open("lvu6")
    room = room_of(case)
    await desk.answer_until(case, form, "barnets_installning")
    assert "Valfri fråga" in desk.texts(room)[-1]

    said = await desk.say(room, "!hoppa")

    assert said.texts[-1].startswith(f"Fråga {form.number_of('forslag')} av 27")
    state = await desk.state(case)
    assert state.skipped == ["barnets_installning"]
    assert state.current == "forslag"
    summary = (await desk.say(room, "!sammanfattning")).text
    assert "14. Barnets inställning\n– (överhoppad)" in summary

    # Answered later after all: the skip is gone.
    await desk.say(room, "!ändra 14")
    await desk.say(room, "Vill bo hos mormor")
    state = await desk.state(case)
    assert state.skipped == []
    assert state.answers["barnets_installning"]["value"] == "Vill bo hos mormor"
    assert state.current == "forslag"


async def test_skip_of_a_question_asked_again_keeps_its_answer(desk: Desk) -> None:
    form = desk.form("lvu6")
    case = await desk.open("lvu6")
    room = room_of(case)
    await desk.answer_until(case, form, "barnets_installning")
    await desk.say(room, "Vill bo hos mormor")
    await desk.say(room, "!ändra 14")
    assert "Nuvarande svar: Vill bo hos mormor" in desk.texts(room)[-1]

    said = await desk.say(room, "!hoppa")

    assert said.texts[-1].startswith("Fråga 15 av 27")
    state = await desk.state(case)
    assert state.answers.get("barnets_installning", {}).get("value") == "Vill bo hos mormor"


async def test_back_goes_to_the_previous_question_and_shows_its_answer(desk: Desk) -> None:
    case = await desk.open("lvu6")
    room = room_of(case)
    await desk.say(room, "Kalle Anka")
    await desk.say(room, "20160412-2380")

    said = await desk.say(room, "!tillbaka")
    assert said.texts[-1].startswith("Fråga 2 av 27")
    assert "Nuvarande svar: 20160412-2380" in said.texts[-1]
    said = await desk.say(room, "!tillbaka")
    assert said.texts[-1].startswith("Fråga 1 av 27")
    assert "Nuvarande svar: Kalle Anka" in said.texts[-1]

    said = await desk.say(room, "!tillbaka")
    assert said.texts[0] == "Det här är den första frågan."
    assert said.texts[-1].startswith("Fråga 1 av 27")

    # Nothing was lost by going back; a new answer replaces just this one.
    said = await desk.say(room, "Kalle Karlsson")
    assert said.texts[-1].startswith("Fråga 3 av 27")
    state = await desk.state(case)
    assert state.answers["namn"]["value"] == "Kalle Karlsson"
    assert state.answers["personnummer"]["value"] == "20160412-2380"


@pytest.mark.parametrize("arg", ["", "0", "28", "99", "x", "-1", "1 2"])
async def test_edit_out_of_range_explains_usage(desk: Desk, arg: str) -> None:
    case = await desk.open("lvu6")
    before = await desk.state(case)
    said = await desk.say(room_of(case), f"!ändra {arg}".strip())
    assert said.texts == ["Skriv !ändra N där N är frågans nummer (1–27)."]
    assert (await desk.state(case)) == before


@pytest.mark.parametrize("arg", ["²", "1" * 5000], ids=["superscript-two", "5000-digits"])
async def test_edit_with_an_odd_number_explains_usage(desk: Desk, arg: str) -> None:
    case = await desk.open("lvu6")
    before = await desk.state(case)
    said = await desk.say(room_of(case), f"!ändra {arg}")
    assert said.texts == ["Skriv !ändra N där N är frågans nummer (1–27)."]
    assert (await desk.state(case)) == before


async def test_edit_of_a_hidden_question_is_refused(desk: Desk) -> None:
    form = desk.form("lvu6")
    case = await desk.open("lvu6")
    room = room_of(case)
    await desk.answer_until(case, form, "barnets_installning", underrattade="ja")
    before = await desk.state(case)

    hidden = form.number_of("ej_underrattade")
    said = await desk.say(room, f"!ändra {hidden}")

    assert said.texts == [f"Fråga {hidden} gäller inte med de svar som har getts."]
    assert (await desk.state(case)) == before


async def test_edit_asks_the_question_again_and_then_returns_to_where_one_was(
    desk: Desk,
) -> None:
    form = desk.form("lvu6")
    case = await desk.open("lvu6")
    room = room_of(case)
    await desk.answer_until(case, form, "handelse")

    said = await desk.say(room, "!edit 3")  # the English alias
    assert said.texts[-1].startswith("Fråga 3 av 27 – Hemkommun")
    assert "Nuvarande svar: Skövde kommun" in said.texts[-1]
    [*_, (poll, _)] = desk.polls(room)
    assert poll.question == "3. Hemkommun"
    assert dict(poll.options) == {"skovde": "Skövde kommun", "mariestad": "Mariestads kommun"}

    said = await desk.say(room, "2")
    assert said.texts[-1].startswith(f"Fråga {form.number_of('handelse')} av 27")
    state = await desk.state(case)
    assert state.answers["hemkommun"]["value"] == "mariestad"
    assert (await desk.case(case)).municipality_id == "mariestad"


async def test_summary_is_numbered_and_escapes_what_the_worker_wrote(desk: Desk) -> None:
    case = await desk.open("lvu6")
    room = room_of(case)
    await desk.say(room, "<b>x</b>&")

    said = await desk.say(room, "!sammanfattning")

    [message] = said.replies
    assert message.reply_to == said.event_id
    assert message.text.startswith(f"Sammanfattning – {case.number}")
    assert "1. Barnets namn\n<b>x</b>&" in message.text
    assert "2. Barnets personnummer\n– (inte besvarad)" in message.text
    assert message.html is not None
    assert "&lt;b&gt;x&lt;/b&gt;&amp;" in message.html
    assert "<b>x</b>" not in message.html
    # Conditional questions that do not apply yet are not listed; numbering keeps gaps.
    assert "Hur underrättades de?" not in message.text
    assert "Varför har de inte underrättats?" not in message.text
    numbers = [int(n) for n in re.findall(r"^(\d+)\. ", message.text, flags=re.MULTILINE)]
    assert numbers == [1, 2, 3, 4, 7, 8, 9, 14, 15, 16, 18, 19, 21, 23, 25]


async def test_submit_of_an_incomplete_report_lists_what_is_missing(desk: Desk) -> None:
    case = await desk.open("lvu6")
    room = room_of(case)
    await desk.say(room, "Kalle Anka")
    await desk.say(room, "20160412-2380")

    said = await desk.say(room, "!skicka")

    # 6 and 20 follow the age; 12/13, 17, 22, 24 and 26/27 depend on answers not given
    # yet; 14 is optional.
    assert (
        "Rapporten är inte klar. Obligatoriska frågor utan svar: "
        "3, 4, 5, 7, 8, 9, 10, 11, 15, 16, 18, 19, 21, 23, 25." in said.texts[0]
    )
    assert said.texts[-1].startswith("Fråga 3 av 27")
    assert (await desk.case(case)).status == "drafting"
    report = await desk.report(case)
    assert report.submitted is None and report.submitted_at is None


async def test_submit_counts_an_optional_question_passed_over_as_skipped(desk: Desk) -> None:
    form = desk.form("lvu6")
    case = await desk.open("lvu6")
    room = room_of(case)
    await desk.answer_until(case, form, "barnets_installning")
    # The worker jumps past the optional question 14 and answers the rest.
    for number, typed in (
        (15, "NN omhändertas."),
        (16, "nej"),
        (18, "nu"),
        (19, "Vården inleds i jourhem."),
        (21, "nej"),
        (23, "nej"),
        (25, "nej"),
    ):
        await desk.say(room, f"!ändra {number}")
        await desk.say(room, typed)
    state = await desk.state(case)
    assert dialogue.missing_required(form, state) == []
    assert state.current == "barnets_installning"

    said = await desk.say(room, "!skicka")

    assert "är skickad och låst" in said.texts[0]
    assert (await desk.case(case)).status == "awaiting_signature"
    assert "barnets_installning" in (await desk.state(case)).skipped


async def _submitted_lvu(desk: Desk) -> Case:
    form = desk.form("lvu6")
    case = await desk.open("lvu6")
    await desk.answer_all(case, form)
    said = await desk.say(room_of(case), "!skicka")
    assert "är skickad och låst" in said.text
    return case


@pytest.mark.parametrize("body", ["!ändra 1", "!tillbaka", "!hoppa", "!skicka", "!edit 2"])
async def test_after_submit_commands_that_change_the_report_are_refused(
    desk: Desk, body: str
) -> None:
    case = await _submitted_lvu(desk)
    before = await desk.report(case)

    said = await desk.say(room_of(case), body)

    assert said.texts == [LOCKED]
    after = await desk.report(case)
    assert (after.state, after.submitted, after.version) == (
        before.state,
        before.submitted,
        before.version,
    )
    assert (await desk.case(case)).status == "awaiting_signature"


async def test_after_submit_the_summary_still_shows_the_report(desk: Desk) -> None:
    case = await _submitted_lvu(desk)
    said = await desk.say(room_of(case), "!sammanfattning")
    assert "1. Barnets namn\nKalle Anka" in said.text


@pytest.mark.parametrize("how", ["edit", "vote"])
async def test_after_submit_an_edit_or_a_vote_is_refused_with_the_locked_message(
    desk: Desk, how: str
) -> None:
    case = await _submitted_lvu(desk)
    room = room_of(case)
    before = await desk.report(case)

    if how == "edit":
        last = (await desk.state(case)).last_answer
        assert last is not None
        said = await desk.say(room, "2026-11-24 03:15", replaces=last["event"])
    else:
        [*_, (_, poll_id)] = desk.polls(room)
        said = await desk.vote(room, poll_id, ("nej",))

    assert said.texts == [LOCKED]
    after = await desk.report(case)
    assert (after.state, after.submitted, after.version) == (
        before.state,
        before.submitted,
        before.version,
    )


async def test_after_submit_plain_text_changes_nothing(desk: Desk) -> None:
    """Once sent, the room is a conversation again (handlers/reports.py handle_text):
    plain text is not taken as an answer. If the bot says anything, it is the locked
    message, never an error."""
    case = await _submitted_lvu(desk)
    before = await desk.report(case)

    said = await desk.say(room_of(case), "Kalle Karlsson")

    assert set(said.texts) <= {LOCKED}
    after = await desk.report(case)
    assert (after.state, after.submitted, after.version) == (
        before.state,
        before.submitted,
        before.version,
    )
    assert (await desk.case(case)).status == "awaiting_signature"


# -- edits of messages (m.replace) ----------------------------------------------------------


async def test_an_edit_of_the_latest_answer_replaces_it_and_asks_the_current_question_again(
    desk: Desk,
) -> None:
    case = await desk.open("lvu6")
    room = room_of(case)
    first = await desk.say(room, "Kalle Ank")

    said = await desk.say(room, "Kalle Anka", replaces=first.event_id)

    assert said.texts[0] == "Svaret på fråga 1 är ändrat till: Kalle Anka"
    assert said.replies[0].reply_to == said.event_id
    assert said.texts[-1].startswith("Fråga 2 av 27")
    state = await desk.state(case)
    assert state.answers["namn"]["value"] == "Kalle Anka"
    assert state.current == "personnummer"

    # The same message may be edited again (Matrix edits point at the original).
    await desk.say(room, "Kalle Anka Andersson", replaces=first.event_id)
    assert (await desk.state(case)).answers["namn"]["value"] == "Kalle Anka Andersson"


async def test_an_edit_of_an_older_answer_gets_advice_and_changes_nothing(desk: Desk) -> None:
    case = await desk.open("lvu6")
    room = room_of(case)
    first = await desk.say(room, "Kalle Anka")
    await desk.say(room, "20160412-2380")
    before = await desk.state(case)

    said = await desk.say(room, "Nisse", replaces=first.event_id)

    assert len(said.replies) == 1
    assert "!ändra N" in said.text
    assert (await desk.state(case)) == before


async def test_an_invalid_edit_is_refused_and_keeps_the_answer(desk: Desk) -> None:
    case = await desk.open("lvu6")
    room = room_of(case)
    await desk.say(room, "Kalle Anka")
    second = await desk.say(room, "20160412-2380")
    before = await desk.state(case)

    said = await desk.say(room, "20160412-2381", replaces=second.event_id)

    assert "Kontrollsiffran stämmer inte" in said.texts[0]
    assert (await desk.state(case)).answers == before.answers


async def test_an_edit_that_changes_a_condition_asks_the_other_question(desk: Desk) -> None:
    form = desk.form("lvu6")
    case = await desk.open("lvu6")
    room = room_of(case)
    await desk.answer_until(case, form, "underrattade")
    yes = await desk.say(room, "ja")
    assert yes.texts[-1].startswith(f"Fråga {form.number_of('underrattelse')} av")

    said = await desk.say(room, "nej", replaces=yes.event_id)

    assert said.texts[-1].startswith(f"Fråga {form.number_of('ej_underrattade')} av")
    state = await desk.state(case)
    assert state.answers["underrattade"]["value"] is False
    assert state.current == "ej_underrattade"


async def test_an_edit_after_back_is_too_old(desk: Desk) -> None:
    case = await desk.open("lvu6")
    room = room_of(case)
    first = await desk.say(room, "Kalle Anka")
    await desk.say(room, "!tillbaka")
    before = await desk.state(case)
    said = await desk.say(room, "Nisse", replaces=first.event_id)
    assert "!ändra N" in said.text
    assert (await desk.state(case)) == before


# -- polls ----------------------------------------------------------------------------------


async def test_a_vote_answers_a_choice_question(desk: Desk) -> None:
    form = desk.form("lvu6")
    case = await desk.open("lvu6")
    room = room_of(case)
    await desk.answer_until(case, form, "hemkommun")
    [*_, (poll, poll_id)] = desk.polls(room)
    assert poll.question == "3. Hemkommun"

    said = await desk.vote(room, poll_id, ("mariestad",))

    assert said.texts[-1].startswith("Fråga 4 av 27")
    state = await desk.state(case)
    assert state.answers["hemkommun"]["value"] == "mariestad"
    assert (await desk.case(case)).municipality_id == "mariestad"


async def test_a_vote_on_an_old_poll_is_refused(desk: Desk) -> None:
    form = desk.form("lvu6")
    case = await desk.open("lvu6")
    room = room_of(case)
    await desk.answer_until(case, form, "hemkommun")
    [*_, (_, old_poll)] = desk.polls(room)
    await desk.say(room, "Skövde")
    before = await desk.state(case)

    said = await desk.vote(room, old_poll, ("mariestad",))

    assert said.texts == ["Den omröstningen gäller inte längre. Svara på den senaste frågan."]
    assert (await desk.state(case)) == before
    assert (await desk.case(case)).municipality_id == "skovde"


async def test_a_poll_asked_again_after_an_invalid_answer_replaces_the_old_one(
    desk: Desk,
) -> None:
    form = desk.form("lvu6")
    case = await desk.open("lvu6")
    room = room_of(case)
    await desk.answer_until(case, form, "grund")
    [*_, (_, first_poll)] = desk.polls(room)
    await desk.say(room, "inget av dem")
    [*_, (_, second_poll)] = desk.polls(room)
    assert second_poll != first_poll

    refused = await desk.vote(room, first_poll, ("hemmet",))
    assert "gäller inte längre" in refused.text
    accepted = await desk.vote(room, second_poll, ("hemmet",))
    assert accepted.texts[-1].startswith("Fråga 7 av 27")


@pytest.mark.parametrize("stranger", [EVE, BO], ids=["outsider", "duty-member-not-in-case"])
async def test_a_vote_from_someone_not_in_the_case_is_refused(desk: Desk, stranger: str) -> None:
    form = desk.form("lvu6")
    case = await desk.open("lvu6")
    room = room_of(case)
    await desk.answer_until(case, form, "hemkommun")
    [*_, (_, poll_id)] = desk.polls(room)
    before = await desk.state(case)

    said = await desk.vote(room, poll_id, ("mariestad",), sender=stranger)

    assert len(said.replies) == 1
    assert "behörighet" in said.text
    assert (await desk.state(case)) == before


async def test_a_multi_choice_vote_with_two_answers_stores_both(desk: Desk) -> None:
    form = desk.form("lvu6")
    case = await desk.open("lvu6")
    room = room_of(case)
    await desk.answer_until(case, form, "grund")
    [*_, (poll, poll_id)] = desk.polls(room)
    assert poll.max_selections == 4

    said = await desk.vote(room, poll_id, ("hemmet", "brott"))

    assert said.texts[-1].startswith("Fråga 7 av 27")
    answer = (await desk.state(case)).answers["grund"]
    assert answer["value"] == ["hemmet", "brott"]
    assert answer["display"] == "Missförhållanden i hemmet (2 §), Brottslig verksamhet (3 §)"


async def test_a_yes_no_vote_with_an_underscore_value_and_a_long_choice(desk: Desk) -> None:
    form = desk.form("lvm13")
    case = await desk.open("lvm13")
    room = room_of(case)
    await desk.answer_until(case, form, "grund")
    [*_, (_, poll_id)] = desk.polls(room)
    await desk.vote(room, poll_id, ("forstora_livet", "skada"))
    assert (await desk.state(case)).answers["grund"]["value"] == ["forstora_livet", "skada"]


# -- restarts and crashes ----------------------------------------------------------------------


async def test_a_new_dispatcher_on_the_same_database_continues_the_report(desk: Desk) -> None:
    form = desk.form("lvu6")
    case = await desk.open("lvu6")
    room = room_of(case)
    await desk.answer_until(case, form, "handelse")
    before = await desk.state(case)

    desk.restart()
    sent = len(desk.messenger.sent)
    await desk.dispatcher.resume()
    assert len(desk.messenger.sent) == sent  # nothing was pending

    state = await desk.state(case)
    assert state.answers == before.answers
    assert state.current == "handelse"
    said = await desk.say(room, "Polisen ringde 02:10.")
    assert said.texts[-1].startswith(f"Fråga {form.number_of('bradskande')} av")
    state = await desk.state(case)
    assert state.answers["handelse"]["value"] == "Polisen ringde 02:10."
    assert {k: v for k, v in state.answers.items() if k != "handelse"} == before.answers


async def _crash_before_asking(desk: Desk, case: Case, asked: str | None) -> None:
    """As if the bot died after saving a step and before posting the next question."""
    async with desk.sessions() as session, session.begin():
        report = await repo.get_report(session, case_id=case.id)
        assert report is not None
        state = dict(report.state)
        state["asked"] = asked
        saved = await repo.save_report_state(
            session,
            case_id=case.id,
            form_id=report.form_id,
            form_version=report.form_version,
            state=state,
            expected_version=report.version,
            now=desk.clock.now,
        )
    assert saved is not None


async def test_resume_asks_a_question_that_a_crash_swallowed_exactly_once(desk: Desk) -> None:
    form = desk.form("lvu6")
    case = await desk.open("lvu6")
    room = room_of(case)
    await desk.answer_until(case, form, "vistelse")
    await _crash_before_asking(desk, case, asked="hemkommun")

    desk.restart()
    sent = len(desk.messenger.sent)
    await desk.dispatcher.resume()
    posted = desk.messenger.sent[sent:]
    assert len(posted) == 1
    assert posted[0][0] == room
    assert posted[0][1].text.startswith(f"Fråga {form.number_of('vistelse')} av 27")
    assert (await desk.state(case)).asked == "vistelse"

    await desk.dispatcher.resume()
    assert len(desk.messenger.sent) == sent + 1

    said = await desk.say(room, "Hemma i Skövde")
    assert said.texts[-1].startswith("Fråga 5 av 27")
    assert (await desk.state(case)).answers["vistelse"]["value"] == "Hemma i Skövde"


async def test_resume_asks_a_swallowed_poll_question_with_a_fresh_poll(desk: Desk) -> None:
    form = desk.form("lvu6")
    case = await desk.open("lvu6")
    room = room_of(case)
    await desk.answer_until(case, form, "grund")
    [*_, (_, old_poll)] = desk.polls(room)
    await _crash_before_asking(desk, case, asked="vistelse")

    desk.restart()
    sent, polls = len(desk.messenger.sent), len(desk.messenger.polls)
    await desk.dispatcher.resume()
    assert len(desk.messenger.sent) == sent + 1
    assert len(desk.messenger.polls) == polls + 1
    [*_, (_, new_poll)] = desk.polls(room)
    await desk.dispatcher.resume()
    assert (len(desk.messenger.sent), len(desk.messenger.polls)) == (sent + 1, polls + 1)

    refused = await desk.vote(room, old_poll, ("hemmet",))
    assert "gäller inte längre" in refused.text
    await desk.vote(room, new_poll, ("hemmet",))
    assert (await desk.state(case)).answers["grund"]["value"] == ["hemmet"]


async def test_resume_asks_the_form_question_that_a_crash_swallowed(desk: Desk) -> None:
    case = await desk.open()
    await _crash_before_asking(desk, case, asked=None)

    desk.restart()
    sent = len(desk.messenger.sent)
    await desk.dispatcher.resume()
    posted = desk.messenger.sent[sent:]
    assert [room for room, _ in posted] == [case.room_id]
    assert "Vilket beslut gäller ärendet?" in posted[0][1].text
    await desk.dispatcher.resume()
    assert len(desk.messenger.sent) == sent + 1


async def test_resume_leaves_submitted_and_complete_reports_alone(desk: Desk) -> None:
    submitted = await _submitted_lvu(desk)
    form = desk.form("lvu6")
    complete = await desk.open("lvu6")
    await desk.answer_all(complete, form)

    desk.restart()
    sent = len(desk.messenger.sent)
    await desk.dispatcher.resume()
    assert len(desk.messenger.sent) == sent
    assert (await desk.case(submitted)).status == "awaiting_signature"


# -- two people at once ----------------------------------------------------------------------


async def test_two_participants_answering_at_once_keep_the_report_consistent(
    desk: Desk,
) -> None:
    form = desk.form("lvu6")
    case = await desk.open("lvu6")
    room = room_of(case)
    await desk.add_participant(case, BO)
    await desk.answer_until(case, form, "handelse")  # two long-text questions in a row
    before = await desk.state(case)
    sent = len(desk.messenger.sent)

    texts = {ANNA: "Annas beskrivning", BO: "Bos beskrivning"}
    messages = {
        who: IncomingMessage(room_id=room, sender=who, event_id=f"$at-once-{i}", body=body)
        for i, (who, body) in enumerate(texts.items())
    }
    await asyncio.gather(*(desk.dispatcher.handle(m) for m in messages.values()))

    replies = desk.messenger.sent[sent:]
    assert all(r == room for r, _ in replies)
    assert not any(INTERNAL_ERROR in m.text for _, m in replies)
    state = await desk.state(case)
    # Nothing earlier was touched.
    for fid, stored in before.answers.items():
        assert state.answers[fid] == stored
    # Exactly one answer to the question both answered, and it is one of theirs.
    handelse = state.answers["handelse"]["value"]
    assert handelse in texts.values()
    winner = next(who for who, body in texts.items() if body == handelse)
    loser = BO if winner == ANNA else ANNA
    assert state.answers["handelse"]["by"] == winner
    # The other was applied to the next question, or refused: never both lost.
    refused = [
        m for _, m in replies if CONCURRENT in m.text and m.reply_to == messages[loser].event_id
    ]
    if "bradskande" in state.answers:
        assert state.answers["bradskande"]["value"] == texts[loser]
        assert state.answers["bradskande"]["by"] == loser
    else:
        assert refused, [m.text for _, m in replies]
    # Whoever's answer was stored is not told to try again.
    assert not [
        m for _, m in replies if CONCURRENT in m.text and m.reply_to == messages[winner].event_id
    ]
    # The bot asked what it now waits for.
    assert state.asked == state.current


class GatedMessenger(MemoryMessenger):
    """Holds the first question sent after ``arm()`` until ``release`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.armed = False
        self.paused = asyncio.Event()
        self.release = asyncio.Event()

    def arm(self) -> None:
        self.armed = True

    async def send(self, room_id: str, message: Message, *, key: str | None = None) -> str:
        if self.armed and QUESTION.search(message.text):
            self.armed = False
            self.paused.set()
            await self.release.wait()
        return await super().send(room_id, message, key=key)


async def test_a_worker_whose_answer_was_stored_is_not_told_it_failed(
    sessions: Sessions, tmp_path: Path
) -> None:
    settings = write_settings(tmp_path / "gated")
    desk = Desk(settings, sessions, messenger=GatedMessenger())
    gate = desk.messenger
    assert isinstance(gate, GatedMessenger)
    form = desk.form("lvu6")
    case = await desk.open("lvu6")
    room = room_of(case)
    await desk.add_participant(case, BO)
    await desk.answer_until(case, form, "handelse")

    anna = IncomingMessage(room_id=room, sender=ANNA, event_id="$anna-first", body="Annas text")
    bo = IncomingMessage(room_id=room, sender=BO, event_id="$bo-second", body="Bos text")
    gate.arm()
    first = asyncio.create_task(desk.dispatcher.handle(anna))
    await asyncio.wait_for(gate.paused.wait(), 10)  # Anna's answer is saved; her question not
    await desk.dispatcher.handle(bo)  # Bo answers the next question meanwhile
    gate.release.set()
    await first

    state = await desk.state(case)
    assert state.answers["handelse"]["value"] == "Annas text"
    assert state.answers["bradskande"]["value"] == "Bos text"
    told_anna = [m.text for r, m in gate.sent if m.reply_to == "$anna-first"]
    assert not [t for t in told_anna if CONCURRENT in t], told_anna


# -- property tests: any conversation at all -------------------------------------------------


#: Text a worker might send by mistake or on purpose: unicode, newlines, markup.
NOISE = st.one_of(
    st.text(max_size=60),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=20),
    st.sampled_from(
        [
            "<script>alert(1)</script>",
            "**fet** och ```kod``` och `kod`",
            "rad ett\nrad två\n\n\n\nrad tre",
            "",
            "   ",
            "!",
            "!!",
            "! hoppa",
            "{number} {0} %s",
            "&amp; <b>x</b>&",
            "Ärendet\u200b\u2028nästa",
            "e\u0301\u0000\x1f",
            "x" * 250,
        ]
    ),
)

COMMANDS = st.one_of(
    st.sampled_from(
        [
            "!tillbaka",
            "!back",
            "!hoppa",
            "!skip",
            "!sammanfattning",
            "!summary",
            "!skicka",
            "!submit",
            "!status",
            "!hjälp",
            "!help",
            "!ändra",
        ]
    ),
    st.integers(min_value=-3, max_value=25).map(lambda n: f"!ändra {n}"),
    st.text(alphabet="0123456789 .x", min_size=1, max_size=4).map(lambda n: f"!edit {n}"),
)


def typed_answers(spec: FieldSpec) -> st.SearchStrategy[str]:
    """Answers to ``spec`` as a worker would type them: mostly valid, in several forms."""
    count = len(spec.choices)
    by_type: dict[str, st.SearchStrategy[str]] = {
        "text": st.sampled_from(["Kalle Anka", "Åsa Öberg", "<i>Nisse</i> & Co", "**x**"]),
        "long_text": st.sampled_from(["Första raden\nAndra raden", "`kod` <br> **fet**", "Kort."]),
        "yes_no": st.sampled_from(["ja", "nej", "J", "no", "1", "2"]),
        "date": st.sampled_from(["2026-11-24", "idag", "24/11", "20261124"]),
        "datetime": st.sampled_from(["nu", "2026-11-24 03:15", "03:15", "igår kl 23.10"]),
        "personnummer": st.sampled_from(["20160412-2380", "160412-2380", "201604122380"]),
        "phone": st.sampled_from(["070-123 45 67", "+46 70 123 45 67", "0500-44 55 66"]),
        "municipality": st.sampled_from(["Skövde", "mariestad", "1", "2", "Mariestads kommun"]),
        "matrix_user": st.sampled_from(["@x:example.org", "https://matrix.to/#/@Bo:example.org"]),
    }
    if spec.type == "choice":
        return st.one_of(
            st.integers(1, count).map(str),
            st.sampled_from([c.value for c in spec.choices] + [c.label for c in spec.choices]),
        )
    if spec.type == "multi_choice":
        return st.lists(st.integers(1, count), min_size=1, max_size=count, unique=True).flatmap(
            lambda picked: st.sampled_from([", ".join, " och ".join, " ".join]).map(
                lambda joiner: joiner([str(n) for n in picked])
            )
        )
    return by_type[spec.type]


def canonical_text(spec: FieldSpec, value: Any) -> str:
    """Text that reads back as ``value``: to check a stored value is one the parser makes."""
    if spec.type == "multi_choice":
        assert isinstance(value, list) and value, value
        return ", ".join(value)
    if spec.type == "yes_no":
        assert isinstance(value, bool), value
        return "ja" if value else "nej"
    if spec.type == "datetime":
        moment = datetime.fromisoformat(value)
        assert moment.tzinfo is not None, value
        return f"{moment.astimezone(STOCKHOLM):%Y-%m-%d %H:%M:%S}"
    assert isinstance(value, str), value
    return value


@dataclass
class Step:
    kind: str  # "text", "edit" or "vote"
    body: str = ""
    replaces: str | None = None
    poll_id: str = ""
    answers: tuple[str, ...] = ()


def command_name(step: Step) -> str | None:
    """The command a message is, folded (``ändra`` -> ``andra``), or None for an answer."""
    if step.kind == "vote":
        return None
    parsed = parse_command(step.body)
    return fold(parsed.name) if parsed else None


@dataclass
class Conversation:
    """One case driven by drawn messages, checking the invariants after each of them."""

    desk: Desk
    case: Case
    data: st.DataObject
    sent_events: list[str] = field(default_factory=list)
    submitted: dict[str, Any] | None = None
    #: How likely each kind of message is: some workers mostly answer, some fumble.
    kinds: list[str] = field(default_factory=lambda: ["answer", "noise", "command", "edit"])

    @property
    def room(self) -> str:
        return room_of(self.case)

    def parse(self, spec: FieldSpec, text: str) -> Any:
        """What the answer ``text`` to ``spec`` must store, or None when it is refused."""
        try:
            return parse_answer(
                spec,
                text,
                lang="sv",
                municipalities=self.desk.settings.municipalities,
                now=self.desk.clock(),
            )
        except InvalidAnswer:
            return None

    async def draw_step(self, state: DialogueState) -> Step:
        draw = self.data.draw
        form = self.desk.settings.forms.get(state.form_id) if state.form_id else None
        kind = draw(st.sampled_from(self.kinds))
        if kind == "answer":
            if form is None:
                titles = [f.title for f in self.desk.settings.forms.values()]
                body = draw(st.sampled_from(["1", "2", "3", "4", "lvu6", "SOL_PLACERING", *titles]))
            else:
                if state.current is None:  # all answered: what a worker does next
                    return Step("text", draw(st.sampled_from(["!skicka", "!sammanfattning"])))
                body = draw(typed_answers(form.field(state.current)))
            return Step("text", body)
        if kind == "noise":
            return Step("text", draw(NOISE))
        if kind == "command":
            return Step("text", draw(COMMANDS))
        if kind == "edit" and self.sent_events:  # (before any message: a vote instead)
            replaces = draw(st.sampled_from(self.sent_events))
            last = state.last_answer
            if form is not None and last is not None and draw(st.booleans()):
                replaces = last["event"] if draw(st.booleans()) else replaces
                body = draw(typed_answers(form.field(last["field"])))
            else:
                body = draw(NOISE)
            return Step("edit", body, replaces=replaces)
        polls = self.desk.polls(self.room)
        if not polls:
            return Step("text", draw(NOISE))
        current = [(p, pid) for p, pid in polls if pid == state.poll_event]
        use_current = bool(current) and draw(st.booleans())
        poll, poll_id = draw(st.sampled_from(current if use_current else polls))
        ids = [option for option, _ in poll.options]
        answers = draw(
            st.lists(
                st.sampled_from(ids),
                min_size=1 if use_current else 0,
                max_size=poll.max_selections,
                unique=True,
            )
        )
        return Step("vote", poll_id=poll_id, answers=tuple(answers))

    async def run(self, step: Step, before_case: Case, before: DialogueState) -> None:
        """Send ``step`` and check everything after it; ``before_*`` are as stored before."""
        desk = self.desk
        sent = len(desk.messenger.sent)
        if step.kind == "vote":
            said = await desk.vote(self.room, step.poll_id, step.answers)
        else:
            said = await desk.say(self.room, step.body, replaces=step.replaces)
            self.sent_events.append(said.event_id)
        after_case = await desk.case(self.case)
        after = await desk.state(self.case)
        report = await desk.report(self.case)

        # 1. Nothing escaped: the generic error text never appears, anywhere.
        new = desk.messenger.sent[sent:]
        assert not [m.text for _, m in new if INTERNAL_ERROR in m.text], (step, new)
        # Every reply goes to the case room only.
        assert {r for r, _ in new} <= {self.room}, new
        # 2. The bot always answers something. Once the report is sent, plain text is
        # conversation again and needs no answer; commands, edits and votes still do.
        command = command_name(step)
        is_command = command is not None
        drafting = before_case.status == "drafting"
        if drafting or is_command or step.kind != "text" or step.replaces is not None:
            assert said.replies, (step, before)
        # 3. The stored state is consistent, and the question the bot asked last is the
        # one it waits for.
        self.check_consistent(after, drafting=after_case.status == "drafting")
        asked = [int(m[1]) for _, msg in new if (m := QUESTION.match(msg.text))]
        if asked and after.form_id is not None:
            form = desk.form(after.form_id)
            assert after.current is not None, (step, after)
            assert asked[-1] == form.number_of(after.current), (step, after)
        # 4. Nothing given is lost; only the question the step addressed changed.
        if not drafting:
            assert after == before, step
            assert report.submitted == self.submitted
            return
        self.check_nothing_lost(step, before, after, command=command)
        # 5. A submission froze exactly the visible answers.
        if after_case.status != "drafting":
            assert after_case.status == "awaiting_signature"
            assert command in ("skicka", "submit"), step
            form = desk.form(after.form_id or "")
            assert dialogue.is_complete(form, after)
            assert report.submitted is not None
            assert [a["id"] for a in report.submitted["answers"]] == [
                f.id for f in dialogue.visible_fields(form, after)
            ]
            for item in report.submitted["answers"]:
                stored = after.answers.get(item["id"])
                assert item["value"] == (stored["value"] if stored else None)
            self.submitted = report.submitted
            event("a report was submitted")
        else:
            assert report.submitted is None

    def check_consistent(self, state: DialogueState, *, drafting: bool) -> None:
        form = self.desk.settings.forms.get(state.form_id) if state.form_id else None
        if form is None:
            assert state.form_id is None
            assert state.answers == {} and state.current is None
            if drafting:
                assert state.asked == "#form"
            return
        visible = [f.id for f in dialogue.visible_fields(form, state)]
        assert state.current is None or state.current in visible, state
        if state.current is None:
            assert dialogue.is_complete(form, state), state
        if drafting:
            assert state.asked == state.current, state  # the bot asked what it waits for
        for fid in state.skipped:
            assert not form.field(fid).required and fid not in state.answers, state
        for fid in visible:
            if fid not in state.answers:
                continue
            spec, stored = form.field(fid), state.answers[fid]
            again = self.parse(spec, canonical_text(spec, stored["value"]))
            assert again is not None, (fid, stored)
            assert (again.value, again.display) == (stored["value"], stored["display"]), fid

    def check_nothing_lost(
        self, step: Step, before: DialogueState, after: DialogueState, *, command: str | None
    ) -> None:
        is_command = command is not None
        form = self.desk.settings.forms.get(before.form_id) if before.form_id else None
        if form is None:
            return  # choosing the form: there are no answers yet
        addressed: str | None = None
        expected: Any = None
        if not is_command and step.kind == "text" and step.replaces is None:
            addressed = before.current
            if addressed is not None:
                expected = self.parse(form.field(addressed), step.body)
        elif step.kind == "edit" and not is_command:
            last = before.last_answer
            if last is not None and last["event"] == step.replaces:
                addressed = last["field"]
                expected = self.parse(form.field(addressed), step.body)
        elif step.kind == "vote":
            if step.poll_id == before.poll_event and step.answers:
                addressed = before.current
                if addressed is not None:
                    expected = self.parse(form.field(addressed), ", ".join(step.answers))
        elif command in ("hoppa", "skip"):
            addressed = before.current
        for fid in set(before.answers) | set(after.answers):
            old, new = before.answers.get(fid), after.answers.get(fid)
            if fid != addressed:
                assert new == old, (step, fid, old, new)
            else:
                # An answer, once given, is only ever replaced, never cleared.
                assert old is None or new is not None, (step, fid, old)
        if addressed is not None and not is_command:
            if expected is None:
                assert after.answers.get(addressed) == before.answers.get(addressed), step
            else:
                stored = after.answers.get(addressed)
                assert stored is not None, (step, addressed)
                assert stored["value"] == expected.value, (step, addressed, stored)
                event(f"{step.kind} accepted")


class FreshRoomsMessenger(MemoryMessenger):
    """Room ids unique across examples that share one database."""

    rooms_made = itertools.count(1)

    async def create_case_room(self, *, name: str, invite: Sequence[str]) -> str:
        room_id = f"!case{next(self.rooms_made)}:test"
        self.rooms[room_id] = (name, list(invite))
        return room_id


@pytest.fixture(scope="module")
def property_database(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One migrated SQLite file for all examples: each example opens its own case."""
    url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('property') / 'socialjour.db'}"
    asyncio.run(upgrade(url))
    return url


@pytest.fixture(scope="module")
def property_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return write_settings(tmp_path_factory.mktemp("property-config"))


async def _converse(url: str, config: Settings, data: st.DataObject, max_steps: int) -> None:
    engine = create_engine(url)
    try:
        desk = Desk(config, session_factory(engine), messenger=FreshRoomsMessenger())
        form_id = data.draw(st.sampled_from([None, *config.forms]), label="form")
        case = await desk.open(form_id)
        diligence = data.draw(st.sampled_from([5, 20]), label="diligence")
        kinds = ["answer"] * diligence + ["noise"] * 2 + ["command"] * 3 + ["edit", "vote"] * 2
        conversation = Conversation(desk, case, data, kinds=kinds)
        conversation.check_consistent(await desk.state(case), drafting=True)
        fewest = 1 if diligence < 20 else max_steps // 2
        stored_case, state = await desk.case(case), await desk.state(case)
        for _ in range(data.draw(st.integers(fewest, max_steps), label="steps")):
            step = await conversation.draw_step(state)
            data.draw(st.just(step), label="step")  # shown in a failing example
            await conversation.run(step, stored_case, state)
            stored_case, state = await desk.case(case), await desk.state(case)
            desk.clock.advance(seconds=40)
    finally:
        await engine.dispose()


@settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_any_conversation_keeps_the_report_consistent_and_loses_nothing(
    property_database: str, property_settings: Settings, data: st.DataObject
) -> None:
    asyncio.run(_converse(property_database, property_settings, data, max_steps=32))
