"""Socialjour's configuration: the settings schema, the TOML loader and its checks.

Every other package reads settings from here and nothing here reads them back:
``config`` depends on no other Socialjour package.
"""

from config.durations import format_duration, parse_duration
from config.loader import EXAMPLE_CONFIG, ConfigError, Problem, check_config, load_settings
from config.settings import (
    AUTH_METHODS,
    STANDARD_POLICY,
    DecisionMaker,
    DutySettings,
    EscalationPolicy,
    EscalationStep,
    LoggingSettings,
    MatrixSettings,
    Municipality,
    Settings,
    SigningSettings,
    StorageSettings,
    WebSettings,
)

__all__ = [
    "AUTH_METHODS",
    "EXAMPLE_CONFIG",
    "STANDARD_POLICY",
    "ConfigError",
    "DecisionMaker",
    "DutySettings",
    "EscalationPolicy",
    "EscalationStep",
    "LoggingSettings",
    "MatrixSettings",
    "Municipality",
    "Problem",
    "Settings",
    "SigningSettings",
    "StorageSettings",
    "WebSettings",
    "check_config",
    "format_duration",
    "load_settings",
    "parse_duration",
]
