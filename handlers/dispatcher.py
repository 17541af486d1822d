"""Where every incoming message is routed, authorised and answered.

This is the one place where domain errors become replies: handlers raise, the
dispatcher speaks. A failing handler never escapes into the sync loop.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from config import Settings
from handlers import i18n
from handlers.cases import CaseCommands
from handlers.commands import CommandSpec, RoomKind, collect, command, parse
from handlers.context import Clock, Ctx, local_time, utcnow
from handlers.errors import (
    HandlerError,
    IllegalTransition,
    NotAllowed,
    UnknownCommand,
    WrongRoom,
)
from handlers.messenger import IncomingMessage, IncomingVote, Messenger
from handlers.oncall import OnCallCommands
from handlers.reports import ReportCommands
from storage import decisions as decisions_repo
from storage import repo
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
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.messenger = messenger
        self.clock = clock
        self.decisions = decisions
        self.reports = ReportCommands(settings, sessions, messenger, clock, decisions=decisions)
        self.cases = CaseCommands(
            settings,
            sessions,
            messenger,
            clock,
            after_open=self.reports.begin,
            decisions=decisions,
        )
        self.oncall = oncall or OnCallCommands(settings, sessions, clock)
        handlers: list[object] = [self.cases, self.reports, self.oncall, self]
        if decisions is not None:
            handlers.append(decisions)
        self.registry = collect(*handlers)
        #: Set by the bot once the rooms exist.
        self.duty_room_id: str | None = None
        self.intake_rooms: dict[str, str] = {}

    @property
    def lang(self) -> str:
        return self.settings.duty.language

    async def locate(self, room_id: str) -> tuple[RoomKind, Case | None]:
        if room_id == self.duty_room_id:
            return RoomKind.DUTY, None
        if room_id in self.intake_rooms:
            return RoomKind.INTAKE, None
        async with self.sessions() as session:
            case = await repo.get_case_by_room(session, room_id=room_id)
            if case is None and await decisions_repo.direct_room_owner(session, room_id=room_id):
                return RoomKind.DIRECT, None
        return (RoomKind.CASE, case) if case is not None else (RoomKind.OTHER, None)

    async def handle(self, msg: IncomingMessage) -> None:
        """Handle one message; never raises."""
        parsed = parse(msg.body)
        try:
            kind, case = await self.locate(msg.room_id)
        except Exception:
            log.exception("could not look up the room of a message")
            return
        log.debug("message %s: %s room, command: %s", msg.event_id, kind.value, parsed is not None)
        if kind is RoomKind.OTHER or (parsed is None and kind is not RoomKind.CASE):
            return
        ctx = Ctx(
            msg=msg,
            kind=kind,
            args=parsed.args if parsed else "",
            lang=self.lang,
            messenger=self.messenger,
            case=case,
        )
        spec: CommandSpec | None = None
        try:
            await self._authorise(ctx)
            if not msg.trusted_device:
                await ctx.reply("error.untrusted_device")
                return
            if parsed is None:
                await self.reports.handle_text(ctx)
                return
            entry = self.registry.lookup(parsed.name)
            if entry is None:
                raise UnknownCommand(command=f"!{parsed.name}")
            spec, handler = entry
            if kind not in spec.rooms:
                where = sorted(spec.rooms)[0]
                raise WrongRoom(
                    command=f"!{parsed.name}", where=i18n.text(self.lang, f"where.{where}")
                )
            await handler(ctx)
        except NotAllowed:
            # Who tried what, never what they wrote.
            log.warning("refused a command from %s in a %s room", msg.sender, kind.value)
            await self._safe_reply(ctx, "error.not_allowed")
        except IllegalTransition as exc:
            await self._safe_reply(
                ctx,
                exc.key,
                old_label=i18n.text(self.lang, f"status.{exc.old}"),
                new_label=i18n.text(self.lang, f"status.{exc.new}"),
            )
        except HandlerError as exc:
            await self._safe_reply(ctx, exc.key, **exc.params)
        except Exception:
            log.exception("command %s failed", spec.canonical if spec else "?")
            await self._safe_reply(ctx, "error.internal")

    async def handle_vote(self, vote: IncomingVote) -> None:
        """A poll vote in a case room answers the current question; never raises."""
        msg = vote.as_message()
        try:
            kind, case = await self.locate(vote.room_id)
            if kind is not RoomKind.CASE or case is None:
                return
            ctx = Ctx(
                msg=msg, kind=kind, args="", lang=self.lang, messenger=self.messenger, case=case
            )
            try:
                await self._authorise(ctx)
            except NotAllowed:
                log.warning("refused a vote from %s in a case room", vote.sender)
                await self._safe_reply(ctx, "error.not_allowed")
                return
            if not vote.trusted_device:
                await self._safe_reply(ctx, "error.untrusted_device")
                return
            await self.reports.handle_vote(vote, case)
        except HandlerError as exc:
            await self._safe_reply(
                Ctx(msg=msg, kind=RoomKind.CASE, args="", lang=self.lang, messenger=self.messenger),
                exc.key,
                **exc.params,
            )
        except Exception:
            log.exception("handling a vote failed")

    async def resume(self) -> None:
        """After a restart: give lost rooms back, and re-ask questions a crash swallowed."""
        await self.cases.recover()
        async with self.sessions() as session:
            drafting = await repo.list_cases(session, statuses=["drafting"])
        for case in drafting:
            if case.room_id is None:
                continue
            try:
                await self.reports.resume(case)
            except Exception:
                log.exception("could not resume the report of case %s", case.number)

    async def _authorise(self, ctx: Ctx) -> None:
        sender = ctx.msg.sender
        if ctx.kind is RoomKind.DUTY:
            allowed = sender in self.settings.duty.allowed
        elif ctx.kind is RoomKind.CASE:
            assert ctx.case is not None
            async with self.sessions() as session:
                allowed = await repo.is_participant(session, case_id=ctx.case.id, user_id=sender)
        elif ctx.kind is RoomKind.DIRECT:
            async with self.sessions() as session:
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

    @command("logg", "log", rooms={RoomKind.CASE})
    async def audit_log(self, ctx: Ctx) -> None:
        assert ctx.case is not None
        async with self.sessions() as session:
            entries = await repo.list_audit(session, case_id=ctx.case.id)
        lines = [f"{local_time(e.at)}  {e.actor}  {e.action}" for e in entries]
        body = f"{ctx.case.number}\n" + "\n".join(lines)
        await self.messenger.send(
            ctx.msg.room_id, i18n.Message(text=body, html=None, reply_to=ctx.msg.event_id)
        )

    @command(
        "verkställt",
        "executed",
        "överlämna",
        "handover",
        rooms={RoomKind.CASE},
    )
    async def not_yet(self, ctx: Ctx) -> None:
        await ctx.reply("error.not_yet", command=ctx.msg.body.split()[0])

    @command("mottaget", "received", rooms={RoomKind.INTAKE})
    async def not_yet_intake(self, ctx: Ctx) -> None:
        await ctx.reply("error.not_yet", command=ctx.msg.body.split()[0])
