"""Reaching people: the decision-maker's direct room, the case room, the duty leads.

Delivery is checked, not assumed: before a Matrix alert counts as sent, the bot
checks that the recipient has at least one device the trust policy shares room
keys with. Otherwise nio would encrypt for nobody and report success.

Every method takes an optional ``once``: what the message *is* (``step:41:remind:7``,
the reminder of step row 41 for request 7). The room it goes to is added, and the
result is the idempotency key of the send: a step that runs again after a crash, a
retry or a repair posts nothing new, and a message told in two rooms has a key in
each.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from config import Settings
from handlers import i18n
from handlers.context import Clock, local_time
from handlers.links import LinkSealer
from handlers.messenger import Messenger
from storage import decisions
from storage.models import Case, SigningRequest

log = logging.getLogger(__name__)


class Undeliverable(Exception):
    """None of the recipient's devices can decrypt what the bot would send."""


class LinkLost(Exception):
    """The link cannot be repeated (its sealing key was lost): a fresh one is needed."""


def send_key(once: str | None, room: str) -> str | None:
    """The idempotency key of ``once`` sent to ``room`` (None: no key, always posts)."""
    return None if once is None else f"{once}@{room}"


@dataclass
class DirectRooms:
    """The bot's encrypted direct room with each person, created once on first use."""

    sessions: async_sessionmaker[AsyncSession]
    messenger: Messenger
    clock: Clock
    _locks: dict[str, asyncio.Lock] = field(default_factory=dict, init=False, repr=False)

    async def get(self, user_id: str) -> str:
        async with self._locks.setdefault(user_id, asyncio.Lock()):
            async with self.sessions() as session:
                room = await decisions.get_direct_room(session, user_id=user_id)
            if room is None:
                room = await self.messenger.create_direct_room(user_id)
                async with self.sessions() as session, session.begin():
                    await decisions.set_direct_room(
                        session, user_id=user_id, room_id=room, now=self.clock()
                    )
            return room


@dataclass
class Alerter:
    """Every message about a waiting decision, in the installation's language."""

    settings: Settings
    messenger: Messenger
    rooms: DirectRooms
    sealer: LinkSealer
    #: The duty room's id once the bot has it (the composition root knows it).
    duty_room: Callable[[], str | None] = lambda: None

    @property
    def lang(self) -> str:
        return self.settings.duty.language

    def link(self, request: SigningRequest) -> str | None:
        token = self.sealer.open(request.token_sealed, token_hash=request.token_hash)
        return f"{self.settings.web.public_base_url}/s/{token}" if token else None

    async def alert_signer(
        self,
        request: SigningRequest,
        *,
        number: str,
        decision_type: str,
        reminder: bool,
        once: str | None = None,
    ) -> str:
        """The alert as an ``m.text`` mention in the signer's direct room; returns its
        event id (the first one's, when ``once`` was sent before). Raises
        :class:`Undeliverable` when no device of theirs can read it."""
        link = self.link(request)
        if link is None:
            raise LinkLost(request.id)
        room = await self.rooms.get(request.signer_user_id)
        if not await self.messenger.can_decrypt(room, request.signer_user_id):
            raise Undeliverable(request.signer_user_id)
        key = "escalation.reminder" if reminder else "decision.alert"
        return await self.messenger.send(
            room,
            i18n.render(
                self.lang,
                key,
                number=number,
                decision_type=decision_type,
                link=link,
                expires=local_time(request.expires_at),
                mentions=(request.signer_user_id,),
                notice=False,
            ),
            key=send_key(once, room),
        )

    async def tell_signer(
        self, user_id: str, key: str, *, once: str | None = None, **params: Any
    ) -> None:
        """A plain notice in a person's direct room (no ring)."""
        room = await self.rooms.get(user_id)
        await self.messenger.send(
            room, i18n.render(self.lang, key, **params), key=send_key(once, room)
        )

    async def tell_case(
        self,
        case: Case,
        key: str,
        *,
        mention: bool = False,
        once: str | None = None,
        **params: Any,
    ) -> None:
        if case.room_id is None:
            return
        mentions = tuple(p.user_id for p in case.participants) if mention else ()
        await self.messenger.send(
            case.room_id,
            i18n.render(self.lang, key, mentions=mentions, notice=not mention, **params),
            key=send_key(once, case.room_id),
        )

    async def tell_leads(self, key: str, *, once: str | None = None, **params: Any) -> None:
        """A mention of the duty leads in the duty room (their phones ring)."""
        room = self.duty_room()
        if room is None:
            log.warning("the duty room is not known yet; the leads were not told (%s)", key)
            return
        leads = tuple(self.settings.duty.leads)
        await self.messenger.send(
            room,
            i18n.render(self.lang, key, mentions=leads, notice=not leads, **params),
            key=send_key(once, room),
        )

    async def tell_case_and_leads(
        self, case: Case, key: str, *, once: str | None = None, **params: Any
    ) -> None:
        """Both places; a failure in one never keeps the other from being told."""
        for send in (
            lambda: self.tell_case(case, key, mention=True, once=once, **params),
            lambda: self.tell_leads(key, once=once, **params),
        ):
            try:
                await send()
            except Exception as exc:
                log.warning("case %s: could not tell (%s)", case.number, type(exc).__name__)

    async def send_code(self, user_id: str, number: str, code: str) -> None:
        """The one-time code of the matrix-code identification, in the direct room.

        Sent without an idempotency key: the provider gives no id of the challenge to
        key it by, and the code itself must not become one (the homeserver sees the
        transaction id; six digits are quickly guessed from a hash). Nothing repeats it
        either: each call is a new challenge with a new code.
        """
        room = await self.rooms.get(user_id)
        await self.messenger.send(
            room,
            i18n.render(
                self.lang, "auth.code", number=number, code=code, mentions=(user_id,), notice=False
            ),
        )
