"""What the benchmarks share: the throw-away stack, clients that stamp arrivals, statistics.

``bench/dialogue_latency.py`` and ``bench/signing_latency.py`` grew their own
copies of most of this (an ``Environment`` of processes, ``percentile``,
``versions``, ``cpu_seconds``, a bot-log reader, a safe ``asyncio.run``); new
benchmarks take it from here. The parts come from the test suite where they
exist (``tests.matrix_helpers``: the bot as a process, its config, E2EE users).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import importlib.metadata
import math
import os
import platform
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Coroutine, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from nio import (
    InviteMemberEvent,
    MatrixRoom,
    RoomMessageNotice,
    RoomMessageText,
    SyncResponse,
)

from bot.synapse_local import LocalSynapse
from tests.matrix_helpers import ROOT, BotProcess, MatrixUser

T = TypeVar("T")

#: Where benchmarks write their JSON by default (the files are not committed).
RESULTS = ROOT / "bench" / "results"
#: The clients' sync filter: as the bot's (``bot.matrix.SYNC_FILTER``), no event skipped.
SYNC_FILTER = {"room": {"timeline": {"limit": 500}}}
#: A bot log line: "2025-01-31 06:39:17,123 INFO handlers.escalation: ...".
LOG_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) (\w+) ([\w.]+): (.*)$")


class BenchError(RuntimeError):
    """The benchmark could not run as intended (not a slow result: a broken one)."""


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- statistics --------------------------------------------------------------------------------


def percentile(values: Iterable[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default); NaN when empty."""
    data = sorted(values)
    if not data:
        return math.nan
    position = (len(data) - 1) * q / 100
    low = math.floor(position)
    high = min(low + 1, len(data) - 1)
    return data[low] + (data[high] - data[low]) * (position - low)


def summary(values: list[float], unit: str = "ms") -> dict[str, float]:
    """Count, p50, p90, p99, max, min and mean, rounded to 0.1 ``unit``."""
    if not values:
        return {"samples": 0}
    return {
        "samples": len(values),
        f"p50_{unit}": round(percentile(values, 50), 1),
        f"p90_{unit}": round(percentile(values, 90), 1),
        f"p99_{unit}": round(percentile(values, 99), 1),
        f"max_{unit}": round(max(values), 1),
        f"min_{unit}": round(min(values), 1),
        f"mean_{unit}": round(sum(values) / len(values), 1),
    }


# -- the machine -------------------------------------------------------------------------------


def cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU time of a process so far (Linux /proc; None: this process)."""
    if pid is None:
        times = os.times()
        return times.user + times.system
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def warn_if_busy() -> None:
    load = os.getloadavg()[0]
    cpus = os.cpu_count() or 1
    if load > cpus / 2:
        log(
            f"warning: load average {load:.1f} on {cpus} CPUs before the start: other work "
            "on this machine will show in the numbers"
        )


def versions(*dists: str) -> dict[str, str]:
    """Python, the commit (and whether the tree had local changes), and ``dists``."""
    found = {"python": platform.python_version()}
    with contextlib.suppress(OSError, subprocess.CalledProcessError):
        found["socialjour_commit"] = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],  # noqa: S607 - a fixed, read-only command
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        # Other work in the tree shows in the figures: name it (read-only commands).
        diff = subprocess.run(
            ["git", "diff", "HEAD"],  # noqa: S607
            cwd=ROOT,
            capture_output=True,
            check=True,
        ).stdout
        changed = subprocess.run(
            ["git", "diff", "HEAD", "--name-only"],  # noqa: S607
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        found["socialjour_uncommitted"] = ", ".join(changed) or "none"
        found["socialjour_diff_sha256"] = hashlib.sha256(diff).hexdigest()[:12]
    for dist in dists:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            found[dist] = importlib.metadata.version(dist)
    return found


# -- the stack ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Account:
    user_id: str
    password: str


class Stack:
    """A temp dir with a throw-away Synapse and the bot; :meth:`cleanup` stops everything."""

    def __init__(self, prefix: str, *, keep: bool) -> None:
        self.base = Path(tempfile.mkdtemp(prefix=prefix))
        self.keep = keep
        self.synapse: LocalSynapse | None = None
        self.bot: BotProcess | None = None
        #: Other processes started for the run (stopped with SIGTERM, then SIGKILL).
        self.helpers: list[subprocess.Popen[bytes]] = []
        self.tag = secrets.token_hex(2)

    def start_synapse(self) -> LocalSynapse:
        self.synapse = LocalSynapse(self.base / "synapse")
        self.synapse.start()
        return self.synapse

    def register(self, localparts: list[str]) -> dict[str, Account]:
        """Fresh users (``localpart`` + the run's tag), eight registrations at a time."""
        synapse = self.synapse
        assert synapse is not None

        def one(localpart: str) -> Account:
            password = secrets.token_urlsafe(12)
            return Account(synapse.register_user(f"{localpart}{self.tag}", password), password)

        with ThreadPoolExecutor(max_workers=8) as pool:
            return dict(zip(localparts, pool.map(one, localparts), strict=True))

    def pids(self) -> dict[str, int]:
        found: dict[str, int] = {}
        synapse = getattr(self.synapse, "_process", None)
        if synapse is not None:
            found["synapse"] = synapse.pid
        if self.bot is not None and self.bot.proc is not None and self.bot.proc.poll() is None:
            found["socialjour"] = self.bot.proc.pid
        return found

    def cleanup(self) -> None:
        for proc in self.helpers:
            with contextlib.suppress(Exception):
                stop_process(proc)
        if self.bot is not None and self.bot.proc is not None:
            with contextlib.suppress(Exception):
                self.bot.stop(timeout=15)
        if self.synapse is not None:
            with contextlib.suppress(Exception):
                self.synapse.stop()
        if self.keep:
            log(f"kept {self.base}")
        else:
            shutil.rmtree(self.base, ignore_errors=True)


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 10) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)


# -- the bot's log -----------------------------------------------------------------------------


@dataclass(frozen=True)
class LogLine:
    at: float  # wall clock (epoch seconds), millisecond resolution
    level: str
    logger: str
    message: str


def read_log(path: Path) -> list[LogLine]:
    """Every line of a log written with ``bot.cli``'s format (local time stamps)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return []
    lines = []
    for raw in text.splitlines():
        if match := LOG_LINE.match(raw):
            stamp = datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f")
            lines.append(LogLine(stamp.timestamp(), match.group(2), match.group(3), match.group(4)))
    return lines


def log_problems(path: Path) -> list[str]:
    """WARNING and ERROR lines of a log, each with the exception that ended its traceback."""
    problems: list[str] = []
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return problems
    for line in text.splitlines():
        if " ERROR " in line or " WARNING " in line:
            problems.append(line[:300])
        elif problems and re.match(r"^[A-Za-z_.]+(Error|Exception)\b", line):
            problems[-1] += f" -> {line[:200]}"
    return problems


# -- clients -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Arrival:
    room_id: str
    sender: str
    body: str
    event_id: str
    #: Wall clock (``time.time()``) in the nio callback, right after decryption.
    at: float
    #: When the homeserver received it (``origin_server_ts``; same clock on loopback).
    server_at: float


class TimedUser(MatrixUser):
    """The test suite's E2EE user, noting the wall-clock arrival of every text and notice.

    It long-polls (``sync_timeout_ms``; Synapse answers as soon as there is
    something, so the timeout only sets how often an idle client asks again) and,
    with ``auto_join``, joins every room it is invited to as soon as it sees the
    invitation.
    """

    def __init__(
        self,
        base_url: str,
        account: Account,
        store: Path,
        *,
        sync_timeout_ms: int = 30_000,
        auto_join: bool = False,
    ) -> None:
        super().__init__(base_url, account.user_id, account.password, store)
        self.sync_timeout_ms = sync_timeout_ms
        self.arrivals: list[Arrival] = []
        self.auto_join = auto_join
        self.joining: set[str] = set()
        self.join_failures: list[str] = []
        #: Syncs in which a room's timeline came back ``limited`` (events were skipped).
        self.gaps = 0
        self._join_gate = asyncio.Semaphore(4)
        self._join_tasks: set[asyncio.Task[None]] = set()
        self.client.add_event_callback(self._stamp, (RoomMessageText, RoomMessageNotice))
        self.client.add_event_callback(self._invited, InviteMemberEvent)

    async def _stamp(self, room: MatrixRoom, event: RoomMessageText | RoomMessageNotice) -> None:
        if event.sender != self.user_id:
            self.arrivals.append(
                Arrival(
                    room.room_id,
                    event.sender,
                    event.body,
                    event.event_id,
                    time.time(),
                    event.server_timestamp / 1000,
                )
            )

    async def _invited(self, room: MatrixRoom, event: InviteMemberEvent) -> None:
        if not self.auto_join or event.state_key != self.user_id:
            return
        if event.membership != "invite" or room.room_id in self.joining:
            return
        self.joining.add(room.room_id)
        task = asyncio.create_task(self._join(room.room_id))
        self._join_tasks.add(task)
        task.add_done_callback(self._join_tasks.discard)

    async def _join(self, room_id: str) -> None:
        async with self._join_gate:
            for _ in range(3):
                resp = await self.client.join(room_id)
                if getattr(resp, "room_id", None) == room_id:
                    return
                await asyncio.sleep(1)
            self.join_failures.append(f"{room_id}: {resp}")

    def joined(self, room_ids: Iterable[str]) -> bool:
        rooms = self.client.rooms
        return all(r in rooms and self.user_id in rooms[r].users for r in room_ids)

    async def _sync(self, *, full_state: bool = False, timeout: int = 0) -> None:
        """:meth:`MatrixUser._sync` with a filter: without one, Synapse sends at most ten
        timeline events per room and sync, and a client in a busy room loses the rest."""
        resp = await self.client.sync(
            timeout=timeout, full_state=full_state, sync_filter=SYNC_FILTER
        )
        if isinstance(resp, SyncResponse):
            self.trust.invalidate(resp.device_list.changed)
            self.gaps += sum(1 for r in resp.rooms.join.values() if r.timeline.limited)
        c = self.client
        await c.send_to_device_messages()
        if c.should_upload_keys:
            await c.keys_upload()
        if c.should_query_keys:
            await c.keys_query()
        if c.should_claim_keys:
            await c.keys_claim(c.get_users_for_key_claiming())
        async with self._changed:
            self._changed.notify_all()

    async def _loop(self) -> None:
        while True:
            try:
                await self._sync(timeout=self.sync_timeout_ms)
            except asyncio.CancelledError:
                raise
            except Exception:
                await asyncio.sleep(0.5)

    async def close(self) -> None:
        for task in list(self._join_tasks):
            task.cancel()
        await asyncio.gather(*self._join_tasks, return_exceptions=True)
        await super().close()


# -- running -----------------------------------------------------------------------------------


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run`` whose clean-up cannot hang: tasks that do not finish within 5 s
    of being cancelled are left behind (several ``MatrixUser.wait`` on one client,
    cancelled together, can wait for each other's ``Condition`` lock forever)."""
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(coro)
    finally:
        try:
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.wait(pending, timeout=5))
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()


def interrupt_on_signals() -> None:
    """Ctrl-C and kill raise KeyboardInterrupt wherever the loop is (so ``finally``
    stops every process), also when started in the background where SIGINT is ignored."""

    def _interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
