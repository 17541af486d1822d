"""Turn what a worker types on a phone into a checked, stored answer.

Lenient about form (``1, 3``, ``Skövde``, ``070-123 45 67``, ``nu``), strict about
content: a personal identity number must be a real date with a matching check
digit, a choice must name exactly one option. Every refusal is an ``InvalidAnswer``
whose key names a message in ``handlers.i18n_fields``; nothing else escapes.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import unquote
from zoneinfo import ZoneInfo

from config import personnummer
from config.forms import FieldSpec, FormTemplate
from config.settings import Municipality
from handlers.i18n_fields import FIELD_MESSAGES

__all__ = [
    "STOCKHOLM",
    "Answer",
    "InvalidAnswer",
    "age",
    "birth_date",
    "is_samordningsnummer",
    "is_visible",
    "parse_answer",
    "parse_personnummer",
    "strip_invisible",
    "visible_answers",
]

STOCKHOLM = ZoneInfo("Europe/Stockholm")

AnswerValue = str | bool | list[str] | None

_NUMBER = re.compile(r"[0-9]{1,6}")
_CONNECTORS = frozenset({"och", "and", "samt", "plus"})
_YES = frozenset({"ja", "j", "yes", "y", "1"})
_NO = frozenset({"nej", "n", "no", "2"})
_RELATIVE_DAYS = {
    "idag": 0,
    "i dag": 0,
    "today": 0,
    "igar": -1,
    "i gar": -1,
    "yesterday": -1,
    "imorgon": 1,
    "i morgon": 1,
    "tomorrow": 1,
}
_NOW = frozenset({"nu", "now"})
_ISO_DATE = re.compile(r"([0-9]{4})-([0-9]{1,2})-([0-9]{1,2})")
_COMPACT_DATE = re.compile(r"([0-9]{4})([0-9]{2})([0-9]{2})")
_DAY_MONTH = re.compile(r"([0-9]{1,2})/([0-9]{1,2})(?:/([0-9]{4}))?")
_TIME = re.compile(r"([0-9]{1,2})[:.]([0-9]{2})(?::([0-9]{2}))?")
_CLOCK_WORD = re.compile(r"\bkl(?:ockan)?\b\.?", re.IGNORECASE)
_DASHES = str.maketrans({"–": "-", "—": "-", "‐": "-", "‑": "-", "−": "-"})
_PHONE_NOISE = re.compile(r"[\s\-()./]")
_MATRIX_TO = re.compile(r"https?://matrix\.to/#/(@[^?/\s]+)", re.IGNORECASE)
_LOCALPART = re.compile(r"[a-z0-9._=/+-]+")
_SERVER_NAME = re.compile(r"(?:\[[0-9a-f:.]+\]|[a-z0-9.-]+)(?::[0-9]{1,5})?")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


class InvalidAnswer(Exception):
    """The answer cannot be used; ``key`` names the message that says why."""

    def __init__(self, key: str, **params: Any) -> None:
        super().__init__(key)
        self.key = key
        self.params: dict[str, Any] = params


@dataclass(frozen=True)
class Answer:
    """A checked answer: ``value`` is stored (JSON), ``display`` is shown in summaries."""

    value: AnswerValue
    display: str


def parse_answer(
    field: FieldSpec,
    text: str,
    *,
    lang: str,
    municipalities: Sequence[Municipality],
    now: datetime,
) -> Answer:
    """Read ``text`` as an answer to ``field``; raise ``InvalidAnswer`` when it is not one.

    ``now`` is the current time (aware, or naive Stockholm time): it anchors "idag",
    "nu", bare clock times and the century of 10-digit personal identity numbers.
    """
    cleaned = _clean(text, keep_lines=field.type == "long_text")
    if not cleaned:
        raise InvalidAnswer("field.empty")
    local_now = now.astimezone(STOCKHOLM) if now.tzinfo else now.replace(tzinfo=STOCKHOLM)
    kind = field.type
    if kind in ("text", "long_text"):
        limit = field.length_limit or len(cleaned)
        if len(cleaned) > limit:
            raise InvalidAnswer("field.too_long", length=len(cleaned), max=limit)
        return Answer(cleaned, cleaned)
    if kind == "choice":
        index = _one_option(_choice_options(field), cleaned, "field.choice")
        return Answer(field.choices[index].value, field.choices[index].label)
    if kind == "multi_choice":
        indices = _many_options(_choice_options(field), cleaned)
        chosen = [field.choices[index] for index in indices]
        return Answer([choice.value for choice in chosen], ", ".join(c.label for c in chosen))
    if kind == "yes_no":
        answer = _yes_no(cleaned)
        catalogue = FIELD_MESSAGES.get(lang, FIELD_MESSAGES["sv"])
        return Answer(answer, catalogue["field.yes_no.yes" if answer else "field.yes_no.no"])
    if kind == "date":
        day = _date(cleaned, local_now.date())
        return Answer(day.isoformat(), day.isoformat())
    if kind == "datetime":
        moment = _datetime(cleaned, local_now)
        return Answer(moment.isoformat(), f"{moment:%Y-%m-%d %H:%M}")
    if kind == "personnummer":
        number = parse_personnummer(cleaned, today=local_now.date())
        return Answer(number, number)
    if kind == "phone":
        phone = _phone(cleaned)
        return Answer(phone, phone)
    if kind == "municipality":
        municipality = _municipality(municipalities, cleaned)
        return Answer(municipality.id, municipality.name)
    user_id = _matrix_user(cleaned)
    return Answer(user_id, user_id)


# -- visibility ----------------------------------------------------------------------


def is_visible(
    field: FieldSpec,
    answers: Mapping[str, Any],
    *,
    form: FormTemplate | None = None,
    today: date | None = None,
) -> bool:
    """Whether ``field`` is asked, given the stored answer values so far.

    A condition on an unanswered field is false. With ``form``, a condition on a
    field that is itself hidden is false too, even if a stale answer remains;
    without it, pass only the answers of visible fields (see ``visible_answers``).
    ``today`` is the day ages are counted on (``show_if`` with ``age_under`` or
    ``age_at_least``); without it an age condition is false.
    """
    spec, seen = field, set()
    while spec.show_if is not None:
        condition = spec.show_if
        value = answers.get(condition.field)
        if not condition.holds(value.value if isinstance(value, Answer) else value, today=today):
            return False
        if form is None or condition.field in seen:
            return True
        seen.add(condition.field)
        try:
            spec = form.field(condition.field)
        except KeyError:
            return False
    return True


def visible_answers(
    form: FormTemplate, answers: Mapping[str, Any], *, today: date | None = None
) -> dict[str, Any]:
    """The answers that count: those of fields still visible, in form order."""
    kept: dict[str, Any] = {}
    for spec in form.fields:
        if spec.id in answers and is_visible(spec, kept, today=today):
            kept[spec.id] = answers[spec.id]
    return kept


# -- personal identity numbers -------------------------------------------------------


def parse_personnummer(text: str, *, today: date) -> str:
    """A personnummer or samordningsnummer as ``YYYYMMDD-NNNN``, or ``InvalidAnswer``."""
    try:
        return personnummer.parse(text, today=today)
    except personnummer.PersonnummerError as exc:
        raise InvalidAnswer(f"field.personnummer.{exc.reason}", **exc.params) from None


is_samordningsnummer = personnummer.is_samordningsnummer
birth_date = personnummer.birth_date
age = personnummer.age


# -- text ----------------------------------------------------------------------------


def strip_invisible(text: str) -> str:
    """``text`` without the invisible format characters that can disguise it.

    Removes every character of Unicode category Cf ("format"): the bidirectional
    embeddings, overrides and isolates (U+202A–U+202E, U+2066–U+2069) that make a
    text display in another order than it is stored (``RLO`` turns "gnabeL" into
    "Lebang" on screen), the left-to-right and right-to-left marks (U+200E, U+200F,
    U+061C), zero-width space, non-joiner and joiner (U+200B–U+200D), word joiner
    (U+2060), the byte order mark (U+FEFF), the soft hyphen (U+00AD), invisible
    operators and tag characters. What a worker types into a report, an execution
    record or a decline reason is legal text that others read, sign and archive:
    what it says must be exactly what it shows, and two texts that look alike must
    be alike.

    The price is deliberate: U+200D also glues emoji sequences together, so a family
    or a profession emoji (👩‍⚕️) falls apart into its parts (👩⚕️), and a flag of a
    region (tag characters) shows as a black flag. Letters of every script, Swedish
    å, ä and ö, combining accents, variation selectors and plain emoji are kept.
    Used by :mod:`handlers.dispatcher` on every message, by every answer parsed
    here, and by the signing page for a decline reason.
    """
    if text.isascii():
        return text
    return "".join(c for c in text if unicodedata.category(c) != "Cf")


def _clean(text: str, *, keep_lines: bool) -> str:
    """NFC, no control or invisible format characters; one line with single spaces
    unless ``keep_lines``."""
    # Control characters out first, so that what is left composes as typed (é, not e + ´).
    text = text.replace("\r\n", "\n").replace("\t", " ")
    text = unicodedata.normalize("NFC", strip_invisible(_CONTROL.sub("", text)))
    if not keep_lines:
        return " ".join(text.split())
    lines = [line.rstrip() for line in text.split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def _fold(text: str) -> str:
    """Case-, accent- and punctuation-blind text for matching: ``Skövde kommun``."""
    decomposed = unicodedata.normalize("NFKD", text)
    bare = "".join(character for character in decomposed if not unicodedata.combining(character))
    return " ".join(re.findall(r"[^\W_]+", bare.casefold()))


# -- choices -------------------------------------------------------------------------


@dataclass(frozen=True)
class _Option:
    label: str
    keys: frozenset[str]


def _choice_options(field: FieldSpec) -> list[_Option]:
    return [
        _Option(choice.label, frozenset({_fold(choice.value), _fold(choice.label)}))
        for choice in field.choices
    ]


def _matches(options: Sequence[_Option], folded: str) -> list[int]:
    """Options a phrase names: by number, whole value or label, or the start of one (3+)."""
    if _NUMBER.fullmatch(folded):
        number = int(folded)
        if not 1 <= number <= len(options):
            raise InvalidAnswer("field.choice.number", number=number, count=len(options))
        return [number - 1]
    exact = [index for index, option in enumerate(options) if folded in option.keys]
    if exact or len(folded) < 3:
        return exact
    return [
        index
        for index, option in enumerate(options)
        if any(key.startswith(folded) for key in option.keys)
    ]


def _one_option(options: Sequence[_Option], text: str, prefix: str) -> int:
    folded = _fold(text)
    if " " in folded and all(_NUMBER.fullmatch(word) for word in folded.split()):
        raise InvalidAnswer("field.choice.one", count=len(options))
    found = _matches(options, folded)
    if len(found) == 1:
        return found[0]
    if found:
        labels = ", ".join(options[index].label for index in found)
        raise InvalidAnswer(f"{prefix}.ambiguous", matches=labels)
    raise InvalidAnswer(f"{prefix}.unknown", count=len(options))


def _many_options(options: Sequence[_Option], text: str) -> list[int]:
    """Several options, read left to right taking the longest phrase that names one."""
    words = _fold(text).split()
    longest = max((len(key.split()) for option in options for key in option.keys), default=1)
    chosen: set[int] = set()
    start = 0
    while start < len(words):
        if words[start] in _CONNECTORS:
            start += 1
            continue
        found: list[int] = []
        end = min(len(words), start + longest)
        while end > start:
            found = _matches(options, " ".join(words[start:end]))
            if len(found) == 1 or (found and end == start + 1):
                break
            end -= 1
        if len(found) != 1:
            if found:
                labels = ", ".join(options[index].label for index in found)
                raise InvalidAnswer("field.choice.ambiguous", matches=labels)
            raise InvalidAnswer("field.multi.unknown", part=words[start], count=len(options))
        chosen.add(found[0])
        start = end
    if not chosen:
        raise InvalidAnswer("field.choice.unknown", count=len(options))
    return sorted(chosen)


def _yes_no(text: str) -> bool:
    folded = _fold(text)
    if folded in _YES:
        return True
    if folded in _NO:
        return False
    raise InvalidAnswer("field.yes_no.invalid")


# -- dates and times -----------------------------------------------------------------


def _date(text: str, today: date) -> date:
    compact = text.strip().lower().translate(_DASHES)
    relative = _RELATIVE_DAYS.get(_fold(compact))
    if relative is not None:
        return today + timedelta(days=relative)
    parts: tuple[int, int, int] | None = None
    if match := _ISO_DATE.fullmatch(compact) or _COMPACT_DATE.fullmatch(compact):
        parts = (int(match[1]), int(match[2]), int(match[3]))
    elif match := _DAY_MONTH.fullmatch(compact):
        parts = (int(match[3] or today.year), int(match[2]), int(match[1]))
    if parts is None:
        raise InvalidAnswer("field.date.invalid")
    year, month, day = parts
    try:
        return date(year, month, day)
    except ValueError:
        raise InvalidAnswer(
            "field.date.nonexistent", date=f"{year:04d}-{month:02d}-{day:02d}"
        ) from None


def _datetime(text: str, now: datetime) -> datetime:
    """``YYYY-MM-DD HH:MM``, a date word and a time, a bare time (today), or ``nu``."""
    if _fold(text) in _NOW:
        return now.replace(second=0, microsecond=0)
    spaced = _CLOCK_WORD.sub(" ", text.translate(_DASHES))
    spaced = re.sub(r"^([0-9]{4}-[0-9]{1,2}-[0-9]{1,2})[tT]", r"\1 ", spaced.strip())
    date_part, _, time_part = spaced.strip().rpartition(" ")
    clock = _TIME.fullmatch(time_part)
    if clock is None:
        raise InvalidAnswer("field.datetime.invalid")
    hour, minute, second = int(clock[1]), int(clock[2]), int(clock[3] or 0)
    if hour > 23 or minute > 59 or second > 59:
        raise InvalidAnswer("field.datetime.invalid")
    try:
        day = _date(date_part, now.date()) if date_part.strip() else now.date()
    except InvalidAnswer as error:
        if error.key == "field.date.nonexistent":
            raise
        raise InvalidAnswer("field.datetime.invalid") from None
    wall = datetime(day.year, day.month, day.day, hour, minute, second)
    try:
        moment = wall.replace(tzinfo=STOCKHOLM)
        if moment.astimezone(UTC).astimezone(STOCKHOLM).replace(tzinfo=None) != wall:
            raise InvalidAnswer("field.datetime.gap", time=f"{wall:%Y-%m-%d %H:%M}")
    except (OverflowError, ValueError):
        raise InvalidAnswer("field.datetime.invalid") from None
    return moment


# -- phone, municipality, Matrix user ------------------------------------------------


def _phone(text: str) -> str:
    """A Swedish number as E.164 (``+46701234567``); other +country numbers pass as E.164."""
    compact = _PHONE_NOISE.sub("", text.translate(_DASHES).replace("(0)", ""))
    if compact.startswith("00"):
        compact = "+" + compact[2:]
    if compact.startswith("+46"):
        national = compact[3:].removeprefix("0")
    elif compact.startswith("+"):
        digits = compact[1:]
        if digits.isascii() and digits.isdigit() and 8 <= len(digits) <= 15 and digits[0] != "0":
            return compact
        raise InvalidAnswer("field.phone.invalid")
    elif compact.startswith("0"):
        national = compact[1:]
    else:
        raise InvalidAnswer("field.phone.invalid")
    valid = national.isascii() and national.isdigit() and national[:1] not in ("", "0")
    if not valid or not 7 <= len(national) <= 9 or (national[0] == "7" and len(national) != 9):
        raise InvalidAnswer("field.phone.invalid")
    return "+46" + national


def _municipality(municipalities: Sequence[Municipality], text: str) -> Municipality:
    if not municipalities:
        raise InvalidAnswer("field.municipality.none")
    options = [_Option(m.name, frozenset(_municipality_keys(m))) for m in municipalities]
    return municipalities[_one_option(options, text, "field.municipality")]


def _municipality_keys(municipality: Municipality) -> Iterable[str]:
    """``Mariestads kommun`` is also ``mariestads``, ``mariestad`` and its id."""
    yield _fold(municipality.id)
    name = _fold(municipality.name)
    yield name
    for suffix in (" kommun", " stad"):
        if name.endswith(suffix):
            base = name.removesuffix(suffix)
            yield base
            if base.endswith("s") and len(base) > 3:
                yield base[:-1]


def _matrix_user(text: str) -> str:
    """``@name:server``, also from a matrix.to link; lower-cased as servers register them."""
    candidate = text.strip()
    if candidate[:4].lower() == "http":
        candidate = unquote(candidate)
    if link := _MATRIX_TO.match(candidate):
        candidate = link[1]
    if not candidate.startswith("@") and ":" in candidate:
        candidate = "@" + candidate
    localpart, _, server = candidate[1:].partition(":")
    user_id = f"@{localpart.lower()}:{server.lower()}"
    if (
        not candidate.startswith("@")
        or len(user_id) > 255
        or _LOCALPART.fullmatch(localpart.lower()) is None
        or _SERVER_NAME.fullmatch(server.lower()) is None
    ):
        raise InvalidAnswer("field.matrix_user.invalid")
    return user_id
