"""What every benchmark shares: the throw-away stack, the machine, clients, statistics.

* the stack (:class:`Stack`): a temp dir, a local Synapse (``bot.synapse_local``,
  rate limits lifted), registered users, Socialjour as an operator runs it
  (``tests.matrix_helpers.BotProcess``), the echo bot (``bench.echo_bot``) and the
  development TSA (:class:`TsaServer`) when a benchmark asks for them; one
  :meth:`Stack.cleanup` stops everything, whatever happened;
* the machine: CPU time of a process (``/proc``; :class:`CpuMeter` over a phase),
  the load average and CPU count, versions of Python, the libraries and Synapse,
  the commit and any uncommitted change (:func:`machine`);
* statistics: :func:`percentile` (linear, as numpy), :func:`summary`;
* clients: :class:`TimedUser`, the test suite's E2EE user that stamps arrivals;
  :class:`SigningApi`, the signing page's HTTP calls;
* running: :func:`run_async` (an ``asyncio.run`` whose clean-up cannot hang),
  :func:`interrupt_on_signals`, :func:`gather_limited`.

The parts come from the test suite where they exist (``tests.matrix_helpers``:
the bot as a process, its config, E2EE users; ``tests.test_decision_matrix``:
the signing config).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import importlib.metadata
import json
import math
import os
import platform
import re
import secrets
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any, TypeVar

import aiohttp
from aiohttp import web
from nio import (
    InviteMemberEvent,
    MatrixRoom,
    RoomMessageNotice,
    RoomMessageText,
    SyncResponse,
)

from bot.synapse_local import LocalSynapse, SynapseError, free_port
from tests.matrix_helpers import ROOT, BotProcess, MatrixUser, bot_env, write_bot_config

T = TypeVar("T")

#: Where benchmarks write their JSON by default (the files are not committed).
RESULTS = ROOT / "bench" / "results"
#: The clients' sync filter: as the bot's (``bot.matrix``), no event skipped.
SYNC_FILTER = {"room": {"timeline": {"limit": 500}}}
#: A bot log line: "2025-01-31 06:39:17,123 INFO handlers.escalation: ...".
LOG_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) (\w+) ([\w.]+): (.*)$")
#: The libraries whose versions every result records.
DISTS = ("matrix-nio", "vodozemac", "matrix-synapse", "SQLAlchemy", "aiosqlite", "pyHanko")


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


def ratio(a: float, b: float) -> float:
    return a / b if b and not math.isnan(a) and not math.isnan(b) else math.nan


def fmt_ms(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "-"
    return f"{value:.0f}" if value >= 100 else f"{value:.1f}"


def verdict(met: bool | None) -> str:
    return "not measured" if met is None else "met" if met else "NOT met"


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


class CpuMeter:
    """CPU seconds each process spends between :meth:`start` and :meth:`stop`.

    ``pids`` maps a name to a pid; None stands for this process (the driver, with
    all the benchmark's clients). A process that is gone at either end is left out.
    """

    def __init__(self, pids: Mapping[str, int | None]) -> None:
        self.pids = dict(pids)
        self._before: dict[str, float | None] = {}

    def start(self) -> CpuMeter:
        self._before = {k: cpu_seconds(pid) for k, pid in self.pids.items()}
        return self

    def stop(self) -> dict[str, float]:
        used: dict[str, float] = {}
        for key, pid in self.pids.items():
            before, after = self._before.get(key), cpu_seconds(pid)
            if before is not None and after is not None:
                used[key] = after - before
        return used


def add_cpu(total: dict[str, float], more: Mapping[str, float]) -> None:
    for key, value in more.items():
        total[key] = total.get(key, 0.0) + value


def cpus() -> int:
    """CPUs this process may run on (``nproc``)."""
    with contextlib.suppress(AttributeError, OSError):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def warn_if_busy() -> None:
    load = os.getloadavg()[0]
    if load > cpus() / 2:
        log(
            f"warning: load average {load:.1f} on {cpus()} CPUs before the start: other work "
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


def machine(load_before: list[float], code: Mapping[str, str]) -> dict[str, Any]:
    """The ``machine`` block of a result: CPUs, load before and now, temp dir, versions."""
    return {
        "cpus": cpus(),
        "load_average_before": load_before,
        "load_average_after": load_average(),
        "platform": platform.platform(),
        "temp_dir": tempfile.gettempdir(),
        **code,
    }


def machine_line(info: Mapping[str, Any]) -> str:
    """One line for the printed report: the machine and the versions."""
    before, after = info["load_average_before"], info["load_average_after"]
    parts = [
        f"{info['cpus']} CPUs",
        f"load {before[0]:.2f}->{after[0]:.2f} (1 min)",
        f"Python {info.get('python', '?')}",
        f"Synapse {info.get('matrix-synapse', '?')}",
        f"nio {info.get('matrix-nio', '?')}",
        f"vodozemac {info.get('vodozemac', '?')}",
        f"commit {info.get('socialjour_commit', '?')}",
    ]
    if info.get("socialjour_uncommitted", "none") != "none":
        parts.append(f"uncommitted: {info['socialjour_uncommitted']}")
    return "; ".join(parts)


# -- the stack ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Account:
    user_id: str
    password: str

    @property
    def localpart(self) -> str:
        return self.user_id[1:].split(":", 1)[0]


class Stack:
    """A temp dir with a throw-away Synapse, the bot and helpers; :meth:`cleanup` stops all."""

    def __init__(self, prefix: str, *, keep: bool) -> None:
        self.base = Path(tempfile.mkdtemp(prefix=prefix))
        self.keep = keep
        self.synapse: LocalSynapse | None = None
        self.bot: BotProcess | None = None
        self.echo: subprocess.Popen[bytes] | None = None
        self.tsa: TsaServer | None = None
        #: Other processes started for the run (stopped with SIGTERM, then SIGKILL).
        self.helpers: list[subprocess.Popen[bytes]] = []
        self._files: list[IO[bytes]] = []
        self.tag = secrets.token_hex(2)

    # -- Synapse and users ---------------------------------------------------------------------

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

    def resolve_alias(self, alias: str) -> str:
        synapse = self.synapse
        assert synapse is not None
        quoted = urllib.parse.quote(alias, safe="")
        try:
            answer = synapse.request("GET", f"/_matrix/client/v3/directory/room/{quoted}")
        except SynapseError as exc:
            raise BenchError(f"cannot resolve {alias}: {exc}") from None
        return str(answer["room_id"])

    def client_store(self, account: Account) -> Path:
        return self.base / "clients" / account.localpart

    # -- Socialjour ----------------------------------------------------------------------------

    @property
    def duty_alias(self) -> str:
        assert self.synapse is not None
        return f"#bench-duty-{self.tag}:{self.synapse.server_name}"

    def make_bot(
        self,
        account: Account,
        *,
        members: list[str],
        leads: list[str],
        extra: str = "",
        database_url: str | None = None,
        log_level: str | None = None,
    ) -> BotProcess:
        """Socialjour's config (``write_bot_config``) and process, not started yet."""
        synapse = self.synapse
        assert synapse is not None
        folder = self.bot_folder
        web_port = free_port()
        if log_level is not None:
            extra += f'\n[logging]\nlevel = "{log_level}"\n'
        config = write_bot_config(
            folder,
            synapse=synapse,
            bot_user=account.user_id,
            duty_alias=self.duty_alias,
            members=members,
            leads=leads,
            web_port=web_port,
            database_url=database_url,
            extra=extra,
        )
        self.bot = BotProcess(config, bot_env(account.password), web_port, folder / "bot.log")
        return self.bot

    @property
    def bot_folder(self) -> Path:
        return self.base / "socialjour"

    def start_bot(self, timeout: float = 180) -> BotProcess:
        """Start the bot made by :meth:`make_bot`; it is ready when ``/healthz`` says ok.

        With many duty members the start-up invites each of them, which takes a while.
        """
        assert self.bot is not None
        try:
            self.bot.start(timeout=timeout)
        except RuntimeError as exc:  # the bot exited during start-up
            raise BenchError(str(exc)) from None
        return self.bot

    # -- the echo bot ---------------------------------------------------------------------------

    def start_echo_bot(self, account: Account, timeout: float = 90) -> None:
        """``bench.echo_bot`` in its own process; returns once it printed ``READY``."""
        synapse = self.synapse
        assert synapse is not None
        from bench.echo_bot import PASSWORD_ENV

        errors = (self.base / "echo_bot.log").open("ab")
        self._files.append(errors)
        self.echo = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [
                sys.executable,
                "-m",
                "bench.echo_bot",
                "--homeserver",
                synapse.base_url,
                "--user-id",
                account.user_id,
                "--store",
                str(self.base / "echo_store"),
            ],
            env={**os.environ, PASSWORD_ENV: account.password, "PYTHONUNBUFFERED": "1"},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=errors,
            cwd=ROOT,
            start_new_session=True,  # Ctrl-C reaches the driver only; cleanup() stops it
        )
        stdout = self.echo.stdout
        assert stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            readable, _, _ = select.select([stdout], [], [], 0.2)
            if readable:
                line = stdout.readline().decode(errors="replace")
                if line.startswith("READY"):
                    return
                if not line:
                    break
        tail = (self.base / "echo_bot.log").read_text(errors="replace")[-3000:]
        raise BenchError(f"the echo bot did not get ready:\n{tail}")

    # -- the development TSA --------------------------------------------------------------------

    def start_tsa(self) -> TsaServer:
        """The dev RFC 3161 TSA on loopback, for the bot's PKI (``signing_config`` makes it)."""
        self.tsa = TsaServer(self.bot_folder / "pki", free_port())
        return self.tsa

    # -- processes -----------------------------------------------------------------------------

    def pids(self) -> dict[str, int]:
        """The running processes by name: ``synapse``, ``socialjour``, ``echo_bot``."""
        found: dict[str, int] = {}
        synapse = getattr(self.synapse, "_process", None)
        if synapse is not None:
            found["synapse"] = synapse.pid
        if self.bot is not None and self.bot.proc is not None and self.bot.proc.poll() is None:
            found["socialjour"] = self.bot.proc.pid
        if self.echo is not None and self.echo.poll() is None:
            found["echo_bot"] = self.echo.pid
        return found

    def meter(self, *names: str) -> CpuMeter:
        """A started :class:`CpuMeter` over these processes and ``driver`` (this one)."""
        pids: dict[str, int | None] = {k: v for k, v in self.pids().items() if k in names}
        return CpuMeter({**pids, "driver": None}).start()

    def dump_bot_tasks(self) -> None:
        """Ask the bot to log where every task waits (SIGUSR1), for a failed run."""
        bot = self.bot
        if bot is not None and bot.proc is not None and bot.proc.poll() is None:
            with contextlib.suppress(OSError):
                bot.proc.send_signal(signal.SIGUSR1)
                time.sleep(1)

    def cleanup(self) -> None:
        """Stop everything that was started (SIGTERM, then SIGKILL); remove the temp dir."""
        for proc in [*self.helpers, *([self.echo] if self.echo is not None else [])]:
            with contextlib.suppress(Exception):
                stop_process(proc)
        if self.bot is not None and self.bot.proc is not None:
            with contextlib.suppress(Exception):
                self.bot.stop(timeout=15)
        if self.tsa is not None:
            with contextlib.suppress(Exception):
                self.tsa.stop()
        if self.synapse is not None:
            with contextlib.suppress(Exception):
                self.synapse.stop()
        for fh in self._files:
            with contextlib.suppress(OSError):
                fh.close()
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
    if proc.stdout is not None:
        with contextlib.suppress(OSError):
            proc.stdout.close()


# -- the development TSA, on a thread of its own -----------------------------------------------


class TsaServer:
    """``signing.devtsa`` on 127.0.0.1, served by a process of its own
    (``python -m bench.harness tsa``).

    A real TSA runs on another machine: nothing the driver does can delay its
    answer. On a thread of this process it could, as its answers waited for the GIL
    behind the driver's twenty-odd E2EE clients: during a burst a time-stamp took
    67–206 ms (timed in the seal process) against 59–151 ms from its own process,
    where the dev TSA's own work is about 55 ms. Its own process still shares this
    machine's cores.
    :meth:`start` needs the dev PKI, which
    ``tests.test_decision_matrix.signing_config`` creates.
    """

    def __init__(self, pki_folder: Path, port: int) -> None:
        self.pki_folder = pki_folder
        self.port = port
        self.url = f"http://127.0.0.1:{port}/"
        #: The server's handling time of each request, one line (ms) each.
        self._times = pki_folder.parent / f"tsa-{port}.times"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30) -> None:
        self._times.write_text("")
        command = ["tsa", str(self.pki_folder), str(self.port), str(self._times)]
        self._process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-m", "bench.harness", *command],
            cwd=ROOT,
            stdin=subprocess.PIPE,  # closed when this process ends, however it ends
            stdout=subprocess.PIPE,
        )
        assert self._process.stdout is not None
        ready, _, _ = select.select([self._process.stdout], [], [], timeout)
        if not ready or not self._process.stdout.readline().startswith(b"READY"):
            self.stop()
            raise BenchError("the development TSA did not start")

    @property
    def handled_ms(self) -> list[float]:
        """Server-side handling time of every request so far, in ms."""
        text = self._times.read_text() if self._times.exists() else ""
        return [float(line) for line in text.splitlines() if line]

    @property
    def requests(self) -> int:
        return len(self.handled_ms)

    def stop(self) -> None:
        if self._process is not None:
            if self._process.stdin is not None:
                with contextlib.suppress(OSError):
                    self._process.stdin.close()
            stop_process(self._process)
            self._process = None


def _serve_tsa(pki_folder: Path, port: int, times: Path) -> None:
    """The TSA process: ``signing.devtsa`` until SIGTERM, each request timed."""
    from signing.devpki import DevPki
    from signing.devtsa import create_tsa_app

    pki = DevPki(pki_folder)
    app = create_tsa_app(pki.tsa_cert, pki.tsa_key)
    out = times.open("a", buffering=1)

    @web.middleware
    async def timed(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        began = time.perf_counter()
        try:
            return await handler(request)
        finally:
            out.write(f"{(time.perf_counter() - began) * 1000:.3f}\n")

    app.middlewares.append(timed)

    async def serve() -> None:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        print("READY", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)

        # The driver's end closes our stdin, even a SIGKILL that skips its clean-up.
        def stdin_readable() -> None:
            if not os.read(sys.stdin.fileno(), 4096):
                stop.set()

        loop.add_reader(sys.stdin.fileno(), stdin_readable)
        try:
            await stop.wait()
        finally:
            await runner.cleanup()
            out.close()

    asyncio.run(serve())


# -- the signing API, as the page's script uses it ---------------------------------------------


class SigningApi:
    """JSON in, JSON out, one session cookie; aiohttp, so the driver's loop never blocks."""

    def __init__(self, http: aiohttp.ClientSession, base: str, token: str) -> None:
        self.http = http
        self.url = f"{base}/api/v1/signing/{token}"
        self.cookie: str | None = None

    async def call(
        self, method: str, path: str = "", body: dict[str, Any] | None = None
    ) -> tuple[int, Any]:
        headers = {"Cookie": self.cookie} if self.cookie else {}
        async with self.http.request(
            method, self.url + path, json=body, headers=headers
        ) as response:
            raw = await response.read()
            cookie = response.headers.get("Set-Cookie")
            if cookie:
                self.cookie = cookie.split(";", 1)[0]
            if response.content_type == "application/json":
                return response.status, json.loads(raw)
            return response.status, raw


# -- the bot's log -----------------------------------------------------------------------------


@dataclass(frozen=True)
class LogLine:
    at: float  # wall clock (epoch seconds), millisecond resolution
    level: str
    logger: str
    message: str


def parse_log(text: str) -> list[LogLine]:
    """Every line of a log written with ``bot.cli``'s format (local time stamps)."""
    lines = []
    for raw in text.splitlines():
        if match := LOG_LINE.match(raw):
            stamp = datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f")
            lines.append(LogLine(stamp.timestamp(), match.group(2), match.group(3), match.group(4)))
    return lines


def read_log(path: Path) -> list[LogLine]:
    try:
        return parse_log(path.read_text(errors="replace"))
    except OSError:
        return []


class LogFollower:
    """Reads what a log gained since the last look."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0

    def skip(self) -> None:
        with contextlib.suppress(OSError):
            self.offset = self.path.stat().st_size

    def new_lines(self) -> list[LogLine]:
        try:
            with self.path.open("rb") as fh:
                fh.seek(self.offset)
                data = fh.read()
        except OSError:
            return []
        end = data.rfind(b"\n") + 1
        self.offset += end
        return parse_log(data[:end].decode(errors="replace"))


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

    async def pause_sync(self) -> None:
        """Stop syncing: the long-poll in flight is cancelled; :meth:`resume_sync` goes on
        from the last stored token."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    def resume_sync(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._loop())

    async def close(self) -> None:
        for task in list(self._join_tasks):
            task.cancel()
        await asyncio.gather(*self._join_tasks, return_exceptions=True)
        await super().close()


async def join_duty_room(user: MatrixUser, duty_room: str, timeout: float = 180) -> None:
    """Join the duty room, once the bot's invitation (sent at its start) has arrived."""
    try:
        await user.wait(lambda: duty_room in user.invites, timeout=timeout)
    except TimeoutError:
        raise BenchError(f"{user.localpart} was not invited to the duty room") from None
    await user.join(duty_room)


# -- running -----------------------------------------------------------------------------------


def run_async(coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
    """``asyncio.run`` whose clean-up cannot hang: tasks that do not finish within 5 s
    of being cancelled are left behind (several ``MatrixUser.wait`` on one client,
    cancelled together, can wait for each other's ``Condition`` lock forever).
    With ``timeout`` the whole coroutine is given that many seconds (BenchError after)."""

    async def bounded() -> T:
        try:
            return await asyncio.wait_for(coro, timeout)
        except TimeoutError:
            raise BenchError(f"the run did not finish within {timeout:.0f} s") from None

    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(bounded() if timeout else coro)
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


async def gather_limited(coros: Iterable[Awaitable[T]], limit: int) -> list[T]:
    """``asyncio.gather`` with at most ``limit`` running at once; all cancelled on failure."""
    gate = asyncio.Semaphore(limit)

    async def one(coro: Awaitable[T]) -> T:
        async with gate:
            return await coro

    tasks = [asyncio.ensure_future(one(c)) for c in coros]
    try:
        return list(await asyncio.gather(*tasks))
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def write_json(path: Path, data: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n")
    log(f"wrote {path}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["tsa"] and len(sys.argv) == 5:
        _serve_tsa(Path(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4]))
    else:
        sys.exit("usage: python -m bench.harness tsa PKI_FOLDER PORT TIMES_FILE")
