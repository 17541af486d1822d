"""Deadline clocks as data: the ``[[deadlines]]`` of a form template, the reminder policy
(``[deadlines] remind``) and the committee's meeting dates (``meetings``).

A template says which legal deadlines its decision sets off, each with its statute,
what starts the clock, how the law counts it, who acts, which command marks it done
and what is lost if it is missed. The code counts; the law stays in the templates.
Like the rest of ``config``, nothing here imports another Socialjour package.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Literal

from config._reader import Reader, describe, item_place, key_place

__all__ = [
    "ACTORS",
    "ACTS",
    "DEADLINE_KEYS",
    "DEFAULT_REMIND",
    "RULE_EXAMPLES",
    "TRIGGERS",
    "Act",
    "Actor",
    "DeadlineSettings",
    "DeadlineSpec",
    "Rule",
    "Trigger",
    "parse_remind",
    "parse_rule",
    "read_deadline_settings",
    "read_deadline_specs",
    "read_meetings",
]

Trigger = Literal["decision", "execution", "court_decision"]
Act = Literal["underställt", "ansökt", "anmält"]
Actor = Literal["intake", "duty"]

#: What starts a clock: the signature (the decision's moment), the execution recorded
#: with ``!verkställt``, or the court's decision that the custody continues
#: (``!rättens beslut DATUM fastställt``).
TRIGGERS: tuple[Trigger, ...] = ("decision", "execution", "court_decision")
#: The acts that end a clock, each marked by the command of the same name.
ACTS: tuple[Act, ...] = ("underställt", "ansökt", "anmält")
#: Who is reminded: the home municipality's intake room, or the duty room.
ACTORS: tuple[Actor, ...] = ("intake", "duty")
DEADLINE_KEYS = (
    "name",
    "label",
    "label_en",
    "legal_basis",
    "trigger",
    "rule",
    "actor",
    "act",
    "lost",
    "lost_en",
    "ends_if_revoked",
)
RULE_EXAMPLES = "1w, 4w, 2d, next_day or next_meeting"
#: Reminders the morning (08:00 Swedish time) two days before, the day before and the
#: day itself: ``[deadlines] remind = ["2d", "1d", "morning"]``.
DEFAULT_REMIND: tuple[int, ...] = (2, 1, 0)
MAX_WEEKS = 52
MAX_DAYS = 365
MAX_REMIND_DAYS = 30

_NAME = re.compile(r"[a-z][a-z0-9_]*")
_COUNTED = re.compile(r"([0-9]{1,3})([dw])")


@dataclass(frozen=True, slots=True)
class Rule:
    """How a period is counted from the day its clock starts (that day not counted).

    ``weeks``: ends on the same weekday ``count`` weeks later; ``days``: ``count``
    calendar days later (``next_day`` is one); ``next_meeting``: the committee's first
    meeting after the start day.
    """

    kind: Literal["days", "weeks", "next_meeting"]
    count: int = 0


def parse_rule(text: str) -> Rule:
    """``"1w"``, ``"4w"``, ``"2d"``, ``"next_day"`` or ``"next_meeting"``; ValueError else."""
    value = text.strip() if isinstance(text, str) else ""
    if value == "next_day":
        return Rule("days", 1)
    if value == "next_meeting":
        return Rule("next_meeting")
    match = _COUNTED.fullmatch(value)
    if match is None:
        raise ValueError(f"expected a rule like {RULE_EXAMPLES}, got {text!r}")
    count, unit = int(match.group(1)), match.group(2)
    limit = MAX_WEEKS if unit == "w" else MAX_DAYS
    if not 1 <= count <= limit:
        raise ValueError(
            f"expected 1 to {limit} {'weeks' if unit == 'w' else 'days'}, got {text!r}"
        )
    return Rule("weeks" if unit == "w" else "days", count)


def parse_remind(text: str) -> int:
    """One reminder of the policy as days before the last day: ``"2d"`` is 2,
    ``"morning"`` (the last day's own morning) is 0; ValueError else."""
    value = text.strip() if isinstance(text, str) else ""
    if value == "morning":
        return 0
    match = _COUNTED.fullmatch(value)
    if match is None or match.group(2) != "d" or not 1 <= int(match.group(1)) <= MAX_REMIND_DAYS:
        raise ValueError(
            f'expected "morning" or whole days before, 1d to {MAX_REMIND_DAYS}d, got {text!r}'
        )
    return int(match.group(1))


@dataclass(frozen=True, slots=True)
class DeadlineSpec:
    """One legal deadline a template's decision sets off."""

    name: str
    label: str
    legal_basis: str
    trigger: Trigger
    rule: str
    actor: Actor
    act: Act
    lost: str
    label_en: str = ""
    lost_en: str = ""
    #: The clock stops (no longer matters) when the court revokes the custody.
    ends_if_revoked: bool = False

    def label_in(self, language: str) -> str:
        return self.label_en if language == "en" and self.label_en else self.label

    def lost_in(self, language: str) -> str:
        return self.lost_en if language == "en" and self.lost_en else self.lost


@dataclass(frozen=True, slots=True)
class DeadlineSettings:
    """``[deadlines]``: when the intake room is reminded of a running clock."""

    #: Days before the last day, each reminded at 08:00 Swedish time; 0 is the day itself.
    remind_days_before: tuple[int, ...] = DEFAULT_REMIND


# -- reading ----------------------------------------------------------------------------


def read_deadline_specs(r: Reader, root: dict[str, Any]) -> tuple[DeadlineSpec, ...]:
    """A template's ``[[deadlines]]`` tables; every problem is reported with its key."""
    if "deadlines" not in root:
        return ()
    specs: list[DeadlineSpec] = []
    first_place: dict[str, str] = {}
    for place, raw in r.tables("deadlines", root["deadlines"], "[[deadlines]]"):
        raw_name = raw.get("name") if isinstance(raw, dict) else None
        if isinstance(raw_name, str) and _NAME.fullmatch(raw_name.strip()):
            place = f"{place} ({raw_name.strip()})"
        table = r.table(place, raw, DEADLINE_KEYS)
        if table is None:
            continue
        spec = _spec(r, table, place)
        if spec.name in first_place:
            r.report(
                key_place(place, "name"),
                f"duplicate deadline name {spec.name!r} (also {first_place[spec.name]})",
            )
        elif spec.name:
            first_place[spec.name] = place
        specs.append(spec)
    return tuple(specs)


def _spec(r: Reader, table: dict[str, Any], place: str) -> DeadlineSpec:
    name = _string(r, table, place, "name")
    if name and _NAME.fullmatch(name) is None:
        r.report(
            key_place(place, "name"),
            f"expected lowercase letters a-z, digits and _, like 'understallning', got {name!r}",
        )
    rule = _string(r, table, place, "rule")
    if rule:
        try:
            parse_rule(rule)
        except ValueError as error:
            r.report(key_place(place, "rule"), str(error))
    ends_if_revoked = table.get("ends_if_revoked", False)
    if not isinstance(ends_if_revoked, bool):
        r.report(
            key_place(place, "ends_if_revoked"),
            f"expected true or false, got {describe(ends_if_revoked)}",
        )
        ends_if_revoked = False
    return DeadlineSpec(
        name=name,
        label=_string(r, table, place, "label"),
        legal_basis=_string(r, table, place, "legal_basis"),
        trigger=r.choice(table, place, "trigger", TRIGGERS, "decision", required=True),
        rule=rule,
        actor=r.choice(table, place, "actor", ACTORS, "intake", required=True),
        act=r.choice(table, place, "act", ACTS, "underställt", required=True),
        lost=_string(r, table, place, "lost"),
        label_en=_string(r, table, place, "label_en", required=False),
        lost_en=_string(r, table, place, "lost_en", required=False),
        ends_if_revoked=ends_if_revoked,
    )


def _string(
    r: Reader, table: dict[str, Any], place: str, key: str, *, required: bool = True
) -> str:
    """A plain string key of a template (no secret references), trimmed."""
    at = key_place(place, key)
    if key not in table:
        if required:
            r.report(at, "missing required key")
        return ""
    value = table[key]
    if not isinstance(value, str):
        r.report(at, f"expected a string, got {describe(value)}")
        return ""
    value = " ".join(value.split())
    if not value:
        r.report(at, "must not be empty")
    return value


def read_deadline_settings(r: Reader, root: dict[str, Any]) -> DeadlineSettings:
    """``[deadlines] remind = ["2d", "1d", "morning"]``."""
    table = r.section(root, "deadlines", ("remind",), required=False)
    if not table or "remind" not in table:
        return DeadlineSettings()
    place = key_place("deadlines", "remind")
    raw = table["remind"]
    if not isinstance(raw, list):
        r.report(place, f'expected a list like ["2d", "1d", "morning"], got {describe(raw)}')
        return DeadlineSettings()
    days: list[int] = []
    for index, item in enumerate(raw):
        try:
            day = parse_remind(item)
        except ValueError as error:
            r.report(item_place(place, index), str(error))
            continue
        if day not in days:
            days.append(day)
    return DeadlineSettings(remind_days_before=tuple(sorted(days, reverse=True)))


def read_meetings(r: Reader, table: dict[str, Any], place: str) -> tuple[date, ...]:
    """``meetings = [2026-12-10, ...]``: the committee's meeting days, sorted."""
    if "meetings" not in table:
        return ()
    at = key_place(place, "meetings")
    raw = table["meetings"]
    if not isinstance(raw, list):
        r.report(at, f"expected a list of dates like [2026-12-10], got {describe(raw)}")
        return ()
    days: set[date] = set()
    for index, item in enumerate(raw):
        value: Any = item
        if isinstance(value, str):
            try:
                value = date.fromisoformat(value.strip())
            except ValueError:
                pass
        if isinstance(value, date) and not isinstance(value, datetime):
            days.add(value)
        else:
            r.report(
                item_place(at, index), f"expected a date like 2026-12-10, got {describe(item)}"
            )
    return tuple(sorted(days))
