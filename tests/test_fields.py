"""Answers as a worker types them on a phone: what is accepted, stored and refused."""

from __future__ import annotations

import json
import re
import string
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from config import FIELD_TYPES, Choice, Condition, FieldSpec, FormTemplate, builtin_forms
from config.settings import Municipality
from handlers import fields as fields_module
from handlers.fields import (
    STOCKHOLM,
    Answer,
    InvalidAnswer,
    age,
    birth_date,
    is_samordningsnummer,
    is_visible,
    parse_answer,
    parse_personnummer,
    visible_answers,
)
from handlers.i18n_fields import FIELD_MESSAGES

TODAY = date(2026, 6, 15)
NOW = datetime(2026, 11, 24, 2, 40, tzinfo=UTC)  # 03:40 in Stockholm (winter time)
MUNICIPALITIES = (
    Municipality(id="skovde", name="Skövde kommun", intake_room_alias="#m-skovde:example.org"),
    Municipality(id="mariestad", name="Mariestads kommun", intake_room_alias="#m-ms:example.org"),
    Municipality(id="skara", name="Skara kommun", intake_room_alias="#m-skara:example.org"),
    Municipality(id="falkoping", name="Falköpings kommun", intake_room_alias="#m-f:example.org"),
    Municipality(id="falun", name="Falu kommun", intake_room_alias="#m-falun:example.org"),
)
GROUNDS = (
    Choice("hemmet", "Missförhållanden i hemmet (2 §)"),
    Choice("missbruk", "Missbruk av beroendeframkallande medel (3 §)"),
    Choice("brott", "Brottslig verksamhet (3 §)"),
    Choice("nedbrytande", "Annat socialt nedbrytande beteende (3 §)"),
)
RISK = (
    Choice("akut", "Akut fara"),
    Choice("inom_kort", "Risk inom kort"),
    Choice("ingen", "Ingen akut risk"),
)


def spec(kind: str, **extra: object) -> FieldSpec:
    if kind == "choice" and "choices" not in extra:
        extra["choices"] = RISK
    if kind == "multi_choice" and "choices" not in extra:
        extra["choices"] = GROUNDS
    return FieldSpec(id="f", type=kind, label="Fråga", **extra)  # type: ignore[arg-type]


def parse(
    field: FieldSpec | str,
    text: str,
    *,
    lang: str = "sv",
    now: datetime = NOW,
    municipalities: Sequence[Municipality] = MUNICIPALITIES,
) -> Answer:
    field = spec(field) if isinstance(field, str) else field
    return parse_answer(field, text, lang=lang, municipalities=municipalities, now=now)


def refusal(field: FieldSpec | str, text: str, **kwargs: object) -> InvalidAnswer:
    """The refusal, checked to be a message that renders in both languages."""
    with pytest.raises(InvalidAnswer) as raised:
        parse(field, text, **kwargs)  # type: ignore[arg-type]
    assert_renders(raised.value)
    return raised.value


def assert_renders(error: InvalidAnswer) -> None:
    for lang in ("sv", "en"):
        assert FIELD_MESSAGES[lang][error.key].format(**error.params)


def luhn_check_digit(nine_digits: str) -> int:
    """Written independently of the code under test, from the textbook definition."""
    total = 0
    for position, digit in enumerate(nine_digits):
        doubled = int(digit) * (2 - position % 2)
        total += doubled // 10 + doubled % 10
    return (10 - total % 10) % 10


# -- personnummer --------------------------------------------------------------------

VALID_NUMBERS = [
    ("19121212-1212", "19121212-1212"),
    ("191212121212", "19121212-1212"),
    ("20121212-1212", "20121212-1212"),
    ("201212121212", "20121212-1212"),
    ("121212-1212", "20121212-1212"),  # ten digits: the century that makes the age 0-99
    ("1212121212", "20121212-1212"),
    ("121212+1212", "19121212-1212"),  # "+": 100 years or older
    ("811218-9876", "19811218-9876"),
    ("991231-1231", "19991231-1231"),  # 2099 would be in the future
    ("000229-1235", "20000229-1235"),  # a leap day
    ("250505+1231", "19250505-1231"),
    ("701063-2391", "19701063-2391"),  # samordningsnummer: day 3 + 60
    ("19701063-2391", "19701063-2391"),
    (" 811218 – 9876 ", "19811218-9876"),  # spaces and the dash a phone's keyboard makes
]


def test_the_valid_examples_really_have_valid_check_digits() -> None:
    for text, normalised in VALID_NUMBERS:
        ten = normalised[2:8] + normalised[9:]
        assert luhn_check_digit(ten[:9]) == int(ten[9]), text


@pytest.mark.parametrize(("text", "normalised"), VALID_NUMBERS)
def test_valid_personnummer_is_normalised(text: str, normalised: str) -> None:
    assert parse_personnummer(text, today=TODAY) == normalised


def test_samordningsnummer_and_birth_date() -> None:
    assert is_samordningsnummer("19701063-2391")
    assert not is_samordningsnummer("19811218-9876")
    assert birth_date("19701063-2391") == date(1970, 10, 3)
    assert birth_date("19811218-9876") == date(1981, 12, 18)


@pytest.mark.parametrize(
    ("typed", "on", "years"),
    [
        ("20080601-2381", date(2026, 5, 31), 17),  # the day before the 18th birthday
        ("20080601-2381", date(2026, 6, 1), 18),  # the birthday itself counts
        ("20110301-2389", date(2026, 3, 1), 15),
        ("701063-2391", date(2026, 10, 2), 55),  # samordningsnummer: born 3 October 1970
        ("701063-2391", date(2026, 10, 3), 56),
        ("121212+1212", date(2026, 6, 15), 113),  # "+": 100 or older
        ("121212-1212", date(2026, 6, 15), 13),
        ("000229-1235", date(2018, 2, 28), 17),  # a leap-day birthday: 1 March in a common year
        ("000229-1235", date(2018, 3, 1), 18),
        ("000229-1235", date(2020, 2, 29), 20),
    ],
)
def test_the_age_a_number_gives_on_a_day(typed: str, on: date, years: int) -> None:
    assert age(parse_personnummer(typed, today=on), on=on) == years


def test_the_century_of_a_ten_digit_number_depends_on_today() -> None:
    # Born 12 December: on the 11th the 2012 birthday of a 1912 child has not happened.
    assert parse_personnummer("121212-1212", today=date(2012, 12, 11)) == "19121212-1212"
    assert parse_personnummer("121212-1212", today=date(2012, 12, 12)) == "20121212-1212"


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("121212-1213", "field.personnummer.checksum"),
        ("811218-9875", "field.personnummer.checksum"),
        ("120230-1238", "field.personnummer.date"),  # 30 February, check digit right
        ("121312-1237", "field.personnummer.date"),  # month 13, check digit right
        ("000229+1235", "field.personnummer.date"),  # 1900 was no leap year
        ("701093-2391", "field.personnummer.date"),  # day 93 is no samordningsnummer
        ("701043-2391", "field.personnummer.date"),  # day 43 is neither
        ("20301212-1236", "field.personnummer.future"),
        ("12121A-1212", "field.personnummer.format"),
        ("12121212121", "field.personnummer.format"),  # 11 digits
        ("1212121212121", "field.personnummer.format"),
        ("19121212+1212", "field.personnummer.format"),  # "+" only goes with 10 digits
        ("121212/1212", "field.personnummer.format"),
        ("ÅÅÅÅMMDD-NNNN", "field.personnummer.format"),
    ],
)
def test_invalid_personnummer_is_refused_with_its_reason(text: str, key: str) -> None:
    error = refusal(spec("personnummer"), text, now=datetime(2026, 6, 15, 12, tzinfo=UTC))
    assert error.key == key


def test_a_refused_date_and_a_future_date_are_named() -> None:
    assert refusal("personnummer", "120230-1238").params == {"date": "2012-02-30"}
    assert refusal("personnummer", "20301212-1236").params == {"date": "2030-12-12"}


@st.composite
def numbers(draw: st.DrawFn) -> tuple[date, str, str]:
    """(today, a way to write a valid number, its normalised form)."""
    today = draw(st.dates(min_value=date(2000, 1, 1), max_value=date(2099, 12, 31)))
    born = draw(st.dates(min_value=date(1900, 1, 1), max_value=today))
    serial = draw(st.integers(min_value=0, max_value=999))
    coordination = draw(st.booleans())
    day = born.day + 60 if coordination else born.day
    nine = f"{born:%y%m}{day:02d}{serial:03d}"
    tail = f"{serial:03d}{luhn_check_digit(nine)}"
    century = f"{born.year // 100:02d}"
    normalised = f"{century}{nine[:6]}-{tail}"
    under_100 = (born.year + 100, born.month, born.day) > (today.year, today.month, today.day)
    forms = [f"{century}{nine[:6]}{tail}", normalised]
    forms.append(f"{nine[:6]}{'-' if under_100 else '+'}{tail}")
    if under_100:
        forms.append(f"{nine[:6]}{tail}")
    return today, draw(st.sampled_from(forms)), normalised


@settings(database=None, max_examples=400)
@given(numbers())
def test_any_valid_number_parses_back_to_its_normalised_form(case: tuple[date, str, str]) -> None:
    today, written, normalised = case
    assert parse_personnummer(written, today=today) == normalised


# -- text ----------------------------------------------------------------------------


def test_text_is_trimmed_to_one_line_and_long_text_keeps_its_lines() -> None:
    assert parse("text", "  Anna \n  Andersson ") == Answer("Anna Andersson", "Anna Andersson")
    assert parse("long_text", " Rad ett  \r\n\n\n\nRad\ttvå\x07 ").value == "Rad ett\n\nRad två"


def test_text_length_limits() -> None:
    assert parse("text", "x" * 200).value == "x" * 200
    assert refusal("text", "x" * 201).params == {"length": 201, "max": 200}
    assert parse("long_text", "x" * 4000).value == "x" * 4000
    assert refusal("long_text", "x" * 4001).key == "field.too_long"
    assert refusal(spec("text", max_length=5), "sex tkn").params == {"length": 7, "max": 5}


@pytest.mark.parametrize("kind", FIELD_TYPES)
@pytest.mark.parametrize("text", ["", "   ", "\n\t ", "\x00"])
def test_an_empty_answer_is_refused_for_every_type(kind: str, text: str) -> None:
    assert refusal(kind, text).key == "field.empty"


# -- choices -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("2", "inom_kort"),
        (" 3 ", "ingen"),
        ("akut", "akut"),
        ("inom_kort", "inom_kort"),
        ("Risk inom kort", "inom_kort"),
        ("RISK INOM KORT.", "inom_kort"),
        ("ingen akut risk", "ingen"),
        ("ing", "ingen"),  # the start of one label is enough
    ],
)
def test_choice_by_number_value_or_label(text: str, value: str) -> None:
    answer = parse("choice", text)
    assert answer.value == value
    assert answer.display == next(c.label for c in RISK if c.value == value)


def test_choice_is_accent_insensitive() -> None:
    field = spec("choice", choices=(Choice("hog", "Hög risk"), Choice("lag", "Låg risk")))
    assert parse(field, "hog risk").value == "hog"
    assert parse(field, "LÅG RISK").value == "lag"


@pytest.mark.parametrize(
    ("text", "key", "params"),
    [
        ("4", "field.choice.number", {"number": 4, "count": 3}),
        ("0", "field.choice.number", {"number": 0, "count": 3}),
        ("kanske", "field.choice.unknown", {"count": 3}),
        ("ri", "field.choice.unknown", {"count": 3}),  # too short to guess from
        ("1, 2", "field.choice.one", {"count": 3}),
    ],
)
def test_choice_refusals(text: str, key: str, params: dict[str, object]) -> None:
    error = refusal("choice", text)
    assert (error.key, error.params) == (key, params)


def test_an_ambiguous_choice_names_the_candidates() -> None:
    field = spec("choice", choices=(Choice("a", "Annan myndighet"), Choice("b", "Annan person")))
    error = refusal(field, "annan")
    assert error.key == "field.choice.ambiguous"
    assert error.params == {"matches": "Annan myndighet, Annan person"}


@pytest.mark.parametrize(
    ("text", "values"),
    [
        ("1", ["hemmet"]),
        ("1, 3", ["hemmet", "brott"]),
        ("3,1", ["hemmet", "brott"]),  # stored in the form's order
        ("1 3 4", ["hemmet", "brott", "nedbrytande"]),
        ("1 och 3", ["hemmet", "brott"]),
        ("2 and 4", ["missbruk", "nedbrytande"]),
        ("1; 1, 1", ["hemmet"]),
        ("hemmet, brott", ["hemmet", "brott"]),
        ("Missförhållanden i hemmet och brottslig verksamhet", ["hemmet", "brott"]),
        ("missbruk av beroendeframkallande medel, 4", ["missbruk", "nedbrytande"]),
        ("hemmet, missbruk", ["hemmet", "missbruk"]),  # how a poll's answers arrive
    ],
)
def test_multi_choice_by_numbers_values_or_labels(text: str, values: list[str]) -> None:
    answer = parse("multi_choice", text)
    assert answer.value == values
    labels = [c.label for c in GROUNDS if c.value in values]
    assert answer.display == ", ".join(labels)


def test_multi_choice_labels_that_contain_och_stay_whole() -> None:
    field = spec(
        "multi_choice",
        choices=(Choice("vard", "Hälso- och sjukvård"), Choice("skola", "Skola")),
    )
    assert parse(field, "Hälso- och sjukvård och skola").value == ["vard", "skola"]


@pytest.mark.parametrize(
    ("text", "key", "params"),
    [
        ("1, 5", "field.choice.number", {"number": 5, "count": 4}),
        ("1, kanske", "field.multi.unknown", {"part": "kanske", "count": 4}),
        ("och", "field.choice.unknown", {"count": 4}),
        ("!!", "field.choice.unknown", {"count": 4}),
    ],
)
def test_multi_choice_refusals(text: str, key: str, params: dict[str, object]) -> None:
    error = refusal("multi_choice", text)
    assert (error.key, error.params) == (key, params)


@pytest.mark.parametrize("text", ["ja", "Ja", "JA!", "j", "yes", "Y", "1", " ja. "])
def test_yes(text: str) -> None:
    assert parse("yes_no", text) == Answer(True, "Ja")


@pytest.mark.parametrize("text", ["nej", "Nej.", "n", "no", "NO", "2"])
def test_no(text: str) -> None:
    assert parse("yes_no", text) == Answer(False, "Nej")


def test_yes_no_is_shown_in_the_users_language() -> None:
    assert parse("yes_no", "ja", lang="en").display == "Yes"
    assert parse("yes_no", "no", lang="en").display == "No"


@pytest.mark.parametrize("text", ["kanske", "3", "jaa", "ja nej", "0"])
def test_yes_no_refusals(text: str) -> None:
    assert refusal("yes_no", text).key == "field.yes_no.invalid"


# -- dates and times -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("2026-11-24", "2026-11-24"),
        ("2026-1-5", "2026-01-05"),
        ("20261124", "2026-11-24"),
        ("idag", "2026-11-24"),
        ("i dag", "2026-11-24"),
        ("Today", "2026-11-24"),
        ("igår", "2026-11-23"),
        ("I går", "2026-11-23"),
        ("yesterday", "2026-11-23"),
        ("imorgon", "2026-11-25"),
        ("24/11", "2026-11-24"),
        ("5/1", "2026-01-05"),
        ("5/1/2027", "2027-01-05"),
        ("2028-02-29", "2028-02-29"),
    ],
)
def test_dates(text: str, value: str) -> None:
    assert parse("date", text) == Answer(value, value)


def test_today_is_the_day_in_stockholm_not_in_utc() -> None:
    just_after_midnight = datetime(2026, 11, 23, 23, 30, tzinfo=UTC)  # 00:30 on the 24th
    assert parse("date", "idag", now=just_after_midnight).value == "2026-11-24"
    naive_local = datetime(2026, 11, 24, 0, 30)
    assert parse("date", "igår", now=naive_local).value == "2026-11-23"


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("2026-02-30", "field.date.nonexistent"),
        ("2026-13-01", "field.date.nonexistent"),
        ("31/4", "field.date.nonexistent"),
        ("nästa vecka", "field.date.invalid"),
        ("24.11.2026", "field.date.invalid"),
        ("2026-11", "field.date.invalid"),
        ("1124", "field.date.invalid"),
    ],
)
def test_date_refusals(text: str, key: str) -> None:
    assert refusal("date", text).key == key


def test_a_nonexistent_date_is_named() -> None:
    assert refusal("date", "2026-02-30").params == {"date": "2026-02-30"}


@pytest.mark.parametrize(
    ("text", "value", "display"),
    [
        ("2026-11-24 03:15", "2026-11-24T03:15:00+01:00", "2026-11-24 03:15"),
        ("2026-11-24T03:15", "2026-11-24T03:15:00+01:00", "2026-11-24 03:15"),
        ("2026-07-01 12:00", "2026-07-01T12:00:00+02:00", "2026-07-01 12:00"),
        ("03:15", "2026-11-24T03:15:00+01:00", "2026-11-24 03:15"),
        ("3.15", "2026-11-24T03:15:00+01:00", "2026-11-24 03:15"),
        ("kl. 03:15", "2026-11-24T03:15:00+01:00", "2026-11-24 03:15"),
        ("2026-11-24 kl 03:15", "2026-11-24T03:15:00+01:00", "2026-11-24 03:15"),
        ("igår 23:10", "2026-11-23T23:10:00+01:00", "2026-11-23 23:10"),
        ("24/11 01:05:30", "2026-11-24T01:05:30+01:00", "2026-11-24 01:05"),
        ("nu", "2026-11-24T03:40:00+01:00", "2026-11-24 03:40"),
        ("Now", "2026-11-24T03:40:00+01:00", "2026-11-24 03:40"),
    ],
)
def test_datetimes_are_iso_with_the_stockholm_offset(text: str, value: str, display: str) -> None:
    answer = parse("datetime", text, now=NOW + timedelta(seconds=17))
    assert answer == Answer(value, display)
    assert datetime.fromisoformat(value).astimezone(STOCKHOLM).isoformat() == value


def test_now_from_a_naive_clock_is_read_as_stockholm_time() -> None:
    assert parse("datetime", "nu", now=datetime(2026, 7, 1, 9, 5)).value == (
        "2026-07-01T09:05:00+02:00"
    )


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("25:00", "field.datetime.invalid"),
        ("12:60", "field.datetime.invalid"),
        ("imorgon kväll", "field.datetime.invalid"),
        ("2026-11-24", "field.datetime.invalid"),
        ("snart 03:15", "field.datetime.invalid"),
        ("2026-02-30 10:00", "field.date.nonexistent"),
        ("2026-03-29 02:30", "field.datetime.gap"),  # clocks jump from 02:00 to 03:00
    ],
)
def test_datetime_refusals(text: str, key: str) -> None:
    assert refusal("datetime", text).key == key


def test_the_autumn_hour_that_occurs_twice_is_read_as_the_first() -> None:
    assert parse("datetime", "2026-10-25 02:30").value == "2026-10-25T02:30:00+02:00"


# -- phone, municipality, Matrix user ------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("070-123 45 67", "+46701234567"),
        ("0701234567", "+46701234567"),
        ("+46 70 123 45 67", "+46701234567"),
        ("+46701234567", "+46701234567"),
        ("0046 70-123 45 67", "+46701234567"),
        ("+46 (0)70 123 45 67", "+46701234567"),
        ("+46 070 123 45 67", "+46701234567"),
        ("08-123 456 78", "+46812345678"),
        ("0500-44 55 66", "+46500445566"),
        ("+47 22 12 34 56", "+4722123456"),
    ],
)
def test_phone_numbers_become_e164(text: str, value: str) -> None:
    assert parse("phone", text) == Answer(value, value)


@pytest.mark.parametrize(
    "text", ["12345", "070-123 45", "070-123 45 678", "telefon", "+46", "+0123456789", "7012345678"]
)
def test_phone_refusals(text: str) -> None:
    assert refusal("phone", text).key == "field.phone.invalid"


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1", "skovde"),
        ("2", "mariestad"),
        ("skovde", "skovde"),
        ("Skövde", "skovde"),
        ("skövde kommun", "skovde"),
        ("SKOVDE KOMMUN", "skovde"),
        ("Mariestad", "mariestad"),
        ("Mariestads kommun", "mariestad"),
        ("mari", "mariestad"),
        ("Ska", "skara"),
        ("Falu", "falun"),
    ],
)
def test_municipality_by_number_id_or_name(text: str, value: str) -> None:
    answer = parse("municipality", text)
    assert answer.value == value
    assert answer.display == next(m.name for m in MUNICIPALITIES if m.id == value)


def test_municipality_refusals() -> None:
    assert refusal("municipality", "Göteborg").params == {"count": 5}
    assert refusal("municipality", "6").key == "field.choice.number"
    assert refusal("municipality", "sk").key == "field.municipality.unknown"
    ambiguous = refusal("municipality", "fal")
    assert ambiguous.key == "field.municipality.ambiguous"
    assert ambiguous.params == {"matches": "Falköpings kommun, Falu kommun"}
    assert refusal("municipality", "Skövde", municipalities=()).key == "field.municipality.none"


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("@anna:example.org", "@anna:example.org"),
        ("@Anna:Example.org", "@anna:example.org"),
        ("anna:example.org", "@anna:example.org"),
        ("@anna.b-c_d=e/f+g:matrix.example.org:8448", "@anna.b-c_d=e/f+g:matrix.example.org:8448"),
        ("https://matrix.to/#/@anna:example.org", "@anna:example.org"),
        ("https://matrix.to/#/%40anna%3Aexample.org?via=example.org", "@anna:example.org"),
        ("@bo:[::1]:8008", "@bo:[::1]:8008"),
    ],
)
def test_matrix_users(text: str, value: str) -> None:
    assert parse("matrix_user", text) == Answer(value, value)


@pytest.mark.parametrize(
    "text",
    ["anna", "@anna", "@:example.org", "@an na:example.org", "@anna:exa mple.org", "#room:x.org"],
)
def test_matrix_user_refusals(text: str) -> None:
    assert refusal("matrix_user", text).key == "field.matrix_user.invalid"


# -- anything at all -----------------------------------------------------------------

ALL_FIELDS = [spec(kind) for kind in FIELD_TYPES]
PHONE_LIKE = st.text(alphabet=string.digits + " +-()/.:åäöÅÄÖkl", max_size=25)


@settings(database=None, max_examples=500)
@given(
    field=st.sampled_from(ALL_FIELDS),
    text=st.one_of(st.text(max_size=60), PHONE_LIKE),
    lang=st.sampled_from(["sv", "en"]),
)
def test_any_text_gives_an_answer_or_an_invalid_answer(
    field: FieldSpec, text: str, lang: str
) -> None:
    try:
        answer = parse(field, text, lang=lang)
    except InvalidAnswer as error:
        assert_renders(error)
        return
    json.dumps(answer.value)
    assert isinstance(answer.display, str) and answer.display


# -- the messages themselves ---------------------------------------------------------


def test_both_languages_have_the_same_keys_and_placeholders() -> None:
    sv, en = FIELD_MESSAGES["sv"], FIELD_MESSAGES["en"]
    assert sv.keys() == en.keys()
    for key in sv:
        placeholders = set(re.findall(r"{(\w+)}", sv[key]))
        assert placeholders == set(re.findall(r"{(\w+)}", en[key])), key
        assert sv[key].count("```") % 2 == 0 and sv[key].count("**") % 2 == 0, key


def test_every_type_has_a_hint_without_placeholders() -> None:
    for kind in FIELD_TYPES:
        for lang in ("sv", "en"):
            hint = FIELD_MESSAGES[lang][f"field.hint.{kind}"]
            assert "{" not in hint


def test_every_refusal_raised_by_the_code_has_a_message() -> None:
    source = Path(fields_module.__file__).read_text(encoding="utf-8")
    keys = set(re.findall(r'InvalidAnswer\(\s*"([\w.]+)"', source))
    keys |= {
        f"{p}.{s}" for p in ("field.choice", "field.municipality") for s in ("ambiguous", "unknown")
    }
    assert len(keys) > 15
    assert keys <= FIELD_MESSAGES["sv"].keys()


# -- visibility ----------------------------------------------------------------------


def chained_form() -> FormTemplate:
    """a (yes/no) -> b (choice, if a) -> c (multi, if b is x or y) -> d (text, if c has p)."""
    choices = (Choice("x", "X"), Choice("y", "Y"), Choice("z", "Z"))
    return FormTemplate(
        id="kedja",
        version=1,
        title="Kedja",
        decision_type="Prov",
        legal_reference="-",
        next_step="-",
        description="-",
        fields=(
            FieldSpec("a", "yes_no", "A"),
            FieldSpec("b", "choice", "B", choices=choices, show_if=Condition("a", equals=True)),
            FieldSpec(
                "c",
                "multi_choice",
                "C",
                choices=(Choice("p", "P"), Choice("q", "Q")),
                show_if=Condition("b", any_of=("x", "y")),
            ),
            FieldSpec("d", "text", "D", show_if=Condition("c", any_of=("p",))),
            FieldSpec("e", "text", "E", show_if=Condition("a", equals=False)),
        ),
    )


def visible(
    template: FormTemplate, answers: dict[str, object], form: FormTemplate | None = None
) -> list[str]:
    return [f.id for f in template.fields if is_visible(f, answers, form=form)]


def test_visibility_follows_a_chain_of_conditions() -> None:
    form = chained_form()

    assert visible(form, {}) == ["a"]
    assert visible(form, {"a": True}) == ["a", "b"]
    assert visible(form, {"a": False}) == ["a", "e"]
    assert visible(form, {"a": True, "b": "z"}) == ["a", "b"]
    assert visible(form, {"a": True, "b": "y"}) == ["a", "b", "c"]
    assert visible(form, {"a": True, "b": "x", "c": ["q"]}) == ["a", "b", "c"]
    assert visible(form, {"a": True, "b": "x", "c": ["q", "p"]}) == ["a", "b", "c", "d"]


def test_a_stale_answer_behind_a_hidden_field_does_not_count() -> None:
    form = chained_form()
    stale = {"a": False, "b": "x", "c": ["p"], "d": "gammalt"}

    assert visible(form, stale, form=form) == ["a", "e"]
    assert visible_answers(form, stale) == {"a": False}
    assert visible(form, visible_answers(form, stale)) == ["a", "e"]


def test_conditions_compare_types_strictly() -> None:
    form = chained_form()
    b, d = form.field("b"), form.field("d")

    assert not is_visible(b, {"a": "ja"})
    assert not is_visible(b, {"a": 1})
    assert not is_visible(b, {"a": None})
    assert is_visible(b, {"a": Answer(True, "Ja")})
    assert not is_visible(d, {"c": "q"})
    assert is_visible(d, {"c": "p"})


def test_the_shipped_lvu6_asks_how_or_why_not_depending_on_the_answer() -> None:
    form = builtin_forms()["lvu6"]
    yes = parse(form.field("underrattade"), "ja")
    no = parse(form.field("underrattade"), "nej")

    assert is_visible(form.field("underrattelse"), {"underrattade": yes.value})
    assert not is_visible(form.field("ej_underrattade"), {"underrattade": yes.value})
    assert is_visible(form.field("ej_underrattade"), {"underrattade": no.value})
    assert not is_visible(form.field("polis_skal"), {})


def age_form() -> FormTemplate:
    """pnr -> barn (under 18), tonaring (15 to 17), vuxen (18 or older, and yes to a)."""
    return FormTemplate(
        id="alder",
        version=1,
        title="Ålder",
        decision_type="Prov",
        legal_reference="-",
        next_step="-",
        description="-",
        fields=(
            FieldSpec("pnr", "personnummer", "Personnummer"),
            FieldSpec("barn", "text", "Barn", show_if=Condition("pnr", age_under=18)),
            FieldSpec(
                "tonaring",
                "text",
                "Tonåring",
                show_if=Condition("pnr", age_at_least=15, age_under=18),
            ),
            FieldSpec("vuxen", "yes_no", "Vuxen", show_if=Condition("pnr", age_at_least=18)),
            FieldSpec("sedan", "text", "Sedan", show_if=Condition("vuxen", equals=True)),
        ),
    )


@pytest.mark.parametrize(
    ("number", "on", "shown"),
    [
        ("20120315-2382", date(2026, 11, 24), ["pnr", "barn"]),
        ("20080601-2381", date(2026, 5, 31), ["pnr", "barn", "tonaring"]),
        ("20080601-2381", date(2026, 6, 1), ["pnr", "vuxen"]),
        ("19121212-1212", date(2026, 6, 1), ["pnr", "vuxen"]),
    ],
)
def test_an_age_condition_counts_the_age_on_the_day_given(
    number: str, on: date, shown: list[str]
) -> None:
    form = age_form()
    answers = {"pnr": number}

    assert [f.id for f in form.fields if is_visible(f, answers, today=on)] == shown
    assert list(visible_answers(form, answers, today=on)) == ["pnr"]


def test_an_age_condition_without_a_day_or_a_number_is_false() -> None:
    form = age_form()
    child = form.field("barn")

    assert not is_visible(child, {"pnr": "20120315-2382"})  # no day to count on
    assert not is_visible(child, {}, today=TODAY)
    assert not is_visible(child, {"pnr": None}, today=TODAY)
    assert not is_visible(child, {"pnr": ["20120315-2382"]}, today=TODAY)
    assert not is_visible(child, {"pnr": "inte ett nummer"}, today=TODAY)
    assert is_visible(child, {"pnr": Answer("20120315-2382", "20120315-2382")}, today=TODAY)


def test_a_chain_through_an_age_condition_hides_with_it() -> None:
    form = age_form()
    on = date(2026, 6, 1)
    grown = {"pnr": "20080601-2381", "vuxen": True, "sedan": "x"}
    young = {**grown, "pnr": "20120315-2382"}

    assert [f.id for f in form.fields if is_visible(f, grown, form=form, today=on)] == [
        "pnr",
        "vuxen",
        "sedan",
    ]
    # A child: "vuxen" is hidden, so its stale yes must not show "sedan".
    assert [f.id for f in form.fields if is_visible(f, young, form=form, today=on)] == [
        "pnr",
        "barn",
    ]
    assert visible_answers(form, young, today=on) == {"pnr": "20120315-2382"}


def test_the_shipped_lvu6_grounds_follow_the_age() -> None:
    form = builtin_forms()["lvu6"]
    child = parse(form.field("personnummer"), "20080601-2381").value
    on_birthday, day_before = date(2026, 6, 1), date(2026, 5, 31)

    assert is_visible(form.field("grund"), {"personnummer": child}, today=day_before)
    assert not is_visible(form.field("grund_3"), {"personnummer": child}, today=day_before)
    assert not is_visible(form.field("grund"), {"personnummer": child}, today=on_birthday)
    assert is_visible(form.field("grund_3"), {"personnummer": child}, today=on_birthday)
