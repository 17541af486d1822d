"""The audit trail as people read it, and the access events the handlers record.

``!logg`` / ``!log`` in a case room shows the case's trail: Swedish time, who (the
name the config gives a decision-maker, else the Matrix id) and what, in words,
trimmed to the newest :data:`LOG_LIMIT` rows with a note saying how to get it all.
Viewing it is itself recorded.

The functions below the command are the one-line hooks other modules call to
record an access (a link opened, a document fetched, a question answered); the
actions and their detail keys are listed in :mod:`storage.audit`. Nothing here
writes personal data: question numbers, never answers.
"""

from __future__ import annotations

import string
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from config import Settings
from handlers import i18n
from handlers.case_state import CaseStatus
from handlers.commands import RoomKind, command
from handlers.context import LOCAL_TZ, Clock, Ctx
from handlers.messenger import Message, Messenger
from storage import audit, repo
from storage import escalation as steps
from storage.models import AuditEntry, EscalationStep, SigningRequest

if TYPE_CHECKING:
    from config.forms import FieldSpec, FormTemplate
    from handlers.dialogue import DialogueState

#: How many of the newest rows ``!logg`` shows (a Matrix message stays readable on a phone).
LOG_LIMIT = 40
#: A signing link opened again within this time by the same kind of visitor is the same
#: visit: one row, however often the page is reloaded (an unauthenticated visitor
#: cannot flood the chain).
LINK_OPENED_QUIET = timedelta(minutes=10)
#: A PDF viewer that fetches the document twice at once is one download.
DOWNLOAD_QUIET = timedelta(minutes=1)

_FORMATTER = string.Formatter()


# --- formatting -----------------------------------------------------------------------------


def local_stamp(moment: datetime) -> str:
    """A trail's time as Swedish users read it: local time with seconds."""
    return moment.astimezone(LOCAL_TZ).strftime("%Y-%m-%d %H:%M:%S")


def known_names(settings: Settings) -> dict[str, str]:
    """Names the config gives people (decision-makers and delegates) by Matrix id."""
    names: dict[str, str] = {}
    for municipality in settings.municipalities:
        people: Iterable[Any] = (
            *municipality.decision_makers,
            *getattr(municipality, "delegates", ()),
        )
        for person in people:
            names.setdefault(person.user_id, person.name)
    return names


def actor_label(lang: str, actor: str, names: Mapping[str, str]) -> str:
    """Who acted, for a reader: the bot, an unidentified visitor, the CLI, or a person."""
    if actor == audit.BOT_ACTOR:
        return i18n.text(lang, "audit.actor.bot")
    if actor == audit.WEB_ACTOR:
        return i18n.text(lang, "audit.actor.web")
    if actor.startswith("cli:"):
        return i18n.text(lang, "audit.actor.cli", user=actor.removeprefix("cli:"))
    name = names.get(actor)
    return f"{name} ({actor})" if name else actor


def _label(lang: str, key: str, fallback: str) -> str:
    return (
        i18n.text(lang, key)
        if key in i18n.CATALOGUES.get(lang, i18n.CATALOGUES["sv"])
        else fallback
    )


def _key(action: str, detail: Mapping[str, Any]) -> str:
    if action.startswith(audit.STATUS_PREFIX):
        return "audit.action.status"
    if action == audit.LINK_OPENED and detail.get("identified"):
        return "audit.action.link.opened.identified"
    if action == audit.DOCUMENT_DOWNLOADED and detail.get("signed"):
        return "audit.action.document.downloaded.signed"
    return f"audit.action.{action}"


def describe(
    lang: str, action: str, detail: Mapping[str, Any] | None, names: Mapping[str, str]
) -> str:
    """An action in words, with the detail's numbers and codes filled in."""
    detail = detail or {}
    key = _key(action, detail)
    catalogue = i18n.CATALOGUES.get(lang, i18n.CATALOGUES["sv"])
    if key not in catalogue:
        return action  # an action this version does not know: its code
    values: dict[str, str] = {k: str(v) for k, v in detail.items()}
    if action.startswith(audit.STATUS_PREFIX):
        status = action.removeprefix(audit.STATUS_PREFIX)
        values["status"] = _label(lang, f"status.{status}", status)
    if "signer" in detail:
        values["signer"] = actor_label(lang, str(detail["signer"]), names)
    if "channel" in detail:
        values["channel"] = _label(
            lang, f"audit.channel.{detail['channel']}", str(detail["channel"])
        )
    if "method" in detail:
        values["method"] = _label(lang, f"audit.method.{detail['method']}", str(detail["method"]))
    if "outcome" in detail:
        values["outcome"] = _label(
            lang, f"audit.outcome.{detail['outcome']}", str(detail["outcome"])
        )
    if action == audit.ESCALATION_STEP:
        step = str(detail.get("action", "?"))
        values["step"] = _label(lang, f"escalation.action.{step}", step)
    wanted = {name for _, name, _, _ in _FORMATTER.parse(catalogue[key]) if name}
    return i18n.text(lang, key, **{name: values.get(name, "?") for name in wanted})


def render_trail(
    lang: str,
    number: str,
    entries: Sequence[AuditEntry],
    names: Mapping[str, str],
    *,
    limit: int = LOG_LIMIT,
    reply_to: str | None = None,
) -> Message:
    """The trail as one message: a header, the newest ``limit`` rows, and a note
    when older rows were left out."""
    shown = list(entries)[-limit:] if limit > 0 else []
    parts = [i18n.render(lang, "audit.log.header", number=number)]
    if not entries:
        parts.append(i18n.render(lang, "audit.log.empty"))
    if len(shown) < len(entries):
        parts.append(
            i18n.render(
                lang, "audit.log.trimmed", shown=len(shown), total=len(entries), number=number
            )
        )
    parts.extend(
        i18n.render(
            lang,
            "audit.log.line",
            time=local_stamp(entry.at),
            actor=actor_label(lang, entry.actor, names),
            action=describe(lang, entry.action, entry.detail, names),
        )
        for entry in shown
    )
    return i18n.join(parts, reply_to=reply_to)


# --- the command ----------------------------------------------------------------------------


@dataclass
class AuditCommands:
    settings: Settings
    sessions: async_sessionmaker[AsyncSession]
    messenger: Messenger
    clock: Clock
    #: Sessions for read-only work (no write lock on SQLite); defaults to ``sessions``.
    readers: async_sessionmaker[AsyncSession] | None = None

    @command("logg", "log", rooms={RoomKind.CASE})
    async def show_log(self, ctx: Ctx) -> None:
        """The case's trail in the case room; the viewing is recorded once it is out."""
        assert ctx.case is not None
        async with (self.readers or self.sessions)() as session:
            entries = await repo.list_audit(session, case_id=ctx.case.id)
        message = render_trail(
            ctx.lang,
            ctx.case.number,
            entries,
            known_names(self.settings),
            reply_to=ctx.msg.event_id,
        )
        # Keyed by the event: handled again after a crash, the trail is not posted twice.
        await self.messenger.send(ctx.msg.room_id, message, key=f"{ctx.msg.event_id}:log")
        async with self.sessions() as session, session.begin():
            await ctx.claim(session)
            await repo.add_audit(
                session,
                case_id=ctx.case.id,
                actor=ctx.msg.sender,
                action=audit.TRAIL_VIEWED,
                now=self.clock(),
                detail={"shown": min(len(entries), LOG_LIMIT)},
            )


# --- access events: one call from where each happens ----------------------------------------


async def answer_recorded(
    session: AsyncSession,
    *,
    case_id: int,
    actor: str,
    form: FormTemplate,
    field: FieldSpec,
    state: DialogueState,
    now: datetime,
) -> None:
    """A report question answered, or answered again: which question, never the answer.
    Call it before the answer is put into ``state`` (so "again" can be told)."""
    await repo.add_audit(
        session,
        case_id=case_id,
        actor=actor,
        action=audit.ANSWER_CHANGED if field.id in state.answers else audit.ANSWER_GIVEN,
        now=now,
        detail={"question": form.number_of(field.id), "field": field.id},
    )


async def document_rendered(session: AsyncSession, request: SigningRequest, now: datetime) -> None:
    """The decision PDF made for one signer to review (its SHA-256 names it)."""
    await repo.add_audit(
        session,
        case_id=request.case_id,
        actor=audit.BOT_ACTOR,
        action=audit.DOCUMENT_RENDERED,
        now=now,
        detail={"request": request.id, "sha256": request.document_sha256},
    )


async def link_sent(
    sessions: async_sessionmaker[AsyncSession] | AsyncSession,
    request: SigningRequest,
    channel: str,
    now: datetime,
) -> None:
    """The signing link reached the signer over ``channel`` (in the caller's session, or
    in a transaction of its own)."""
    detail = {"request": request.id, "channel": channel}
    if isinstance(sessions, AsyncSession):
        await repo.add_audit(
            sessions,
            case_id=request.case_id,
            actor=audit.BOT_ACTOR,
            action=audit.LINK_SENT,
            now=now,
            detail=detail,
        )
        return
    async with sessions() as session, session.begin():
        await link_sent(session, request, channel, now)


async def link_opened(
    sessions: async_sessionmaker[AsyncSession],
    request: SigningRequest,
    *,
    identified: bool,
    now: datetime,
) -> None:
    """The signing page asked for the link's summary: once per link, kind of visitor
    (identified or not) and :data:`LINK_OPENED_QUIET`. Before identification nobody
    knows who opened it: the actor is the unidentified visitor."""
    async with sessions() as session, session.begin():
        await audit.append_unless_recent(
            session,
            case_id=request.case_id,
            actor=request.signer_user_id if identified else audit.WEB_ACTOR,
            action=audit.LINK_OPENED,
            now=now,
            detail={"request": request.id, "identified": identified},
            within=LINK_OPENED_QUIET,
        )


async def identification_started(
    session: AsyncSession, request: SigningRequest, method: str, now: datetime
) -> None:
    """Identification began (who it is, nobody knows yet)."""
    await repo.add_audit(
        session,
        case_id=request.case_id,
        actor=audit.WEB_ACTOR,
        action=audit.IDENTIFICATION_STARTED,
        now=now,
        detail={"request": request.id, "method": method},
    )


async def document_downloaded(
    sessions: async_sessionmaker[AsyncSession], request: SigningRequest, now: datetime
) -> None:
    """The identified signer fetched the decision (signed or as reviewed)."""
    async with sessions() as session, session.begin():
        await audit.append_unless_recent(
            session,
            case_id=request.case_id,
            actor=request.signer_user_id,
            action=audit.DOCUMENT_DOWNLOADED,
            now=now,
            detail={"request": request.id, "signed": request.signed_document is not None},
            within=DOWNLOAD_QUIET,
        )


async def escalation_step(session: AsyncSession, step: EscalationStep, now: datetime) -> None:
    """A policy step of the escalation (or a link's expiry) was carried out while the
    case waited for its decision; a channel's alert is :func:`link_sent`."""
    if step.kind == steps.CHANNEL:
        return
    case = await repo.get_case(session, case_id=step.case_id)
    if case is None or case.status != CaseStatus.AWAITING_SIGNATURE.value:
        return  # decided meanwhile: the step did nothing
    await repo.add_audit(
        session,
        case_id=step.case_id,
        actor=audit.BOT_ACTOR,
        action=audit.ESCALATION_STEP,
        now=now,
        detail={"step": step.id, "action": "expire" if step.kind == steps.EXPIRE else step.action},
    )
