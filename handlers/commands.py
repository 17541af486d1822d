"""Command names, their aliases and the rooms they belong to.

Decorators only tag a method with its names; :func:`collect` wires the tagged
methods of an object into a table, so what a command is called and what it does
stay in one line each.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeVar


class RoomKind(StrEnum):
    DUTY = "duty"
    CASE = "case"
    INTAKE = "intake"
    #: A decision-maker's direct room with the bot (alerts, codes, ``!tittar``).
    DIRECT = "direct"
    OTHER = "other"


@dataclass(frozen=True, slots=True)
class ParsedCommand:
    name: str  # the word as typed, without "!"
    args: str


@dataclass(frozen=True, slots=True)
class CommandSpec:
    canonical: str
    names: tuple[str, ...]
    rooms: frozenset[RoomKind]
    #: Runs inside the dispatcher's unit of work (``ctx.unit``): the event's claim,
    #: the room lookup and the command's writes commit together, replies after.
    in_unit: bool = False


Handler = Callable[..., Awaitable[None]]
F = TypeVar("F", bound=Callable[..., Any])
_TAG = "_socialjour_command"


def command(
    canonical: str, *names: str, rooms: set[RoomKind], in_unit: bool = False
) -> Callable[[F], F]:
    """Tag a coroutine method as the handler of a command and its aliases.

    A command with ``in_unit`` does all its database work in ``ctx.unit``; any other
    opens its own sessions and calls ``ctx.claim`` in the transaction that does its
    main work (or leaves the claim to the dispatcher if it only reads).
    """

    def tag(fn: F) -> F:
        spec = CommandSpec(canonical, (canonical, *names), frozenset(rooms), in_unit)
        setattr(fn, _TAG, spec)
        return fn

    return tag


def fold(word: str) -> str:
    """Case- and accent-insensitive form, so ``!Ändra`` and ``!andra`` both work on a phone."""
    decomposed = unicodedata.normalize("NFKD", word.casefold())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def parse(body: str) -> ParsedCommand | None:
    """A command is a message whose first line starts with ``!`` and a word."""
    stripped = body.strip()
    if not stripped.startswith("!") or len(stripped) < 2:
        return None
    first, _, rest = stripped[1:].partition(" ")
    first = first.split("\n", 1)[0]
    if not first:
        return None
    return ParsedCommand(name=first, args=rest.strip())


@dataclass(frozen=True, slots=True)
class Registry:
    by_name: dict[str, tuple[CommandSpec, Handler]]

    def lookup(self, name: str) -> tuple[CommandSpec, Handler] | None:
        return self.by_name.get(fold(name))


def collect(*owners: object) -> Registry:
    """Wire every tagged method of ``owners`` by each of its folded names."""
    table: dict[str, tuple[CommandSpec, Handler]] = {}
    for owner in owners:
        for attr in dir(type(owner)):
            spec = getattr(getattr(type(owner), attr), _TAG, None)
            if not isinstance(spec, CommandSpec):
                continue
            for name in spec.names:
                key = fold(name)
                if key in table:
                    raise ValueError(f"command name {name!r} registered twice")
                table[key] = (spec, getattr(owner, attr))
    return Registry(table)
