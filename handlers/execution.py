"""``!verkställt``: recording that a signed decision was carried out (issue 9 §2).

The worker answers a short set of questions in the case room (when, where the
person was taken, police assistance, who was told, who carried it out) with the
same dialogue engine as the report (:mod:`handlers.dialogue`, answers read by
:mod:`handlers.fields`, questions worded by :class:`handlers.reports.ReportCommands`).
The questions are data: ``config/execution/verkstallighet_<form>.toml`` for a
case of form ``<form>``, else ``verkstallighet.toml`` (so LVU cites 43 § LVU and
LVM 45 § LVM for police assistance, each in the template).

As for the report, every step is one unit of work: the state is loaded, changed,
saved with compare-and-set and the next question is queued to go out after the
commit under an idempotency key of the case and the state's version; a crash in
between is repaired at start-up by :meth:`ExecutionCommands.resume`. ``!tillbaka``,
``!ändra N``, ``!hoppa`` and ``!sammanfattning`` act on these questions while they
are open (the dispatcher asks :meth:`ExecutionCommands.takes_over`).

When every question is answered the worker confirms with ``!verkställt`` again:
the answers are frozen as the execution record, the case moves SIGNED ->
EXECUTED, and the clocks that count from the execution start (8 § LVU: the
application for care within four weeks of the day the custody was carried out),
all in one transaction. The answers are personal data: the audit trail says which
question was answered, never what.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

import config
from config import Settings
from config.forms import FormTemplate, load_forms
from handlers import deadlines, dialogue, i18n
from handlers.case_state import CaseStatus, transition
from handlers.commands import Handler, RoomKind, command, fold
from handlers.context import Clock, Ctx, Unit, local_time, unit_of_work
from handlers.dialogue import DialogueState
from handlers.errors import CaseNotFound, ConcurrentChange, HandlerError, IllegalTransition
from handlers.fields import Answer, InvalidAnswer, parse_answer
from handlers.messenger import IncomingRedaction, IncomingVote, Message, Messenger, Poll
from handlers.reports import RESEND_WINDOW, ReportCommands, remove_answer
from storage import audit, repo
from storage import handover as store
from storage.models import Case

log = logging.getLogger(__name__)

#: The execution templates shipped with Socialjour.
EXECUTION_FORMS_DIR = Path(config.__file__).parent / "execution"
#: The question whose answer is the time of execution (a datetime; every template has it).
TIME_FIELD = "tidpunkt"
#: Who carried it out; "jag" (or ``!hoppa``) answers with the one answering.
BY_FIELD = "verkstallt_av"
#: Answers that mean "the one answering" (folded).
_SELF = frozenset({"jag", "mig", "me", "myself"})
#: What ``!hoppa`` answers on a question with a default.
_DEFAULTS = {TIME_FIELD: "nu", BY_FIELD: "jag"}
#: A time of execution this far ahead of the clock is a typo, not a plan.
FUTURE_SLACK = timedelta(minutes=5)
#: The report's commands that act on the execution questions while they are open.
_TAKEN_OVER = frozenset({"tillbaka", "ändra", "hoppa", "sammanfattning"})


class NotSigned(HandlerError):
    key = "execution.not_signed"


@functools.cache
def execution_forms(folder: Path = EXECUTION_FORMS_DIR) -> Mapping[str, FormTemplate]:
    """The execution templates, checked: each asks :data:`TIME_FIELD` as a datetime."""
    forms, problems = load_forms((folder,))
    messages = [str(problem) for problem in problems]
    for form in forms.values():
        try:
            spec = form.field(TIME_FIELD)
        except KeyError:
            messages.append(f"{form.id}: no {TIME_FIELD!r} question (the time of execution)")
            continue
        if spec.type != "datetime" or not spec.required or spec.show_if is not None:
            messages.append(f"{form.id}: {TIME_FIELD!r} must be a required datetime question")
    if "verkstallighet" not in forms:
        messages.append("the general template 'verkstallighet' is missing")
    if messages:
        raise ValueError("\n".join(messages))
    return forms


def execution_form_for(forms: Mapping[str, FormTemplate], form_id: str | None) -> FormTemplate:
    """The execution questions for a case of form ``form_id``."""
    return forms.get(f"verkstallighet_{form_id}") or forms["verkstallighet"]


@dataclass
class Loaded:
    case: Case
    form: FormTemplate
    state: DialogueState
    version: int | None
    updated_at: datetime | None = None
    recorded_at: datetime | None = None


@dataclass
class ExecutionCommands:
    settings: Settings
    sessions: async_sessionmaker[AsyncSession]
    messenger: Messenger
    clock: Clock
    #: Words the questions and their options exactly as the report does.
    reports: ReportCommands
    readers: async_sessionmaker[AsyncSession] | None = None
    forms: Mapping[str, FormTemplate] = field(default_factory=execution_forms)

    @property
    def lang(self) -> str:
        return self.settings.duty.language

    # -- state ------------------------------------------------------------------------

    async def load(self, session: AsyncSession, case: Case) -> Loaded:
        row = await store.get_execution(session, case_id=case.id)
        fresh = await repo.get_case(session, case_id=case.id) or case
        if row is None:
            form = execution_form_for(self.forms, fresh.form_id)
            return Loaded(fresh, form, DialogueState(), None)
        form = self.forms.get(row.form_id) or execution_form_for(self.forms, fresh.form_id)
        state = DialogueState.from_json(row.state)
        return Loaded(fresh, form, state, row.version, row.updated_at, row.recorded_at)

    async def save(self, session: AsyncSession, loaded: Loaded, actor: str) -> None:
        version = await store.save_execution_state(
            session,
            case_id=loaded.case.id,
            form_id=loaded.form.id,
            form_version=loaded.form.version,
            state=loaded.state.to_json(),
            expected_version=loaded.version,
            actor=actor,
            now=self.clock(),
        )
        if version is None:
            raise ConcurrentChange()
        loaded.version = version

    def _open(self, loaded: Loaded) -> bool:
        """Questions begun and not yet confirmed, on a case still waiting to be executed."""
        return (
            loaded.version is not None
            and loaded.recorded_at is None
            and loaded.case.status == CaseStatus.SIGNED.value
        )

    # -- the command --------------------------------------------------------------------

    @command("verkställt", "executed", rooms={RoomKind.CASE}, in_unit=True)
    async def executed(self, ctx: Ctx) -> None:
        """Start the questions, ask the open one again, or (all answered) record it."""
        unit = _unit(ctx)
        if ctx.case is None:
            raise CaseNotFound()
        loaded = await self.load(unit.session, ctx.case)
        status = CaseStatus(loaded.case.status)
        if loaded.recorded_at is not None or status in (
            CaseStatus.EXECUTED,
            CaseStatus.HANDED_OVER,
        ):
            row = await store.get_execution(unit.session, case_id=loaded.case.id)
            when = local_time(row.executed_at) if row and row.executed_at else "-"
            await ctx.reply("execution.already", time=when)
            return
        if status in (CaseStatus.DRAFTING, CaseStatus.AWAITING_SIGNATURE, CaseStatus.DECLINED):
            raise NotSigned()
        if status is not CaseStatus.SIGNED:
            raise IllegalTransition(status.value, CaseStatus.EXECUTED.value)
        if loaded.version is None:
            await self._start(ctx, unit, loaded)
            return
        if dialogue.is_complete(loaded.form, loaded.state):
            await self._record(ctx, unit, loaded)
            return
        await self._ask_current(unit, loaded, ctx.msg.sender)

    async def _start(self, ctx: Ctx, unit: Unit, loaded: Loaded) -> None:
        dialogue.start(loaded.form, loaded.state)
        started = i18n.render(
            self.lang,
            "execution.started",
            number=loaded.case.number,
            count=len(loaded.form.fields),
            notice=False,
        )
        await self._ask_current(unit, loaded, ctx.msg.sender, preface=[started])

    async def _record(self, ctx: Ctx, unit: Unit, loaded: Loaded) -> None:
        """Freeze the answers, move the case to EXECUTED and start the clocks, at once."""
        session, form, state, case = unit.session, loaded.form, loaded.state, loaded.case
        now = self.clock()
        dialogue.settle_optional(form, state)
        executed_at = datetime.fromisoformat(str(state.answers[TIME_FIELD]["value"]))
        record = dialogue.build_report(
            form, state, case_number=case.number, submitted_by=ctx.msg.sender, at=now
        )
        record["executed_at"] = executed_at.isoformat()
        assert loaded.version is not None
        if not await store.record_execution(
            session,
            case_id=case.id,
            expected_version=loaded.version,
            record=record,
            executed_at=executed_at,
            by=ctx.msg.sender,
            now=now,
            state=state.to_json(),
        ):
            raise ConcurrentChange()
        await repo.add_audit(
            session,
            case_id=case.id,
            actor=ctx.msg.sender,
            action=audit.EXECUTION_RECORDED,
            now=now,
            detail={
                "form": form.id,
                "form_version": form.version,
                "answers": sum(1 for a in record["answers"] if a["value"] is not None),
            },
        )
        await transition(
            session,
            case_id=case.id,
            old=CaseStatus.SIGNED,
            new=CaseStatus.EXECUTED,
            actor=ctx.msg.sender,
            now=now,
        )
        # The clocks that count from the execution (8 § LVU: four weeks to apply for
        # care from the day the custody was carried out), in this same transaction.
        await deadlines.start_clocks(
            session, case_id=case.id, trigger="execution", at=executed_at, now=now
        )
        log.info("case %s: execution recorded", case.number)
        await ctx.reply("execution.recorded", number=case.number, time=local_time(executed_at))

    # -- answers ------------------------------------------------------------------------

    async def handle_text(self, ctx: Ctx) -> bool:
        """Plain text in a signed case with open questions answers the current one.

        False when the text is not for the execution questions (the report's or none)."""
        case = ctx.case
        if ctx.kind is not RoomKind.CASE or case is None or case.status != "signed":
            return False
        unit = _unit(ctx)
        row = await store.get_execution(unit.session, case_id=case.id)
        if row is None or row.recorded_at is not None:
            return False  # no questions open: the room is a conversation (one query)
        loaded = await self.load(unit.session, case)
        if not self._open(loaded):
            return False
        if ctx.msg.replaces is not None:
            await self._apply_edit(ctx, unit, loaded, ctx.msg.body, ctx.msg.replaces)
        else:
            await self._answer(ctx, unit, loaded, ctx.msg.body)
        return True

    async def handle_vote(self, ctx: Ctx, vote: IncomingVote) -> bool:
        """A vote on the execution question's poll answers it (False: not ours)."""
        case = ctx.case
        if case is None or case.status != "signed":
            return False
        unit = _unit(ctx)
        loaded = await self.load(unit.session, case)
        if not self._open(loaded):
            return False
        if vote.poll_event_id != loaded.state.poll_event or not vote.answers:
            await ctx.reply("report.old_poll")
            return True
        await self._answer(ctx, unit, loaded, ", ".join(vote.answers))
        return True

    async def _answer(self, ctx: Ctx, unit: Unit, loaded: Loaded, text: str) -> None:
        form, state = loaded.form, loaded.state
        spec = dialogue.current_field(form, state)
        if spec is None:
            await ctx.reply("execution.confirm_hint")
            return
        try:
            answer = await self._parse(unit.session, loaded, spec.id, text, ctx.msg.sender)
        except InvalidAnswer as exc:
            await ctx.reply(exc.key, **exc.params)
            await self._ask_current(unit, loaded, ctx.msg.sender)
            return
        await self._store(ctx, unit, loaded, spec.id, answer, event_id=ctx.msg.event_id)
        await self._ask_current(unit, loaded, ctx.msg.sender)

    async def _parse(
        self, session: AsyncSession, loaded: Loaded, field_id: str, text: str, sender: str
    ) -> Answer:
        """Read an answer; the time of execution must be neither ahead nor before the decision."""
        spec = loaded.form.field(field_id)
        if field_id == BY_FIELD and fold(" ".join(text.split()).strip(".!")) in _SELF:
            return Answer(sender, sender)
        now = self.clock()
        answer = parse_answer(
            spec, text, lang=self.lang, municipalities=self.settings.municipalities, now=now
        )
        if spec.type != "datetime":
            return answer
        moment = datetime.fromisoformat(str(answer.value))
        if moment > now + FUTURE_SLACK:
            raise InvalidAnswer("execution.future", time=local_time(moment))
        if field_id == TIME_FIELD:
            decided = await store.decided_at(session, case_id=loaded.case.id)
            if decided is not None and moment < decided.replace(second=0, microsecond=0):
                raise InvalidAnswer(
                    "execution.before_decision",
                    time=local_time(moment),
                    decided=local_time(decided),
                )
        return answer

    async def _store(
        self, ctx: Ctx, unit: Unit, loaded: Loaded, field_id: str, answer: Answer, *, event_id: str
    ) -> None:
        form = loaded.form
        spec = form.field(field_id)
        changed = field_id in loaded.state.answers
        dialogue.record(
            form, loaded.state, spec, answer, by=ctx.msg.sender, at=self.clock(), event_id=event_id
        )
        # Which question (of which form: the execution's), never what was answered.
        await repo.add_audit(
            unit.session,
            case_id=loaded.case.id,
            actor=ctx.msg.sender,
            action=audit.ANSWER_CHANGED if changed else audit.ANSWER_GIVEN,
            now=self.clock(),
            detail={"question": form.number_of(field_id), "field": field_id, "form": form.id},
        )

    async def _apply_edit(
        self, ctx: Ctx, unit: Unit, loaded: Loaded, text: str, replaces: str
    ) -> None:
        edited = dialogue.answer_of(loaded.state, replaces)
        if edited is not None and not dialogue.written_by(loaded.state, edited, ctx.msg.sender):
            # As for the report: only the person who wrote an answer edits it.
            await ctx.reply("answer.edit_not_author", number=loaded.form.number_of(edited))
            return
        last = loaded.state.last_answer
        if last is None or last["event"] != replaces:
            await ctx.reply("report.edit_too_old")
            return
        try:
            answer = await self._parse(unit.session, loaded, last["field"], text, ctx.msg.sender)
        except InvalidAnswer as exc:
            await ctx.reply(exc.key, **exc.params)
            return
        await self._store(ctx, unit, loaded, last["field"], answer, event_id=replaces)
        await ctx.reply(
            "report.edit_applied",
            number=loaded.form.number_of(last["field"]),
            answer=answer.display,
        )
        await self._ask_current(unit, loaded, ctx.msg.sender)

    async def handle_redaction(self, ctx: Ctx, redaction: IncomingRedaction) -> bool:
        """A removed message that answered an execution question takes its answer out
        (see :func:`handlers.reports.remove_answer`); False when it answered none."""
        case = ctx.case
        if case is None:
            return False
        unit = _unit(ctx)
        if await store.get_execution(unit.session, case_id=case.id) is None:
            return False
        loaded = await self.load(unit.session, case)
        field_id = dialogue.answer_of(loaded.state, redaction.redacts)
        if field_id is None:
            return False
        locked = not self._open(loaded)  # recorded: the record stays as it was confirmed
        state, now = loaded.state, self.clock()
        if await remove_answer(
            ctx, unit, loaded.case, loaded.form, state, field_id, redaction, locked, now
        ):
            await self._ask_current(unit, loaded, ctx.msg.sender)
        return True

    # -- the report's commands, on the execution questions ------------------------------

    async def takes_over(self, ctx: Ctx, canonical: str) -> Handler | None:
        """The handler for a report command that should act on the open execution
        questions instead (a signed case whose questions are begun), else None."""
        case = ctx.case
        if canonical not in _TAKEN_OVER or case is None or case.status != "signed":
            return None
        if ctx.unit is not None:
            row = await store.get_execution(ctx.unit.session, case_id=case.id)
        else:
            async with (self.readers or self.sessions)() as session:
                row = await store.get_execution(session, case_id=case.id)
        if row is None or row.recorded_at is not None:
            return None
        handlers: dict[str, Handler] = {
            "tillbaka": self.back,
            "ändra": self.edit,
            "hoppa": self.skip,
            "sammanfattning": self.summary,
        }
        return handlers[canonical]

    async def _loaded_open(self, ctx: Ctx, unit: Unit) -> Loaded:
        if ctx.case is None:
            raise CaseNotFound()
        loaded = await self.load(unit.session, ctx.case)
        if not self._open(loaded):
            raise ConcurrentChange()
        return loaded

    async def back(self, ctx: Ctx) -> None:
        unit = _unit(ctx)
        loaded = await self._loaded_open(ctx, unit)
        if dialogue.back(loaded.form, loaded.state) is None:
            await ctx.reply("report.back.none")
        await self._ask_current(unit, loaded, ctx.msg.sender)

    async def edit(self, ctx: Ctx) -> None:
        unit = _unit(ctx)
        loaded = await self._loaded_open(ctx, unit)
        count = len(loaded.form.fields)
        arg = ctx.args.strip().rstrip(".")
        if not (arg.isascii() and arg.isdecimal() and len(arg) <= 4 and 1 <= int(arg) <= count):
            await ctx.reply("report.edit.usage", max=count)
            return
        if dialogue.goto(loaded.form, loaded.state, int(arg)) is None:
            await ctx.reply("report.edit.hidden", number=int(arg))
            return
        await self._ask_current(unit, loaded, ctx.msg.sender)

    async def skip(self, ctx: Ctx) -> None:
        unit = _unit(ctx)
        loaded = await self._loaded_open(ctx, unit)
        form = loaded.form
        spec = dialogue.current_field(form, loaded.state)
        if spec is None:
            await ctx.reply("execution.confirm_hint")
            return
        if spec.id in _DEFAULTS:
            # A question with a default: skipping it takes the default ("nu", "jag").
            answer = await self._parse(
                unit.session, loaded, spec.id, _DEFAULTS[spec.id], ctx.msg.sender
            )
            await self._store(ctx, unit, loaded, spec.id, answer, event_id=ctx.msg.event_id)
        elif spec.required:
            await ctx.reply("report.not_optional", number=form.number_of(spec.id))
            return
        else:
            dialogue.skip(form, loaded.state, spec)
        await self._ask_current(unit, loaded, ctx.msg.sender)

    async def summary(self, ctx: Ctx) -> None:
        if ctx.case is None:
            raise CaseNotFound()
        async with (self.readers or self.sessions)() as session:
            loaded = await self.load(session, ctx.case)
        message = self._summary(loaded, header=True)
        await self.messenger.send(
            ctx.msg.room_id,
            Message(text=message.text, html=message.html, reply_to=ctx.msg.event_id),
            key=f"{ctx.msg.event_id}:summary",
        )

    def _summary(self, loaded: Loaded, *, header: bool) -> Message:
        lang = self.lang
        lines: list[Message] = []
        if header:
            lines.append(
                i18n.render(
                    lang,
                    "report.summary.header",
                    number=loaded.case.number,
                    title=loaded.form.title,
                )
            )
        for number, spec, shown in dialogue.summary(loaded.form, loaded.state):
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
        return i18n.join(lines)

    # -- asking -------------------------------------------------------------------------

    async def _ask_current(
        self, unit: Unit, loaded: Loaded, actor: str, *, preface: Sequence[Message] = ()
    ) -> None:
        """Record the next question as asked-but-not-yet-sent, and send it after commit."""
        spec = dialogue.current_field(loaded.form, loaded.state)
        loaded.state.asked = spec.id if spec else None
        loaded.state.asked_sent, loaded.state.poll_event = False, None
        await self.save(unit.session, loaded, actor)
        self._queue_question(unit, loaded, preface=preface)

    def _queue_question(
        self, unit: Unit, loaded: Loaded, *, preface: Sequence[Message] = ()
    ) -> None:
        form = loaded.form
        spec = dialogue.current_field(form, loaded.state)
        if spec is None:
            done = i18n.join(
                [
                    i18n.render(self.lang, "execution.complete", number=loaded.case.number),
                    self._summary(loaded, header=False),
                    i18n.render(self.lang, "execution.confirm_hint"),
                ]
            )
            done = Message(text=done.text, html=done.html, notice=False)
            self._queue_sends(unit, loaded, [*preface, done], None)
            return
        poll = None
        options = self.reports.options(spec)
        if options:
            poll = Poll(
                question=f"{form.number_of(spec.id)}. {spec.label}",
                options=tuple(options),
                max_selections=len(options) if spec.type == "multi_choice" else 1,
            )
        question = self.reports.question(form, loaded.state, spec)
        self._queue_sends(unit, loaded, [*preface, question], poll)

    def _queue_sends(
        self, unit: Unit, loaded: Loaded, messages: list[Message], poll: Poll | None
    ) -> None:
        room = loaded.case.room_id
        assert room is not None and loaded.version is not None
        case_id, version = loaded.case.id, loaded.version
        prefix = f"execution:{case_id}:v{version}"

        async def send() -> None:
            for i, message in enumerate(messages):
                await self.messenger.send(room, message, key=f"{prefix}:m{i}")
            if poll is not None:
                poll_event = await self.messenger.send_poll(room, poll, key=f"{prefix}:poll")
                await self._confirm_sent(case_id, version, poll_event)

        unit.later(send)

    async def _confirm_sent(self, case_id: int, version: int, poll_event: str) -> None:
        """Note the poll's id (its votes must name it); moved on meanwhile: nothing to do."""
        async with self.sessions() as session, session.begin():
            row = await store.get_execution(session, case_id=case_id)
            if row is None or row.version != version:
                return
            state = DialogueState.from_json(row.state)
            state.asked_sent, state.poll_event = True, poll_event
            await store.save_execution_state(
                session,
                case_id=case_id,
                form_id=row.form_id,
                form_version=row.form_version,
                state=state.to_json(),
                expected_version=version,
                actor=row.started_by,
                now=self.clock(),
            )

    # -- after a restart ----------------------------------------------------------------

    async def resume(self) -> None:
        """Send the questions a crash kept from going out (same keys: never twice)."""
        async with (self.readers or self.sessions)() as session:
            open_rows = await store.list_open_executions(session)
        for row in open_rows:
            try:
                await self._resume_one(row.case_id)
            except Exception:
                log.exception("could not resume the execution questions of case id %d", row.case_id)

    async def _resume_one(self, case_id: int) -> None:
        async with unit_of_work(self.sessions) as unit:
            case = await repo.get_case(unit.session, case_id=case_id)
            if case is None or case.room_id is None:
                return
            loaded = await self.load(unit.session, case)
            if not self._open(loaded):
                return
            spec = dialogue.current_field(loaded.form, loaded.state)
            if loaded.state.asked != (spec.id if spec else None):
                await self._ask_current(unit, loaded, case.created_by)
            elif not loaded.state.asked_sent and (
                loaded.updated_at is None or self.clock() - loaded.updated_at < RESEND_WINDOW
            ):
                self._queue_question(unit, loaded)

    # -- status -------------------------------------------------------------------------

    async def status_lines(self, case: Case) -> list[Message]:
        """``!status``: where the execution record stands."""
        async with (self.readers or self.sessions)() as session:
            row = await store.get_execution(session, case_id=case.id)
        if row is None:
            return []
        if row.recorded_at is not None and row.executed_at is not None:
            return [
                i18n.render(
                    self.lang,
                    "execution.status.done",
                    time=local_time(row.executed_at),
                    by=row.recorded_by or "-",
                )
            ]
        if case.status != CaseStatus.SIGNED.value:
            return []
        form = self.forms.get(row.form_id) or execution_form_for(self.forms, case.form_id)
        state = DialogueState.from_json(row.state)
        spec = dialogue.current_field(form, state)
        if spec is None:
            return [i18n.render(self.lang, "execution.status.confirm")]
        return [
            i18n.render(
                self.lang,
                "execution.status.asking",
                number=form.number_of(spec.id),
                total=len(form.fields),
            )
        ]


def _unit(ctx: Ctx) -> Unit:
    if ctx.unit is None:
        raise RuntimeError("an execution step runs inside the dispatcher's unit of work")
    return ctx.unit
