"""Reading and writing signing requests, roster overrides and direct rooms.

Same rules as :mod:`storage.repo`: the caller's session first, keyword-only
arguments, flush but never commit. A decision is settled by the database: the
case's own status is moved with compare-and-set in the same transaction, so of
two decision-makers acting at once exactly one wins.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import DirectRoom, OidcState, RosterOverride, SigningRequest
from storage.repo import _insert, _rowcount

PENDING = "pending"
DECIDED = ("signed", "declined")


async def create_signing_request(
    session: AsyncSession,
    *,
    case_id: int,
    token_hash: str,
    signer_user_id: str,
    signer_name: str,
    signer_role: str,
    municipality_id: str,
    document: bytes,
    document_sha256: str,
    now: datetime,
    expires_at: datetime,
) -> SigningRequest:
    request = SigningRequest(
        case_id=case_id,
        token_hash=token_hash,
        signer_user_id=signer_user_id,
        signer_name=signer_name,
        signer_role=signer_role,
        municipality_id=municipality_id,
        document=document,
        document_sha256=document_sha256,
        status=PENDING,
        created_at=now,
        expires_at=expires_at,
        auth_attempts=0,
    )
    session.add(request)
    await session.flush()
    return request


async def get_by_token_hash(session: AsyncSession, *, token_hash: str) -> SigningRequest | None:
    return await session.scalar(
        select(SigningRequest)
        .where(SigningRequest.token_hash == token_hash)
        .execution_options(populate_existing=True)
    )


async def get_signing_request(session: AsyncSession, *, request_id: int) -> SigningRequest | None:
    return await session.get(SigningRequest, request_id, populate_existing=True)


async def list_signing_requests(
    session: AsyncSession, *, case_id: int, statuses: Collection[str] | None = None
) -> list[SigningRequest]:
    query = select(SigningRequest).where(SigningRequest.case_id == case_id)
    if statuses is not None:
        query = query.where(SigningRequest.status.in_(list(statuses)))
    return list(await session.scalars(query.order_by(SigningRequest.id)))


async def set_auth(
    session: AsyncSession,
    *,
    request_id: int,
    method: str,
    state: dict[str, Any],
    binding_hash: str | None = None,
) -> None:
    """Start (or restart) identification. The attempt counter is per link, not per start.

    ``binding_hash`` is the SHA-256 of the starting browser's pre-auth cookie; a new
    start replaces it, so only the browser of the latest start can finish.
    """
    await session.execute(
        update(SigningRequest)
        .where(SigningRequest.id == request_id)
        .values(auth_method=method, auth_state=state, auth_binding=binding_hash)
    )


async def update_auth_state(
    session: AsyncSession, *, request_id: int, state: dict[str, Any]
) -> None:
    await session.execute(
        update(SigningRequest).where(SigningRequest.id == request_id).values(auth_state=state)
    )


async def count_attempt(session: AsyncSession, *, request_id: int) -> int:
    """One more identification attempt; returns the new count (atomically)."""
    await session.execute(
        update(SigningRequest)
        .where(SigningRequest.id == request_id)
        .values(auth_attempts=SigningRequest.auth_attempts + 1)
    )
    count = await session.scalar(
        select(SigningRequest.auth_attempts).where(SigningRequest.id == request_id)
    )
    return int(count or 0)


async def take_attempt(session: AsyncSession, *, request_id: int, limit: int) -> int | None:
    """Take one identification attempt if fewer than ``limit`` are used; the new count,
    or None when the limit is reached.

    One statement checks and counts (``UPDATE ... WHERE attempts < limit RETURNING``),
    so requests in parallel cannot all pass a check made before any of them counted:
    the database hands out each attempt once (SQLite ≥ 3.35, PostgreSQL).
    """
    granted = await session.scalar(
        update(SigningRequest)
        .where(SigningRequest.id == request_id, SigningRequest.auth_attempts < limit)
        .values(auth_attempts=SigningRequest.auth_attempts + 1)
        .returning(SigningRequest.auth_attempts)
    )
    return None if granted is None else int(granted)


async def open_session(
    session: AsyncSession,
    *,
    request_id: int,
    session_hash: str,
    expires_at: datetime,
    identity: dict[str, Any],
) -> None:
    """The signer is identified: bind a browser session to the request."""
    await session.execute(
        update(SigningRequest)
        .where(SigningRequest.id == request_id)
        .values(
            session_hash=session_hash,
            session_expires_at=expires_at,
            identity=identity,
            auth_state=None,
        )
    )


async def decide(
    session: AsyncSession,
    *,
    request_id: int,
    status: str,
    now: datetime,
    reason: str | None = None,
    signed_document: bytes | None = None,
    signed_sha256: str | None = None,
) -> bool:
    """Record the decision if the request is still pending; False otherwise."""
    if status not in DECIDED:
        raise ValueError(f"not a decision: {status!r}")
    result = await session.execute(
        update(SigningRequest)
        .where(SigningRequest.id == request_id, SigningRequest.status == PENDING)
        .values(
            status=status,
            decided_at=now,
            decision_reason=reason,
            signed_document=signed_document,
            signed_sha256=signed_sha256,
        )
    )
    return _rowcount(result) == 1


async def close_pending(
    session: AsyncSession, *, case_id: int, status: str, except_id: int | None = None
) -> int:
    """Mark the case's other pending requests (``superseded`` or ``expired``)."""
    query = update(SigningRequest).where(
        SigningRequest.case_id == case_id, SigningRequest.status == PENDING
    )
    if except_id is not None:
        query = query.where(SigningRequest.id != except_id)
    return _rowcount(await session.execute(query.values(status=status)))


async def expire_due(session: AsyncSession, *, now: datetime) -> list[SigningRequest]:
    due = list(
        await session.scalars(
            select(SigningRequest).where(
                SigningRequest.status == PENDING, SigningRequest.expires_at <= now
            )
        )
    )
    for request in due:
        await session.execute(
            update(SigningRequest)
            .where(SigningRequest.id == request.id, SigningRequest.status == PENDING)
            .values(status="expired")
        )
    return due


async def mark_posted(session: AsyncSession, *, request_id: int, now: datetime) -> None:
    await session.execute(
        update(SigningRequest).where(SigningRequest.id == request_id).values(posted_at=now)
    )


async def mark_file_posted(session: AsyncSession, *, request_id: int, now: datetime) -> None:
    """The signed PDF is in the room (its announcement may still be missing)."""
    await session.execute(
        update(SigningRequest).where(SigningRequest.id == request_id).values(file_posted_at=now)
    )


async def list_unposted(session: AsyncSession) -> list[SigningRequest]:
    """Decisions whose outcome never reached the case room (a crash in between)."""
    return list(
        await session.scalars(
            select(SigningRequest)
            .where(SigningRequest.status.in_(DECIDED), SigningRequest.posted_at.is_(None))
            .order_by(SigningRequest.id)
        )
    )


# --- OpenID Connect sign-ins on their way through the provider ------------------------------


async def add_oidc_state(
    session: AsyncSession,
    *,
    state_hash: str,
    request_id: int,
    binding_hash: str,
    link_sealed: str,
    now: datetime,
    expires_at: datetime,
) -> None:
    """Remember a started sign-in until its callback; sign-ins that expired unused go."""
    await session.execute(delete(OidcState).where(OidcState.expires_at <= now))
    session.add(
        OidcState(
            state_hash=state_hash,
            request_id=request_id,
            binding_hash=binding_hash,
            link_sealed=link_sealed,
            created_at=now,
            expires_at=expires_at,
        )
    )
    await session.flush()


async def get_oidc_state(
    session: AsyncSession, *, state_hash: str, now: datetime
) -> OidcState | None:
    """The unexpired sign-in with this state (not yet used: use deletes it)."""
    return await session.scalar(
        select(OidcState)
        .where(OidcState.state_hash == state_hash, OidcState.expires_at > now)
        .execution_options(populate_existing=True)
    )


async def consume_oidc_state(session: AsyncSession, *, state_hash: str) -> bool:
    """Use the sign-in up: True for exactly one of any number of concurrent callbacks."""
    result = await session.execute(
        delete(OidcState)
        .where(OidcState.state_hash == state_hash)
        .execution_options(synchronize_session=False)
    )
    return _rowcount(result) == 1


# --- roster -------------------------------------------------------------------------------


async def add_override(
    session: AsyncSession,
    *,
    municipality_id: str,
    user_id: str,
    starts_at: datetime,
    ends_at: datetime,
    created_by: str,
    now: datetime,
) -> RosterOverride:
    override = RosterOverride(
        municipality_id=municipality_id,
        user_id=user_id,
        starts_at=starts_at,
        ends_at=ends_at,
        created_by=created_by,
        created_at=now,
    )
    session.add(override)
    await session.flush()
    return override


async def active_overrides(
    session: AsyncSession, *, municipality_id: str, at: datetime
) -> list[RosterOverride]:
    """Overrides in force at ``at``, the most recently set first."""
    return list(
        await session.scalars(
            select(RosterOverride)
            .where(
                RosterOverride.municipality_id == municipality_id,
                RosterOverride.starts_at <= at,
                RosterOverride.ends_at > at,
            )
            .order_by(RosterOverride.created_at.desc(), RosterOverride.id.desc())
        )
    )


# --- direct rooms ---------------------------------------------------------------------------


async def get_direct_room(session: AsyncSession, *, user_id: str) -> str | None:
    row = await session.get(DirectRoom, user_id, populate_existing=True)
    return row.room_id if row else None


async def set_direct_room(
    session: AsyncSession, *, user_id: str, room_id: str, now: datetime
) -> None:
    await session.execute(
        _insert(session, DirectRoom)
        .values(user_id=user_id, room_id=room_id, created_at=now)
        .on_conflict_do_update(
            index_elements=["user_id"], set_={"room_id": room_id, "created_at": now}
        )
    )


async def direct_room_owner(session: AsyncSession, *, room_id: str) -> str | None:
    """Whose direct room this is (None: not a direct room of the bot)."""
    return await session.scalar(select(DirectRoom.user_id).where(DirectRoom.room_id == room_id))
