"""Who is on call to decide for a municipality, and the duty lead's overrides.

Every decision-maker of the municipality is on call, in this order: the people
``!jour ersätt @user FRÅN TILL`` (duty leads only) put first for the period, then the
people the municipality's on-call calendar names for the moment (``roster_ics``,
see :mod:`handlers.roster`), then everyone else in the order the configuration lists
them. A calendar that cannot be read is skipped with a warning, never a failure:
someone must always be asked.

Only people whose appointment (förordnande) holds on the moment's Swedish day are
on call at all: LVU 6 § andra stycket and LVM 13 § give the power to decide to the
chair and the members the committee has appointed, so a decision-maker without a
valid appointment is never asked, whatever the calendar or an override says. When
that leaves nobody, the caller says so (``decision.nobody_on_call`` to the worker
and the leads, ``escalation.no_next_signer`` in a running escalation).
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from config import DecisionMaker, Municipality, Settings
from handlers import i18n
from handlers.commands import RoomKind, command
from handlers.context import LOCAL_TZ, Clock, Ctx, local_time
from handlers.errors import HandlerError
from handlers.roster import MalformedRoster, RosterSource, calendar_on_call
from storage import decisions

log = logging.getLogger(__name__)

_MOMENT = re.compile(
    r"\d{4}-\d{2}-\d{2}[T ]\d{1,2}[:.]\d{2}|\d{4}-\d{2}-\d{2}|\d{1,2}[:.]\d{2}|nu|now",
    re.IGNORECASE,
)


class OverrideUsage(HandlerError):
    key = "oncall.override.usage"


class LeadsOnly(HandlerError):
    key = "oncall.override.leads_only"


class OnCallSource(StrEnum):
    """Why a decision-maker is where they are in the on-call order."""

    OVERRIDE = "override"  # ``!jour ersätt``
    CALENDAR = "calendar"  # the municipality's on-call calendar
    CONFIG = "config"  # the order of the config file


@dataclass(frozen=True, slots=True)
class OnCallEntry:
    maker: DecisionMaker
    source: OnCallSource


async def on_call_entries(
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    municipality_id: str,
    at: datetime,
    *,
    roster: RosterSource | None = None,
) -> list[OnCallEntry]:
    """The decision-makers to ask, first one first, each with where their place comes from."""
    municipality = settings.municipality(municipality_id)
    if municipality is None:
        return []
    async with sessions() as session:
        overrides = await decisions.active_overrides(
            session, municipality_id=municipality_id, at=at
        )
    by_user = {d.user_id: d for d in municipality.decision_makers}
    ordered = [
        OnCallEntry(by_user[o.user_id], OnCallSource.OVERRIDE)
        for o in overrides
        if o.user_id in by_user
    ]
    if roster is not None:
        scheduled = await _from_calendar(roster, municipality, at)
        ordered += [OnCallEntry(d, OnCallSource.CALENDAR) for d in scheduled]
    ordered += [OnCallEntry(d, OnCallSource.CONFIG) for d in municipality.decision_makers]
    unique: dict[str, OnCallEntry] = {}
    for entry in ordered:
        unique.setdefault(entry.maker.user_id, entry)
    entries = [e for e in unique.values() if may_decide(e.maker, at)]
    if len(entries) < len(unique):
        lapsed = [user for user in unique if all(e.maker.user_id != user for e in entries)]
        log.info("%s: not asked, no appointment that holds: %s", municipality_id, lapsed)
    return entries


def may_decide(maker: DecisionMaker, at: datetime) -> bool:
    """Whether ``maker``'s appointment holds on the Swedish day of ``at``."""
    return maker.may_decide_on(at.astimezone(LOCAL_TZ).date())


async def on_call(
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    municipality_id: str,
    at: datetime,
    *,
    roster: RosterSource | None = None,
) -> list[DecisionMaker]:
    """The decision-makers to ask, first one first (empty: nobody is on call)."""
    entries = await on_call_entries(settings, sessions, municipality_id, at, roster=roster)
    return [entry.maker for entry in entries]


async def _from_calendar(
    roster: RosterSource, municipality: Municipality, at: datetime
) -> list[DecisionMaker]:
    """Who the calendar puts on call; nobody, with a warning, when it cannot be read.

    The warning names the municipality and the kind of failure, never the calendar's
    content (names, addresses).
    """
    try:
        ics = await roster.calendar(municipality.id)
        if ics is None:
            return []
        # Expanding recurring events is CPU work: off the event loop.
        return await asyncio.to_thread(calendar_on_call, ics, municipality.decision_makers, at)
    except MalformedRoster:
        log.warning(
            "the on-call calendar of %s is malformed; using the config order", municipality.id
        )
    except Exception as exc:
        log.warning(
            "the on-call calendar of %s could not be used (%s); using the config order",
            municipality.id,
            type(exc).__name__,
        )
    return []


def _appointment_gap(
    lang: str, municipality: Municipality, user: str, starts: datetime, ends: datetime
) -> tuple[str, dict[str, str]] | None:
    """What keeps ``user`` from being asked in ``municipality`` during the override, as
    (message key, parameters); None when their appointment covers all of it.

    Days are Swedish calendar days, both ends of the appointment included (LVU 6 §
    andra stycket, LVM 13 §: only the chair or a member the committee has appointed
    decides, so :func:`on_call_entries` skips anyone else).
    """
    maker = next(d for d in municipality.decision_makers if d.user_id == user)
    first = starts.astimezone(LOCAL_TZ).date()
    last = (ends - timedelta(microseconds=1)).astimezone(LOCAL_TZ).date()
    appointment = maker.appointment

    def not_asked(why: str, **params: str) -> tuple[str, dict[str, str]]:
        reason = i18n.text(lang, f"oncall.override.why.{why}", **params)
        return "oncall.override.not_asked", {"why": reason}

    if appointment is None:
        return not_asked("none")
    if appointment.valid_until < first:
        return not_asked("ended", until=appointment.valid_until.isoformat())
    if appointment.appointed_on > last:
        return not_asked("later", since=appointment.appointed_on.isoformat())
    if appointment.valid_until < last:
        return "oncall.override.partly", {"until": appointment.valid_until.isoformat()}
    if appointment.appointed_on > first:
        return "oncall.override.partly_later", {"since": appointment.appointed_on.isoformat()}
    return None


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
    roster: RosterSource | None = None

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
            entries = await on_call_entries(
                self.settings, self.sessions, m.id, now, roster=self.roster
            )
            names = ", ".join(
                i18n.text(
                    self.lang,
                    "oncall.person",
                    name=e.maker.name,
                    role=e.maker.label,
                    source=i18n.text(self.lang, f"oncall.source.{e.source.value}"),
                )
                for e in entries
            )
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
            await ctx.claim(session)  # never the same override twice after a crash
        # Someone without an appointment that holds is never asked (on_call_entries):
        # say so now, rather than let the lead believe the night is covered.
        warnings = [(m, _appointment_gap(self.lang, m, user, starts, ends)) for m in places]
        asked = [m for m, gap in warnings if gap is None or gap[0] != "oncall.override.not_asked"]
        if asked:
            await ctx.reply(
                "oncall.override.done",
                user=user,
                municipalities=", ".join(m.name for m in asked),
                starts=local_time(starts),
                ends=local_time(ends),
            )
        for m, gap in warnings:
            if gap is not None:
                key, params = gap
                await ctx.reply(
                    key,
                    user=user,
                    municipality=m.name,
                    starts=local_time(starts),
                    ends=local_time(ends),
                    **params,
                )
