"""Putting a decision into its case room: the signed PDF and the announcement, once.

The signing page's backend records the decision and then asks for it to be posted;
a crash in between (or a homeserver that is away) is repaired by :meth:`recover`
at start-up and every minute. File and announcement are tracked apart, so neither
is posted twice by this process.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from config import Settings
from handlers import i18n
from handlers.context import Clock
from handlers.messenger import Messenger
from storage import decisions, repo

log = logging.getLogger(__name__)


@dataclass
class OutcomePoster:
    settings: Settings
    sessions: async_sessionmaker[AsyncSession]
    messenger: Messenger
    clock: Clock
    _posting: dict[int, asyncio.Lock] = field(default_factory=dict, init=False, repr=False)

    @property
    def lang(self) -> str:
        return self.settings.duty.language

    async def post(self, request_id: int) -> None:
        """Put the decision into the case room, once (also after a crash in between)."""
        lock = self._posting.setdefault(request_id, asyncio.Lock())
        async with lock:  # the live request and the minute's recover() never both post
            await self._post(request_id)
        self._posting.pop(request_id, None)

    async def _post(self, request_id: int) -> None:
        async with self.sessions() as session:
            request = await decisions.get_signing_request(session, request_id=request_id)
            assert request is not None
            case = await repo.get_case(session, case_id=request.case_id)
            assert case is not None and case.room_id is not None
            workers = tuple(p.user_id for p in case.participants)
        if request.posted_at is not None:
            return
        if request.status == "signed":
            assert request.signed_document is not None
            if request.file_posted_at is None:
                await self.messenger.send_file(
                    case.room_id,
                    request.signed_document,
                    f"{case.number}-beslut.pdf",
                    "application/pdf",
                )
                async with self.sessions() as session, session.begin():
                    await decisions.mark_file_posted(
                        session, request_id=request_id, now=self.clock()
                    )
            await self.messenger.send(
                case.room_id,
                i18n.render(
                    self.lang,
                    "decision.signed",
                    number=case.number,
                    name=request.signer_name,
                    role=request.signer_role,
                    sha=request.signed_sha256 or "",
                    mentions=workers,
                    notice=False,
                ),
            )
        else:
            await self.messenger.send(
                case.room_id,
                i18n.render(
                    self.lang,
                    "decision.declined",
                    number=case.number,
                    name=request.signer_name,
                    reason=request.decision_reason or "",
                    mentions=workers,
                    notice=False,
                ),
            )
        async with self.sessions() as session, session.begin():
            await decisions.mark_posted(session, request_id=request_id, now=self.clock())

    async def recover(self) -> None:
        """At start-up and every minute: post decisions a crash kept from the room."""
        async with self.sessions() as session:
            unposted = await decisions.list_unposted(session)
        for request in unposted:
            try:
                await self.post(request.id)
            except Exception:
                log.exception("could not post the outcome of signing request %d", request.id)
