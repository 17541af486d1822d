"""Form templates: the shipped ones are sound, and a broken one is explained precisely."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from bot.cli import main as cli_main
from config import (
    BUILTIN_FORMS_DIR,
    EXAMPLE_CONFIG,
    FIELD_TYPES,
    Condition,
    ConfigError,
    FormTemplate,
    Problem,
    builtin_forms,
    check_config,
    load_forms,
    load_settings,
)
from config.forms import AGE_CONDITION_TYPES, CONDITION_TYPES, Translation

SHIPPED = ("lvm13", "lvu6", "skyddsbedomning", "sol_placering")
CONFIG = """
[matrix]
homeserver = "https://matrix.example.org"
user_id = "@socialjour:example.org"

[storage]
data_dir = "data"

[duty]
room_alias = "#socialjour:example.org"
members = ["@anna:example.org"]
"""

HEADER = """
id = "{id}"
version = 1
title = "Prov"
decision_type = "Provbeslut"
legal_reference = "1 § provlagen"
next_step = "Inget."
description = "Ett prov."
"""

TWO_FIELDS = """
[[fields]]
id = "namn"
type = "text"
label = "Namn"

[[fields]]
id = "svar"
type = "yes_no"
label = "Svar?"
"""


PNR_FIELD = """
[[fields]]
id = "pnr"
type = "personnummer"
label = "Personnummer"
"""


def write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def template(form_id: str, fields: str) -> str:
    return HEADER.format(id=form_id) + textwrap.dedent(fields)


# -- the shipped templates -----------------------------------------------------------


def test_shipped_templates_load_without_problems() -> None:
    forms, problems = load_forms([BUILTIN_FORMS_DIR])

    assert problems == []
    assert sorted(forms) == list(SHIPPED)
    assert builtin_forms() == forms


@pytest.mark.parametrize("form_id", SHIPPED)
def test_each_shipped_template_is_complete_and_fits_a_phone(form_id: str) -> None:
    form = builtin_forms()[form_id]

    assert form.version >= 1
    for text in (form.title, form.decision_type, form.legal_reference, form.next_step):
        assert text and text == text.strip() and "\n" not in text
    ids = [spec.id for spec in form.fields]
    assert len(ids) == len(set(ids))
    assert ids[:3] == ["namn", "personnummer", "hemkommun"]
    assert form.field("hemkommun").type == "municipality"
    for spec in form.fields:
        assert spec.type in FIELD_TYPES
        assert len(spec.label) <= 45, spec.label
        assert spec.help, f"{form_id}.{spec.id} has no help text"
        assert len(spec.help) <= 250, spec.id
        for choice in spec.choices:
            assert len(choice.label) <= 50, choice.label
        if spec.show_if is not None:
            source = form.field(spec.show_if.field)
            assert form.number_of(source.id) < form.number_of(spec.id)
            if spec.show_if.on_age:
                assert source.type in AGE_CONDITION_TYPES
            else:
                assert source.type in CONDITION_TYPES


def test_conditions_are_used_where_the_answer_decides_the_next_question() -> None:
    forms = builtin_forms()
    conditional = {
        form_id for form_id, form in forms.items() if any(f.show_if for f in form.fields)
    }
    assert len(conditional) >= 2

    lvu6 = forms["lvu6"]
    assert lvu6.field("underrattelse").show_if == Condition(field="underrattade", equals=True)
    assert lvu6.field("ej_underrattade").show_if == Condition(field="underrattade", equals=False)
    assert lvu6.field("polis_skal").show_if == Condition(field="polis", equals=True)
    assert lvu6.field("barnets_installning").required is False
    grounds = lvu6.field("grund")
    assert grounds.type == "multi_choice"
    assert [choice.value for choice in grounds.choices] == [
        "hemmet",
        "missbruk",
        "brott",
        "nedbrytande",
    ]
    placing = forms["sol_placering"].field("vardnadshavare").show_if
    assert placing is not None and placing.any_of == ("vardnadshavare", "bada")
    assert forms["skyddsbedomning"].field("personnummer").required is False


def test_the_lvu6_questions_come_in_the_documented_order() -> None:
    form = builtin_forms()["lvu6"]

    assert form.version == 2
    assert [spec.id for spec in form.fields] == [
        "namn",
        "personnummer",
        "hemkommun",
        "vistelse",
        "grund",
        "grund_3",  # new in version 2: the grounds for 18-20
        "handelse",
        "bradskande",
        "placering",
        "vardnadshavare",
        "underrattade",
        "underrattelse",
        "ej_underrattade",
        "barnets_installning",
        "forslag",
        "polis",
        "polis_skal",
        "tidpunkt",
        # new in version 2, after the old questions
        "placeringsbeslut",
        "unge_part",
        "tolk",
        "tolk_behov",
        "skyddade",
        "skydd_atgard",
        "beslut_14",
        "beslut_14_typ",
        "beslut_14_forslag",
    ]
    assert "6 §" in form.legal_reference and "1990:52" in form.legal_reference
    assert "7 §" in form.next_step and "en vecka" in form.next_step
    assert "kommit in till förvaltningsrätten" in form.next_step
    # 8 §: four weeks from the day the custody was carried out.
    assert "fyra veckor från den dag då omhändertagandet verkställdes" in form.next_step


def test_the_lvu6_grounds_and_guardians_follow_the_age() -> None:
    form = builtin_forms()["lvu6"]

    # Under 18: 2 § and 3 §; from 18 (to 20) only 3 § (1 § third paragraph LVU).
    assert form.field("grund").show_if == Condition(field="personnummer", age_under=18)
    assert form.field("grund_3").show_if == Condition(field="personnummer", age_at_least=18)
    assert [c.value for c in form.field("grund").choices] == [
        "hemmet",
        "missbruk",
        "brott",
        "nedbrytande",
    ]
    assert [c.value for c in form.field("grund_3").choices] == ["missbruk", "brott", "nedbrytande"]
    assert all("3 §" in c.label for c in form.field("grund_3").choices)
    # No guardians from 18; a party in one's own right from 15 (36 § LVU).
    for field_id in ("vardnadshavare", "underrattade"):
        assert form.field(field_id).show_if == Condition(field="personnummer", age_under=18)
    assert form.field("unge_part").show_if == Condition(field="personnummer", age_at_least=15)
    assert "36 § LVU" in form.field("unge_part").help


def test_the_lvu6_asks_the_decisions_that_go_with_the_custody() -> None:
    form = builtin_forms()["lvu6"]

    placing = form.field("placeringsbeslut")
    assert placing.type == "long_text" and placing.required and placing.show_if is None
    assert "41" in placing.help and "överklagas" in placing.help
    assert form.field("tolk").type == "yes_no"
    assert form.field("tolk_behov").show_if == Condition(field="tolk", equals=True)
    assert [c.value for c in form.field("skyddade").choices] == ["ja", "nej", "okant"]
    assert form.field("skydd_atgard").show_if == Condition(field="skyddade", any_of=("ja", "okant"))
    # The urgent 14 § decisions are follow-ups, asked only when wanted.
    assert form.field("beslut_14").type == "yes_no"
    assert [c.value for c in form.field("beslut_14_typ").choices] == ["umgange", "vistelseort"]
    for field_id in ("beslut_14_typ", "beslut_14_forslag"):
        assert form.field(field_id).show_if == Condition(field="beslut_14", equals=True)


def test_the_lvm13_asks_for_the_sis_place_after_the_old_questions() -> None:
    form = builtin_forms()["lvm13"]

    assert form.version == 2
    ids = [spec.id for spec in form.fields]
    assert ids[ids.index("tidpunkt") :] == [
        "tidpunkt",
        "sis_begaran",
        "sis_plats",
        "sis_ej_begaran",
    ]
    assert len(ids) == 19
    assert "25 § LVM" in form.field("sis_begaran").help
    assert form.field("sis_plats").show_if == Condition(field="sis_begaran", equals=True)
    assert form.field("sis_plats").required is False
    assert form.field("sis_ej_begaran").show_if == Condition(field="sis_begaran", equals=False)


def test_the_lvm13_deadlines_follow_15_and_18_paragraphs() -> None:
    text = builtin_forms()["lvm13"].next_step

    assert "utan dröjsmål och senast dagen efter beslutet (15 § LVM)" in text
    assert "genast underställas" not in text
    assert "18 a § LVM" in text
    assert "ska ha kommit in till rätten inom en vecka från rättens beslut" in text
    assert "18 b § LVM" in text


# -- the appeal texts: the custody itself is reviewed, not appealed ----------------------


def test_the_lvu6_appeal_text_says_what_the_family_can_do() -> None:
    form = builtin_forms()["lvu6"]
    swedish, english = form.appeal, form.appeal_in("en")

    assert swedish.startswith("Beslutet om omedelbart omhändertagande kan inte överklagas.")
    for expected in (
        "förvaltningsrätten",
        "(underställning)",
        "inom en vecka",
        "offentligt biträde",
        "Beslutet om var vården ska inledas",
        "kan överklagas till förvaltningsrätten",
        "inom tre veckor",
        "fyllt 15 år",
        "vistelseorten",
    ):
        assert expected in swedish, expected
    assert english.startswith("The decision on immediate custody cannot be appealed.")
    for expected in (
        "förvaltningsrätten",
        "(underställning)",
        "within one week",
        "public counsel",
        "The decision on where the care begins",
        "can be appealed to the administrative court",
        "within three weeks",
        "15 or older",
    ):
        assert expected in english, expected
    # Version 1 told the family to appeal the custody decision itself.
    assert "Beslutet kan överklagas till förvaltningsrätten" not in swedish


def test_the_lvm13_appeal_text_says_the_court_reviews_the_custody() -> None:
    form = builtin_forms()["lvm13"]
    swedish, english = form.appeal, form.appeal_in("en")

    assert swedish.startswith("Beslutet om omedelbart omhändertagande kan inte överklagas.")
    for expected in (
        "förvaltningsrätten",
        "(underställning)",
        "senast dagen efter beslutet",
        "inom fyra dagar",
        "offentligt biträde",
        "kammarrätten inom tre veckor",
        "genast häva omhändertagandet",
    ):
        assert expected in swedish, expected
    assert english.startswith("The decision on immediate custody cannot be appealed.")
    for expected in ("förvaltningsrätten", "(underställning)", "within four days", "three weeks"):
        assert expected in english, expected
    assert "Beslutet kan överklagas till förvaltningsrätten" not in swedish


@pytest.mark.parametrize(
    ("form_id", "statutes"),
    [
        ("lvu6", ("41 §", "7 §", "36 §", "43 och 44 §§ förvaltningslagen", "14 §")),
        ("lvm13", ("44 § LVM", "15-17 §§ LVM", "18 a §", "18 b §", "25 § LVM")),
    ],
)
def test_the_legal_texts_cite_their_statutes_in_comments(
    form_id: str, statutes: tuple[str, ...]
) -> None:
    source = (BUILTIN_FORMS_DIR / f"{form_id}.toml").read_text(encoding="utf-8")
    comments = " ".join(
        line.lstrip("# ").strip() for line in source.splitlines() if line.startswith("#")
    )

    for statute in statutes:
        assert statute in comments, statute
    assert "kontrollera" in comments  # what is not checked says so


def test_other_shipped_templates_have_no_translation_and_fall_back_to_swedish() -> None:
    for form in builtin_forms().values():
        if form.id in ("lvu6", "lvm13"):
            assert [t.language for t in form.translations] == ["en"]
        else:
            assert form.translations == ()
            assert form.appeal_in("en") == form.appeal
        assert form.appeal_in("sv") == form.appeal


def test_field_and_number_of_find_questions_by_id() -> None:
    form = builtin_forms()["lvm13"]

    assert form.number_of("namn") == 1
    assert form.fields[form.number_of("polis") - 1] is form.field("polis")
    with pytest.raises(KeyError):
        form.field("saknas")
    with pytest.raises(KeyError):
        form.number_of("saknas")


# -- broken templates ----------------------------------------------------------------


BROKEN_FIELDS = [
    pytest.param(
        """
        [[fields]]
        id = "namn"
        type = "txt"
        label = "Namn"
        """,
        "fields[0] (namn).type",
        "unknown type 'txt'; did you mean 'text'?",
        id="unknown-type",
    ),
    pytest.param(
        """
        [[fields]]
        id = "namn"
        type = "text"
        label = "Namn"
        hjalp = "x"
        """,
        "fields[0] (namn).hjalp",
        "unknown key (did you mean 'help'?)",
        id="unknown-field-key",
    ),
    pytest.param(
        """
        [[fields]]
        id = "namn"
        type = "text"
        """,
        "fields[0] (namn).label",
        "missing required key",
        id="missing-label",
    ),
    pytest.param(
        TWO_FIELDS
        + """
        [[fields]]
        id = "namn"
        type = "text"
        label = "Igen"
        """,
        "fields[2] (namn).id",
        "duplicate field id 'namn' (also fields[0])",
        id="duplicate-field-id",
    ),
    pytest.param(
        """
        [[fields]]
        id = "Namn"
        type = "text"
        label = "Namn"
        """,
        "fields[0].id",
        "expected lowercase letters",
        id="bad-field-id",
    ),
    pytest.param(
        """
        [[fields]]
        id = "grund"
        type = "long_text"
        label = "Grund"
        show_if = { field = "x", equals = "a" }
        """,
        "fields[0] (grund).show_if",
        "names 'x', which is not an earlier field",
        id="show-if-missing",
    ),
    pytest.param(
        """
        [[fields]]
        id = "grund"
        type = "long_text"
        label = "Grund"
        show_if = { field = "svar", equals = true }
        """
        + TWO_FIELDS,
        "fields[0] (grund).show_if",
        "names 'svar', which is not an earlier field (it is fields[2], after this one)",
        id="show-if-later",
    ),
    pytest.param(
        """
        [[fields]]
        id = "svar"
        type = "yes_no"
        label = "Svar?"
        show_if = { field = "svar", equals = true }
        """,
        "fields[0] (svar).show_if",
        "names this field itself",
        id="show-if-itself",
    ),
    pytest.param(
        TWO_FIELDS
        + """
        [[fields]]
        id = "hur"
        type = "text"
        label = "Hur?"
        show_if = { field = "svar", equals = "ja" }
        """,
        "fields[2] (hur).show_if.equals",
        "'svar' is a yes_no question: expected true or false, got a string ('ja')",
        id="yes-no-equals-not-bool",
    ),
    pytest.param(
        TWO_FIELDS
        + """
        [[fields]]
        id = "hur"
        type = "text"
        label = "Hur?"
        show_if = { field = "svar", any_of = ["ja"] }
        """,
        "fields[2] (hur).show_if.any_of",
        "use equals = true or equals = false",
        id="yes-no-any-of",
    ),
    pytest.param(
        """
        [[fields]]
        id = "risk"
        type = "choice"
        label = "Risk"
        choices = [{ value = "akut", label = "Akut" }, { value = "ingen", label = "Ingen" }]

        [[fields]]
        id = "skydd"
        type = "text"
        label = "Skydd"
        show_if = { field = "risk", equals = "hög" }
        """,
        "fields[1] (skydd).show_if.equals",
        "'hög' is not among the choices of 'risk': 'akut', 'ingen'",
        id="equals-not-a-choice",
    ),
    pytest.param(
        """
        [[fields]]
        id = "risk"
        type = "multi_choice"
        label = "Risk"
        choices = [{ value = "akut", label = "Akut" }, { value = "ingen", label = "Ingen" }]

        [[fields]]
        id = "skydd"
        type = "text"
        label = "Skydd"
        show_if = { field = "risk", any_of = ["akut", "snart"] }
        """,
        "fields[1] (skydd).show_if.any_of[1]",
        "'snart' is not among the choices of 'risk'",
        id="any-of-not-a-choice",
    ),
    pytest.param(
        """
        [[fields]]
        id = "risk"
        type = "multi_choice"
        label = "Risk"
        choices = [{ value = "akut", label = "Akut" }, { value = "ingen", label = "Ingen" }]

        [[fields]]
        id = "skydd"
        type = "text"
        label = "Skydd"
        show_if = { field = "risk", equals = "akut" }
        """,
        "fields[1] (skydd).show_if.equals",
        "use any_of",
        id="multi-choice-equals",
    ),
    pytest.param(
        TWO_FIELDS
        + """
        [[fields]]
        id = "hur"
        type = "text"
        label = "Hur?"
        show_if = { field = "namn", equals = "Anna" }
        """,
        "fields[2] (hur).show_if",
        "names 'namn', a text question; a condition can only depend on a choice",
        id="condition-on-text",
    ),
    pytest.param(
        TWO_FIELDS
        + """
        [[fields]]
        id = "hur"
        type = "text"
        label = "Hur?"
        show_if = { field = "svar" }
        """,
        "fields[2] (hur).show_if",
        "give either equals or any_of",
        id="condition-without-test",
    ),
    pytest.param(
        PNR_FIELD
        + """
        [[fields]]
        id = "grund"
        type = "text"
        label = "Grund"
        show_if = { field = "pnr", equals = "19121212-1212" }
        """,
        "fields[1] (grund).show_if.equals",
        "'pnr' is a personnummer question: test its age with age_under = N or age_at_least = N",
        id="personnummer-equals",
    ),
    pytest.param(
        PNR_FIELD
        + """
        [[fields]]
        id = "grund"
        type = "text"
        label = "Grund"
        show_if = { field = "pnr" }
        """,
        "fields[1] (grund).show_if",
        "'pnr' is a personnummer question: give age_under, age_at_least or both",
        id="personnummer-without-bound",
    ),
    pytest.param(
        PNR_FIELD
        + """
        [[fields]]
        id = "grund"
        type = "text"
        label = "Grund"
        show_if = { field = "pnr", age_under = "18" }
        """,
        "fields[1] (grund).show_if.age_under",
        "expected a whole number of years, got a string ('18')",
        id="age-not-a-number",
    ),
    pytest.param(
        PNR_FIELD
        + """
        [[fields]]
        id = "grund"
        type = "text"
        label = "Grund"
        show_if = { field = "pnr", age_at_least = 0 }
        """,
        "fields[1] (grund).show_if.age_at_least",
        "expected 1 to 130 years, got 0",
        id="age-zero",
    ),
    pytest.param(
        PNR_FIELD
        + """
        [[fields]]
        id = "grund"
        type = "text"
        label = "Grund"
        show_if = { field = "pnr", age_at_least = 18, age_under = 18 }
        """,
        "fields[1] (grund).show_if",
        "age_at_least = 18 and age_under = 18 leave no age; age_at_least must be lower",
        id="age-empty-range",
    ),
    pytest.param(
        TWO_FIELDS
        + """
        [[fields]]
        id = "hur"
        type = "text"
        label = "Hur?"
        show_if = { field = "svar", age_under = 18 }
        """,
        "fields[2] (hur).show_if.age_under",
        "'svar' is a yes_no question; age_under needs a personnummer question",
        id="age-on-yes-no",
    ),
    pytest.param(
        """
        [[fields]]
        id = "risk"
        type = "choice"
        label = "Risk"
        """,
        "fields[0] (risk).choices",
        "missing required key",
        id="choices-missing",
    ),
    pytest.param(
        """
        [[fields]]
        id = "risk"
        type = "choice"
        label = "Risk"
        choices = []
        """,
        "fields[0] (risk).choices",
        "list at least two choices",
        id="choices-empty",
    ),
    pytest.param(
        """
        [[fields]]
        id = "namn"
        type = "text"
        label = "Namn"
        choices = [{ value = "a", label = "A" }, { value = "b", label = "B" }]
        """,
        "fields[0] (namn).choices",
        "only choice and multi_choice questions have choices, not text",
        id="choices-on-text",
    ),
    pytest.param(
        """
        [[fields]]
        id = "risk"
        type = "choice"
        label = "Risk"
        choices = [{ value = "akut", label = "Akut" }, { value = "akut", label = "Nu" }]
        """,
        "fields[0] (risk).choices[1].value",
        "duplicate choice value 'akut' (also fields[0] (risk).choices[0])",
        id="duplicate-choice-value",
    ),
    pytest.param(
        """
        [[fields]]
        id = "risk"
        type = "choice"
        label = "Risk"
        choices = [{ value = "1", label = "Ett" }, { value = "b", label = "B", info = "x" }]
        """,
        "fields[0] (risk).choices[0].value",
        "expected lowercase letters",
        id="numeric-choice-value",
    ),
    pytest.param(
        """
        [[fields]]
        id = "svar"
        type = "yes_no"
        label = "Svar?"
        max_length = 10
        """,
        "fields[0] (svar).max_length",
        "only text and long_text questions have max_length, not yes_no",
        id="max-length-on-yes-no",
    ),
    pytest.param(
        """
        [[fields]]
        id = "namn"
        type = "text"
        label = "Namn"
        max_length = 0
        """,
        "fields[0] (namn).max_length",
        "expected 1 to 20000 characters, got 0",
        id="max-length-zero",
    ),
    pytest.param(
        """
        [[fields]]
        id = "namn"
        type = "text"
        label = "Namn"
        required = "ja"
        """,
        "fields[0] (namn).required",
        "expected true or false",
        id="required-not-bool",
    ),
]


@pytest.mark.parametrize(("fields", "place", "message"), BROKEN_FIELDS)
def test_a_broken_field_is_reported_with_file_and_field(
    tmp_path: Path, fields: str, place: str, message: str
) -> None:
    path = write(tmp_path, "prov.toml", template("prov", fields))

    forms, problems = load_forms([tmp_path])

    assert forms == {}
    assert [p.place for p in problems if message in p.message] == [f"{path}: {place}"], problems


def test_an_age_condition_on_a_personnummer_loads(tmp_path: Path) -> None:
    fields = (
        PNR_FIELD
        + """
    [[fields]]
    id = "tonaring"
    type = "text"
    label = "Tonåring"
    show_if = { field = "pnr", age_at_least = 15, age_under = 18 }

    [[fields]]
    id = "vuxen"
    type = "text"
    label = "Vuxen"
    show_if = { field = "pnr", age_at_least = 18 }
    """
    )
    write(tmp_path, "prov.toml", template("prov", fields))

    forms, problems = load_forms([tmp_path])

    assert problems == []
    teen, adult = forms["prov"].field("tonaring").show_if, forms["prov"].field("vuxen").show_if
    assert teen == Condition(field="pnr", age_at_least=15, age_under=18)
    assert adult == Condition(field="pnr", age_at_least=18)
    assert teen.on_age and adult.on_age
    assert not Condition(field="x", equals=True).on_age


TRANSLATED = """
appeal = "Överklaga inom tre veckor."

[translations.en]
appeal = "Appeal within three weeks."
"""


def test_a_translated_appeal_is_read_and_chosen_by_language(tmp_path: Path) -> None:
    write(tmp_path, "prov.toml", HEADER.format(id="prov") + TRANSLATED + TWO_FIELDS)

    forms, problems = load_forms([tmp_path])

    assert problems == []
    form = forms["prov"]
    assert form.translations == (Translation(language="en", appeal="Appeal within three weeks."),)
    assert form.appeal_in("en") == "Appeal within three weeks."
    assert form.appeal_in("sv") == form.appeal_in("de") == "Överklaga inom tre veckor."


@pytest.mark.parametrize(
    ("translations", "place", "message"),
    [
        pytest.param(
            TRANSLATED.replace("translations.en", "translations.de"),
            "translations.de",
            "unknown key",
            id="unknown-language",
        ),
        pytest.param(
            TRANSLATED + 'titel = "Prov"\n',
            "translations.en.titel",
            "unknown key",
            id="unknown-key",
        ),
        pytest.param(
            TRANSLATED.replace('"Appeal within three weeks."', "3"),
            "translations.en.appeal",
            "expected a string, got an integer (3)",
            id="appeal-not-text",
        ),
        pytest.param(
            TRANSLATED.replace('appeal = "Överklaga inom tre veckor."', ""),
            "translations.en.appeal",
            "translates appeal, which the template lacks",
            id="nothing-to-translate",
        ),
        pytest.param(
            'translations = "en"\n',
            "translations",
            "expected a table, got a string",
            id="not-a-table",
        ),
    ],
)
def test_a_broken_translation_is_reported(
    tmp_path: Path, translations: str, place: str, message: str
) -> None:
    path = write(tmp_path, "prov.toml", HEADER.format(id="prov") + translations + TWO_FIELDS)

    forms, problems = load_forms([tmp_path])

    assert forms == {}
    assert [p.place for p in problems if message in p.message] == [f"{path}: {place}"], problems


def test_every_problem_in_a_broken_folder_is_reported_at_once(tmp_path: Path) -> None:
    good = write(tmp_path, "a_bra.toml", template("bra", TWO_FIELDS))
    syntax = write(tmp_path, "b_syntax.toml", 'id = "trasig"\ntitle = \n')
    header = write(
        tmp_path,
        "c_huvud.toml",
        'id = "huvud"\nversion = 0\ntitel = "x"\n' + textwrap.dedent(TWO_FIELDS),
    )
    duplicate = write(tmp_path, "d_dubblett.toml", template("bra", TWO_FIELDS))
    empty = write(tmp_path, "e_tom.toml", HEADER.format(id="tom") + "fields = []\n")
    write(tmp_path, ".#lvu6.toml", "editor lock file, never read")

    forms, problems = load_forms([tmp_path])

    assert list(forms) == ["bra"]
    by_place = {problem.place: problem.message for problem in problems}
    assert by_place[f"{syntax}: line 2, column 9"].startswith("TOML syntax error")
    assert by_place[f"{header}: version"] == "expected a whole number from 1 up, got an integer (0)"
    assert by_place[f"{header}: titel"] == "unknown key (did you mean 'title'?)"
    assert by_place[f"{header}: decision_type"] == "missing required key"
    assert by_place[f"{duplicate}: id"] == f"duplicate form id 'bra' (also in {good})"
    assert by_place[f"{empty}: fields"] == "list at least one question"
    assert all(str(problem).startswith(str(tmp_path)) for problem in problems)


def test_a_missing_folder_is_a_problem(tmp_path: Path) -> None:
    forms, problems = load_forms([tmp_path / "saknas"])

    assert forms == {}
    assert problems == [Problem(str(tmp_path / "saknas"), "no such folder of form templates")]


def test_a_later_folder_replaces_a_template_with_the_same_id(tmp_path: Path) -> None:
    write(
        tmp_path / "egna",
        "lvu6.toml",
        template("lvu6", TWO_FIELDS).replace("version = 1", "version = 7"),
    )

    forms, problems = load_forms([BUILTIN_FORMS_DIR, tmp_path / "egna"])

    assert problems == []
    assert forms["lvu6"].version == 7
    assert [spec.id for spec in forms["lvu6"].fields] == ["namn", "svar"]
    assert forms["lvm13"] == builtin_forms()["lvm13"]


# -- in the settings -----------------------------------------------------------------


def test_settings_expose_the_builtin_forms_read_only() -> None:
    settings = load_settings(EXAMPLE_CONFIG, environ={"SOCIALJOUR_MATRIX_PASSWORD": "x"})

    assert sorted(settings.forms) == list(SHIPPED)
    assert isinstance(settings.forms["lvu6"], FormTemplate)
    assert settings.form_dirs == ()
    with pytest.raises(TypeError):
        settings.forms["egen"] = settings.forms["lvu6"]  # type: ignore[index]


def test_extra_dirs_add_and_override_templates(tmp_path: Path) -> None:
    write(
        tmp_path / "formular",
        "lvu6.toml",
        template("lvu6", TWO_FIELDS).replace("version = 1", "version = 2"),
    )
    write(tmp_path / "formular", "ordforande.toml", template("ordforande", TWO_FIELDS))
    config = write(tmp_path, "config.toml", CONFIG + '\n[forms]\nextra_dirs = ["formular"]\n')

    settings = load_settings(config, environ={})

    assert settings.form_dirs == (tmp_path / "formular",)
    assert settings.forms["lvu6"].version == 2
    assert settings.forms["ordforande"].title == "Prov"
    assert set(SHIPPED) <= set(settings.forms)


def test_check_config_reports_form_problems_with_their_places(tmp_path: Path) -> None:
    broken = write(
        tmp_path / "formular",
        "trasig.toml",
        template(
            "trasig",
            """
            [[fields]]
            id = "grund"
            type = "long_text"
            label = "Grund"
            show_if = { field = "x", equals = "a" }
            """,
        ),
    )
    config = write(
        tmp_path,
        "config.toml",
        CONFIG + '\n[forms]\nextra_dirs = ["formular", "saknas"]\nextra = 1\n',
    )

    problems = check_config(config, environ={})

    assert [str(problem) for problem in problems] == [
        f"{config}: forms.extra: unknown key (did you mean 'extra_dirs'?)",
        f"{config}: forms.extra_dirs[1]: no folder {str(tmp_path / 'saknas')!r}; "
        "name a folder of form templates (*.toml)",
        f"{broken}: fields[0] (grund).show_if: names 'x', which is not an earlier field",
    ]
    with pytest.raises(ConfigError) as raised:
        load_settings(config, environ={})
    assert raised.value.problems == tuple(problems)


def test_the_check_config_command_prints_form_problems(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = write(tmp_path / "formular", "trasig.toml", template("trasig", "fields = 3\n"))
    config = write(tmp_path, "config.toml", CONFIG + '\n[forms]\nextra_dirs = ["formular"]\n')

    assert cli_main(["check-config", "--config", str(config)]) == 1
    assert f"{broken}: fields: expected an array of tables" in capsys.readouterr().out

    broken.unlink()
    assert cli_main(["check-config", "--config", str(config)]) == 0


def test_the_example_config_documents_the_forms_section() -> None:
    text = EXAMPLE_CONFIG.read_text(encoding="utf-8")

    assert "# [forms]" in text
    assert '# extra_dirs = ["forms"]' in text
