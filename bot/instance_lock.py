"""Exactly one running bot per database: a lock row, renewed by a heartbeat.

Two schedulers on one job store would fire every step twice, so a second
``socialjour run`` against the same database refuses to start. A holder that
died on this host (SIGKILL, power loss of a container) is taken over at once;
one on another host only after its heartbeat has gone stale.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from handlers.context import local_time
from storage import escalation

log = logging.getLogger(__name__)

NAME = "scheduler"
STALE_AFTER = timedelta(seconds=30)
HEARTBEAT_EVERY = 10.0


class AlreadyRunning(Exception):
    """Another live process holds the lock."""


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # an earlier life of this very process id (a restarted container)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class InstanceLock:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions
        self.holder = secrets.token_hex(16)
        self.host = socket.gethostname()[:255]
        self.pid = os.getpid()
        self._task: asyncio.Task[None] | None = None
        self.lost = asyncio.Event()

    async def acquire(self) -> None:
        take_over: list[str] = []
        for _ in range(2):
            now = datetime.now(UTC)
            async with self.sessions() as session, session.begin():
                other = await escalation.acquire_lock(
                    session,
                    name=NAME,
                    holder=self.holder,
                    host=self.host,
                    pid=self.pid,
                    now=now,
                    stale_before=now - STALE_AFTER,
                    take_over=take_over,
                )
            if other is None:
                self._task = asyncio.create_task(self._beat(), name="instance-lock")
                return
            if other.host == self.host and not _alive(other.pid):
                log.info("taking over the lock of process %d, which is gone", other.pid)
                take_over = [other.holder]
                continue
            raise AlreadyRunning(
                f"another Socialjour is running against this database (host {other.host}, "
                f"process {other.pid}, since {local_time(other.acquired_at)}). Stop it first; "
                f"if it has died on another host, start again after "
                f"{int(STALE_AFTER.total_seconds())} s."
            )
        raise AlreadyRunning("could not take over the lock of a process that is gone")

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_EVERY)
            try:
                async with self.sessions() as session, session.begin():
                    held = await escalation.heartbeat(
                        session, name=NAME, holder=self.holder, now=datetime.now(UTC)
                    )
            except Exception as exc:
                log.warning("lock heartbeat failed (%s); trying again", type(exc).__name__)
                continue
            if not held:
                log.error("another process took the scheduler lock; stopping")
                self.lost.set()
                return

    async def release(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        try:
            async with self.sessions() as session, session.begin():
                await escalation.release_lock(session, name=NAME, holder=self.holder)
        except Exception as exc:
            log.warning("could not release the scheduler lock: %s", type(exc).__name__)
