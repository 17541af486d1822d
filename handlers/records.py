"""A report nobody signs, sealed as the worker's record (a form whose ``signer`` is "none").

A skyddsbedömning is the worker's assessment and documentation, not a decision of
the committee or of a delegate: ``!skicka`` makes no signing request and starts no
escalation. The report is rendered as "Dokumentation ... Dokumenterat av {worker}"
(:func:`handlers.issuing.record_for`, in a worker thread) and sealed with the
installation's seal, the worker's Matrix identity inside as evidence, *before*
anything changes; then :meth:`handlers.decisions.DecisionService.send` freezes the
report, moves the case to ``recorded`` and stores the sealed PDF in one transaction,
and only after the commit is it posted to the case room (:meth:`Recorder.post`).

Posting is tracked in the database (file, then announcement) and each send has an
idempotency key, so a crash in between is finished by :meth:`Recorder.recover` (at
start-up and every minute, from the signing backend's ``recover``) without posting
anything twice, as :mod:`handlers.outcomes` does for decisions.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from config import Municipality, Settings
from handlers import i18n
from handlers.context import Clock
from handlers.issuing import record_for, settings_for_render
from handlers.messenger import Messenger
from storage import audit, records, repo

if TYPE_CHECKING:
    from signing.seal import Seal

log = logging.getLogger(__name__)

#: How one attempt to post a record may take before the next recover() tries again.
POST_TIME_LIMIT = 60.0
#: How the worker identified, on the seal's stamp.
_METHOD = {"sv": "Matrix (betrodd enhet)", "en": "Matrix (trusted device)"}
_ROLE = {"sv": "Handläggare", "en": "Social worker"}


class NoSeal(Exception):
    """No seal key is configured: a record cannot be sealed."""


def pdf_key(case_id: int) -> str:
    """The idempotency key of the sealed record of case ``case_id``."""
    return f"record:{case_id}:pdf"


def announcement_key(case_id: int) -> str:
    return f"record:{case_id}:announcement"


@dataclass
class Recorder:
    settings: Settings
    sessions: async_sessionmaker[AsyncSession]
    messenger: Messenger
    clock: Clock
    #: The installation's seal, or None when none is configured (the signing backend's).
    seal: Callable[[], Seal | None]
    time_limit: float = POST_TIME_LIMIT
    _in_flight: set[int] = field(default_factory=set, init=False, repr=False)

    @property
    def lang(self) -> str:
        return self.settings.duty.language

    async def make(
        self,
        report: Mapping[str, Any],
        municipality: Municipality | None,
        *,
        case_number: str,
        worker: str,
        at: datetime,
    ) -> bytes:
        """The report rendered as ``worker``'s record of ``at`` and sealed (both off the
        event loop). Raises :class:`NoSeal` without a seal key; other errors as they come."""
        seal = self.seal()
        if seal is None:
            raise NoSeal()
        from signing.seal import StampInfo

        # reportlab: where the seal works (its process when it has any).
        pdf = await seal.run(
            record_for,
            settings_for_render(self.settings, report, seal),
            report,
            municipality,
            worker=worker,
            recorded_at=at,
        )
        return await seal.sign(
            pdf,
            stamp=StampInfo(
                signer_name=worker,
                signer_role=_ROLE.get(self.lang, _ROLE["sv"]),
                method_label=_METHOD.get(self.lang, _METHOD["sv"]),
                signed_at=at,
                case_number=case_number,
                language=self.lang,
                record=True,
            ),
            # The worker sent !skicka from a device the bot trusts (the dispatcher
            # refuses commands from others): that is how they are identified.
            evidence={
                "method": "matrix",
                "subject": worker,
                "at": at.isoformat(),
                "trust": self.settings.matrix.trust,
                "record": {"form": str(report.get("form", {}).get("id", ""))},
            },
        )

    async def store(
        self,
        session: AsyncSession,
        *,
        case_id: int,
        form_id: str,
        worker: str,
        at: datetime,
        document: bytes,
    ) -> str:
        """In the caller's transaction: the sealed record and its audit row. Returns
        the record's SHA-256."""
        sha = hashlib.sha256(document).hexdigest()
        await records.add_record(
            session,
            case_id=case_id,
            form_id=form_id,
            recorded_by=worker,
            recorded_at=at,
            document=document,
            sha256=sha,
        )
        await repo.add_audit(
            session,
            case_id=case_id,
            actor=worker,
            action=audit.RECORD_SEALED,
            now=at,
            detail={"form": form_id, "sha256": sha},
        )
        return sha

    async def post(self, case_id: int) -> bool:
        """Put the sealed record and its announcement into the case room, once.

        False when a post of the same record is under way (it finishes the job).
        Raises TimeoutError after :attr:`time_limit` seconds.
        """
        if case_id in self._in_flight:
            return False
        self._in_flight.add(case_id)
        try:
            async with asyncio.timeout(self.time_limit):
                await self._post(case_id)
        finally:
            self._in_flight.discard(case_id)
        return True

    async def _post(self, case_id: int) -> None:
        async with self.sessions() as session:
            record = await records.get_record(session, case_id=case_id)
            case = await repo.get_case(session, case_id=case_id)
            workers = tuple(p.user_id for p in case.participants) if case else ()
        if record is None or record.posted_at is not None:
            return
        assert case is not None and case.room_id is not None
        if record.file_posted_at is None:
            await self.messenger.send_file(
                case.room_id,
                record.document,
                f"{case.number}-dokumentation.pdf",
                "application/pdf",
                key=pdf_key(case_id),
            )
            async with self.sessions() as session, session.begin():
                await records.mark_file_posted(session, case_id=case_id, now=self.clock())
        form = self.settings.forms.get(record.form_id)
        message = i18n.render(
            self.lang,
            "record.sealed",
            number=case.number,
            title=form.title if form else record.form_id,
            sha=record.sha256,
            mentions=workers,
            notice=False,
        )
        await self.messenger.send(case.room_id, message, key=announcement_key(case_id))
        async with self.sessions() as session, session.begin():
            await records.mark_posted(session, case_id=case_id, now=self.clock())

    async def recover(self) -> None:
        """At start-up and every minute: post records a crash kept from the room."""
        async with self.sessions() as session:
            unposted = await records.list_unposted(session)
        for record in unposted:
            try:
                await self.post(record.case_id)
            except TimeoutError:
                log.warning(
                    "case %d: posting the record took too long; again in a minute", record.case_id
                )
            except Exception:
                log.exception("could not post the record of case %d", record.case_id)
