"""The dispatcher as a worker on duty meets it: commands in, replies and rooms out.

Every test runs on a real, migrated database (SQLite and PostgreSQL, through the
storage fixtures) with the in-memory messenger standing in for Matrix.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import textwrap
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from config import Settings, load_settings
from handlers.dispatcher import Dispatcher
from handlers.messenger import IncomingMessage, MemoryMessenger, Message
from storage import repo
from storage.models import Case

Sessions = async_sessionmaker[AsyncSession]

ANNA = "@anna:example.org"
BO = "@bo:example.org"
EVE = "@eve:example.org"
CECILIA = "@cecilia:example.org"
DUTY = "!duty:test"
START = datetime(2026, 3, 1, 2, 30, tzinfo=UTC)  # 03:30 in Stockholm, a night shift

CONFIG = """
[matrix]
homeserver = "http://127.0.0.1:8008"
user_id = "@socialjour:example.org"
password = {{ env = "SOCIALJOUR_MATRIX_PASSWORD" }}

[storage]
data_dir = "data"

[duty]
room_alias = "#socialjour:example.org"
members = {members}
leads = {leads}
language = "{language}"

[[municipalities]]
id = "skovde"
name = "Skövde kommun"
intake_room_alias = "#mottagning-skovde:example.org"
intake_members = ["@cecilia:example.org"]
"""


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


def write_settings(
    folder: Path,
    *,
    language: str = "sv",
    members: tuple[str, ...] = (ANNA, BO),
    leads: tuple[str, ...] = (ANNA,),
) -> Settings:
    path = folder / "config.toml"
    text = CONFIG.format(language=language, members=json.dumps(members), leads=json.dumps(leads))
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return load_settings(path, environ={"SOCIALJOUR_MATRIX_PASSWORD": "secret"})


class Harness:
    """One dispatcher, its messenger and clock, and helpers to talk to it."""

    _events = itertools.count(1)

    def __init__(self, dispatcher: Dispatcher, messenger: MemoryMessenger, clock: FakeClock):
        self.dispatcher = dispatcher
        self.messenger = messenger
        self.clock = clock
        self.sessions: Sessions = dispatcher.sessions

    async def say(
        self, room_id: str, body: str, *, sender: str = ANNA, trusted: bool = True
    ) -> list[tuple[str, Message]]:
        """Send one message and return what the bot sent in answer (to any room)."""
        before = len(self.messenger.sent)
        event_id = f"$in{next(self._events)}"
        await self.dispatcher.handle(
            IncomingMessage(
                room_id=room_id,
                sender=sender,
                event_id=event_id,
                body=body,
                trusted_device=trusted,
            )
        )
        return self.messenger.sent[before:]

    async def reply(self, room_id: str, body: str, **kwargs: object) -> Message:
        """Send a command and return the bot's single answer in the same room."""
        answers = await self.say(room_id, body, **kwargs)  # type: ignore[arg-type]
        here = [message for room, message in answers if room == room_id]
        assert len(here) == 1, answers
        return here[0]

    async def open_case(self, sender: str = ANNA) -> tuple[str, str]:
        """`!ny` in the duty room; returns the case number and the case room id."""
        await self.say(DUTY, "!ny", sender=sender)
        cases = await self.cases()
        case = cases[-1]
        assert case.room_id is not None
        return case.number, case.room_id

    async def cases(self) -> list[Case]:
        async with self.sessions() as session:
            return await repo.list_cases(session)

    async def case(self, number: str) -> Case:
        async with self.sessions() as session:
            case = await repo.get_case_by_number(session, number=number)
        assert case is not None
        return case

    async def audit_actions(self, number: str) -> list[str]:
        case = await self.case(number)
        async with self.sessions() as session:
            return [entry.action for entry in await repo.list_audit(session, case_id=case.id)]


MakeHarness = Callable[..., Harness]
_folders = itertools.count(1)


@pytest.fixture
def make_harness(sessions: Sessions, tmp_path: Path) -> MakeHarness:
    def make(
        *,
        language: str = "sv",
        now: datetime = START,
        messenger: MemoryMessenger | None = None,
        members: tuple[str, ...] = (ANNA, BO),
        leads: tuple[str, ...] = (ANNA,),
    ) -> Harness:
        folder = tmp_path / f"config{next(_folders)}"
        folder.mkdir()
        messenger = messenger if messenger is not None else MemoryMessenger()
        clock = FakeClock(now)
        dispatcher = Dispatcher(
            settings=write_settings(folder, language=language, members=members, leads=leads),
            sessions=sessions,
            messenger=messenger,
            clock=clock,
        )
        dispatcher.duty_room_id = DUTY
        return Harness(dispatcher, messenger, clock)

    return make


@pytest.fixture
def h(make_harness: MakeHarness) -> Harness:
    return make_harness()


# -- opening a case -----------------------------------------------------------------


async def test_new_case_gets_a_number_and_a_room_named_by_the_number_alone(h: Harness) -> None:
    answers = await h.say(DUTY, "!ny")

    [case] = await h.cases()
    assert case.number == "SJ-2026-0001"
    assert case.status == "drafting"
    assert case.created_by == ANNA
    assert case.room_id is not None

    # The room: named by the number and nothing else, only the sender invited.
    assert h.messenger.rooms == {case.room_id: ("SJ-2026-0001", [ANNA])}

    # The welcome comes first in the case room and mentions the worker, so the phone
    # notifies. (The guided report may follow it with its first question.)
    in_room = [m for room, m in answers if room == case.room_id]
    assert in_room
    welcome = in_room[0]
    assert welcome.mentions == (ANNA,)
    assert "SJ-2026-0001" in welcome.text
    assert "!hjälp" in welcome.text

    # The duty room gets an answer threaded to the command that names the number.
    in_duty = [m for room, m in answers if room == DUTY]
    assert len(in_duty) == 1
    assert in_duty[0].reply_to is not None and in_duty[0].reply_to.startswith("$in")
    assert "SJ-2026-0001" in in_duty[0].text
    # Nothing goes anywhere else (no other room learns about the case).
    assert {room for room, _ in answers} == {DUTY, case.room_id}

    assert (await h.audit_actions("SJ-2026-0001"))[:2] == ["case.created", "room.created"]


async def test_the_form_named_after_new_is_kept_with_the_case(h: Harness) -> None:
    await h.say(DUTY, "!ny lvu6")
    [case] = await h.cases()
    assert case.form_id == "lvu6"


async def test_cases_get_consecutive_numbers(h: Harness) -> None:
    first, _ = await h.open_case()
    second, _ = await h.open_case(sender=BO)
    assert (first, second) == ("SJ-2026-0001", "SJ-2026-0002")
    assert sorted(name for name, _ in h.messenger.rooms.values()) == [first, second]
    # Each worker is invited to their own case only.
    assert sorted(invited for _, invited in h.messenger.rooms.values()) == [[ANNA], [BO]]


async def test_ten_concurrent_new_cases_get_ten_distinct_consecutive_numbers(
    h: Harness,
) -> None:
    messages = [
        IncomingMessage(room_id=DUTY, sender=ANNA if i % 2 else BO, event_id=f"$c{i}", body="!ny")
        for i in range(10)
    ]
    await asyncio.gather(*(h.dispatcher.handle(m) for m in messages))

    numbers = sorted(case.number for case in await h.cases())
    assert numbers == [f"SJ-2026-{n:04d}" for n in range(1, 11)]
    assert sorted(name for name, _ in h.messenger.rooms.values()) == numbers
    room_ids = {case.room_id for case in await h.cases()}
    assert None not in room_ids and len(room_ids) == 10
    duty_answers = h.messenger.texts(DUTY)
    assert len(duty_answers) == 10
    assert not any("gick fel" in text for text in duty_answers)


@pytest.mark.parametrize(
    ("now", "year"),
    [
        (datetime(2026, 12, 31, 23, 30, tzinfo=UTC), 2027),  # 00:30 on New Year's Day locally
        (datetime(2026, 12, 31, 22, 59, tzinfo=UTC), 2026),  # 23:59 on New Year's Eve locally
        (datetime(2027, 6, 30, 22, 30, tzinfo=UTC), 2027),
    ],
)
async def test_the_year_in_the_number_is_the_year_in_stockholm(
    make_harness: MakeHarness, now: datetime, year: int
) -> None:
    h = make_harness(now=now)
    number, _ = await h.open_case()
    assert number == f"SJ-{year}-0001"


async def test_numbering_starts_again_in_a_new_year(h: Harness) -> None:
    h.clock.now = datetime(2026, 12, 31, 22, 0, tzinfo=UTC)
    await h.open_case()
    await h.open_case()
    h.clock.now = datetime(2026, 12, 31, 23, 30, tzinfo=UTC)
    number, _ = await h.open_case()
    assert number == "SJ-2027-0001"


# -- who may do what ----------------------------------------------------------------


async def test_an_outsider_in_the_duty_room_is_refused_politely_and_nothing_is_created(
    h: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    answer = await h.reply(DUTY, "!ny lvu6 Kalle 19800101-1234", sender=EVE)

    assert "behörighet" in answer.text
    assert answer.reply_to is not None
    assert await h.cases() == []
    assert h.messenger.rooms == {}
    # Who tried is logged; never what they wrote.
    assert "19800101-1234" not in caplog.text
    assert "Kalle" not in caplog.text


@pytest.mark.parametrize("stranger", [EVE, BO], ids=["outsider", "duty-member-not-in-case"])
async def test_someone_not_in_the_case_is_refused_in_its_room(h: Harness, stranger: str) -> None:
    number, room = await h.open_case()

    for command in ("!status", "!logg", "!avbryt", "!hjälp"):
        answer = await h.reply(room, command, sender=stranger)
        assert "behörighet" in answer.text
        assert number not in answer.text

    await h.reply(room, "!avbryt", sender=stranger)
    await h.reply(room, "!avbryt ja", sender=stranger)
    case = await h.case(number)
    assert case.status == "drafting"
    assert case.cancel_requested_at is None


async def test_a_lead_who_is_listed_only_as_lead_may_open_cases(
    make_harness: MakeHarness,
) -> None:
    h = make_harness(members=(BO,), leads=(ANNA,))
    number, _ = await h.open_case(sender=ANNA)
    assert number == "SJ-2026-0001"


async def test_a_message_from_an_untrusted_device_gets_an_explanation_and_creates_nothing(
    h: Harness,
) -> None:
    answer = await h.reply(DUTY, "!ny", trusted=False)
    assert "inte är verifierad" in answer.text
    assert await h.cases() == []
    assert h.messenger.rooms == {}


async def test_an_untrusted_device_cannot_cancel_a_case(h: Harness) -> None:
    number, room = await h.open_case()
    await h.reply(room, "!avbryt")
    answer = await h.reply(room, "!avbryt ja", trusted=False)
    assert "inte är verifierad" in answer.text
    assert (await h.case(number)).status == "drafting"


async def test_rooms_the_bot_does_not_know_get_no_answer(h: Harness) -> None:
    assert await h.say("!elsewhere:test", "!ny") == []
    assert await h.say("!elsewhere:test", "!hjälp", sender=EVE) == []
    assert await h.cases() == []


# -- parsing and routing ------------------------------------------------------------


@pytest.mark.parametrize("body", ["!ny", "!NY", "!Ny", "!new", "!NEW", "  !ny  "])
async def test_new_case_is_case_insensitive_and_has_an_english_alias(h: Harness, body: str) -> None:
    await h.say(DUTY, body)
    assert [case.number for case in await h.cases()] == ["SJ-2026-0001"]


@pytest.mark.parametrize("body", ["!hjälp", "!hjalp", "!HJÄLP", "!Hjalp", "!help"])
async def test_help_works_with_and_without_the_accent(h: Harness, body: str) -> None:
    answer = await h.reply(DUTY, body)
    assert "Kommandon i jourrummet" in answer.text
    assert "!ny" in answer.text and "!status" in answer.text and "!jour" in answer.text


async def test_help_in_a_case_room_lists_the_case_commands(h: Harness) -> None:
    _, room = await h.open_case()
    answer = await h.reply(room, "!hjälp")
    assert "Kommandon i ärenderummet" in answer.text
    assert "!avbryt" in answer.text and "!logg" in answer.text


async def test_an_unknown_command_is_named_back(h: Harness) -> None:
    answer = await h.reply(DUTY, "!flyga till månen")
    assert "Okänt kommando" in answer.text
    assert "!flyga" in answer.text
    assert "!hjälp" in answer.text
    assert await h.cases() == []


async def test_new_case_in_a_case_room_points_to_the_duty_room(h: Harness) -> None:
    _, room = await h.open_case()
    answer = await h.reply(room, "!ny")
    assert "!ny" in answer.text
    assert "jourrummet" in answer.text
    assert len(await h.cases()) == 1


async def test_cancel_in_the_duty_room_points_to_a_case_room(h: Harness) -> None:
    answer = await h.reply(DUTY, "!avbryt")
    assert "ärenderum" in answer.text


async def test_an_intake_command_in_the_duty_room_gets_a_wrong_room_answer(h: Harness) -> None:
    answer = await h.reply(DUTY, "!mottaget")
    assert "Något gick fel" not in answer.text
    assert "!mottaget" in answer.text


@pytest.mark.parametrize("body", ["hej", "ny", "Ring mig ! nu", "", "!", "   "])
async def test_plain_text_in_the_duty_room_gets_no_answer(h: Harness, body: str) -> None:
    # (In a case room, plain text is the answer to the report's current question.)
    await h.open_case()
    before = len(h.messenger.sent)
    assert await h.say(DUTY, body) == []
    assert await h.say(DUTY, body, sender=EVE) == []
    assert len(h.messenger.sent) == before
    assert len(await h.cases()) == 1


# -- status ---------------------------------------------------------------------------


async def test_status_in_the_duty_room_without_cases(h: Harness) -> None:
    answer = await h.reply(DUTY, "!status")
    assert "Inga öppna ärenden" in answer.text


async def test_status_in_the_duty_room_lists_the_open_cases(h: Harness) -> None:
    first, _ = await h.open_case()
    second, second_room = await h.open_case(sender=BO)
    third, _ = await h.open_case()
    # Cancel the second: it is no longer open.
    await h.reply(second_room, "!avbryt", sender=BO)
    await h.reply(second_room, "!avbryt ja", sender=BO)

    answer = await h.reply(DUTY, "!status", sender=BO)
    assert "Öppna ärenden (2)" in answer.text
    assert first in answer.text and third in answer.text
    assert second not in answer.text
    assert "utkast" in answer.text
    assert "2026-03-01 03:30" in answer.text  # local time, not UTC
    assert answer.text.index(first) < answer.text.index(third)
    assert answer.reply_to is not None
    assert answer.html is not None and f"<strong>{first}</strong>" in answer.html


async def test_status_in_a_case_room_shows_the_state_in_swedish(h: Harness) -> None:
    number, room = await h.open_case()
    answer = await h.reply(room, "!status")
    assert number in answer.text
    assert "Läge: utkast" in answer.text
    assert "2026-03-01 03:30" in answer.text
    assert ANNA in answer.text
    assert "!skicka" in answer.text  # what happens next


async def test_status_of_a_cancelled_case(h: Harness) -> None:
    _, room = await h.open_case()
    await h.reply(room, "!avbryt")
    await h.reply(room, "!avbryt ja")
    answer = await h.reply(room, "!status")
    assert "Läge: avbrutet" in answer.text


# -- cancelling -----------------------------------------------------------------------


async def test_cancel_asks_for_confirmation_first(h: Harness) -> None:
    number, room = await h.open_case()
    answer = await h.reply(room, "!avbryt")
    assert number in answer.text
    assert "!avbryt ja" in answer.text
    assert "5 minuter" in answer.text
    case = await h.case(number)
    assert case.status == "drafting"
    assert case.cancel_requested_by == ANNA


@pytest.mark.parametrize("confirmation", ["!avbryt ja", "!avbryt JA", "!cancel yes"])
async def test_confirming_within_five_minutes_cancels(h: Harness, confirmation: str) -> None:
    number, room = await h.open_case()
    await h.reply(room, "!avbryt")
    h.clock.advance(minutes=4, seconds=59)

    answer = await h.reply(room, confirmation)

    assert number in answer.text and "avbrutet" in answer.text
    case = await h.case(number)
    assert case.status == "cancelled"
    assert case.cancel_requested_at is None
    assert (await h.audit_actions(number))[-1] == "status.cancelled"
    async with h.sessions() as session:
        [entry] = [
            e
            for e in await repo.list_audit(session, case_id=case.id)
            if e.action.startswith("status.")
        ]
    assert entry.actor == ANNA
    assert entry.at == h.clock.now
    assert entry.detail == {"from": "drafting"}


async def test_confirming_after_six_minutes_does_not_cancel(h: Harness) -> None:
    number, room = await h.open_case()
    await h.reply(room, "!avbryt")
    h.clock.advance(minutes=6)

    answer = await h.reply(room, "!avbryt ja")

    assert "ingen begäran" in answer.text
    assert (await h.case(number)).status == "drafting"
    assert "status.cancelled" not in await h.audit_actions(number)


async def test_confirming_without_a_request_does_not_cancel(h: Harness) -> None:
    number, room = await h.open_case()
    answer = await h.reply(room, "!avbryt ja")
    assert "ingen begäran" in answer.text
    assert (await h.case(number)).status == "drafting"


async def test_a_new_request_restarts_the_window(h: Harness) -> None:
    number, room = await h.open_case()
    await h.reply(room, "!avbryt")
    h.clock.advance(minutes=10)
    await h.reply(room, "!avbryt")
    h.clock.advance(minutes=2)
    await h.reply(room, "!avbryt ja")
    assert (await h.case(number)).status == "cancelled"


async def test_a_cancelled_case_cannot_be_cancelled_again(h: Harness) -> None:
    number, room = await h.open_case()
    await h.reply(room, "!avbryt")
    await h.reply(room, "!avbryt ja")

    for command in ("!avbryt", "!avbryt ja"):
        answer = await h.reply(room, command)
        assert "Det går inte just nu" in answer.text
        assert "avbrutet" in answer.text
        assert "{" not in answer.text
    assert (await h.audit_actions(number)).count("status.cancelled") == 1


async def test_a_cancelled_case_room_still_answers_its_participant(h: Harness) -> None:
    _, room = await h.open_case()
    await h.reply(room, "!avbryt")
    await h.reply(room, "!avbryt ja")
    answer = await h.reply(room, "!hjälp")
    assert "Kommandon i ärenderummet" in answer.text


# -- when the homeserver fails ------------------------------------------------------


async def test_a_failed_room_creation_loses_nothing_and_recover_creates_the_room_once(
    make_harness: MakeHarness,
) -> None:
    messenger = MemoryMessenger(fail_room_creation=True)
    h = make_harness(messenger=messenger)

    answer = await h.reply(DUTY, "!ny")

    assert "SJ-2026-0001" in answer.text
    assert "registrerat" in answer.text
    assert "inget har gått förlorat" in answer.text
    assert answer.reply_to is not None
    [case] = await h.cases()
    assert (case.number, case.status, case.room_id) == ("SJ-2026-0001", "drafting", None)
    assert messenger.rooms == {}

    messenger.fail_room_creation = False
    sent_before = len(messenger.sent)
    h.clock.advance(minutes=3)  # past the grace !ny has to create the room itself
    assert await h.dispatcher.cases.recover() == 1

    [(room_id, (name, invited))] = messenger.rooms.items()
    assert (name, invited) == ("SJ-2026-0001", [ANNA])
    resumed = messenger.sent[sent_before]
    assert {room for room, _ in messenger.sent[sent_before:]} == {room_id}
    assert resumed[0] == room_id
    assert "återupptogs" in resumed[1].text
    assert "SJ-2026-0001" in resumed[1].text
    assert resumed[1].mentions == (ANNA,)
    assert (await h.case("SJ-2026-0001")).room_id == room_id

    sent_before = len(messenger.sent)
    h.clock.advance(minutes=3)  # past the grace !ny has to create the room itself
    assert await h.dispatcher.cases.recover() == 0
    assert len(messenger.rooms) == 1
    assert len(messenger.sent) == sent_before
    assert (await h.audit_actions("SJ-2026-0001")).count("room.created") == 1

    # The recovered room works like any case room.
    status = await h.reply(room_id, "!status")
    assert "Läge: utkast" in status.text


async def test_recover_skips_cases_that_are_no_longer_open_and_keeps_trying_the_rest(
    make_harness: MakeHarness,
) -> None:
    messenger = MemoryMessenger(fail_room_creation=True)
    h = make_harness(messenger=messenger)
    await h.say(DUTY, "!ny")
    await h.say(DUTY, "!ny", sender=BO)
    # Still failing: recover reports none recovered and does not raise.
    h.clock.advance(minutes=3)  # past the grace !ny has to create the room itself
    assert await h.dispatcher.cases.recover() == 0
    assert len(await h.cases()) == 2
    messenger.fail_room_creation = False
    h.clock.advance(minutes=3)  # past the grace !ny has to create the room itself
    assert await h.dispatcher.cases.recover() == 2
    assert sorted(name for name, _ in messenger.rooms.values()) == [
        "SJ-2026-0001",
        "SJ-2026-0002",
    ]


async def test_an_unexpected_error_in_a_handler_never_escapes(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = 0

    async def broken(*args: object, **kwargs: object) -> list[Case]:
        nonlocal calls
        calls += 1
        raise RuntimeError("database on fire")

    monkeypatch.setattr(repo, "list_cases", broken)

    answer = await h.reply(DUTY, "!status")  # must not raise

    assert calls == 1
    assert "Något gick fel" in answer.text
    assert "database on fire" not in answer.text
    assert "RuntimeError" not in answer.text


async def test_an_error_while_opening_the_room_after_the_case_is_saved_is_reported_as_such(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The messenger raising something unexpected once: the case survives and is said so."""
    original = h.messenger.create_case_room
    failures = iter([RuntimeError("boom")])

    async def flaky(*, name: str, invite: list[str]) -> str:
        error = next(failures, None)
        if error is not None:
            raise error
        return await original(name=name, invite=invite)

    monkeypatch.setattr(h.messenger, "create_case_room", flaky)

    answer = await h.reply(DUTY, "!ny")
    assert "SJ-2026-0001" in answer.text and "registrerat" in answer.text

    number, _ = await h.open_case()
    assert number == "SJ-2026-0002"
    h.clock.advance(minutes=3)  # past the grace !ny has to create the room itself
    assert await h.dispatcher.cases.recover() == 1


async def test_a_messenger_that_cannot_send_never_breaks_handle(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def cannot_send(room_id: str, message: Message) -> str:
        raise ConnectionError("homeserver unreachable")

    monkeypatch.setattr(h.messenger, "send", cannot_send)
    for body in ("!hjälp", "!flyga", "!status"):
        await h.say(DUTY, body)
    await h.say(DUTY, "!ny", sender=EVE)
    # The case is saved even when the welcome and the answer cannot be sent.
    await h.say(DUTY, "!ny")
    assert [case.number for case in await h.cases()] == ["SJ-2026-0001"]


async def test_a_database_failure_while_locating_the_room_is_swallowed(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*args: object, **kwargs: object) -> Case | None:
        raise OSError("connection reset")

    monkeypatch.setattr(repo, "get_case_by_room", broken)
    assert await h.say("!some-case:test", "!status") == []


# -- language and the audit log -------------------------------------------------------


async def test_english_installation_speaks_english(make_harness: MakeHarness) -> None:
    h = make_harness(language="en")
    for body in ("!help", "!hjälp"):
        answer = await h.reply(DUTY, body)
        assert "Commands in the duty room" in answer.text
        assert "!new" in answer.text
        assert "Kommandon" not in answer.text

    refused = await h.reply(DUTY, "!new", sender=EVE)
    assert "not allowed" in refused.text

    number, room = await h.open_case()
    status = await h.reply(room, "!status")
    assert "State: draft" in status.text
    wrong = await h.reply(room, "!new")
    assert "the duty room" in wrong.text
    assert number in (await h.reply(room, "!cancel")).text


async def test_log_in_the_duty_room_is_a_wrong_room(h: Harness) -> None:
    answer = await h.reply(DUTY, "!logg")
    assert "ärenderum" in answer.text


async def test_duty_room_on_call_says_when_a_municipality_has_no_decision_maker(
    h: Harness,
) -> None:
    answer = await h.reply(DUTY, "!jour")
    assert answer.reply_to is not None
    assert "Skövde kommun: ingen beslutsfattare inlagd" in answer.text


async def test_executed_before_the_signature_says_what_it_needs(h: Harness) -> None:
    _, room = await h.open_case()
    answer = await h.reply(room, "!verkställt")
    assert "!verkställt" in answer.text
    assert "när beslutet är undertecknat" in answer.text


async def test_only_the_worker_who_asked_can_confirm_a_cancellation(h: Harness) -> None:
    number, room = await h.open_case()
    async with h.sessions() as session, session.begin():
        case = await repo.get_case_by_number(session, number=number)
        assert case is not None
        await repo.add_participant(
            session, case_id=case.id, user_id=BO, role="worker", now=h.clock.now
        )
    await h.say(room, "!avbryt")
    answer = await h.reply(room, "!avbryt ja", sender=BO)
    assert "ingen begäran" in answer.text.lower()
    assert (await h.cases())[0].status == "drafting"
    confirmed = await h.reply(room, "!avbryt ja")
    assert "avbrutet" in confirmed.text


async def test_help_in_an_intake_room_names_the_receipt_command(h: Harness) -> None:
    h.dispatcher.intake_rooms["!intake:test"] = "skovde"
    answer = await h.reply("!intake:test", "!hjälp", sender=CECILIA)
    assert "!mottaget" in answer.text


async def test_recover_leaves_a_case_that_is_still_getting_its_room_alone(h: Harness) -> None:
    h.messenger.fail_room_creation = True
    await h.reply(DUTY, "!ny")  # the room could not be made yet
    h.messenger.fail_room_creation = False

    assert await h.dispatcher.cases.recover() == 0  # moments later: !ny's own business
    h.clock.advance(minutes=3)
    assert await h.dispatcher.cases.recover() == 1
