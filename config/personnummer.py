"""Swedish personal identity numbers (personnummer and samordningsnummer).

One implementation for every layer that meets them (a report's answer, a
decision-maker's configured number, an e-ID's claim); it lives in ``config``
because that package imports nothing else of the project.
"""

from __future__ import annotations

import re
from datetime import date

_FORM = re.compile(r"([0-9]{6}|[0-9]{8})([-+]?)([0-9]{4})")
_DASHES = str.maketrans({"–": "-", "—": "-", "‐": "-", "‑": "-", "−": "-"})


class PersonnummerError(ValueError):
    """Why a text is not a personal number: ``reason`` is format, date, checksum or future."""

    def __init__(self, reason: str, **params: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.params = params


def parse(text: str, *, today: date) -> str:
    """``YYYYMMDD-NNNN`` from 10 or 12 digits, with or without separator.

    Ten digits get the century that makes the person 0-99 years old at ``today``,
    or 100 or older with a ``+`` separator. A samordningsnummer keeps its day + 60.
    The date must exist and not lie in the future; the check digit must match.
    """
    compact = re.sub(r"\s+", "", text.translate(_DASHES))
    match = _FORM.fullmatch(compact)
    if match is None or (len(match[1]) == 8 and match[2] == "+"):
        raise PersonnummerError("format")
    birth, separator, serial = match.groups()
    month, written_day = int(birth[-4:-2]), int(birth[-2:])
    day = written_day - 60 if written_day > 60 else written_day
    if len(birth) == 8:
        year = int(birth[:4])
    else:
        year = today.year - (today.year - int(birth[:2])) % 100
        if (year, month, day) > (today.year, today.month, today.day):
            year -= 100
        if separator == "+":
            year -= 100
    try:
        born = date(year, month, day)
    except ValueError:
        raise PersonnummerError("date", date=f"{year:04d}-{month:02d}-{written_day:02d}") from None
    if not luhn_valid(birth[-6:] + serial):
        raise PersonnummerError("checksum")
    if born > today:
        raise PersonnummerError("future", date=born.isoformat())
    return f"{year:04d}{month:02d}{written_day:02d}-{serial}"


def is_samordningsnummer(normalised: str) -> bool:
    """True for a coordination number (day of birth + 60) in ``YYYYMMDD-NNNN`` form."""
    return int(normalised[6:8]) > 60


def birth_date(normalised: str) -> date:
    """The date of birth in a normalised number (the real day for a samordningsnummer)."""
    day = int(normalised[6:8])
    return date(int(normalised[:4]), int(normalised[4:6]), day - 60 if day > 60 else day)


def age(normalised: str, *, on: date) -> int:
    """Whole years of age on ``on``: the birthday itself counts (ages at the start of it).

    The year of birth in a normalised number is already the right century (a ``+``
    separator made it 100 or more years back when it was parsed), and a
    samordningsnummer's day + 60 is taken off. Someone born on 29 February turns a
    year older on 1 March in a common year (a plain date comparison); whether Swedish
    law counts 28 February instead is not settled here.
    """
    born = birth_date(normalised)
    return on.year - born.year - ((on.month, on.day) < (born.month, born.day))


def luhn_valid(ten_digits: str) -> bool:
    total = 0
    for position, character in enumerate(ten_digits):
        product = int(character) * (2 if position % 2 == 0 else 1)
        total += product - 9 if product > 9 else product
    return total % 10 == 0
