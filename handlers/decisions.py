"""From a submitted report to a waiting decision, and what the worker can do then.

``!skicka`` renders the decision for the decision-maker on call (in a worker
thread) *before* anything changes; then the report's freezing, the status change,
the signing request and the escalation plan are written in one transaction, and
only after it commits is anyone alerted. So a failing render leaves the report
open, and a crash after the commit leaves due rows that the restart runs.

Who is asked is the form's ``signer``: the committee members on call for a
``committee_member`` form, the municipality's delegates in order for a ``delegate``
form (never a politician), and nobody for a ``none`` form, whose report is sealed as
the worker's record instead (:mod:`handlers.records`; the case becomes ``recorded``).

The signing page's backend is :mod:`handlers.signing_backend`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from config import Municipality, Settings
from handlers import i18n
from handlers.alerts import Alerter
from handlers.case_state import CaseStatus, transition
from handlers.commands import RoomKind, command
from handlers.context import Clock, Ctx
from handlers.errors import CaseNotFound, HandlerError
from handlers.escalation import Escalator, OnCall
from handlers.issuing import Issuer, RenderFailed, candidates, signer_kind_of
from handlers.links import token_hash
from handlers.messenger import Messenger
from handlers.records import NoSeal, Recorder
from storage import escalation as steps
from storage import repo
from storage.models import Case

__all__ = ["DecisionService", "Sent", "token_hash"]

log = logging.getLogger(__name__)

#: Runs inside the sending transaction (``!skicka`` freezes the report there); False
#: aborts it (someone else changed the report first).
BeforeSend = Callable[[AsyncSession], Awaitable[bool]]
#: The reaction keys that acknowledge an alert ("I am on it").
ACK_REACTIONS = frozenset({"✅", "✔️", "✔", "👍"})


class Sent(StrEnum):
    SENT = "sent"
    NOBODY_ON_CALL = "nobody_on_call"
    RENDER_FAILED = "render_failed"
    CHANGED = "changed"
    #: A ``none`` form: sealed as the worker's record, nobody asked.
    RECORDED = "recorded"
    #: A ``none`` form without a seal key: nothing was recorded.
    NO_SEAL = "no_seal"


class NotWaiting(HandlerError):
    key = "escalation.not_waiting"


@dataclass
class DecisionService:
    settings: Settings
    sessions: async_sessionmaker[AsyncSession]
    messenger: Messenger
    clock: Clock
    issuer: Issuer
    escalator: Escalator
    alerter: Alerter
    on_call: OnCall
    #: Seals the reports of ``none`` forms (the signing backend's; set by the wiring).
    records: Recorder | None = None

    @property
    def lang(self) -> str:
        return self.settings.duty.language

    async def direct_room(self, user_id: str) -> str:
        return await self.alerter.rooms.get(user_id)

    # -- sending for signature -----------------------------------------------------------

    async def send(
        self,
        case: Case,
        report: Mapping[str, Any],
        *,
        actor: str,
        before: BeforeSend | None = None,
        announce: Callable[[], Awaitable[None]] | None = None,
        once: str | None = None,
    ) -> Sent:
        """Render, then in one transaction: ``before``, the status change, the request and
        the escalation plan; then alert. Tells the case room when nobody can be asked.

        ``once`` says what this sending is (e.g. the ``!skicka`` event's id): it keys
        those notices, so the same command handled again does not post them twice. (The
        alerts are keyed by their rows, the announcement by the signing request.)"""
        now = self.clock()
        municipality = self.settings.municipality(case.municipality_id or "")
        kind = signer_kind_of(self.settings, report)
        if kind == "none":
            return await self._record(
                case, report, municipality, actor=actor, before=before, once=once
            )
        people = await candidates(kind, municipality, self.on_call, now) if municipality else []
        if kind == "delegate" and municipality is not None and not people:
            await self._no_delegate(case, report, municipality, once)
            return Sent.NOBODY_ON_CALL
        if municipality is None or not people:
            await self.alerter.tell_case(
                case,
                "decision.nobody_on_call",
                mention=True,
                once=_purpose(once, "nobody_on_call"),
                municipality=municipality.name if municipality else "–",
            )
            await self.alerter.tell_leads(
                "escalation.nobody_on_call_leads",
                once=_purpose(once, "nobody_on_call"),
                number=case.number,
                municipality=municipality.name if municipality else "–",
            )
            await self._keep_open(case)
            return Sent.NOBODY_ON_CALL
        maker = people[0]
        try:
            prepared = await self.issuer.prepare(report, municipality, maker)
        except RenderFailed as exc:
            log.error("case %s: the decision could not be rendered (%s)", case.number, exc)
            await self.alerter.tell_case(
                case, "escalation.render_failed", once=_purpose(once, "render_failed")
            )
            await self._keep_open(case)
            return Sent.RENDER_FAILED
        now = self.clock()  # the policy counts from the request, made after the render
        async with self.sessions() as session, session.begin():
            if before is not None and not await before(session):
                return Sent.CHANGED
            fresh = await repo.get_case(session, case_id=case.id)
            assert fresh is not None
            await transition(
                session,
                case_id=case.id,
                old=fresh.status,
                new=CaseStatus.AWAITING_SIGNATURE,
                actor=actor,
                now=now,
            )
            request = await self.issuer.create(session, case_id=case.id, prepared=prepared, now=now)
            await self.escalator.plan(
                session,
                case_id=case.id,
                request=request,
                municipality=municipality,
                maker=maker,
                now=now,
            )
            await repo.add_audit(
                session,
                case_id=case.id,
                actor="socialjour",
                action="signature.requested",
                now=now,
                detail={"request": request.id, "signer": maker.user_id},
            )
        log.info("case %s: signature requested", case.number)
        if announce is not None:
            try:
                await announce()
            except Exception as exc:  # the alert matters more than the confirmation
                log.warning("case %s: confirmation not sent (%s)", case.number, type(exc).__name__)
        await self.escalator.started(case.id)
        return Sent.SENT

    async def _no_delegate(
        self, case: Case, report: Mapping[str, Any], municipality: Municipality, once: str | None
    ) -> None:
        """A delegate form where the config names no delegate: the worker and the leads
        are told; no politician is asked instead (the form is not theirs to decide)."""
        form = self.settings.forms.get(str(report.get("form", {}).get("id", "")))
        await self.alerter.tell_case(
            case,
            "decision.no_delegate",
            mention=True,
            once=_purpose(once, "no_delegate"),
            municipality=municipality.name,
            title=form.title if form else "",
        )
        await self.alerter.tell_leads(
            "decision.no_delegate_leads",
            once=_purpose(once, "no_delegate"),
            number=case.number,
            municipality=municipality.name,
        )
        await self._keep_open(case)

    async def _record(
        self,
        case: Case,
        report: Mapping[str, Any],
        municipality: Municipality | None,
        *,
        actor: str,
        before: BeforeSend | None,
        once: str | None,
    ) -> Sent:
        """A ``none`` form: seal the report as the worker's record, then in one
        transaction freeze it, move the case to ``recorded`` and keep the PDF; then
        post it. No signing request, no escalation."""
        worker = str(report.get("submitted_by") or actor)
        form_id = str(report.get("form", {}).get("id", ""))
        now = self.clock()  # the moment of the record, printed and sealed
        try:
            if self.records is None:
                raise NoSeal()
            document = await self.records.make(
                report, municipality, case_number=case.number, worker=worker, at=now
            )
        except NoSeal:
            log.error("case %s: no seal key configured; the record was not made", case.number)
            await self.alerter.tell_case(case, "record.no_seal", once=_purpose(once, "no_seal"))
            await self._keep_open(case)
            return Sent.NO_SEAL
        except Exception as exc:
            log.error("case %s: the record could not be made (%s)", case.number, type(exc).__name__)
            await self.alerter.tell_case(
                case, "record.failed", once=_purpose(once, "record_failed")
            )
            await self._keep_open(case)
            return Sent.RENDER_FAILED
        assert self.records is not None
        async with self.sessions() as session, session.begin():
            if before is not None and not await before(session):
                return Sent.CHANGED
            fresh = await repo.get_case(session, case_id=case.id)
            assert fresh is not None
            await transition(
                session,
                case_id=case.id,
                old=fresh.status,
                new=CaseStatus.RECORDED,
                actor=actor,
                now=now,
            )
            await self.records.store(
                session, case_id=case.id, form_id=form_id, worker=worker, at=now, document=document
            )
        log.info("case %s: sealed as the worker's record", case.number)
        try:
            await self.records.post(case.id)
        except Exception as exc:  # stored: recover() posts it within a minute
            log.warning(
                "case %s: the record was not posted yet (%s)", case.number, type(exc).__name__
            )
        return Sent.RECORDED

    async def _keep_open(self, case: Case) -> None:
        """Nothing was sent: the report stays (or becomes again) open for editing."""
        async with self.sessions() as session, session.begin():
            fresh = await repo.get_case(session, case_id=case.id)
            if fresh is not None and fresh.status == CaseStatus.DRAFTING.value:
                await repo.reopen_report(session, case_id=case.id, now=self.clock())

    async def request_signature(self, case: Case, report: Mapping[str, Any]) -> Sent:
        """Send a case whose report is already frozen (drafting -> awaiting signature)."""
        return await self.send(case, report, actor="socialjour")

    # -- the worker's commands while it waits --------------------------------------------

    @command("påminn", "remind", rooms={RoomKind.CASE})
    async def remind(self, ctx: Ctx) -> None:
        case = _waiting(ctx)
        # Handled with the rows it plans: delivered again after a crash, it plans none.
        count = await self.escalator.remind_now(case.id, claim=ctx.claim)
        if count == 0:
            raise NotWaiting()
        await ctx.reply("escalation.remind_done", count=count)

    @command("resend", rooms={RoomKind.CASE})
    async def resend(self, ctx: Ctx) -> None:
        case = _waiting(ctx)
        names = await self.escalator.resend(case.id, ctx.msg.sender, claim=ctx.claim)
        if not names:
            raise NotWaiting()
        await ctx.reply("escalation.resent", names=", ".join(names))

    async def status_lines(self, case: Case) -> list[i18n.Message]:
        if case.status != CaseStatus.AWAITING_SIGNATURE.value:
            return []
        return await self.escalator.status_lines(case.id)

    # -- acknowledgements ------------------------------------------------------------------

    @command("tittar", "ack", rooms={RoomKind.DIRECT})
    async def acknowledge(self, ctx: Ctx) -> None:
        count = await self.escalator.acknowledge(ctx.msg.sender, "matrix")
        await ctx.reply("escalation.ack_done" if count else "escalation.ack_nothing")

    async def reaction(self, sender: str, event_id: str, key: str) -> bool:
        """A ✅ on an alert by the person it was sent to acknowledges it."""
        if key.strip() not in ACK_REACTIONS:
            return False
        async with self.sessions() as session:
            request = await steps.request_by_alert(session, event_id=event_id)
        if request is None or request.signer_user_id != sender:
            return False
        return bool(await self.escalator.acknowledge(sender, "reaction", request_ids=[request.id]))


def _purpose(once: str | None, purpose: str) -> str | None:
    return None if once is None else f"{once}:{purpose}"


def _waiting(ctx: Ctx) -> Case:
    if ctx.case is None:
        raise CaseNotFound()
    if ctx.case.status != CaseStatus.AWAITING_SIGNATURE.value:
        raise NotWaiting()
    return ctx.case
