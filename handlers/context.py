"""What a command handler gets: the message, where it came from, and how to answer."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from handlers import i18n
from handlers.commands import RoomKind
from handlers.errors import AlreadyHandled
from handlers.messenger import IncomingMessage, Messenger
from storage import repo

if TYPE_CHECKING:
    from storage.models import Case

LOCAL_TZ = ZoneInfo("Europe/Stockholm")
Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)


def local_time(moment: datetime) -> str:
    """How a time is shown to Swedish users: local time, 24-hour clock."""
    return moment.astimezone(LOCAL_TZ).strftime("%Y-%m-%d %H:%M")


@dataclass(slots=True)
class Unit:
    """One unit of work: a session inside one write transaction, and what to send
    once it has committed (nothing is said about a change that might roll back)."""

    session: AsyncSession
    after: list[Callable[[], Awaitable[object]]] = field(default_factory=list)

    def later(self, action: Callable[[], Awaitable[object]]) -> None:
        self.after.append(action)


@asynccontextmanager
async def unit_of_work(sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[Unit]:
    """Open a unit; commit it, then run its ``after`` actions in order. If the body
    raises, the transaction rolls back and nothing queued is sent."""
    async with sessions() as session:
        async with session.begin():
            unit = Unit(session)
            yield unit
    for action in unit.after:
        await action()


@dataclass(slots=True)
class Ctx:
    msg: IncomingMessage
    kind: RoomKind
    args: str
    lang: str
    messenger: Messenger
    case: Case | None = None
    #: The dispatcher's unit of work when the command runs inside it (the hot path:
    #: answers and report commands); replies then wait for its commit.
    unit: Unit | None = None
    #: Whether the event was marked handled in a transaction that also did its work.
    claimed: bool = False
    replies: int = 0

    async def reply(self, key: str, **params: Any) -> None:
        """Answer in the room. The send is keyed by the event and the reply's number,
        so handling the same event again after a crash does not post it twice."""
        self.replies += 1
        message = i18n.render(self.lang, key, reply_to=self.msg.event_id, **params)
        room, idem = self.msg.room_id, f"{self.msg.event_id}:reply:{self.replies}"
        if self.unit is not None:

            async def send() -> None:
                await self.messenger.send(room, message, key=idem)

            self.unit.later(send)
            return
        await self.messenger.send(room, message, key=idem)

    async def claim(self, session: AsyncSession) -> None:
        """Mark the event handled inside ``session``'s transaction, the one doing the
        event's work: both commit or neither does. Raises :class:`AlreadyHandled`
        (rolling the work back) if it was handled before."""
        if self.claimed:
            return
        fresh = await repo.claim_event(
            session, event_id=self.msg.event_id, room_id=self.msg.room_id, now=utcnow()
        )
        if not fresh:
            raise AlreadyHandled()
        self.claimed = True
