"""Database fixtures: every test gets a fresh, migrated database on SQLite and on PostgreSQL.

A pytest plugin, loaded by tests/conftest.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from storage import create_engine, session_factory, upgrade
from tests.storage_fixtures import _admin_connection, postgres_database


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


_templates: dict[str, str] = {}


async def _migrated_template() -> str:
    """One migrated PostgreSQL database per test session, copied for each test.

    Copying a template is cheaper than migrating every test's database; the
    migrations themselves are tested on empty databases in test_storage.py.
    """
    if "name" not in _templates:
        async with postgres_database() as url:
            await upgrade(url)
            name = url.rsplit("/", 1)[1]
            # Keep it: rename so the context manager's DROP misses it.
            admin, _ = await _admin_connection()
            try:
                template = f"{name}_template"
                await admin.execute(f'ALTER DATABASE "{name}" RENAME TO "{template}"')
            finally:
                await admin.close()
        _templates["name"] = template
    return _templates["name"]


@pytest.fixture(scope="session", autouse=True)
def _drop_template() -> Iterator[None]:
    yield
    name = _templates.pop("name", None)
    if name:

        async def drop() -> None:
            admin, _ = await _admin_connection()
            try:
                await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            finally:
                await admin.close()

        asyncio.run(drop())


@pytest.fixture(params=["sqlite", "postgresql"])
async def migrated_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[str]:
    """The URL of a database upgraded to the newest migration, on each backend."""
    if request.param == "sqlite":
        folder = tmp_path_factory.mktemp("sqlite") / "data"
        url = f"sqlite+aiosqlite:///{folder / 'socialjour.db'}"
        await upgrade(url)
        yield url
        return
    async with postgres_database(template=await _migrated_template()) as url:
        yield url


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
