"""Who the municipality's on-call calendar puts on call at a moment.

Politicians' on-call weeks live in Outlook or a shared calendar; the bot reads the
calendar's iCalendar (ICS) export. :func:`calendar_on_call` is pure: bytes, the
municipality's decision-makers and a moment in, the people on call out. Fetching the
bytes is a :class:`RosterSource`'s job (``bot.roster_source`` for files and URLs).

An event puts a decision-maker on call when an attendee is theirs (``mailto:`` their
e-mail, their Matrix user id, or their full name as the attendee's name), or when
the summary names them (full name or Matrix user id). Recurring events are expanded
with ``recurring-ical-events`` (RRULE, RDATE, EXDATE, RECURRENCE-ID); all-day events
and times without a time zone are Stockholm time.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Protocol

import icalendar
import recurring_ical_events
from icalendar.cal import Component

from config import DecisionMaker
from handlers.context import LOCAL_TZ

__all__ = [
    "MalformedRoster",
    "RosterError",
    "RosterSource",
    "calendar_on_call",
    "parse_calendar",
]

#: What a broken calendar may raise from icalendar or recurring-ical-events.
_PARSE_ERRORS = (ValueError, KeyError, TypeError, AttributeError, IndexError, OverflowError)


class RosterError(Exception):
    """The on-call calendar cannot be used; the caller falls back to the config order."""


class MalformedRoster(RosterError):
    """The calendar is not valid iCalendar, or an event in it cannot be expanded.

    The message never quotes the calendar: it holds names and addresses.
    """

    def __init__(self, reason: str = "not a readable iCalendar file") -> None:
        super().__init__(f"malformed roster calendar: {reason}")


class RosterSource(Protocol):
    """Where a municipality's on-call calendar comes from."""

    async def calendar(self, municipality_id: str) -> bytes | None:
        """The calendar's ICS bytes, or None when the municipality has none (yet)."""
        ...


def parse_calendar(ics: bytes) -> icalendar.Calendar:
    """The parsed calendar; :class:`MalformedRoster` if it is not a readable one."""
    calendar, _ = _parse(ics)
    return calendar


def _parse(ics: bytes) -> tuple[icalendar.Calendar, recurring_ical_events.CalendarQuery]:
    try:
        calendar = icalendar.Calendar.from_ical(ics)
        if not isinstance(calendar, icalendar.Calendar) or calendar.name != "VCALENDAR":
            raise MalformedRoster("no VCALENDAR")
        return calendar, recurring_ical_events.of(calendar)  # checks every series' rules
    except MalformedRoster:
        raise
    except _PARSE_ERRORS as exc:
        raise MalformedRoster() from exc


def calendar_on_call(
    ics: bytes, decision_makers: Sequence[DecisionMaker], at: datetime
) -> list[DecisionMaker]:
    """The decision-makers the calendar puts on call at ``at``, first one first.

    Events covering ``at`` count, the earliest start first; within an event, people in
    the order the event lists them (attendees, then the summary). Nobody twice.
    """
    if at.tzinfo is None:
        raise ValueError("at must carry a time zone")
    _, query = _parse(ics)
    moment = at.astimezone(LOCAL_TZ)  # all-day and floating times are Stockholm's
    instant = at.astimezone(UTC)
    covering: list[tuple[datetime, int, Component]] = []
    try:
        events = query.at(moment)
        for index, event in enumerate(events):
            if str(event.get("STATUS", "")).upper() == "CANCELLED":
                continue
            starts, ends = _span(event)
            if starts <= instant < ends:
                covering.append((starts, index, event))
    except _PARSE_ERRORS as exc:
        raise MalformedRoster("an event cannot be expanded") from exc
    covering.sort(key=lambda item: (item[0], item[1]))
    found: dict[str, DecisionMaker] = {}
    for _, _, event in covering:
        for maker in _people_in(event, decision_makers):
            found.setdefault(maker.user_id, maker)
    return list(found.values())


def _instant(value: date | datetime) -> datetime:
    """A calendar time as an instant in UTC: dates and floating times are Stockholm's."""
    if not isinstance(value, datetime):
        value = datetime.combine(value, time(), LOCAL_TZ)
    elif value.tzinfo is None:
        value = value.replace(tzinfo=LOCAL_TZ)
    return value.astimezone(UTC)


def _span(event: Component) -> tuple[datetime, datetime]:
    """When an occurrence starts and ends (end exclusive), as UTC instants."""
    start = _value(event, "DTSTART")
    end = _value(event, "DTEND")
    duration = _value(event, "DURATION")
    if end is None and duration is not None:
        if not isinstance(start, datetime) and duration % timedelta(days=1):
            # A date with a duration in hours: from local midnight.
            return _instant(start), _instant(start) + duration
        end = start + duration
    elif end is None:
        # RFC 5545: an all-day event without an end is one day; a time covers no moment.
        end = start if isinstance(start, datetime) else start + timedelta(days=1)
    if isinstance(start, datetime) and not isinstance(end, datetime):
        end = datetime.combine(end, time(), start.tzinfo)
    return _instant(start), _instant(end)


def _value(event: Component, name: str) -> Any:
    """A property's Python value (date, datetime, timedelta), or None when absent."""
    prop: Any = event.get(name)
    if name == "DTSTART" and prop is None:
        raise KeyError(name)  # a broken event; the caller reports the calendar malformed
    return None if prop is None else prop.dt


def _people_in(event: Component, decision_makers: Sequence[DecisionMaker]) -> list[DecisionMaker]:
    """The decision-makers an event names, in the order it names them."""
    attendees = _attendees(event)
    summary = _fold(str(event.get("SUMMARY", "")))
    ranked: list[tuple[int, int, DecisionMaker]] = []
    for order, maker in enumerate(decision_makers):
        rank = _first_mention(maker, attendees, summary)
        if rank is not None:
            ranked.append((rank, order, maker))
    return [maker for _, _, maker in sorted(ranked, key=lambda item: item[:2])]


def _attendees(event: Component) -> list[tuple[str, str]]:
    """Each attendee who has not declined: (address, name), folded for comparison."""
    value = event.get("ATTENDEE")
    if value is None:
        return []
    attendees = value if isinstance(value, list) else [value]
    found = []
    for attendee in attendees:
        params = getattr(attendee, "params", {})
        if str(params.get("PARTSTAT", "")).upper() == "DECLINED":
            continue
        found.append((_fold(str(attendee)), _fold(str(params.get("CN", "")))))
    return found


def _first_mention(
    maker: DecisionMaker, attendees: list[tuple[str, str]], summary: str
) -> int | None:
    """Where the event first names ``maker``: attendees by position, then the summary."""
    email = _fold(maker.email or "")
    user = _user_pattern(maker.user_id)
    name = _fold(maker.name)
    for position, (address, common_name) in enumerate(attendees):
        mailto = address[7:].strip() if address.startswith("mailto:") else None
        if (
            (email and mailto == email)
            or user.search(address)
            or user.search(common_name)
            or (name and common_name == name)
        ):
            return position
    mentions = [m.start() for m in (user.search(summary), _name_pattern(name).search(summary)) if m]
    return len(attendees) + min(mentions) if mentions else None


def _fold(text: str) -> str:
    return " ".join(text.split()).casefold()


def _user_pattern(user_id: str) -> re.Pattern[str]:
    """A Matrix user id as written (``@dag:example.org``) or as a URI (``matrix:u/dag:...``)."""
    folded = _fold(user_id)
    uri = "matrix:u/" + folded.removeprefix("@")
    written = "|".join(re.escape(form) for form in (folded, uri))
    # Not part of a longer id: no word character, and no '.x', ':1' or '-x' continuing it.
    return re.compile(rf"(?<![\w@])(?:{written})(?![\w-]|[.:-]\w)")


def _name_pattern(name: str) -> re.Pattern[str]:
    if not name:
        return re.compile(r"(?!)")  # matches nothing
    words = r"\s+".join(re.escape(word) for word in name.split())
    return re.compile(rf"(?<!\w){words}(?!\w)")
