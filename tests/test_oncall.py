"""Who is on call to decide, and the duty lead's ``!jour ersätt`` overrides.

:func:`handlers.oncall.on_call` and the ``!jour`` command through the real
dispatcher, on a migrated database (SQLite and PostgreSQL, the storage fixtures),
with the in-memory messenger and a clock the test moves; :func:`parse_moment` on
its own. The on-call calendar's part is in ``tests/test_roster.py``; here only how
``!jour`` shows it.
"""

from __future__ import annotations

import itertools
import json
import textwrap
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from config import Settings, load_settings
from handlers import i18n
from handlers.context import LOCAL_TZ
from handlers.dispatcher import Dispatcher
from handlers.messenger import IncomingMessage, MemoryMessenger, Message
from handlers.oncall import OnCallSource, on_call, on_call_entries, parse_moment
from storage import decisions
from storage.models import RosterOverride
from tests.test_handlers import FakeClock

Sessions = async_sessionmaker[AsyncSession]

ANNA = "@anna:example.org"  # on duty, not a lead
LENA = "@lena:example.org"  # duty lead
DAG = "@dag:example.org"
EVA = "@eva:example.org"  # decides for Skövde and Tibro
OLLE = "@olle:example.org"
TOVE = "@tove:example.org"  # decides for Tibro only
STRANGER = "@mallory:example.org"
DUTY = "!duty:test"
NOW = datetime(2026, 11, 24, 2, 30, tzinfo=UTC)  # Tuesday 03:30 in Stockholm

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
{skovde_roster}

  [[municipalities.decision_makers]]
  user_id = "{dag}"
  name = "Dag Dagsson"
  role = "ordförande"
  appointed_by = "Kommunfullmäktige"
  appointed_on = 2023-01-12
  minutes_ref = "§ 4"
  valid_until = 2030-12-31

  [[municipalities.decision_makers]]
  user_id = "{eva}"
  name = "Eva Evasdotter"
  role = "förordnad ledamot"
  title = "vice ordförande"
  appointed_by = "Socialnämnden"
  appointed_on = 2023-01-26
  minutes_ref = "§ 12"
  valid_until = 2030-12-31

  [[municipalities.decision_makers]]
  user_id = "{olle}"
  name = "Olle Olsson"
  role = "förordnad ledamot"
  appointed_by = "Socialnämnden"
  appointed_on = {olle_from}
  minutes_ref = "§ 13"
  valid_until = {olle_until}

[[municipalities]]
id = "tibro"
name = "Tibro kommun"
intake_room_alias = "#mottagning-tibro:example.org"
body_name = "Individ- och familjenämnden"
{tibro_roster}

  [[municipalities.decision_makers]]
  user_id = "{tove}"
  name = "Tove Tibro"
  role = "ordförande"
  appointed_by = "Kommunfullmäktige"
  appointed_on = 2023-01-12
  minutes_ref = "§ 7"
  valid_until = 2030-12-31

  # The old value, still read (with a warning) when the appointment is recorded.
  [[municipalities.decision_makers]]
  user_id = "{eva}"
  name = "Eva Evasdotter"
  role = "ledamot"
  appointed_by = "Individ- och familjenämnden"
  appointed_on = 2023-02-02
  minutes_ref = "§ 21"
  valid_until = 2030-12-31

[[municipalities]]
id = "mariestad"
name = "Mariestads kommun"
intake_room_alias = "#mottagning-mariestad:example.org"
"""

_folders = itertools.count(1)


def make_settings(
    folder: Path,
    language: str = "sv",
    *,
    rosters: dict[str, str] | None = None,
    olle: tuple[date, date] = (date(2023, 1, 26), date(2030, 12, 31)),
) -> Settings:
    """The test config; ``rosters`` gives Skövde's and Tibro's ``roster_ics`` (path or URL),
    ``olle`` the days Olle's appointment holds (both included)."""
    path = folder / f"config{next(_folders)}.toml"
    rosters = rosters or {}
    text = CONFIG.format(
        skovde_roster=_roster_line(rosters.get("skovde")),
        tibro_roster=_roster_line(rosters.get("tibro")),
        olle_from=olle[0].isoformat(),
        olle_until=olle[1].isoformat(),
        members=json.dumps([ANNA]),
        leads=json.dumps([LENA]),
        language=language,
        dag=DAG,
        eva=EVA,
        olle=OLLE,
        tove=TOVE,
    )
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return load_settings(path, environ={"SOCIALJOUR_MATRIX_PASSWORD": "secret"})


def _roster_line(location: str | None) -> str:
    return "" if location is None else f"roster_ics = {json.dumps(location)}"


class FakeRoster:
    """A :class:`handlers.roster.RosterSource` holding ICS bytes per municipality."""

    def __init__(self, **calendars: bytes) -> None:
        self.calendars = calendars
        self.asked: list[str] = []

    async def calendar(self, municipality_id: str) -> bytes | None:
        self.asked.append(municipality_id)
        return self.calendars.get(municipality_id)


class Duty:
    """The duty room: a dispatcher, its messenger and clock."""

    _events = itertools.count(1)

    def __init__(self, settings: Settings, sessions: Sessions) -> None:
        self.settings = settings
        self.sessions = sessions
        self.messenger = MemoryMessenger()
        self.clock = FakeClock(NOW)
        self.dispatcher = Dispatcher(
            settings=settings, sessions=sessions, messenger=self.messenger, clock=self.clock
        )
        self.dispatcher.duty_room_id = DUTY

    async def say(self, body: str, sender: str = LENA) -> Message:
        """One message in the duty room; the bot's single answer there."""
        before = len(self.messenger.sent)
        event_id = f"$jour{next(self._events)}"
        await self.dispatcher.handle(IncomingMessage(DUTY, sender, event_id, body))
        answers = self.messenger.sent[before:]
        assert [room for room, _ in answers] == [DUTY], answers
        (answer,) = (message for _, message in answers)
        assert answer.reply_to == event_id
        return answer

    async def order(self, municipality: str = "skovde") -> list[str]:
        people = await on_call(self.settings, self.sessions, municipality, self.clock())
        return [d.user_id for d in people]

    async def override(
        self,
        user_id: str,
        *,
        starts: datetime,
        ends: datetime,
        municipality: str = "skovde",
        created: datetime = NOW,
    ) -> None:
        async with self.sessions() as session, session.begin():
            await decisions.add_override(
                session,
                municipality_id=municipality,
                user_id=user_id,
                starts_at=starts,
                ends_at=ends,
                created_by=LENA,
                now=created,
            )

    async def overrides(self) -> list[RosterOverride]:
        found: list[RosterOverride] = []
        for m in self.settings.municipalities:
            async with self.sessions() as session:
                found += await decisions.active_overrides(
                    session, municipality_id=m.id, at=self.clock()
                )
        return found


@pytest.fixture
def duty(sessions: Sessions, tmp_path: Path) -> Duty:
    return Duty(make_settings(tmp_path), sessions)


def text(key: str, **params: object) -> str:
    return i18n.text("sv", key, **params)


# -- on_call -----------------------------------------------------------------------------------


async def test_without_overrides_the_order_is_the_config_order(duty: Duty) -> None:
    assert await duty.order("skovde") == [DAG, EVA, OLLE]
    assert await duty.order("tibro") == [TOVE, EVA]
    assert await duty.order("mariestad") == []
    assert await duty.order("nowhere") == []
    people = await on_call(duty.settings, duty.sessions, "skovde", NOW)
    assert (people[0].name, people[0].role) == ("Dag Dagsson", "ordförande")


async def test_an_active_override_comes_first_once(duty: Duty) -> None:
    await duty.override(OLLE, starts=NOW - timedelta(hours=1), ends=NOW + timedelta(hours=1))

    assert await duty.order("skovde") == [OLLE, DAG, EVA]
    assert await duty.order("tibro") == [TOVE, EVA]  # only the municipality it was set for


async def test_of_two_active_overrides_the_latest_set_comes_first(duty: Duty) -> None:
    window = {"starts": NOW - timedelta(hours=2), "ends": NOW + timedelta(hours=2)}
    await duty.override(OLLE, **window, created=NOW - timedelta(minutes=30))
    await duty.override(EVA, **window, created=NOW - timedelta(minutes=10))

    assert await duty.order("skovde") == [EVA, OLLE, DAG]


async def test_expired_and_future_overrides_are_ignored(duty: Duty) -> None:
    await duty.override(OLLE, starts=NOW - timedelta(hours=8), ends=NOW)  # ended just now
    await duty.override(EVA, starts=NOW + timedelta(minutes=1), ends=NOW + timedelta(hours=8))
    assert await duty.order("skovde") == [DAG, EVA, OLLE]

    duty.clock.advance(minutes=1)  # Eva's period begins
    assert await duty.order("skovde") == [EVA, DAG, OLLE]
    duty.clock.advance(hours=8)  # ... and is over
    assert await duty.order("skovde") == [DAG, EVA, OLLE]


async def test_an_override_for_someone_who_does_not_decide_there_is_ignored(duty: Duty) -> None:
    window = {"starts": NOW - timedelta(hours=1), "ends": NOW + timedelta(hours=1)}
    await duty.override(TOVE, **window, municipality="skovde")  # Tibro's, not Skövde's
    await duty.override(STRANGER, **window, municipality="skovde")
    await duty.override(DAG, **window, municipality="mariestad")

    assert await duty.order("skovde") == [DAG, EVA, OLLE]
    assert await duty.order("mariestad") == []


async def test_override_times_compare_across_time_zones(duty: Duty) -> None:
    """A period stored in Stockholm time is read back and compared as the same instant."""
    starts = datetime(2026, 11, 24, 3, 0, tzinfo=LOCAL_TZ)  # 02:00 UTC, before NOW
    ends = datetime(2026, 11, 24, 3, 45, tzinfo=LOCAL_TZ)  # 02:45 UTC, after NOW
    await duty.override(EVA, starts=starts, ends=ends)
    assert await duty.order("skovde") == [EVA, DAG, OLLE]
    duty.clock.advance(minutes=15)  # 02:45 UTC: over
    assert await duty.order("skovde") == [DAG, EVA, OLLE]


# -- the appointment: nobody is asked without one that holds on the day ---------------------------


async def test_a_decision_maker_whose_appointment_ran_out_is_never_asked(
    sessions: Sessions, tmp_path: Path
) -> None:
    """Not in the config order, not by an override, not by the calendar."""
    settings = make_settings(tmp_path, olle=(date(2023, 1, 26), date(2026, 11, 23)))
    duty = Duty(settings, sessions)
    assert await duty.order("skovde") == [DAG, EVA]

    await duty.override(OLLE, starts=NOW - timedelta(hours=1), ends=NOW + timedelta(hours=1))
    roster = FakeRoster(skovde=WEEK_ICS)  # the calendar puts Olle on call this week
    entries = await on_call_entries(settings, sessions, "skovde", NOW, roster=roster)
    assert [e.maker.user_id for e in entries] == [EVA, DAG]
    shown = (await duty.say("!jour", sender=ANNA)).text.splitlines()
    assert "Olle" not in shown[1]


async def test_an_appointment_holds_to_the_end_of_its_last_swedish_day(
    sessions: Sessions, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path, olle=(date(2026, 11, 25), date(2026, 11, 26)))
    duty = Duty(settings, sessions)
    stockholm = LOCAL_TZ

    duty.clock.now = datetime(2026, 11, 24, 23, 59, tzinfo=stockholm)
    assert await duty.order("skovde") == [DAG, EVA]  # not yet appointed
    duty.clock.now = datetime(2026, 11, 25, 0, 0, tzinfo=stockholm)  # 23:00 UTC the day before
    assert await duty.order("skovde") == [DAG, EVA, OLLE]
    duty.clock.now = datetime(2026, 11, 26, 23, 59, tzinfo=stockholm)
    assert await duty.order("skovde") == [DAG, EVA, OLLE]
    duty.clock.now = datetime(2026, 11, 27, 0, 0, tzinfo=stockholm)
    assert await duty.order("skovde") == [DAG, EVA]


async def test_without_any_valid_appointment_nobody_is_on_call(
    sessions: Sessions, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path)
    duty = Duty(settings, sessions)
    duty.clock.now = datetime(2031, 1, 1, 12, 0, tzinfo=UTC)  # every appointment has run out
    assert await duty.order("skovde") == []
    assert await duty.order("tibro") == []
    shown = (await duty.say("!jour", sender=ANNA)).text.splitlines()
    assert shown[1] == f"Skövde kommun: {text('oncall.nobody')}"


# -- !jour -------------------------------------------------------------------------------------


async def test_jour_shows_who_is_on_call_per_municipality(duty: Duty) -> None:
    answer = await duty.say("!jour", sender=ANNA)

    assert answer.text.splitlines() == [
        text("oncall.header"),
        "Skövde kommun: Dag Dagsson (ordförande, enligt konfigurationen), "
        "Eva Evasdotter (vice ordförande, enligt konfigurationen), "
        "Olle Olsson (förordnad ledamot, enligt konfigurationen)",
        "Tibro kommun: Tove Tibro (ordförande, enligt konfigurationen), "
        "Eva Evasdotter (ledamot, enligt konfigurationen)",
        "Mariestads kommun: ingen beslutsfattare inlagd",
    ]
    assert answer.html is not None and "<strong>Skövde kommun</strong>" in answer.html
    assert (await duty.say("!oncall", sender=LENA)).text == answer.text


async def test_a_lead_overrides_and_jour_shows_it(duty: Duty) -> None:
    answer = await duty.say(f"!jour ersätt {EVA} nu 2026-11-25T08:00")

    assert answer.text == text(
        "oncall.override.done",
        user=EVA,
        municipalities="Skövde kommun, Tibro kommun",
        starts="2026-11-24 03:30",
        ends="2026-11-25 08:00",
    )
    stored = await duty.overrides()
    assert sorted(o.municipality_id for o in stored) == ["skovde", "tibro"]
    for override in stored:
        assert override.user_id == EVA and override.created_by == LENA
        assert override.starts_at == NOW
        assert override.ends_at == datetime(2026, 11, 25, 7, 0, tzinfo=UTC)  # 08:00 CET
    assert await duty.order("skovde") == [EVA, DAG, OLLE]
    assert await duty.order("tibro") == [EVA, TOVE]

    shown = (await duty.say("!jour", sender=ANNA)).text.splitlines()
    assert shown[1].startswith(
        "Skövde kommun: Eva Evasdotter (vice ordförande, ändrat med !jour ersätt), "
        "Dag Dagsson (ordförande, enligt konfigurationen)"
    )
    assert shown[2].startswith(
        "Tibro kommun: Eva Evasdotter (ledamot, ändrat med !jour ersätt), Tove Tibro"
    )

    duty.clock.now = datetime(2026, 11, 25, 7, 0, tzinfo=UTC)  # the period is over
    shown = (await duty.say("!jour", sender=ANNA)).text.splitlines()
    assert shown[1].startswith("Skövde kommun: Dag Dagsson (ordförande, enligt konfigurationen)")


# A week of on-call duty for Olle in Skövde and for Eva in Tibro, around NOW.
WEEK_ICS = textwrap.dedent(
    """\
    BEGIN:VCALENDAR
    VERSION:2.0
    PRODID:-//Socialjour tests//EN
    BEGIN:VEVENT
    UID:week-48@test
    DTSTART;TZID=Europe/Stockholm:20261123T080000
    DTEND;TZID=Europe/Stockholm:20261130T080000
    SUMMARY:Beslutsjour Olle Olsson / Eva Evasdotter
    END:VEVENT
    END:VCALENDAR
    """
).encode()


@pytest.mark.parametrize(
    ("language", "expected"),
    [
        (
            "sv",
            [
                "Skövde kommun: Eva Evasdotter (vice ordförande, ändrat med !jour ersätt), "
                "Olle Olsson (förordnad ledamot, enligt jourkalendern), "
                "Dag Dagsson (ordförande, enligt konfigurationen)",
                "Tibro kommun: Eva Evasdotter (ledamot, enligt jourkalendern), "
                "Tove Tibro (ordförande, enligt konfigurationen)",
            ],
        ),
        (
            "en",
            [
                "Skövde kommun: Eva Evasdotter (vice ordförande, set with !oncall replace), "
                "Olle Olsson (förordnad ledamot, per the on-call calendar), "
                "Dag Dagsson (ordförande, per the config order)",
                "Tibro kommun: Eva Evasdotter (ledamot, per the on-call calendar), "
                "Tove Tibro (ordförande, per the config order)",
            ],
        ),
    ],
)
async def test_jour_says_where_each_place_comes_from(
    sessions: Sessions, tmp_path: Path, language: str, expected: list[str]
) -> None:
    duty = Duty(make_settings(tmp_path, language), sessions)
    duty.dispatcher.oncall.roster = FakeRoster(
        skovde=WEEK_ICS.replace(b" / Eva Evasdotter", b""), tibro=WEEK_ICS
    )
    await duty.override(EVA, starts=NOW - timedelta(hours=1), ends=NOW + timedelta(hours=1))

    shown = (await duty.say("!jour", sender=ANNA)).text.splitlines()

    assert shown[1:3] == expected
    assert shown[0] == i18n.text(language, "oncall.header")


async def test_entries_and_the_plain_order_agree(duty: Duty) -> None:
    roster = FakeRoster(skovde=WEEK_ICS)
    await duty.override(DAG, starts=NOW - timedelta(hours=1), ends=NOW + timedelta(hours=1))

    entries = await on_call_entries(duty.settings, duty.sessions, "skovde", NOW, roster=roster)
    people = await on_call(duty.settings, duty.sessions, "skovde", NOW, roster=roster)

    assert [(e.maker.user_id, e.source) for e in entries] == [
        (DAG, OnCallSource.OVERRIDE),
        (OLLE, OnCallSource.CALENDAR),
        (EVA, OnCallSource.CALENDAR),
    ]
    assert people == [e.maker for e in entries]
    # Without a source (every existing caller) the calendar is not consulted.
    assert await duty.order("skovde") == [DAG, EVA, OLLE]


async def test_the_english_alias_works_too(duty: Duty) -> None:
    answer = await duty.say(f"!oncall replace {OLLE} 2026-11-24T18:00 2026-11-25 07.00")
    assert "Skövde kommun" in answer.text
    assert "från 2026-11-24 18:00 till 2026-11-25 07:00" in answer.text
    assert await duty.overrides() == []  # not in force yet
    assert await duty.order("skovde") == [DAG, EVA, OLLE]
    duty.clock.now = datetime(2026, 11, 24, 17, 0, tzinfo=UTC)  # 18:00 in Stockholm
    assert await duty.order("skovde") == [OLLE, DAG, EVA]


@pytest.mark.parametrize(
    ("sender", "refusal"),
    [(ANNA, "oncall.override.leads_only"), (STRANGER, "error.not_allowed")],
)
async def test_only_a_lead_may_override(duty: Duty, sender: str, refusal: str) -> None:
    answer = await duty.say(f"!jour ersätt {EVA} nu 2026-11-25T08:00", sender=sender)

    # A duty member is told who can; an outsider is refused like anywhere else.
    assert answer.text == text(refusal)
    assert await duty.overrides() == []
    assert await duty.order("skovde") == [DAG, EVA, OLLE]


@pytest.mark.parametrize(
    "args",
    [
        "",
        f"{EVA}",
        f"{EVA} nu",
        "eva nu 2026-11-25T08:00",  # not a Matrix user id
        f"{EVA} nu 2026-11-25T08:00 2026-11-26T08:00",  # three moments
        f"{EVA} 2026-11-25T08:00 nu",  # ends before it starts
        f"{EVA} nu nu",
        f"{EVA} nu 25:00",
        f"{EVA} nu 2026-02-30",
        f"{EVA} imorgon 08:00",
    ],
)
async def test_bad_syntax_gets_the_usage(duty: Duty, args: str) -> None:
    answer = await duty.say(f"!jour ersätt {args}".rstrip())

    assert answer.text == text("oncall.override.usage")
    assert "!jour ersätt @person:server FRÅN TILL" in answer.text
    assert await duty.overrides() == []


async def test_an_unknown_decision_maker_is_named(duty: Duty) -> None:
    answer = await duty.say(f"!jour ersätt {STRANGER} nu 08:00")
    assert answer.text == text("oncall.override.unknown", user=STRANGER)
    assert await duty.overrides() == []


async def test_the_usage_example_works_at_night(duty: Duty) -> None:
    answer = await duty.say(f"!jour ersätt {EVA} 18:00 07:00")  # said at 03:30

    assert answer.text.startswith(f"{EVA} har beslutsjour först")
    assert "från 2026-11-24 18:00 till 2026-11-25 07:00" in answer.text


async def test_the_usage_example_works_in_the_daytime(duty: Duty) -> None:
    duty.clock.now = datetime(2026, 11, 24, 11, 0, tzinfo=UTC)  # 12:00 in Stockholm
    answer = await duty.say(f"!jour ersätt {EVA} 18:00 07:00")
    assert "från 2026-11-24 18:00 till 2026-11-25 07:00" in answer.text


# -- parse_moment ------------------------------------------------------------------------------


def local(*args: int) -> datetime:
    return datetime(*args, tzinfo=LOCAL_TZ)  # type: ignore[misc]


@pytest.mark.parametrize("word", ["nu", "NU", "now", " nu "])
def test_now(word: str) -> None:
    assert parse_moment(word, NOW) == NOW


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("18:00", local(2026, 11, 24, 18, 0)),  # later today
        ("18.00", local(2026, 11, 24, 18, 0)),
        ("7:05", local(2026, 11, 24, 7, 5)),
        ("03:30", local(2026, 11, 24, 3, 30)),  # this very minute is still today
        ("03:29", local(2026, 11, 24, 3, 29)),  # a minute's grace
        ("03:28", local(2026, 11, 25, 3, 28)),  # already past: tomorrow
        ("00:00", local(2026, 11, 25, 0, 0)),
    ],
)
def test_a_time_is_today_or_else_tomorrow(text: str, expected: datetime) -> None:
    moment = parse_moment(text, NOW)  # NOW is 03:30 in Stockholm
    assert moment == expected
    assert moment.utcoffset() == timedelta(hours=1)


def test_a_time_across_the_change_to_summer_time() -> None:
    evening = datetime(2026, 3, 28, 20, 0, tzinfo=UTC)  # 21:00 CET, the night clocks go forward
    moment = parse_moment("18:00", evening)
    assert moment == datetime(2026, 3, 29, 16, 0, tzinfo=UTC)  # 18:00 CEST next day
    assert moment.astimezone(LOCAL_TZ).hour == 18


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-25", datetime(2026, 11, 24, 23, 0, tzinfo=UTC)),  # local midnight
        ("2026-11-25T08:00", datetime(2026, 11, 25, 7, 0, tzinfo=UTC)),
        ("2026-11-25 08:00", datetime(2026, 11, 25, 7, 0, tzinfo=UTC)),
        ("2026-11-25T8:00", datetime(2026, 11, 25, 7, 0, tzinfo=UTC)),
        ("2026-11-25T08.00", datetime(2026, 11, 25, 7, 0, tzinfo=UTC)),
        ("2026-07-01T08:00", datetime(2026, 7, 1, 6, 0, tzinfo=UTC)),  # summer time
        ("2025-01-01", datetime(2024, 12, 31, 23, 0, tzinfo=UTC)),  # the past is a date too
    ],
)
def test_dates_and_date_times_are_stockholm_time(text: str, expected: datetime) -> None:
    assert parse_moment(text, NOW) == expected


@pytest.mark.parametrize("text", ["25:00", "12:60", "2026-02-30", "2026-13-01T08:00", "igår"])
def test_nonsense_is_a_value_error(text: str) -> None:
    with pytest.raises(ValueError):
        parse_moment(text, NOW)
