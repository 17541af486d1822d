"""Where every incoming message is routed, authorised and answered.

This is the one place where domain errors become replies: handlers raise, the
dispatcher speaks. A failing handler never escapes into the sync loop.

Each event is one unit of work. On the hot path (an answer, a vote, a report
command) the event's claim, the room lookup, the authorisation, the report's step
and what will be asked next are one write transaction; replies go out after it
commits. Other commands open their own transactions and claim the event in the one
that does their work (``ctx.claim``); whatever is left unclaimed is claimed by the
caller afterwards (see :mod:`bot.matrix`). ``handle`` returns whether the event was
claimed.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from config import Settings
from handlers import i18n
from handlers.audit import AuditCommands
from handlers.cases import CaseCommands
from handlers.commands import (
    CommandSpec,
    Handler,
    ParsedCommand,
    RoomKind,
    collect,
    command,
    parse,
)
from handlers.context import Clock, Ctx, Unit, unit_of_work, utcnow
from handlers.deadline_commands import DeadlineCommands
from handlers.errors import (
    AlreadyHandled,
    HandlerError,
    IllegalTransition,
    NotAllowed,
    UnknownCommand,
    WrongRoom,
)
from handlers.execution import ExecutionCommands
from handlers.fields import strip_invisible
from handlers.handover import HandoverCommands
from handlers.messenger import IncomingMessage, IncomingRedaction, IncomingVote, Messenger
from handlers.oncall import OnCallCommands
from handlers.reports import ReportCommands
from storage import decisions as decisions_repo
from storage import repo
from storage.db import loggable
from storage.models import Case

if TYPE_CHECKING:
    from handlers.decisions import DecisionService

log = logging.getLogger(__name__)


class Dispatcher:
    def __init__(
        self,
        *,
        settings: Settings,
        sessions: async_sessionmaker[AsyncSession],
        messenger: Messenger,
        clock: Clock = utcnow,
        decisions: DecisionService | None = None,
        oncall: OnCallCommands | None = None,
        readers: async_sessionmaker[AsyncSession] | None = None,
        observe_turn: Callable[[float], None] | None = None,
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        #: Told the seconds from a message's arrival to its answer (the bot's metrics).
        self.observe_turn = observe_turn
        #: Read-only sessions (no write lock on SQLite).
        self.readers = readers or sessions
        self.messenger = messenger
        self.clock = clock
        self.decisions = decisions
        self.reports = ReportCommands(
            settings, sessions, messenger, clock, decisions=decisions, readers=self.readers
        )
        self.execution = ExecutionCommands(
            settings, sessions, messenger, clock, reports=self.reports, readers=self.readers
        )
        self.handover = HandoverCommands(
            settings,
            sessions,
            messenger,
            clock,
            intake_room=self.intake_room_of,
            duty_room=lambda: self.duty_room_id,
            readers=self.readers,
        )
        self.deadlines = DeadlineCommands(
            settings,
            sessions,
            messenger,
            clock,
            intake_rooms=lambda: self.intake_rooms,
            readers=self.readers,
        )
        self.cases = CaseCommands(
            settings,
            sessions,
            messenger,
            clock,
            after_open=self.reports.begin,
            decisions=decisions,
            status_sources=(
                self.execution.status_lines,
                self.handover.status_lines,
                self.deadlines.status_lines,
            ),
        )
        self.oncall = oncall or OnCallCommands(settings, sessions, clock)
        self.audit = AuditCommands(settings, sessions, messenger, clock, readers=self.readers)
        handlers: list[object] = [
            self.cases,
            self.reports,
            self.oncall,
            self.audit,
            self.execution,
            self.handover,
            self.deadlines,
            self,
        ]
        if decisions is not None:
            handlers.append(decisions)
        self.registry = collect(*handlers)
        #: Set by the bot once the rooms exist.
        self.duty_room_id: str | None = None
        self.intake_rooms: dict[str, str] = {}

    @property
    def lang(self) -> str:
        return self.settings.duty.language

    def intake_room_of(self, municipality_id: str) -> str | None:
        """The intake room of a municipality, once the bot has it."""
        for room_id, owner in self.intake_rooms.items():
            if owner == municipality_id:
                return room_id
        return None

    async def locate(self, room_id: str) -> tuple[RoomKind, Case | None]:
        async with self.readers() as session:
            return await self._locate(session, room_id)

    async def _locate(self, session: AsyncSession, room_id: str) -> tuple[RoomKind, Case | None]:
        if room_id == self.duty_room_id:
            return RoomKind.DUTY, None
        if room_id in self.intake_rooms:
            return RoomKind.INTAKE, None
        case = await repo.get_case_by_room(session, room_id=room_id)
        if case is None and await decisions_repo.direct_room_owner(session, room_id=room_id):
            return RoomKind.DIRECT, None
        return (RoomKind.CASE, case) if case is not None else (RoomKind.OTHER, None)

    async def handle(self, msg: IncomingMessage) -> bool:
        """Handle one message; never raises. True if the event was claimed."""
        # Invisible format characters (bidi overrides, zero-width ones) never reach a
        # command, an answer or an echo of either: what is stored is what shows.
        msg = dataclasses.replace(msg, body=strip_invisible(msg.body))
        parsed = parse(msg.body)
        entry = self.registry.lookup(parsed.name) if parsed is not None else None
        if parsed is None or (entry is not None and entry[0].in_unit):
            return await self._in_unit(msg, parsed, entry)
        ctx: Ctx | None = None
        try:
            async with self.readers() as session:
                kind, case = await self._locate(session, msg.room_id)
                ctx = self._ctx(msg, kind, case, parsed.args)
                if kind is RoomKind.OTHER:
                    return False
                await self._authorise(ctx, session)
            await self._run(ctx, parsed, entry)
            self._turn_done(msg)
        except Exception as exc:
            await self._answer_error(ctx, exc, entry)
        return ctx is not None and ctx.claimed

    async def _in_unit(
        self,
        msg: IncomingMessage,
        parsed: ParsedCommand | None,
        entry: tuple[CommandSpec, Handler] | None,
    ) -> bool:
        """The hot path: claim, locate, authorise and the step itself commit together."""
        ctx: Ctx | None = None
        try:
            async with unit_of_work(self.sessions) as unit:
                session = unit.session
                if not await repo.claim_event(
                    session, event_id=msg.event_id, room_id=msg.room_id, now=self.clock()
                ):
                    return True  # handled before (delivered again after a restart)
                kind, case = await self._locate(session, msg.room_id)
                ctx = self._ctx(msg, kind, case, parsed.args if parsed else "", unit)
                ctx.claimed = True
                if kind is RoomKind.OTHER or (parsed is None and kind is not RoomKind.CASE):
                    return True
                await self._authorise(ctx, session)
                await self._run(ctx, parsed, entry)
            self._turn_done(msg)  # the unit has committed and sent its replies
            return True
        except Exception as exc:
            if ctx is not None:
                # Rolled back, claim included: the caller claims it on its own.
                ctx.unit, ctx.claimed = None, False
            await self._answer_error(ctx, exc, entry)
            return False

    def _turn_done(self, msg: IncomingMessage) -> None:
        """An answer or a command was handled and its replies sent: how long it took
        from the message's arrival (for the metrics; never fails the turn)."""
        if self.observe_turn is None or msg.received_at is None:
            return
        try:
            self.observe_turn((self.clock() - msg.received_at).total_seconds())
        except Exception:
            log.exception("could not record a dialogue turn's time")

    def _ctx(
        self,
        msg: IncomingMessage,
        kind: RoomKind,
        case: Case | None,
        args: str,
        unit: Unit | None = None,
    ) -> Ctx:
        return Ctx(
            msg=msg,
            kind=kind,
            args=args,
            lang=self.lang,
            messenger=self.messenger,
            case=case,
            unit=unit,
        )

    async def _run(
        self,
        ctx: Ctx,
        parsed: ParsedCommand | None,
        entry: tuple[CommandSpec, Handler] | None,
    ) -> None:
        """The authorised sender's message: an answer, or a command in its room."""
        msg, kind = ctx.msg, ctx.kind
        log.debug("message %s: %s room, command: %s", msg.event_id, kind.value, parsed is not None)
        if not msg.trusted_device:
            await ctx.reply("error.untrusted_device")
            return
        if parsed is None:
            # Open questions on the execution of a signed decision, else the report.
            if not await self.execution.handle_text(ctx):
                await self.reports.handle_text(ctx)
            return
        if entry is None:
            raise UnknownCommand(command=f"!{parsed.name}")
        spec, handler = entry
        if kind not in spec.rooms:
            where = sorted(spec.rooms)[0]
            raise WrongRoom(command=f"!{parsed.name}", where=i18n.text(self.lang, f"where.{where}"))
        # While the execution questions are open, !tillbaka, !ändra, !hoppa and
        # !sammanfattning act on them rather than on the (locked) report.
        handler = await self.execution.takes_over(ctx, spec.canonical) or handler
        await handler(ctx)

    async def _answer_error(
        self, ctx: Ctx | None, exc: Exception, entry: tuple[CommandSpec, Handler] | None
    ) -> None:
        """Turn a handler's error into a polite reply (sent at once: nothing to wait for)."""
        if isinstance(exc, AlreadyHandled):
            if ctx is not None:
                ctx.claimed = True
            return
        if ctx is None:
            log.error("could not look up the room of a message (%s)", type(exc).__name__)
            return
        ctx.unit = None
        if isinstance(exc, NotAllowed):
            # Who tried what, never what they wrote.
            log.warning("refused a command from %s in a %s room", ctx.msg.sender, ctx.kind.value)
            await self._safe_reply(ctx, "error.not_allowed")
        elif isinstance(exc, IllegalTransition):
            await self._safe_reply(
                ctx,
                exc.key,
                old_label=i18n.text(self.lang, f"status.{exc.old}"),
                new_label=i18n.text(self.lang, f"status.{exc.new}"),
            )
        elif isinstance(exc, HandlerError):
            await self._safe_reply(ctx, exc.key, **exc.params)
        else:
            name = entry[0].canonical if entry else "?"
            # A database error is logged without the server's words: they may quote the
            # row (PostgreSQL: "Failing row contains (...)"), i.e. the answer.
            log.error("command %s failed", name, exc_info=loggable(exc))
            await self._safe_reply(ctx, "error.internal")

    async def handle_vote(self, vote: IncomingVote) -> bool:
        """A poll vote in a case room answers the current question; never raises.
        Claimed in the same transaction as the answer it gives."""

        async def answer(ctx: Ctx, session: AsyncSession) -> None:
            await self._authorise(ctx, session)
            if not vote.trusted_device:
                await ctx.reply("error.untrusted_device")
                return
            if not await self.execution.handle_vote(ctx, vote):
                await self.reports.handle_vote(ctx, vote)

        return await self._in_case_room(vote.as_message(), answer, turn=True)

    async def handle_redaction(self, redaction: IncomingRedaction) -> bool:
        """A removed message in a case room: if it gave an answer (to the report or the
        execution questions), the answer goes with it. Claimed in the same transaction
        as the change, so handled again after a restart it changes nothing; never raises.
        """

        async def remove(ctx: Ctx, session: AsyncSession) -> None:
            # Who may remove an answer (its author, a moderator) is decided where the
            # answer is found; anyone else's redaction of a remark is no concern.
            if not await self.execution.handle_redaction(ctx, redaction):
                await self.reports.handle_redaction(ctx, redaction)

        return await self._in_case_room(redaction.as_message(), remove, turn=False)

    async def _in_case_room(
        self,
        msg: IncomingMessage,
        work: Callable[[Ctx, AsyncSession], Awaitable[None]],
        *,
        turn: bool,
    ) -> bool:
        """An event other than a text (a vote, a redaction) that only matters in a case
        room: claimed in the same transaction as the change ``work`` makes; never
        raises. ``turn``: it is a dialogue turn (timed for the metrics)."""
        ctx: Ctx | None = None
        try:
            async with unit_of_work(self.sessions) as unit:
                session = unit.session
                if not await repo.claim_event(
                    session, event_id=msg.event_id, room_id=msg.room_id, now=self.clock()
                ):
                    return True
                kind, case = await self._locate(session, msg.room_id)
                if kind is not RoomKind.CASE or case is None:
                    return True
                ctx = self._ctx(msg, kind, case, "", unit)
                ctx.claimed = True
                await work(ctx, session)
            if turn:
                self._turn_done(msg)
            return True
        except Exception as exc:
            if ctx is not None:
                ctx.unit, ctx.claimed = None, False
            await self._answer_error(ctx, exc, None)
            return False

    async def resume(self) -> None:
        """After a restart: give lost rooms back, and send questions a crash swallowed."""
        await self.cases.recover()
        async with self.readers() as session:
            drafting = await repo.list_cases(session, statuses=["drafting"])
        for case in drafting:
            if case.room_id is None:
                continue
            try:
                await self.reports.resume(case)
            except Exception:
                log.exception("could not resume the report of case %s", case.number)
        try:
            await self.execution.resume()
            await self.handover.check()  # and every minute (bot.app's housekeeping)
        except Exception:
            log.exception("could not resume the execution questions or the handovers")

    async def _authorise(self, ctx: Ctx, session: AsyncSession) -> None:
        sender = ctx.msg.sender
        if ctx.kind is RoomKind.DUTY:
            allowed = sender in self.settings.duty.allowed
        elif ctx.kind is RoomKind.CASE:
            assert ctx.case is not None
            # Loaded with the case, in this same transaction (selectin).
            allowed = any(p.user_id == sender for p in ctx.case.participants)
        elif ctx.kind is RoomKind.DIRECT:
            owner = await decisions_repo.direct_room_owner(session, room_id=ctx.msg.room_id)
            allowed = owner == sender
        elif ctx.kind is RoomKind.INTAKE:
            municipality = self.settings.municipality(self.intake_rooms[ctx.msg.room_id])
            allowed = municipality is not None and sender in municipality.intake_members
        else:
            allowed = False
        if not allowed:
            raise NotAllowed()

    async def _safe_reply(self, ctx: Ctx, key: str, **params: object) -> None:
        try:
            await ctx.reply(key, **params)
        except Exception:
            log.exception("could not send a reply")

    # -- commands that belong to no single domain module ----------------------

    @command(
        "hjälp", "help", rooms={RoomKind.DUTY, RoomKind.CASE, RoomKind.INTAKE, RoomKind.DIRECT}
    )
    async def help(self, ctx: Ctx) -> None:
        key = {
            RoomKind.DUTY: "help.duty",
            RoomKind.CASE: "help.case",
            RoomKind.INTAKE: "help.intake",
            RoomKind.DIRECT: "help.direct",
        }.get(ctx.kind, "help.other")
        await ctx.reply(key)
