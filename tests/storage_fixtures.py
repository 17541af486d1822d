"""Helpers for database tests: throw-away PostgreSQL databases, units of work, constants.

The fixtures built on these live in `tests/conftest_storage.py`. PostgreSQL is
expected on 127.0.0.1:5432 with trust authentication (user `root` or `postgres`,
database `test` to connect to); each test gets its own database, dropped
afterwards. Without a server the PostgreSQL tests are skipped.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import TypeVar

import asyncpg
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

PG_HOST = "127.0.0.1"
PG_PORT = 5432
PG_ADMIN_DATABASE = "test"
PG_USERS = ("root", "postgres")

T = TypeVar("T")
Sessions = async_sessionmaker[AsyncSession]
NOW = datetime(2026, 3, 1, 2, 30, tzinfo=UTC)
WORKER = "@anna:socialjour.example"
DECIDER = "@ordf:socialjour.example"


async def in_session(sessions: Sessions, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """Run `work` as one committed unit of work, like a handler does."""
    async with sessions() as session, session.begin():
        return await work(session)


async def _admin_connection() -> tuple[asyncpg.Connection, str]:
    """Connect to the admin database as the first user that works, or skip the test."""
    failures: list[str] = []
    for user in PG_USERS:
        try:
            connection = await asyncpg.connect(
                host=PG_HOST, port=PG_PORT, user=user, database=PG_ADMIN_DATABASE, timeout=5
            )
        except (OSError, TimeoutError, asyncpg.PostgresError) as error:
            failures.append(f"{user}: {type(error).__name__}: {error}")
        else:
            return connection, user
    reason = f"PostgreSQL not reachable on {PG_HOST}:{PG_PORT}: {'; '.join(failures)}"
    if os.environ.get("SOCIALJOUR_REQUIRE_POSTGRES"):
        pytest.fail(reason + " (CI requires it: SOCIALJOUR_REQUIRE_POSTGRES is set)")
    pytest.skip(reason)


@asynccontextmanager
async def postgres_database(template: str | None = None) -> AsyncIterator[str]:
    """A new PostgreSQL database for one test (empty, or a copy of ``template``)."""
    name = f"socialjour_test_{uuid.uuid4().hex[:16]}"
    admin, user = await _admin_connection()
    try:
        copy = f' TEMPLATE "{template}"' if template else ""
        await admin.execute(f'CREATE DATABASE "{name}"{copy}')
    finally:
        await admin.close()
    try:
        yield f"postgresql+asyncpg://{user}@{PG_HOST}:{PG_PORT}/{name}"
    finally:
        admin, _ = await _admin_connection()
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()
