"""The audit trail as a hash chain: append-only, every row chained to the one before.

Each row of ``audit_entries`` carries ``seq`` (1, 2, 3 ... across the installation,
no gaps), ``prev_hash`` (the ``hash`` of row ``seq - 1``; :data:`GENESIS_HASH` for
the first) and ``hash``: the SHA-256 of the canonical encoding of (seq, case_id,
at, actor, action, detail, prev_hash), see :func:`canonical`. Changing, deleting,
inserting or reordering a row breaks the chain at that row, which
:func:`verify` finds and names. The newest (seq, hash) is also kept in
``bot_state`` under :data:`HEAD_KEY`, so rows cut off the end are found too.

Only non-personal fields are hashed and ``detail`` never holds personal data, so
deleting a case's personal data (retention) never touches the chain.

How a row gets its place: :func:`append` keeps the row with the session, and the
row is written when the transaction commits (a ``before_commit`` hook): the hook
locks the head (``SELECT ... FOR UPDATE`` of the ``bot_state`` row on PostgreSQL;
SQLite has the write lock from ``BEGIN IMMEDIATE`` already, see :mod:`storage.db`),
numbers and hashes the transaction's rows after it, inserts them and moves the
head. Two transactions can therefore never chain to the same row (a unique ``seq``
backs that up); a transaction's rows stay together; and the lock is held only for
the last moment of a transaction, after it has taken every other lock it needs,
so it cannot take part in a deadlock. A rolled-back transaction writes no row and
leaves no gap.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, event, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session, SessionTransaction

from storage.models import (
    AuditEntry,
    BotState,
    Case,
    CaseRecord,
    HandoverDocument,
    SigningRequest,
)
from storage.prepared import Insert, prepared, table_of

#: ``prev_hash`` of the first row of an installation.
GENESIS_HASH = "0" * 64
#: ``bot_state`` key of the chain's newest (seq, hash), as JSON.
HEAD_KEY = "audit.head"
#: Marks a session that appended rows still to be chained at its commit.
_PENDING = "socialjour.audit.pending"

# --- the vocabulary ------------------------------------------------------------------------
# Every action written to the trail, in one place, with its ``detail`` keys. None of
# them may hold personal data: no names, personal identity numbers, answers or free
# text, only numbers, ids and codes. Callers write ``repo.add_audit(session,
# case_id=..., actor=..., action=audit.HANDOVER_SENT, now=now, detail={...})``.
# The words ``!logg`` shows are ``audit.action.<action>`` in handlers/i18n_audit.py.

#: ``!ny`` opened the case. detail: number (the case number).
CASE_CREATED = "case.created"
#: The encrypted case room was created.
ROOM_CREATED = "room.created"
#: ``status.<new>``: a move of the case state machine. detail: from (the old status).
STATUS_PREFIX = "status."
#: A report question answered. detail: question (its number), field (the field's id).
ANSWER_GIVEN = "answer.given"
#: An answer replaced (``!ändra N``, an edited message). detail as answer.given.
ANSWER_CHANGED = "answer.changed"
#: ``!skicka`` froze the report. detail: form, form_version, answers (how many).
REPORT_SUBMITTED = "report.submitted"
#: The decision PDF rendered for one signer to review. detail: request, sha256.
DOCUMENT_RENDERED = "document.rendered"
#: A signing request with its link was made. detail: request, signer (a Matrix id).
SIGNATURE_REQUESTED = "signature.requested"
#: ``!skicka om``: the old links were closed. detail: closed (request ids).
SIGNATURE_RESENT = "signature.resent"
#: The link reached the signer. detail: request, channel (matrix | sms | call | email).
LINK_SENT = "link.sent"
#: The signing page was opened (once per link, visitor and period). detail: request,
#: identified (whether the visitor had identified).
LINK_OPENED = "link.opened"
#: Identification began on the signing page. detail: request, method.
IDENTIFICATION_STARTED = "identification.started"
#: Identification completed: the signer is who the link is for. detail: request, method.
SIGNER_IDENTIFIED = "signer.identified"
#: The identified signer fetched the decision PDF. detail: request, signed (bool).
DOCUMENT_DOWNLOADED = "document.downloaded"
#: The decision was signed and sealed. detail: request, sha256 (of the sealed PDF).
DECISION_SIGNED = "decision.signed"
#: The decision-maker declined. detail: request.
DECISION_DECLINED = "decision.declined"
#: A form nobody signs (signer = "none") was sealed as the worker's record. detail: form,
#: sha256 (of the sealed PDF).
RECORD_SEALED = "record.sealed"
#: An escalation policy step was carried out. detail: step (id), action.
ESCALATION_STEP = "escalation.step"
#: ``!verkställt``: the decision was carried out (the record itself is not here).
EXECUTION_RECORDED = "execution.recorded"
#: ``!överlämna``: the package went to the intake room. detail: municipality, files.
HANDOVER_SENT = "handover.sent"
#: ``!mottaget``: an intake member acknowledged the handover (the actor).
HANDOVER_RECEIVED = "handover.received"
#: The intake room was reminded of an unacknowledged handover. detail: reminder (count).
HANDOVER_REMINDED = "handover.reminded"
#: A legal clock started. detail: deadline (its name in the template), due (ISO date).
DEADLINE_STARTED = "deadline.started"
#: ``!underställt``, ``!ansökt``, ``!anmält``: a deadline's act marked done. detail: deadline.
DEADLINE_MARKED = "deadline.marked"
#: A deadline passed without being marked. detail: deadline.
DEADLINE_MISSED = "deadline.missed"
#: ``!rättens beslut``: the court's decision. detail: outcome (upheld | revoked), date.
COURT_DECISION = "court.decision"
#: The case was closed and its room made read-only.
CASE_ARCHIVED = "case.archived"
#: Retention deleted the case's personal data (the trail stays). detail: what (kinds).
PERSONAL_DATA_DELETED = "retention.deleted"
#: ``!logg`` showed the trail in the case room. detail: shown (rows).
TRAIL_VIEWED = "trail.viewed"
#: ``socialjour audit export`` wrote the case file. detail: none.
TRAIL_EXPORTED = "trail.exported"

#: The fixed actions; ``status.<new>`` comes in addition, one per case status.
ACTIONS: frozenset[str] = frozenset(
    {
        CASE_CREATED,
        ROOM_CREATED,
        ANSWER_GIVEN,
        ANSWER_CHANGED,
        REPORT_SUBMITTED,
        DOCUMENT_RENDERED,
        SIGNATURE_REQUESTED,
        SIGNATURE_RESENT,
        LINK_SENT,
        LINK_OPENED,
        IDENTIFICATION_STARTED,
        SIGNER_IDENTIFIED,
        DOCUMENT_DOWNLOADED,
        DECISION_SIGNED,
        DECISION_DECLINED,
        RECORD_SEALED,
        ESCALATION_STEP,
        EXECUTION_RECORDED,
        HANDOVER_SENT,
        HANDOVER_RECEIVED,
        HANDOVER_REMINDED,
        DEADLINE_STARTED,
        DEADLINE_MARKED,
        DEADLINE_MISSED,
        COURT_DECISION,
        CASE_ARCHIVED,
        PERSONAL_DATA_DELETED,
        TRAIL_VIEWED,
        TRAIL_EXPORTED,
    }
)

#: Who acts when no person does: the bot itself, and an unidentified visitor of a link.
BOT_ACTOR = "socialjour"
WEB_ACTOR = "web"


def cli_actor(os_user: str) -> str:
    """The actor of a command-line access (``cli:<os user>``)."""
    return f"cli:{os_user}"


def is_known(action: str) -> bool:
    return action in ACTIONS or action.startswith(STATUS_PREFIX)


# --- the format -----------------------------------------------------------------------------


def utc_iso(moment: datetime) -> str:
    """A UTC timestamp with microseconds, the one way a time is hashed."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical(
    *,
    seq: int,
    case_id: int | None,
    at: datetime,
    actor: str,
    action: str,
    detail: Any,
    prev_hash: str,
) -> bytes:
    """The bytes a row's hash is taken over: JSON with sorted keys, no spaces and
    every non-ASCII character escaped (``\\u00e4``), so the bytes are plain ASCII."""
    body = {
        "seq": seq,
        "case_id": case_id,
        "at": utc_iso(at),
        "actor": actor,
        "action": action,
        "detail": detail,
        "prev_hash": prev_hash,
    }
    encoded = json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return encoded.encode("ascii")


def entry_hash(**fields: Any) -> str:
    return hashlib.sha256(canonical(**fields)).hexdigest()


def _head_value(seq: int, digest: str) -> str:
    return json.dumps({"seq": seq, "hash": digest})


def _parse_head(value: str | None) -> tuple[int, str] | None:
    if value is None:
        return None
    try:
        parsed = json.loads(value)
        return int(parsed["seq"]), str(parsed["hash"])
    except (ValueError, KeyError, TypeError):
        return None


# --- appending ----------------------------------------------------------------------------


def normalise_detail(detail: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """``detail`` as the database gives it back (tuples become lists), so the hash
    taken at commit and the one :func:`verify` takes agree; refuses what JSON cannot
    hold (a datetime, a NaN) at once rather than at commit."""
    if detail is None:
        return None
    result: dict[str, Any] = json.loads(json.dumps(dict(detail), allow_nan=False))
    return result


def _pending(session: Session) -> list[tuple[AuditEntry, SessionTransaction | None]]:
    found: list[tuple[AuditEntry, SessionTransaction | None]] = session.info.setdefault(
        _PENDING, []
    )
    return found


async def append(
    session: AsyncSession,
    *,
    case_id: int | None,
    actor: str,
    action: str,
    now: datetime,
    detail: Mapping[str, Any] | None = None,
) -> AuditEntry:
    """Add a row to the trail in the caller's transaction.

    The row is written when the transaction commits, in its place in the chain (so
    ``id``, ``seq`` and ``hash`` are set on the returned object only then); a
    transaction that rolls back writes none of its rows.
    """
    entry = AuditEntry(
        case_id=case_id, at=now, actor=actor, action=action, detail=normalise_detail(detail)
    )
    sync = session.sync_session
    _pending(sync).append((entry, sync.get_nested_transaction() or sync.get_transaction()))
    return entry


async def append_unless_recent(
    session: AsyncSession,
    *,
    case_id: int | None,
    actor: str,
    action: str,
    now: datetime,
    detail: Mapping[str, Any],
    within: timedelta,
) -> AuditEntry | None:
    """Append, unless the same (case, actor, action, detail) was written within
    ``within`` before ``now``: an event a visitor can repeat at will (reloading a
    page) is recorded once per period, never once per request. The chain's lock is
    taken first, so two requests at once also write one row."""
    await session.run_sync(_lock_head)
    wanted = normalise_detail(detail)
    since = now - within
    recent = await session.scalars(
        select(AuditEntry.detail).where(
            AuditEntry.case_id == case_id if case_id is not None else AuditEntry.case_id.is_(None),
            AuditEntry.actor == actor,
            AuditEntry.action == action,
            AuditEntry.at > since,
            AuditEntry.at <= now,
        )
    )
    waiting = [
        entry.detail
        for entry, _ in _pending(session.sync_session)
        if (entry.case_id, entry.actor, entry.action) == (case_id, actor, action)
        and since < entry.at <= now
    ]
    if any(found == wanted for found in [*recent, *waiting]):
        return None
    return await append(
        session, case_id=case_id, actor=actor, action=action, now=now, detail=wanted
    )


def _insert_for(session: Session) -> Any:
    return postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert


def _lock_head(session: Session) -> tuple[int, str]:
    """Lock the chain's head for this transaction and return it (seq, hash).

    A missing head (its row deleted) is made again from the newest row, so the bot
    goes on writing; that it was missing is what :func:`verify` reports.
    """
    query = prepared(session, _head_statement)
    head = _parse_head(session.scalar(query))
    if head is not None:
        return head
    last = session.execute(
        select(AuditEntry.seq, AuditEntry.hash).order_by(AuditEntry.seq.desc()).limit(1)
    ).first()
    seq, digest = (int(last.seq), str(last.hash)) if last is not None else (0, GENESIS_HASH)
    session.execute(
        _insert_for(session)(BotState)
        .values(key=HEAD_KEY, value=_head_value(seq, digest))
        .on_conflict_do_nothing(index_elements=["key"])
    )
    return _parse_head(session.scalar(query)) or (seq, digest)


def _chain(session: Session, entries: list[AuditEntry]) -> None:
    """Give the transaction's rows their places after the head, write them and move
    the head: three statements, whatever the number of rows."""
    seq, prev = _lock_head(session)
    for entry in entries:
        seq += 1
        entry.seq, entry.prev_hash = seq, prev
        entry.hash = prev = entry_hash(
            seq=seq,
            case_id=entry.case_id,
            at=entry.at,
            actor=entry.actor,
            action=entry.action,
            detail=entry.detail,
            prev_hash=entry.prev_hash,
        )
    insert = prepared(session, _insert_entry_statement)
    for entry in entries:
        entry.id = session.execute(
            insert,
            {
                "b_case": entry.case_id,
                "b_at": entry.at,
                "b_actor": entry.actor,
                "b_action": entry.action,
                "b_detail": entry.detail,
                "b_seq": entry.seq,
                "b_prev": entry.prev_hash,
                "b_hash": entry.hash,
            },
        ).scalar_one()
    session.execute(prepared(session, _move_head_statement), {"b_value": _head_value(seq, prev)})


# The chain's statements run at every commit that writes the trail (an answer's, say):
# built once (storage.prepared), in Core, not through the ORM's flush.


def _head_statement(_insert: Insert) -> Any:
    table = table_of(BotState)
    return select(table.c.value).where(table.c.key == HEAD_KEY).with_for_update()


def _insert_entry_statement(insert: Insert) -> Any:
    table = table_of(AuditEntry)
    return (
        insert(table)
        .values(
            case_id=bindparam("b_case"),
            at=bindparam("b_at"),
            actor=bindparam("b_actor"),
            action=bindparam("b_action"),
            detail=bindparam("b_detail"),
            seq=bindparam("b_seq"),
            prev_hash=bindparam("b_prev"),
            hash=bindparam("b_hash"),
        )
        .returning(table.c.id)
    )


def _move_head_statement(_insert: Insert) -> Any:
    table = table_of(BotState)
    return update(table).where(table.c.key == HEAD_KEY).values(value=bindparam("b_value"))


@event.listens_for(Session, "before_commit")
def _chain_before_commit(session: Session) -> None:
    pending = session.info.pop(_PENDING, None)
    if pending:
        _chain(session, [entry for entry, _ in pending])


@event.listens_for(Session, "after_soft_rollback")
def _forget_rolled_back(session: Session, previous: SessionTransaction) -> None:
    """Rows written inside a SAVEPOINT that rolled back are dropped with it."""
    pending = session.info.get(_PENDING)
    if not pending:
        return

    def inside(transaction: SessionTransaction | None) -> bool:
        while transaction is not None:
            if transaction is previous:
                return True
            transaction = transaction.parent
        return previous.parent is None  # (a row written before the session began)

    pending[:] = [(entry, txn) for entry, txn in pending if not inside(txn)]


@event.listens_for(Session, "after_transaction_end")
def _forget_at_the_end(session: Session, transaction: SessionTransaction) -> None:
    """Whatever a session's transaction did not commit (rolled back, or the session
    closed) is not written later by another."""
    if transaction.parent is None:
        session.info.pop(_PENDING, None)


# --- verifying ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Break:
    """The first place the chain does not hold."""

    kind: str  # hash_mismatch | gap | broken_link | head
    message: str
    seq: int | None = None
    entry_id: int | None = None
    at: datetime | None = None


@dataclass(frozen=True, slots=True)
class ChainCheck:
    count: int
    head_seq: int
    head_hash: str
    first_break: Break | None

    @property
    def ok(self) -> bool:
        return self.first_break is None


_ROW = (
    AuditEntry.id,
    AuditEntry.seq,
    AuditEntry.case_id,
    AuditEntry.at,
    AuditEntry.actor,
    AuditEntry.action,
    AuditEntry.detail,
    AuditEntry.prev_hash,
    AuditEntry.hash,
)


async def _snapshot(session: AsyncSession) -> None:
    """One consistent view of rows and head while the bot goes on writing."""
    if session.get_bind().dialect.name == "postgresql":
        await session.connection(execution_options={"isolation_level": "REPEATABLE READ"})


def _check_row(row: Any, expected_seq: int, expected_prev: str) -> Break | None:
    where = {"seq": row.seq, "entry_id": row.id, "at": row.at}
    recomputed = entry_hash(
        seq=row.seq,
        case_id=row.case_id,
        at=row.at,
        actor=row.actor,
        action=row.action,
        detail=row.detail,
        prev_hash=row.prev_hash,
    )
    if recomputed != row.hash:
        return Break(
            "hash_mismatch", "hash mismatch: the row was changed after it was written", **where
        )
    if row.seq != expected_seq:
        missing = (
            f"seq {expected_seq}"
            if row.seq == expected_seq + 1
            else f"seq {expected_seq}-{row.seq - 1}"
        )
        return Break("gap", f"gap: {missing} missing before this row (rows deleted)", **where)
    if row.prev_hash != expected_prev:
        return Break(
            "broken_link",
            f"broken link: prev_hash is not the hash of seq {expected_seq - 1}",
            **where,
        )
    return None


async def verify(session: AsyncSession) -> ChainCheck:
    """Check the whole chain, oldest first, and name the first row where it breaks.

    Run it in a transaction of its own (``async with session.begin()``): on
    PostgreSQL it reads one snapshot, so rows committed meanwhile do not count.
    """
    await _snapshot(session)
    head = _parse_head(await session.scalar(select(BotState.value).where(BotState.key == HEAD_KEY)))
    count, prev_seq, prev_hash = 0, 0, GENESIS_HASH
    first: Break | None = None
    result = await session.stream(
        select(*_ROW).order_by(AuditEntry.seq).execution_options(yield_per=500)
    )
    async for row in result:
        count += 1
        if first is None:
            first = _check_row(row, prev_seq + 1, prev_hash)
        prev_seq, prev_hash = int(row.seq), str(row.hash)
    if first is None:
        first = _check_head(head, prev_seq, prev_hash)
    head_seq, head_hash = head if head is not None else (prev_seq, prev_hash)
    return ChainCheck(count, head_seq, head_hash, first)


def _check_head(head: tuple[int, str] | None, last_seq: int, last_hash: str) -> Break | None:
    if head is None:
        if last_seq == 0:
            return None
        return Break("head", f"the chain head ({HEAD_KEY}) is missing", seq=last_seq)
    head_seq, head_hash = head
    if head_seq > last_seq:
        return Break(
            "head",
            f"rows missing at the end: the chain ends at seq {last_seq}, its head says {head_seq}",
            seq=last_seq + 1,
        )
    if head_seq < last_seq:
        return Break(
            "head",
            f"rows after the head: the head says seq {head_seq}, the chain goes to {last_seq}",
            seq=head_seq + 1,
        )
    if head_hash != last_hash:
        return Break("head", "the last row is not the one the chain head recorded", seq=last_seq)
    return None


# --- reading --------------------------------------------------------------------------------


async def case_trail(session: AsyncSession, *, case_id: int) -> list[AuditEntry]:
    """The rows of one case in chain order."""
    rows = await session.scalars(
        select(AuditEntry).where(AuditEntry.case_id == case_id).order_by(AuditEntry.seq)
    )
    return list(rows)


async def by_actor(
    session: AsyncSession, *, actor: str, since: datetime | None = None
) -> list[tuple[AuditEntry, str | None]]:
    """What ``actor`` opened and did (loggkontroll), oldest first, with case numbers."""
    query = (
        select(AuditEntry, Case.number)
        .outerjoin(Case, Case.id == AuditEntry.case_id)
        .where(AuditEntry.actor == actor)
        .order_by(AuditEntry.at, AuditEntry.id)
    )
    if since is not None:
        query = query.where(AuditEntry.at >= since)
    return [(entry, number) for entry, number in (await session.execute(query)).all()]


async def case_documents(session: AsyncSession, case_id: int) -> list[tuple[str, bytes]]:
    """Every document the bot holds for the case, as (file name, bytes), for the case
    file: each decision as reviewed (unsigned) and, once signed, as sealed.

    The one place the case file's documents are gathered: a part that stores more
    (the handover package, the execution record) adds its query here.
    """
    requests = await session.scalars(
        select(SigningRequest).where(SigningRequest.case_id == case_id).order_by(SigningRequest.id)
    )
    documents: list[tuple[str, bytes]] = []
    for request in requests:
        if request.document:
            documents.append((f"decision-{request.id}-unsigned.pdf", request.document))
        if request.signed_document:
            # A declined request's sealed document is the refusal (a decision too).
            sealed = "signed" if request.status == "signed" else "refusal"
            documents.append((f"decision-{request.id}-{sealed}.pdf", request.signed_document))
    # A form nobody signs: the report sealed as the worker's record (issue 9 §1).
    record = await session.get(CaseRecord, case_id)
    if record is not None and record.document:
        documents.append(("record-sealed.pdf", record.document))
    # The handover package as sent to the home municipality (issue 9 §2); the decision
    # and the record in it are the ones above.
    sent = await session.scalars(
        select(HandoverDocument)
        .where(HandoverDocument.case_id == case_id)
        .order_by(HandoverDocument.position)
    )
    documents += [
        (f"handover-{d.part}.pdf", d.data)
        for d in sent
        if d.part not in ("decision", "record") and d.data  # emptied at retention: gone
    ]
    return documents


async def case_identifications(
    session: AsyncSession, case_id: int
) -> list[tuple[int, dict[str, Any]]]:
    """(signing request id, full identification record) for every identified signer
    of the case: the record whose digest the sealed PDF names (the PDF carries only
    a summary, see ``signing/evidence.py``). Emptied at retention, like the documents."""
    requests = await session.scalars(
        select(SigningRequest).where(SigningRequest.case_id == case_id).order_by(SigningRequest.id)
    )
    return [(request.id, dict(request.identity)) for request in requests if request.identity]
