"""The on-call calendar: who it puts on call, how that meets ``!jour ersätt``, and its sources.

:func:`handlers.roster.calendar_on_call` on its own (recurrence, exceptions, all-day
events, time zones, matching people, malformed files); then through
:func:`handlers.oncall.on_call` and ``!jour`` on a migrated database (the storage
fixtures, with the helpers of ``tests/test_oncall.py``); then
:class:`bot.roster_source.CalendarRosterSource` reading a file and fetching from a
local aiohttp server.
"""

from __future__ import annotations

import asyncio
import logging
import os
import textwrap
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiohttp import web

from bot.roster_source import CalendarRosterSource
from config import DecisionMaker
from handlers.oncall import on_call
from handlers.roster import MalformedRoster, RosterError, calendar_on_call
from tests.test_oncall import (
    ANNA,
    DAG,
    EVA,
    NOW,
    OLLE,
    TOVE,
    Duty,
    FakeRoster,
    Sessions,
    make_settings,
)

DAG_DM = DecisionMaker(DAG, "Dag Dagsson", "ordförande", email="dag@example.org")
EVA_DM = DecisionMaker(
    EVA, "Eva Evasdotter", "förordnad ledamot", email="eva@example.org", title="vice ordförande"
)
OLLE_DM = DecisionMaker(OLLE, "Olle Olsson", "förordnad ledamot")
MAKERS = (DAG_DM, EVA_DM, OLLE_DM)
SECRET = "s3cr3t-token"


def ics(*events: str, preamble: str = "") -> bytes:
    """A VCALENDAR with these VEVENTs (each a block of property lines)."""
    lines = ["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//Socialjour tests//EN"]
    lines += textwrap.dedent(preamble).strip().splitlines()
    for event in events:
        lines += ["BEGIN:VEVENT", *textwrap.dedent(event).strip().splitlines(), "END:VEVENT"]
    lines.append("END:VCALENDAR")
    return ("\r\n".join(lines) + "\r\n").encode()


def week(summary: str, monday: str = "20261123") -> bytes:
    """One on-call week from Monday 08:00 Stockholm time (the week of NOW by default)."""
    following = (datetime.strptime(monday, "%Y%m%d") + timedelta(days=7)).strftime("%Y%m%d")
    return ics(
        f"""
        UID:week-{monday}@test
        DTSTART;TZID=Europe/Stockholm:{monday}T080000
        DTEND;TZID=Europe/Stockholm:{following}T080000
        SUMMARY:{summary}
        """
    )


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def who(calendar: bytes, at: datetime) -> list[str]:
    return [d.user_id for d in calendar_on_call(calendar, MAKERS, at)]


# -- recurring events --------------------------------------------------------------------------

# Dag and Eva take turns, a week each, handing over on Monday at 08:00 Stockholm time.
# Dag is an attendee by e-mail, Eva is named in the summary.
ALTERNATING = ics(
    """
    UID:dag-weeks@test
    DTSTART;TZID=Europe/Stockholm:20260302T080000
    DTEND;TZID=Europe/Stockholm:20260309T080000
    RRULE:FREQ=WEEKLY;INTERVAL=2
    SUMMARY:Beslutsjour
    ATTENDEE;CN=Dag:mailto:DAG@Example.org
    """,
    """
    UID:eva-weeks@test
    DTSTART;TZID=Europe/Stockholm:20260309T080000
    DTEND;TZID=Europe/Stockholm:20260316T080000
    RRULE:FREQ=WEEKLY;INTERVAL=2
    SUMMARY:Beslutsjour Eva Evasdotter
    """,
)


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        (utc(2026, 3, 2, 6, 59), []),  # 07:59 CET: before the first week
        (utc(2026, 3, 2, 7, 0), [DAG]),  # 08:00 CET
        (utc(2026, 3, 4, 12, 0), [DAG]),
        (utc(2026, 3, 9, 6, 59), [DAG]),  # Monday 07:59 CET
        (utc(2026, 3, 9, 7, 0), [EVA]),  # Monday 08:00 CET: handover
        (utc(2026, 3, 16, 7, 0), [DAG]),
        (utc(2026, 3, 23, 7, 0), [EVA]),
        (utc(2026, 3, 29, 1, 30), [EVA]),  # Sunday 03:30 CEST, just after clocks went forward
        (utc(2026, 3, 30, 5, 59), [EVA]),  # Monday 07:59 CEST
        (utc(2026, 3, 30, 6, 0), [DAG]),  # Monday 08:00 CEST: an hour earlier in UTC
        (utc(2026, 3, 30, 6, 30), [DAG]),
        (utc(2026, 4, 6, 6, 0), [EVA]),
        (utc(2026, 4, 15, 12, 0), [DAG]),
        (utc(2026, 10, 26, 6, 30), [EVA]),  # Monday 07:30 CET, the day after clocks went back
        (utc(2026, 10, 26, 7, 0), [DAG]),  # Monday 08:00 CET
    ],
)
def test_a_fortnightly_rota_hands_over_on_monday_at_eight_local_time(
    at: datetime, expected: list[str]
) -> None:
    assert who(ALTERNATING, at) == expected


# Dag's weekly series, with one week taken out and one week given to Eva (and extended to
# Monday noon), and a cancelled occurrence at the end.
WITH_EXCEPTIONS = ics(
    """
    UID:dag@test
    DTSTART;TZID=Europe/Stockholm:20261102T080000
    DTEND;TZID=Europe/Stockholm:20261109T080000
    RRULE:FREQ=WEEKLY;COUNT=6
    EXDATE;TZID=Europe/Stockholm:20261116T080000
    SUMMARY:Beslutsjour Dag Dagsson
    """,
    """
    UID:dag@test
    RECURRENCE-ID;TZID=Europe/Stockholm:20261123T080000
    DTSTART;TZID=Europe/Stockholm:20261123T080000
    DTEND;TZID=Europe/Stockholm:20261130T120000
    SUMMARY:Beslutsjour Eva Evasdotter (byte)
    """,
    """
    UID:dag@test
    RECURRENCE-ID;TZID=Europe/Stockholm:20261207T080000
    DTSTART;TZID=Europe/Stockholm:20261207T080000
    DTEND;TZID=Europe/Stockholm:20261214T080000
    STATUS:CANCELLED
    SUMMARY:Beslutsjour Dag Dagsson
    """,
)


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        (utc(2026, 11, 10, 12, 0), [DAG]),
        (utc(2026, 11, 17, 12, 0), []),  # EXDATE: the calendar names nobody that week
        (NOW, [EVA]),  # RECURRENCE-ID: Eva's week instead of Dag's
        (utc(2026, 11, 30, 9, 0), [EVA, DAG]),  # 10:00: both; Eva's shift began first
        (utc(2026, 11, 30, 11, 0), [DAG]),  # 12:00: Eva's extension is over
        (utc(2026, 12, 8, 12, 0), []),  # the cancelled occurrence
        (utc(2026, 12, 15, 12, 0), []),  # COUNT: the series has ended
    ],
)
def test_exdate_and_recurrence_id_change_single_weeks(at: datetime, expected: list[str]) -> None:
    assert who(WITH_EXCEPTIONS, at) == expected


# -- all-day events and time zones -------------------------------------------------------------


@pytest.mark.parametrize(
    ("calendar", "checks"),
    [
        # Tuesday and Wednesday in November (CET, UTC+1).
        (
            ics("DTSTART;VALUE=DATE:20261124\nDTEND;VALUE=DATE:20261126\nSUMMARY:Olle Olsson"),
            [
                (utc(2026, 11, 23, 22, 59), []),  # Monday 23:59
                (utc(2026, 11, 23, 23, 0), [OLLE]),  # Tuesday 00:00
                (utc(2026, 11, 25, 22, 59), [OLLE]),  # Wednesday 23:59
                (utc(2026, 11, 25, 23, 0), []),  # Thursday 00:00
            ],
        ),
        # One summer day without DTEND (CEST, UTC+2).
        (
            ics("DTSTART;VALUE=DATE:20260704\nSUMMARY:Olle Olsson"),
            [
                (utc(2026, 7, 3, 21, 59), []),
                (utc(2026, 7, 3, 22, 0), [OLLE]),
                (utc(2026, 7, 4, 21, 59), [OLLE]),
                (utc(2026, 7, 4, 22, 0), []),
            ],
        ),
        # Weekends all year round.
        (
            ics(
                "DTSTART;VALUE=DATE:20260103\nDURATION:P2D\nRRULE:FREQ=WEEKLY\n"
                "SUMMARY:Helgjour Olle Olsson"
            ),
            [
                (utc(2026, 11, 27, 22, 59), []),  # Friday 23:59
                (utc(2026, 11, 27, 23, 0), [OLLE]),  # Saturday 00:00
                (utc(2026, 11, 29, 22, 59), [OLLE]),  # Sunday 23:59
                (utc(2026, 11, 29, 23, 0), []),  # Monday 00:00
            ],
        ),
    ],
    ids=["two-days", "one-summer-day", "weekends"],
)
def test_all_day_events_cover_whole_stockholm_days(
    calendar: bytes, checks: list[tuple[datetime, list[str]]]
) -> None:
    for moment, people in checks:
        assert who(calendar, moment) == people, moment


OUTLOOK_ZONE = """
BEGIN:VTIMEZONE
TZID:W. Europe Standard Time
BEGIN:STANDARD
DTSTART:16011028T030000
RRULE:FREQ=YEARLY;BYDAY=-1SU;BYMONTH=10
TZOFFSETFROM:+0200
TZOFFSETTO:+0100
END:STANDARD
BEGIN:DAYLIGHT
DTSTART:16010325T020000
RRULE:FREQ=YEARLY;BYDAY=-1SU;BYMONTH=3
TZOFFSETFROM:+0100
TZOFFSETTO:+0200
END:DAYLIGHT
END:VTIMEZONE
"""


@pytest.mark.parametrize(
    ("times", "preamble"),
    [
        ("DTSTART:20261124T070000Z\nDTEND:20261124T160000Z", ""),
        (
            "DTSTART;TZID=America/New_York:20261124T020000\n"
            "DTEND;TZID=America/New_York:20261124T110000",
            "",
        ),
        ("DTSTART:20261124T080000\nDURATION:PT9H", ""),  # floating: Stockholm time
        (
            "DTSTART;TZID=W. Europe Standard Time:20261124T080000\n"
            "DTEND;TZID=W. Europe Standard Time:20261124T170000",
            OUTLOOK_ZONE,
        ),
    ],
    ids=["utc", "new-york", "floating", "outlook-zone"],
)
def test_times_are_compared_as_instants(times: str, preamble: str) -> None:
    """Every event here runs 07:00-16:00 UTC on 24 November."""
    calendar = ics(f"{times}\nSUMMARY:Eva Evasdotter", preamble=preamble)
    assert who(calendar, utc(2026, 11, 24, 6, 59)) == []
    assert who(calendar, utc(2026, 11, 24, 7, 0)) == [EVA]
    assert who(calendar, utc(2026, 11, 24, 15, 59)) == [EVA]
    assert who(calendar, utc(2026, 11, 24, 16, 0)) == []


def test_overlapping_events_are_in_order_of_start() -> None:
    calendar = ics(
        # A one-day stand-in, listed first but starting later ...
        "DTSTART:20261124T070000Z\nDTEND:20261125T070000Z\nSUMMARY:Olle Olsson",
        # ... inside Eva's week, which began on Monday.
        "DTSTART:20261123T070000Z\nDTEND:20261130T070000Z\nSUMMARY:Eva Evasdotter",
        # Dag's week began even earlier but has ended.
        "DTSTART:20261116T070000Z\nDTEND:20261123T070000Z\nSUMMARY:Dag Dagsson",
    )
    assert who(calendar, NOW) == [EVA]  # 02:30 UTC: Olle has not started yet
    assert who(calendar, utc(2026, 11, 24, 12, 0)) == [EVA, OLLE]


# -- who an event names ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        ("ATTENDEE:mailto:DAG@Example.ORG", [DAG]),
        ("ATTENDEE:MAILTO:dag@example.org", [DAG]),
        ("ATTENDEE:mailto:dag@example.org.evil.net", []),
        ("ATTENDEE:matrix:u/eva:example.org", [EVA]),
        ('ATTENDEE;CN="@eva:example.org":mailto:jour@kommun.example', [EVA]),
        ("ATTENDEE;CN=Olle Olsson:mailto:olle.privat@example.net", [OLLE]),
        ("ATTENDEE;PARTSTAT=DECLINED:mailto:dag@example.org", []),
        ("SUMMARY:Beslutsjour OLLE OLSSON", [OLLE]),
        ("SUMMARY:Beslutsjour:  Olle\tOlsson.", [OLLE]),
        ("SUMMARY:Beslutsjour @olle:example.org", [OLLE]),
        ("SUMMARY:Beslutsjour @olle:example.org.", [OLLE]),
        ("SUMMARY:Beslutsjour https://matrix.to/#/@olle:example.org", [OLLE]),
        ("SUMMARY:Beslutsjour Olle", []),  # a first name is not enough
        ("SUMMARY:Beslutsjour Olle Olssonsson", []),
        ("SUMMARY:Beslutsjour @olle:example.org.se", []),
        ("SUMMARY:Beslutsjour @olle:example.organic", []),
        ("SUMMARY:Beslutsjour Tove Tibro", []),  # not a decision-maker here
        ("ATTENDEE:mailto:eva@example.org\nATTENDEE:mailto:dag@example.org", [EVA, DAG]),
        (
            "ATTENDEE:mailto:dag@example.org\nSUMMARY:Olle Olsson och Eva Evasdotter",
            [DAG, OLLE, EVA],
        ),
        ("SUMMARY:Eva Evasdotter (@eva:example.org)\nATTENDEE:mailto:eva@example.org", [EVA]),
    ],
)
def test_an_event_names_people_by_attendee_or_summary(lines: str, expected: list[str]) -> None:
    calendar = ics(f"DTSTART:20261123T070000Z\nDTEND:20261130T070000Z\n{lines}")
    assert who(calendar, NOW) == expected


# -- malformed calendars -----------------------------------------------------------------------

BAD_RULE = ics("DTSTART:20261123T070000Z\nRRULE:FREQ=SOMETIMES\nSUMMARY:Dag Dagsson")


@pytest.mark.parametrize(
    "calendar",
    [
        b"",
        b"Dag Dagsson has the duty",
        b"<html><body>Sign in to Outlook, Dag Dagsson</body></html>",
        ics("DTSTART:20261123T070000Z\nSUMMARY:Dag Dagsson")[:60],  # cut short
        BAD_RULE,
        ics("DTSTART:2026XX23\nSUMMARY:Dag Dagsson"),
        ics("SUMMARY:Dag Dagsson"),  # no DTSTART
        b"BEGIN:VEVENT\r\nDTSTART:20261123T070000Z\r\nSUMMARY:Dag Dagsson\r\nEND:VEVENT\r\n",
    ],
    ids=["empty", "text", "html", "truncated", "bad-rrule", "bad-date", "no-start", "no-vcal"],
)
def test_a_malformed_calendar_is_a_clear_error_that_quotes_nothing(calendar: bytes) -> None:
    with pytest.raises(MalformedRoster) as caught:
        calendar_on_call(calendar, MAKERS, NOW)
    assert isinstance(caught.value, RosterError)
    assert "malformed roster calendar" in str(caught.value)
    assert "Dag" not in str(caught.value)


def test_an_empty_calendar_names_nobody() -> None:
    assert who(ics(), NOW) == []


# -- on_call and !jour with a calendar ---------------------------------------------------------


@pytest.fixture
def duty(sessions: Sessions, tmp_path: Path) -> Duty:
    return Duty(make_settings(tmp_path), sessions)


async def test_calendar_people_come_after_overrides_and_before_the_rest(duty: Duty) -> None:
    roster = FakeRoster(skovde=week("Beslutsjour Olle Olsson"))
    duty.dispatcher.oncall.roster = roster

    async def order(municipality: str = "skovde") -> list[str]:
        people = await on_call(
            duty.settings, duty.sessions, municipality, duty.clock(), roster=roster
        )
        return [d.user_id for d in people]

    assert await order() == [OLLE, DAG, EVA]
    assert await order("tibro") == [TOVE, EVA]  # no calendar there

    answer = await duty.say(f"!jour ersätt {EVA} nu 2026-11-24T18:00")
    assert answer.text.startswith(f"{EVA} har beslutsjour först")
    assert await order() == [EVA, OLLE, DAG]
    shown = (await duty.say("!jour", sender=ANNA)).text.splitlines()
    assert shown[1] == (
        "Skövde kommun: Eva Evasdotter (vice ordförande, ändrat med !jour ersätt), "
        "Olle Olsson (förordnad ledamot, enligt jourkalendern), "
        "Dag Dagsson (ordförande, enligt konfigurationen)"
    )

    # An override for the person the calendar names already: first, and only once.
    await duty.say(f"!jour ersätt {OLLE} nu 2026-11-24T18:00")
    assert await order() == [OLLE, EVA, DAG]

    duty.clock.now = utc(2026, 11, 24, 17, 0)  # 18:00: both overrides are over
    assert await order() == [OLLE, DAG, EVA]
    duty.clock.now = utc(2026, 11, 30, 7, 0)  # Monday 08:00: the calendar's week is over
    assert await order() == [DAG, EVA, OLLE]


async def test_a_malformed_calendar_falls_back_to_the_config_order(
    duty: Duty, caplog: pytest.LogCaptureFixture
) -> None:
    roster = FakeRoster(skovde=BAD_RULE)
    duty.dispatcher.oncall.roster = roster

    with caplog.at_level(logging.WARNING, logger="handlers.oncall"):
        people = await on_call(duty.settings, duty.sessions, "skovde", NOW, roster=roster)
        shown = (await duty.say("!jour", sender=ANNA)).text.splitlines()

    assert [d.user_id for d in people] == [DAG, EVA, OLLE]
    assert shown[1].startswith("Skövde kommun: Dag Dagsson (ordförande, enligt konfigurationen)")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings and all("skovde" in w and "malformed" in w for w in warnings)
    assert "Dag" not in caplog.text and "SOMETIMES" not in caplog.text


async def test_a_failing_source_falls_back_to_the_config_order(
    duty: Duty, caplog: pytest.LogCaptureFixture
) -> None:
    class Broken:
        async def calendar(self, municipality_id: str) -> bytes | None:
            raise OSError("Dag Dagsson's calendar is gone")

    with caplog.at_level(logging.WARNING, logger="handlers.oncall"):
        people = await on_call(duty.settings, duty.sessions, "skovde", NOW, roster=Broken())

    assert [d.user_id for d in people] == [DAG, EVA, OLLE]
    assert "skovde" in caplog.text and "OSError" in caplog.text
    assert "Dag" not in caplog.text


# -- the file source ---------------------------------------------------------------------------


def touch_later(path: Path) -> None:
    """Move the file's mtime on a second, so even a coarse file system sees the change."""
    status = path.stat()
    os.utime(path, ns=(status.st_atime_ns, status.st_mtime_ns + 1_000_000_000))


async def test_the_file_source_rereads_a_changed_file(
    sessions: Sessions, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    calendar_file = tmp_path / "jour.ics"
    calendar_file.write_bytes(week("Beslutsjour Olle Olsson"))
    settings = make_settings(tmp_path, rosters={"skovde": "jour.ics"})  # relative to the config
    source = CalendarRosterSource(settings)

    async def order() -> list[str]:
        return [d.user_id for d in await on_call(settings, sessions, "skovde", NOW, roster=source)]

    try:
        assert await order() == [OLLE, DAG, EVA]
        assert await source.calendar("tibro") is None  # no roster_ics there

        calendar_file.write_bytes(week("Beslutsjour Eva Evasdotter"))
        touch_later(calendar_file)
        assert await order() == [EVA, DAG, OLLE]

        # A half-written or broken file leaves the last good roster in place, with a warning.
        with caplog.at_level(logging.WARNING, logger="bot.roster_source"):
            calendar_file.write_bytes(BAD_RULE)
            touch_later(calendar_file)
            assert await order() == [EVA, DAG, OLLE]
            assert await order() == [EVA, DAG, OLLE]
            calendar_file.unlink()
            assert await order() == [EVA, DAG, OLLE]
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 2, warnings  # once for the bad file, once for the missing one
        assert all("skovde" in w for w in warnings)
        assert "Dag" not in caplog.text

        calendar_file.write_bytes(week("Beslutsjour Dag Dagsson"))
        assert await order() == [DAG, EVA, OLLE]
    finally:
        await source.close()


# -- the URL source ----------------------------------------------------------------------------


class CalendarServer:
    """A calendar publisher on loopback whose answer the test sets."""

    def __init__(self) -> None:
        self.status = 200
        self.body = b""
        self.hits = 0
        self.stall = False
        self.release = asyncio.Event()
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.hits += 1
        if self.stall:
            await self.release.wait()
        return web.Response(status=self.status, body=self.body, content_type="text/calendar")


@pytest.fixture
async def server() -> AsyncIterator[CalendarServer]:
    calendars = CalendarServer()
    app = web.Application()
    app.router.add_get("/calendars/{name}", calendars.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    calendars.url = f"http://127.0.0.1:{port}/calendars/{SECRET}.ics"
    try:
        yield calendars
    finally:
        calendars.release.set()
        await runner.cleanup()


async def eventually(check: Callable[[], Awaitable[bool]], seconds: float = 5.0) -> None:
    for _ in range(int(seconds / 0.01)):
        if await check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"not true within {seconds} s")


async def test_the_url_source_keeps_the_last_good_copy(
    sessions: Sessions,
    tmp_path: Path,
    server: CalendarServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = make_settings(tmp_path, rosters={"skovde": server.url})
    source = CalendarRosterSource(settings)

    async def order() -> list[str]:
        return [d.user_id for d in await on_call(settings, sessions, "skovde", NOW, roster=source)]

    try:
        assert await order() == [DAG, EVA, OLLE]  # nothing fetched yet: the config order

        server.body = week("Beslutsjour Olle Olsson")
        await source.refresh()
        assert await order() == [OLLE, DAG, EVA]

        with caplog.at_level(logging.WARNING, logger="bot.roster_source"):
            server.status, server.body = 500, b"Internal error for Dag Dagsson"
            await source.refresh()
            assert await order() == [OLLE, DAG, EVA]
            status_warning = caplog.records[-1].getMessage()

            server.status, server.body = 200, b"<html>Please sign in, Dag Dagsson</html>"
            await source.refresh()
            assert await order() == [OLLE, DAG, EVA]
            malformed_warning = caplog.records[-1].getMessage()

        assert "skovde" in status_warning and "500" in status_warning
        assert "skovde" in malformed_warning and "malformed" in malformed_warning
        assert SECRET not in caplog.text and "Dag" not in caplog.text

        server.body = week("Beslutsjour Eva Evasdotter")
        await source.refresh()
        assert await order() == [EVA, DAG, OLLE]
    finally:
        await source.close()


async def test_the_url_source_refreshes_in_the_background(
    tmp_path: Path, server: CalendarServer
) -> None:
    settings = make_settings(tmp_path, rosters={"skovde": server.url})
    source = CalendarRosterSource(settings, refresh_every=timedelta(milliseconds=20))
    server.body = week("Beslutsjour Olle Olsson")

    async def shows(name: str) -> bool:
        calendar = await source.calendar("skovde")
        return calendar is not None and name.encode() in calendar

    try:
        await source.start()
        await eventually(lambda: shows("Olle Olsson"))  # fetched at start

        server.body = week("Beslutsjour Eva Evasdotter")
        await eventually(lambda: shows("Eva Evasdotter"))  # and again later

        await source.stop()
        hits = server.hits
        server.body = week("Beslutsjour Dag Dagsson")
        await asyncio.sleep(0.1)
        assert server.hits == hits  # stopped means stopped
        assert await shows("Eva Evasdotter")  # the copy stays usable
        await source.refresh()  # by hand, after stop(), still works
        assert await shows("Dag Dagsson")
    finally:
        await source.close()


async def test_a_stalled_fetch_is_given_up_in_time(
    tmp_path: Path, server: CalendarServer, caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(tmp_path, rosters={"skovde": server.url, "tibro": server.url})
    source = CalendarRosterSource(settings, timeout=0.2)
    server.body = week("Beslutsjour Olle Olsson")
    try:
        await source.refresh()
        good = await source.calendar("skovde")
        assert good is not None

        server.stall = True
        with caplog.at_level(logging.WARNING, logger="bot.roster_source"):
            async with asyncio.timeout(3):  # both together, well before a second timeout each
                await source.refresh()

        assert await source.calendar("skovde") == good
        assert await source.calendar("tibro") == good
        messages = sorted(r.getMessage() for r in caplog.records)
        assert len(messages) == 2
        assert "skovde" in " ".join(messages) and "tibro" in " ".join(messages)
    finally:
        await source.close()
