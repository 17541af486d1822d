"""The dialogue engine on the shipped form templates: pure rules, no database, no Matrix.

What a worker on duty notices: which question comes next, what back, edit and skip
do, what a conditional question does when an earlier answer changes, and what ends
up in the structured report that the decision-maker signs.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import pytest

from config.forms import FieldSpec, FormTemplate, builtin_forms
from config.settings import Municipality
from handlers import dialogue
from handlers.dialogue import DialogueState
from handlers.fields import Answer, parse_answer

FORMS: Mapping[str, FormTemplate] = builtin_forms()
NOW = datetime(2026, 3, 1, 2, 30, tzinfo=UTC)  # 03:30 in Stockholm
ANNA = "@anna:example.org"
MUNICIPALITIES = (
    Municipality(id="skovde", name="Skövde kommun", intake_room_alias="#m-skovde:example.org"),
    Municipality(
        id="mariestad", name="Mariestads kommun", intake_room_alias="#m-mariestad:example.org"
    ),
)

#: A valid answer, as typed on a phone, for every field type.
TYPED: dict[str, str] = {
    "text": "Kalle Anka",
    "long_text": "Första raden\nAndra raden",
    "choice": "1",
    "multi_choice": "1, 2",
    "yes_no": "ja",
    "date": "2026-11-24",
    "datetime": "nu",
    "personnummer": "19121212-1212",
    "phone": "070-123 45 67",
    "municipality": "Skövde",
    "matrix_user": "@x:example.org",
}


def answer(spec: FieldSpec, text: str | None = None) -> Answer:
    return parse_answer(
        spec,
        TYPED[spec.type] if text is None else text,
        lang="sv",
        municipalities=MUNICIPALITIES,
        now=NOW,
    )


_events = iter(range(1, 1_000_000))


def give(
    form: FormTemplate, state: DialogueState, spec: FieldSpec, text: str | None = None
) -> FieldSpec | None:
    """Answer ``spec`` as a worker would; returns the next question."""
    return dialogue.record(
        form, state, spec, answer(spec, text), by=ANNA, at=NOW, event_id=f"$e{next(_events)}"
    )


def answer_until(form: FormTemplate, state: DialogueState, stop_at: str, **texts: str) -> None:
    """Answer in order (with ``texts`` overriding the defaults) until ``stop_at`` is asked."""
    spec = dialogue.start(form, state)
    while spec is not None and spec.id != stop_at:
        spec = give(form, state, spec, texts.get(spec.id))
    assert spec is not None and spec.id == stop_at


def visible_ids(form: FormTemplate, state: DialogueState) -> list[str]:
    return [f.id for f in dialogue.visible_fields(form, state)]


def summary_ids(form: FormTemplate, state: DialogueState) -> list[str]:
    return [spec.id for _, spec, _ in dialogue.summary(form, state)]


def report_of(form: FormTemplate, state: DialogueState) -> dict[str, Any]:
    return dialogue.build_report(form, state, case_number="SJ-2026-0001", submitted_by=ANNA, at=NOW)


def report_ids(report: dict[str, Any]) -> list[str]:
    return [item["id"] for item in report["answers"]]


LVU = FORMS["lvu6"]


def test_the_shipped_forms_are_the_four_expected() -> None:
    assert sorted(FORMS) == ["lvm13", "lvu6", "skyddsbedomning", "sol_placering"]


# -- starting and answering in order ---------------------------------------------------


@pytest.mark.parametrize("form_id", sorted(FORMS))
def test_start_asks_question_one(form_id: str) -> None:
    form = FORMS[form_id]
    state = DialogueState()
    first = dialogue.start(form, state)
    assert first is not None
    assert first == form.fields[0]
    assert form.number_of(first.id) == 1
    assert state.form_id == form_id
    assert state.current == first.id
    assert state.answers == {}
    assert not dialogue.is_complete(form, state)


@pytest.mark.parametrize("form_id", sorted(FORMS))
def test_answering_in_order_reaches_completion(form_id: str) -> None:
    form = FORMS[form_id]
    state = DialogueState()
    asked: list[str] = []
    spec = dialogue.start(form, state)
    while spec is not None:
        asked.append(spec.id)
        assert len(asked) <= len(form.fields), "the dialogue never ends"
        spec = give(form, state, spec)

    # Every question asked once, in form order, and nothing left.
    numbers = [form.number_of(fid) for fid in asked]
    assert numbers == sorted(numbers)
    assert len(set(asked)) == len(asked)
    assert asked == visible_ids(form, state)
    assert state.current is None
    assert dialogue.is_complete(form, state)
    assert dialogue.missing_required(form, state) == []
    assert dialogue.next_open(form, state) is None
    # A conditional question was left out only because its condition is false.
    for spec in form.fields:
        if spec.id not in asked:
            assert spec.show_if is not None, spec.id


def test_a_completed_report_is_not_complete_while_a_required_answer_is_missing() -> None:
    state = DialogueState()
    spec = dialogue.start(LVU, state)
    while spec is not None:
        spec = give(LVU, state, spec)
    del state.answers["namn"]
    assert [f.id for f in dialogue.missing_required(LVU, state)] == ["namn"]
    assert not dialogue.is_complete(LVU, state)


# -- conditional questions (show_if) ---------------------------------------------------


def test_lvu_informed_yes_asks_how_and_hides_why_not() -> None:
    state = DialogueState()
    answer_until(LVU, state, "underrattade")
    nxt = give(LVU, state, LVU.field("underrattade"), "ja")
    assert nxt is not None and nxt.id == "underrattelse"
    shown = visible_ids(LVU, state)
    assert "underrattelse" in shown
    assert "ej_underrattade" not in shown


def test_lvu_informed_no_asks_why_not_and_hides_how() -> None:
    state = DialogueState()
    answer_until(LVU, state, "underrattade")
    nxt = give(LVU, state, LVU.field("underrattade"), "nej")
    assert nxt is not None and nxt.id == "ej_underrattade"
    shown = visible_ids(LVU, state)
    assert "ej_underrattade" in shown
    assert "underrattelse" not in shown


def test_changing_a_condition_swaps_questions_and_keeps_the_hidden_answer_for_later() -> None:
    state = DialogueState()
    answer_until(LVU, state, "underrattade")
    give(LVU, state, LVU.field("underrattade"), "ja")
    give(LVU, state, LVU.field("underrattelse"), "Mamma per telefon 02:10")
    assert state.current == "barnets_installning"

    # Later: the worker corrects question 11 to "no".
    number = LVU.number_of("underrattade")
    assert dialogue.goto(LVU, state, number) == LVU.field("underrattade")
    nxt = give(LVU, state, LVU.field("underrattade"), "nej")

    # Now "why not" is asked, "how" is gone from the summary and from the report...
    assert nxt is not None and nxt.id == "ej_underrattade"
    assert "underrattelse" not in summary_ids(LVU, state)
    assert "ej_underrattade" in summary_ids(LVU, state)
    report = report_of(LVU, state)
    assert "underrattelse" not in report_ids(report)
    assert "Mamma per telefon" not in json.dumps(report, ensure_ascii=False)
    # ...but the hidden answer is kept in the state.
    assert state.answers["underrattelse"]["value"] == "Mamma per telefon 02:10"

    give(LVU, state, LVU.field("ej_underrattade"), "Gick inte att nå")

    # Switching back brings the old answer back, and hides the other one.
    dialogue.goto(LVU, state, number)
    nxt = give(LVU, state, LVU.field("underrattade"), "ja")
    assert nxt is not None and nxt.id == "barnets_installning"  # "how" is still answered
    items = {spec.id: shown for _, spec, shown in dialogue.summary(LVU, state)}
    assert items["underrattelse"] == "Mamma per telefon 02:10"
    assert "ej_underrattade" not in items
    report = report_of(LVU, state)
    assert "underrattelse" in report_ids(report)
    assert "ej_underrattade" not in report_ids(report)
    assert "Gick inte att nå" not in json.dumps(report, ensure_ascii=False)
    assert state.answers["ej_underrattade"]["value"] == "Gick inte att nå"


def test_a_current_question_that_became_hidden_moves_on() -> None:
    state = DialogueState()
    answer_until(LVU, state, "underrattade")
    give(LVU, state, LVU.field("underrattade"), "ja")
    assert state.current == "underrattelse"
    # The condition is changed behind the engine's back (an edit of question 11).
    state.answers["underrattade"]["value"] = False
    spec = dialogue.current_field(LVU, state)
    assert spec is not None and spec.id == "ej_underrattade"
    assert state.current == "ej_underrattade"


def test_skydd_depends_on_any_of_the_risk_choices() -> None:
    form = FORMS["skyddsbedomning"]
    for typed, shown in (("1", True), ("2", True), ("3", False)):
        state = DialogueState()
        answer_until(form, state, "risk")
        nxt = give(form, state, form.field("risk"), typed)
        assert nxt is not None
        assert (nxt.id == "skydd") is shown
        assert ("skydd" in visible_ids(form, state)) is shown


# -- back and goto ---------------------------------------------------------------------


def test_back_from_question_one_returns_none_and_stays() -> None:
    state = DialogueState()
    dialogue.start(LVU, state)
    assert dialogue.back(LVU, state) is None
    assert state.current == LVU.fields[0].id


def test_back_goes_to_the_previous_visible_question_not_a_hidden_one() -> None:
    state = DialogueState()
    answer_until(LVU, state, "barnets_installning", underrattade="ja")
    target = dialogue.back(LVU, state)
    # Question 13 ("why not informed") is hidden: back goes to 12.
    assert target is not None and target.id == "underrattelse"
    assert state.current == "underrattelse"
    assert dialogue.back(LVU, state) == LVU.field("underrattade")


def test_answering_after_back_returns_to_the_first_open_question() -> None:
    state = DialogueState()
    answer_until(LVU, state, "vistelse")
    dialogue.back(LVU, state)
    dialogue.back(LVU, state)
    assert state.current == "personnummer"
    nxt = give(LVU, state, LVU.field("personnummer"), "121212-1212")
    assert nxt is not None and nxt.id == "vistelse"
    assert state.answers["personnummer"]["value"] == "20121212-1212"  # 0-99 years old


@pytest.mark.parametrize("form_id", sorted(FORMS))
def test_back_when_complete_goes_to_the_last_visible_question(form_id: str) -> None:
    form = FORMS[form_id]
    state = DialogueState()
    spec = dialogue.start(form, state)
    while spec is not None:
        spec = give(form, state, spec)
    assert state.current is None
    target = dialogue.back(form, state)
    assert target is not None
    assert target.id == visible_ids(form, state)[-1]
    assert state.current == target.id


def test_back_when_complete_skips_a_hidden_last_question() -> None:
    # A form whose last question is conditional: lvu6's police questions alone.
    form = FormTemplate(
        id="kort",
        version=1,
        title="Kort",
        decision_type="Kort",
        legal_reference="-",
        next_step="-",
        description="-",
        fields=LVU.fields[LVU.number_of("polis") - 1 : LVU.number_of("polis_skal")],
    )
    state = DialogueState()
    spec = dialogue.start(form, state)
    assert spec is not None and spec.id == "polis"
    assert give(form, state, spec, "nej") is None
    assert dialogue.back(form, state) == form.field("polis")


def test_goto_a_hidden_question_returns_none_and_changes_nothing() -> None:
    state = DialogueState()
    answer_until(LVU, state, "barnets_installning", underrattade="ja")
    before = state.to_json()
    assert dialogue.goto(LVU, state, LVU.number_of("ej_underrattade")) is None
    assert state.to_json() == before


def test_goto_a_hidden_question_before_its_condition_is_answered() -> None:
    state = DialogueState()
    dialogue.start(LVU, state)
    assert dialogue.goto(LVU, state, LVU.number_of("underrattelse")) is None
    assert dialogue.goto(LVU, state, LVU.number_of("polis_skal")) is None
    assert state.current == "namn"


@pytest.mark.parametrize("number", [0, -1, len(LVU.fields) + 1, 10_000])
def test_goto_out_of_range_returns_none(number: int) -> None:
    state = DialogueState()
    dialogue.start(LVU, state)
    assert dialogue.goto(LVU, state, number) is None
    assert state.current == "namn"


def test_goto_an_answered_question_and_answering_it_returns_to_where_one_was() -> None:
    state = DialogueState()
    answer_until(LVU, state, "handelse")
    assert dialogue.goto(LVU, state, 1) == LVU.field("namn")
    assert state.last_answer is None  # an edit of a message can no longer change it
    nxt = give(LVU, state, LVU.field("namn"), "Nytt Namn")
    assert nxt is not None and nxt.id == "handelse"
    assert state.answers["namn"]["value"] == "Nytt Namn"


# -- skipping --------------------------------------------------------------------------


def test_a_skipped_question_shows_as_skipped_and_answering_it_removes_the_skip() -> None:
    state = DialogueState()
    answer_until(LVU, state, "barnets_installning")
    spec = LVU.field("barnets_installning")
    assert not spec.required
    nxt = dialogue.skip(LVU, state, spec)
    assert nxt is not None and nxt.id == "forslag"
    assert state.skipped == ["barnets_installning"]
    assert "barnets_installning" not in state.answers
    items = {s.id: shown for _, s, shown in dialogue.summary(LVU, state)}
    assert items["barnets_installning"] is None
    # Skipped counts as settled: not asked again, not missing.
    assert dialogue.next_open(LVU, state) == LVU.field("forslag")
    assert spec not in dialogue.missing_required(LVU, state)
    report = report_of(LVU, state)
    [item] = [a for a in report["answers"] if a["id"] == "barnets_installning"]
    assert item["value"] is None

    # Answered later: no longer skipped, and shown.
    dialogue.goto(LVU, state, LVU.number_of("barnets_installning"))
    give(LVU, state, spec, "Vill bo hos mormor")
    assert state.skipped == []
    items = {s.id: shown for _, s, shown in dialogue.summary(LVU, state)}
    assert items["barnets_installning"] == "Vill bo hos mormor"


def test_a_report_with_only_a_skipped_optional_question_open_is_complete() -> None:
    state = DialogueState()
    spec = dialogue.start(LVU, state)
    while spec is not None:
        spec = dialogue.skip(LVU, state, spec) if not spec.required else give(LVU, state, spec)
    assert state.skipped == ["barnets_installning"]
    assert dialogue.is_complete(LVU, state)


# -- the structured report and the saved state -----------------------------------------


@pytest.mark.parametrize("form_id", sorted(FORMS))
def test_the_report_is_json_and_carries_the_form_and_only_visible_answers(form_id: str) -> None:
    form = FORMS[form_id]
    state = DialogueState()
    spec = dialogue.start(form, state)
    while spec is not None:
        spec = give(form, state, spec)
    # A stale answer to a question that does not apply must not leak into the report.
    hidden = [f for f in form.fields if f.id not in visible_ids(form, state)]
    assert hidden, "each shipped form has a conditional question hidden by the defaults"
    for f in hidden:
        state.answers[f.id] = {"value": "HEMLIGT", "display": "HEMLIGT", "by": ANNA, "at": "x"}

    report = report_of(form, state)
    encoded = json.dumps(report)  # must not raise
    decoded = json.loads(encoded)
    assert decoded == report
    assert "HEMLIGT" not in encoded
    assert report["form"] == {
        "id": form.id,
        "version": form.version,
        "title": form.title,
        "decision_type": form.decision_type,
        "legal_reference": form.legal_reference,
    }
    assert report["case_number"] == "SJ-2026-0001"
    assert report["submitted_by"] == ANNA
    assert report_ids(report) == visible_ids(form, state)
    for item in decoded["answers"]:
        assert item["number"] == form.number_of(item["id"])
        assert item["value"] == state.answers[item["id"]]["value"]
        assert item["answered_by"] == ANNA


def test_the_report_keeps_typed_values() -> None:
    state = DialogueState()
    spec = dialogue.start(LVU, state)
    while spec is not None:
        spec = give(LVU, state, spec)
    values = {a["id"]: a["value"] for a in report_of(LVU, state)["answers"]}
    assert values["personnummer"] == "19121212-1212"
    assert values["hemkommun"] == "skovde"
    assert values["grund"] == ["hemmet", "missbruk"]
    assert values["underrattade"] is True
    assert values["tidpunkt"] == "2026-03-01T03:30:00+01:00"


def test_state_round_trips_through_json() -> None:
    state = DialogueState()
    answer_until(LVU, state, "barnets_installning", underrattade="nej")
    dialogue.skip(LVU, state, LVU.field("barnets_installning"))
    state.asked = "forslag"
    state.poll_event = "$poll7"
    give(LVU, state, LVU.field("forslag"))

    direct = DialogueState.from_json(state.to_json())
    assert direct == state
    through_text = DialogueState.from_json(json.loads(json.dumps(state.to_json())))
    assert through_text == state
    # And the engine goes on the same way after the round trip.
    assert dialogue.next_open(LVU, through_text) == dialogue.next_open(LVU, state)
    assert dialogue.summary(LVU, through_text) == dialogue.summary(LVU, state)


def test_state_from_json_ignores_unknown_keys_and_defaults_missing_ones() -> None:
    state = DialogueState.from_json({"form_id": "lvu6", "future_key": 1})
    assert state == DialogueState(form_id="lvu6")


def test_a_fresh_state_round_trips() -> None:
    assert DialogueState.from_json(json.loads(json.dumps(DialogueState().to_json()))) == (
        DialogueState()
    )
