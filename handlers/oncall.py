"""Who is on call to decide for a municipality, and the duty lead's overrides.

Without an override, every decision-maker of the municipality is on call in the
order the configuration lists them. ``!jour ersätt @user FRÅN TILL`` (duty leads
only) puts that person first for the period.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from config import DecisionMaker, Settings
from handlers import i18n
from handlers.commands import RoomKind, command
from handlers.context import LOCAL_TZ, Clock, Ctx, local_time
from handlers.errors import HandlerError
from storage import decisions

_MOMENT = re.compile(
    r"\d{4}-\d{2}-\d{2}[T ]\d{1,2}[:.]\d{2}|\d{4}-\d{2}-\d{2}|\d{1,2}[:.]\d{2}|nu|now",
    re.IGNORECASE,
)


class OverrideUsage(HandlerError):
    key = "oncall.override.usage"


class LeadsOnly(HandlerError):
    key = "oncall.override.leads_only"


async def on_call(
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    municipality_id: str,
    at: datetime,
) -> list[DecisionMaker]:
    """The decision-makers to ask, first one first (empty: nobody is on call)."""
    municipality = settings.municipality(municipality_id)
    if municipality is None:
        return []
    async with sessions() as session:
        overrides = await decisions.active_overrides(
            session, municipality_id=municipality_id, at=at
        )
    by_user = {d.user_id: d for d in municipality.decision_makers}
    first = [by_user[o.user_id] for o in overrides if o.user_id in by_user]
    ordered = first + list(municipality.decision_makers)
    return list({d.user_id: d for d in ordered}.values())


def parse_moment(text: str, now: datetime) -> datetime:
    """'nu', 'HH:MM' (today, or tomorrow if already past), 'YYYY-MM-DD [HH:MM]'."""
    text = text.strip().replace(".", ":")
    local_now = now.astimezone(LOCAL_TZ)
    if text.lower() in ("nu", "now"):
        return now
    if re.fullmatch(r"\d{1,2}:\d{2}", text):
        hour, minute = (int(x) for x in text.split(":"))
        moment = local_now.replace(hour=hour, minute=minute, second=0, microsecond=0)
        return moment if moment >= local_now - timedelta(minutes=1) else moment + timedelta(days=1)
    fmt = "%Y-%m-%d" if len(text) == 10 else "%Y-%m-%d %H:%M"
    return datetime.strptime(text.replace("T", " "), fmt).replace(tzinfo=LOCAL_TZ)


@dataclass
class OnCallCommands:
    settings: Settings
    sessions: async_sessionmaker[AsyncSession]
    clock: Clock

    @property
    def lang(self) -> str:
        return self.settings.duty.language

    @command("jour", "oncall", rooms={RoomKind.DUTY})
    async def on_call_command(self, ctx: Ctx) -> None:
        words = ctx.args.split(maxsplit=1)
        if words and words[0].casefold() in ("ersätt", "ersatt", "replace"):
            await self._override(ctx, words[1] if len(words) > 1 else "")
            return
        if not self.settings.municipalities:
            await ctx.reply("oncall.none")
            return
        now = self.clock()
        lines = [i18n.render(self.lang, "oncall.header")]
        for m in self.settings.municipalities:
            people = await on_call(self.settings, self.sessions, m.id, now)
            names = ", ".join(f"{d.name} ({d.role})" for d in people)
            lines.append(
                i18n.render(
                    self.lang,
                    "oncall.line",
                    municipality=m.name,
                    people=names or i18n.text(self.lang, "oncall.nobody"),
                )
            )
        await ctx.messenger.send(ctx.msg.room_id, i18n.join(lines, reply_to=ctx.msg.event_id))

    async def _override(self, ctx: Ctx, args: str) -> None:
        if ctx.msg.sender not in self.settings.duty.leads:
            raise LeadsOnly()
        user, _, rest = args.strip().partition(" ")
        moments = _MOMENT.findall(rest)
        if not user.startswith("@") or len(moments) != 2:
            raise OverrideUsage()
        now = self.clock()
        try:
            starts = parse_moment(moments[0], now)
            # A time of day for TILL is the next one after FRÅN ("18:00 07:00": overnight).
            ends = parse_moment(moments[1], starts)
        except ValueError as exc:
            raise OverrideUsage() from exc
        if ends <= starts or ends <= now:
            raise OverrideUsage()
        places = [
            m
            for m in self.settings.municipalities
            if any(d.user_id == user for d in m.decision_makers)
        ]
        if not places:
            await ctx.reply("oncall.override.unknown", user=user)
            return
        async with self.sessions() as session, session.begin():
            for m in places:
                await decisions.add_override(
                    session,
                    municipality_id=m.id,
                    user_id=user,
                    starts_at=starts,
                    ends_at=ends,
                    created_by=ctx.msg.sender,
                    now=now,
                )
        await ctx.reply(
            "oncall.override.done",
            user=user,
            municipalities=", ".join(m.name for m in places),
            starts=local_time(starts),
            ends=local_time(ends),
        )
