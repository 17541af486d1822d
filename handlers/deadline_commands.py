"""The deadline commands: ``!underställt``, ``!ansökt``, ``!anmält`` mark an act done;
``!rättens beslut DATUM fastställt|upphävt`` records the court's decision.

In the case room they concern that case (its participants may use them). In an
intake room (its municipality's intake members) they concern one of that
municipality's cases: named by its number (``!underställt SJ-2026-0042``), or the one
a reply points at (a deadline reminder, a handover), or, for an act, the only case
with that act open. Nothing is ever marked on a guess between several cases, and a
case of another municipality is never found from an intake room.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from config import Settings
from handlers import deadlines, i18n
from handlers.commands import RoomKind, command, fold
from handlers.context import Clock, Ctx, local_time
from handlers.deadline_rules import start_day
from handlers.errors import HandlerError
from handlers.messenger import Messenger
from handlers.workdays import SWEDEN
from storage import deadlines as store
from storage import handover, repo
from storage.models import Case

__all__ = ["DeadlineCommands", "Refused", "act_command", "parse_court"]

log = logging.getLogger(__name__)

#: Each act's command, Swedish and English (CONTRACT.md).
ACT_COMMANDS: Mapping[str, tuple[str, str]] = {
    "underställt": ("underställt", "submitted"),
    "ansökt": ("ansökt", "applied"),
    "anmält": ("anmält", "reported"),
}
CASE_NUMBER = re.compile(r"[A-Za-z0-9]{1,16}-[0-9]{4}-[0-9]{4,}")
_UPHELD = {fold(word) for word in ("fastställt", "fastställd", "fastställs", "upheld")}
_REVOKED = {fold(word) for word in ("upphävt", "upphävd", "upphävs", "revoked")}
_TODAY = {fold(word) for word in ("idag", "today")}
_YESTERDAY = {fold(word) for word in ("igår", "yesterday")}


def act_command(act: str, lang: str) -> str:
    """The command that marks ``act`` in ``lang`` (``anmält`` / ``reported``)."""
    swedish, english = ACT_COMMANDS[act]
    return english if lang == "en" else swedish


class Refused(HandlerError):
    """A polite answer that changes nothing: the message key says why."""

    def __init__(self, key: str, **params: object) -> None:
        super().__init__(**params)
        self.key = key


def parse_court(args: str, today: date) -> tuple[date, bool, str | None]:
    """``[beslut] DATUM fastställt|upphävt [ÄRENDE]`` as (day, upheld, case number).

    Words in any order; the date as YYYY-MM-DD, ``idag``/``today`` or
    ``igår``/``yesterday``. Raises :class:`Refused` saying what to write instead.
    """
    words = args.split()
    if words and fold(words[0]) in ("beslut", "beslutet"):
        words = words[1:]
    day: date | None = None
    upheld: bool | None = None
    number: str | None = None
    for word in words:
        folded = fold(word)
        if folded in _UPHELD or folded in _REVOKED:
            upheld = folded in _UPHELD
        elif folded in _TODAY:
            day = today
        elif folded in _YESTERDAY:
            day = today - timedelta(days=1)
        elif CASE_NUMBER.fullmatch(word):
            number = word.upper()
        else:
            try:
                day = date.fromisoformat(word)
            except ValueError:
                raise Refused("court.bad_date", value=word[:40]) from None
    if day is None or upheld is None:
        raise Refused("court.usage")
    return day, upheld, number


@dataclass
class DeadlineCommands:
    settings: Settings
    sessions: async_sessionmaker[AsyncSession]
    messenger: Messenger
    clock: Clock
    #: The intake rooms the bot knows: room id -> municipality id (filled at start-up).
    intake_rooms: Callable[[], Mapping[str, str]] = dict
    #: Read-only sessions for ``!status`` (no write lock on SQLite).
    readers: async_sessionmaker[AsyncSession] | None = None

    @property
    def lang(self) -> str:
        return self.settings.duty.language

    async def status_lines(self, case: Case) -> list[i18n.Message]:
        """The deadlines part of ``!status`` in the case room."""
        async with (self.readers or self.sessions)() as session:
            return await deadlines.status_lines(
                session, case=case, settings=self.settings, lang=self.lang
            )

    # -- marking an act ------------------------------------------------------------------

    @command("underställt", "submitted", rooms={RoomKind.CASE, RoomKind.INTAKE})
    async def submitted(self, ctx: Ctx) -> None:
        await self._mark(ctx, "underställt")

    @command("ansökt", "applied", rooms={RoomKind.CASE, RoomKind.INTAKE})
    async def applied(self, ctx: Ctx) -> None:
        await self._mark(ctx, "ansökt")

    @command("anmält", "reported", rooms={RoomKind.CASE, RoomKind.INTAKE})
    async def reported(self, ctx: Ctx) -> None:
        await self._mark(ctx, "anmält")

    async def _mark(self, ctx: Ctx, act: str) -> None:
        now = self.clock()
        word = act_command(act, self.lang)
        async with self.sessions() as session, session.begin():
            case = await self._case_for_act(ctx, session, act, word)
            marked = await deadlines.mark_act(
                session, case=case, act=act, by=ctx.msg.sender, via=act, now=now
            )
            if marked.done is None and marked.already is None:
                raise Refused("deadline.no_such_act", number=case.number, act=word)
            if marked.done is not None:
                await ctx.claim(session)
        if marked.already is not None:
            row = marked.already
            await ctx.reply(
                "deadline.already_done",
                label=deadlines.label_of(self.settings, case, row, self.lang),
                number=case.number,
                when=local_time(row.done_at) if row.done_at else "",
                user=row.done_by or "",
            )
            return
        assert marked.done is not None
        log.info("case %s: deadline %s marked done", case.number, marked.done.name)
        message = i18n.render(
            self.lang,
            "deadline.done",
            label=deadlines.label_of(self.settings, case, marked.done, self.lang),
            number=case.number,
            user=ctx.msg.sender,
        )
        await self._tell_everywhere(ctx, case, message, actor=marked.done.actor)

    async def _case_for_act(self, ctx: Ctx, session: AsyncSession, act: str, word: str) -> Case:
        if ctx.kind is RoomKind.CASE:
            return self._case_room_case(ctx)
        municipality_id = self._municipality(ctx)
        case = await self._named_case(ctx, session, municipality_id, ctx.args.split())
        if case is not None:
            return case
        open_ = await store.open_with_act(session, act=act, municipality_id=municipality_id)
        numbers = list(dict.fromkeys(found.number for _, found in open_))
        if not numbers:
            raise Refused("deadline.nothing_open", act=word)
        if len(numbers) > 1:
            raise Refused(
                "deadline.which_case", act=word, example=numbers[0], numbers=", ".join(numbers)
            )
        return open_[0][1]

    def _case_room_case(self, ctx: Ctx) -> Case:
        if ctx.case is None:
            raise Refused("error.case_not_found")
        return ctx.case

    def _municipality(self, ctx: Ctx) -> str:
        municipality_id = self.intake_rooms().get(ctx.msg.room_id)
        if municipality_id is None:  # the dispatcher found an intake room: cannot happen
            raise Refused("error.not_allowed")
        return municipality_id

    async def _named_case(
        self, ctx: Ctx, session: AsyncSession, municipality_id: str, words: list[str]
    ) -> Case | None:
        """The case an intake-room command names by number or by reply; None if neither.
        A number of another municipality's case is answered as unknown."""
        number = next((w.upper() for w in words if CASE_NUMBER.fullmatch(w)), None)
        if number is not None:
            case = await repo.get_case_by_number(session, number=number)
            if case is None or case.municipality_id != municipality_id:
                raise Refused("deadline.unknown_case", number=number)
            return case
        target = ctx.msg.in_reply_to
        if target is None:
            return None
        case_id = await self._replied_case(session, ctx.msg.room_id, target)
        if case_id is None:
            return None
        case = await repo.get_case(session, case_id=case_id)
        return case if case is not None and case.municipality_id == municipality_id else None

    async def _replied_case(self, session: AsyncSession, room_id: str, event_id: str) -> int | None:
        """The case of the message replied to: a deadline message, or a handover."""
        deadline = await store.by_event(session, event_id=event_id)
        if deadline is not None:
            return deadline.case_id
        found = await handover.find_by_event(session, room_id=room_id, event_id=event_id)
        return found.case_id if found is not None else None

    # -- the court's decision ------------------------------------------------------------

    @command("rättens", "court", rooms={RoomKind.CASE, RoomKind.INTAKE})
    async def court(self, ctx: Ctx) -> None:
        now = self.clock()
        day, upheld, number = parse_court(ctx.args, start_day(now))
        if day > start_day(now):
            raise Refused("court.future", day=deadlines.day_text(day, self.lang))
        async with self.sessions() as session, session.begin():
            if ctx.kind is RoomKind.CASE:
                case = self._case_room_case(ctx)
            else:
                named = number.split() if number else []
                found = await self._named_case(ctx, session, self._municipality(ctx), named)
                if found is None:
                    raise Refused("court.usage")
                case = found
            rows = await store.for_case(session, case_id=case.id)
            if not rows:
                raise Refused("court.no_deadlines", number=case.number)
            decided = min(
                (start_day(r.started_at) for r in rows if r.trigger == "decision" and r.started_at),
                default=None,
            )
            if decided is not None and day < decided:
                raise Refused(
                    "court.before_decision",
                    day=deadlines.day_text(day, self.lang),
                    decided=deadlines.day_text(decided, self.lang),
                )
            result = await deadlines.court_decision(
                session,
                case=case,
                decided_on=day,
                upheld=upheld,
                # The clocks count from the day of the court's decision.
                at=datetime.combine(day, time(0), tzinfo=SWEDEN),
                by=ctx.msg.sender,
                now=now,
                settings=self.settings,
            )
            if result.existing is not None:
                existing = result.existing
                raise Refused(
                    "court.already",
                    number=case.number,
                    day=deadlines.day_text(existing.decided_on, self.lang),
                    outcome=i18n.text(self.lang, f"court.outcome.{existing.outcome}"),
                    user=existing.recorded_by,
                )
            for row in result.started:  # this answer announces them, in both rooms
                await store.note(session, deadline_id=row.id, announced_at=now)
            await ctx.claim(session)
        log.info("case %s: the court's decision recorded", case.number)
        await self._tell_everywhere(ctx, case, self._court_message(case, day, upheld, result, ctx))

    def _court_message(
        self,
        case: Case,
        day: date,
        upheld: bool,
        result: deadlines.CourtResult,
        ctx: Ctx,
    ) -> i18n.Message:
        lang = self.lang
        lines = [
            i18n.render(
                lang,
                "court.recorded",
                day=deadlines.day_text(day, lang),
                number=case.number,
                outcome=i18n.text(lang, f"court.outcome.{'upheld' if upheld else 'revoked'}"),
                user=ctx.msg.sender,
            )
        ]
        if result.submitted:
            labels = deadlines.labels(self.settings, case, result.submitted, lang)
            lines.append(i18n.render(lang, "court.submitted", labels=labels))
        for row in result.started:
            label = deadlines.label_of(self.settings, case, row, lang)
            if row.due_on is None:
                lines.append(i18n.render(lang, "court.started_no_meeting", label=label))
            else:
                lines.append(deadlines.due_message(lang, "court.started", row, label=label))
        if result.stopped:
            labels = deadlines.labels(self.settings, case, result.stopped, lang)
            lines.append(i18n.render(lang, "court.stopped", labels=labels))
        return i18n.join(lines)

    # -- telling ---------------------------------------------------------------------------

    async def _tell_everywhere(
        self, ctx: Ctx, case: Case, message: i18n.Message, *, actor: str = "intake"
    ) -> None:
        """The answer in the room the command came from, and the same news in the other
        room that follows the case: the case room, or the room of whoever acts."""
        event = ctx.msg.event_id
        await self.messenger.send(
            ctx.msg.room_id,
            i18n.Message(message.text, message.html, reply_to=event),
            key=f"{event}:deadline",
        )
        other = case.room_id if ctx.kind is RoomKind.INTAKE else self._actor_room(case, actor)
        if other is not None and other != ctx.msg.room_id:
            try:
                await self.messenger.send(other, message, key=f"{event}:deadline:{other}")
            except Exception as exc:  # the answer is out; the other room is news only
                log.warning(
                    "case %s: could not tell the other room (%s)", case.number, type(exc).__name__
                )

    def _actor_room(self, case: Case, actor: str) -> str | None:
        if actor != "intake" or case.municipality_id is None:
            return None
        for room_id, municipality_id in self.intake_rooms().items():
            if municipality_id == case.municipality_id:
                return room_id
        return None
