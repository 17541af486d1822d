"""Typed reads from the raw TOML tree that record problems instead of raising.

Each accessor reports what is wrong at its place and hands back a harmless
placeholder, so a single pass finds every mistake in the file. The loader never
builds settings from a pass that recorded a problem, so placeholders never escape.
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import os
import re
from collections.abc import Callable, Collection, Mapping
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from config.durations import parse_duration

T = TypeVar("T", bound=str)
Check = Callable[[str], bool]

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_SERVER = r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(?::[0-9]{1,5})?"
_USER_ID = re.compile(rf"@[a-z0-9._=/+-]+:{_SERVER}")
_ROOM_ALIAS = re.compile(rf"#[^:\s]+:{_SERVER}")
_HOSTNAME = re.compile(r"[A-Za-z0-9.-]+")
_PORT = re.compile(r"[0-9]{1,5}")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_PHONE = re.compile(r"\+?[0-9][0-9 -]{4,}[0-9]")
_SECRET_KEYS = ("env", "file")

#: Appointments and other calendar days are Swedish days.
SWEDISH_TIME = ZoneInfo("Europe/Stockholm")
USER_ID = "a Matrix user id like @name:example.org"
ROOM_ALIAS = "a room alias like #room:example.org"
HTTP_URL = "an http:// or https:// URL like https://matrix.example.org"


def key_place(parent: str, key: str) -> str:
    """Dotted TOML path to ``key``, quoting keys that TOML would quote."""
    shown = key if _BARE_KEY.fullmatch(key) else json.dumps(key, ensure_ascii=False)
    return f"{parent}.{shown}" if parent else shown


def item_place(parent: str, index: int) -> str:
    return f"{parent}[{index}]"


def describe(value: Any, *, reveal: bool = True) -> str:
    """Name a TOML value's type for messages; ``reveal=False`` keeps secrets out of logs."""
    if isinstance(value, bool):
        kind, text = "a boolean", str(value).lower()
    elif isinstance(value, int):
        kind, text = "an integer", str(value)
    elif isinstance(value, float):
        kind, text = "a number", str(value)
    elif isinstance(value, str):
        kind, text = "a string", repr(value)
    elif isinstance(value, list):
        return "a list"
    elif isinstance(value, dict):
        return "a table"
    else:
        kind, text = "a date or time", str(value)
    return f"{kind} ({text})" if reveal else kind


def is_user_id(text: str) -> bool:
    return len(text) <= 255 and _USER_ID.fullmatch(text) is not None


def is_room_alias(text: str) -> bool:
    return len(text) <= 255 and _ROOM_ALIAS.fullmatch(text) is not None


def is_http_url(text: str) -> bool:
    """True for an absolute http(s) URL with a host and no query or fragment."""
    if any(character.isspace() for character in text):
        return False
    try:
        parts = urlsplit(text)
        _ = parts.port  # raises ValueError for a port that is not a number
    except ValueError:
        return False
    return (
        parts.scheme in ("http", "https")
        and bool(parts.hostname)
        and not parts.query
        and not parts.fragment
    )


def is_email(text: str) -> bool:
    return _EMAIL.fullmatch(text) is not None


def is_phone(text: str) -> bool:
    return _PHONE.fullmatch(text) is not None


def split_host_port(text: str) -> tuple[str, int] | None:
    """``127.0.0.1:8080`` or ``[::1]:8080`` as (host, port); None when malformed."""
    if text.startswith("["):
        host, separator, port = text[1:].partition("]:")
        if not separator:
            return None
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            return None
    else:
        host, separator, port = text.rpartition(":")
        if not separator or _HOSTNAME.fullmatch(host) is None:
            return None
    if _PORT.fullmatch(port) is None or int(port) > 65_535:
        return None
    return host, int(port)


def absolute(base_dir: Path, path: str) -> Path:
    """``path`` relative to the config file's folder, normalised; absolute paths stay."""
    return Path(os.path.normpath(base_dir / path))


class Reader:
    """Walks the TOML tree for the loader and collects ``(place, message)`` problems.

    Warnings are collected apart: what the file may say but should change (an old
    role, an appointment that is missing or runs out). They never stop a load.
    """

    def __init__(
        self, base_dir: Path, environ: Mapping[str, str], *, today: date | None = None
    ) -> None:
        self.base_dir = base_dir
        self.environ = environ
        #: The Swedish date the checks that depend on the day (appointments) use.
        self.today = today if today is not None else datetime.now(SWEDISH_TIME).date()
        self.problems: list[tuple[str, str]] = []
        self.warnings: list[tuple[str, str]] = []
        self._origins: dict[str, str] = {}

    def report(self, place: str, message: str) -> None:
        self.problems.append((place, message))

    def warn(self, place: str, message: str) -> None:
        self.warnings.append((place, message))

    def shown(self, place: str, value: str) -> str:
        """How a bad value appears in a message: secrets are named, never echoed."""
        origin = self._origins.get(place)
        return f"the value of {origin}" if origin else repr(value)

    # -- tables --------------------------------------------------------------------

    def table(self, place: str, value: Any, known: Collection[str]) -> dict[str, Any] | None:
        """``value`` as a table whose unknown keys are reported (with a likely spelling)."""
        if not isinstance(value, dict):
            self.report(place, f"expected a table, got {describe(value)}")
            return None
        for key in value:
            if key not in known:
                self.report(key_place(place, key), _unknown_key(key, known))
        return value

    def section(
        self, root: dict[str, Any], name: str, known: Collection[str], *, required: bool
    ) -> dict[str, Any] | None:
        """A top-level table: None when it is unusable (reported), {} when optional and absent."""
        if name not in root:
            if required:
                self.report(name, f"missing required section [{name}]")
                return None
            return {}
        if not isinstance(root[name], dict):
            self.report(name, f"expected a table [{name}], got {describe(root[name])}")
            return None
        return self.table(name, root[name], known)

    def tables(self, parent: str, value: Any, hint: str) -> list[tuple[str, Any]]:
        """An array of tables as (place, raw table) pairs; ``hint`` shows the TOML syntax."""
        if not isinstance(value, list):
            self.report(parent, f"expected an array of tables ({hint}), got {describe(value)}")
            return []
        return [(item_place(parent, index), item) for index, item in enumerate(value)]

    # -- strings -------------------------------------------------------------------

    def string(self, place: str, value: Any, *, secret: bool = False) -> str | None:
        """A string, or the secret a ``{ env = ... }`` / ``{ file = ... }`` table points at."""
        if isinstance(value, str):
            return value
        if isinstance(value, dict):
            return self._indirect(place, value)
        self.report(place, f"expected a string, got {describe(value, reveal=not secret)}")
        return None

    def _indirect(self, place: str, spec: dict[str, Any]) -> str | None:
        extra = [key for key in spec if key not in _SECRET_KEYS]
        for key in extra:
            self.report(
                key_place(place, key),
                'unknown key; a secret reference is { env = "NAME" } or { file = "PATH" }',
            )
        if "env" in spec and "file" in spec:
            self.report(place, "give either env or file, not both")
            return None
        if extra:
            return None
        if "env" in spec:
            name = spec["env"]
            if not isinstance(name, str) or not name:
                self.report(key_place(place, "env"), "expected the name of an environment variable")
                return None
            if name not in self.environ:
                self.report(place, f"environment variable {name} is not set")
                return None
            self._origins[place] = f"environment variable {name}"
            return self.environ[name]
        if "file" in spec:
            raw_path = spec["file"]
            if not isinstance(raw_path, str) or not raw_path:
                self.report(key_place(place, "file"), "expected a file path")
                return None
            path = absolute(self.base_dir, raw_path)
            try:
                text = path.read_text(encoding="utf-8")
            except OSError as error:
                self.report(place, f"cannot read secret file {path}: {error.strerror or error}")
                return None
            except UnicodeDecodeError:
                self.report(place, f"secret file {path} is not UTF-8 text")
                return None
            self._origins[place] = f"file {path}"
            return text.rstrip("\r\n")
        self.report(place, 'expected a string, { env = "NAME" } or { file = "PATH" }')
        return None

    def _checked(
        self, place: str, value: str, check: Check | None, expected: str, allow_empty: bool
    ) -> bool:
        if value == "" and not allow_empty:
            self.report(place, "must not be empty")
            return False
        if check is not None and not check(value):
            self.report(place, f"expected {expected}, got {self.shown(place, value)}")
            return False
        return True

    def required(
        self,
        table: dict[str, Any],
        parent: str,
        key: str,
        check: Check | None = None,
        expected: str = "",
        *,
        secret: bool = False,
        allow_empty: bool = False,
    ) -> str:
        """A required string key; an empty placeholder after reporting a problem."""
        place = key_place(parent, key)
        if key not in table:
            self.report(place, "missing required key")
            return ""
        value = self.string(place, table[key], secret=secret)
        if value is None or not self._checked(place, value, check, expected, allow_empty):
            return ""
        return value

    def optional(
        self,
        table: dict[str, Any],
        parent: str,
        key: str,
        check: Check | None = None,
        expected: str = "",
        *,
        secret: bool = False,
    ) -> str | None:
        """An optional string key; None when absent (or invalid, after reporting it)."""
        if key not in table:
            return None
        return self.required(table, parent, key, check, expected, secret=secret) or None

    def strings(
        self,
        table: dict[str, Any],
        parent: str,
        key: str,
        check: Check | None = None,
        expected: str = "",
    ) -> tuple[str, ...]:
        """A list of strings, each checked at ``key[i]``; duplicates are dropped in order."""
        place = key_place(parent, key)
        raw = table.get(key, [])
        if not isinstance(raw, list):
            self.report(place, f"expected a list of strings, got {describe(raw)}")
            return ()
        values: list[str] = []
        for index, item in enumerate(raw):
            item_at = item_place(place, index)
            value = self.string(item_at, item)
            if value is not None and self._checked(item_at, value, check, expected, False):
                if value not in values:
                    values.append(value)
        return tuple(values)

    def choice(
        self,
        table: dict[str, Any],
        parent: str,
        key: str,
        options: tuple[T, ...],
        default: T,
        *,
        required: bool = False,
    ) -> T:
        """One of ``options`` (typed as their Literal); ``default`` when absent or wrong."""
        place = key_place(parent, key)
        if key not in table:
            if required:
                self.report(place, "missing required key")
            return default
        value = self.string(place, table[key])
        for option in options:
            if value == option:
                return option
        if value is not None:
            listed = ", ".join(repr(option) for option in options)
            self.report(place, f"expected one of {listed}, got {self.shown(place, value)}")
        return default

    def integer(
        self,
        table: dict[str, Any],
        parent: str,
        key: str,
        default: int,
        *,
        minimum: int,
        maximum: int,
    ) -> int:
        """A whole number within [minimum, maximum]; ``default`` when absent or wrong."""
        place = key_place(parent, key)
        if key not in table:
            return default
        value = table[key]
        if isinstance(value, bool) or not isinstance(value, int):
            self.report(place, f"expected a whole number, got {self.shown(place, str(value))}")
            return default
        if not minimum <= value <= maximum:
            self.report(place, f"expected a number from {minimum} to {maximum}, got {value}")
            return default
        return value

    def day(
        self, table: dict[str, Any], parent: str, key: str, *, required: bool = False
    ) -> date | None:
        """A calendar day: a TOML date (2026-01-15) or the same as a string."""
        place = key_place(parent, key)
        if key not in table:
            if required:
                self.report(place, "missing required key")
            return None
        value = table[key]
        expected = "expected a date like 2026-01-15"
        if isinstance(value, datetime):
            self.report(place, f"{expected} (a day, without a time), got {describe(value)}")
            return None
        if isinstance(value, date):
            return value
        if isinstance(value, str):
            try:
                return date.fromisoformat(value.strip())
            except ValueError:
                pass
        self.report(place, f"{expected}, got {describe(value)}")
        return None

    # -- durations -----------------------------------------------------------------

    def duration(
        self, table: dict[str, Any], parent: str, key: str, *, required: bool = False
    ) -> timedelta | None:
        """A duration string; None when absent or unparseable (the latter is reported)."""
        place = key_place(parent, key)
        if key not in table:
            if required:
                self.report(place, "missing required key")
            return None
        text = self.string(place, table[key])
        if text is None:
            return None
        try:
            return parse_duration(text)
        except ValueError as error:
            self.report(place, str(error))
            return None


def _unknown_key(key: str, known: Collection[str]) -> str:
    close = difflib.get_close_matches(key, list(known), n=1)
    if close:
        return f"unknown key (did you mean {close[0]!r}?)"
    return f"unknown key; expected one of: {', '.join(sorted(known))}"
