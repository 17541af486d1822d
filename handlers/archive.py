"""Closing, archiving and retention (issue 9 §5).

A case is done with when the home municipality has the case and no legal deadline
is left: the handover is acknowledged (``!mottaget``, and the case room has been told)
and :func:`handlers.deadlines.open_deadlines` is empty. Then, in one :meth:`Archiver.sweep`:

1. **close**: HANDED_OVER -> CLOSED through the state machine (its audit row);
2. **archive**: the case room is told (why, that it is read-only now, when the bot's
   copy of the personal data goes) and the intake room hears the case number; then
   the room is made read-only (members read, only the bot posts) and the case is
   marked archived with its audit row. Sends are keyed (``archive:{case}:...``), the
   lock changes nothing the second time, and the mark comes last, so a crash in
   between repeats the step without a second message;
3. **retention**: ``[retention] after_close`` after a case ended (closed, or
   cancelled), the personal data the bot holds for it is deleted
   (:func:`storage.retention.purge_case`, one case per transaction) and an audit row
   says so. The trail holds no personal data and is never touched, so the chain stays
   valid.

How a case reaches retention: a case closes here once it is handed over, received and
its deadlines are done; a case that ends otherwise is cancelled with ``!avbryt``
(a draft dropped, a decision withdrawn, or a declined decision the worker does not
revise: DECLINED -> CANCELLED) and its retention counts from the cancellation. A case
closed by another path (the state machine allows DECLINED, SIGNED, RECORDED and
EXECUTED -> CLOSED) is archived and purged the same way.

The sweep is driven by the database alone: the bot runs it at start-up, every minute,
after each command it handles (a ``!mottaget`` or a deadline marked done may be what
completes a case) and when a purge falls due; it is safe to run twice, or after any
restart.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from config import Settings
from handlers import deadlines, i18n
from handlers.case_state import CaseStatus, transition
from handlers.context import LOCAL_TZ, Clock
from handlers.errors import ConcurrentChange
from handlers.messenger import Messenger
from storage import audit, repo, retention
from storage import handover as handover_store
from storage.models import Case

__all__ = ["Archiver", "archive_key"]

log = logging.getLogger(__name__)

BOT = audit.BOT_ACTOR


def archive_key(case_id: int, part: str) -> str:
    """The idempotency key of one message sent when case ``case_id`` closes."""
    return f"archive:{case_id}:{part}"


@dataclass
class Archiver:
    settings: Settings
    sessions: async_sessionmaker[AsyncSession]
    messenger: Messenger
    clock: Clock
    #: Read-only sessions for the look-ups (no write lock on SQLite).
    readers: async_sessionmaker[AsyncSession] | None = None
    #: One sweep at a time (start-up, the minute's run and a nudge may meet).
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock, init=False, repr=False)

    @property
    def lang(self) -> str:
        return self.settings.duty.language

    @property
    def keep_for(self) -> timedelta:
        return self.settings.retention.after_close

    def _reader(self) -> async_sessionmaker[AsyncSession]:
        return self.readers or self.sessions

    async def sweep(self) -> datetime | None:
        """Close what is done, archive what closed, purge what is due; returns when the
        next purge falls due (None: no ended case is waiting for one). One failing case
        never stops the others; it is tried again on the next sweep."""
        async with self._lock:
            await self.close_due()
            await self.archive_closed()
            await self.purge_due()
            return await self.next_purge()

    # -- 1. closing ----------------------------------------------------------------------

    async def close_due(self) -> list[int]:
        """Close every received handover's case with no deadline open; their ids."""
        async with self._reader()() as session:
            candidates = [
                case_id
                for case_id in await retention.closable(session)
                if not await deadlines.open_deadlines(session, case_id=case_id)
            ]
        closed: list[int] = []
        for case_id in candidates:
            try:
                if await self._close(case_id):
                    closed.append(case_id)
            except Exception:
                log.exception("case id %d: could not be closed; trying again", case_id)
        return closed

    async def _close(self, case_id: int) -> bool:
        now = self.clock()
        async with self.sessions() as session, session.begin():
            # A deadline never opens again once done or void, so none can have opened
            # since the look-up; asked again here all the same, where the move is made.
            if await deadlines.open_deadlines(session, case_id=case_id):
                return False
            try:
                await transition(
                    session,
                    case_id=case_id,
                    old=CaseStatus.HANDED_OVER,
                    new=CaseStatus.CLOSED,
                    actor=BOT,
                    now=now,
                )
            except ConcurrentChange:
                return False  # closed by another sweep a moment ago
        log.info("case id %d: closed (handover received, no deadline open)", case_id)
        return True

    # -- 2. archiving ----------------------------------------------------------------------

    async def archive_closed(self) -> list[int]:
        """Tell and lock the room of every closed case not archived yet; their ids."""
        async with self._reader()() as session:
            cases = await retention.unarchived(session)
        archived: list[int] = []
        for case in cases:
            try:
                if await self._archive(case):
                    archived.append(case.id)
            except Exception:
                log.exception("case %s: room not locked yet; trying again", case.number)
        return archived

    async def _archive(self, case: Case) -> bool:
        async with self._reader()() as session:
            handover = await handover_store.get_handover(session, case_id=case.id)
            ended = await retention.ended_at(session, case_id=case.id)
        received = handover is not None and handover.received_at is not None
        purge_on = (ended or self.clock()) + self.keep_for
        if case.room_id is not None:
            reason = i18n.text(self.lang, "archive.reason.received") if received else ""
            await self.messenger.send(
                case.room_id,
                i18n.render(
                    self.lang,
                    "archive.closed",
                    number=case.number,
                    reason=reason,
                    purge_date=f"{purge_on.astimezone(LOCAL_TZ):%Y-%m-%d}",
                ),
                key=archive_key(case.id, "closed"),
            )
        if handover is not None and received:
            await self.messenger.send(
                handover.room_id,
                i18n.render(self.lang, "archive.intake", number=case.number),
                key=archive_key(case.id, "intake"),
            )
        if case.room_id is not None:
            await self.messenger.close_room(case.room_id)
        now = self.clock()
        async with self.sessions() as session, session.begin():
            if not await retention.mark_archived(session, case_id=case.id, now=now):
                return False
            await repo.add_audit(
                session, case_id=case.id, actor=BOT, action=audit.CASE_ARCHIVED, now=now
            )
        log.info("case %s: archived, its room is read-only", case.number)
        return True

    # -- 3. retention ----------------------------------------------------------------------

    async def purge_due(self) -> list[int]:
        """Delete the personal data of every ended case whose retention has run out,
        one case per transaction, then scrub the database file of the old copies; the
        ids of those purged now."""
        now = self.clock()
        async with self._reader()() as session:
            due = await retention.due_for_purge(session, ended_before=now - self.keep_for)
            engine = session.bind
        purged: list[int] = []
        for case_id in due:
            try:
                if await self._purge(case_id, now):
                    purged.append(case_id)
            except Exception:
                log.exception("case id %d: personal data not deleted yet; trying again", case_id)
        if purged and isinstance(engine, AsyncEngine):
            try:
                await retention.scrub(engine)
            except Exception:
                log.exception("the database file was not scrubbed; the next purge tries again")
        return purged

    async def _purge(self, case_id: int, now: datetime) -> bool:
        async with self.sessions() as session, session.begin():
            deleted = await retention.purge_case(session, case_id=case_id, now=now)
            if deleted is None:
                return False  # purged by another run meanwhile
            await repo.add_audit(
                session,
                case_id=case_id,
                actor=BOT,
                action=audit.PERSONAL_DATA_DELETED,
                now=now,
                # Kinds and row counts only, e.g. {"report": 1, "decisions": 2}.
                detail={"what": deleted},
            )
        log.info("case id %d: personal data deleted (retention)", case_id)
        return True

    async def next_purge(self) -> datetime | None:
        async with self._reader()() as session:
            ended = await retention.next_purge(session)
        return None if ended is None else ended + self.keep_for
