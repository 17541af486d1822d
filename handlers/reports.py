"""The guided report in a case room: asking, taking answers, back, edit, skip, submit.

The rules live in :mod:`handlers.dialogue`; this module loads the state, applies
one step and records what it will ask next, all in one unit of work (the event's
claim included; compare-and-set, so two people answering at once cannot corrupt
it), and only after the commit speaks. Every question is sent with an idempotency
key made of the case and the report version that asked it, and confirmed in the
state (``asked_sent``) once out. A crash in between is repaired at start-up by
:meth:`ReportCommands.resume`, which sends the same keys again: the homeserver
answers a repeat with the first event, so the worker never sees a question twice.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from config import Settings
from config.forms import FieldSpec, FormTemplate
from handlers import audit, dialogue, i18n
from handlers.case_state import CaseStatus, transition
from handlers.commands import RoomKind, command
from handlers.context import Clock, Ctx, Unit, unit_of_work
from handlers.decisions import DecisionService, Sent
from handlers.dialogue import DialogueState
from handlers.errors import CaseNotFound, ConcurrentChange, HandlerError
from handlers.fields import InvalidAnswer, parse_answer
from handlers.messenger import IncomingRedaction, IncomingVote, Message, Messenger, Poll
from storage import repo
from storage.audit import ANSWER_CHANGED
from storage.models import Case

log = logging.getLogger(__name__)

#: ``DialogueState.asked`` while the form-choice question is out.
FORM_CHOICE = "#form"
#: How long after a report step start-up still sends its question again under the same
#: keys (Synapse deduplicates transaction ids for 24 hours; see bot/sending.py).
RESEND_WINDOW = timedelta(hours=20)


class ReportLocked(HandlerError):
    key = "report.locked"


@dataclass
class Loaded:
    case: Case
    state: DialogueState
    version: int | None
    updated_at: datetime | None = None


@dataclass
class ReportCommands:
    settings: Settings
    sessions: async_sessionmaker[AsyncSession]
    messenger: Messenger
    clock: Clock
    #: Sends a submitted report for signature; without it (unit tests of the dialogue)
    #: ``!skicka`` only freezes the report.
    decisions: DecisionService | None = None
    #: Sessions for read-only work (no write lock on SQLite); defaults to ``sessions``.
    readers: async_sessionmaker[AsyncSession] | None = None

    @property
    def lang(self) -> str:
        return self.settings.duty.language

    # -- state ------------------------------------------------------------------

    async def load(self, session: AsyncSession, case: Case) -> Loaded:
        report = await repo.report_state(session, case_id=case.id)
        fresh = await repo.get_case(session, case_id=case.id)
        state = DialogueState.from_json(report.state) if report else DialogueState()
        if report is None:
            return Loaded(fresh or case, state, None)
        return Loaded(fresh or case, state, report.version, report.updated_at)

    async def save(self, session: AsyncSession, loaded: Loaded) -> None:
        form = self.form_of(loaded.state)
        version = await repo.save_report_state(
            session,
            case_id=loaded.case.id,
            form_id=loaded.state.form_id,
            form_version=form.version if form else None,
            state=loaded.state.to_json(),
            expected_version=loaded.version,
            now=self.clock(),
        )
        if version is None:
            raise ConcurrentChange()
        loaded.version = version

    async def _reopen(self, ctx: Ctx, unit: Unit, loaded: Loaded) -> Loaded:
        """A declined decision is revised: the report opens again for editing."""
        now = self.clock()
        await transition(
            unit.session,
            case_id=loaded.case.id,
            old=CaseStatus.DECLINED,
            new=CaseStatus.DRAFTING,
            actor=ctx.msg.sender,
            now=now,
        )
        await repo.reopen_report(unit.session, case_id=loaded.case.id, now=now)
        await ctx.reply("report.reopened")
        return await self.load(unit.session, loaded.case)

    def form_of(self, state: DialogueState) -> FormTemplate | None:
        return self.settings.forms.get(state.form_id) if state.form_id else None

    def _require_drafting(self, loaded: Loaded) -> None:
        if loaded.case.status != CaseStatus.DRAFTING.value:
            raise ReportLocked()

    # -- starting and resuming -----------------------------------------------------

    async def begin(self, case: Case, form_hint: str | None) -> None:
        """Start the report of a new case: the named form, or a question which one."""
        async with unit_of_work(self.sessions) as unit:
            loaded = await self.load(unit.session, case)
            if loaded.state.form_id is not None or loaded.state.asked is not None:
                return  # begun already (a repeat after a crash): resume() finishes it
            form = self.settings.forms.get(form_hint) if form_hint else None
            if form is not None:
                await self._choose_form(unit, loaded, form)
            else:
                await self._ask_form(unit, loaded)

    async def resume(self, case: Case) -> None:
        """After a restart: send what a crash kept from going out (same keys, so a
        question that did go out is not posted again)."""
        async with unit_of_work(self.sessions) as unit:
            loaded = await self.load(unit.session, case)
            state = loaded.state
            form = self.form_of(state)
            hinted = self.settings.forms.get(loaded.case.form_id or "")
            if form is None:
                if state.asked is None and hinted is not None:
                    await self._choose_form(unit, loaded, hinted)  # ``!ny lvu6`` cut short
                elif state.asked != FORM_CHOICE:
                    await self._ask_form(unit, loaded)
                elif not state.asked_sent:
                    self._queue_form_question(unit, loaded)
                return
            spec = dialogue.current_field(form, state)
            if state.asked != (spec.id if spec else None):
                await self._ask_current(unit, loaded, form)
            elif not state.asked_sent and self._within_resend_window(loaded):
                self._queue_question(unit, loaded, form)

    def _within_resend_window(self, loaded: Loaded) -> bool:
        """Whether sending the same keys again is still answered with the first events.

        A question without a poll is not confirmed after sending (the answer's one
        write transaction is all it costs); start-up sends it again under the same
        key, which the homeserver deduplicates for 24 hours. Older than
        :data:`RESEND_WINDOW`, it went out long ago (the bot restarts in minutes).
        """
        updated = loaded.updated_at
        return updated is None or self.clock() - updated < RESEND_WINDOW

    async def _ask_form(self, unit: Unit, loaded: Loaded) -> None:
        loaded.state.asked, loaded.state.asked_sent = FORM_CHOICE, False
        loaded.state.poll_event = None
        await self.save(unit.session, loaded)
        self._queue_form_question(unit, loaded)

    def _queue_form_question(self, unit: Unit, loaded: Loaded) -> None:
        forms = list(self.settings.forms.values())
        options = "\n".join(f"{i}. {f.title}" for i, f in enumerate(forms, 1))
        text = i18n.render(self.lang, "report.choose_form", options=options, notice=False)
        poll = Poll(
            question=i18n.text(self.lang, "report.choose_form.poll"),
            options=tuple((f.id, f.title) for f in forms),
            max_selections=1,
        )
        self._queue_sends(unit, loaded, [text], poll)

    async def _choose_form(self, unit: Unit, loaded: Loaded, form: FormTemplate) -> None:
        dialogue.start(form, loaded.state)
        await repo.set_case_form(unit.session, case_id=loaded.case.id, form_id=form.id)
        chosen = i18n.render(
            self.lang, "report.form_chosen", title=form.title, count=len(form.fields)
        )
        await self._ask_current(unit, loaded, form, preface=[chosen])

    async def _ask_current(
        self, unit: Unit, loaded: Loaded, form: FormTemplate, *, preface: Sequence[Message] = ()
    ) -> None:
        """Record the next question as asked-but-not-yet-sent, and send it after commit."""
        spec = dialogue.current_field(form, loaded.state)
        loaded.state.asked = spec.id if spec else None
        loaded.state.asked_sent, loaded.state.poll_event = False, None
        await self.save(unit.session, loaded)
        self._queue_question(unit, loaded, form, preface=preface)

    def _queue_question(
        self, unit: Unit, loaded: Loaded, form: FormTemplate, *, preface: Sequence[Message] = ()
    ) -> None:
        spec = dialogue.current_field(form, loaded.state)
        if spec is None:
            done = i18n.render(self.lang, "report.complete", notice=False)
            self._queue_sends(unit, loaded, [*preface, done], None)
            return
        poll = None
        options = self.options(spec)
        if options:
            poll = Poll(
                question=f"{form.number_of(spec.id)}. {spec.label}",
                options=tuple(options),
                max_selections=len(options) if spec.type == "multi_choice" else 1,
            )
        self._queue_sends(unit, loaded, [*preface, self.question(form, loaded.state, spec)], poll)

    def _queue_sends(
        self, unit: Unit, loaded: Loaded, messages: list[Message], poll: Poll | None
    ) -> None:
        """After commit: send the messages and the poll, keyed by case and version; for a
        poll, note its id (its votes must name it) and that the question went out."""
        room = loaded.case.room_id
        assert room is not None and loaded.version is not None
        case_id, version = loaded.case.id, loaded.version
        prefix = f"report:{case_id}:v{version}"

        async def send() -> None:
            for i, message in enumerate(messages):
                await self.messenger.send(room, message, key=f"{prefix}:m{i}")
            if poll is not None:
                # The one small write: the poll's id, which its votes must name.
                poll_event = await self.messenger.send_poll(room, poll, key=f"{prefix}:poll")
                await self._confirm_sent(case_id, version, poll_event)

        unit.later(send)

    async def _confirm_sent(self, case_id: int, version: int, poll_event: str | None) -> None:
        """The one small write after a question went out. If someone answered in the
        meantime the state has moved on, and whoever moved it asks the next one."""
        async with self.sessions() as session, session.begin():
            report = await repo.report_state(session, case_id=case_id)
            if report is None or report.version != version:
                return
            state = DialogueState.from_json(report.state)
            state.asked_sent, state.poll_event = True, poll_event
            await repo.save_report_state(
                session,
                case_id=case_id,
                form_id=state.form_id,
                form_version=report.form_version,
                state=state.to_json(),
                expected_version=version,
                now=self.clock(),
            )

    def options(self, spec: FieldSpec) -> list[tuple[str, str]]:
        if spec.type in ("choice", "multi_choice"):
            return [(c.value, c.label) for c in spec.choices]
        if spec.type == "yes_no":
            return [
                ("ja", i18n.text(self.lang, "report.yes")),
                ("nej", i18n.text(self.lang, "report.no")),
            ]
        if spec.type == "municipality":
            return [(m.id, m.name) for m in self.settings.municipalities]
        return []

    def question(self, form: FormTemplate, state: DialogueState, spec: FieldSpec) -> Message:
        lang = self.lang
        parts = [
            i18n.render(
                lang,
                "report.question",
                number=form.number_of(spec.id),
                total=len(form.fields),
                label=spec.label,
            )
        ]
        if spec.help:
            parts.append(i18n.render(lang, "report.help", help=spec.help))
        options = self.options(spec)
        if options:
            listing = "\n".join(f"{i}. {label}" for i, (_, label) in enumerate(options, 1))
            parts.append(i18n.render(lang, "report.options", options=listing))
        hint = f"field.hint.{spec.type}"
        if hint in i18n.CATALOGUES.get(lang, {}):
            parts.append(i18n.render(lang, hint))
        if not spec.required:
            parts.append(i18n.render(lang, "report.question.optional"))
        if spec.id in state.answers:
            parts.append(
                i18n.render(
                    lang, "report.question.current", answer=state.answers[spec.id]["display"]
                )
            )
        joined = i18n.join(parts)
        return Message(text=joined.text, html=joined.html, notice=False)

    # -- answers ------------------------------------------------------------------

    async def handle_text(self, ctx: Ctx) -> None:
        """Plain text in a drafting case room is the answer to the current question."""
        unit = self._unit(ctx)
        loaded = await self._loaded(ctx, unit)
        if loaded.case.status != CaseStatus.DRAFTING.value:
            # Once sent, the room is a conversation again; only an edit of an answer
            # is clearly meant for the report.
            if ctx.msg.replaces is not None:
                await ctx.reply("report.locked")
            return
        await self._answer(ctx, unit, loaded, ctx.msg.body, replaces=ctx.msg.replaces)

    async def handle_vote(self, ctx: Ctx, vote: IncomingVote) -> None:
        """A poll vote answers the current question (in the dispatcher's unit of work)."""
        unit = self._unit(ctx)
        loaded = await self._loaded(ctx, unit)
        if loaded.case.status != CaseStatus.DRAFTING.value:
            await ctx.reply("report.locked")
            return
        if vote.poll_event_id != loaded.state.poll_event or not vote.answers:
            await ctx.reply("report.old_poll")
            return
        await self._answer(ctx, unit, loaded, ", ".join(vote.answers), replaces=None)

    async def handle_redaction(self, ctx: Ctx, redaction: IncomingRedaction) -> None:
        """A removed answer message takes its answer out of the report (in the
        dispatcher's unit of work); see :func:`remove_answer`."""
        unit = self._unit(ctx)
        loaded = await self._loaded(ctx, unit)
        form = self.form_of(loaded.state)
        field_id = dialogue.answer_of(loaded.state, redaction.redacts)
        if form is None or field_id is None:
            return  # not an answer: a remark, a command, the form's choice
        locked = loaded.case.status != CaseStatus.DRAFTING.value
        if await remove_answer(
            ctx, unit, loaded.case, form, loaded.state, field_id, redaction, locked, self.clock()
        ):
            await self._ask_current(unit, loaded, form)

    @staticmethod
    def _unit(ctx: Ctx) -> Unit:
        if ctx.unit is None:
            raise RuntimeError("a report step runs inside the dispatcher's unit of work")
        return ctx.unit

    async def _answer(
        self, ctx: Ctx, unit: Unit, loaded: Loaded, text: str, *, replaces: str | None
    ) -> None:
        state = loaded.state
        form = self.form_of(state)
        if form is None:
            chosen = self._match_form(text)
            if chosen is None:
                await ctx.reply("report.unknown_form", name=text.strip()[:40])
                await self._ask_form(unit, loaded)
                return
            await self._choose_form(unit, loaded, chosen)
            return
        if replaces is not None:
            await self._apply_edit(ctx, unit, loaded, form, text, replaces)
            return
        spec = dialogue.current_field(form, state)
        if spec is None:
            await ctx.reply("report.complete")
            return
        try:
            answer = parse_answer(
                spec,
                text,
                lang=self.lang,
                municipalities=self.settings.municipalities,
                now=self.clock(),
            )
        except InvalidAnswer as exc:
            await ctx.reply(exc.key, **exc.params)
            await self._ask_current(unit, loaded, form)
            return
        await audit.answer_recorded(
            unit.session,
            case_id=loaded.case.id,
            actor=ctx.msg.sender,
            form=form,
            field=spec,
            state=state,
            now=self.clock(),
        )  # which question, never the answer
        dialogue.record(
            form, state, spec, answer, by=ctx.msg.sender, at=self.clock(), event_id=ctx.msg.event_id
        )
        if spec.type == "municipality":
            await self._set_municipality(unit.session, loaded.case, str(answer.value))
        await self._ask_current(unit, loaded, form)

    async def _apply_edit(
        self, ctx: Ctx, unit: Unit, loaded: Loaded, form: FormTemplate, text: str, replaces: str
    ) -> None:
        edited = dialogue.answer_of(loaded.state, replaces)
        if edited is not None and not dialogue.written_by(loaded.state, edited, ctx.msg.sender):
            # Matrix lets anyone send an m.replace for any event (clients hide it): only
            # the person who wrote an answer changes it by editing the message.
            await ctx.reply("answer.edit_not_author", number=form.number_of(edited))
            return
        last = loaded.state.last_answer
        if last is None or last["event"] != replaces:
            await ctx.reply("report.edit_too_old")
            return
        spec = form.field(last["field"])
        try:
            answer = parse_answer(
                spec,
                text,
                lang=self.lang,
                municipalities=self.settings.municipalities,
                now=self.clock(),
            )
        except InvalidAnswer as exc:
            await ctx.reply(exc.key, **exc.params)
            return
        await audit.answer_recorded(
            unit.session,
            case_id=loaded.case.id,
            actor=ctx.msg.sender,
            form=form,
            field=spec,
            state=loaded.state,
            now=self.clock(),
        )  # which question, never the answer
        dialogue.record(
            form, loaded.state, spec, answer, by=ctx.msg.sender, at=self.clock(), event_id=replaces
        )
        if spec.type == "municipality":
            await self._set_municipality(unit.session, loaded.case, str(answer.value))
        await ctx.reply(
            "report.edit_applied", number=form.number_of(spec.id), answer=answer.display
        )
        await self._ask_current(unit, loaded, form)

    def _match_form(self, text: str) -> FormTemplate | None:
        from handlers.commands import fold

        wanted = fold(text.strip().strip("."))
        forms = list(self.settings.forms.values())
        if _small_number(wanted) and 1 <= int(wanted) <= len(forms):
            return forms[int(wanted) - 1]
        for form in forms:
            if wanted in (fold(form.id), fold(form.title)):
                return form
        return None

    async def _set_municipality(
        self, session: AsyncSession, case: Case, municipality_id: str
    ) -> None:
        await repo.set_case_municipality(session, case_id=case.id, municipality_id=municipality_id)

    async def _loaded(self, ctx: Ctx, unit: Unit) -> Loaded:
        if ctx.case is None:
            raise CaseNotFound()
        return await self.load(unit.session, ctx.case)

    async def _with_form(self, ctx: Ctx, unit: Unit) -> tuple[Loaded, FormTemplate] | None:
        """The report and its form, or None after telling the user to pick a form first."""
        loaded = await self._loaded(ctx, unit)
        if loaded.case.status == CaseStatus.DECLINED.value:
            loaded = await self._reopen(ctx, unit, loaded)
        self._require_drafting(loaded)
        form = self.form_of(loaded.state)
        if form is None:
            await ctx.reply("report.no_form")
            await self._ask_form(unit, loaded)
            return None
        return loaded, form

    # -- commands -----------------------------------------------------------------

    @command("tillbaka", "back", rooms={RoomKind.CASE}, in_unit=True)
    async def back(self, ctx: Ctx) -> None:
        unit = self._unit(ctx)
        if (found := await self._with_form(ctx, unit)) is None:
            return
        loaded, form = found
        if dialogue.back(form, loaded.state) is None:
            await ctx.reply("report.back.none")
        await self._ask_current(unit, loaded, form)

    @command("ändra", "edit", rooms={RoomKind.CASE}, in_unit=True)
    async def edit(self, ctx: Ctx) -> None:
        unit = self._unit(ctx)
        if (found := await self._with_form(ctx, unit)) is None:
            return
        loaded, form = found
        arg = ctx.args.strip().rstrip(".")
        if not _small_number(arg) or not 1 <= int(arg) <= len(form.fields):
            await ctx.reply("report.edit.usage", max=len(form.fields))
            return
        if dialogue.goto(form, loaded.state, int(arg)) is None:
            await ctx.reply("report.edit.hidden", number=int(arg))
            return
        await self._ask_current(unit, loaded, form)

    @command("hoppa", "skip", rooms={RoomKind.CASE}, in_unit=True)
    async def skip(self, ctx: Ctx) -> None:
        unit = self._unit(ctx)
        if (found := await self._with_form(ctx, unit)) is None:
            return
        loaded, form = found
        spec = dialogue.current_field(form, loaded.state)
        if spec is None:
            await ctx.reply("report.complete")
            return
        if spec.required:
            await ctx.reply("report.not_optional", number=form.number_of(spec.id))
            return
        dialogue.skip(form, loaded.state, spec)
        await self._ask_current(unit, loaded, form)

    @command("sammanfattning", "summary", rooms={RoomKind.CASE})
    async def summary(self, ctx: Ctx) -> None:
        if ctx.case is None:
            raise CaseNotFound()
        async with (self.readers or self.sessions)() as session:
            loaded = await self.load(session, ctx.case)
        form = self.form_of(loaded.state)
        if form is None:
            await ctx.reply("report.no_form")
            return
        await self.messenger.send(
            ctx.msg.room_id,
            self.render_summary(loaded, form, ctx),
            key=f"{ctx.msg.event_id}:summary",
        )

    def render_summary(self, loaded: Loaded, form: FormTemplate, ctx: Ctx) -> Message:
        lang = self.lang
        lines = [
            i18n.render(lang, "report.summary.header", number=loaded.case.number, title=form.title)
        ]
        for number, spec, shown in dialogue.summary(form, loaded.state):
            if shown is None:
                key = (
                    "report.summary.skipped"
                    if spec.id in loaded.state.skipped
                    else "report.summary.unanswered"
                )
                shown = i18n.text(lang, key)
            lines.append(
                i18n.render(lang, "report.summary.item", n=number, label=spec.label, answer=shown)
            )
        return i18n.join(lines, reply_to=ctx.msg.event_id)

    @command("skicka", "submit", rooms={RoomKind.CASE})
    async def submit(self, ctx: Ctx) -> None:
        if ctx.args.strip().casefold() in ("om", "again") and self.decisions is not None:
            await self.decisions.resend(ctx)  # ``!skicka om``: a fresh link
            return
        async with unit_of_work(self.sessions) as unit:
            ctx.unit = unit  # replies about the report wait for this commit
            try:
                if (found := await self._with_form(ctx, unit)) is None:
                    await ctx.claim(unit.session)
                    return
                loaded, form = found
                missing = dialogue.missing_required(form, loaded.state)
                if missing:
                    numbers = ", ".join(str(form.number_of(f.id)) for f in missing)
                    await ctx.reply("report.missing", numbers=numbers)
                    await self._ask_current(unit, loaded, form)
                    await ctx.claim(unit.session)
                    return
            finally:
                ctx.unit = None
        # Every required answer is there: optional questions passed over are skipped.
        dialogue.settle_optional(form, loaded.state)
        now = self.clock()
        report = dialogue.build_report(
            form, loaded.state, case_number=loaded.case.number, submitted_by=ctx.msg.sender, at=now
        )
        assert loaded.version is not None
        version = loaded.version

        async def freeze(session: AsyncSession) -> bool:
            frozen = await repo.submit_report(
                session,
                case_id=loaded.case.id,
                expected_version=version,
                report=report,
                now=now,
                state=loaded.state.to_json(),
            )
            if frozen:
                # The event is handled in the transaction that sends the decision.
                await ctx.claim(session)
                await repo.add_audit(
                    session,
                    case_id=loaded.case.id,
                    actor=ctx.msg.sender,
                    action="report.submitted",
                    now=now,
                    detail={
                        "form": form.id,
                        "form_version": form.version,
                        "answers": len(report["answers"]),
                    },
                )
            return frozen

        if self.decisions is None:
            async with self.sessions() as session, session.begin():
                if not await freeze(session):
                    raise ConcurrentChange()
                await transition(
                    session,
                    case_id=loaded.case.id,
                    old=CaseStatus.DRAFTING,
                    new=CaseStatus.AWAITING_SIGNATURE,
                    actor=ctx.msg.sender,
                    now=now,
                )
            await self._submitted(ctx, loaded, form)
            return

        async def announce() -> None:
            await self._submitted(ctx, loaded, form)

        sent = await self.decisions.send(
            loaded.case,
            report,
            actor=ctx.msg.sender,
            before=freeze,
            announce=announce,
            once=ctx.msg.event_id,
        )
        if sent is Sent.CHANGED:
            raise ConcurrentChange()
        # Otherwise the case room was told why; the report stays open for another try.

    async def _submitted(self, ctx: Ctx, loaded: Loaded, form: FormTemplate) -> None:
        log.info("case %s: report submitted", loaded.case.number)
        await ctx.reply(
            "report.submitted", number=loaded.case.number, title=form.title, version=form.version
        )


async def remove_answer(
    ctx: Ctx,
    unit: Unit,
    case: Case,
    form: FormTemplate,
    state: DialogueState,
    field_id: str,
    redaction: IncomingRedaction,
    locked: bool,
    now: datetime,
) -> bool:
    """Take out the answer to ``field_id`` whose message ``redaction`` removed, and
    tell the room what follows (for the report and the execution questions alike).

    Only the answer's author or a moderator of the room removes it: the homeserver
    refuses anyone else's redaction of a local message, but a federated server need
    not. A submitted report or a recorded execution keeps the answer. True when the
    answer is gone (the caller saves the state and asks what comes next). Handled
    again after a restart, nothing happens: the event is claimed with the change, and
    the removed answer no longer names the message anyway.
    """
    number = form.number_of(field_id)
    if not redaction.moderator and not dialogue.written_by(state, field_id, redaction.sender):
        log.warning("refused a redaction of an answer by %s (not its author)", redaction.sender)
        await ctx.reply("answer.redact_not_author", number=number)
        return False
    if locked:
        await ctx.reply("answer.removed.too_late", number=number)
        return False
    outcome = dialogue.remove(form, state, form.field(field_id))
    # Which question lost its answer, never what it was.
    await repo.add_audit(
        unit.session,
        case_id=case.id,
        actor=redaction.sender,
        action=ANSWER_CHANGED,
        now=now,
        detail={"question": number, "field": field_id, "form": form.id, "removed": True},
    )
    await ctx.reply(f"answer.removed.{outcome}", number=number)
    return True


def _small_number(text: str) -> bool:
    """ASCII digits only, and few of them (``int`` accepts other scripts' digits)."""
    return text.isascii() and text.isdecimal() and len(text) <= 4
