"""The database tables of Socialjour as SQLAlchemy 2.0 declarative models.

Every change here needs a matching hand-written migration in `migrations/versions/`;
a test compares the migrated schema with these models.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

#: Deterministic constraint names, so later migrations can drop or alter them by name
#: on both SQLite (batch mode) and PostgreSQL.
NAMING_CONVENTION: dict[str, str] = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

#: Matrix user and room ids are at most 255 bytes (spec: "Identifier Grammar").
MATRIX_ID_LENGTH = 255


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that goes in and comes out as a timezone-aware UTC datetime.

    SQLite has no timezone type and PostgreSQL's `timestamptz` returns the session's
    zone; normalising to UTC on the way in and attaching UTC on the way out makes
    both databases behave the same and lets stored values compare correctly.
    Naive datetimes are refused: their zone is a guess, and a guess in an audit
    trail is a bug.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value!r}; pass a timezone-aware datetime")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            # SQLite stores the text without an offset; all stored values are UTC.
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    """Declarative base carrying the shared naming convention."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class BotState(Base):
    """Small key/value facts the bot must remember across restarts (e.g. a sync token)."""

    __tablename__ = "bot_state"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class ProcessedEvent(Base):
    """The bot's inbox: every Matrix event it will act on, stored before the sync token
    that delivered it moves on, and marked ``done`` in the same transaction as what
    the event changed. A restart at any moment finds each event either still
    ``pending`` (it is handled then) or ``done`` (never acted on twice).

    ``payload`` holds what the handler needs (the decrypted content, the sender's
    key) while the event waits and is cleared once it is done; ``position`` keeps
    the order in which events arrived.
    """

    __tablename__ = "processed_events"
    __table_args__ = (
        Index("ix_processed_events_processed_at", "processed_at"),
        Index("ix_processed_events_state_room", "state", "room_id"),
    )

    event_id: Mapped[str] = mapped_column(String(MATRIX_ID_LENGTH), primary_key=True)
    room_id: Mapped[str] = mapped_column(String(MATRIX_ID_LENGTH))
    #: When the event arrived (for pending ones) or was handled (for done ones).
    processed_at: Mapped[datetime] = mapped_column(UTCDateTime())
    #: ``pending`` while it waits for its handler, ``done`` once handled.
    state: Mapped[str] = mapped_column(String(16), default="done", server_default="done")
    position: Mapped[int | None] = mapped_column(BigInteger)
    payload: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class CaseSequence(Base):
    """The last case number handed out per prefix and year; numbering restarts each year."""

    __tablename__ = "case_sequences"

    prefix: Mapped[str] = mapped_column(String(16), primary_key=True)
    year: Mapped[int] = mapped_column(Integer, primary_key=True)
    last: Mapped[int] = mapped_column(Integer)


class CaseParticipant(Base):
    """A Matrix user taking part in a case, with the role that decides what they may do."""

    __tablename__ = "case_participants"

    case_id: Mapped[int] = mapped_column(
        ForeignKey("cases.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[str] = mapped_column(String(MATRIX_ID_LENGTH), primary_key=True)
    role: Mapped[str] = mapped_column(String(32))
    added_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Case(Base):
    """One urgent case: its number, its status and its encrypted Matrix room.

    `status` is a plain string here; the state machine that gives it meaning lives
    in `handlers`. The number is the only thing about a case that the homeserver
    sees unencrypted (as the room name), so it carries no personal data.
    """

    __tablename__ = "cases"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    number: Mapped[str] = mapped_column(String(32), unique=True)
    status: Mapped[str] = mapped_column(String(32))
    room_id: Mapped[str | None] = mapped_column(String(MATRIX_ID_LENGTH), unique=True)
    form_id: Mapped[str | None] = mapped_column(String(64))
    municipality_id: Mapped[str | None] = mapped_column(String(64))
    created_by: Mapped[str] = mapped_column(String(MATRIX_ID_LENGTH))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    cancel_requested_by: Mapped[str | None] = mapped_column(String(MATRIX_ID_LENGTH))
    cancel_requested_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    #: When the closed case was announced and its room made read-only (issue 9 §5).
    archived_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    #: When retention deleted the personal data the bot held for the case; the case's
    #: number, status, times, hashes and audit trail stay.
    purged_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    participants: Mapped[list[CaseParticipant]] = relationship(
        lazy="selectin",
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by=(CaseParticipant.added_at, CaseParticipant.user_id),
    )


class AuditEntry(Base):
    """One line of the audit trail: who did what to which case, and when.

    `detail` must never hold personal data (names, personal identity numbers, free
    text from the report): only ids, statuses, counts and codes. The audit trail is
    read by administrators and kept longer than the case content, so anything
    personal belongs in the encrypted case room, not here.

    The foreign key has no ON DELETE rule on purpose: a case with an audit trail
    cannot be deleted silently. `case_id` is NULL for entries about the bot itself.

    Rows are only ever appended, and chained (see `storage.audit`): `seq` numbers
    every row of the installation without gaps, `hash` is the SHA-256 of the row's
    fields and `prev_hash`, the `hash` of the row before it. A row is written when
    its transaction commits, with its place in the chain.
    """

    __tablename__ = "audit_entries"
    __table_args__ = (
        Index("ix_audit_entries_case_id", "case_id"),
        Index("ix_audit_entries_actor", "actor"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id"))
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    actor: Mapped[str] = mapped_column(String(MATRIX_ID_LENGTH))
    action: Mapped[str] = mapped_column(String(64))
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    seq: Mapped[int] = mapped_column(BigInteger, unique=True)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class TrustedMasterKey(Base):
    """A user's cross-signing master key as first seen (trust on first use).

    A later, different key for the same user means a reset or an impostor; the bot
    compares against this row before sending case content to that user's devices.
    """

    __tablename__ = "trusted_master_keys"

    user_id: Mapped[str] = mapped_column(String(MATRIX_ID_LENGTH), primary_key=True)
    master_key: Mapped[str] = mapped_column(String(128))
    first_seen: Mapped[datetime] = mapped_column(UTCDateTime())


class Report(Base):
    """The guided report of a case: the answers so far and where the dialogue stands.

    `state` is the dialogue engine's own JSON (see `handlers.dialogue`); storage keeps
    it opaque. It holds personal data, so it lives here and in the encrypted case room
    only, never in logs or the audit trail. `version` is bumped on every save so two
    people answering at once cannot overwrite each other (compare-and-set).
    `submitted` is the final, structured report, frozen at `!skicka`.
    """

    __tablename__ = "reports"

    case_id: Mapped[int] = mapped_column(
        ForeignKey("cases.id", ondelete="CASCADE"), primary_key=True
    )
    form_id: Mapped[str | None] = mapped_column(String(64))
    form_version: Mapped[int | None] = mapped_column(Integer)
    state: Mapped[dict[str, Any]] = mapped_column(JSON)
    version: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    submitted: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    submitted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class SigningRequest(Base):
    """One request to one decision-maker to sign one rendered decision.

    The link token is stored as its SHA-256 (to look it up) and sealed under the
    installation's link key (to repeat it), so a database dump alone cannot be
    turned into working links. `status` moves from "pending" to exactly one of
    "signed", "declined", "expired", "superseded" (another decided), "replaced"
    (`!skicka om`) or "cancelled" (compare-and-set, so two decision-makers acting
    at once give one decision). `posted_at` is set once the
    outcome is in the case room: a crash in between is repaired at start-up.
    """

    __tablename__ = "signing_requests"
    __table_args__ = (Index("ix_signing_requests_case_id", "case_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    signer_user_id: Mapped[str] = mapped_column(String(MATRIX_ID_LENGTH))
    signer_name: Mapped[str] = mapped_column(String(200))
    signer_role: Mapped[str] = mapped_column(String(64))
    municipality_id: Mapped[str] = mapped_column(String(64))
    document_sha256: Mapped[str] = mapped_column(String(64))
    document: Mapped[bytes] = mapped_column(LargeBinary)
    status: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    #: Identification in progress: method, the provider's private state, tries.
    auth_method: Mapped[str | None] = mapped_column(String(32))
    auth_state: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    auth_attempts: Mapped[int] = mapped_column(Integer, default=0)
    #: SHA-256 of the pre-auth cookie set in the browser that started identification:
    #: only that browser may poll, enter the code or come back from the provider.
    auth_binding: Mapped[str | None] = mapped_column(String(64))
    #: The browser session after identification (hash of the cookie value).
    session_hash: Mapped[str | None] = mapped_column(String(64))
    session_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    identity: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    decision_reason: Mapped[str | None] = mapped_column(Text)
    signed_document: Mapped[bytes | None] = mapped_column(LargeBinary)
    signed_sha256: Mapped[str | None] = mapped_column(String(64))
    file_posted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    posted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    #: The link token sealed with the installation's link key (AES-GCM), so reminders
    #: and other channels can repeat the link; a database dump alone opens nothing.
    token_sealed: Mapped[str | None] = mapped_column(Text)
    #: When the alert reached at least one device of the signer that can decrypt it.
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    #: "I am on it": when, and through which channel (matrix, reaction, call, page).
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    acknowledged_via: Mapped[str | None] = mapped_column(String(16))
    #: Whom the request asks, as the form's ``signer`` said: "committee_member" (the
    #: on-call chair or appointed member) or "delegate" (under the delegation order).
    #: A declined request's ``signed_document`` is the sealed refusal.
    signer_kind: Mapped[str] = mapped_column(
        String(32), default="committee_member", server_default="committee_member"
    )


class OidcState(Base):
    """An OpenID Connect sign-in on its way through the provider, until its callback.

    The browser comes back to ``/oidc/callback`` with only the ``state``; this row says
    which signing request it belongs to, also after a restart. The state is stored as
    its SHA-256 and the link token sealed under a key derived from the state itself,
    so the row alone (a database dump) gives neither. The provider's own flow data
    (nonce, PKCE verifier, redirect URI) is the request's ``auth_state``. The callback
    deletes the row (compare-and-set: one use); an unused one is deleted when it has
    expired. Nothing personal: hashes, an id, a sealed token, times.
    """

    __tablename__ = "oidc_states"
    __table_args__ = (Index("ix_oidc_states_request_id", "request_id"),)

    state_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("signing_requests.id", ondelete="CASCADE"))
    #: The pre-auth cookie's SHA-256 (as ``SigningRequest.auth_binding`` at the start).
    binding_hash: Mapped[str] = mapped_column(String(64))
    link_sealed: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())


class RosterOverride(Base):
    """ "Who is on call" changed for a period: this person first, for this municipality."""

    __tablename__ = "roster_overrides"
    __table_args__ = (Index("ix_roster_overrides_municipality_id", "municipality_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    municipality_id: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[str] = mapped_column(String(MATRIX_ID_LENGTH))
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime())
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_by: Mapped[str] = mapped_column(String(MATRIX_ID_LENGTH))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class DirectRoom(Base):
    """The bot's encrypted direct room with a person (reused for every alert)."""

    __tablename__ = "direct_rooms"

    user_id: Mapped[str] = mapped_column(String(MATRIX_ID_LENGTH), primary_key=True)
    room_id: Mapped[str] = mapped_column(String(MATRIX_ID_LENGTH))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class EscalationStep(Base):
    """One thing due while a decision waits: a policy step, a channel, a link's expiry.

    The database is the truth; scheduler jobs only wake the bot at ``due_at``. A step
    is claimed with compare-and-set (``pending`` -> ``done``) before it acts, so a job
    that runs twice, or a job and the periodic check together, act once.

    ``kind`` is ``policy`` (``action``: remind, next_signer, alert_leads, repeat),
    ``channel`` (``action``: matrix, sms, call, email; for ``user_id`` under
    ``request_id``) or ``expire`` (the link of ``request_id``).
    """

    __tablename__ = "escalation_steps"
    __table_args__ = (
        Index("ix_escalation_steps_case_id", "case_id"),
        Index("ix_escalation_steps_status_due_at", "status", "due_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"))
    request_id: Mapped[int | None] = mapped_column(
        ForeignKey("signing_requests.id", ondelete="CASCADE")
    )
    kind: Mapped[str] = mapped_column(String(16))
    action: Mapped[str] = mapped_column(String(32))
    seq: Mapped[int] = mapped_column(Integer)
    user_id: Mapped[str | None] = mapped_column(String(MATRIX_ID_LENGTH))
    due_at: Mapped[datetime] = mapped_column(UTCDateTime())
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    fired_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class InstanceLock(Base):
    """Which process runs the scheduler on this database (one at a time).

    Held while ``heartbeat_at`` is fresh; a holder on this host whose process is gone
    is taken over at once, any other only after its heartbeat has gone stale.
    """

    __tablename__ = "instance_locks"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    holder: Mapped[str] = mapped_column(String(64))
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    acquired_at: Mapped[datetime] = mapped_column(UTCDateTime())
    heartbeat_at: Mapped[datetime] = mapped_column(UTCDateTime())


class AlertEvent(Base):
    """A Matrix alert or reminder sent for a signing request (a ✅ on any of them
    acknowledges the request)."""

    __tablename__ = "alert_events"
    __table_args__ = (Index("ix_alert_events_request_id", "request_id"),)

    event_id: Mapped[str] = mapped_column(String(MATRIX_ID_LENGTH), primary_key=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("signing_requests.id", ondelete="CASCADE"))
    sent_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Execution(Base):
    """The record that a signed decision was carried out (``!verkställt``, issue 9 §2).

    ``state`` is the dialogue engine's JSON, as for the report: the answers hold
    personal data and live here and in the encrypted case room only, never in logs or
    the audit trail. ``version`` is bumped on every save (compare-and-set).
    ``recorded_at`` is set once the worker confirms; ``executed_at`` is the time of
    execution they answered, which starts the clocks that count from it (8 § LVU),
    and ``record`` the frozen answers the execution record's PDF is made from.
    """

    __tablename__ = "executions"

    case_id: Mapped[int] = mapped_column(
        ForeignKey("cases.id", ondelete="CASCADE"), primary_key=True
    )
    form_id: Mapped[str] = mapped_column(String(64))
    form_version: Mapped[int] = mapped_column(Integer)
    state: Mapped[dict[str, Any]] = mapped_column(JSON)
    version: Mapped[int] = mapped_column(Integer)
    started_by: Mapped[str] = mapped_column(String(MATRIX_ID_LENGTH))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    executed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    recorded_by: Mapped[str | None] = mapped_column(String(MATRIX_ID_LENGTH))
    recorded_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    record: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class Handover(Base):
    """A case handed over to its home municipality's intake room (``!överlämna``).

    Each part of the delivery is recorded once it is out (the documents in
    :class:`HandoverDocument`, then the message to the intake members, then the
    case room's notice), so a crash in between is finished by the periodic repair
    with the same idempotency keys. Until ``received_at`` (``!mottaget``), the intake
    room is reminded each working morning: ``reminders`` counts those sent and
    ``next_reminder_at`` says when the next is due.
    """

    __tablename__ = "handovers"
    __table_args__ = (
        Index("ix_handovers_message_event_id", "message_event_id"),
        Index("ix_handovers_received_at", "received_at"),
    )

    case_id: Mapped[int] = mapped_column(
        ForeignKey("cases.id", ondelete="CASCADE"), primary_key=True
    )
    municipality_id: Mapped[str] = mapped_column(String(64))
    room_id: Mapped[str] = mapped_column(String(MATRIX_ID_LENGTH))
    requested_by: Mapped[str] = mapped_column(String(MATRIX_ID_LENGTH))
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime())
    message_event_id: Mapped[str | None] = mapped_column(String(MATRIX_ID_LENGTH))
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    announced_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    received_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    received_by: Mapped[str | None] = mapped_column(String(MATRIX_ID_LENGTH))
    #: When the case room was told of the acknowledgement.
    receipt_posted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    reminders: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    next_reminder_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_reminder_event_id: Mapped[str | None] = mapped_column(String(MATRIX_ID_LENGTH))


class HandoverDocument(Base):
    """One attachment of a handover, kept as sent (personal data: deleted with the case's
    content at retention) with its SHA-256 and, once posted, its event."""

    __tablename__ = "handover_documents"

    case_id: Mapped[int] = mapped_column(
        ForeignKey("handovers.case_id", ondelete="CASCADE"), primary_key=True
    )
    part: Mapped[str] = mapped_column(String(16), primary_key=True)
    position: Mapped[int] = mapped_column(Integer)
    filename: Mapped[str] = mapped_column(String(200))
    data: Mapped[bytes] = mapped_column(LargeBinary)
    sha256: Mapped[str] = mapped_column(String(64))
    event_id: Mapped[str | None] = mapped_column(String(MATRIX_ID_LENGTH))
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class CaseRecord(Base):
    """A report sealed as the worker's own record: a form whose ``signer`` is "none"
    (a skyddsbedömning), documented, not decided, so no signing request is made.

    One per case (the case then stays ``recorded``). The PDF holds personal data, like a
    signed decision. ``file_posted_at`` and ``posted_at`` say that the PDF and then its
    announcement are in the case room; a crash in between is finished at start-up
    with the same idempotency keys.
    """

    __tablename__ = "case_records"

    case_id: Mapped[int] = mapped_column(
        ForeignKey("cases.id", ondelete="CASCADE"), primary_key=True
    )
    form_id: Mapped[str] = mapped_column(String(64))
    recorded_by: Mapped[str] = mapped_column(String(MATRIX_ID_LENGTH))
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime())
    document: Mapped[bytes] = mapped_column(LargeBinary)
    sha256: Mapped[str] = mapped_column(String(64))
    file_posted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    posted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class Deadline(Base):
    """One legal deadline of a case: a clock a template's ``[[deadlines]]`` declares.

    Written for every deadline of the case's form when the first clock starts (the
    signature), ``waiting`` until its own trigger happens (the execution, the court's
    decision), then ``running`` until it is ``done`` (its act marked) or ``void`` (the
    court revoked the custody, so the clock never starts or no longer matters). The
    rule is copied from the template, so a later edit of the template does not move a
    running clock. ``due_on`` is the last day as the law counts it, unextended;
    ``outer_limit`` is that day moved to the next working day (lag (1930:173) 2 §).
    ``due_on`` is NULL while waiting, and for a next-meeting deadline while no meeting
    date is known. The reminder state makes the sweep send each reminder once.
    """

    __tablename__ = "deadlines"
    __table_args__ = (
        UniqueConstraint("case_id", "name"),
        Index("ix_deadlines_status", "status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(64))
    trigger: Mapped[str] = mapped_column(String(16))
    rule: Mapped[str] = mapped_column(String(32))
    actor: Mapped[str] = mapped_column(String(16))
    act: Mapped[str] = mapped_column(String(16))
    ends_if_revoked: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str] = mapped_column(String(16))
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    due_on: Mapped[date | None] = mapped_column(Date)
    outer_limit: Mapped[date | None] = mapped_column(Date)
    done_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    done_by: Mapped[str | None] = mapped_column(String(MATRIX_ID_LENGTH))
    #: How it ended: the command (``underställt`` ...), ``court`` or ``revoked``.
    done_via: Mapped[str | None] = mapped_column(String(32))
    #: When the running clock was announced in the case room and the actor's room.
    announced_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    #: The planned moment of the last reminder sent (the next one is the first after it).
    last_reminder_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    #: The Swedish day the last "missed" alert went out (one a day until done).
    missed_alerted_on: Mapped[date | None] = mapped_column(Date)
    #: When the duty leads were told that no meeting date is known (once).
    no_meeting_told_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    #: The latest message about it in the room of whoever acts: a reply to it means it.
    last_event_id: Mapped[str | None] = mapped_column(String(MATRIX_ID_LENGTH))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class CourtDecision(Base):
    """The court's decision on an immediate custody after underställning, as recorded
    with ``!rättens beslut``: upheld (the custody continues) or revoked. One per case."""

    __tablename__ = "court_decisions"

    case_id: Mapped[int] = mapped_column(
        ForeignKey("cases.id", ondelete="CASCADE"), primary_key=True
    )
    decided_on: Mapped[date] = mapped_column(Date)
    #: "upheld" or "revoked".
    outcome: Mapped[str] = mapped_column(String(16))
    recorded_by: Mapped[str] = mapped_column(String(MATRIX_ID_LENGTH))
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime())
