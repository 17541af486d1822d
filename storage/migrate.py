"""Run the Alembic migrations from code, so the bot upgrades its own database at start-up.

No alembic.ini is needed: the configuration is built here, pointing at the
`migrations/` folder shipped inside this package.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection
from sqlalchemy.engine import URL

from storage.db import create_engine, normalise_url

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def alembic_config(url: str | URL | None = None) -> Config:
    """An Alembic configuration for this package's migrations (and `url`, if given).

    Handy for the `alembic` API beyond upgrade (history, revision, downgrade).
    """
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("path_separator", "os")
    if url is not None:
        rendered = normalise_url(url).render_as_string(hide_password=False)
        # ConfigParser interpolates '%', which may appear in an escaped password.
        config.set_main_option("sqlalchemy.url", rendered.replace("%", "%%"))
    return config


def head_revision() -> str:
    """The newest migration shipped with this code."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:  # pragma: no cover - the package always ships migrations
        raise RuntimeError("no migrations found in " + str(MIGRATIONS_DIR))
    return head


def _upgrade_on(connection: Connection, revision: str) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, revision)


async def upgrade(url: str | URL, *, revision: str = "head") -> None:
    """Bring the database at `url` to `revision` (default: the newest); a no-op if it is there.

    Alembic is synchronous; it runs on our async engine's connection through
    `run_sync`, so this works when awaited inside a running event loop.
    The whole upgrade is one transaction on both databases (both have
    transactional DDL), so a failed migration leaves the schema as it was.
    """
    engine = create_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(_upgrade_on, revision)
    finally:
        await engine.dispose()


def _revision_of(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


async def current_revision(url: str | URL) -> str | None:
    """The migration the database at `url` is at, or None if it was never migrated."""
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(_revision_of)
    finally:
        await engine.dispose()
