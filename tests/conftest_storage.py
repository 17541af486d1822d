"""Database fixtures: every test gets a fresh, migrated database on SQLite and on PostgreSQL.

A pytest plugin; use it from a test module with
`pytest_plugins = ("tests.conftest_storage",)`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from storage import create_engine, session_factory, upgrade
from tests.storage_fixtures import postgres_database


@pytest.fixture(params=["sqlite", "postgresql"])
async def database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[str]:
    """An empty database's URL, on each supported backend."""
    if request.param == "sqlite":
        # A folder that does not exist yet: create_engine must make it.
        folder = tmp_path_factory.mktemp("sqlite") / "data"
        yield f"sqlite+aiosqlite:///{folder / 'socialjour.db'}"
        return
    async with postgres_database() as url:
        yield url


@pytest.fixture
async def migrated_url(database_url: str) -> str:
    """The URL of a database upgraded to the newest migration."""
    await upgrade(database_url)
    return database_url


@pytest.fixture
async def engine(migrated_url: str) -> AsyncIterator[AsyncEngine]:
    """An engine on a migrated database, disposed after the test."""
    engine = create_engine(migrated_url)
    try:
        yield engine
    finally:
        await engine.dispose()


@pytest.fixture
def sessions(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """The session factory the bot would use."""
    return session_factory(engine)
