"""``!överlämna`` and ``!mottaget``: the case goes to the home municipality (issue 9 §2).

The municipality where the person is staying handles the acute situation; the
home municipality is responsible for the case afterwards and must, for an LVU 6 §
custody, have the decision at the administrative court within a week (7 § LVU).
So the next working day everything must be in one place: ``!överlämna`` sends the
package to the intake room of the case's municipality, as encrypted attachments
(the room is end-to-end encrypted and its members are entitled to the case):

1. the signed decision as it was sealed (for a form nobody signs, a
   skyddsbedömning, the worker's sealed documentation instead);
2. the report (PDF);
3. the execution record (PDF; none for documentation, which is not carried out);
4. the case's timeline, from the audit trail, with nothing about the person;

then a message that mentions the intake members (case number, the decision's
title, the decision date: no personal data in the text, which a phone may show),
then a notice in the case room. The package is rendered and written to the
database in the transaction that moves the case EXECUTED (or RECORDED) ->
HANDED_OVER; every part is recorded once out, and sent under a key
(``handover:{case}:{part}``), so the periodic :meth:`HandoverCommands.check`
finishes a delivery a crash cut short and never posts a part twice.

An intake member acknowledges with ``!mottaget`` as a reply to the message (or
``!mottaget SJ-2026-0042``); the case room is told who and when. Until then the
intake room is reminded each working morning (08:00 Swedish time; Swedish public
holidays from the ``holidays`` library, :mod:`handlers.workdays`), and from the
second reminder on the duty leads are told too: a handover nobody acknowledges
is a defect, not a quiet state. Reminders are driven by the database
(``next_reminder_at``), so they survive restarts.
"""

from __future__ import annotations

import asyncio
import hashlib
import html
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypedDict

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from config import Settings
from config.settings import Municipality
from handlers import audit as audit_words
from handlers import i18n
from handlers.case_state import CaseStatus, transition
from handlers.commands import RoomKind, command
from handlers.context import LOCAL_TZ, Clock, Ctx
from handlers.errors import CaseNotFound, ConcurrentChange, HandlerError, NotAllowed
from handlers.messenger import Message, Messenger
from handlers.workdays import next_working_morning
from signing.package import TimelineLine, render_execution, render_report, render_timeline
from storage import audit, records, repo
from storage import decisions as decisions_repo
from storage import handover as store
from storage.handover import Attachment
from storage.models import Case, Handover

log = logging.getLogger(__name__)

#: The parts of the package in the order they are sent ("record": the sealed
#: documentation of a form nobody signs, in place of a decision).
PARTS = ("decision", "record", "report", "execution", "timeline")
#: The statuses a case is handed over from: carried out, or documented only.
HANDED_OVER_FROM = (CaseStatus.EXECUTED, CaseStatus.RECORDED)
_FILENAMES: Mapping[str, Mapping[str, str]] = {
    "sv": {
        "decision": "{number}-beslut.pdf",
        "record": "{number}-dokumentation.pdf",
        "report": "{number}-rapport.pdf",
        "execution": "{number}-verkstallighet.pdf",
        "timeline": "{number}-handelselogg.pdf",
    },
    "en": {
        "decision": "{number}-decision.pdf",
        "record": "{number}-record.pdf",
        "report": "{number}-report.pdf",
        "execution": "{number}-execution.pdf",
        "timeline": "{number}-timeline.pdf",
    },
}
#: From this reminder on, the duty leads are told as well.
LEADS_FROM_REMINDER = 2
#: Replaced by the intake members' mention pills in the HTML body.
_MEMBERS = "\x00members\x00"


class NotExecuted(HandlerError):
    key = "handover.not_executed"


class NoMunicipality(HandlerError):
    key = "handover.no_municipality"


class NoIntakeRoom(HandlerError):
    key = "handover.no_intake"


def part_key(case_id: int, part: str) -> str:
    """The idempotency key of one send of the handover of case ``case_id``."""
    return f"handover:{case_id}:{part}"


def with_mentions(
    lang: str, key: str, users: Sequence[str], *, reply_to: str | None = None, **params: Any
) -> Message:
    """A message that mentions ``users`` (``{members}`` in the template): their ids in
    the plain body, pills (matrix.to links) in the HTML and ``m.mentions``, so
    their phones ring."""
    message = i18n.render(lang, key, members=_MEMBERS, **params)
    pills = ", ".join(
        f'<a href="https://matrix.to/#/{html.escape(user)}">{html.escape(user)}</a>'
        for user in users
    )
    return Message(
        text=message.text.replace(_MEMBERS, ", ".join(users)),
        html=(message.html or "").replace(_MEMBERS, pills),
        mentions=tuple(users),
        notice=False,
        reply_to=reply_to,
    )


@dataclass
class HandoverCommands:
    settings: Settings
    sessions: async_sessionmaker[AsyncSession]
    messenger: Messenger
    clock: Clock
    #: The intake room of a municipality (by its id), once the bot has it.
    intake_room: Callable[[str], str | None]
    #: The duty room (for the leads' alert), once the bot has it.
    duty_room: Callable[[], str | None]
    readers: async_sessionmaker[AsyncSession] | None = None
    _in_flight: set[int] = field(default_factory=set, init=False, repr=False)

    @property
    def lang(self) -> str:
        return self.settings.duty.language

    def _reader(self) -> async_sessionmaker[AsyncSession]:
        return self.readers or self.sessions

    # -- !överlämna ---------------------------------------------------------------------

    @command("överlämna", "handover", rooms={RoomKind.CASE})
    async def hand_over(self, ctx: Ctx) -> None:
        if ctx.case is None:
            raise CaseNotFound()
        now = self.clock()
        async with self._reader()() as session:
            case = await repo.get_case(session, case_id=ctx.case.id)
            assert case is not None
            existing = await store.get_handover(session, case_id=case.id)
            if existing is None:
                municipality, room = self._destination(case)
                package = await self._gather(session, case, municipality, now)
        if existing is not None:
            await ctx.reply("handover.already", **_when(existing.requested_at))
            if existing.announced_at is None:
                await self.deliver(case.id)
            return
        documents = await asyncio.to_thread(package.render)
        async with self.sessions() as session, session.begin():
            await transition(
                session,
                case_id=case.id,
                old=case.status,
                new=CaseStatus.HANDED_OVER,
                actor=ctx.msg.sender,
                now=now,
            )
            if not await store.create_handover(
                session,
                case_id=case.id,
                municipality_id=municipality.id,
                room_id=room,
                requested_by=ctx.msg.sender,
                now=now,
                next_reminder_at=next_working_morning(now),
                documents=documents,
            ):
                raise ConcurrentChange()
            await repo.add_audit(
                session,
                case_id=case.id,
                actor=ctx.msg.sender,
                action=audit.HANDOVER_SENT,
                now=now,
                detail={
                    "municipality": municipality.id,
                    "files": {d.part: d.sha256 for d in documents},
                },
            )
            await ctx.claim(session)
        log.info("case %s: handed over to %s", case.number, municipality.id)
        try:
            await self.deliver(case.id)
        except Exception:
            log.exception("case %s: handover not delivered yet; the repair goes on", case.number)
            await ctx.reply("handover.pending")

    def _destination(self, case: Case) -> tuple[Municipality, str]:
        if case.status not in HANDED_OVER_FROM:
            raise NotExecuted()
        municipality = (
            self.settings.municipality(case.municipality_id) if case.municipality_id else None
        )
        if municipality is None:
            raise NoMunicipality()
        room = self.intake_room(municipality.id)
        if room is None:
            raise NoIntakeRoom(municipality=municipality.name)
        return municipality, room

    async def _gather(
        self, session: AsyncSession, case: Case, municipality: Municipality, now: datetime
    ) -> _Package:
        signed = await decisions_repo.list_signing_requests(
            session, case_id=case.id, statuses=["signed"]
        )
        record = await records.get_record(session, case_id=case.id)
        report = await repo.get_report(session, case_id=case.id)
        execution = await store.get_execution(session, case_id=case.id)
        trail = await repo.list_audit(session, case_id=case.id)
        # In the words of !logg: codes and numbers, never anything about the person.
        names = audit_words.known_names(self.settings)
        form = self.settings.forms.get(case.form_id or "")
        return _Package(
            number=case.number,
            lang=self.lang,
            title=form.title if form else (case.form_id or "-"),
            municipality_name=municipality.name,
            body_name=municipality.body_name,
            decision=signed[-1].signed_document if signed else None,
            record=record.document if record else None,
            report=report.submitted if report else None,
            execution=execution.record if execution else None,
            timeline=[
                TimelineLine(
                    at=entry.at,
                    actor=audit_words.actor_label(self.lang, entry.actor, names),
                    what=audit_words.describe(self.lang, entry.action, entry.detail, names),
                )
                for entry in trail
            ],
            at=now,
        )

    # -- delivery -----------------------------------------------------------------------

    async def deliver(self, case_id: int) -> bool:
        """Send what is still unsent of the handover; False if a delivery is under way."""
        if case_id in self._in_flight:
            return False
        self._in_flight.add(case_id)
        try:
            await self._deliver(case_id)
        finally:
            self._in_flight.discard(case_id)
        return True

    async def _deliver(self, case_id: int) -> None:
        async with self._reader()() as session:
            handover = await store.get_handover(session, case_id=case_id)
            case = await repo.get_case(session, case_id=case_id)
            documents = await store.list_documents(session, case_id=case_id)
            decided = await store.decided_at(session, case_id=case_id)
            if decided is None and (record := await records.get_record(session, case_id=case_id)):
                decided = record.recorded_at  # documentation: the day it was sealed
        assert handover is not None and case is not None
        municipality = self.settings.municipality(handover.municipality_id)
        members = municipality.intake_members if municipality else ()
        name = municipality.name if municipality else handover.municipality_id
        for document in documents:
            if document.sent_at is not None:
                continue
            event = await self.messenger.send_file(
                handover.room_id,
                document.data,
                document.filename,
                "application/pdf",
                key=part_key(case_id, document.part),
            )
            async with self.sessions() as session, session.begin():
                await store.mark_document_sent(
                    session, case_id=case_id, part=document.part, event_id=event, now=self.clock()
                )
        if handover.sent_at is None:
            form = self.settings.forms.get(case.form_id or "")
            message = with_mentions(
                self.lang,
                "handover.intake",
                members,
                number=case.number,
                title=form.title if form else (case.form_id or "-"),
                date=f"{decided.astimezone(LOCAL_TZ):%Y-%m-%d}" if decided else "-",
                files=", ".join(d.filename for d in documents),
                count=len(documents),
            )
            event = await self.messenger.send(
                handover.room_id, message, key=part_key(case_id, "message")
            )
            async with self.sessions() as session, session.begin():
                await store.mark_message_sent(
                    session, case_id=case_id, event_id=event, now=self.clock()
                )
        if handover.announced_at is None and case.room_id is not None:
            await self.messenger.send(
                case.room_id,
                i18n.render(
                    self.lang,
                    "handover.done",
                    number=case.number,
                    municipality=name,
                    count=len(documents),
                    files=", ".join(d.filename for d in documents),
                ),
                key=part_key(case_id, "announced"),
            )
            async with self.sessions() as session, session.begin():
                await store.mark_announced(session, case_id=case_id, now=self.clock())

    # -- !mottaget ----------------------------------------------------------------------

    @command("mottaget", "received", rooms={RoomKind.INTAKE})
    async def received(self, ctx: Ctx) -> None:
        """An intake member of the case's municipality acknowledges the handover."""
        now = self.clock()
        async with self.sessions() as session, session.begin():
            handover = await self._named(session, ctx)
            if handover is None or handover.room_id != ctx.msg.room_id:
                # Not handed over to this room (nor named): the same answer either way.
                found = None
            else:
                municipality = self.settings.municipality(handover.municipality_id)
                if municipality is None or ctx.msg.sender not in municipality.intake_members:
                    raise NotAllowed()
                found = await repo.get_case(session, case_id=handover.case_id)
                assert found is not None
                first = await store.receive(
                    session, case_id=found.id, user_id=ctx.msg.sender, now=now
                )
                if first:
                    await repo.add_audit(
                        session,
                        case_id=found.id,
                        actor=ctx.msg.sender,
                        action=audit.HANDOVER_RECEIVED,
                        now=now,
                    )
                    await ctx.claim(session)
                else:
                    earlier = await store.get_handover(session, case_id=found.id)
        if found is None:
            await ctx.reply("handover.received.unknown")
            return
        if not first:
            assert earlier is not None and earlier.received_at is not None
            await ctx.reply(
                "handover.received.already",
                number=found.number,
                user=earlier.received_by or "-",
                **_when(earlier.received_at),
            )
            return
        log.info("case %s: handover received", found.number)
        await ctx.reply(
            "handover.received.ack", number=found.number, user=ctx.msg.sender, **_when(now)
        )
        await self._post_receipt(found.id)

    async def _named(self, session: AsyncSession, ctx: Ctx) -> Handover | None:
        """The handover ``!mottaget`` means: a case number in the arguments, or the
        handover message (or its latest reminder) it replies to."""
        words = ctx.args.split()
        if words:
            number = words[0].strip(".,:;")
            case = await repo.get_case_by_number(session, number=number)
            if case is None:
                case = await repo.get_case_by_number(session, number=number.upper())
            return await store.get_handover(session, case_id=case.id) if case else None
        if ctx.msg.in_reply_to:
            return await store.find_by_event(
                session, room_id=ctx.msg.room_id, event_id=ctx.msg.in_reply_to
            )
        return None

    async def _post_receipt(self, case_id: int) -> None:
        """Tell the case room who acknowledged, once (keyed; recorded once out)."""
        async with self._reader()() as session:
            handover = await store.get_handover(session, case_id=case_id)
            case = await repo.get_case(session, case_id=case_id)
        if handover is None or case is None or handover.received_at is None:
            return
        if handover.receipt_posted_at is not None or case.room_id is None:
            return
        await self.messenger.send(
            case.room_id,
            i18n.render(
                self.lang,
                "handover.received.case",
                number=case.number,
                user=handover.received_by or "-",
                notice=False,
                mentions=tuple(p.user_id for p in case.participants),
                **_when(handover.received_at),
            ),
            key=part_key(case_id, "received"),
        )
        async with self.sessions() as session, session.begin():
            await store.mark_receipt_posted(session, case_id=case_id, now=self.clock())

    # -- the periodic repair and the reminders --------------------------------------------

    async def check(self) -> None:
        """At start-up and every minute: finish deliveries and receipts a crash cut
        short, and remind the intake room of handovers due a reminder."""
        async with self._reader()() as session:
            undelivered = await store.list_undelivered(session)
            receipts = await store.list_unposted_receipts(session)
        for handover in undelivered:
            try:
                await self.deliver(handover.case_id)
            except Exception:
                log.exception("handover of case id %d: delivery failed", handover.case_id)
        for handover in receipts:
            try:
                await self._post_receipt(handover.case_id)
            except Exception:
                log.exception("handover of case id %d: receipt not posted", handover.case_id)
        now = self.clock()
        async with self._reader()() as session:
            due = await store.list_due_reminders(session, now=now)
        for handover in due:
            try:
                await self._remind(handover, now)
            except Exception:
                log.exception("handover of case id %d: reminder failed", handover.case_id)

    async def _remind(self, handover: Handover, now: datetime) -> None:
        """Send reminder ``n`` (keyed: a repeat posts nothing), then count it."""
        n = handover.reminders + 1
        async with self._reader()() as session:
            case = await repo.get_case(session, case_id=handover.case_id)
        assert case is not None
        municipality = self.settings.municipality(handover.municipality_id)
        members = municipality.intake_members if municipality else ()
        name = municipality.name if municipality else handover.municipality_id
        sent = _when(handover.sent_at or handover.requested_at)
        event = await self.messenger.send(
            handover.room_id,
            with_mentions(
                self.lang,
                "handover.reminder",
                members,
                reply_to=handover.message_event_id,
                number=case.number,
                **sent,
            ),
            key=part_key(case.id, f"reminder:{n}"),
        )
        leads = self.settings.duty.leads
        duty_room = self.duty_room()
        told_leads = n >= LEADS_FROM_REMINDER and bool(leads) and duty_room is not None
        if told_leads:
            assert duty_room is not None
            await self.messenger.send(
                duty_room,
                with_mentions(
                    self.lang,
                    "handover.leads",
                    leads,
                    number=case.number,
                    municipality=name,
                    reminders=n,
                    **sent,
                ),
                key=part_key(case.id, f"leads:{n}"),
            )
        async with self.sessions() as session, session.begin():
            if await store.record_reminder(
                session,
                case_id=case.id,
                expected=handover.reminders,
                event_id=event,
                next_at=next_working_morning(now),
            ):
                await repo.add_audit(
                    session,
                    case_id=case.id,
                    actor=audit.BOT_ACTOR,
                    action=audit.HANDOVER_REMINDED,
                    now=now,
                    detail={"reminder": n, "leads": told_leads},
                )

    # -- !status --------------------------------------------------------------------------

    async def status_lines(self, case: Case) -> list[Message]:
        async with self._reader()() as session:
            handover = await store.get_handover(session, case_id=case.id)
        if handover is None:
            return []
        municipality = self.settings.municipality(handover.municipality_id)
        name = municipality.name if municipality else handover.municipality_id
        if handover.received_at is not None:
            return [
                i18n.render(
                    self.lang,
                    "handover.status.received",
                    municipality=name,
                    user=handover.received_by or "-",
                    **_when(handover.received_at),
                )
            ]
        if handover.sent_at is None:
            return [i18n.render(self.lang, "handover.status.sending", municipality=name)]
        return [
            i18n.render(
                self.lang,
                "handover.status.waiting",
                municipality=name,
                reminders=handover.reminders,
                **_when(handover.sent_at),
            )
        ]


@dataclass(frozen=True)
class _Package:
    """What the documents are rendered from, read in one session."""

    number: str
    lang: str
    title: str
    municipality_name: str
    body_name: str | None
    decision: bytes | None
    record: bytes | None
    report: dict[str, Any] | None
    execution: dict[str, Any] | None
    timeline: list[TimelineLine]
    at: datetime

    def render(self) -> list[Attachment]:
        """The attachments, in order (CPU work: the caller runs it in a worker thread)."""
        pdfs: dict[str, bytes] = {}
        if self.decision is not None:
            pdfs["decision"] = self.decision
        if self.record is not None:
            pdfs["record"] = self.record
        name, body = self.municipality_name, self.body_name
        if self.report is not None:
            pdfs["report"] = render_report(
                self.report, municipality_name=name, body_name=body, language=self.lang
            )
        if self.execution is not None:
            pdfs["execution"] = render_execution(
                self.execution, municipality_name=name, body_name=body, language=self.lang
            )
        pdfs["timeline"] = render_timeline(
            self.timeline,
            case_number=self.number,
            title=self.title,
            municipality_name=name,
            body_name=body,
            at=self.at,
            language=self.lang,
        )
        names = _FILENAMES.get(self.lang, _FILENAMES["sv"])
        return [
            Attachment(
                part=part,
                filename=names[part].format(number=self.number),
                data=pdfs[part],
                sha256=hashlib.sha256(pdfs[part]).hexdigest(),
            )
            for part in PARTS
            if part in pdfs
        ]


class _When(TypedDict):
    date: str
    time: str


def _when(moment: datetime) -> _When:
    """A moment as the messages show it: Swedish date and clock time."""
    local = moment.astimezone(LOCAL_TZ)
    return {"date": f"{local:%Y-%m-%d}", "time": f"{local:%H:%M}"}
