"""Counting legal deadlines as the law counts them: pure functions, no I/O.

- The day a clock starts is not counted; a period of weeks ends on the same weekday
  (lag (1930:173) om beräkning av lagstadgad tid, 1 §), a period of days that many
  calendar days later ("senast dagen efter beslutet" is one day).
- Where the last day is a Saturday, Sunday, public holiday, midsommarafton, julafton
  or nyårsafton, the act may be done the next working day (2 § of the same law).
  Whether that applies to every deadline here is disputed (LVU 7 §), so the bot
  reminds and alarms on the *unextended* day and shows the moved one as the outer
  limit ("yttersta gräns"). A meeting date is a date, never moved.
- Assumption: a deadline ends at 23:59:59 Swedish time (Europe/Stockholm) of its
  last day; the law says "within" a period of days and names no hour. Reminders go
  out at 08:00 Swedish time.

Days are Swedish calendar days of ``handlers.workdays.SWEDEN``; instants are aware
datetimes. :mod:`handlers.workdays` knows which days are working days.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

import icalendar
import recurring_ical_events

from config.deadlines import Rule
from handlers.workdays import SWEDEN, extend_to_working_day, is_working_day

__all__ = [
    "MORNING",
    "Due",
    "count_due",
    "deadline_end",
    "meeting_dates",
    "next_meeting",
    "reminder_moments",
    "start_day",
]

#: When a reminder goes out on its day, Swedish time.
MORNING = time(8, 0)
#: The last moment of a last day (see the module's assumption).
_END_OF_DAY = time(23, 59, 59)
#: How far ahead a meeting calendar is read for the next meeting.
MEETING_HORIZON = timedelta(days=400)
_PARSE_ERRORS = (ValueError, KeyError, TypeError, AttributeError, IndexError, OverflowError)


@dataclass(frozen=True, slots=True)
class Due:
    """The last day as the law counts it, and that day moved to a working day."""

    due_on: date
    outer_limit: date

    @property
    def extended(self) -> bool:
        return self.outer_limit != self.due_on


def start_day(at: datetime) -> date:
    """The Swedish calendar day of the moment a clock starts."""
    if at.tzinfo is None:
        raise ValueError("a clock starts at an aware moment")
    return at.astimezone(SWEDEN).date()


def deadline_end(day: date) -> datetime:
    """The last moment of ``day`` in Swedish time (23:59:59), as an aware datetime."""
    return datetime.combine(day, _END_OF_DAY, tzinfo=SWEDEN)


def next_meeting(meetings: Iterable[date], after: date) -> date | None:
    """The first meeting day after ``after`` (a meeting on the start day itself is too
    soon to report at), or None when none is known."""
    later = [day for day in meetings if day > after]
    return min(later) if later else None


def count_due(rule: Rule, started_at: datetime, meetings: Iterable[date] = ()) -> Due | None:
    """The last day of a clock started at ``started_at``; None for a next-meeting rule
    without a known meeting after the start day."""
    first = start_day(started_at)
    if rule.kind == "next_meeting":
        meeting = next_meeting(meetings, first)
        return None if meeting is None else Due(meeting, meeting)
    period = timedelta(weeks=rule.count) if rule.kind == "weeks" else timedelta(days=rule.count)
    last = first + period
    return Due(last, extend_to_working_day(last))


def _previous_working_day(day: date) -> date:
    candidate = day - timedelta(days=1)
    while not is_working_day(candidate):
        candidate -= timedelta(days=1)
    return candidate


def reminder_moments(
    due_on: date, *, started_at: datetime, days_before: Sequence[int]
) -> list[datetime]:
    """When to remind of a deadline ending on ``due_on``: 08:00 Swedish time on each day
    ``days_before`` it (0: the last day itself), earliest first.

    A reminder *before* the last day that falls on a day off moves to the working day
    before it, where someone reads it (so "2 days before" a Monday is the Friday, and
    "1 day before" too: one reminder). The last day's own reminder stays on it, day off
    or not: the unextended day is the one to meet. Moments not after the start are
    left out (the clock was not running yet).
    """
    moments: set[datetime] = set()
    for before in days_before:
        day = due_on - timedelta(days=before)
        if before > 0 and not is_working_day(day):
            earlier = _previous_working_day(day)
            if _morning(earlier) > started_at:
                day = earlier
        moment = _morning(day)
        if started_at < moment <= deadline_end(due_on):
            moments.add(moment)
    return sorted(moments)


def _morning(day: date) -> datetime:
    return datetime.combine(day, MORNING, tzinfo=SWEDEN)


def meeting_dates(ics: bytes, *, after: date, horizon: timedelta = MEETING_HORIZON) -> list[date]:
    """The Swedish days of the meetings in an iCalendar file, after ``after`` and within
    ``horizon``, sorted; recurring meetings expanded, cancelled ones left out. A file
    that cannot be read gives ValueError (the message never quotes it)."""
    try:
        calendar = icalendar.Calendar.from_ical(ics)
        if not isinstance(calendar, icalendar.Calendar) or calendar.name != "VCALENDAR":
            raise ValueError("not an iCalendar file (no VCALENDAR)")
        start = after + timedelta(days=1)
        events = recurring_ical_events.of(calendar).between(start, after + horizon)
        days: set[date] = set()
        for event in events:
            if str(event.get("STATUS", "")).upper() == "CANCELLED":
                continue
            value = event.get("DTSTART")
            if value is None:
                continue
            moment = value.dt
            if isinstance(moment, datetime):
                local = moment.astimezone(SWEDEN) if moment.tzinfo else moment
                day = local.date()
            else:
                day = moment
            if day > after:
                days.add(day)
    except _PARSE_ERRORS as exc:
        raise ValueError("the meeting calendar is not a readable iCalendar file") from exc
    return sorted(days)
