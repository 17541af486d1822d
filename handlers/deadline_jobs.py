"""The deadline sweep: announces running clocks, reminds before their last day, and
alarms when one has passed without its act being marked.

The database is the truth: each deadline row says what was told (``announced_at``,
``last_reminder_at``, ``missed_alerted_on``, ``no_meeting_told_at``), so the sweep can
run every minute, twice, or after any restart. Every send is keyed by what it *is*
(``deadline:{id}:remind:{moment}``), and the row is noted after the send: a crash in
between repeats the send under the same key, which the homeserver posts once.

Who hears what: a clock is announced in the case room and in the room of whoever
acts (the home municipality's intake room, or the duty room); reminders go to that
room at 08:00 Swedish time on the policy's days (``[deadlines] remind``); a missed
last day alerts the duty leads in the duty room and that room, once a day until the
act is marked. Messages carry the case number, the deadline's label and statute,
dates, and what is lost: never anything about the person.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from config import Settings
from config.deadlines import parse_rule
from handlers import i18n
from handlers.context import Clock
from handlers.deadline_commands import act_command
from handlers.deadline_rules import (
    MORNING,
    count_due,
    deadline_end,
    meeting_dates,
    reminder_moments,
    start_day,
)
from handlers.deadlines import day_text, due_message, label_of, spec_of
from handlers.messenger import Messenger
from handlers.workdays import SWEDEN
from storage import audit, repo
from storage import deadlines as store
from storage.models import Case, Deadline

__all__ = ["DeadlineJobs", "MeetingSource"]

log = logging.getLogger(__name__)


class MeetingSource(Protocol):
    """Where a municipality's committee meeting calendar comes from (ICS bytes)."""

    async def calendar(self, municipality_id: str) -> bytes | None: ...


@dataclass
class DeadlineJobs:
    settings: Settings
    sessions: async_sessionmaker[AsyncSession]
    messenger: Messenger
    clock: Clock
    #: The intake rooms: room id -> municipality id (filled at start-up).
    intake_rooms: Callable[[], Mapping[str, str]] = dict
    duty_room: Callable[[], str | None] = lambda: None
    #: The meeting calendars (``meetings_ics``); None: only the ``meetings`` days.
    meetings: MeetingSource | None = None
    _parsed: dict[tuple[str, date], tuple[bytes, list[date]]] = field(
        default_factory=dict, init=False, repr=False
    )
    #: One sweep at a time (the start-up catch-up and the minute's sweep may meet).
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock, init=False, repr=False)

    @property
    def lang(self) -> str:
        return self.settings.duty.language

    async def sweep(self) -> None:
        """One pass over every running clock; one failing deadline never stops the rest."""
        async with self._lock:
            now = self.clock()
            async with self.sessions() as session:
                rows = await store.running(session)
            for deadline, case in rows:
                await self._guarded(deadline, case, now)

    async def _guarded(self, deadline: Deadline, case: Case, now: datetime) -> None:
        try:
            await self._one(deadline, case, now)
        except Exception:
            log.exception("case %s: the deadline sweep failed for %s", case.number, deadline.name)

    async def _one(self, row: Deadline, case: Case, now: datetime) -> None:
        assert row.started_at is not None
        if parse_rule(row.rule).kind == "next_meeting":
            await self._resolve_meeting(row, case)
        announced_now = row.announced_at is None
        if announced_now:
            await self._announce(row, case, now)
        if row.due_on is None:
            await self._no_meeting(row, case, now)
            return
        if now > deadline_end(row.due_on):
            await self._missed(row, case, now)
            return
        due = [
            moment
            for moment in reminder_moments(
                row.due_on,
                started_at=row.started_at,
                days_before=self.settings.deadlines.remind_days_before,
            )
            if moment <= now and (row.last_reminder_at is None or moment > row.last_reminder_at)
        ]
        if not due:
            return
        if announced_now:  # the announcement said it all just now: count them as told
            await self._note(row, last_reminder_at=due[-1])
            return
        await self._remind(row, case, due[-1])

    # -- the messages ------------------------------------------------------------------

    async def _announce(self, row: Deadline, case: Case, now: datetime) -> None:
        message = self._about(row, case, "deadline.started", "deadline.started_no_meeting")
        room = self._actor_room(row, case)
        event_id = None
        if room is not None:
            event_id = await self.messenger.send(room, message, key=_key(row, "started", room))
        if case.room_id is not None and case.room_id != room:
            await self.messenger.send(case.room_id, message, key=_key(row, "started", case.room_id))
        await self._note(row, announced_at=now, last_event_id=event_id or row.last_event_id)

    async def _remind(self, row: Deadline, case: Case, moment: datetime) -> None:
        room = self._actor_room(row, case)
        if room is not None:
            message = self._about(
                row, case, "deadline.remind", mentions=self._mentions(row, case), notice=False
            )
            event_id = await self.messenger.send(
                room, message, key=_key(row, f"remind:{moment.isoformat()}", room)
            )
            await self._note(row, last_reminder_at=moment, last_event_id=event_id)
        else:
            await self._note(row, last_reminder_at=moment)

    async def _missed(self, row: Deadline, case: Case, now: datetime) -> None:
        local = now.astimezone(SWEDEN)
        today = local.date()
        told = row.missed_alerted_on
        # At once the first time (the duty service works at night); then each morning.
        if told is not None and (told >= today or local.time() < MORNING):
            return
        assert row.due_on is not None
        spec = spec_of(self.settings, case, row.name)
        outer = row.outer_limit
        # Past the unextended day; lag (1930:173) may still allow it until the outer limit.
        still_allowed = outer is not None and outer > row.due_on and today <= outer
        key = "deadline.missed" if still_allowed else "deadline.missed_final"
        params = {
            "number": case.number,
            "label": label_of(self.settings, case, row, self.lang),
            "due": day_text(row.due_on, self.lang),
            "outer_day": day_text(outer, self.lang) if outer else "",
            "lost": spec.lost_in(self.lang) if spec is not None else "",
            "act": act_command(row.act, self.lang),
        }
        what = f"missed:{today.isoformat()}"
        duty = self.duty_room()
        leads = tuple(self.settings.duty.leads)
        if duty is not None:
            await self.messenger.send(
                duty,
                i18n.render(self.lang, key, mentions=leads, notice=not leads, **params),
                key=_key(row, what, duty),
            )
        else:
            log.warning("case %s: the duty room is not known yet; leads not told", case.number)
        room = self._actor_room(row, case)
        event_id = row.last_event_id
        if room is not None and room != duty:
            mentions = self._mentions(row, case)
            event_id = await self.messenger.send(
                room,
                i18n.render(self.lang, key, mentions=mentions, notice=not mentions, **params),
                key=_key(row, what, room),
            )
        log.warning("case %s: deadline %s passed without its act marked", case.number, row.name)
        async with self.sessions() as session, session.begin():
            if told is None:  # the trail says it once, the alarms repeat
                await repo.add_audit(
                    session,
                    case_id=case.id,
                    actor=audit.BOT_ACTOR,
                    action=audit.DEADLINE_MISSED,
                    now=now,
                    detail={"deadline": row.name, "due": row.due_on.isoformat()},
                )
            await store.note(
                session, deadline_id=row.id, missed_alerted_on=today, last_event_id=event_id
            )
        row.missed_alerted_on, row.last_event_id = today, event_id

    async def _no_meeting(self, row: Deadline, case: Case, now: datetime) -> None:
        """No meeting date is known: the duty leads are told once, not left to guess."""
        if row.no_meeting_told_at is not None:
            return
        duty = self.duty_room()
        if duty is None:
            return  # told once the duty room is known
        municipality = self.settings.municipality(case.municipality_id or "")
        leads = tuple(self.settings.duty.leads)
        await self.messenger.send(
            duty,
            i18n.render(
                self.lang,
                "deadline.no_meeting",
                number=case.number,
                label=label_of(self.settings, case, row, self.lang),
                municipality=municipality.name if municipality else (case.municipality_id or "?"),
                mentions=leads,
                notice=not leads,
            ),
            key=_key(row, "no-meeting", duty),
        )
        await self._note(row, no_meeting_told_at=now)

    def _about(
        self,
        row: Deadline,
        case: Case,
        key: str,
        key_no_meeting: str = "",
        *,
        mentions: tuple[str, ...] = (),
        notice: bool = True,
    ) -> i18n.Message:
        params = {
            "number": case.number,
            "label": label_of(self.settings, case, row, self.lang),
            "act": act_command(row.act, self.lang),
        }
        if row.due_on is None:
            return i18n.render(
                self.lang, key_no_meeting, mentions=mentions, notice=notice, **params
            )
        return due_message(self.lang, key, row, mentions=mentions, notice=notice, **params)

    # -- where, and who -------------------------------------------------------------------

    def _actor_room(self, row: Deadline, case: Case) -> str | None:
        """The room of whoever acts: the home municipality's intake room (the duty room
        when the case has no municipality or its room is not known yet), or the duty room."""
        if row.actor == "intake" and case.municipality_id is not None:
            for room_id, municipality_id in self.intake_rooms().items():
                if municipality_id == case.municipality_id:
                    return room_id
            log.warning("case %s: no intake room known; telling the duty room", case.number)
        return self.duty_room()

    def _mentions(self, row: Deadline, case: Case) -> tuple[str, ...]:
        if row.actor == "intake" and case.municipality_id is not None:
            municipality = self.settings.municipality(case.municipality_id)
            if municipality is not None:
                return tuple(municipality.intake_members)
        return tuple(self.settings.duty.leads)

    # -- meeting days ---------------------------------------------------------------------

    async def _resolve_meeting(self, row: Deadline, case: Case) -> None:
        """The last day of a next-meeting deadline from the config's ``meetings`` and the
        calendar (read again each time: a moved meeting moves the deadline)."""
        assert row.started_at is not None
        municipality = self.settings.municipality(case.municipality_id or "")
        if municipality is None:
            return
        days = set(municipality.meetings)
        days.update(await self._calendar_days(municipality.id, start_day(row.started_at)))
        due = count_due(parse_rule(row.rule), row.started_at, days)
        if due is None or (due.due_on, due.outer_limit) == (row.due_on, row.outer_limit):
            return
        async with self.sessions() as session, session.begin():
            await store.set_due(
                session, deadline_id=row.id, due_on=due.due_on, outer_limit=due.outer_limit
            )
        row.due_on, row.outer_limit = due.due_on, due.outer_limit

    async def _calendar_days(self, municipality_id: str, after: date) -> list[date]:
        if self.meetings is None:
            return []
        data = await self.meetings.calendar(municipality_id)
        if data is None:
            return []
        cached = self._parsed.get((municipality_id, after))
        if cached is not None and cached[0] == data:
            return cached[1]
        try:
            days = meeting_dates(data, after=after)
        except ValueError:
            log.warning("the meeting calendar of %s cannot be read", municipality_id)
            days = []
        self._parsed[(municipality_id, after)] = (data, days)
        return days

    async def _note(self, row: Deadline, **values: object) -> None:
        async with self.sessions() as session, session.begin():
            await store.note(session, deadline_id=row.id, **values)
        for name, value in values.items():
            setattr(row, name, value)


def _key(row: Deadline, what: str, room: str) -> str:
    """The idempotency key of one message about a deadline in one room."""
    return f"deadline:{row.id}:{what}@{room}"
