"""Swedish working days, as the law on counting time limits sees them.

Lag (1930:173) om beräkning av lagstadgad tid, 2 §: when the last day of a
period falls on a Saturday, a Sunday or another public holiday (allmän helgdag),
midsommarafton, julafton or nyårsafton, the act may be done on the next working
day. The public holidays come from the maintained ``holidays`` library (lag
(1989:253) om allmänna helgdagar); the three eves follow from it: julafton and
nyårsafton are fixed dates, midsommarafton is the day before midsommardagen.
No list of dates is kept here by hand.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

import holidays

__all__ = [
    "SWEDEN",
    "extend_to_working_day",
    "is_working_day",
    "next_working_day",
    "next_working_morning",
    "non_working_reason",
]

#: The time zone every Swedish deadline and office hour is counted in.
SWEDEN = ZoneInfo("Europe/Stockholm")


@lru_cache(maxsize=64)
def _public_holidays(year: int) -> dict[date, str]:
    """Allmänna helgdagar of ``year`` (Sundays excluded: weekends are checked apart),
    with the three eves that lag (1930:173) 2 § adds, named in Swedish."""
    public = holidays.Sweden(years=year, include_sundays=False, language="sv")
    days: dict[date, str] = {day: str(name) for day, name in public.items()}
    # The eves of 2 § lag (1930:173), derived from the library's holidays.
    for day in public:
        if day.month == 6 and day.weekday() == 5:  # midsommardagen: a Saturday in June
            days.setdefault(day - timedelta(days=1), "Midsommarafton")
    days.setdefault(date(year, 12, 24), "Julafton")
    days.setdefault(date(year, 12, 31), "Nyårsafton")
    return days


def non_working_reason(day: date) -> str | None:
    """Why ``day`` is not a working day (``"lördag"``, ``"Juldagen"`` ...), or None."""
    if day.weekday() == 5:
        return "lördag"
    if day.weekday() == 6:
        return "söndag"
    return _public_holidays(day.year).get(day)


def is_working_day(day: date) -> bool:
    return non_working_reason(day) is None


def next_working_day(day: date) -> date:
    """The first working day strictly after ``day``."""
    candidate = day + timedelta(days=1)
    while not is_working_day(candidate):
        candidate += timedelta(days=1)
    return candidate


def extend_to_working_day(day: date) -> date:
    """``day`` itself when it is a working day, else the next one (lag 1930:173 2 §)."""
    return day if is_working_day(day) else next_working_day(day)


def next_working_morning(now: datetime, *, at: time = time(8, 0)) -> datetime:
    """The next working day's morning (``at``, Swedish time) after ``now``, in UTC terms
    of ``now``'s zone: today at ``at`` if today is a working day and it is still
    before ``at``, else the following working day at ``at``."""
    local = now.astimezone(SWEDEN)
    day = local.date()
    if not (is_working_day(day) and local.time() < at):
        day = next_working_day(day)
    return datetime.combine(day, at, tzinfo=SWEDEN).astimezone(now.tzinfo)
