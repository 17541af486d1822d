"""Tests of the storage engine, migrations, case numbering and event dedupe.

Each runs on SQLite and PostgreSQL: the migrations first, then the `repo`
functions the way the bot uses them, one committed session per unit of work.
"""

from __future__ import annotations

import asyncio
import importlib.resources
import sqlite3
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from storage import (
    Base,
    CaseNotFoundError,
    CaseParticipant,
    CaseSequence,
    UnsupportedDatabaseError,
    create_engine,
    current_revision,
    head_revision,
    normalise_url,
    repo,
    session_factory,
    upgrade,
)
from storage import db as storage_db
from storage.db import SQLITE_INLINE_BUSY_MS
from tests.storage_fixtures import NOW, WORKER, Sessions, in_session


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


# --- engine and migrations ---------------------------------------------------------------


def _schema_differences(connection: sa.Connection, metadata: sa.MetaData) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, metadata))


async def test_upgrade_is_idempotent_and_schema_matches_models(database_url: str) -> None:
    assert await current_revision(database_url) is None
    await upgrade(database_url)
    await upgrade(database_url)  # a second start-up changes nothing
    assert await current_revision(database_url) == head_revision()

    engine = create_engine(database_url)
    try:
        async with engine.connect() as connection:
            assert await connection.run_sync(_schema_differences, Base.metadata) == []
            # The comparison can see a difference, so the empty result above means something.
            changed = sa.MetaData()
            for table in Base.metadata.tables.values():
                table.to_metadata(changed)
            sa.Table("bot_state", changed, sa.Column("extra", sa.Integer), extend_existing=True)
            assert await connection.run_sync(_schema_differences, changed) != []
    finally:
        await engine.dispose()


def test_migrations_ship_inside_the_package() -> None:
    folder = importlib.resources.files("storage") / "migrations"
    assert (folder / "env.py").is_file()
    assert (folder / "script.py.mako").is_file()
    assert (folder / "versions" / "0001_initial.py").is_file()


def test_urls_get_the_async_driver_and_other_databases_are_refused() -> None:
    assert normalise_url("sqlite:///x.db").drivername == "sqlite+aiosqlite"
    assert normalise_url("postgresql://u@h/db").drivername == "postgresql+asyncpg"
    with pytest.raises(UnsupportedDatabaseError):
        create_engine("mysql+aiomysql://u@h/db")
    with pytest.raises(UnsupportedDatabaseError):
        create_engine("postgresql+psycopg2://u@h/db")


async def test_sqlite_connections_use_wal_busy_timeout_and_foreign_keys(tmp_path: Any) -> None:
    path = tmp_path / "not" / "yet" / "there.db"
    engine = create_engine(f"sqlite+aiosqlite:///{path}")
    try:
        async with engine.connect() as connection:
            pragma = connection.exec_driver_sql
            assert (await pragma("PRAGMA journal_mode")).scalar() == "wal"
            # SQLite itself waits only briefly: the loop waits with it (storage.db).
            assert (await pragma("PRAGMA busy_timeout")).scalar() == SQLITE_INLINE_BUSY_MS
            assert (await pragma("PRAGMA foreign_keys")).scalar() == 1
        assert path.exists()
    finally:
        await engine.dispose()


async def test_a_writer_waits_for_another_process_s_lock_without_stopping_the_loop(
    migrated_url: str, sessions: Sessions
) -> None:
    """Statements run on the event loop's thread (storage.db.InlineConnection): while
    another process holds SQLite's write lock, a unit of work waits for it asleep on
    the loop, so every other room goes on being served, and then commits."""
    if not is_sqlite(migrated_url):
        pytest.skip("the inline driver and its lock wait are SQLite's")
    path = sa.make_url(migrated_url).database
    assert path is not None
    other = sqlite3.connect(path, isolation_level=None)  # as `socialjour` CLI would
    other.execute("BEGIN IMMEDIATE")
    ticks = 0
    stop = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            await asyncio.sleep(0.01)

    async def release_later() -> None:
        await asyncio.sleep(0.5)
        other.execute("INSERT INTO bot_state (key, value) VALUES ('other', '1')")
        other.execute("COMMIT")

    async def write(session: AsyncSession) -> None:
        await repo.set_state(session, key="mine", value="2")

    ticking = asyncio.create_task(ticker())
    try:
        await asyncio.gather(release_later(), in_session(sessions, write))
    finally:
        stop.set()
        await ticking
        other.close()
    # Held for half a second at 10 ms a tick: a loop stuck in SQLite's wait ticks ~twice.
    assert ticks >= 20, ticks

    async def read(session: AsyncSession) -> list[str | None]:
        return [await repo.get_state(session, key=key) for key in ("other", "mine")]

    assert await in_session(sessions, read) == ["1", "2"]


async def test_writers_in_this_process_take_turns_in_order_without_polling_the_lock(
    migrated_url: str, sessions: Sessions, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Answers in many rooms at once: their writing transactions queue for SQLite's one
    write lock (storage.db.WriteGate) and are served in the order they came, each as
    soon as the one before commits; none hits the lock and sleeps on a timer. A second
    engine on the same file in the same process (a command run by the bot, a test's
    own) queues at the same gate."""
    if not is_sqlite(migrated_url):
        pytest.skip("the write gate is SQLite's (PostgreSQL has row locks)")
    found_locked = 0
    busy = storage_db._busy

    def counting(exc: sqlite3.OperationalError) -> bool:
        nonlocal found_locked
        found_locked += 1
        return busy(exc)

    monkeypatch.setattr(storage_db, "_busy", counting)
    other_engine = create_engine(migrated_url)
    factories = (sessions, session_factory(other_engine))
    served: list[int] = []

    async def write(i: int) -> None:
        async with factories[i % 2]() as session, session.begin():
            current = await repo.get_state(session, key="count")
            await asyncio.sleep(0.002)  # (a handler's await inside the transaction)
            served.append(i)
            await repo.set_state(session, key="count", value=str(int(current or 0) + 1))

    async def read(i: int) -> None:
        async with factories[i % 2]() as session:
            await repo.get_state(session, key="count")
            await asyncio.sleep(0.01)

    try:
        # The connections exist already, as in a running bot (opening one takes a
        # thread).
        writers = storage_db.SQLITE_POOL_SIZE - 5
        await asyncio.gather(*(read(i) for i in range(2 * writers)))
        # Each starts one loop turn after the one before: "first come" is well defined.
        tasks = []
        for i in range(writers):
            tasks.append(asyncio.create_task(write(i)))
            await asyncio.sleep(0)
        await asyncio.gather(*tasks)
    finally:
        await other_engine.dispose()

    assert served == list(range(writers))
    assert found_locked == 0
    assert await in_session(sessions, lambda s: repo.get_state(s, key="count")) == str(writers)


async def test_a_writer_that_waits_for_itself_fails_as_sqlite_would_instead_of_hanging(
    migrated_url: str, sessions: Sessions, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A unit of work that opens a second writing one while it holds the write lock
    can never get it: after SQLITE_BUSY_TIMEOUT_MS it fails ("database is locked"),
    as SQLite's own wait did, and the first still commits."""
    if not is_sqlite(migrated_url):
        pytest.skip("the write gate is SQLite's (PostgreSQL has row locks)")
    monkeypatch.setattr(storage_db, "SQLITE_BUSY_TIMEOUT_MS", 300)
    async with sessions() as outer, outer.begin():
        await repo.set_state(outer, key="outer", value="1")
        with pytest.raises(sa.exc.OperationalError, match="database is locked"):
            async with sessions() as inner, inner.begin():
                await repo.set_state(inner, key="inner", value="1")

    async def read(session: AsyncSession) -> list[str | None]:
        return [await repo.get_state(session, key=key) for key in ("outer", "inner")]

    assert await in_session(sessions, read) == ["1", None]


async def test_the_write_ahead_log_is_checkpointed_off_the_loop(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Commits run on the loop and never checkpoint (an fsync); the Checkpointer does,
    every CHECKPOINT_EVERY commits, so the log does not grow with every answer."""
    monkeypatch.setattr(storage_db, "CHECKPOINT_EVERY", 10)
    path = tmp_path / "sj.db"
    url = f"sqlite+aiosqlite:///{path}"
    await upgrade(url)
    engine = create_engine(url)
    sessions = session_factory(engine)
    wal = path.with_name("sj.db-wal")
    try:
        async with engine.connect() as connection:
            pragma = connection.exec_driver_sql
            assert (await pragma("PRAGMA wal_autocheckpoint")).scalar() == 0
        for i in range(300):

            async def write(session: AsyncSession, i: int = i) -> None:
                await repo.set_state(session, key=f"k{i % 7}", value="x" * 3000 + str(i))

            await in_session(sessions, write)
            if i % 10 == 9:
                await asyncio.sleep(0.05)  # (the checkpoint's thread gets its turn)
        # 300 commits of a page or so each: 1.3 MB of log when nothing checkpoints it,
        # about 0.12 MB when it is checkpointed (and then written again from its start).
        assert wal.stat().st_size < 400_000, wal.stat().st_size
        assert (
            await in_session(sessions, lambda s: repo.get_state(s, key="k5")) == "x" * 3000 + "299"
        )
    finally:
        await engine.dispose()


async def test_foreign_keys_are_enforced(sessions: Sessions) -> None:
    with pytest.raises(IntegrityError):
        async with sessions() as session, session.begin():
            session.add(CaseParticipant(case_id=999, user_id=WORKER, role="worker", added_at=NOW))
    with pytest.raises(CaseNotFoundError):
        async with sessions() as session:
            await repo.add_participant(session, case_id=999, user_id=WORKER, role="x", now=NOW)


async def test_sqlite_read_then_write_units_of_work_do_not_lock_or_lose_updates(
    migrated_url: str, sessions: Sessions
) -> None:
    """Twenty concurrent read-modify-write units: none fails "database is locked", none is lost.

    PostgreSQL (read committed) would lose updates here by design; SQLite, with
    every transaction taking the write lock up front, runs them one after another.
    """
    if not is_sqlite(migrated_url):
        pytest.skip("SQLite serialises transactions; PostgreSQL callers use CAS instead")

    async def increment(session: AsyncSession) -> None:
        current = int(await repo.get_state(session, key="counter") or "0")
        await asyncio.sleep(0)  # let the others run between the read and the write
        await repo.set_state(session, key="counter", value=str(current + 1))

    await asyncio.gather(*(in_session(sessions, increment) for _ in range(20)))
    assert await in_session(sessions, lambda s: repo.get_state(s, key="counter")) == "20"


# --- case numbers ------------------------------------------------------------------------


async def test_twenty_cases_opened_at_once_get_distinct_consecutive_numbers(
    sessions: Sessions,
) -> None:
    async def one(session: AsyncSession) -> str:
        case = await repo.create_case(
            session, prefix="SJ", year=2026, created_by=WORKER, status="draft", now=NOW
        )
        return case.number

    numbers = await asyncio.gather(*(in_session(sessions, one) for _ in range(20)))

    assert len(set(numbers)) == 20, "no two cases share a number"
    assert sorted(numbers) == [f"SJ-2026-{n:04d}" for n in range(1, 21)]
    stored = await in_session(sessions, lambda s: repo.list_cases(s))
    assert sorted(case.number for case in stored) == sorted(numbers)


async def test_numbering_restarts_per_year_and_is_separate_per_prefix(sessions: Sessions) -> None:
    async def take(prefix: str, year: int) -> str:
        return await in_session(
            sessions, lambda s: repo.next_case_number(s, prefix=prefix, year=year)
        )

    assert await take("SJ", 2026) == "SJ-2026-0001"
    assert await take("SJ", 2026) == "SJ-2026-0002"
    assert await take("SJ", 2027) == "SJ-2027-0001"
    assert await take("LVM", 2026) == "LVM-2026-0001"
    assert await take("SJ", 2026) == "SJ-2026-0003"


async def test_number_grows_a_fifth_digit_after_9999(sessions: Sessions) -> None:
    await in_session(sessions, lambda s: repo.next_case_number(s, prefix="SJ", year=2026))
    await in_session(sessions, lambda s: s.execute(sa.update(CaseSequence).values(last=9998)))

    def take(session: AsyncSession) -> Awaitable[str]:
        return repo.next_case_number(session, prefix="SJ", year=2026)

    assert await in_session(sessions, take) == "SJ-2026-9999"
    assert await in_session(sessions, take) == "SJ-2026-10000"


async def test_a_rolled_back_case_gives_its_number_back(sessions: Sessions) -> None:
    async with sessions() as session:
        await repo.next_case_number(session, prefix="SJ", year=2026)
        await session.rollback()
    assert (
        await in_session(sessions, lambda s: repo.next_case_number(s, prefix="SJ", year=2026))
        == "SJ-2026-0001"
    )


@pytest.mark.parametrize("prefix", ["", "SJ-X", "S J", "X" * 17])
async def test_bad_prefixes_are_refused(sessions: Sessions, prefix: str) -> None:
    async with sessions() as session:
        with pytest.raises(ValueError, match="prefix"):
            await repo.next_case_number(session, prefix=prefix, year=2026)


# --- event dedupe ------------------------------------------------------------------------


async def test_an_event_is_claimed_once(sessions: Sessions) -> None:
    def claim(session: AsyncSession) -> Awaitable[bool]:
        return repo.claim_event(session, event_id="$ev1", room_id="!room", now=NOW)

    assert await in_session(sessions, claim) is True
    assert await in_session(sessions, claim) is False


async def test_an_event_delivered_to_twenty_listeners_at_once_is_acted_on_once(
    sessions: Sessions,
) -> None:
    def claim(session: AsyncSession) -> Awaitable[bool]:
        return repo.claim_event(session, event_id="$dup", room_id="!room", now=NOW)

    results = await asyncio.gather(*(in_session(sessions, claim) for _ in range(20)))
    assert results.count(True) == 1


async def test_a_claim_survives_a_restart_and_is_released_by_rollback(migrated_url: str) -> None:
    def claim(event_id: str) -> Callable[[AsyncSession], Awaitable[bool]]:
        return lambda s: repo.claim_event(s, event_id=event_id, room_id="!room", now=NOW)

    before = create_engine(migrated_url)
    try:
        assert await in_session(session_factory(before), claim("$kept")) is True
        async with session_factory(before)() as session:
            assert await claim("$rolled-back")(session) is True
            await session.rollback()  # the handler failed: the event may be retried
    finally:
        await before.dispose()

    after = create_engine(migrated_url)  # a new process
    try:
        assert await in_session(session_factory(after), claim("$kept")) is False
        assert await in_session(session_factory(after), claim("$rolled-back")) is True
    finally:
        await after.dispose()


async def test_the_inbox_keeps_events_pending_in_order_until_claimed(sessions: Sessions) -> None:
    """Stored with the sync token, an event waits (with what its handler needs) until
    it is claimed; a re-delivery neither duplicates nor revives it; pruning never
    forgets one that still waits."""
    old = NOW - timedelta(days=40)

    def store(*rows: tuple[str, str, int]) -> Callable[[AsyncSession], Awaitable[int]]:
        return lambda s: repo.store_events(
            s, events=[(e, r, p, {"body": e}) for e, r, p in rows], now=old
        )

    assert await in_session(sessions, store(("$b", "!r", 2), ("$a", "!r", 1), ("$x", "!o", 3))) == 3
    assert await in_session(sessions, store(("$a", "!r", 9))) == 0  # delivered again

    async def pending(room: str | None) -> list[tuple[str, dict[str, str] | None]]:
        async with sessions() as session:
            rows = await repo.pending_events(session, room_id=room)
        return [(row.event_id, row.payload) for row in rows]

    assert await pending("!r") == [("$a", {"body": "$a"}), ("$b", {"body": "$b"})]
    assert [e for e, _ in await pending(None)] == ["$a", "$b", "$x"]

    def claim(session: AsyncSession) -> Awaitable[bool]:
        return repo.claim_event(session, event_id="$a", room_id="!r", now=NOW)

    assert await in_session(sessions, claim) is True
    assert await in_session(sessions, claim) is False
    assert await in_session(sessions, store(("$a", "!r", 1))) == 0  # done stays done
    assert [e for e, _ in await pending("!r")] == ["$b"]

    cutoff = NOW - timedelta(days=7)
    await in_session(sessions, lambda s: repo.prune_events(s, older_than=cutoff))
    assert [e for e, _ in await pending(None)] == ["$b", "$x"]
    async with sessions() as session:
        known = await repo.known_events(session, event_ids=["$a", "$b", "$zzz"])
    assert known == {"$a", "$b"}  # $a was handled now, not 40 days ago: kept


async def test_old_events_are_pruned(sessions: Sessions) -> None:
    async def record(session: AsyncSession) -> None:
        for age_days in (1, 10, 40):
            when = NOW - timedelta(days=age_days)
            await repo.claim_event(session, event_id=f"$e{age_days}", room_id="!r", now=when)

    await in_session(sessions, record)
    cutoff = NOW - timedelta(days=7)
    assert await in_session(sessions, lambda s: repo.prune_events(s, older_than=cutoff)) == 2
    assert (
        await in_session(
            sessions, lambda s: repo.claim_event(s, event_id="$e1", room_id="!r", now=NOW)
        )
        is False
    )
