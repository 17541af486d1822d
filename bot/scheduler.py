"""APScheduler wiring: thin, persistent wake-ups for due escalation rows.

The database rows (``escalation_steps``) are the truth; a job only carries a row id
and wakes :meth:`handlers.escalation.Escalator.wake`, which is safe to run twice.
Jobs live in APScheduler's ``SQLAlchemyJobStore`` on the installation's database;
at start-up they are rebuilt from the rows (stable ids, ``replace_existing``), and
a job missed while the bot was down runs once, late (``misfire_grace_time=None``,
``coalesce``).

The job store is synchronous SQLAlchemy. On SQLite a write waits for the database's
one write lock, which an async transaction on the event loop may hold; waiting for
it *on* the loop would stop that transaction from ever finishing. So every job-store
operation (adding, removing, finding due jobs) runs on one worker thread, and the
job itself only hands the row id back to the loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from apscheduler.executors.pool import ThreadPoolExecutor as JobThreads
from apscheduler.jobstores.base import JobLookupError
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.asyncio import AsyncIOScheduler, run_in_event_loop
from apscheduler.triggers.date import DateTrigger

log = logging.getLogger(__name__)

Runner = Callable[[int], Awaitable[None]]
#: The running process's escalator entry point and its loop; a job is pickled by
#: reference to :func:`wake` with the row id, never with a client or a session.
_RUNNER: Runner | None = None
_LOOP: asyncio.AbstractEventLoop | None = None


def wake(step_id: int) -> None:
    """The job: hand the row id to the bot's loop (runs on a scheduler thread)."""
    runner, loop = _RUNNER, _LOOP
    if runner is None or loop is None or loop.is_closed():
        log.warning("escalation step %d woke while the bot was not running", step_id)
        return
    asyncio.run_coroutine_threadsafe(_run(runner, step_id), loop)


async def _run(runner: Runner, step_id: int) -> None:
    try:
        await runner(step_id)
    except Exception:
        log.exception("escalation step %d failed", step_id)


def sync_url(database_url: str) -> str:
    """The job store is synchronous SQLAlchemy: the same database, a blocking driver."""
    for prefix, replacement in (
        ("sqlite+aiosqlite://", "sqlite://"),
        ("postgresql+asyncpg://", "postgresql+psycopg://"),
    ):
        if database_url.startswith(prefix):
            return replacement + database_url[len(prefix) :]
    return database_url


def job_id(step_id: int) -> str:
    return f"escalation-step-{step_id}"


class _OffLoopScheduler(AsyncIOScheduler):
    """AsyncIOScheduler whose job-store work runs on one worker thread, not the loop."""

    def __init__(self, io: ThreadPoolExecutor, **options: Any) -> None:
        super().__init__(**options)
        self._io = io

    @run_in_event_loop
    def wakeup(self) -> None:
        self._stop_timer()
        loop = self._eventloop

        def process() -> None:
            try:
                wait_seconds = self._process_jobs()
            except Exception:
                log.exception("the scheduler could not look for due jobs; retrying")
                wait_seconds = 5.0
            if loop is not None and not loop.is_closed():
                loop.call_soon_threadsafe(self._start_timer, wait_seconds)

        self._io.submit(process)


class Scheduler:
    """The :class:`handlers.escalation.Wakeups` the bot uses."""

    def __init__(self, database_url: str, runner: Runner) -> None:
        self._runner = runner
        self._io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="scheduler-io")
        self._scheduler = _OffLoopScheduler(
            self._io,
            jobstores={
                "default": SQLAlchemyJobStore(
                    url=sync_url(database_url), tablename="apscheduler_jobs"
                )
            },
            executors={"default": JobThreads(2)},
            job_defaults={"coalesce": True, "misfire_grace_time": None, "max_instances": 3},
            timezone=UTC,
        )

    def start(self) -> None:
        """Inside the running loop (AsyncIOScheduler's rule)."""
        global _RUNNER, _LOOP
        _RUNNER, _LOOP = self._runner, asyncio.get_running_loop()
        self._scheduler.start()

    def shutdown(self) -> None:
        global _RUNNER, _LOOP
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)
        # Never wait here: a queued job-store write may wait for the SQLite lock that an
        # async transaction holds, and that transaction needs this (the loop's) thread.
        self._io.shutdown(wait=False, cancel_futures=True)
        _RUNNER, _LOOP = None, None

    def schedule(self, step_id: int, at: datetime) -> None:
        self._io.submit(self._add, step_id, at)

    def cancel(self, step_ids: Iterable[int]) -> None:
        ids = list(step_ids)
        if ids:
            self._io.submit(self._remove, ids)

    def _add(self, step_id: int, at: datetime) -> None:
        try:
            self._scheduler.add_job(
                wake,
                DateTrigger(run_date=at.astimezone(UTC)),
                args=[step_id],
                id=job_id(step_id),
                replace_existing=True,
            )
        except Exception:
            # The row stays pending: the periodic check runs it if no job wakes it.
            log.exception("could not schedule escalation step %d", step_id)

    def _remove(self, step_ids: list[int]) -> None:
        for step_id in step_ids:
            try:
                self._scheduler.remove_job(job_id(step_id))
            except JobLookupError:
                pass  # already ran, or never scheduled
            except Exception:
                log.exception("could not unschedule escalation step %d", step_id)

    async def pending_jobs(self) -> int:
        jobs = await asyncio.get_running_loop().run_in_executor(self._io, self._scheduler.get_jobs)
        return len(jobs)
