"""Socialjour's configuration: the settings schema, the TOML loader and its checks.

Every other package reads settings from here and nothing here reads them back:
``config`` depends on no other Socialjour package.
"""

from config.durations import format_duration, parse_duration
from config.forms import (
    BUILTIN_FORMS_DIR,
    FIELD_TYPES,
    Choice,
    Condition,
    FieldSpec,
    FieldType,
    FormTemplate,
    builtin_forms,
    load_forms,
)
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
    "BUILTIN_FORMS_DIR",
    "EXAMPLE_CONFIG",
    "FIELD_TYPES",
    "STANDARD_POLICY",
    "Choice",
    "Condition",
    "ConfigError",
    "DecisionMaker",
    "DutySettings",
    "EscalationPolicy",
    "EscalationStep",
    "FieldSpec",
    "FieldType",
    "FormTemplate",
    "LoggingSettings",
    "MatrixSettings",
    "Municipality",
    "Problem",
    "Settings",
    "SigningSettings",
    "StorageSettings",
    "WebSettings",
    "builtin_forms",
    "check_config",
    "format_duration",
    "load_forms",
    "load_settings",
    "parse_duration",
]
