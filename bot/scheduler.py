"""APScheduler wiring: thin, persistent wake-ups for due escalation rows.

The database rows (``escalation_steps``) are the truth; a job only carries a row id
and wakes :meth:`handlers.escalation.Escalator.wake`, which is safe to run twice.
Jobs live in APScheduler's ``SQLAlchemyJobStore`` on the installation's database;
at start-up they are rebuilt from the rows (stable ids, ``replace_existing``), and
a job missed while the bot was down runs once, late (``misfire_grace_time=None``,
``coalesce``).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime

from apscheduler.jobstores.base import JobLookupError
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.date import DateTrigger

log = logging.getLogger(__name__)

Runner = Callable[[int], Awaitable[None]]
#: The running process's escalator entry point; a job is pickled by reference to
#: :func:`wake` with the row id, never with a client or a session.
_RUNNER: Runner | None = None


async def wake(step_id: int) -> None:
    if _RUNNER is None:
        log.warning("escalation step %d woke before the bot was ready", step_id)
        return
    try:
        await _RUNNER(step_id)
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


class Scheduler:
    """The :class:`handlers.escalation.Wakeups` the bot uses."""

    def __init__(self, database_url: str, runner: Runner) -> None:
        self._runner = runner
        self._scheduler = AsyncIOScheduler(
            jobstores={
                "default": SQLAlchemyJobStore(
                    url=sync_url(database_url), tablename="apscheduler_jobs"
                )
            },
            job_defaults={"coalesce": True, "misfire_grace_time": None, "max_instances": 3},
            timezone=UTC,
        )

    def start(self) -> None:
        """Inside the running loop (AsyncIOScheduler's rule)."""
        global _RUNNER
        _RUNNER = self._runner
        self._scheduler.start()

    def shutdown(self) -> None:
        global _RUNNER
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)
        _RUNNER = None

    def schedule(self, step_id: int, at: datetime) -> None:
        self._scheduler.add_job(
            wake,
            DateTrigger(run_date=at.astimezone(UTC)),
            args=[step_id],
            id=job_id(step_id),
            replace_existing=True,
        )

    def cancel(self, step_ids: Iterable[int]) -> None:
        for step_id in step_ids:
            try:
                self._scheduler.remove_job(job_id(step_id))
            except JobLookupError:
                pass  # already ran, or never scheduled

    def pending_jobs(self) -> int:
        return len(self._scheduler.get_jobs())

    def next_run(self) -> datetime | None:
        times = [j.next_run_time for j in self._scheduler.get_jobs() if j.next_run_time]
        return min(times) if times else None
