"""The guided report as a pure state machine over a form template.

No I/O here: :class:`DialogueState` is plain JSON-able data saved after every
answer, and every function takes the form and the state and returns what
changed. That keeps the rules (which question comes next, what back, edit and
skip mean, when a report is complete) testable with any input at all.

Questions are numbered by their position in the form, so the number a worker
sees in a question, in the summary and in ``!ändra N`` is always the same, even
when conditional questions come and go.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from config.forms import FieldSpec, FormTemplate
from handlers.fields import STOCKHOLM, Answer, is_visible

#: Version of the structured report format stored at submission.
REPORT_SCHEMA = 1


@dataclass
class DialogueState:
    form_id: str | None = None
    #: field id -> {"value", "display", "by", "at", "event"}: ``event`` is the message
    #: that gave the answer (an edit keeps the original's id), so that an edit or a
    #: redaction of that message finds it; states saved before it was kept lack it.
    answers: dict[str, dict[str, Any]] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    #: The field being asked; None before a form is chosen and when all is answered.
    current: str | None = None
    #: The question the bot last decided to ask (recorded before it is sent).
    asked: str | None = None
    #: True once a question with a poll went out (with the poll's id noted). False
    #: from the commit that decided it until then, and always for a question without
    #: a poll (confirming it would cost a write): start-up sends such questions again
    #: under the same transaction ids, which the homeserver answers with the first
    #: events. States saved before this field existed had sent theirs.
    asked_sent: bool = True
    #: The poll the bot posted for the current question (or for the form choice).
    poll_event: str | None = None
    #: The answer to the previous question, which an edit (m.replace) may still change.
    last_answer: dict[str, str] | None = None

    def to_json(self) -> dict[str, Any]:
        """The state for the database's JSON column. Shallow: it is serialised at once
        by the statement that saves it, so nothing needs a deep copy."""
        return {name: getattr(self, name) for name in self.__dataclass_fields__}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DialogueState:
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        return cls(**known)


def values(state: DialogueState) -> dict[str, Any]:
    return {fid: a["value"] for fid, a in state.answers.items()}


def age_day(state: DialogueState) -> date | None:
    """The day ages are counted on (``show_if`` with ``age_under``/``age_at_least``).

    The decision is taken at the end of the report, so the age that matters is the
    one then: the Stockholm day of the latest recorded answer, the dialogue's own
    clock (``record(at=...)``). It moves on as the report goes on, so a birthday
    passed during the night changes what is asked. None before any answer.
    """
    latest: datetime | None = None
    for answer in state.answers.values():
        try:
            moment = datetime.fromisoformat(str(answer.get("at")))
        except ValueError:
            continue
        moment = moment.astimezone(STOCKHOLM) if moment.tzinfo else moment.replace(tzinfo=STOCKHOLM)
        if latest is None or moment > latest:
            latest = moment
    return latest.date() if latest is not None else None


def visible_fields(form: FormTemplate, state: DialogueState) -> list[FieldSpec]:
    """The fields that apply given the answers so far, in form order."""
    answered = values(state)
    today = age_day(state)
    shown: list[FieldSpec] = []
    # A condition on a hidden field is false: its stale answer must not count. The
    # answers of the fields shown so far grow as the form is walked, once.
    visible_answers: dict[str, Any] = {}
    for spec in form.fields:
        if is_visible(spec, visible_answers, today=today):
            shown.append(spec)
            if spec.id in answered:
                visible_answers[spec.id] = answered[spec.id]
    return shown


def is_settled(state: DialogueState, spec: FieldSpec) -> bool:
    return spec.id in state.answers or spec.id in state.skipped


def next_open(form: FormTemplate, state: DialogueState) -> FieldSpec | None:
    """The first visible question with neither an answer nor a skip."""
    for spec in visible_fields(form, state):
        if not is_settled(state, spec):
            return spec
    return None


def start(form: FormTemplate, state: DialogueState) -> FieldSpec | None:
    state.form_id = form.id
    return _advance(form, state)


def _advance(form: FormTemplate, state: DialogueState) -> FieldSpec | None:
    spec = next_open(form, state)
    state.current = spec.id if spec else None
    state.poll_event = None
    return spec


def current_field(form: FormTemplate, state: DialogueState) -> FieldSpec | None:
    if state.current is None:
        return None
    if state.current not in {f.id for f in visible_fields(form, state)}:
        # The question no longer applies (an earlier answer changed): move on.
        return _advance(form, state)
    return form.field(state.current)


def record(
    form: FormTemplate,
    state: DialogueState,
    spec: FieldSpec,
    answer: Answer,
    *,
    by: str,
    at: datetime,
    event_id: str,
) -> FieldSpec | None:
    """Store an answer to ``spec`` and return the next question (None when complete)."""
    state.answers[spec.id] = {
        "value": answer.value,
        "display": answer.display,
        "by": by,
        "at": at.isoformat(),
        "event": event_id,
    }
    if spec.id in state.skipped:
        state.skipped.remove(spec.id)
    state.last_answer = {"field": spec.id, "event": event_id}
    return _advance(form, state)


def answer_of(state: DialogueState, event_id: str) -> str | None:
    """The field whose stored answer the message ``event_id`` gave (None: no answer)."""
    for field_id, answer in state.answers.items():
        if answer.get("event") == event_id:
            return field_id
    last = state.last_answer
    if last is not None and last["event"] == event_id and last["field"] in state.answers:
        return last["field"]  # a state saved before answers named their message
    return None


def written_by(state: DialogueState, field_id: str, user_id: str) -> bool:
    """Whether ``user_id`` gave the stored answer to ``field_id``."""
    answer = state.answers.get(field_id)
    return answer is not None and answer.get("by") == user_id


#: What :func:`remove` did: the question is asked again now, will be asked when the
#: dialogue gets to it, or (optional, or no longer asked) is left without an answer.
ASK_AGAIN, ASK_LATER, LEFT_OPEN = "ask_again", "ask_later", "left_open"


def remove(form: FormTemplate, state: DialogueState, spec: FieldSpec) -> str:
    """Clear the answer to ``spec`` (its message was redacted); say what follows.

    A required question that is the current one or comes before it is asked again
    at once, as after ``!ändra N``; one further on is asked when the dialogue gets
    there. An optional question counts as skipped (the worker may answer it again
    with ``!ändra N``), unless it is the one being asked.
    """
    state.answers.pop(spec.id, None)
    if state.last_answer is not None and state.last_answer["field"] == spec.id:
        state.last_answer = None
    shown = {f.id for f in visible_fields(form, state)}
    if not spec.required or spec.id not in shown:
        if not spec.required and spec.id != state.current and spec.id not in state.skipped:
            state.skipped.append(spec.id)
        return LEFT_OPEN
    current = state.current if state.current in shown else None
    if current is not None and form.number_of(spec.id) > form.number_of(current):
        return ASK_LATER
    state.current = spec.id
    state.poll_event = None
    state.last_answer = None
    return ASK_AGAIN


def skip(form: FormTemplate, state: DialogueState, spec: FieldSpec) -> FieldSpec | None:
    """Skip an optional question; the caller checks that it is optional.

    A question that already has an answer (asked again by back or edit) keeps it:
    skipping then only means "leave it as it is".
    """
    if spec.id not in state.answers and spec.id not in state.skipped:
        state.skipped.append(spec.id)
    state.last_answer = None
    return _advance(form, state)


def settle_optional(form: FormTemplate, state: DialogueState) -> None:
    """Optional questions passed over without an answer count as skipped (at submission)."""
    for spec in visible_fields(form, state):
        if not spec.required and not is_settled(state, spec):
            state.skipped.append(spec.id)


def back(form: FormTemplate, state: DialogueState) -> FieldSpec | None:
    """The visible question before the current one (or the last one when complete)."""
    shown = visible_fields(form, state)
    ids = [f.id for f in shown]
    if state.current in ids:
        index = ids.index(state.current) - 1
    else:
        index = len(ids) - 1
    if index < 0:
        return None
    target = shown[index]
    state.current = target.id
    state.poll_event = None
    state.last_answer = None
    return target


def goto(form: FormTemplate, state: DialogueState, number: int) -> FieldSpec | None:
    """Ask question ``number`` (its position in the form) again, if it applies now."""
    if not 1 <= number <= len(form.fields):
        return None
    target = form.fields[number - 1]
    if target.id not in {f.id for f in visible_fields(form, state)}:
        return None
    state.current = target.id
    state.poll_event = None
    state.last_answer = None
    return target


def missing_required(form: FormTemplate, state: DialogueState) -> list[FieldSpec]:
    return [f for f in visible_fields(form, state) if f.required and f.id not in state.answers]


def is_complete(form: FormTemplate, state: DialogueState) -> bool:
    return not missing_required(form, state) and next_open(form, state) is None


def summary(form: FormTemplate, state: DialogueState) -> list[tuple[int, FieldSpec, str | None]]:
    """(number, field, shown answer or None) for every visible question."""
    return [
        (form.number_of(f.id), f, state.answers[f.id]["display"] if f.id in state.answers else None)
        for f in visible_fields(form, state)
    ]


def build_report(
    form: FormTemplate,
    state: DialogueState,
    *,
    case_number: str,
    submitted_by: str,
    at: datetime,
) -> dict[str, Any]:
    """The structured report, JSON-serialisable and tied to the template version."""
    return {
        "schema": REPORT_SCHEMA,
        "case_number": case_number,
        "form": {
            "id": form.id,
            "version": form.version,
            "title": form.title,
            "decision_type": form.decision_type,
            "legal_reference": form.legal_reference,
        },
        "submitted_by": submitted_by,
        "submitted_at": at.isoformat(),
        "answers": [
            {
                "id": f.id,
                "number": form.number_of(f.id),
                "label": f.label,
                "type": f.type,
                "value": state.answers[f.id]["value"] if f.id in state.answers else None,
                "display": state.answers[f.id]["display"] if f.id in state.answers else None,
                "answered_by": state.answers[f.id]["by"] if f.id in state.answers else None,
            }
            for f in visible_fields(form, state)
        ],
    }
