"""Deadline clocks as data (issue 9 §3): counted as the law counts, declared by the
templates, stored once, reminded and alarmed once, marked by the commands.

The counting is pure and tested over many dates; the rest runs on a real, migrated
database (SQLite and PostgreSQL) with the in-memory messenger and a clock the test
moves.
"""

from __future__ import annotations

import asyncio
import itertools
import textwrap
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.meeting_source import MeetingCalendars
from config import Settings, check_config, load_settings
from config.deadlines import parse_remind, parse_rule
from config.forms import BUILTIN_FORMS_DIR, builtin_forms
from handlers import deadlines
from handlers.deadline_jobs import DeadlineJobs
from handlers.deadline_rules import (
    Due,
    count_due,
    deadline_end,
    meeting_dates,
    reminder_moments,
)
from handlers.dispatcher import Dispatcher
from handlers.messenger import IncomingMessage, MemoryMessenger, Message
from handlers.workdays import SWEDEN
from storage import deadlines as store
from storage import repo
from storage.models import Case, Deadline
from tests.test_handlers import FakeClock

Sessions = async_sessionmaker[AsyncSession]

ANNA = "@anna:example.org"  # duty worker and lead
CECILIA = "@cecilia:example.org"  # Skövde's intake
FRIDA = "@frida:example.org"  # Falköping's intake
EVE = "@eve:example.org"
DUTY = "!duty:test"
INTAKE = "!intake-skovde:test"
INTAKE_FALKOPING = "!intake-falkoping:test"
CASE_ROOM = "!case:test"


def local(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    """A moment in Swedish time."""
    return datetime(year, month, day, hour, minute, second, tzinfo=SWEDEN)


def due(rule: str, at: datetime, meetings: tuple[date, ...] = ()) -> Due | None:
    return count_due(parse_rule(rule), at, meetings)


# -- counting (pure) ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "start", "due_on", "outer_limit"),
    [
        # A week ends on the same weekday (lag (1930:173) 1 §); the start day is not counted.
        ("1w", local(2026, 3, 2, 3, 15), date(2026, 3, 9), date(2026, 3, 9)),
        ("1w", local(2026, 3, 4, 23, 59), date(2026, 3, 11), date(2026, 3, 11)),
        # Decided on a Saturday: due the next Saturday, may be done on the Monday (2 §).
        ("1w", local(2026, 3, 7, 2, 0), date(2026, 3, 14), date(2026, 3, 16)),
        ("1w", local(2026, 3, 8, 2, 0), date(2026, 3, 15), date(2026, 3, 16)),
        # Midsommarafton (Friday 2026-06-19) and the weekend after it.
        ("1w", local(2026, 6, 12, 1, 0), date(2026, 6, 19), date(2026, 6, 22)),
        ("next_day", local(2026, 6, 18, 22, 0), date(2026, 6, 19), date(2026, 6, 22)),
        # Julafton, juldagen, annandag jul and a Sunday: the Monday after.
        ("1w", local(2026, 12, 17, 4, 0), date(2026, 12, 24), date(2026, 12, 28)),
        ("next_day", local(2026, 12, 24, 1, 0), date(2026, 12, 25), date(2026, 12, 28)),
        # Nyårsafton, nyårsdagen and a weekend: the first Monday of 2027.
        ("next_day", local(2026, 12, 30, 23, 0), date(2026, 12, 31), date(2027, 1, 4)),
        ("1w", local(2026, 12, 24, 12, 0), date(2026, 12, 31), date(2027, 1, 4)),
        # Trettondedag jul (a Wednesday in 2027); trettondagsafton is a working day.
        ("next_day", local(2027, 1, 5, 3, 0), date(2027, 1, 6), date(2027, 1, 7)),
        ("next_day", local(2027, 1, 4, 3, 0), date(2027, 1, 5), date(2027, 1, 5)),
        # Four weeks from an execution ending on annandag påsk 2026 (Monday 6 April).
        ("4w", local(2026, 3, 9, 14, 0), date(2026, 4, 6), date(2026, 4, 7)),
        ("4w", local(2026, 3, 3, 14, 0), date(2026, 3, 31), date(2026, 3, 31)),
        # Over New Year: the count runs into the next year.
        ("2d", local(2026, 12, 30, 9, 0), date(2027, 1, 1), date(2027, 1, 4)),
    ],
)
def test_deadlines_are_counted_as_the_law_counts(
    rule: str, start: datetime, due_on: date, outer_limit: date
) -> None:
    assert due(rule, start) == Due(due_on, outer_limit)


def test_the_decision_day_is_the_swedish_day_of_the_signature() -> None:
    # A report sent 23:50 and signed 00:10 decides on the next day (Swedish time), and
    # a moment given in UTC counts on the Swedish calendar.
    assert due("1w", datetime(2026, 3, 2, 23, 10, tzinfo=UTC)) == Due(
        date(2026, 3, 10), date(2026, 3, 10)
    )
    assert due("1w", datetime(2026, 3, 2, 22, 50, tzinfo=UTC)) == Due(
        date(2026, 3, 9), date(2026, 3, 9)
    )
    with pytest.raises(ValueError, match="aware"):
        due("1w", datetime(2026, 3, 2, 12, 0))


def test_counting_across_the_summer_time_change() -> None:
    # 00:30 on Sunday 29 March 2026 (CET) is 23:30 UTC the day before: the day is the
    # Sunday; a week on is Easter Sunday, and påskdagen and annandag påsk move it.
    start = datetime(2026, 3, 28, 23, 30, tzinfo=UTC)
    assert due("1w", start) == Due(date(2026, 4, 5), date(2026, 4, 7))
    # The last moment of a day is 23:59:59 Swedish time, whatever the offset.
    assert deadline_end(date(2026, 3, 28)) == datetime(2026, 3, 28, 22, 59, 59, tzinfo=UTC)
    assert deadline_end(date(2026, 4, 5)) == datetime(2026, 4, 5, 21, 59, 59, tzinfo=UTC)
    assert deadline_end(date(2026, 10, 25)) == datetime(2026, 10, 25, 22, 59, 59, tzinfo=UTC)
    # Reminders at 08:00 Swedish time on both sides of the autumn change.
    moments = reminder_moments(
        date(2026, 10, 26), started_at=local(2026, 10, 19, 3, 0), days_before=(3, 0)
    )
    assert [m.astimezone(UTC) for m in moments] == [
        datetime(2026, 10, 23, 6, 0, tzinfo=UTC),  # Friday, summer time (UTC+2)
        datetime(2026, 10, 26, 7, 0, tzinfo=UTC),  # Monday, winter time (UTC+1)
    ]


def test_the_committees_next_meeting() -> None:
    meetings = (date(2026, 3, 2), date(2026, 4, 16), date(2026, 3, 19))
    # A meeting on the decision day itself is too soon; the next one counts, never moved.
    assert due("next_meeting", local(2026, 3, 2, 2, 0), meetings) == Due(
        date(2026, 3, 19), date(2026, 3, 19)
    )
    assert due("next_meeting", local(2026, 3, 19, 9, 0), meetings) == Due(
        date(2026, 4, 16), date(2026, 4, 16)
    )
    assert due("next_meeting", local(2026, 4, 16, 9, 0), meetings) is None
    assert due("next_meeting", local(2026, 3, 2, 2, 0)) is None


@pytest.mark.parametrize(
    ("due_on", "started_at", "expected"),
    [
        # 2 and 1 days before a Monday are a weekend: both on the Friday, once.
        (date(2026, 3, 9), local(2026, 3, 2, 3), [local(2026, 3, 6, 8), local(2026, 3, 9, 8)]),
        # A Thursday: Tuesday, Wednesday and the day itself.
        (
            date(2026, 3, 12),
            local(2026, 3, 5, 3),
            [local(2026, 3, 10, 8), local(2026, 3, 11, 8), local(2026, 3, 12, 8)],
        ),
        # LVM's next day: nothing before the clock started (2 days before).
        (date(2026, 3, 4), local(2026, 3, 3, 2), [local(2026, 3, 3, 8), local(2026, 3, 4, 8)]),
        # Started after the morning: only the last day's.
        (date(2026, 3, 4), local(2026, 3, 3, 10), [local(2026, 3, 4, 8)]),
        # A Saturday start, due Sunday: Friday would be before the start, so Saturday.
        (date(2026, 3, 8), local(2026, 3, 7, 2), [local(2026, 3, 7, 8), local(2026, 3, 8, 8)]),
        # Due on midsommarafton: the Wednesday and Thursday before, and the day itself.
        (
            date(2026, 6, 19),
            local(2026, 6, 12, 1),
            [local(2026, 6, 17, 8), local(2026, 6, 18, 8), local(2026, 6, 19, 8)],
        ),
        # Due the Monday after Christmas: 2 and 1 days before are a weekend after
        # annandag jul and juldagen: the last working day before is the 23rd.
        (
            date(2026, 12, 28),
            local(2026, 12, 21, 1),
            [local(2026, 12, 23, 8), local(2026, 12, 28, 8)],
        ),
    ],
)
def test_reminders_fall_on_working_mornings_before_and_on_the_last_day(
    due_on: date, started_at: datetime, expected: list[datetime]
) -> None:
    assert reminder_moments(due_on, started_at=started_at, days_before=(2, 1, 0)) == expected


def test_meeting_dates_from_a_calendar() -> None:
    ics = textwrap.dedent(
        """\
        BEGIN:VCALENDAR
        VERSION:2.0
        PRODID:-//test//
        BEGIN:VEVENT
        UID:monthly
        DTSTART;TZID=Europe/Stockholm:20260115T130000
        DTEND;TZID=Europe/Stockholm:20260115T160000
        RRULE:FREQ=MONTHLY;BYDAY=3TH;COUNT=12
        EXDATE;TZID=Europe/Stockholm:20260416T130000
        SUMMARY:Socialnämnden
        END:VEVENT
        BEGIN:VEVENT
        UID:extra
        DTSTART;VALUE=DATE:20260423
        SUMMARY:Extra sammanträde
        END:VEVENT
        BEGIN:VEVENT
        UID:cancelled
        DTSTART;TZID=Europe/Stockholm:20260326T090000
        STATUS:CANCELLED
        SUMMARY:Inställt
        END:VEVENT
        END:VCALENDAR
        """
    ).replace("\n", "\r\n")
    days = meeting_dates(ics.encode(), after=date(2026, 3, 2))
    # The third Thursday each month, April's moved to an extra meeting on the 23rd.
    assert days[:3] == [date(2026, 3, 19), date(2026, 4, 23), date(2026, 5, 21)]
    assert date(2026, 3, 26) not in days and date(2026, 4, 16) not in days
    with pytest.raises(ValueError, match="not a readable"):
        meeting_dates(b"BEGIN:VCALENDAR\r\nnonsense", after=date(2026, 3, 2))


def test_rule_and_reminder_words() -> None:
    assert parse_rule("next_day") == parse_rule("1d")
    assert parse_rule("4w").count == 4
    for bad in ("1 week", "0w", "53w", "next_week", "", "1h"):
        with pytest.raises(ValueError, match="expected"):
            parse_rule(bad)
    assert [parse_remind(word) for word in ("2d", "1d", "morning")] == [2, 1, 0]
    for bad in ("2h", "0d", "noon", "31d"):
        with pytest.raises(ValueError, match="expected"):
            parse_remind(bad)


# -- the templates and check-config ---------------------------------------------------------


def test_shipped_templates_declare_the_deadlines_of_the_law() -> None:
    forms = builtin_forms()
    lvu = {d.name: (d.legal_basis, d.trigger, d.rule, d.act) for d in forms["lvu6"].deadlines}
    assert lvu == {
        "understallning": ("7 § LVU", "decision", "1w", "underställt"),
        "ansokan_vard": ("8 § LVU", "execution", "4w", "ansökt"),
        "anmalan_namnd": ("6 § andra stycket LVU", "decision", "next_meeting", "anmält"),
    }
    lvm = {d.name: (d.legal_basis, d.trigger, d.rule, d.act) for d in forms["lvm13"].deadlines}
    assert lvm == {
        "understallning": ("15 § LVM", "decision", "next_day", "underställt"),
        "ansokan_vard": ("18 § LVM", "court_decision", "1w", "ansökt"),
        "anmalan_namnd": ("13 § LVM", "decision", "next_meeting", "anmält"),
    }
    assert all(d.lost and d.label_en and d.lost_en for d in forms["lvu6"].deadlines)
    # Forms decided under delegation or only documented have no court deadlines.
    assert not forms["skyddsbedomning"].deadlines


BAD_DEADLINES = """
[[deadlines]]
name = "understallning"
label = "Underställning"
legal_basis = "7 § LVU"
trigger = "beslut"
rule = "1 vecka"
actor = "intake"
act = "underställt"
lost = "Omhändertagandet upphör."

[[deadlines]]
name = "understallning"
label = "Igen"
legal_basis = "8 § LVU"
trigger = "execution"
rule = "4w"
actor = "mottagningen"
act = "ansökt"
ends_if_revoked = "ja"

[[deadlines]]
name = "Ansökan"
label = "Ansökan"
legal_basis = "8 § LVU"
trigger = "court_decision"
rule = "next_meeting"
act = "överklagat"
lost = "x"
lsot_en = "typo"
"""


def test_check_config_names_every_bad_deadline_key(tmp_path: Path) -> None:
    template = (BUILTIN_FORMS_DIR / "lvu6.toml").read_text(encoding="utf-8")
    template = template.split("# -- frister")[0].replace('id = "lvu6"', 'id = "lvu6_test"')
    folder = tmp_path / "forms"
    folder.mkdir()
    (folder / "lvu6_test.toml").write_text(template + BAD_DEADLINES, encoding="utf-8")
    config = tmp_path / "config.toml"
    text = CONFIG.format(language="sv", meetings="", deadlines='[forms]\nextra_dirs = ["forms"]')
    config.write_text(textwrap.dedent(text), encoding="utf-8")
    problems = check_config(config, environ=ENV)  # what `socialjour check-config` prints
    assert all(p.place.startswith(str(folder / "lvu6_test.toml")) for p in problems)
    found = {p.place.split(": ", 1)[1]: p.message for p in problems}
    first, second, third = (
        "deadlines[0] (understallning)",
        "deadlines[1] (understallning)",
        "deadlines[2]",
    )
    assert "'decision', 'execution', 'court_decision'" in found[f"{first}.trigger"]
    assert "1w, 4w, 2d, next_day or next_meeting" in found[f"{first}.rule"]
    assert "duplicate deadline name" in found[f"{second}.name"]
    assert found[f"{second}.lost"] == "missing required key"
    assert "'intake', 'duty'" in found[f"{second}.actor"]
    assert "true or false" in found[f"{second}.ends_if_revoked"]
    assert "lowercase" in found[f"{third}.name"]
    assert found[f"{third}.actor"] == "missing required key"
    assert "'underställt', 'ansökt', 'anmält'" in found[f"{third}.act"]
    assert "did you mean 'lost_en'" in found[f"{third}.lsot_en"]
    assert len(problems) == 10, problems


# -- settings for the database tests ----------------------------------------------------------

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

{deadlines}

[[municipalities]]
id = "skovde"
name = "Skövde kommun"
intake_room_alias = "#mottagning-skovde:example.org"
intake_members = ["@cecilia:example.org"]
{meetings}

[[municipalities]]
id = "falkoping"
name = "Falköpings kommun"
intake_room_alias = "#mottagning-falkoping:example.org"
intake_members = ["@frida:example.org"]
"""
ENV = {"SOCIALJOUR_MATRIX_PASSWORD": "secret"}
_folders = itertools.count(1)


def settings_in(
    folder: Path,
    *,
    language: str = "sv",
    meetings: str = "meetings = [2026-03-19, 2026-04-16]",
    deadlines_section: str = "",
) -> Settings:
    path = folder / f"config{next(_folders)}.toml"
    text = CONFIG.format(language=language, meetings=meetings, deadlines=deadlines_section)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return load_settings(path, environ=ENV)


def test_check_config_reads_the_policy_and_the_meetings(tmp_path: Path) -> None:
    settings = settings_in(tmp_path, deadlines_section='[deadlines]\nremind = ["3d", "morning"]')
    assert settings.deadlines.remind_days_before == (3, 0)
    assert settings.municipality("skovde").meetings == (date(2026, 3, 19), date(2026, 4, 16))  # type: ignore[union-attr]
    assert settings_in(tmp_path, meetings="").deadlines.remind_days_before == (2, 1, 0)

    path = tmp_path / "bad.toml"
    path.write_text(
        textwrap.dedent(
            CONFIG.format(
                language="sv",
                deadlines='[deadlines]\nremind = ["2d", "noon"]\nremindd = 1',
                meetings='meetings = [2026-03-19, "mars"]\nmeetings_ics = "missing.ics"',
            )
        ),
        encoding="utf-8",
    )
    found = {p.place.split(": ", 1)[1]: p.message for p in check_config(path, environ=ENV)}
    assert "morning" in found["deadlines.remind[1]"]
    assert "did you mean 'remind'" in found["deadlines.remindd"]
    assert "a date like 2026-12-10" in found["municipalities[0].meetings[1]"]
    assert "no such file" in found["municipalities[0].meetings_ics"]


# -- storage: clocks start once -------------------------------------------------------------


async def new_case(
    sessions: Sessions,
    *,
    form: str = "lvu6",
    municipality: str | None = "skovde",
    room: str | None = CASE_ROOM,
    now: datetime,
) -> Case:
    async with sessions() as session, session.begin():
        case = await repo.create_case(
            session,
            prefix="SJ",
            year=now.year,
            created_by=ANNA,
            status="signed",
            now=now,
            form_id=form,
            municipality_id=municipality,
        )
        if room is not None:
            await repo.set_case_room(session, case_id=case.id, room_id=room)
    return case


async def start(
    sessions: Sessions, case: Case, trigger: str, at: datetime, settings: Settings | None
) -> list[Deadline]:
    async with sessions() as session, session.begin():
        return await deadlines.start_clocks(
            session,
            case_id=case.id,
            trigger=trigger,  # type: ignore[arg-type]
            at=at,
            now=at,
            settings=settings,
        )


async def rows_of(sessions: Sessions, case: Case) -> dict[str, Deadline]:
    async with sessions() as session:
        return {row.name: row for row in await store.for_case(session, case_id=case.id)}


async def test_clocks_start_once_each_from_their_own_trigger(
    sessions: Sessions, tmp_path: Path
) -> None:
    settings = settings_in(tmp_path)
    signed = local(2026, 3, 7, 2, 40)  # a Saturday night
    case = await new_case(sessions, now=signed)

    started = await start(sessions, case, "decision", signed, settings)
    assert {row.name for row in started} == {"understallning", "anmalan_namnd"}
    again = await start(sessions, case, "decision", signed + timedelta(hours=1), settings)
    assert again == []  # a repeated start (a retry, a crash) starts nothing

    rows = await rows_of(sessions, case)
    assert (rows["understallning"].status, rows["understallning"].due_on) == (
        "running",
        date(2026, 3, 14),
    )
    assert rows["understallning"].outer_limit == date(2026, 3, 16)
    assert rows["understallning"].started_at == signed
    assert (rows["anmalan_namnd"].due_on, rows["anmalan_namnd"].outer_limit) == (
        date(2026, 3, 19),
        date(2026, 3, 19),
    )
    assert (rows["ansokan_vard"].status, rows["ansokan_vard"].due_on) == ("waiting", None)

    executed = local(2026, 3, 7, 5, 10)
    [application] = await start(sessions, case, "execution", executed, settings)
    assert (application.name, application.due_on) == ("ansokan_vard", date(2026, 4, 4))
    assert application.outer_limit == date(2026, 4, 7)  # påskafton, påskdagen, annandag påsk
    assert await start(sessions, case, "execution", executed, settings) == []

    async with sessions() as session:
        audit = [
            (entry.action, (entry.detail or {}).get("deadline"))
            for entry in await repo.list_audit(session, case_id=case.id)
        ]
        still_open = await deadlines.open_deadlines(session, case_id=case.id)
    assert audit.count(("deadline.started", "understallning")) == 1
    assert audit.count(("deadline.started", "ansokan_vard")) == 1
    assert len(still_open) == 3


async def test_two_starts_at_once_write_one_set(sessions: Sessions, tmp_path: Path) -> None:
    settings = settings_in(tmp_path)
    signed = local(2026, 3, 2, 3, 0)
    case = await new_case(sessions, now=signed)

    async def one() -> int:
        try:
            return len(await start(sessions, case, "decision", signed, settings))
        except Exception:  # the loser's unique constraint (SQLite serialises instead)
            return -1

    results = await asyncio.gather(one(), one())
    assert sorted(results)[-1] == 2
    rows = await rows_of(sessions, case)
    assert len(rows) == 3 and rows["understallning"].status == "running"


async def test_a_form_without_deadlines_and_a_missing_meeting(
    sessions: Sessions, tmp_path: Path
) -> None:
    settings = settings_in(tmp_path, meetings="")
    at = local(2026, 3, 2, 3, 0)
    record = await new_case(sessions, form="skyddsbedomning", now=at, room=None)
    assert await start(sessions, record, "decision", at, settings) == []
    assert await rows_of(sessions, record) == {}

    case = await new_case(sessions, form="lvm13", now=at)
    started = {row.name: row for row in await start(sessions, case, "decision", at, settings)}
    assert started["understallning"].due_on == date(2026, 3, 3)
    # No meeting known: the clock runs without a day; the sweep tells the leads.
    assert started["anmalan_namnd"].status == "running"
    assert started["anmalan_namnd"].due_on is None
    async with sessions() as session:
        lines = await deadlines.status_lines(session, case=case, settings=settings, lang="sv")
    shown = "\n".join(line.text for line in lines)
    assert (
        "Anmälan till nämnden (13 § LVM): nästa sammanträde (datum saknas i konfigurationen)"
        in shown
    )
    assert "Underställning till förvaltningsrätten (15 § LVM): senast tis 2026-03-03" in shown
    assert "Ansökan om vård hos förvaltningsrätten (18 § LVM): startar när rätten" in shown


# -- the sweep ------------------------------------------------------------------------------


class Sweep:
    """The deadline sweep over a test's database, messenger and movable clock."""

    def __init__(self, sessions: Sessions, settings: Settings, clock: FakeClock) -> None:
        self.sessions, self.settings, self.clock = sessions, settings, clock
        self.messenger = MemoryMessenger()
        self.jobs = self.restart()

    def restart(self) -> DeadlineJobs:
        """A fresh sweep, as after a restart (same database, same homeserver keys)."""
        self.jobs = DeadlineJobs(
            self.settings,
            self.sessions,
            self.messenger,
            self.clock,
            intake_rooms=lambda: {INTAKE: "skovde", INTAKE_FALKOPING: "falkoping"},
            duty_room=lambda: DUTY,
        )
        return self.jobs

    async def at(self, moment: datetime) -> list[tuple[str, Message]]:
        """Run the sweep at ``moment``; what it sent."""
        self.clock.now = moment
        before = len(self.messenger.sent)
        await self.jobs.sweep()
        return self.messenger.sent[before:]


@pytest.fixture
def make_sweep(sessions: Sessions) -> Callable[[Settings], Sweep]:
    return lambda settings: Sweep(sessions, settings, FakeClock(local(2026, 3, 1)))


async def test_reminders_before_the_last_day_once_each_then_a_daily_alarm(
    sessions: Sessions, tmp_path: Path, make_sweep: Callable[[Settings], Sweep]
) -> None:
    settings = settings_in(tmp_path)
    sweep = make_sweep(settings)
    signed = local(2026, 3, 2, 3, 0)  # Monday night: underställning by Monday 9 March
    case = await new_case(sessions, now=signed)
    await start(sessions, case, "decision", signed, settings)

    # Announced at once, in the intake room and the case room, as notices.
    sent = await sweep.at(signed + timedelta(minutes=1))
    announced = [(room, m.text) for room, m in sent if "Underställning" in m.text]
    assert {room for room, _ in announced} == {INTAKE, CASE_ROOM}
    assert all("SJ-2026-0001" in text and "mån 2026-03-09" in text for _, text in announced)
    assert all(m.notice and not m.mentions for _, m in sent)
    assert await sweep.at(signed + timedelta(minutes=2)) == []

    # Nothing before the first reminder day; Saturday's and Sunday's are on Friday.
    assert await sweep.at(local(2026, 3, 6, 7, 59)) == []
    [(room, reminder)] = [s for s in await sweep.at(local(2026, 3, 6, 8, 0)) if "7 §" in s[1].text]
    assert room == INTAKE and reminder.mentions == (CECILIA,) and not reminder.notice
    assert "Påminnelse" in reminder.text and "!underställt SJ-2026-0001" in reminder.text
    assert await sweep.at(local(2026, 3, 6, 12, 0)) == []
    sweep.restart()
    assert await sweep.at(local(2026, 3, 8, 20, 0)) == []  # a restart sends nothing again

    [(room, morning)] = [s for s in await sweep.at(local(2026, 3, 9, 8, 5)) if "7 §" in s[1].text]
    assert room == INTAKE and "mån 2026-03-09" in morning.text

    # Past 23:59:59 Swedish time on the last day: the duty leads and the intake room.
    assert await sweep.at(local(2026, 3, 9, 23, 59, 59)) == []
    alarm = await sweep.at(local(2026, 3, 10, 0, 0, 1))
    missed = [(room, m) for room, m in alarm if "7 §" in m.text]
    assert {room for room, _ in missed} == {DUTY, INTAKE}
    duty_alarm = next(m for room, m in missed if room == DUTY)
    assert duty_alarm.mentions == (ANNA,) and not duty_alarm.notice
    assert "Frist passerad" in duty_alarm.text and "Omhändertagandet upphör" in duty_alarm.text
    assert "yttersta gräns" not in duty_alarm.text.casefold()  # a Monday: nothing moves
    # Once a day: not again that day, nor before the next morning.
    assert await sweep.at(local(2026, 3, 10, 15, 0)) == []
    sweep.restart()
    assert await sweep.at(local(2026, 3, 11, 7, 59)) == []
    assert len([s for s in await sweep.at(local(2026, 3, 11, 8, 0)) if "7 §" in s[1].text]) == 2
    async with sessions() as session:
        trail = [
            (e.actor, e.action, e.detail)
            for e in await repo.list_audit(session, case_id=case.id)
            if e.action == "deadline.missed"
        ]
    assert trail == [
        ("socialjour", "deadline.missed", {"deadline": "understallning", "due": "2026-03-09"})
    ]

    # Marked done: nothing more about it.
    async with sessions() as session, session.begin():
        marked = await deadlines.mark_act(
            session, case=case, act="underställt", by=CECILIA, via="underställt", now=sweep.clock()
        )
    assert marked.done is not None
    assert [m for _, m in await sweep.at(local(2026, 3, 12, 8, 0)) if "7 §" in m.text] == []


async def test_a_moved_last_day_alarms_on_the_unextended_day_with_the_outer_limit(
    sessions: Sessions, tmp_path: Path, make_sweep: Callable[[Settings], Sweep]
) -> None:
    settings = settings_in(tmp_path)
    sweep = make_sweep(settings)
    signed = local(2026, 3, 7, 2, 0)  # Saturday: due Saturday 14th, outer limit Monday 16th
    case = await new_case(sessions, now=signed)
    await start(sessions, case, "decision", signed, settings)
    announced = await sweep.at(signed + timedelta(minutes=1))
    assert any(
        "lör 2026-03-14" in m.text and "yttersta gräns mån 2026-03-16" in m.text
        for _, m in announced
    )

    sent = await sweep.at(local(2026, 3, 15, 0, 0, 5))  # Sunday: past the unextended day
    alarm = next(m for room, m in sent if room == DUTY and "7 §" in m.text)
    assert "Yttersta gräns" in alarm.text and "mån 2026-03-16" in alarm.text
    sent = await sweep.at(local(2026, 3, 17, 8, 0))  # past the outer limit too
    final = next(m for room, m in sent if room == DUTY and "7 §" in m.text)
    assert "Yttersta gräns" not in final.text and "Omhändertagandet upphör" in final.text


async def test_next_meeting_unknown_tells_the_leads_once_then_follows_the_config(
    sessions: Sessions, tmp_path: Path, make_sweep: Callable[[Settings], Sweep]
) -> None:
    settings = settings_in(tmp_path, meetings="")
    sweep = make_sweep(settings)
    signed = local(2026, 3, 2, 3, 0)
    case = await new_case(sessions, now=signed)
    await start(sessions, case, "decision", signed, settings)

    sent = await sweep.at(signed + timedelta(minutes=1))
    told = [m for room, m in sent if room == DUTY]
    assert len(told) == 1 and "inget sammanträde för Skövde kommun" in told[0].text
    assert told[0].mentions == (ANNA,)
    assert any("datum saknas i konfigurationen" in m.text for r, m in sent if r == INTAKE)
    assert [m for r, m in await sweep.at(signed + timedelta(days=1)) if r == DUTY] == []

    # The dates are added (a new config): the deadline gets its day and is reminded.
    sweep.settings = settings_in(tmp_path)
    sweep.restart()
    await sweep.at(signed + timedelta(days=1, minutes=1))
    assert (await rows_of(sessions, case))["anmalan_namnd"].due_on == date(2026, 3, 19)
    reminded = await sweep.at(local(2026, 3, 17, 8, 0))
    assert any(
        "6 § andra stycket LVU" in m.text and "tors 2026-03-19" in m.text for _, m in reminded
    )


async def test_meetings_from_a_calendar_file(
    sessions: Sessions, tmp_path: Path, make_sweep: Callable[[Settings], Sweep]
) -> None:
    settings = settings_in(tmp_path, meetings="")
    sweep = make_sweep(settings)

    class Calendar:
        async def calendar(self, municipality_id: str) -> bytes | None:
            assert municipality_id == "skovde"
            return (
                b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//\r\nBEGIN:VEVENT\r\nUID:a\r\n"
                b"DTSTART;VALUE=DATE:20260326\r\nSUMMARY:SN\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
            )

    sweep.jobs.meetings = Calendar()
    signed = local(2026, 3, 2, 3, 0)
    case = await new_case(sessions, now=signed)
    await start(sessions, case, "decision", signed, settings)
    sent = await sweep.at(signed + timedelta(minutes=1))
    assert any("tors 2026-03-26" in m.text for r, m in sent if r == INTAKE)
    assert not [m for r, m in sent if r == DUTY]
    assert (await rows_of(sessions, case))["anmalan_namnd"].due_on == date(2026, 3, 26)


async def test_the_reminder_policy_comes_from_the_config(
    sessions: Sessions, tmp_path: Path, make_sweep: Callable[[Settings], Sweep]
) -> None:
    settings = settings_in(tmp_path, deadlines_section='[deadlines]\nremind = ["3d"]')
    sweep = make_sweep(settings)
    signed = local(2026, 3, 5, 3, 0)  # Thursday: due Thursday 12th
    case = await new_case(sessions, now=signed)
    await start(sessions, case, "decision", signed, settings)
    await sweep.at(signed + timedelta(minutes=1))
    reminders = []
    for day in range(6, 13):
        sent = await sweep.at(local(2026, 3, day, 9, 0))
        reminders += [(day, m) for r, m in sent if r == INTAKE and "7 §" in m.text]
    assert [day for day, _ in reminders] == [9]  # only 3 days before, on Monday


# -- the commands ----------------------------------------------------------------------------


class Room:
    """The dispatcher with the deadline commands, and helpers to talk to it."""

    _events = itertools.count(1)

    def __init__(self, sessions: Sessions, settings: Settings, now: datetime) -> None:
        self.sessions = sessions
        self.messenger = MemoryMessenger()
        self.clock = FakeClock(now)
        self.dispatcher = Dispatcher(
            settings=settings, sessions=sessions, messenger=self.messenger, clock=self.clock
        )
        self.dispatcher.duty_room_id = DUTY
        self.dispatcher.intake_rooms.update({INTAKE: "skovde", INTAKE_FALKOPING: "falkoping"})

    async def say(
        self, room: str, body: str, *, sender: str = ANNA, reply_to: str | None = None
    ) -> list[tuple[str, Message]]:
        before = len(self.messenger.sent)
        await self.dispatcher.handle(
            IncomingMessage(
                room_id=room,
                sender=sender,
                event_id=f"$cmd{next(self._events)}",
                body=body,
                in_reply_to=reply_to,
            )
        )
        return self.messenger.sent[before:]

    async def answer(self, room: str, body: str, **kwargs: object) -> str:
        """The one answer in ``room``."""
        sent = await self.say(room, body, **kwargs)  # type: ignore[arg-type]
        here = [m.text for r, m in sent if r == room]
        assert len(here) == 1, sent
        return here[0]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return settings_in(tmp_path)


async def test_marking_acts_in_the_case_room_and_the_intake_room(
    sessions: Sessions, settings: Settings
) -> None:
    signed = local(2026, 3, 2, 3, 0)
    room = Room(sessions, settings, signed + timedelta(hours=30))
    case = await new_case(sessions, now=signed)
    await start(sessions, case, "decision", signed, settings)

    # In the case room: marked, who and when recorded, the intake room told.
    sent = await room.say(CASE_ROOM, "!underställt")
    answers = {r: m.text for r, m in sent}
    assert "Underställning till förvaltningsrätten (7 § LVU)" in answers[CASE_ROOM]
    assert "klart, markerat av @anna:example.org" in answers[CASE_ROOM]
    assert "SJ-2026-0001" in answers[INTAKE]
    rows = await rows_of(sessions, case)
    done = rows["understallning"]
    assert (done.status, done.done_by, done.done_via) == ("done", ANNA, "underställt")
    assert done.done_at == room.clock()
    assert "redan markerat" in await room.answer(CASE_ROOM, "!underställt")

    # In the intake room, by number: the case room is told.
    sent = await room.say(INTAKE, "!anmält sj-2026-0001", sender=CECILIA)
    answers = {r: m.text for r, m in sent}
    assert "Anmälan till nämnden" in answers[INTAKE] and CECILIA in answers[CASE_ROOM]
    # Nothing to mark for the application yet: it waits for the execution (allowed to
    # be marked early: the act is done).
    assert "Ansökan om vård" in await room.answer(INTAKE, "!ansökt SJ-2026-0001", sender=CECILIA)

    async with sessions() as session:
        actions = [
            (e.actor, e.action, (e.detail or {}).get("deadline"))
            for e in await repo.list_audit(session, case_id=case.id)
        ]
    assert (ANNA, "deadline.marked", "understallning") in actions
    assert (CECILIA, "deadline.marked", "anmalan_namnd") in actions


async def test_the_intake_room_finds_its_own_cases_only(
    sessions: Sessions, settings: Settings
) -> None:
    signed = local(2026, 3, 2, 3, 0)
    room = Room(sessions, settings, signed + timedelta(hours=2))
    first = await new_case(sessions, now=signed, room="!case1:test")
    await start(sessions, first, "decision", signed, settings)
    other = await new_case(sessions, now=signed, municipality="falkoping", room="!case2:test")
    await start(sessions, other, "decision", signed, settings)

    # Falköping's case is unknown in Skövde's room, and nothing is marked.
    text = await room.answer(INTAKE, "!underställt SJ-2026-0002", sender=CECILIA)
    assert "inget ärende **SJ-2026-0002**".replace("**", "") in text
    assert (await rows_of(sessions, other))["understallning"].status == "running"
    # Without a number: the only Skövde case with an open underställning.
    assert "SJ-2026-0001" in await room.answer(INTAKE, "!underställt", sender=CECILIA)
    assert (await rows_of(sessions, first))["understallning"].status == "done"

    # Two open cases: asked which, nothing marked on a guess.
    third = await new_case(sessions, now=signed, room="!case3:test")
    await start(sessions, third, "decision", signed, settings)
    fourth = await new_case(sessions, now=signed, room="!case4:test")
    await start(sessions, fourth, "decision", signed, settings)
    text = await room.answer(INTAKE, "!anmält", sender=CECILIA)
    assert "Vilket ärende?" in text and "SJ-2026-0001" in text and "SJ-2026-0004" in text
    assert (await rows_of(sessions, third))["anmalan_namnd"].status == "running"

    # Someone who is not in Skövde's intake may not mark anything there.
    assert "behörighet" in await room.answer(INTAKE, "!anmält SJ-2026-0003", sender=FRIDA)
    assert "behörighet" in await room.answer(INTAKE, "!anmält SJ-2026-0003", sender=EVE)


async def test_a_reply_to_a_reminder_marks_that_case(
    sessions: Sessions, settings: Settings, make_sweep: Callable[[Settings], Sweep]
) -> None:
    signed = local(2026, 3, 2, 3, 0)
    first = await new_case(sessions, now=signed, room="!case1:test")
    second = await new_case(sessions, now=signed, room="!case2:test")
    for case in (first, second):
        await start(sessions, case, "decision", signed, settings)
    sweep = make_sweep(settings)
    await sweep.at(signed + timedelta(minutes=1))
    await sweep.at(local(2026, 3, 6, 8, 0))
    # The reminder about the second case, as the intake member sees it.
    event_id = (await rows_of(sessions, second))["understallning"].last_event_id
    assert event_id is not None
    reminded_room, reminder = sweep.messenger.sent[int(event_id.removeprefix("$event")) - 1]
    assert reminded_room == INTAKE and "Påminnelse: SJ-2026-0002" in reminder.text

    room = Room(sessions, settings, local(2026, 3, 6, 9, 0))
    text = await room.answer(INTAKE, "!submitted", sender=CECILIA, reply_to=event_id)
    assert "SJ-2026-0002" in text
    assert (await rows_of(sessions, second))["understallning"].status == "done"
    assert (await rows_of(sessions, first))["understallning"].status == "running"


async def test_the_courts_decision_upheld_starts_the_application_clock(
    sessions: Sessions, settings: Settings
) -> None:
    signed = local(2026, 3, 3, 1, 0)  # LVM, Tuesday night
    room = Room(sessions, settings, local(2026, 3, 6, 15, 0))
    case = await new_case(sessions, form="lvm13", now=signed)
    await start(sessions, case, "decision", signed, settings)

    assert "ÅÅÅÅ-MM-DD" in await room.answer(CASE_ROOM, "!rättens beslut")
    assert "```2026-13-05```".strip("`") in await room.answer(
        CASE_ROOM, "!rättens beslut 2026-13-05 fastställt"
    )
    assert "inte kommit än" in await room.answer(CASE_ROOM, "!rättens beslut 2026-03-07 fastställt")
    assert "före beslutet" in await room.answer(CASE_ROOM, "!rättens beslut 2026-03-02 fastställt")
    assert (await rows_of(sessions, case))["ansokan_vard"].status == "waiting"

    sent = await room.say(CASE_ROOM, "!rättens beslut idag fastställt")
    answer = next(m.text for r, m in sent if r == CASE_ROOM)
    assert "fastställt" in answer and "fre 2026-03-06" in answer
    assert "Rätten har fått beslutet, så det här är klart ✓: Underställning" in answer
    assert "Ansökan om vård hos förvaltningsrätten (18 § LVM) – senast fre 2026-03-13" in answer
    assert any(r == INTAKE for r, _ in sent)
    rows = await rows_of(sessions, case)
    assert (rows["understallning"].status, rows["understallning"].done_via) == ("done", "court")
    assert (rows["ansokan_vard"].status, rows["ansokan_vard"].due_on) == (
        "running",
        date(2026, 3, 13),
    )
    # The answer announced the new clock in both rooms; the sweep only reminds of it.
    sweep = Sweep(sessions, settings, FakeClock(room.clock()))
    assert not [m for _, m in await sweep.at(local(2026, 3, 6, 15, 1)) if "18 § LVM" in m.text]
    reminded = await sweep.at(local(2026, 3, 11, 8, 0))
    assert [r for r, m in reminded if "Påminnelse" in m.text and "18 § LVM" in m.text] == [INTAKE]

    again = await room.answer(CASE_ROOM, "!rättens beslut idag upphävt")
    assert "redan registrerat" in again and "fastställt" in again
    assert (await rows_of(sessions, case))["ansokan_vard"].status == "running"

    # !status shows each deadline with its day and what happened.
    status = await room.answer(CASE_ROOM, "!status")
    assert "Frister" in status and "senast fre 2026-03-13" in status
    assert "klart ✓" in status and "Rättens beslut fre 2026-03-06: fastställt" in status


async def test_the_courts_decision_revoked_starts_nothing_and_says_so(
    sessions: Sessions, tmp_path: Path
) -> None:
    settings = settings_in(tmp_path, language="en")
    signed = local(2026, 3, 2, 3, 0)
    room = Room(sessions, settings, local(2026, 3, 10, 11, 0))
    lvu = await new_case(sessions, now=signed, room="!lvu:test")
    await start(sessions, lvu, "decision", signed, settings)
    await start(sessions, lvu, "execution", signed + timedelta(hours=2), settings)
    lvm = await new_case(sessions, form="lvm13", now=signed, room="!lvm:test")
    await start(sessions, lvm, "decision", signed, settings)

    # From the intake room, by number; the case room hears of it.
    sent = await room.say(INTAKE, "!court 2026-03-09 revoked SJ-2026-0002", sender=CECILIA)
    answer = next(m.text for r, m in sent if r == INTAKE)
    assert "revoked" in answer and "do not start" in answer and "18 § LVM" in answer
    assert any(r == "!lvm:test" for r, _ in sent)
    assert (await rows_of(sessions, lvm))["ansokan_vard"].status == "void"

    # LVU: the application under 8 § ends with the custody; the report still stands.
    await room.say("!lvu:test", "!court 2026-03-09 revoked")
    async with sessions() as session:
        [court] = [
            e
            for e in await repo.list_audit(session, case_id=lvu.id)
            if e.action == "court.decision"
        ]
    assert (court.actor, court.detail) == (
        ANNA,
        {"outcome": "revoked", "date": "2026-03-09", "stopped": ["ansokan_vard"]},
    )
    rows = await rows_of(sessions, lvu)
    assert rows["ansokan_vard"].status == "void"
    assert rows["anmalan_namnd"].status == "running"
    assert rows["understallning"].status == "done"
    status = await room.answer("!lvu:test", "!status")
    assert "does not start or no longer applies" in status
    assert "next committee meeting" not in status  # the meeting day is known: a date
    assert "by Thu 2026-03-19" in status
    # An unknown outcome word is a bad date, said politely with the right form.
    assert "not understood" in await room.answer("!lvu:test", "!court 2026-03-09 maybe")


async def test_meeting_calendar_files_are_read_when_they_change(tmp_path: Path) -> None:
    ics = tmp_path / "sammantraden.ics"
    first = (
        b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//\r\nBEGIN:VEVENT\r\nUID:a\r\n"
        b"DTSTART;VALUE=DATE:20260326\r\nSUMMARY:SN\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    )
    ics.write_bytes(first)
    settings = settings_in(tmp_path, meetings='meetings_ics = "sammantraden.ics"')
    assert settings.municipality("skovde").meetings_ics == str(ics)  # type: ignore[union-attr]
    calendars = MeetingCalendars(settings)
    try:
        assert await calendars.calendar("skovde") == first
        assert await calendars.calendar("falkoping") is None
        ics.write_bytes(b"<html>not a calendar, a half-written file</html>")
        assert await calendars.calendar("skovde") == first  # the last good copy stays
        second = first.replace(b"20260326", b"20260423")
        ics.write_bytes(second)
        assert await calendars.calendar("skovde") == second
    finally:
        await calendars.close()
