"""Putting a decision into its case room: the signed PDF and the announcement, once.

The signing page's backend records the decision, answers the signer and leaves
the posting to a background task here (:meth:`OutcomePoster.post_soon`): a slow
or absent homeserver must not keep the signer's page waiting. A crash, a failure
or a post that runs out of time is repaired by :meth:`recover` at start-up and
every minute.

File and announcement are tracked apart in the database, and each is sent with
an idempotency key (a Matrix transaction id): a retry after a crash between the
send and the database write that records it posts nothing twice.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from config import Settings
from handlers import i18n
from handlers.context import Clock
from handlers.messenger import Messenger
from storage import decisions, repo

log = logging.getLogger(__name__)

#: How long one attempt to post a decision may take. The Matrix client retries a
#: send until the homeserver answers; past this the attempt ends and the next
#: minute's :meth:`OutcomePoster.recover` tries again (with the same keys).
POST_TIME_LIMIT = 60.0


def pdf_key(request_id: int) -> str:
    """The idempotency key of the signed PDF of signing request ``request_id``."""
    return f"decision:{request_id}:pdf"


def announcement_key(request_id: int) -> str:
    """The idempotency key of the message that says how ``request_id`` was decided."""
    return f"decision:{request_id}:announcement"


@dataclass
class OutcomePoster:
    settings: Settings
    sessions: async_sessionmaker[AsyncSession]
    messenger: Messenger
    clock: Clock
    time_limit: float = POST_TIME_LIMIT
    #: Told the seconds from a signature to its PDF in the case room (the bot's metrics).
    observe_sign_to_pdf: Callable[[float], None] | None = None
    #: Signing requests being posted right now (by a background task or recover()).
    _in_flight: set[int] = field(default_factory=set, init=False, repr=False)
    #: The background posts; kept so they are not garbage-collected mid-way.
    _tasks: dict[int, asyncio.Task[None]] = field(default_factory=dict, init=False, repr=False)

    @property
    def lang(self) -> str:
        return self.settings.duty.language

    def post_soon(self, request_id: int) -> None:
        """Post the decision in a background task; the caller does not wait for Matrix."""
        if request_id in self._tasks:
            return
        task = asyncio.create_task(
            self._post_logged(request_id), name=f"post-decision-{request_id}"
        )
        self._tasks[request_id] = task

        def forget(done: asyncio.Task[None]) -> None:
            if self._tasks.get(request_id) is done:
                del self._tasks[request_id]

        task.add_done_callback(forget)

    async def settled(self) -> None:
        """Wait until the background posts under way have ended (posted or failed)."""
        while self._tasks:
            await asyncio.gather(*self._tasks.values(), return_exceptions=True)

    async def close(self) -> None:
        """Stop the background posts (at shutdown); recover() finishes them next start."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _post_logged(self, request_id: int) -> None:
        try:
            await self.post(request_id)
        except TimeoutError:
            log.warning(
                "signing request %d: posting to the case room took over %g s; "
                "recover() tries again",
                request_id,
                self.time_limit,
            )
        except Exception:
            # The decision stands; recover() posts it within a minute.
            log.exception("signing request %d: posting to the case room failed", request_id)

    async def post(self, request_id: int) -> bool:
        """Put the decision into the case room, once (also after a crash in between).

        False, at once, when this decision is being posted already: the post under
        way finishes the job (or fails, and the next recover() tries again).
        Raises TimeoutError after :attr:`time_limit` seconds.
        """
        if request_id in self._in_flight:
            return False
        self._in_flight.add(request_id)
        try:
            async with asyncio.timeout(self.time_limit):
                await self._post(request_id)
        finally:
            self._in_flight.discard(request_id)
        return True

    async def _post(self, request_id: int) -> None:
        async with self.sessions() as session:
            request = await decisions.get_signing_request(session, request_id=request_id)
            assert request is not None
            case = await repo.get_case(session, case_id=request.case_id)
            assert case is not None and case.room_id is not None
            workers = tuple(p.user_id for p in case.participants)
        if request.posted_at is not None:
            return
        # The signed decision, or a refusal's own sealed decision (issue 9): the file's record.
        if request.signed_document is not None and request.file_posted_at is None:
            suffix = "beslut" if request.status == "signed" else "beslut-avslag"
            await self.messenger.send_file(
                case.room_id,
                request.signed_document,
                f"{case.number}-{suffix}.pdf",
                "application/pdf",
                key=pdf_key(request_id),
            )
            async with self.sessions() as session, session.begin():
                await decisions.mark_file_posted(session, request_id=request_id, now=self.clock())
            if request.status == "signed":
                self._observe_posted(request.decided_at)
        if request.status == "signed":
            assert request.signed_document is not None
            message = i18n.render(
                self.lang,
                "decision.signed",
                number=case.number,
                name=request.signer_name,
                role=request.signer_role,
                sha=request.signed_sha256 or "",
                mentions=workers,
                notice=False,
            )
        else:
            message = i18n.render(
                self.lang,
                "decision.refused" if request.signed_document else "decision.declined",
                number=case.number,
                name=request.signer_name,
                reason=request.decision_reason or "",
                mentions=workers,
                notice=False,
                **({"sha": request.signed_sha256 or ""} if request.signed_document else {}),
            )
        await self.messenger.send(case.room_id, message, key=announcement_key(request_id))
        async with self.sessions() as session, session.begin():
            await decisions.mark_posted(session, request_id=request_id, now=self.clock())

    def _observe_posted(self, decided_at: datetime | None) -> None:
        if self.observe_sign_to_pdf is None or decided_at is None:
            return
        try:
            self.observe_sign_to_pdf((self.clock() - decided_at).total_seconds())
        except Exception:
            log.exception("could not record the time from a signature to its PDF")

    async def recover(self) -> None:
        """At start-up and every minute: post decisions a crash kept from the room.

        A decision whose post is under way is left to it.
        """
        async with self.sessions() as session:
            unposted = await decisions.list_unposted(session)
        for request in unposted:
            try:
                await self.post(request.id)
            except TimeoutError:
                log.warning(
                    "signing request %d: posting took over %g s; trying again in a minute",
                    request.id,
                    self.time_limit,
                )
            except Exception:
                log.exception("could not post the outcome of signing request %d", request.id)
