"""Commands that open, show and cancel cases."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from config import Settings
from handlers import i18n
from handlers.case_state import CaseStatus, check_transition, transition
from handlers.commands import RoomKind, command
from handlers.context import LOCAL_TZ, Clock, Ctx, local_time
from handlers.errors import CaseNotFound, RoomCreationFailed
from handlers.messenger import Messenger
from storage import repo
from storage.models import Case

if TYPE_CHECKING:
    from handlers.decisions import DecisionService

log = logging.getLogger(__name__)

CANCEL_CONFIRM_WINDOW = timedelta(minutes=5)
#: Recovery leaves a case this young to the !ny that is creating its room.
ROOM_GRACE = timedelta(minutes=2)
_YES = {"ja", "yes", "j", "y"}
#: What happens in a new case room after the welcome (the guided report starts).
AfterOpen = Callable[[Case, str | None], Awaitable[None]]
#: More lines for a case's ``!status`` (the execution record, the handover).
StatusSource = Callable[[Case], Awaitable[list[i18n.Message]]]
#: More lines for the duty room's ``!status``.
DutyStatusSource = Callable[[], Awaitable[list[i18n.Message]]]


@dataclass
class CaseCommands:
    settings: Settings
    sessions: async_sessionmaker[AsyncSession]
    messenger: Messenger
    clock: Clock
    #: What starts in a new case room after the welcome (the guided report).
    after_open: AfterOpen | None = None
    #: The decision side, for ``!status`` while a decision waits and for cancelling.
    decisions: DecisionService | None = None
    #: What else ``!status`` in a case room reports, in this order.
    status_sources: Sequence[StatusSource] = ()
    #: What else ``!status`` in the duty room reports (e.g. sessions the bot cannot trust).
    duty_status_sources: Sequence[DutyStatusSource] = ()

    @property
    def lang(self) -> str:
        return self.settings.duty.language

    # -- opening a case -------------------------------------------------------

    @command("ny", "new", rooms={RoomKind.DUTY})
    async def new_case(self, ctx: Ctx) -> None:
        now = self.clock()
        async with self.sessions() as session, session.begin():
            case = await repo.create_case(
                session,
                prefix=self.settings.duty.case_prefix,
                year=now.astimezone(LOCAL_TZ).year,
                created_by=ctx.msg.sender,
                status=CaseStatus.DRAFTING.value,
                now=now,
                form_id=self._form_hint(ctx.args),
            )
            # Handled with the case it opens: a crash after this commit finds the case
            # (recover() gives it its room), never a second one from the same !ny.
            await ctx.claim(session)
        log.info("case %s opened", case.number)
        try:
            await self.create_room(case)
        except Exception as exc:
            log.warning("room for case %s not created yet: %s", case.number, type(exc).__name__)
            raise RoomCreationFailed(number=case.number) from exc
        await self.welcome(case)
        await ctx.reply("case.created", number=case.number)
        if self.after_open is not None:
            await self.after_open(case, case.form_id)

    def _form_hint(self, args: str) -> str | None:
        """``!ny lvu6`` names the form; anything else is asked for in the room."""
        word = args.split()[0].casefold() if args.split() else ""
        return word if word in self.settings.forms else None

    async def create_room(self, case: Case) -> None:
        """Create the case's room and record it at once, so a later failure cannot
        leave a room the case does not know (and a second room on recovery)."""
        participants = await self._participants(case)
        room_id = await self.messenger.create_case_room(name=case.number, invite=participants)
        async with self.sessions() as session, session.begin():
            await repo.set_case_room(session, case_id=case.id, room_id=room_id)
            await repo.add_audit(
                session,
                case_id=case.id,
                actor="socialjour",
                action="room.created",
                now=self.clock(),
            )
        case.room_id = room_id

    async def welcome(self, case: Case, *, resumed: bool = False) -> None:
        assert case.room_id is not None
        participants = await self._participants(case)
        key = "case.resumed" if resumed else "case.welcome"
        await self.messenger.send(
            case.room_id,
            i18n.render(self.lang, key, number=case.number, mentions=tuple(participants)),
            key=f"case:{case.id}:{case.room_id}:{key}",
        )

    async def _participants(self, case: Case) -> list[str]:
        async with self.sessions() as session:
            return [p.user_id for p in await repo.list_participants(session, case_id=case.id)]

    async def recover(self) -> int:
        """Give every open case that lost its room in a crash its room. Returns how many."""
        async with self.sessions() as session:
            cases = await repo.list_cases(
                session, statuses=[s.value for s in CaseStatus if s.is_open]
            )
        recovered = 0
        now = self.clock()
        for case in cases:
            # A case opened moments ago is still getting its room from !ny itself.
            if case.room_id is not None or now - case.created_at < ROOM_GRACE:
                continue
            try:
                await self.create_room(case)
                await self.welcome(case, resumed=True)
                recovered += 1
                if self.after_open is not None:
                    await self.after_open(case, case.form_id)
            except Exception as exc:
                log.warning("case %s: room still not created: %s", case.number, type(exc).__name__)
        return recovered

    # -- status ---------------------------------------------------------------

    @command("status", rooms={RoomKind.DUTY, RoomKind.CASE})
    async def status(self, ctx: Ctx) -> None:
        if ctx.kind is RoomKind.CASE:
            case = _require_case(ctx)
            status = CaseStatus(case.status)
            lines = [
                i18n.render(
                    self.lang,
                    "case.status",
                    number=case.number,
                    status=i18n.text(self.lang, f"status.{status.value}"),
                    created=local_time(case.created_at),
                    created_by=case.created_by,
                    next=i18n.text(self.lang, f"case.next.{status.value}"),
                )
            ]
            if self.decisions is not None:
                lines += await self.decisions.status_lines(case)
            for source in self.status_sources:
                lines += await source(case)
            await self.messenger.send(ctx.msg.room_id, i18n.join(lines, reply_to=ctx.msg.event_id))
            return
        async with self.sessions() as session:
            cases = await repo.list_cases(
                session, statuses=[s.value for s in CaseStatus if s.is_open]
            )
        more: list[i18n.Message] = []
        for duty_source in self.duty_status_sources:
            more += await duty_source()
        if not cases and not more:
            await ctx.reply("duty.status.none")
            return
        if not cases:
            lines = [i18n.render(self.lang, "duty.status.none")]
        else:
            lines = [i18n.render(self.lang, "duty.status.header", count=len(cases))]
        lines += [
            i18n.render(
                self.lang,
                "duty.status.line",
                number=c.number,
                status=i18n.text(self.lang, f"status.{c.status}"),
                created=local_time(c.created_at),
            )
            for c in cases
        ]
        lines += more
        await self.messenger.send(ctx.msg.room_id, i18n.join(lines, reply_to=ctx.msg.event_id))

    # -- cancelling -----------------------------------------------------------

    @command("avbryt", "cancel", rooms={RoomKind.CASE})
    async def cancel(self, ctx: Ctx) -> None:
        case = _require_case(ctx)
        now = self.clock()
        confirming = ctx.args.strip().casefold() in _YES
        # Refuse at once if the case can no longer be cancelled, before asking to confirm.
        check_transition(case.status, CaseStatus.CANCELLED)
        if not confirming:
            async with self.sessions() as session, session.begin():
                await repo.request_cancel(session, case_id=case.id, user_id=ctx.msg.sender, now=now)
                await ctx.claim(session)
            minutes = int(CANCEL_CONFIRM_WINDOW.total_seconds() // 60)
            await ctx.reply("cancel.confirm", number=case.number, minutes=minutes)
            return
        requested = case.cancel_requested_at
        if (
            requested is None
            or now - requested > CANCEL_CONFIRM_WINDOW
            or case.cancel_requested_by != ctx.msg.sender  # whoever asked, confirms
        ):
            await ctx.reply("cancel.no_request")
            return
        async with self.sessions() as session, session.begin():
            # Open signing links close and pending escalation steps are cancelled in
            # the same transaction (the state machine's effects of leaving the state).
            effects = await transition(
                session,
                case_id=case.id,
                old=case.status,
                new=CaseStatus.CANCELLED,
                actor=ctx.msg.sender,
                now=now,
            )
            await ctx.claim(session)
        if self.decisions is not None:
            self.decisions.escalator.stopped(effects.cancelled_steps)
        log.info("case %s cancelled", case.number)
        await ctx.reply("cancel.done", number=case.number, user=ctx.msg.sender)


def _require_case(ctx: Ctx) -> Case:
    if ctx.case is None:
        raise CaseNotFound()
    return ctx.case
