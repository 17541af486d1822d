"""Exactly one acting bot per database: a lease row, renewed by a heartbeat.

Two schedulers on one job store would fire every step twice, and two processes
on one Matrix device would corrupt its crypto store, so only the holder of the
lease acts. On SQLite a second ``socialjour run`` refuses to start. On PostgreSQL
it waits as a *standby* (:meth:`InstanceLock.wait_until_leader`) and takes over
when the lease is free: at once when the holder died on this host (SIGKILL, a
container's power loss), else when its heartbeat has gone stale
(:data:`STALE_AFTER`, so the clocks of the two hosts must agree to a second or
two: run NTP).

Fencing. The leader counts its lease on the monotonic clock from the moment it
last renewed it, and stops acting :data:`FENCE_MARGIN` before a standby may take
over. Every request to the homeserver, every SMS, call and e-mail first calls
:meth:`InstanceLock.ensure_leader`; a process whose lease has lapsed (it was
paused with SIGSTOP, its machine froze, the database was unreachable past the
lease) or whose heartbeat finds another holder stops at once, with exit status
:data:`EXIT_FENCED`, before it sends anything (the supervisor restarts it as a
standby). The holder's random token in the row is the fencing token: a heartbeat
only renews a row that still holds it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from handlers.context import local_time
from storage import escalation
from storage.models import InstanceLock as LockRow

log = logging.getLogger(__name__)

NAME = "scheduler"
#: A lease whose heartbeat is older than this may be taken over by a standby.
STALE_AFTER = timedelta(seconds=10)
HEARTBEAT_EVERY = 2.0
#: The leader stops acting this long before its lease could be taken over.
FENCE_MARGIN = 3.0
#: How often a standby looks whether the lease has become free.
STANDBY_POLL = 1.0
#: The exit status of a process that lost the lease (EX_TEMPFAIL: restart me).
EXIT_FENCED = 75


class AlreadyRunning(Exception):
    """Another live process holds the lock."""


class Fenced(Exception):
    """This process no longer holds the lease and must not act."""


def host_identity() -> str:
    """This host as the lock row names it: the host name, and where Linux tells them, the
    PID namespace and the boot. A process id is only checked for life ("gone at once")
    on the same host; two containers or machines that share a host name are two hosts."""
    name = socket.gethostname()
    try:
        namespace = os.readlink("/proc/self/ns/pid").removeprefix("pid:")
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()[:8]
    except OSError:
        return name[:255]
    return f"{name} (pid ns {namespace}, boot {boot})"[:255]


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
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        fencing: bool = False,
        exit_when_fenced: bool = False,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.sessions = sessions
        #: The clock the lease is counted on (never the wall clock, which may jump).
        self.monotonic = monotonic
        self.holder = secrets.token_hex(16)
        self.host = host_identity()
        self.pid = os.getpid()
        self._task: asyncio.Task[None] | None = None
        self.lost = asyncio.Event()
        #: Whether a lapsed lease stops this process: where a standby can exist
        #: (PostgreSQL). On SQLite no second process runs, and a slow disk must not
        #: stop the only one.
        self.fencing = fencing
        #: ``socialjour run`` exits the moment it is fenced; a test inspects instead.
        self.exit_when_fenced = exit_when_fenced
        #: Until when (monotonic) this process may act; 0 while it holds no lease.
        self._valid_until = 0.0
        #: What a standby last saw of the leader (for /healthz), and when it took over.
        self.leader: LockRow | None = None
        self.took_over_at: float | None = None

    @property
    def holds(self) -> bool:
        if self.lost.is_set():
            return False
        return not self.fencing or self.monotonic() < self._valid_until

    def ensure_leader(self) -> None:
        """Raise :class:`Fenced` (after stopping the process, see the module) unless
        this process holds a live lease. Called before anything acts on the world."""
        if not self.holds:
            self._fence("the lease has lapsed" if not self.lost.is_set() else "lease lost")

    def _fence(self, why: str) -> None:
        if not self.lost.is_set():
            log.critical("fenced: %s; this process stops acting now", why)
        self.lost.set()
        self._valid_until = 0.0
        if self.exit_when_fenced:
            # Not a clean shutdown: that would sync, send and write the crypto store,
            # which the new leader owns now. The supervisor restarts us as a standby.
            logging.shutdown()
            os._exit(EXIT_FENCED)
        raise Fenced(why)

    def _renewed(self, started: float) -> None:
        """The lease was written at ``started`` (monotonic, taken before the write)."""
        self._valid_until = started + STALE_AFTER.total_seconds() - FENCE_MARGIN

    async def wait_until_leader(self, on_standby: Callable[[], None] | None = None) -> None:
        """Take the lease; while another live process holds it, wait as a standby
        (PostgreSQL installations; SQLite refuses a second process instead)."""
        announced = False
        while True:
            try:
                await self.acquire()
            except AlreadyRunning:
                if not announced:
                    leader = self.leader
                    log.info(
                        "standby: the leader is process %s on %s; taking over when it stops",
                        leader.pid if leader else "?",
                        leader.host if leader else "?",
                    )
                    if on_standby is not None:
                        on_standby()
                    announced = True
                await asyncio.sleep(STANDBY_POLL)
                continue
            if announced:
                self.took_over_at = self.monotonic()
                log.info("standby: the lease is ours; taking over")
            return

    async def acquire(self) -> None:
        take_over: list[str] = []
        for _ in range(2):
            started = self.monotonic()
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
                self._renewed(started)
                self.lost.clear()
                self._task = asyncio.create_task(self._beat(), name="instance-lock")
                return
            self.leader = other
            if other.host == self.host and not _alive(other.pid):
                log.info("taking over the lock of process %d, which is gone", other.pid)
                take_over = [other.holder]
                continue
            raise AlreadyRunning(
                f"another Socialjour is running against this database (host {other.host}, "
                f"process {other.pid}, since {local_time(other.acquired_at)}). Stop it first; "
                f"if it has died on another host, start again after "
                f"{int(STALE_AFTER.total_seconds())} s. (On PostgreSQL a second process "
                f"waits as a standby instead; SQLite has one process only.)"
            )
        raise AlreadyRunning("could not take over the lock of a process that is gone")

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_EVERY)
            if not self.holds:
                # Asleep (SIGSTOP, a frozen machine) or cut off past the lease: a
                # standby may have taken over already.
                self._fence_in_task("the lease lapsed before it could be renewed")
                return
            started = self.monotonic()
            try:
                async with self.sessions() as session, session.begin():
                    held = await escalation.heartbeat(
                        session, name=NAME, holder=self.holder, now=datetime.now(UTC)
                    )
            except Exception as exc:
                log.warning("lock heartbeat failed (%s); trying again", type(exc).__name__)
                continue
            if not held:
                self._fence_in_task("another process took the scheduler lock")
                return
            self._renewed(started)

    def _fence_in_task(self, why: str) -> None:
        try:
            self._fence(why)
        except Fenced:
            pass  # run() sees ``lost`` and stops

    async def release(self) -> None:
        self._valid_until = 0.0
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        try:
            async with self.sessions() as session, session.begin():
                await escalation.release_lock(session, name=NAME, holder=self.holder)
        except Exception as exc:
            log.warning("could not release the scheduler lock: %s", type(exc).__name__)
