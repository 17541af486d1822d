"""Short human durations (``30s``, ``5m``, ``12h``, ``2d``, ``1h30m``) for the config file.

Admins type these in escalation policies and link lifetimes, so the parser is strict
and its messages say what to write instead of what went wrong inside.
"""

from __future__ import annotations

import re
from datetime import timedelta

__all__ = ["format_duration", "parse_duration"]

_UNIT_SECONDS: dict[str, int] = {"d": 86_400, "h": 3_600, "m": 60, "s": 1}
_UNIT_ORDER = "dhms"
_EXAMPLES = "30s, 5m, 12h or 2d"
_TOKEN = re.compile(r"([0-9]+)([^0-9]*)")


def parse_duration(text: str) -> timedelta:
    """Parse ``30s``, ``5m``, ``12h``, ``2d`` or a combination such as ``1h30m``.

    Units go from largest to smallest, each at most once, so a value reads one way only.
    Raises ``ValueError`` for anything else, including zero and negative durations.
    """
    if not isinstance(text, str):
        raise ValueError(f"expected a duration like {_EXAMPLES}, got {text!r}")
    stripped = text.strip()
    if not stripped:
        raise ValueError(f"expected a duration like {_EXAMPLES}, got an empty string")
    if stripped.startswith("-"):
        raise ValueError(f"a duration cannot be negative, got {text!r}")
    total_seconds = 0
    previous_rank = -1
    position = 0
    while position < len(stripped):
        match = _TOKEN.match(stripped, position)
        if match is None:
            raise ValueError(f"expected a duration like {_EXAMPLES}, got {text!r}")
        number, unit = match.groups()
        if unit not in _UNIT_SECONDS:
            raise ValueError(_unit_problem(text, number, unit))
        rank = _UNIT_ORDER.index(unit)
        if rank <= previous_rank:
            raise ValueError(
                f"write units from largest to smallest, each once (like 1h30m), got {text!r}"
            )
        previous_rank = rank
        total_seconds += int(number) * _UNIT_SECONDS[unit]
        position = match.end()
    if total_seconds == 0:
        raise ValueError(f"a duration must be longer than zero, got {text!r}")
    try:
        return timedelta(seconds=total_seconds)
    except OverflowError:
        raise ValueError(f"duration {text!r} is too long") from None


def _unit_problem(text: str, number: str, unit: str) -> str:
    """Explain a bad unit as precisely as the input allows."""
    if unit == "":
        return f"missing a unit after {number} in {text!r}; use s, m, h or d (like {number}m)"
    if unit.isalpha():
        return f"unknown unit {unit!r} in {text!r}; use s, m, h or d"
    return f"expected a duration like {_EXAMPLES}, got {text!r}"


def format_duration(duration: timedelta) -> str:
    """Return the shortest text that ``parse_duration`` reads back as ``duration``.

    Ties go to the form that starts with the larger unit (``90m`` rather than
    ``5400s``). Zero gives ``0s`` for display although the parser refuses it.
    """
    if duration < timedelta(0):
        raise ValueError(f"cannot format a negative duration: {duration}")
    if duration % timedelta(seconds=1):
        raise ValueError(f"cannot format a duration with fractions of a second: {duration}")
    seconds = duration // timedelta(seconds=1)
    if seconds == 0:
        return "0s"
    candidates = [_compose(seconds, _UNIT_ORDER[start:]) for start in range(len(_UNIT_ORDER))]
    return min((text for text in candidates if text), key=len)


def _compose(seconds: int, units: str) -> str:
    """Spell ``seconds`` with ``units`` only, largest first; empty if they cannot."""
    parts: list[str] = []
    for unit in units:
        count, seconds = divmod(seconds, _UNIT_SECONDS[unit])
        if count:
            parts.append(f"{count}{unit}")
    return "" if seconds else "".join(parts)
