"""The scheduler's wake-ups and the one-bot-per-database lock, on SQLite and PostgreSQL.

Real APScheduler with its SQLAlchemyJobStore on the test's migrated database; real
lock rows. What a user would notice: a step due while the bot was down still wakes
it after a restart (once), a cancelled step never does, and a second bot on the
same database refuses to start.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot.instance_lock import (
    NAME,
    STALE_AFTER,
    AlreadyRunning,
    Fenced,
    InstanceLock,
    host_identity,
)
from bot.scheduler import Scheduler, sync_url
from storage import escalation, repo, session_factory

Sessions = async_sessionmaker[AsyncSession]


async def _until(predicate: object, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():  # type: ignore[operator]
        if loop.time() > deadline:
            raise TimeoutError("condition not met")
        await asyncio.sleep(0.02)


async def test_jobs_survive_a_restart_fire_once_late_and_cancelled_ones_never(
    migrated_url: str,
) -> None:
    woken: list[int] = []

    async def runner(step_id: int) -> None:
        woken.append(step_id)

    first = Scheduler(migrated_url, runner)
    first.start()
    soon = datetime.now(UTC) + timedelta(seconds=1)
    first.schedule(1, soon)  # due while "the bot is down"
    first.schedule(2, soon)  # cancelled before it is due
    first.schedule(3, datetime.now(UTC) + timedelta(hours=1))  # far in the future
    first.cancel([2])
    assert await first.pending_jobs() == 2  # (read after the queued adds and removal)
    first.shutdown()  # the bot stops before step 1 is due
    await asyncio.sleep(1.5)
    assert woken == []

    second = Scheduler(migrated_url, runner)
    second.start()
    try:
        await _until(lambda: woken == [1])
        await asyncio.sleep(0.5)
        assert woken == [1], "the missed step fires once, the cancelled one never"
        assert await second.pending_jobs() == 1  # step 3 is still waiting
    finally:
        second.shutdown()


async def test_a_job_wakes_within_its_second(migrated_url: str) -> None:
    woken: dict[int, datetime] = {}

    async def runner(step_id: int) -> None:
        woken[step_id] = datetime.now(UTC)

    scheduler = Scheduler(migrated_url, runner)
    scheduler.start()
    try:
        due = {n: datetime.now(UTC) + timedelta(seconds=0.3 + n * 0.2) for n in range(5)}
        for n, at in due.items():
            scheduler.schedule(n, at)
        await _until(lambda: len(woken) == 5)
        assert all(woken[n] >= due[n] for n in due), "never early"
        assert max((woken[n] - due[n]).total_seconds() for n in due) < 1.0
    finally:
        scheduler.shutdown()


def test_the_job_store_uses_the_same_database_with_a_blocking_driver() -> None:
    assert sync_url("sqlite+aiosqlite:////data/x.db") == "sqlite:////data/x.db"
    assert sync_url("postgresql+asyncpg://u@h/db") == "postgresql+psycopg://u@h/db"


async def test_a_second_bot_on_the_same_database_refuses_to_start(sessions: Sessions) -> None:
    first = InstanceLock(sessions)
    await first.acquire()
    second = InstanceLock(sessions)
    second.pid = os.getpid() + 100_000  # another process ...
    second.host = "other-host"  # ... on another machine
    try:
        with pytest.raises(AlreadyRunning, match="another Socialjour is running"):
            await second.acquire()
    finally:
        await first.release()
    await second.acquire()  # released: the next one may run
    await second.release()


async def test_a_dead_holder_on_this_host_is_taken_over_at_once(sessions: Sessions) -> None:
    # A process that held the lock and was killed (SIGKILL): its row stays behind.
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    ghost = InstanceLock(sessions)
    ghost.pid = int(dead.stdout)
    now = datetime.now(UTC)
    async with sessions() as session, session.begin():
        assert (
            await escalation.acquire_lock(
                session,
                name=NAME,
                holder="ghost",
                host=ghost.host,
                pid=ghost.pid,
                now=now,
                stale_before=now - timedelta(seconds=30),
            )
            is None
        )
    restarted = InstanceLock(sessions)
    await restarted.acquire()  # no wait for the heartbeat to go stale
    async with sessions() as session:
        row = await escalation.get_lock(session, name=NAME)
    assert row is not None and row.holder == restarted.holder
    await restarted.release()


async def test_a_holder_on_another_machine_with_the_same_host_name_is_not_taken_over(
    sessions: Sessions,
) -> None:
    # Two containers (or machines) may share a host name: the process id of the other
    # one means nothing here, so its live lease is not taken over as "gone".
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    here = host_identity()
    assert socket.gethostname() in here
    now = datetime.now(UTC)
    async with sessions() as session, session.begin():
        await escalation.acquire_lock(
            session,
            name=NAME,
            holder="twin",
            host=here.replace("boot ", "boot 0"),  # same name, another boot: another machine
            pid=int(dead.stdout),
            now=now,
            stale_before=now - timedelta(seconds=30),
        )
    second = InstanceLock(sessions)
    with pytest.raises(AlreadyRunning, match="another Socialjour is running"):
        await second.acquire()


async def test_a_stale_holder_elsewhere_is_taken_over(sessions: Sessions) -> None:
    old = datetime.now(UTC) - timedelta(minutes=5)
    async with sessions() as session, session.begin():
        await escalation.acquire_lock(
            session,
            name=NAME,
            holder="elsewhere",
            host="other-host",
            pid=1,
            now=old,
            stale_before=old - timedelta(seconds=30),
        )
    lock = InstanceLock(sessions)
    await lock.acquire()
    await lock.release()


async def test_a_process_whose_lease_lapsed_commits_nothing(engine: AsyncEngine) -> None:
    # The bot's handlers commit through sessions that ask the lease first: a leader
    # paused (SIGSTOP) past its lease wakes up in the middle of a transaction, and
    # that transaction must not land after a standby has taken over.
    asleep = 0.0
    lock = InstanceLock(
        session_factory(engine), fencing=True, monotonic=lambda: time.monotonic() + asleep
    )
    await lock.acquire()
    handlers = session_factory(engine, check_before_commit=lock.ensure_leader)
    try:
        async with handlers() as session, session.begin():
            await repo.set_state(session, key="test.before", value="1")
        asleep = STALE_AFTER.total_seconds()  # paused past the lease
        with pytest.raises(Fenced):
            async with handlers() as session, session.begin():
                await repo.set_state(session, key="test.after", value="1")
    finally:
        await lock.release()
    async with session_factory(engine)() as session:
        assert await repo.get_state(session, key="test.before") == "1"
        assert await repo.get_state(session, key="test.after") is None
