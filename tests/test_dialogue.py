"""The dialogue engine on the shipped form templates: pure rules, no database, no Matrix.

What a worker on duty notices: which question comes next, what back, edit and skip
do, what a conditional question does when an earlier answer changes, and what ends
up in the structured report that the decision-maker signs.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from config.forms import FieldSpec, FormTemplate, builtin_forms
from config.settings import Municipality
from handlers import dialogue
from handlers.dialogue import DialogueState
from handlers.fields import Answer, InvalidAnswer, parse_answer

FORMS: Mapping[str, FormTemplate] = builtin_forms()
NOW = datetime(2026, 3, 1, 2, 30, tzinfo=UTC)  # 03:30 in Stockholm
ANNA = "@anna:example.org"
MUNICIPALITIES = (
    Municipality(id="skovde", name="Skövde kommun", intake_room_alias="#m-skovde:example.org"),
    Municipality(
        id="mariestad", name="Mariestads kommun", intake_room_alias="#m-mariestad:example.org"
    ),
)


def pnr(birth: str, serial3: str = "238") -> str:
    """A personnummer ``YYYYMMDD-NNN`` + the check digit that passes the Luhn test."""
    total = 0
    for position, character in enumerate(birth[2:] + serial3):
        product = int(character) * (2 if position % 2 == 0 else 1)
        total += product - 9 if product > 9 else product
    return f"{birth}-{serial3}{(10 - total % 10) % 10}"


#: A child of 13 at NOW, so lvu6 asks the questions for a child under 15.
CHILD = pnr("20120315")
#: A valid answer, as typed on a phone, for every field type.
TYPED: dict[str, str] = {
    "text": "Kalle Anka",
    "long_text": "Första raden\nAndra raden",
    "choice": "1",
    "multi_choice": "1, 2",
    "yes_no": "ja",
    "date": "2026-11-24",
    "datetime": "nu",
    "personnummer": CHILD,
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
    form: FormTemplate,
    state: DialogueState,
    spec: FieldSpec,
    text: str | None = None,
    *,
    at: datetime = NOW,
) -> FieldSpec | None:
    """Answer ``spec`` as a worker would (at ``at``); returns the next question."""
    return dialogue.record(
        form, state, spec, answer(spec, text), by=ANNA, at=at, event_id=f"$e{next(_events)}"
    )


def answer_until(form: FormTemplate, state: DialogueState, stop_at: str, **texts: str) -> None:
    """Answer in order (with ``texts`` overriding the defaults) until ``stop_at`` is asked."""
    spec = dialogue.start(form, state)
    while spec is not None and spec.id != stop_at:
        spec = give(form, state, spec, texts.get(spec.id))
    assert spec is not None and spec.id == stop_at


def answer_all(form: FormTemplate, state: DialogueState, **texts: str) -> list[str]:
    """Answer every question in order (``texts`` override the defaults); the ids asked."""
    asked: list[str] = []
    spec = dialogue.start(form, state)
    while spec is not None:
        asked.append(spec.id)
        assert len(asked) <= len(form.fields), "the dialogue never ends"
        spec = give(form, state, spec, texts.get(spec.id))
    return asked


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


# -- the age a personnummer gives (show_if with age_under / age_at_least) ---------------

#: 17 and 19 at NOW (2026-03-01): a child, and a young adult for whom only 3 § applies.
AGED_17 = pnr("20080601")
AGED_19 = pnr("20060601")
#: The new lvu6 questions answered "no", so that only the age decides what is asked.
NO_FOLLOW_UPS = {"tolk": "nej", "skyddade": "nej", "beslut_14": "nej", "polis": "nej"}
STOCKHOLM_EVENING = datetime(2026, 2, 28, 22, 30, tzinfo=UTC)  # 23:30 in Stockholm
AFTER_MIDNIGHT = datetime(2026, 2, 28, 23, 10, tzinfo=UTC)  # 00:10 on 1 March in Stockholm


def test_lvu_for_a_child_of_17_asks_the_grounds_of_2_and_3_and_about_the_guardians() -> None:
    state = DialogueState()
    asked = answer_all(LVU, state, personnummer=AGED_17, **NO_FOLLOW_UPS)

    assert asked == [
        "namn",
        "personnummer",
        "hemkommun",
        "vistelse",
        "grund",
        "handelse",
        "bradskande",
        "placering",
        "vardnadshavare",
        "underrattade",
        "underrattelse",
        "barnets_installning",
        "forslag",
        "polis",
        "tidpunkt",
        "placeringsbeslut",
        "unge_part",  # 15 or older: a party in their own right (36 § LVU)
        "tolk",
        "skyddade",
        "beslut_14",
    ]
    assert dialogue.is_complete(LVU, state)
    assert state.answers["grund"]["value"] == ["hemmet", "missbruk"]


def test_lvu_for_a_person_of_19_hides_the_2_grounds_and_the_guardians() -> None:
    state = DialogueState()
    asked = answer_all(LVU, state, personnummer=AGED_19, grund_3="1, 3", **NO_FOLLOW_UPS)

    assert asked == [
        "namn",
        "personnummer",
        "hemkommun",
        "vistelse",
        "grund_3",  # only 3 § from 18 (1 § third paragraph LVU)
        "handelse",
        "bradskande",
        "placering",
        "barnets_installning",
        "forslag",
        "polis",
        "tidpunkt",
        "placeringsbeslut",
        "unge_part",
        "tolk",
        "skyddade",
        "beslut_14",
    ]
    assert dialogue.is_complete(LVU, state)
    report = report_of(LVU, state)
    values = {item["id"]: item["value"] for item in report["answers"]}
    assert values["grund_3"] == ["missbruk", "nedbrytande"]
    assert "grund" not in values and "vardnadshavare" not in values


def test_the_visible_fields_of_a_17_and_a_19_year_old_differ_only_by_age() -> None:
    child, adult = DialogueState(), DialogueState()
    answer_all(LVU, child, personnummer=AGED_17, **NO_FOLLOW_UPS)
    answer_all(LVU, adult, personnummer=AGED_19, **NO_FOLLOW_UPS)

    shown_child, shown_adult = set(visible_ids(LVU, child)), set(visible_ids(LVU, adult))
    assert shown_child - shown_adult == {"grund", "vardnadshavare", "underrattade", "underrattelse"}
    assert shown_adult - shown_child == {"grund_3"}
    # The 2 § ground cannot be given to a 19-year-old at all.
    assert "hemmet" not in [c.value for c in LVU.field("grund_3").choices]
    with pytest.raises(InvalidAnswer):
        answer(LVU.field("grund_3"), "Missförhållanden i hemmet")


@pytest.mark.parametrize(
    ("birth", "party"),
    [("20110301", True), ("20110302", False), ("20150101", False)],
    ids=["15-today", "14-until-tomorrow", "11"],
)
def test_the_young_person_is_asked_about_as_a_party_from_the_15th_birthday(
    birth: str, party: bool
) -> None:
    state = DialogueState()
    asked = answer_all(LVU, state, personnummer=pnr(birth), **NO_FOLLOW_UPS)

    assert ("unge_part" in asked) is party
    assert "grund" in asked and "vardnadshavare" in asked


@pytest.mark.parametrize(
    ("typed", "grounds"),
    [
        (pnr("20080661"), "grund"),  # samordningsnummer: born 1 June 2008 (day + 60), 17
        (pnr("20060661"), "grund_3"),  # samordningsnummer: born 1 June 2006, 19
        ("121212+1212", "grund_3"),  # "+": 100 or older, born 1912
        (AGED_17[2:], "grund"),  # ten digits: the century that makes 0-99, 17
    ],
)
def test_the_age_is_read_from_any_form_of_number(typed: str, grounds: str) -> None:
    state = DialogueState()
    answer_until(LVU, state, "vistelse", personnummer=typed)
    nxt = give(LVU, state, LVU.field("vistelse"))

    assert nxt is not None and nxt.id == grounds


def test_a_birthday_passed_during_the_report_changes_the_grounds_asked() -> None:
    # Turns 18 on 1 March 2026: 17 when the report starts at 23:30 on 28 February.
    state = DialogueState()
    spec = dialogue.start(LVU, state)
    typed = {"personnummer": pnr("20080301"), "grund": "1"}
    while spec is not None and spec.id != "handelse":
        spec = give(LVU, state, spec, typed.get(spec.id), at=STOCKHOLM_EVENING)
    assert dialogue.age_day(state) == date(2026, 2, 28)
    assert state.answers["grund"]["value"] == ["hemmet"]

    # The next answer comes after midnight: the decision will be taken at 18.
    nxt = give(LVU, state, LVU.field("handelse"), at=AFTER_MIDNIGHT)

    assert dialogue.age_day(state) == date(2026, 3, 1)
    assert nxt is not None and nxt.id == "grund_3"
    shown = visible_ids(LVU, state)
    assert "grund" not in shown and "vardnadshavare" not in shown
    assert "grund" not in report_ids(report_of(LVU, state))


def test_correcting_the_personnummer_swaps_the_grounds_and_keeps_the_old_answer() -> None:
    state = DialogueState()
    answer_until(LVU, state, "handelse", personnummer=AGED_17, grund="1")

    dialogue.goto(LVU, state, LVU.number_of("personnummer"))
    nxt = give(LVU, state, LVU.field("personnummer"), AGED_19)

    assert nxt is not None and nxt.id == "grund_3"
    assert "grund" not in visible_ids(LVU, state)
    assert state.answers["grund"]["value"] == ["hemmet"]  # kept, but not in the report
    assert "grund" not in report_ids(report_of(LVU, state))


def test_the_age_day_is_the_stockholm_day_of_the_latest_answer() -> None:
    state = DialogueState()
    assert dialogue.age_day(state) is None  # nothing answered: no age condition holds
    assert [f.id for f in dialogue.visible_fields(LVU, state)][4:6] == ["handelse", "bradskande"]

    state.answers = {
        "a": {"value": "x", "display": "x", "by": ANNA, "at": STOCKHOLM_EVENING.isoformat()},
        "b": {"value": "x", "display": "x", "by": ANNA, "at": "not a time"},
    }
    assert dialogue.age_day(state) == date(2026, 2, 28)
    state.answers["c"] = {"value": "x", "display": "x", "by": ANNA, "at": "2026-02-28T23:59"}
    assert dialogue.age_day(state) == date(2026, 2, 28)  # naive: Stockholm time
    state.answers["d"] = {
        "value": "x",
        "display": "x",
        "by": ANNA,
        "at": AFTER_MIDNIGHT.isoformat(),
    }
    assert dialogue.age_day(state) == date(2026, 3, 1)
    later = AFTER_MIDNIGHT - timedelta(days=3)
    state.answers["e"] = {"value": "x", "display": "x", "by": ANNA, "at": later.isoformat()}
    assert dialogue.age_day(state) == date(2026, 3, 1)  # the latest, not the last written


# -- the questions added in lvu6 and lvm13 version 2 --------------------------------------


def test_the_new_lvu_questions_come_after_the_old_ones_in_order() -> None:
    state = DialogueState()
    asked = answer_all(LVU, state)  # a child of 13; every yes/no answered "ja"

    assert asked[asked.index("tidpunkt") :] == [
        "tidpunkt",
        "placeringsbeslut",
        "tolk",
        "tolk_behov",
        "skyddade",
        "skydd_atgard",
        "beslut_14",
        "beslut_14_typ",
        "beslut_14_forslag",
    ]
    assert [LVU.number_of(field_id) for field_id in asked[-8:]] == [19, 21, 22, 23, 24, 25, 26, 27]
    assert state.answers["beslut_14_typ"]["value"] == ["umgange", "vistelseort"]
    assert dialogue.is_complete(LVU, state)


@pytest.mark.parametrize(("typed", "asked"), [("1", True), ("2", False), ("vet inte", True)])
def test_protected_personal_data_asks_how_it_is_protected_unless_there_is_none(
    typed: str, asked: bool
) -> None:
    state = DialogueState()
    answer_until(LVU, state, "skyddade")
    nxt = give(LVU, state, LVU.field("skyddade"), typed)

    assert nxt is not None and (nxt.id == "skydd_atgard") is asked
    assert ("skydd_atgard" in visible_ids(LVU, state)) is asked


def test_without_14_decisions_the_lvu_report_ends_after_the_question() -> None:
    state = DialogueState()
    answer_until(LVU, state, "beslut_14")

    assert give(LVU, state, LVU.field("beslut_14"), "nej") is None
    assert dialogue.is_complete(LVU, state)
    assert "beslut_14_forslag" not in visible_ids(LVU, state)


@pytest.mark.parametrize(("typed", "follow_up"), [("ja", "sis_plats"), ("nej", "sis_ej_begaran")])
def test_lvm_asks_for_the_sis_place_after_the_old_questions(typed: str, follow_up: str) -> None:
    form = FORMS["lvm13"]
    state = DialogueState()
    asked = answer_all(form, state, sis_begaran=typed)

    assert asked[asked.index("tidpunkt") :] == ["tidpunkt", "sis_begaran", follow_up]
    assert form.number_of("sis_begaran") == 17
    assert dialogue.is_complete(form, state)


def test_the_sis_place_may_be_left_for_later() -> None:
    form = FORMS["lvm13"]
    state = DialogueState()
    answer_until(form, state, "sis_plats")

    assert dialogue.skip(form, state, form.field("sis_plats")) is None
    assert dialogue.is_complete(form, state)


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
    assert values["personnummer"] == CHILD
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
