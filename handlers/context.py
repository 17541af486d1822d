"""What a command handler gets: the message, where it came from, and how to answer."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from handlers import i18n
from handlers.commands import RoomKind
from handlers.messenger import IncomingMessage, Messenger

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
class Ctx:
    msg: IncomingMessage
    kind: RoomKind
    args: str
    lang: str
    messenger: Messenger
    case: Case | None = None

    async def reply(self, key: str, **params: Any) -> str:
        return await self.messenger.send(
            self.msg.room_id, i18n.render(self.lang, key, reply_to=self.msg.event_id, **params)
        )
