"""Form templates: the questions of a guided report, kept as TOML data.

A template names the decision it prepares and its legal basis, then lists its
questions in order. Legal references live in these files, never in code, so a
change in the law is an edit an administrator can make (``[forms] extra_dirs``).
Loading reports every problem with its file and question, like the config loader.
"""

from __future__ import annotations

import difflib
import functools
import re
import string
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

from config import personnummer
from config._reader import Reader, describe, item_place, key_place
from config.deadlines import DeadlineSpec, read_deadline_specs
from config.settings import SIGNER_KINDS, Problem, SignerKind

__all__ = [
    "AGE_CONDITION_TYPES",
    "BUILTIN_FORMS_DIR",
    "CHOICE_TYPES",
    "CONDITION_TYPES",
    "DEFAULT_MAX_LENGTH",
    "FIELD_TYPES",
    "TEXT_TYPES",
    "TRANSLATION_LANGUAGES",
    "Choice",
    "Condition",
    "FieldSpec",
    "FieldType",
    "FormTemplate",
    "Translation",
    "builtin_forms",
    "load_forms",
]

FieldType = Literal[
    "text",
    "long_text",
    "choice",
    "multi_choice",
    "yes_no",
    "date",
    "datetime",
    "personnummer",
    "phone",
    "municipality",
    "matrix_user",
]
FIELD_TYPES: tuple[FieldType, ...] = (
    "text",
    "long_text",
    "choice",
    "multi_choice",
    "yes_no",
    "date",
    "datetime",
    "personnummer",
    "phone",
    "municipality",
    "matrix_user",
)
CHOICE_TYPES: tuple[FieldType, ...] = ("choice", "multi_choice")
TEXT_TYPES: tuple[FieldType, ...] = ("text", "long_text")
CONDITION_TYPES: tuple[FieldType, ...] = ("choice", "multi_choice", "yes_no")
"""The types a ``show_if`` may test with equals or any_of: a small, known set of answers."""
AGE_CONDITION_TYPES: tuple[FieldType, ...] = ("personnummer",)
"""The types a ``show_if`` may test with age_under or age_at_least: the age they give."""
MAX_AGE = 130
"""No age bound in a condition may be higher: a sanity limit that catches typos."""
TRANSLATION_LANGUAGES = ("en",)
"""The languages a template may translate its texts into; Swedish is the template itself."""
DEFAULT_MAX_LENGTH: Mapping[str, int] = MappingProxyType({"text": 200, "long_text": 4000})
MAX_LENGTH_CEILING = 20_000
"""No answer may be longer: it must fit in one Matrix message and on a few pages."""

BUILTIN_FORMS_DIR = Path(__file__).parent / "forms"

_ID = re.compile(r"[a-z][a-z0-9_]*")
_ID_RULE = "lowercase letters a-z, digits and _, starting with a letter, like 'grund'"
_FORM_KEYS = (
    "id",
    "version",
    "title",
    "decision_type",
    "legal_reference",
    "next_step",
    "description",
    "appeal",
    "translations",
    "fields",
    "signer",
    "refusal_title",
    "refusal_text",
    "refusal_appeal",
    "deadlines",
)
_FIELD_KEYS = (
    "id",
    "type",
    "label",
    "help",
    "required",
    "choices",
    "show_if",
    "max_length",
    "decision",
)
_CHOICE_KEYS = ("value", "label")
_CONDITION_KEYS = ("field", "equals", "any_of", "age_under", "age_at_least")
_AGE_KEYS = ("age_under", "age_at_least")
_TRANSLATED_KEYS = ("appeal", "refusal_title", "refusal_text", "refusal_appeal")
_REFUSAL_KEYS = ("refusal_title", "refusal_text", "refusal_appeal")
#: The placeholders a refusal text may use: the deciding body's name.
_REFUSAL_PLACEHOLDERS = frozenset({"body"})
_SYNTAX_POSITION = re.compile(r"\s*\(at line (\d+), column (\d+)\)$")


@dataclass(frozen=True, slots=True)
class Choice:
    """One answer of a choice question: ``value`` is stored, ``label`` is shown."""

    value: str
    label: str


@dataclass(frozen=True, slots=True)
class Condition:
    """Ask a question only when an earlier answer matches.

    ``equals`` is a choice value, or True/False for a yes_no question; ``any_of``
    holds when the answer (or, for multi_choice, any chosen value) is listed.
    On a personnummer question, ``age_under`` and ``age_at_least`` test the age the
    number gives on the day the dialogue judges ages on (one bound, or both for a
    range); without that day they never hold.
    """

    field: str
    equals: str | bool | None = None
    any_of: tuple[str, ...] = ()
    age_under: int | None = None
    age_at_least: int | None = None

    @property
    def on_age(self) -> bool:
        """Whether this condition tests an age rather than an answer."""
        return self.age_under is not None or self.age_at_least is not None

    def holds(self, value: Any, *, today: date | None = None) -> bool:
        """Whether the stored answer of ``field`` meets the condition (None never does).

        ``today`` is the day ages are counted on; an age condition needs it.
        """
        if value is None:
            return False
        if self.on_age:
            return self._age_holds(value, today)
        if isinstance(self.equals, bool):
            return isinstance(value, bool) and value is self.equals
        if self.equals is not None:
            return isinstance(value, str) and value == self.equals
        if isinstance(value, str):
            return value in self.any_of
        if isinstance(value, list | tuple):
            return any(item in self.any_of for item in value)
        return False

    def _age_holds(self, value: Any, today: date | None) -> bool:
        if today is None or not isinstance(value, str):
            return False
        try:
            years = personnummer.age(value, on=today)
        except ValueError:
            return False  # not a normalised number: nothing to count from
        if self.age_under is not None and years >= self.age_under:
            return False
        return self.age_at_least is None or years >= self.age_at_least


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One question of a form."""

    id: str
    type: FieldType
    label: str
    help: str = ""
    required: bool = True
    choices: tuple[Choice, ...] = ()
    show_if: Condition | None = None
    max_length: int | None = None
    decision: bool = False
    """This answer is the decision itself: the decision document quotes it as such."""

    @property
    def length_limit(self) -> int | None:
        """The longest accepted answer of a text question: its max_length or the default."""
        return self.max_length or DEFAULT_MAX_LENGTH.get(self.type)


@dataclass(frozen=True, slots=True)
class Translation:
    """A template's texts in another language than Swedish; empty when not translated."""

    language: str
    appeal: str = ""
    refusal_title: str = ""
    refusal_text: str = ""
    refusal_appeal: str = ""


@dataclass(frozen=True, slots=True)
class FormTemplate:
    """A guided report that ends in one kind of decision document."""

    id: str
    version: int
    title: str
    decision_type: str
    legal_reference: str
    next_step: str
    description: str
    fields: tuple[FieldSpec, ...]
    appeal: str = ""
    """How to appeal the decision, printed on the decision document; empty when none."""
    translations: tuple[Translation, ...] = ()
    """The texts in other languages (``[translations.en]``); Swedish is the default."""
    signer: SignerKind = "committee_member"
    """Who signs: the on-call chair or appointed member, a delegate under the delegation
    order, or nobody (``none``: the worker's record, sealed). Default committee_member."""
    refusal_title: str = ""
    """What a refusal of this form's decision is called ("Beslut att inte ...")."""
    refusal_text: str = ""
    """The refusal's decision sentence; ``{body}`` is the deciding body's name."""
    refusal_appeal: str = ""
    """How to appeal a refusal, printed on the refusal; empty when it cannot be appealed."""
    deadlines: tuple[DeadlineSpec, ...] = ()
    """The legal deadlines the decision sets off (``[[deadlines]]``), in template order."""

    def appeal_in(self, language: str) -> str:
        """The appeal text in ``language`` when the template has one, else the Swedish."""
        return self.text_in("appeal", language)

    def text_in(self, key: str, language: str) -> str:
        """A translatable text (``appeal``, ``refusal_*``) in ``language`` when the
        template translates it, else the Swedish."""
        for translation in self.translations:
            if translation.language == language and getattr(translation, key):
                return str(getattr(translation, key))
        return str(getattr(self, key))

    @property
    def decision_field(self) -> FieldSpec | None:
        """The question whose answer is the decision text (``decision = true``), if any."""
        for spec in self.fields:
            if spec.decision:
                return spec
        return None

    def field(self, id: str) -> FieldSpec:
        """The question with this id; KeyError when the form has none."""
        for spec in self.fields:
            if spec.id == id:
                return spec
        raise KeyError(f"form {self.id!r} has no field {id!r}")

    def number_of(self, id: str) -> int:
        """The question's 1-based position, as the worker sees it (``!ändra 3``)."""
        for number, spec in enumerate(self.fields, start=1):
            if spec.id == id:
                return number
        raise KeyError(f"form {self.id!r} has no field {id!r}")


def load_forms(folders: Sequence[Path]) -> tuple[dict[str, FormTemplate], list[Problem]]:
    """Every ``*.toml`` template in ``folders``, and every problem found in them.

    A template in a later folder replaces the one with the same id from an earlier
    folder (the built-in folder comes first); the same id twice in one folder is a
    problem. Files with problems are left out of the result.
    """
    forms: dict[str, FormTemplate] = {}
    problems: list[Problem] = []
    for folder in folders:
        if not folder.is_dir():
            problems.append(Problem(_shown(folder), "no such folder of form templates"))
            continue
        first_file_of: dict[str, str] = {}
        paths = sorted(path for path in folder.glob("*.toml") if not path.name.startswith("."))
        for path in paths:
            template, file_problems = _load_file(path)
            problems.extend(file_problems)
            if template is None:
                continue
            if template.id in first_file_of:
                problems.append(
                    Problem(
                        f"{_shown(path)}: id",
                        f"duplicate form id {template.id!r} (also in {first_file_of[template.id]})",
                    )
                )
                continue
            first_file_of[template.id] = _shown(path)
            forms[template.id] = template
    return forms, problems


@functools.cache
def builtin_forms() -> Mapping[str, FormTemplate]:
    """The shipped templates alone, for tools and tests that have no config file."""
    forms, problems = load_forms((BUILTIN_FORMS_DIR,))
    if problems:
        raise ValueError("\n".join(str(problem) for problem in problems))
    return MappingProxyType(forms)


# -- one file ----------------------------------------------------------------------


def _load_file(path: Path) -> tuple[FormTemplate | None, list[Problem]]:
    label = _shown(path)
    try:
        root = tomllib.loads(path.read_bytes().decode("utf-8"))
    except OSError as error:
        return None, [Problem(label, f"cannot read the template: {error.strerror or error}")]
    except UnicodeDecodeError as error:
        return None, [Problem(label, f"not UTF-8 text (bad byte at offset {error.start})")]
    except tomllib.TOMLDecodeError as error:
        return None, [_syntax_problem(label, error)]
    reader = Reader(path.parent, {})
    template = _template(reader, root)
    problems = [Problem(f"{label}: {place}", message) for place, message in reader.problems]
    return (None if problems else template), problems


def _template(r: Reader, root: dict[str, Any]) -> FormTemplate:
    r.table("", root, _FORM_KEYS)
    return FormTemplate(
        id=_text(r, root, "", "id", pattern=_ID, rule=_ID_RULE),
        version=_version(r, root),
        title=_text(r, root, "", "title"),
        decision_type=_text(r, root, "", "decision_type"),
        legal_reference=_text(r, root, "", "legal_reference"),
        next_step=_text(r, root, "", "next_step"),
        description=_text(r, root, "", "description"),
        fields=_fields(r, root),
        appeal=_text(r, root, "", "appeal", required=False),
        translations=_translations(r, root),
        signer=_signer(r, root),
        refusal_title=_text(r, root, "", "refusal_title", required=False),
        refusal_text=_refusal_text(r, root, ""),
        refusal_appeal=_text(r, root, "", "refusal_appeal", required=False),
        deadlines=read_deadline_specs(r, root),
    )


def _signer(r: Reader, root: dict[str, Any]) -> SignerKind:
    """``signer``: who signs the form's document; committee_member when absent.

    A ``none`` form is documentation, never refused: refusal texts make no sense there.
    A refusal is named by its title and its sentence together.
    """
    signer: SignerKind = "committee_member"
    if "signer" in root:
        text = _text(r, root, "", "signer")
        found = next((kind for kind in SIGNER_KINDS if kind == text), None)
        if found is not None:
            signer = found
        elif text:
            listed = ", ".join(repr(kind) for kind in SIGNER_KINDS)
            close = difflib.get_close_matches(text, SIGNER_KINDS, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            r.report("signer", f"expected one of {listed}, got {text!r}{hint}")
    given = [key for key in _REFUSAL_KEYS if key in root]
    if signer == "none":
        for key in given:
            r.report(
                key,
                'a form with signer = "none" is the worker\'s record and is never refused: '
                "remove the refusal texts",
            )
    elif ("refusal_title" in root) != ("refusal_text" in root):
        missing = "refusal_text" if "refusal_title" in root else "refusal_title"
        r.report(missing, "missing required key: a refusal needs refusal_title and refusal_text")
    return signer


def _refusal_text(r: Reader, table: dict[str, Any], parent: str) -> str:
    """The refusal sentence: only ``{body}`` may stand in braces."""
    text = _text(r, table, parent, "refusal_text", required=False)
    if not text:
        return text
    place = key_place(parent, "refusal_text")
    try:
        fields = {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}
    except ValueError:
        r.report(place, "unbalanced { or }: write {body} for the body's name, {{ for a brace")
        return ""
    unknown = sorted(fields - _REFUSAL_PLACEHOLDERS)
    if unknown:
        r.report(
            place,
            f"unknown placeholder {{{unknown[0]}}}: only {{body}} (the deciding body) is filled in",
        )
        return ""
    return text


def _translations(r: Reader, root: dict[str, Any]) -> tuple[Translation, ...]:
    """``[translations.en]``: the texts in another language, each key optional."""
    if "translations" not in root:
        return ()
    table = r.table("translations", root["translations"], TRANSLATION_LANGUAGES)
    if table is None:
        return ()
    found: list[Translation] = []
    for language in TRANSLATION_LANGUAGES:
        if language not in table:
            continue
        place = key_place("translations", language)
        texts = r.table(place, table[language], _TRANSLATED_KEYS)
        if texts is None:
            continue
        translated: dict[str, str] = {}
        for key in _TRANSLATED_KEYS:
            if key == "refusal_text":
                value = _refusal_text(r, texts, place)
            else:
                value = _text(r, texts, place, key, required=False)
            if value and not root.get(key):
                r.report(key_place(place, key), f"translates {key}, which the template lacks")
            translated[key] = value
        found.append(Translation(language=language, **translated))
    return tuple(found)


def _text(
    r: Reader,
    table: dict[str, Any],
    parent: str,
    key: str,
    *,
    required: bool = True,
    pattern: re.Pattern[str] | None = None,
    rule: str = "",
) -> str:
    """A string key, trimmed; "" when absent or wrong (reported unless optional and absent)."""
    place = key_place(parent, key)
    if key not in table:
        if required:
            r.report(place, "missing required key")
        return ""
    value = table[key]
    if not isinstance(value, str):
        r.report(place, f"expected a string, got {describe(value)}")
        return ""
    value = value.strip()
    if not value:
        r.report(place, "must not be empty")
    elif pattern is not None and pattern.fullmatch(value) is None:
        r.report(place, f"expected {rule}, got {value!r}")
        return ""
    return value


def _version(r: Reader, root: dict[str, Any]) -> int:
    value = root.get("version")
    if "version" not in root:
        r.report("version", "missing required key")
    elif isinstance(value, bool) or not isinstance(value, int) or value < 1:
        r.report("version", f"expected a whole number from 1 up, got {describe(value)}")
    else:
        return value
    return 1


def _fields(r: Reader, root: dict[str, Any]) -> tuple[FieldSpec, ...]:
    if "fields" not in root:
        r.report("fields", "missing required key; add one [[fields]] table per question")
        return ()
    items = r.tables("fields", root["fields"], "[[fields]]")
    if root["fields"] == []:
        r.report("fields", "list at least one question")
    position_of: dict[str, int] = {}
    for index, (_, raw) in enumerate(items):
        raw_id = raw.get("id") if isinstance(raw, dict) else None
        if isinstance(raw_id, str):
            position_of.setdefault(raw_id.strip(), index)
    parsed: dict[str, FieldSpec | None] = {}
    specs: list[FieldSpec] = []
    decision_place: str | None = None
    for index, (place, raw) in enumerate(items):
        raw_id = raw.get("id") if isinstance(raw, dict) else None
        if isinstance(raw_id, str) and _ID.fullmatch(raw_id.strip()):
            place = f"{place} ({raw_id.strip()})"
        table = r.table(place, raw, _FIELD_KEYS)
        if table is None:
            continue
        before = len(r.problems)
        spec = _field(r, table, place, index, parsed, position_of)
        if spec.id in parsed:
            r.report(
                key_place(place, "id"),
                f"duplicate field id {spec.id!r} (also fields[{position_of[spec.id]}])",
            )
        elif spec.id:
            parsed[spec.id] = spec if len(r.problems) == before else None
        if spec.decision:
            if decision_place is not None:
                r.report(
                    key_place(place, "decision"),
                    f"only one question can hold the decision; {decision_place} already does",
                )
            else:
                decision_place = place
        specs.append(spec)
    return tuple(specs)


def _field(
    r: Reader,
    table: dict[str, Any],
    place: str,
    index: int,
    earlier: Mapping[str, FieldSpec | None],
    position_of: Mapping[str, int],
) -> FieldSpec:
    field_id = _text(r, table, place, "id", pattern=_ID, rule=_ID_RULE)
    field_type = _field_type(r, table, place)
    required = table.get("required", True)
    if not isinstance(required, bool):
        r.report(key_place(place, "required"), f"expected true or false, got {describe(required)}")
        required = True
    decision = _decision_flag(r, table, place, field_type)
    return FieldSpec(
        id=field_id,
        type=field_type or "text",
        label=_text(r, table, place, "label"),
        help=_text(r, table, place, "help", required=False),
        required=required,
        choices=_choices(r, table, place, field_type),
        show_if=_condition(r, table, place, field_id, index, earlier, position_of),
        max_length=_max_length(r, table, place, field_type),
        decision=decision,
    )


def _decision_flag(
    r: Reader, table: dict[str, Any], parent: str, field_type: FieldType | None
) -> bool:
    """``decision = true``: the answer is the decision text, so it must be free text."""
    if "decision" not in table:
        return False
    place = key_place(parent, "decision")
    value = table["decision"]
    if not isinstance(value, bool):
        r.report(place, f"expected true or false, got {describe(value)}")
        return False
    if value and field_type is not None and field_type not in TEXT_TYPES:
        r.report(
            place,
            f"only a text or long_text question can hold the decision, not {field_type}",
        )
        return False
    if value and (table.get("required") is False or "show_if" in table):
        r.report(
            place,
            "the decision question must always be asked: remove required = false and show_if",
        )
        return False
    return value


def _field_type(r: Reader, table: dict[str, Any], parent: str) -> FieldType | None:
    place = key_place(parent, "type")
    text = _text(r, table, parent, "type")
    for field_type in FIELD_TYPES:
        if text == field_type:
            return field_type
    if text:
        close = difflib.get_close_matches(text, FIELD_TYPES, n=1)
        hint = (
            f"did you mean {close[0]!r}?" if close else f"expected one of: {', '.join(FIELD_TYPES)}"
        )
        r.report(place, f"unknown type {text!r}; {hint}")
    return None


def _choices(
    r: Reader, table: dict[str, Any], parent: str, field_type: FieldType | None
) -> tuple[Choice, ...]:
    place = key_place(parent, "choices")
    if field_type is None:
        return ()
    if field_type not in CHOICE_TYPES:
        if "choices" in table:
            r.report(
                place, f"only choice and multi_choice questions have choices, not {field_type}"
            )
        return ()
    if "choices" not in table:
        r.report(
            place, 'missing required key; list the answers as [{ value = "...", label = "..." }]'
        )
        return ()
    items = r.tables(place, table["choices"], '[{ value = "...", label = "..." }, ...]')
    if isinstance(table["choices"], list) and len(table["choices"]) < 2:
        r.report(place, "list at least two choices (a single one is a yes_no question)")
    choices: list[Choice] = []
    first_of: dict[tuple[str, str], str] = {}
    for choice_place, raw in items:
        choice = r.table(choice_place, raw, _CHOICE_KEYS)
        if choice is None:
            continue
        value = _text(r, choice, choice_place, "value", pattern=_ID, rule=_ID_RULE)
        label = _text(r, choice, choice_place, "label")
        for key, seen in (("value", value), ("label", label.casefold())):
            if not seen:
                continue
            if (key, seen) in first_of:
                r.report(
                    key_place(choice_place, key),
                    f"duplicate choice {key} {seen!r} (also {first_of[key, seen]})",
                )
            else:
                first_of[key, seen] = choice_place
        choices.append(Choice(value=value, label=label))
    return tuple(choices)


def _condition(
    r: Reader,
    table: dict[str, Any],
    parent: str,
    field_id: str,
    index: int,
    earlier: Mapping[str, FieldSpec | None],
    position_of: Mapping[str, int],
) -> Condition | None:
    place = key_place(parent, "show_if")
    if "show_if" not in table:
        return None
    condition = r.table(place, table["show_if"], _CONDITION_KEYS)
    if condition is None:
        return None
    target = _text(r, condition, place, "field")
    if not target:
        return None
    if target == field_id:
        r.report(place, "names this field itself; a condition can only depend on an earlier field")
        return None
    if target not in earlier:
        later = position_of.get(target, -1) > index
        where = f" (it is fields[{position_of[target]}], after this one)" if later else ""
        r.report(place, f"names {target!r}, which is not an earlier field{where}")
        return None
    source = earlier[target]
    if source is None:
        return None  # that field's own problems are reported already
    if source.type in AGE_CONDITION_TYPES:
        return _age_condition(r, condition, place, target)
    for key in _AGE_KEYS:
        if key in condition:
            r.report(
                key_place(place, key),
                f"{target!r} is a {source.type} question; {key} needs a personnummer question",
            )
            return None
    if ("equals" in condition) == ("any_of" in condition):
        r.report(place, "give either equals or any_of")
        return None
    if source.type not in CONDITION_TYPES:
        r.report(
            place,
            f"names {target!r}, a {source.type} question; a condition can only depend "
            f"on a {', '.join(CONDITION_TYPES[:-1])} or {CONDITION_TYPES[-1]} question, "
            "or on the age a personnummer question gives (age_under, age_at_least)",
        )
        return None
    if source.type == "yes_no":
        return _yes_no_condition(r, condition, place, target)
    values = [choice.value for choice in source.choices]
    shown_values = ", ".join(repr(value) for value in values)
    if "equals" in condition:
        equals = condition["equals"]
        if source.type == "multi_choice":
            r.report(
                key_place(place, "equals"),
                f"{target!r} is a multi_choice question: use any_of = [...] to ask when "
                "any of those answers was chosen",
            )
        elif not isinstance(equals, str):
            r.report(key_place(place, "equals"), f"expected a string, got {describe(equals)}")
        elif equals not in values:
            r.report(
                key_place(place, "equals"),
                f"{equals!r} is not among the choices of {target!r}: {shown_values}",
            )
        else:
            return Condition(field=target, equals=equals)
        return None
    return _any_of_condition(r, condition, place, target, values, shown_values)


def _age_condition(
    r: Reader, condition: dict[str, Any], place: str, target: str
) -> Condition | None:
    """``{ field = "personnummer", age_under = 18 }``: a bound on the age, or two for a range."""
    for key in ("equals", "any_of"):
        if key in condition:
            r.report(
                key_place(place, key),
                f"{target!r} is a personnummer question: test its age with "
                "age_under = N or age_at_least = N",
            )
            return None
    bounds: dict[str, int] = {}
    ok = True
    for key in _AGE_KEYS:
        if key not in condition:
            continue
        value = condition[key]
        if isinstance(value, bool) or not isinstance(value, int):
            r.report(
                key_place(place, key), f"expected a whole number of years, got {describe(value)}"
            )
            ok = False
        elif not 1 <= value <= MAX_AGE:
            r.report(key_place(place, key), f"expected 1 to {MAX_AGE} years, got {value}")
            ok = False
        else:
            bounds[key] = value
    if not ok:
        return None
    if not bounds:
        r.report(
            place,
            f"{target!r} is a personnummer question: give age_under, age_at_least or both",
        )
        return None
    under, at_least = bounds.get("age_under"), bounds.get("age_at_least")
    if under is not None and at_least is not None and at_least >= under:
        r.report(
            place,
            f"age_at_least = {at_least} and age_under = {under} leave no age; "
            "age_at_least must be lower",
        )
        return None
    return Condition(field=target, age_under=under, age_at_least=at_least)


def _yes_no_condition(
    r: Reader, condition: dict[str, Any], place: str, target: str
) -> Condition | None:
    if "any_of" in condition:
        r.report(
            key_place(place, "any_of"),
            f"{target!r} is a yes_no question: use equals = true or equals = false",
        )
        return None
    equals = condition["equals"]
    if not isinstance(equals, bool):
        r.report(
            key_place(place, "equals"),
            f"{target!r} is a yes_no question: expected true or false, got {describe(equals)}",
        )
        return None
    return Condition(field=target, equals=equals)


def _any_of_condition(
    r: Reader,
    condition: dict[str, Any],
    place: str,
    target: str,
    values: list[str],
    shown_values: str,
) -> Condition | None:
    any_place = key_place(place, "any_of")
    raw = condition["any_of"]
    if not isinstance(raw, list) or not raw:
        r.report(any_place, f"expected a list of choice values of {target!r}: {shown_values}")
        return None
    ok = True
    for item_index, item in enumerate(raw):
        if item not in values:
            shown = repr(item) if isinstance(item, str) else describe(item)
            r.report(
                item_place(any_place, item_index),
                f"{shown} is not among the choices of {target!r}: {shown_values}",
            )
            ok = False
    return Condition(field=target, any_of=tuple(raw)) if ok else None


def _max_length(
    r: Reader, table: dict[str, Any], parent: str, field_type: FieldType | None
) -> int | None:
    if "max_length" not in table:
        return None
    place = key_place(parent, "max_length")
    value = table["max_length"]
    if field_type is not None and field_type not in TEXT_TYPES:
        r.report(place, f"only text and long_text questions have max_length, not {field_type}")
    elif isinstance(value, bool) or not isinstance(value, int):
        r.report(place, f"expected a whole number of characters, got {describe(value)}")
    elif not 1 <= value <= MAX_LENGTH_CEILING:
        r.report(place, f"expected 1 to {MAX_LENGTH_CEILING} characters, got {value}")
    else:
        return value
    return None


def _shown(path: Path) -> str:
    """A path as an admin reads it: relative to the working folder when inside it."""
    try:
        return str(path.relative_to(Path.cwd()))
    except (ValueError, OSError):
        return str(path)


def _syntax_problem(label: str, error: tomllib.TOMLDecodeError) -> Problem:
    message = str(error)
    position = _SYNTAX_POSITION.search(message)
    if position is None:
        return Problem(label, f"TOML syntax error: {message}")
    line, column = position.groups()
    return Problem(
        f"{label}: line {line}, column {column}",
        f"TOML syntax error: {message[: position.start()]}",
    )
