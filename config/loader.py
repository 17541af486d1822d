"""Load and validate the TOML config file into ``Settings``.

Validation reports every problem at once, each with the file and the key it concerns,
because an admin fixing a config at night should not have to rerun the check ten times.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import MappingProxyType

from config._reader import Reader
from config._sections import delegate_warnings, read_settings
from config.forms import BUILTIN_FORMS_DIR, load_forms
from config.settings import Problem, Settings

__all__ = ["EXAMPLE_CONFIG", "ConfigError", "Problem", "check_config", "load_settings"]

EXAMPLE_CONFIG = Path(__file__).with_name("example.toml")
"""The annotated example shipped with the package (also a starting point for the demo)."""

_SYNTAX_POSITION = re.compile(r"\s*\(at line (\d+), column (\d+)\)$")


class ConfigError(Exception):
    """The config cannot be used; ``problems`` lists every reason found."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems: tuple[Problem, ...] = tuple(problems)
        super().__init__("\n".join(str(problem) for problem in self.problems))


def load_settings(path: str | Path, *, environ: Mapping[str, str] | None = None) -> Settings:
    """Read ``path`` into ``Settings``; raise ``ConfigError`` listing every problem.

    ``environ`` replaces ``os.environ`` for ``{ env = ... }`` secrets (tests, dry runs).
    """
    settings, problems = _load(path, environ)
    if settings is None:
        raise ConfigError(problems)
    return settings


def check_config(path: str | Path, *, environ: Mapping[str, str] | None = None) -> list[Problem]:
    """Every problem in the config at ``path``; an empty list means it loads."""
    return _load(path, environ)[1]


def _load(
    path: str | Path, environ: Mapping[str, str] | None
) -> tuple[Settings | None, list[Problem]]:
    label = str(path)
    config_path = Path(os.path.abspath(path))
    try:
        text = config_path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        return None, [Problem(label, "config file not found")]
    except OSError as error:
        return None, [Problem(label, f"cannot read the config file: {error.strerror or error}")]
    except UnicodeDecodeError as error:
        return None, [Problem(label, f"not UTF-8 text (bad byte at offset {error.start})")]
    try:
        root = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        return None, [_syntax_problem(label, error)]
    reader = Reader(config_path.parent, os.environ if environ is None else environ)
    settings = read_settings(reader, root, config_path)
    problems = [Problem(f"{label}: {place}", message) for place, message in reader.problems]
    forms, form_problems = load_forms((BUILTIN_FORMS_DIR, *settings.form_dirs))
    problems.extend(form_problems)
    if problems:
        return None, problems
    warnings = (*settings.warnings, *delegate_warnings(settings.municipalities, forms))
    return dataclasses.replace(settings, forms=MappingProxyType(forms), warnings=warnings), problems


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
