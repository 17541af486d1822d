"""Socialjour's database: models, engine and sessions, migrations, and the `repo` functions.

Callers write `from storage import repo` and pass a session they opened for one
unit of work; nothing here knows about Matrix, HTTP or formatting.
"""

from storage import audit, deadlines, decisions, escalation, handover, repo  # noqa: F401 - the storage modules
from storage.db import create_engine, normalise_url, read_session_factory, session_factory
from storage.errors import CaseNotFoundError, StorageError, UnsupportedDatabaseError
from storage.migrate import current_revision, head_revision, upgrade
from storage.models import (
    AuditEntry,
    Base,
    BotState,
    Case,
    CaseParticipant,
    CaseRecord,
    CaseSequence,
    CourtDecision,
    Deadline,
    DirectRoom,
    Execution,
    Handover,
    HandoverDocument,
    ProcessedEvent,
    Report,
    RosterOverride,
    SigningRequest,
    TrustedMasterKey,
)

__all__ = [
    "AuditEntry",
    "Base",
    "BotState",
    "Case",
    "CaseNotFoundError",
    "CaseParticipant",
    "CaseRecord",
    "CaseSequence",
    "CourtDecision",
    "Deadline",
    "DirectRoom",
    "Execution",
    "Handover",
    "HandoverDocument",
    "ProcessedEvent",
    "Report",
    "RosterOverride",
    "SigningRequest",
    "StorageError",
    "TrustedMasterKey",
    "UnsupportedDatabaseError",
    "create_engine",
    "current_revision",
    "deadlines",
    "decisions",
    "handover",
    "head_revision",
    "normalise_url",
    "read_session_factory",
    "repo",
    "session_factory",
    "upgrade",
]
