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
    CHANNELS,
    DEFAULT_NOTIFY,
    STANDARD_POLICY,
    DecisionMaker,
    DutySettings,
    EmailSettings,
    EscalationPolicy,
    EscalationStep,
    LoggingSettings,
    MatrixSettings,
    Municipality,
    NotifyRule,
    NotifySettings,
    PhoneSettings,
    Settings,
    SigningSettings,
    StorageSettings,
    WebSettings,
)

__all__ = [
    "AUTH_METHODS",
    "BUILTIN_FORMS_DIR",
    "CHANNELS",
    "DEFAULT_NOTIFY",
    "EXAMPLE_CONFIG",
    "FIELD_TYPES",
    "STANDARD_POLICY",
    "Choice",
    "Condition",
    "ConfigError",
    "DecisionMaker",
    "DutySettings",
    "EmailSettings",
    "EscalationPolicy",
    "EscalationStep",
    "FieldSpec",
    "FieldType",
    "FormTemplate",
    "LoggingSettings",
    "MatrixSettings",
    "Municipality",
    "NotifyRule",
    "NotifySettings",
    "PhoneSettings",
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
