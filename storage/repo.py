"""Reading and writing Socialjour's tables.

Every function takes the caller's `AsyncSession` first and everything else by
keyword. They flush but never commit: the caller opens one session per unit of
work and decides when it is done, so a command that creates a case, writes the
audit trail and records the room either happens completely or not at all.

Where two actors can race (the same Matrix event delivered twice, two workers
opening cases at once, two people moving one case), the function is written so
the database settles the race: upserts with ON CONFLICT and compare-and-set
UPDATEs, never read-then-write in Python.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import CursorResult, Result, Row, bindparam, delete, exists, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import joinedload
from sqlalchemy.orm.util import identity_key

from storage import audit
from storage.errors import CaseNotFoundError, UnsupportedDatabaseError
from storage.models import (
    AuditEntry,
    BotState,
    Case,
    CaseParticipant,
    CaseSequence,
    ProcessedEvent,
    Report,
    TrustedMasterKey,
)
from storage.prepared import Insert, prepared, table_of

#: The role of the worker who opened a case.
CREATOR_ROLE = "worker"
#: Longest case-number prefix (the column holds 16 characters).
MAX_PREFIX_LENGTH = 16

_Insert = sqlite.Insert | postgresql.Insert


def _insert(session: AsyncSession, entity: type[Any]) -> _Insert:
    """INSERT with ON CONFLICT support for the database behind `session`."""
    dialect = session.get_bind().dialect.name
    if dialect == "sqlite":
        return sqlite.insert(entity)
    if dialect == "postgresql":
        return postgresql.insert(entity)
    raise UnsupportedDatabaseError(f"no upsert support for {dialect!r}")


def _rowcount(result: Result[Any]) -> int:
    """Rows matched by an INSERT/UPDATE/DELETE (the typing says Result, the object is a cursor)."""
    return cast("CursorResult[Any]", result).rowcount


async def _require_case(session: AsyncSession, case_id: int) -> None:
    found = await session.scalar(select(Case.id).where(Case.id == case_id))
    if found is None:
        raise CaseNotFoundError(case_id)


async def _update_case(session: AsyncSession, case_id: int, **values: Any) -> None:
    """UPDATE one case by id, keeping an already loaded `Case` object in step."""
    result = await session.execute(
        update(Case)
        .where(Case.id == case_id)
        .values(**values)
        .execution_options(synchronize_session="fetch")
    )
    if _rowcount(result) == 0:
        raise CaseNotFoundError(case_id)


# --- bot state -------------------------------------------------------------------------


async def get_state(session: AsyncSession, *, key: str) -> str | None:
    """The value stored under `key`, or None if it was never set."""
    return await session.scalar(prepared(session, _get_state_statement), {"key": key})


def _get_state_statement(_insert: Insert) -> Any:
    table = table_of(BotState)
    return select(table.c.value).where(table.c.key == bindparam("key"))


async def set_state(session: AsyncSession, *, key: str, value: str) -> None:
    """Store `value` under `key`, replacing any earlier value."""
    await session.execute(prepared(session, _set_state_statement), {"b_key": key, "b_value": value})


def _set_state_statement(insert: Insert) -> Any:
    stmt = insert(table_of(BotState)).values(key=bindparam("b_key"), value=bindparam("b_value"))
    return stmt.on_conflict_do_update(index_elements=["key"], set_={"value": stmt.excluded.value})


# --- event dedupe ----------------------------------------------------------------------


async def claim_event(session: AsyncSession, *, event_id: str, room_id: str, now: datetime) -> bool:
    """Mark `event_id` handled; True only for the first caller ever to claim it.

    Matrix may deliver an event again (a restart, a re-sync, a back-fill); acting on
    it twice could open two cases. The event is usually waiting in the inbox as
    ``pending`` (see :func:`store_events`); claiming turns it ``done`` and drops its
    payload. An event that never went through the inbox is inserted ``done``. The
    upsert's WHERE lets the database pick exactly one winner. Claim in the same
    transaction as the change the event causes: if that rolls back, so does the claim.
    """
    result = await session.execute(
        prepared(session, _claim_statement),
        {"b_event": event_id, "b_room": room_id, "b_now": now},
    )
    return _rowcount(result) == 1


def _claim_statement(insert: Insert) -> Any:
    table = table_of(ProcessedEvent)
    stmt = insert(table).values(
        event_id=bindparam("b_event"),
        room_id=bindparam("b_room"),
        processed_at=bindparam("b_now"),
        state="done",
        payload=None,
    )
    return stmt.on_conflict_do_update(
        index_elements=["event_id"],
        set_={"state": "done", "payload": None, "processed_at": stmt.excluded.processed_at},
        where=table.c.state == "pending",
    )


async def store_events(
    session: AsyncSession, *, events: Sequence[tuple[str, str, int, dict[str, Any]]], now: datetime
) -> int:
    """Put (event id, room id, position, payload) rows into the inbox as ``pending``.

    An event already there (pending or done) is left alone, so a re-delivered event
    is never handled twice. Returns how many were new.
    """
    added = 0
    statement = prepared(session, _store_statement)
    for event_id, room_id, position, payload in events:
        values = {
            "b_event": event_id,
            "b_room": room_id,
            "b_now": now,
            "b_position": position,
            "b_payload": payload,
        }
        added += _rowcount(await session.execute(statement, values))
    return added


def _store_statement(insert: Insert) -> Any:
    return (
        insert(table_of(ProcessedEvent))
        .values(
            event_id=bindparam("b_event"),
            room_id=bindparam("b_room"),
            processed_at=bindparam("b_now"),
            state="pending",
            position=bindparam("b_position"),
            payload=bindparam("b_payload"),
        )
        .on_conflict_do_nothing(index_elements=["event_id"])
    )


async def known_events(session: AsyncSession, *, event_ids: Collection[str]) -> set[str]:
    """Which of `event_ids` the inbox has seen (pending or done)."""
    if not event_ids:
        return set()
    rows = await session.scalars(
        select(ProcessedEvent.event_id).where(ProcessedEvent.event_id.in_(list(event_ids)))
    )
    return set(rows)


async def pending_events(
    session: AsyncSession, *, room_id: str | None = None
) -> list[ProcessedEvent]:
    """Events waiting for their handler, oldest first (one room, or all)."""
    query = select(ProcessedEvent).where(ProcessedEvent.state == "pending")
    if room_id is not None:
        query = query.where(ProcessedEvent.room_id == room_id)
    rows = await session.scalars(query.order_by(ProcessedEvent.position, ProcessedEvent.event_id))
    return list(rows)


async def prune_events(session: AsyncSession, *, older_than: datetime) -> int:
    """Forget events handled before `older_than`; returns how many were forgotten.

    Only safe for events the homeserver will no longer send again, so keep a wide
    margin. Pending events are never forgotten.
    """
    result = await session.execute(
        delete(ProcessedEvent)
        .where(ProcessedEvent.processed_at < older_than, ProcessedEvent.state == "done")
        .execution_options(synchronize_session=False)
    )
    return _rowcount(result)


# --- cases -----------------------------------------------------------------------------


def _check_prefix(prefix: str) -> None:
    if not prefix or len(prefix) > MAX_PREFIX_LENGTH or not prefix.isalnum():
        raise ValueError(f"case number prefix must be 1-{MAX_PREFIX_LENGTH} letters or digits")


async def next_case_number(session: AsyncSession, *, prefix: str, year: int) -> str:
    """Take the next case number for `prefix` and `year`, e.g. "SJ-2026-0042".

    Numbers start at 1 each year and are never handed out twice: the increment is
    one UPDATE ... RETURNING, which the database serialises, and the number is
    returned to the pool only if the caller's unit of work rolls back.
    Past 9999 the number simply grows a fifth digit.
    """
    _check_prefix(prefix)
    if not 1 <= year <= 9999:
        raise ValueError(f"year out of range: {year}")
    await session.execute(
        _insert(session, CaseSequence)
        .values(prefix=prefix, year=year, last=0)
        .on_conflict_do_nothing(index_elements=["prefix", "year"])
    )
    result = await session.execute(
        update(CaseSequence)
        .where(CaseSequence.prefix == prefix, CaseSequence.year == year)
        .values(last=CaseSequence.last + 1)
        .returning(CaseSequence.last)
        .execution_options(synchronize_session=False)
    )
    sequence = result.scalar_one()
    return f"{prefix}-{year}-{sequence:04d}"


async def create_case(
    session: AsyncSession,
    *,
    prefix: str,
    year: int,
    created_by: str,
    status: str,
    now: datetime,
    form_id: str | None = None,
    municipality_id: str | None = None,
) -> Case:
    """Open a case: take its number, make the creator a participant, start the audit trail."""
    number = await next_case_number(session, prefix=prefix, year=year)
    case = Case(
        number=number,
        status=status,
        form_id=form_id,
        municipality_id=municipality_id,
        created_by=created_by,
        created_at=now,
        updated_at=now,
    )
    case.participants.append(CaseParticipant(user_id=created_by, role=CREATOR_ROLE, added_at=now))
    session.add(case)
    await session.flush()
    await add_audit(
        session,
        case_id=case.id,
        actor=created_by,
        action="case.created",
        now=now,
        detail={"number": number},
    )
    return case


async def get_case(session: AsyncSession, *, case_id: int) -> Case | None:
    """The case with `case_id`, or None."""
    return await session.get(Case, case_id)


async def get_case_by_room(session: AsyncSession, *, room_id: str) -> Case | None:
    """The case whose Matrix room is `room_id`, or None (e.g. the duty room)."""
    found = await session.execute(prepared(session, _case_by_room_statement), {"room_id": room_id})
    return found.unique().scalar_one_or_none()


def _case_by_room_statement(_insert: Insert) -> Any:
    # The participants in the same statement (a join), not in a second one as the
    # relationship's own "selectin" does: this runs on every answer.
    return (
        select(Case)
        .options(joinedload(Case.participants))
        .where(Case.room_id == bindparam("room_id"))
    )


async def get_case_by_number(session: AsyncSession, *, number: str) -> Case | None:
    """The case numbered `number` (e.g. "SJ-2026-0042"), or None."""
    return await session.scalar(select(Case).where(Case.number == number))


async def list_cases(
    session: AsyncSession, *, statuses: Collection[str] | None = None
) -> list[Case]:
    """Cases, oldest first; only those in `statuses` if given (an empty collection gives none)."""
    query = select(Case).order_by(Case.created_at, Case.id)
    if statuses is not None:
        query = query.where(Case.status.in_(list(statuses)))
    return list((await session.scalars(query)).all())


async def count_cases_by_status(
    session: AsyncSession, *, statuses: Collection[str]
) -> dict[str, int]:
    """How many cases are in each of ``statuses``, in one aggregate query (a metrics
    scrape must not load the cases); a status without cases is absent."""
    query = (
        select(Case.status, func.count())
        .where(Case.status.in_(list(statuses)))
        .group_by(Case.status)
    )
    return {status: count for status, count in (await session.execute(query)).all()}


async def set_case_form(session: AsyncSession, *, case_id: int, form_id: str) -> None:
    await _update_case(session, case_id, form_id=form_id)


async def set_case_municipality(
    session: AsyncSession, *, case_id: int, municipality_id: str
) -> None:
    """The client's home municipality: who decides, and who receives the case afterwards."""
    await _update_case(session, case_id, municipality_id=municipality_id)


async def set_case_room(session: AsyncSession, *, case_id: int, room_id: str) -> None:
    """Record the Matrix room created for the case (a room belongs to one case only)."""
    await _update_case(session, case_id, room_id=room_id)


async def change_status(
    session: AsyncSession,
    *,
    case_id: int,
    expected: str,
    new: str,
    actor: str,
    now: datetime,
) -> bool:
    """Move the case from `expected` to `new` unless someone else moved it first.

    Returns False, changing nothing, if the status is no longer `expected`: a
    concurrent actor won and the caller should re-read and tell the user. On
    success any pending cancel request is cleared (the case moved on) and the
    change is written to the audit trail. Whether the move is legal is for the
    state machine in `handlers` to decide before calling this.
    """
    result = await session.execute(
        update(Case)
        .where(Case.id == case_id, Case.status == expected)
        .values(
            status=new,
            updated_at=now,
            cancel_requested_by=None,
            cancel_requested_at=None,
        )
        .execution_options(synchronize_session="fetch")
    )
    if _rowcount(result) == 0:
        await _require_case(session, case_id)
        return False
    await add_audit(
        session,
        case_id=case_id,
        actor=actor,
        action=f"status.{new}",
        now=now,
        detail={"from": expected},
    )
    return True


async def request_cancel(
    session: AsyncSession, *, case_id: int, user_id: str, now: datetime
) -> None:
    """Note that `user_id` asked to cancel the case, pending confirmation."""
    await _update_case(session, case_id, cancel_requested_by=user_id, cancel_requested_at=now)


async def clear_cancel_request(session: AsyncSession, *, case_id: int) -> None:
    """Forget a pending cancel request (withdrawn or refused)."""
    await _update_case(session, case_id, cancel_requested_by=None, cancel_requested_at=None)


# --- participants ----------------------------------------------------------------------


async def add_participant(
    session: AsyncSession, *, case_id: int, user_id: str, role: str, now: datetime
) -> bool:
    """Add `user_id` to the case with `role`; False if they already take part (role kept)."""
    await _require_case(session, case_id)
    stmt = (
        _insert(session, CaseParticipant)
        .values(case_id=case_id, user_id=user_id, role=role, added_at=now)
        .on_conflict_do_nothing(index_elements=["case_id", "user_id"])
    )
    added = _rowcount(await session.execute(stmt)) == 1
    loaded = session.identity_map.get(identity_key(Case, case_id))
    if added and isinstance(loaded, Case):
        # The INSERT bypassed the ORM; keep a case already in the session truthful.
        await session.refresh(loaded, attribute_names=["participants"])
    return added


async def list_participants(session: AsyncSession, *, case_id: int) -> list[CaseParticipant]:
    """The case's participants in the order they were added."""
    query = (
        select(CaseParticipant)
        .where(CaseParticipant.case_id == case_id)
        .order_by(CaseParticipant.added_at, CaseParticipant.user_id)
    )
    return list((await session.scalars(query)).all())


async def is_participant(session: AsyncSession, *, case_id: int, user_id: str) -> bool:
    """Whether `user_id` takes part in the case (in any role)."""
    query = select(
        exists().where(CaseParticipant.case_id == case_id, CaseParticipant.user_id == user_id)
    )
    return bool(await session.scalar(query))


# --- audit trail -----------------------------------------------------------------------


async def add_audit(
    session: AsyncSession,
    *,
    case_id: int | None,
    actor: str,
    action: str,
    now: datetime,
    detail: dict[str, Any] | None = None,
) -> AuditEntry:
    """Append to the audit trail; `detail` must hold no personal data (see `AuditEntry`).

    The row is chained to the one before when the transaction commits; the actions
    and their detail keys are listed in `storage.audit`.
    """
    return await audit.append(
        session, case_id=case_id, actor=actor, action=action, now=now, detail=detail
    )


async def list_audit(session: AsyncSession, *, case_id: int | None) -> list[AuditEntry]:
    """The audit trail of a case (or, for None, of the bot itself), oldest first."""
    condition = AuditEntry.case_id.is_(None) if case_id is None else AuditEntry.case_id == case_id
    query = select(AuditEntry).where(condition).order_by(AuditEntry.at, AuditEntry.id)
    return list((await session.scalars(query)).all())


# --- trusted cross-signing keys --------------------------------------------------------


async def get_master_key(session: AsyncSession, *, user_id: str) -> str | None:
    """The master key trusted for `user_id`, or None if the bot has not met them yet."""
    query = select(TrustedMasterKey.master_key).where(TrustedMasterKey.user_id == user_id)
    return await session.scalar(query)


async def remember_master_key(
    session: AsyncSession, *, user_id: str, master_key: str, now: datetime
) -> None:
    """Trust `master_key` for `user_id` from now on.

    Remembering the key already trusted changes nothing (its first-seen time is
    kept); remembering a different key replaces it and restarts first-seen. Callers
    compare with `get_master_key` first and replace a key only after a human
    confirmed the user really reset their cross-signing.
    """
    stmt = _insert(session, TrustedMasterKey).values(
        user_id=user_id, master_key=master_key, first_seen=now
    )
    await session.execute(
        stmt.on_conflict_do_update(
            index_elements=["user_id"],
            set_={"master_key": stmt.excluded.master_key, "first_seen": stmt.excluded.first_seen},
            where=TrustedMasterKey.master_key != stmt.excluded.master_key,
        )
    )


async def forget_master_key(session: AsyncSession, *, user_id: str) -> bool:
    """Drop the trusted key of `user_id`, so the next key seen is trusted; False if none was.

    The administrator's way to accept a confirmed cross-signing reset.
    """
    result = await session.execute(
        delete(TrustedMasterKey)
        .where(TrustedMasterKey.user_id == user_id)
        .execution_options(synchronize_session=False)
    )
    return _rowcount(result) == 1


# --- guided reports ----------------------------------------------------------------------


async def get_report(session: AsyncSession, *, case_id: int) -> Report | None:
    return await session.get(Report, case_id, populate_existing=True)


async def report_state(session: AsyncSession, *, case_id: int) -> Row[Any] | None:
    """What the dialogue needs of a report (``state``, ``version``, ``form_version``,
    ``updated_at``, ``submitted_at``), read without the ORM: once per answer."""
    result = await session.execute(prepared(session, _report_state_statement), {"b_case": case_id})
    return result.first()


def _report_state_statement(_insert: Insert) -> Any:
    table = table_of(Report)
    return select(
        table.c.state,
        table.c.version,
        table.c.form_version,
        table.c.updated_at,
        table.c.submitted_at,
    ).where(table.c.case_id == bindparam("b_case"))


async def save_report_state(
    session: AsyncSession,
    *,
    case_id: int,
    form_id: str | None,
    form_version: int | None,
    state: dict[str, Any],
    expected_version: int | None,
    now: datetime,
) -> int | None:
    """Store the dialogue state if nobody else saved since ``expected_version``.

    ``expected_version=None`` creates the report. Returns the new version, or None
    when another save won the race (the caller reloads and tries again).
    """
    if expected_version is None:
        result = await session.execute(
            _insert(session, Report)
            .values(
                case_id=case_id,
                form_id=form_id,
                form_version=form_version,
                state=state,
                version=1,
                updated_at=now,
            )
            .on_conflict_do_nothing(index_elements=["case_id"])
        )
        return 1 if _rowcount(result) == 1 else None
    result = await session.execute(
        prepared(session, _save_report_statement),
        {
            "b_case": case_id,
            "b_expected": expected_version,
            "b_form": form_id,
            "b_form_version": form_version,
            "b_state": state,
            "b_version": expected_version + 1,
            "b_now": now,
        },
    )
    return expected_version + 1 if _rowcount(result) == 1 else None


def _save_report_statement(_insert: Insert) -> Any:
    table = table_of(Report)
    return (
        update(table)
        .where(
            table.c.case_id == bindparam("b_case"),
            table.c.version == bindparam("b_expected"),
            table.c.submitted_at.is_(None),
        )
        .values(
            form_id=bindparam("b_form"),
            form_version=bindparam("b_form_version"),
            state=bindparam("b_state"),
            version=bindparam("b_version"),
            updated_at=bindparam("b_now"),
        )
    )


async def submit_report(
    session: AsyncSession,
    *,
    case_id: int,
    expected_version: int,
    report: dict[str, Any],
    now: datetime,
    state: dict[str, Any] | None = None,
) -> bool:
    """Freeze the report (and the dialogue's last ``state``, if given); False if it
    changed since ``expected_version`` or was submitted already."""
    values: dict[str, Any] = {
        "submitted": report,
        "submitted_at": now,
        "version": expected_version + 1,
        "updated_at": now,
    }
    if state is not None:
        values["state"] = state
    result = await session.execute(
        update(Report)
        .where(
            Report.case_id == case_id,
            Report.version == expected_version,
            Report.submitted_at.is_(None),
        )
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return _rowcount(result) == 1


async def reopen_report(session: AsyncSession, *, case_id: int, now: datetime) -> None:
    """Unfreeze a submitted report (a declined or withdrawn decision is revised)."""
    await session.execute(
        update(Report)
        .where(Report.case_id == case_id)
        .values(submitted_at=None, version=Report.version + 1, updated_at=now)
        .execution_options(synchronize_session=False)
    )
