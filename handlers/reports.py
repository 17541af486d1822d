"""The guided report in a case room: asking, taking answers, back, edit, skip, submit.

The rules live in :mod:`handlers.dialogue`; this module loads the state, applies
one step, saves it (compare-and-set, so two people answering at once cannot
corrupt it) and only then speaks. A crash after a save and before the question
went out is repaired at start-up by :meth:`ReportCommands.resume`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from config import Settings
from config.forms import FieldSpec, FormTemplate
from handlers import dialogue, i18n
from handlers.case_state import CaseStatus, transition
from handlers.commands import RoomKind, command
from handlers.context import Clock, Ctx
from handlers.decisions import DecisionService, Sent
from handlers.dialogue import DialogueState
from handlers.errors import CaseNotFound, ConcurrentChange, HandlerError
from handlers.fields import InvalidAnswer, parse_answer
from handlers.messenger import IncomingVote, Message, Messenger, Poll
from storage import repo
from storage.models import Case

log = logging.getLogger(__name__)

#: ``DialogueState.asked`` while the form-choice question is out.
FORM_CHOICE = "#form"


class ReportLocked(HandlerError):
    key = "report.locked"


@dataclass
class Loaded:
    case: Case
    state: DialogueState
    version: int | None


@dataclass
class ReportCommands:
    settings: Settings
    sessions: async_sessionmaker[AsyncSession]
    messenger: Messenger
    clock: Clock
    #: Sends a submitted report for signature; without it (unit tests of the dialogue)
    #: ``!skicka`` only freezes the report.
    decisions: DecisionService | None = None

    @property
    def lang(self) -> str:
        return self.settings.duty.language

    # -- state ------------------------------------------------------------------

    async def load(self, case: Case) -> Loaded:
        async with self.sessions() as session:
            report = await repo.get_report(session, case_id=case.id)
            fresh = await repo.get_case(session, case_id=case.id)
        state = DialogueState.from_json(report.state) if report else DialogueState()
        return Loaded(fresh or case, state, report.version if report else None)

    async def save(self, loaded: Loaded) -> None:
        form = self.form_of(loaded.state)
        async with self.sessions() as session, session.begin():
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

    async def _reopen(self, ctx: Ctx, loaded: Loaded) -> Loaded:
        """A declined decision is revised: the report opens again for editing."""
        now = self.clock()
        moved = True
        try:
            async with self.sessions() as session, session.begin():
                await transition(
                    session,
                    case_id=loaded.case.id,
                    old=CaseStatus.DECLINED,
                    new=CaseStatus.DRAFTING,
                    actor=ctx.msg.sender,
                    now=now,
                )
                await repo.reopen_report(session, case_id=loaded.case.id, now=now)
        except ConcurrentChange:
            moved = False
        if moved:
            await ctx.reply("report.reopened")
        return await self.load(loaded.case)

    def form_of(self, state: DialogueState) -> FormTemplate | None:
        return self.settings.forms.get(state.form_id) if state.form_id else None

    def _require_drafting(self, loaded: Loaded) -> None:
        if loaded.case.status != CaseStatus.DRAFTING.value:
            raise ReportLocked()

    # -- starting and resuming -----------------------------------------------------

    async def begin(self, case: Case, form_hint: str | None) -> None:
        """Start the report of a new case: the named form, or a question which one."""
        loaded = await self.load(case)
        form = self.settings.forms.get(form_hint) if form_hint else None
        if form is not None:
            await self._choose_form(loaded, form)
        else:
            await self._ask_form(loaded)

    async def resume(self, case: Case) -> None:
        """After a restart: re-ask if the bot stopped between saving and asking."""
        loaded = await self.load(case)
        form = self.form_of(loaded.state)
        if form is None:
            if loaded.state.asked != FORM_CHOICE:
                await self._ask_form(loaded)
        elif loaded.state.asked != loaded.state.current:
            await self._ask_current(loaded, form)

    async def _ask_form(self, loaded: Loaded) -> None:
        forms = list(self.settings.forms.values())
        options = "\n".join(f"{i}. {f.title}" for i, f in enumerate(forms, 1))
        room = loaded.case.room_id
        assert room is not None
        await self.messenger.send(
            room, i18n.render(self.lang, "report.choose_form", options=options, notice=False)
        )
        poll = Poll(
            question=i18n.text(self.lang, "report.choose_form.poll"),
            options=tuple((f.id, f.title) for f in forms),
            max_selections=1,
        )
        poll_event = await self.messenger.send_poll(room, poll)
        await self._mark_asked(loaded, FORM_CHOICE, poll_event, current=None)

    async def _choose_form(self, loaded: Loaded, form: FormTemplate) -> None:
        dialogue.start(form, loaded.state)
        await self.save(loaded)
        async with self.sessions() as session, session.begin():
            await repo.set_case_form(session, case_id=loaded.case.id, form_id=form.id)
        assert loaded.case.room_id is not None
        await self.messenger.send(
            loaded.case.room_id,
            i18n.render(self.lang, "report.form_chosen", title=form.title, count=len(form.fields)),
        )
        await self._ask_current(loaded, form)

    async def _ask_current(self, loaded: Loaded, form: FormTemplate) -> None:
        spec = dialogue.current_field(form, loaded.state)
        room = loaded.case.room_id
        assert room is not None
        if spec is None:
            await self.messenger.send(room, i18n.render(self.lang, "report.complete", notice=False))
            await self._mark_asked(loaded, None, None, current=None)
            return
        await self.messenger.send(room, self.question(form, loaded.state, spec))
        options = self.options(spec)
        poll_event = None
        if options:
            poll = Poll(
                question=f"{form.number_of(spec.id)}. {spec.label}",
                options=tuple(options),
                max_selections=len(options) if spec.type == "multi_choice" else 1,
            )
            poll_event = await self.messenger.send_poll(room, poll)
        await self._mark_asked(loaded, spec.id, poll_event, current=spec.id)

    async def _mark_asked(
        self,
        loaded: Loaded,
        field_id: str | None,
        poll_event: str | None,
        *,
        current: str | None,
    ) -> None:
        """Note what was just asked. Bookkeeping only: if someone saved in between,
        note it on their state if it is still the same question, and never tell the
        worker (whose answer is already stored) that anything failed."""
        for _ in range(3):
            loaded.state.asked, loaded.state.poll_event = field_id, poll_event
            try:
                await self.save(loaded)
                return
            except ConcurrentChange:
                fresh = await self.load(loaded.case)
                if fresh.state.current != current or fresh.state.form_id != loaded.state.form_id:
                    return  # the dialogue moved on; whoever moved it asks the next one
                loaded.state, loaded.version = fresh.state, fresh.version

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
        loaded = await self._loaded(ctx)
        if loaded.case.status != CaseStatus.DRAFTING.value:
            # Once sent, the room is a conversation again; only an edit of an answer
            # is clearly meant for the report.
            if ctx.msg.replaces is not None:
                await ctx.reply("report.locked")
            return
        await self._answer(ctx, loaded, ctx.msg.body, replaces=ctx.msg.replaces)

    async def handle_vote(self, vote: IncomingVote, case: Case) -> None:
        ctx_msg = vote.as_message()
        ctx = Ctx(
            msg=ctx_msg,
            kind=RoomKind.CASE,
            args="",
            lang=self.lang,
            messenger=self.messenger,
            case=case,
        )
        loaded = await self.load(case)
        if loaded.case.status != CaseStatus.DRAFTING.value:
            await ctx.reply("report.locked")
            return
        if vote.poll_event_id != loaded.state.poll_event or not vote.answers:
            await ctx.reply("report.old_poll")
            return
        await self._answer(ctx, loaded, ", ".join(vote.answers), replaces=None)

    async def _answer(self, ctx: Ctx, loaded: Loaded, text: str, *, replaces: str | None) -> None:
        state = loaded.state
        form = self.form_of(state)
        if form is None:
            chosen = self._match_form(text)
            if chosen is None:
                await ctx.reply("report.unknown_form", name=text.strip()[:40])
                await self._ask_form(loaded)
                return
            await self._choose_form(loaded, chosen)
            return
        if replaces is not None:
            await self._apply_edit(ctx, loaded, form, text, replaces)
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
            await self._ask_current(loaded, form)
            return
        dialogue.record(
            form, state, spec, answer, by=ctx.msg.sender, at=self.clock(), event_id=ctx.msg.event_id
        )
        await self.save(loaded)
        if spec.type == "municipality":
            await self._set_municipality(loaded.case, str(answer.value))
        await self._ask_current(loaded, form)

    async def _apply_edit(
        self, ctx: Ctx, loaded: Loaded, form: FormTemplate, text: str, replaces: str
    ) -> None:
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
        dialogue.record(
            form, loaded.state, spec, answer, by=ctx.msg.sender, at=self.clock(), event_id=replaces
        )
        await self.save(loaded)
        if spec.type == "municipality":
            await self._set_municipality(loaded.case, str(answer.value))
        await ctx.reply(
            "report.edit_applied", number=form.number_of(spec.id), answer=answer.display
        )
        await self._ask_current(loaded, form)

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

    async def _set_municipality(self, case: Case, municipality_id: str) -> None:
        async with self.sessions() as session, session.begin():
            await repo.set_case_municipality(
                session, case_id=case.id, municipality_id=municipality_id
            )

    async def _loaded(self, ctx: Ctx) -> Loaded:
        if ctx.case is None:
            raise CaseNotFound()
        return await self.load(ctx.case)

    async def _with_form(self, ctx: Ctx) -> tuple[Loaded, FormTemplate] | None:
        """The report and its form, or None after telling the user to pick a form first."""
        loaded = await self._loaded(ctx)
        if loaded.case.status == CaseStatus.DECLINED.value:
            loaded = await self._reopen(ctx, loaded)
        self._require_drafting(loaded)
        form = self.form_of(loaded.state)
        if form is None:
            await ctx.reply("report.no_form")
            await self._ask_form(loaded)
            return None
        return loaded, form

    # -- commands -----------------------------------------------------------------

    @command("tillbaka", "back", rooms={RoomKind.CASE})
    async def back(self, ctx: Ctx) -> None:
        if (found := await self._with_form(ctx)) is None:
            return
        loaded, form = found
        if dialogue.back(form, loaded.state) is None:
            await ctx.reply("report.back.none")
        await self.save(loaded)
        await self._ask_current(loaded, form)

    @command("ändra", "edit", rooms={RoomKind.CASE})
    async def edit(self, ctx: Ctx) -> None:
        if (found := await self._with_form(ctx)) is None:
            return
        loaded, form = found
        arg = ctx.args.strip().rstrip(".")
        if not _small_number(arg) or not 1 <= int(arg) <= len(form.fields):
            await ctx.reply("report.edit.usage", max=len(form.fields))
            return
        if dialogue.goto(form, loaded.state, int(arg)) is None:
            await ctx.reply("report.edit.hidden", number=int(arg))
            return
        await self.save(loaded)
        await self._ask_current(loaded, form)

    @command("hoppa", "skip", rooms={RoomKind.CASE})
    async def skip(self, ctx: Ctx) -> None:
        if (found := await self._with_form(ctx)) is None:
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
        await self.save(loaded)
        await self._ask_current(loaded, form)

    @command("sammanfattning", "summary", rooms={RoomKind.CASE})
    async def summary(self, ctx: Ctx) -> None:
        loaded = await self._loaded(ctx)
        form = self.form_of(loaded.state)
        if form is None:
            await ctx.reply("report.no_form")
            return
        await self.messenger.send(ctx.msg.room_id, self.render_summary(loaded, form, ctx))

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
        if (found := await self._with_form(ctx)) is None:
            return
        loaded, form = found
        missing = dialogue.missing_required(form, loaded.state)
        if missing:
            numbers = ", ".join(str(form.number_of(f.id)) for f in missing)
            await ctx.reply("report.missing", numbers=numbers)
            await self._ask_current(loaded, form)
            return
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
            loaded.case, report, actor=ctx.msg.sender, before=freeze, announce=announce
        )
        if sent is Sent.CHANGED:
            raise ConcurrentChange()
        # Otherwise the case room was told why; the report stays open for another try.

    async def _submitted(self, ctx: Ctx, loaded: Loaded, form: FormTemplate) -> None:
        log.info("case %s: report submitted", loaded.case.number)
        await ctx.reply(
            "report.submitted", number=loaded.case.number, title=form.title, version=form.version
        )


def _small_number(text: str) -> bool:
    """ASCII digits only, and few of them (``int`` accepts other scripts' digits)."""
    return text.isascii() and text.isdecimal() and len(text) <= 4
