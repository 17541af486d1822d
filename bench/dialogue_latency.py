"""Dialogue latency: a worker's encrypted answer -> the bot's next encrypted question.

Everything runs on this machine over loopback: one throw-away Synapse
(``bot.synapse_local.LocalSynapse``, rate limits lifted), Socialjour as an
operator runs it (``python -m bot run --config``, one municipality, Swedish),
and ``bench.echo_bot`` as a separate process on the same homeserver, as the
baseline. For every concurrency level N, N fresh worker users (real E2EE nio
clients, cross-signed) each

* open a case with ``!ny lvu6`` in the duty room, join the case room and answer
  the LVU form's questions one after the other (the bot's reply is the next
  question, ``Fråga n av 17``); and
* talk to the echo bot in a room of their own (the reply is the echo).

All N dialogues of a round run at once; each worker sends its next message as
soon as the reply has arrived (plus a random think time, ``--think-ms``). The
rounds alternate ABBA (echo, Socialjour, Socialjour, echo) so that drift during
a level weighs on both bots alike. One sample is the time from just before the
worker's client starts sending (it encrypts, then PUTs) until the worker's
client has decrypted the reply (stamped in the nio event callback, inside the
worker's sync). The first exchange of every dialogue is a warm-up and not
counted (it sets up the Megolm session).

    python -m bench.dialogue_latency [--dialogues 1,10,50] [--answers 10] [--out r.json]

See bench/README.md for what the numbers mean.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import json
import logging
import math
import os
import platform
import random
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
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TypeVar

from nio import (
    MatrixRoom,
    RoomCreateResponse,
    RoomMessageNotice,
    RoomMessageText,
    RoomPreset,
    RoomSendResponse,
    RoomVisibility,
    UnknownEvent,
)

from bot.synapse_local import LocalSynapse, SynapseError, free_port
from tests.matrix_helpers import ROOT, BotProcess, MatrixUser, bot_env, write_bot_config

from .echo_bot import PASSWORD_ENV

T = TypeVar("T")

#: A valid answer to every question of lvu6 this benchmark meets, by question number.
#: 10 "nej" hides 11 (and shows 12); 15 "nej" hides 16; 13 is optional and skipped.
ANSWERS: dict[int, str] = {
    1: "Test Testsson",
    2: "19121212-1212",
    3: "1",  # the only configured municipality
    4: "Hemma",
    5: "1",  # missförhållanden i hemmet
    6: "Polisen larmade efter bråk i hemmet. Grannar hörde skrik under natten.",
    7: "Barnet kan inte vara kvar i hemmet i natt; vårdnadshavarna är berusade.",
    8: "Jourhem i Skövde",
    9: "Mamma Maria Testsson, 070-111 22 33, finns hemma.",
    10: "nej",
    12: "Gick inte att nå per telefon kl 02.10; nytt försök kl 08.00 av jouren.",
    13: "!hoppa",
    14: "Barnet omhändertas omedelbart med stöd av 6 § LVU. Vården behövs enligt 2 § LVU.",
    15: "nej",
    17: "nu",
}
#: Questions the bot follows with a poll: the worker waits for the poll before answering,
#: as a person would, so the answer never queues behind the poll's send.
POLL_QUESTIONS = frozenset({3, 5, 10, 15})
QUESTION = re.compile(r"Fråga (\d+) av (\d+)")
COMPLETE = "Alla frågor är besvarade"
FORM = "lvu6"
MUNICIPALITY = """
[[municipalities]]
id = "skovde"
name = "Skövde kommun"
intake_room_alias = "#bench-mottagning-skovde:localhost"
"""
MEGOLM = "m.megolm.v1.aes-sha2"

REPLY_TIMEOUT = 60.0
SETUP_TIMEOUT = 180.0
INVITE_TIMEOUT = 60.0
#: Workers sending ``!ny`` at the same time during setup.
CASE_OPENING_GATE = 5
GOAL_RATIO = 1.5
GOAL_LEVEL = 50


class BenchError(RuntimeError):
    """The benchmark could not run as intended (not a slow result: a broken one)."""


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- the worker's client --------------------------------------------------------------


@dataclass(frozen=True)
class Arrival:
    """Something the worker's client decrypted: a text/notice or a poll."""

    kind: str  # "text" or "poll"
    sender: str
    body: str
    at: float  # time.perf_counter() in the nio callback, i.e. right after decryption


class BenchUser(MatrixUser):
    """The test suite's E2EE user, with arrival time stamps and per-room inboxes.

    ``sync_timeout_ms=None`` keeps :class:`MatrixUser`'s own sync loop (1 s
    long-poll); otherwise the loop long-polls for that long. Synapse answers a
    long-poll as soon as there is something new, so the timeout only sets how
    often an idle client asks again.
    """

    def __init__(
        self,
        base_url: str,
        user_id: str,
        password: str,
        store: Path,
        *,
        sync_timeout_ms: int | None,
    ) -> None:
        super().__init__(base_url, user_id, password, store)
        self.sync_timeout_ms = sync_timeout_ms
        self._inboxes: dict[str, asyncio.Queue[Arrival]] = {}
        self.client.add_event_callback(self._stamp_text, (RoomMessageText, RoomMessageNotice))  # type: ignore[arg-type]
        self.client.add_event_callback(self._stamp_poll, UnknownEvent)  # type: ignore[arg-type]

    def inbox(self, room_id: str) -> asyncio.Queue[Arrival]:
        return self._inboxes.setdefault(room_id, asyncio.Queue())

    async def _stamp_text(
        self, room: MatrixRoom, event: RoomMessageText | RoomMessageNotice
    ) -> None:
        if event.sender != self.user_id:
            self.inbox(room.room_id).put_nowait(
                Arrival("text", event.sender, event.body, time.perf_counter())
            )

    async def _stamp_poll(self, room: MatrixRoom, event: UnknownEvent) -> None:
        if event.type.endswith("poll.start") and event.sender != self.user_id:
            self.inbox(room.room_id).put_nowait(
                Arrival("poll", event.sender, "", time.perf_counter())
            )

    async def _loop(self) -> None:
        if self.sync_timeout_ms is None:
            await super()._loop()
            return
        while True:
            try:
                await self._sync(timeout=self.sync_timeout_ms)
            except asyncio.CancelledError:
                raise
            except Exception:
                await asyncio.sleep(0.5)

    async def pause_sync(self) -> None:
        """Stop syncing: the long-poll in flight is cancelled, and the next sync starts
        again from the last stored token."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    def resume_sync(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._loop())

    async def send_to(self, room_id: str, body: str, only: str) -> None:
        """Send a text whose room key goes to ``only``'s devices and no other member's.

        For ``!ny`` in the duty room: every worker sharing its key with every other
        worker's device makes N^2 Olm sessions (claims, to-device messages, key
        uploads) that cost minutes at N=50 and only the bot needs to read the command.
        """
        await self.trust.prepare_room(room_id)
        client = self.client
        for member in client.rooms[room_id].users:
            if member in (self.user_id, only):
                continue
            for device in client.device_store.active_user_devices(member):
                if not device.blacklisted:
                    client.blacklist_device(device)
        resp = await client.room_send(
            room_id, "m.room.message", {"msgtype": "m.text", "body": body}
        )
        if not isinstance(resp, RoomSendResponse):
            raise BenchError(f"could not send {body!r}: {resp}")


async def _next(queue: asyncio.Queue[Arrival], deadline: float, what: str) -> Arrival:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise BenchError(f"timed out waiting for {what}")
    try:
        return await asyncio.wait_for(queue.get(), remaining)
    except TimeoutError:
        raise BenchError(f"timed out waiting for {what}") from None


@dataclass
class Sample:
    ms: float
    #: lvu6: the question answered; echo: the message's index in the dialogue.
    step: int


class Worker:
    """One duty social worker with a case room (Socialjour) and a room with the echo bot."""

    def __init__(
        self,
        user: BenchUser,
        *,
        duty_room: str,
        bot_user: str,
        echo_user: str,
        think_ms: float,
        seed: int,
        gate: asyncio.Semaphore,
    ) -> None:
        self.user = user
        self.gate = gate
        #: Why a case had to be opened again (``!ny`` lost, first question missing).
        self.setup_retries: list[str] = []
        self.duty_room = duty_room
        self.echo_user = echo_user
        self.bot_user = bot_user
        self.think_ms = think_ms
        self.rng = random.Random(seed)
        self.case_room: str | None = None
        self.echo_room: str | None = None
        #: The question the bot asked last in the case room; None once the form is complete.
        self.question: int | None = None
        #: Whether this case's warm-up answer has been given.
        self.case_warm = False
        #: Texts sent to the echo bot so far (the first is the warm-up).
        self.echo_sent = 0
        self.cases_opened = 0
        #: Bot messages that were neither the awaited question nor a poll (should be none).
        self.unexpected: list[str] = []

    # -- setup ------------------------------------------------------------------------

    async def join_duty_room(self) -> None:
        """Join the duty room (everyone was invited when the bot started).

        Every worker joins before anyone opens a case and nobody leaves: a member
        who leaves makes nio rotate the bot's Megolm session for the room, and a
        rotation during a send breaks that send (see bench/README.md).
        """
        user = self.user
        await user.wait(lambda: self.duty_room in user.invites, timeout=SETUP_TIMEOUT)
        await user.join(self.duty_room)

    async def open_case(self, *, pause_after: bool = False) -> None:
        """``!ny lvu6``, join the case room, wait for question 1. Not measured.

        Only ``CASE_OPENING_GATE`` workers at a time: Socialjour handles ``!ny`` one
        after the other anyway, and a burst of commands in the duty room loses some
        (more than 10 events between two of its syncs: see bench/README.md). A case
        whose first question never comes is left behind and another one opened.
        With ``pause_after`` the worker's client syncs only while it opens its case,
        so that the duty room's traffic does not wake every other worker's client.
        """
        user = self.user
        for _attempt in range(3):
            known = set(user.invites)

            def new_invite(known: set[str] = known) -> str | None:
                return next((r for r in user.invites if r not in known), None)

            async with self.gate:
                user.resume_sync()
                await user.send_to(self.duty_room, f"!ny {FORM}", only=self.bot_user)
                try:
                    room = await user.wait(new_invite, timeout=INVITE_TIMEOUT)
                except TimeoutError:
                    self.setup_retries.append("no case room after !ny")
                    log(f"{user.localpart}: no case room {INVITE_TIMEOUT:.0f} s after !ny")
                    continue
            await user.join(room)
            try:
                _, question = await self._next_question(room, INVITE_TIMEOUT)
            except BenchError:
                self.setup_retries.append(f"no first question: {self.describe(room)}")
                log(self.setup_retries[-1])
                continue
            if question != 1:
                raise BenchError(f"a new case started at question {question}, not 1")
            self.case_room, self.question = room, question
            self.case_warm = False
            self.cases_opened += 1
            if pause_after:
                await user.pause_sync()
            return
        raise BenchError(f"{user.localpart}: could not open a case: {self.setup_retries}")

    async def create_echo_room(self) -> None:
        client = self.user.client
        resp = await client.room_create(
            visibility=RoomVisibility.private,
            preset=RoomPreset.private_chat,
            invite=[self.echo_user],
            initial_state=[
                {"type": "m.room.encryption", "state_key": "", "content": {"algorithm": MEGOLM}}
            ],
        )
        if not isinstance(resp, RoomCreateResponse):
            raise BenchError(f"could not create a room with the echo bot: {resp}")
        room_id = resp.room_id

        def echo_joined() -> bool:
            room = client.rooms.get(room_id)
            return (
                room is not None
                and self.echo_user in room.users
                and self.echo_user not in room.invited_users
            )

        await self.user.wait(echo_joined, timeout=SETUP_TIMEOUT)
        self.echo_room = room_id

    # -- the measured dialogues ----------------------------------------------------------

    async def _think(self) -> None:
        if self.think_ms > 0:
            await asyncio.sleep(self.rng.uniform(0, self.think_ms) / 1000)

    async def _next_question(self, room: str, timeout: float) -> tuple[Arrival, int | None]:
        """The bot's next question in ``room`` (its number), or the form's completion (None)."""
        queue = self.user.inbox(room)
        deadline = time.monotonic() + timeout
        while True:
            try:
                got = await _next(queue, deadline, "the bot's next question")
            except BenchError as exc:
                raise BenchError(f"{exc} ({self.describe(room)})") from None
            if got.kind != "text":
                self.unexpected.append("(a poll before its question)")
                continue
            if match := QUESTION.search(got.body):
                return got, int(match.group(1))
            if COMPLETE in got.body:
                return got, None
            if "Ärende" not in got.body and "Formulär" not in got.body:  # welcome, form chosen
                self.unexpected.append(got.body[:200])

    def describe(self, room: str) -> str:
        """What this worker's client has seen in ``room``, for error messages."""
        user = self.user
        seen = [r.body[:50] for r in user.received if r.room_id == room][-4:]
        undecrypted = len(user.undecrypted.get(room, []))
        return f"{user.localpart} in {room}: {undecrypted} undecryptable events; last {seen}"

    async def _wait_poll(self, room: str) -> None:
        queue = self.user.inbox(room)
        deadline = time.monotonic() + REPLY_TIMEOUT
        while (got := await _next(queue, deadline, "the question's poll")).kind != "poll":
            self.unexpected.append(got.body[:200])

    async def socialjour(self, measured: int) -> list[Sample]:
        """Answer ``measured`` questions; a case's first answer is its warm-up, not measured."""
        samples: list[Sample] = []
        while len(samples) < measured:
            if self.question is None:  # the form is complete: a new case, not measured
                await self.open_case()
            room, number = self.case_room, self.question
            assert room is not None and number is not None
            answer = ANSWERS.get(number)
            if answer is None:
                raise BenchError(f"the bot asked question {number}, which has no answer here")
            if number in POLL_QUESTIONS:
                await self._wait_poll(room)
            await self._think()
            queue = self.user.inbox(room)
            while not queue.empty():  # nothing should be left; keep it out of the next wait
                self.unexpected.append(queue.get_nowait().body[:200])
            began = time.perf_counter()
            await self.user.send(room, answer)
            reply, following = await self._next_question(room, REPLY_TIMEOUT)
            if following == number:
                raise BenchError(
                    f"question {number} was asked again after the answer {answer!r}: "
                    f"{self.unexpected[-1:] or reply.body[:200]}"
                )
            if self.case_warm:
                samples.append(Sample((reply.at - began) * 1000, number))
            self.case_warm = True
            self.question = following
        return samples

    async def echo(self, measured: int) -> list[Sample]:
        """Send ``measured`` texts to the echo bot (plus the warm-up, the very first one)."""
        room = self.echo_room
        assert room is not None
        queue = self.user.inbox(room)
        samples: list[Sample] = []
        while len(samples) < measured:
            index, self.echo_sent = self.echo_sent, self.echo_sent + 1
            await self._think()
            body = f"eko {index} {secrets.token_hex(6)}"
            began = time.perf_counter()
            await self.user.send(room, body)
            deadline = time.monotonic() + REPLY_TIMEOUT
            while True:
                got = await _next(queue, deadline, "the echo")
                if got.kind == "text" and got.sender == self.echo_user and got.body == body:
                    break
                self.unexpected.append(got.body[:200])
            if index:
                samples.append(Sample((got.at - began) * 1000, index))
        return samples


# -- statistics -------------------------------------------------------------------------


def percentile(values: Iterable[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default); NaN when empty."""
    data = sorted(values)
    if not data:
        return math.nan
    position = (len(data) - 1) * q / 100
    low = math.floor(position)
    high = min(low + 1, len(data) - 1)
    return data[low] + (data[high] - data[low]) * (position - low)


def cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU time of a process so far (Linux /proc), None if unknown."""
    if pid is None:
        return os.times().user + os.times().system
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Phase:
    name: str
    samples: list[Sample] = field(default_factory=list)
    wall_s: float = 0.0
    #: CPU seconds each process used during the phase ("driver" is this process).
    cpu_s: dict[str, float] = field(default_factory=dict)

    def add(self, other: Phase) -> None:
        """Fold another round of the same bot into this one."""
        self.samples.extend(other.samples)
        self.wall_s += other.wall_s
        for key, value in other.cpu_s.items():
            self.cpu_s[key] = self.cpu_s.get(key, 0.0) + value

    def cpu_ms_per_reply(self) -> dict[str, float]:
        n = len(self.samples)
        return {k: round(v * 1000 / n, 1) for k, v in self.cpu_s.items()} if n else {}

    @property
    def ms(self) -> list[float]:
        return [s.ms for s in self.samples]

    def summary(self) -> dict[str, Any]:
        ms = self.ms
        return {
            "samples": len(ms),
            "p50_ms": round(percentile(ms, 50), 2),
            "p90_ms": round(percentile(ms, 90), 2),
            "p99_ms": round(percentile(ms, 99), 2),
            "max_ms": round(max(ms), 2) if ms else math.nan,
            "mean_ms": round(sum(ms) / len(ms), 2) if ms else math.nan,
            "wall_s": round(self.wall_s, 2),
            "replies_per_s": round(len(ms) / self.wall_s, 1) if self.wall_s else math.nan,
            "cpu_s": {k: round(v, 2) for k, v in self.cpu_s.items()},
            "cpu_ms_per_reply": self.cpu_ms_per_reply(),
        }


@dataclass
class Level:
    dialogues: int
    answers_per_dialogue: int
    socialjour: Phase
    echo: Phase
    setup_s: float
    cases_opened: int
    setup_retries: list[str]
    unexpected: list[str]

    def ratio(self, q: float) -> float:
        return percentile(self.socialjour.ms, q) / percentile(self.echo.ms, q)

    def as_json(self) -> dict[str, Any]:
        return {
            "dialogues": self.dialogues,
            "answers_per_dialogue": self.answers_per_dialogue,
            "setup_s": round(self.setup_s, 1),
            "cases_opened": self.cases_opened,
            "setup_retries": self.setup_retries,
            "ratio_p50": round(self.ratio(50), 3),
            "ratio_p99": round(self.ratio(99), 3),
            "socialjour": {
                **self.socialjour.summary(),
                "raw_ms": [round(s.ms, 3) for s in self.socialjour.samples],
                "question": [s.step for s in self.socialjour.samples],
            },
            "echo": {
                **self.echo.summary(),
                "raw_ms": [round(s.ms, 3) for s in self.echo.samples],
            },
            "unexpected_messages": self.unexpected[:20],
        }


# -- processes and cleanup ---------------------------------------------------------------


class Environment:
    """Everything started outside this process, stopped by :meth:`cleanup` in any case."""

    def __init__(self, base: Path, *, keep: bool) -> None:
        self.base = base
        self.keep = keep
        self.synapse: LocalSynapse | None = None
        self.bot: BotProcess | None = None
        self.echo: subprocess.Popen[bytes] | None = None
        self.echo_log: IO[bytes] | None = None

    def pids(self) -> dict[str, int | None]:
        """Processes whose CPU time each phase accounts (None: this one)."""
        synapse = getattr(self.synapse, "_process", None)
        bot = self.bot.proc if self.bot is not None else None
        found: dict[str, int | None] = {
            "synapse": synapse.pid if synapse is not None else None,
            "socialjour": bot.pid if bot is not None else None,
            "echo_bot": self.echo.pid if self.echo is not None else None,
        }
        return {**{k: v for k, v in found.items() if v is not None}, "driver": None}

    def cleanup(self) -> None:
        with contextlib.suppress(Exception):
            self._stop_echo()
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

    def _stop_echo(self) -> None:
        proc, self.echo = self.echo, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        if self.echo_log is not None:
            self.echo_log.close()
            self.echo_log = None


def start_echo_bot(env: Environment, synapse: LocalSynapse, user_id: str, password: str) -> None:
    """Start ``bench.echo_bot`` in its own process and wait for its ``READY`` line."""
    env.echo_log = (env.base / "echo_bot.log").open("ab")
    env.echo = subprocess.Popen(  # noqa: S603 - our own interpreter and module
        [
            sys.executable,
            "-m",
            "bench.echo_bot",
            "--homeserver",
            synapse.base_url,
            "--user-id",
            user_id,
            "--store",
            str(env.base / "echo_store"),
        ],
        env={**os.environ, PASSWORD_ENV: password, "PYTHONUNBUFFERED": "1"},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=env.echo_log,
        cwd=ROOT,
        start_new_session=True,  # stopped by cleanup(), after the driver's clients
    )


def wait_echo_ready(env: Environment, timeout: float = 60) -> None:
    proc = env.echo
    assert proc is not None and proc.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        readable, _, _ = select.select([proc.stdout], [], [], 0.2)
        if readable:
            line = proc.stdout.readline().decode(errors="replace")
            if line.startswith("READY"):
                return
            if not line:
                break
    tail = (env.base / "echo_bot.log").read_text(errors="replace")[-3000:]
    raise BenchError(f"the echo bot did not get ready:\n{tail}")


# -- the run ---------------------------------------------------------------------------------


@dataclass
class Account:
    user_id: str
    password: str


async def gather_limited(coros: Iterable[Awaitable[T]], limit: int) -> list[T]:
    gate = asyncio.Semaphore(limit)

    async def one(coro: Awaitable[T]) -> T:
        async with gate:
            return await coro

    return list(await asyncio.gather(*(one(c) for c in coros)))


def rounds(order: str, answers: int) -> list[tuple[str, int]]:
    """The measuring rounds of one level: (bot, messages per dialogue).

    ``abba`` measures half of the messages echo, Socialjour, then the other half
    Socialjour, echo, so that a drift during the level (the homeserver's database
    grows, other work on the machine comes and goes) weighs on both alike.
    """
    first, second = (answers + 1) // 2, answers // 2
    plan = {
        "abba": [("echo", first), ("socialjour", first), ("socialjour", second), ("echo", second)],
        "echo-first": [("echo", answers), ("socialjour", answers)],
        "socialjour-first": [("socialjour", answers), ("echo", answers)],
    }[order]
    return [(name, count) for name, count in plan if count > 0]


async def run_phase(
    name: str,
    workers: list[Worker],
    step: Callable[[Worker], Awaitable[list[Sample]]],
    pids: dict[str, int | None],
) -> Phase:
    phase = Phase(name)
    cpu_before = {k: cpu_seconds(pid) for k, pid in pids.items()}
    began = time.perf_counter()
    results = await asyncio.gather(*(step(w) for w in workers))
    phase.wall_s = time.perf_counter() - began
    for key, pid in pids.items():
        before, after = cpu_before[key], cpu_seconds(pid)
        if before is not None and after is not None:
            phase.cpu_s[key] = after - before
    for samples in results:
        phase.samples.extend(samples)
    return phase


async def run_level(
    n: int,
    accounts: list[Account],
    *,
    synapse: LocalSynapse,
    duty_room: str,
    bot_user: str,
    echo_user: str,
    answers: int,
    args: argparse.Namespace,
    store: Path,
    pids: dict[str, int | None],
) -> Level:
    began = time.perf_counter()
    timeout = None if args.worker_sync_timeout == 0 else args.worker_sync_timeout
    users = [
        BenchUser(
            synapse.base_url,
            a.user_id,
            a.password,
            store / a.user_id[1:].split(":")[0],
            sync_timeout_ms=timeout,
        )
        for a in accounts
    ]
    gate = asyncio.Semaphore(CASE_OPENING_GATE)
    workers = [
        Worker(
            u,
            duty_room=duty_room,
            bot_user=bot_user,
            echo_user=echo_user,
            think_ms=args.think_ms,
            seed=args.seed + i,
            gate=gate,
        )
        for i, u in enumerate(users)
    ]
    try:
        log(f"N={n}: logging in and cross-signing {n} workers")
        await gather_limited((u.start() for u in users), 10)
        await asyncio.gather(*(w.join_duty_room() for w in workers))
        log(f"N={n}: opening {n} cases ({CASE_OPENING_GATE} at a time)")
        await asyncio.gather(*(u.pause_sync() for u in users))
        await asyncio.gather(*(w.open_case(pause_after=True) for w in workers))
        for u in users:
            u.resume_sync()
        await asyncio.gather(*(w.create_echo_room() for w in workers))
        setup_s = time.perf_counter() - began
        log(f"N={n}: set up in {setup_s:.1f} s")
        steps: dict[tuple[str, int], Callable[[Worker], Awaitable[list[Sample]]]] = {}
        for name, count in rounds(args.order, answers):
            if name == "echo":
                steps[name, count] = lambda w, c=count: w.echo(c)
            else:
                steps[name, count] = lambda w, c=count: w.socialjour(c)
        phases = {"echo": Phase("echo"), "socialjour": Phase("socialjour")}
        for name, count in rounds(args.order, answers):
            log(f"N={n}: {name}, {count} messages per dialogue")
            phases[name].add(await run_phase(name, workers, steps[name, count], pids))
        echo, socialjour = phases["echo"], phases["socialjour"]
    finally:
        await asyncio.gather(*(u.close() for u in users), return_exceptions=True)
    return Level(
        dialogues=n,
        answers_per_dialogue=answers,
        socialjour=socialjour,
        echo=echo,
        setup_s=setup_s,
        cases_opened=sum(w.cases_opened for w in workers),
        setup_retries=[r for w in workers for r in w.setup_retries],
        unexpected=[m for w in workers for m in w.unexpected],
    )


async def measure(
    args: argparse.Namespace,
    synapse: LocalSynapse,
    accounts: dict[int, list[Account]],
    duty_alias: str,
    bot_user: str,
    echo_user: str,
    store: Path,
    pids: dict[str, int | None],
) -> list[Level]:
    # The bot created the duty room at start-up; every worker is invited already.
    resolved = resolve_alias(synapse, duty_alias)
    levels = []
    for n in args.dialogues:
        answers = max(args.answers, math.ceil(args.min_samples / n))
        levels.append(
            await run_level(
                n,
                accounts[n],
                synapse=synapse,
                duty_room=resolved,
                bot_user=bot_user,
                echo_user=echo_user,
                answers=answers,
                args=args,
                store=store,
                pids=pids,
            )
        )
        print_level(levels[-1])
    return levels


def resolve_alias(synapse: LocalSynapse, alias: str) -> str:
    quoted = urllib.parse.quote(alias, safe="")
    try:
        answer = synapse.request("GET", f"/_matrix/client/v3/directory/room/{quoted}")
    except SynapseError as exc:
        raise BenchError(f"cannot resolve {alias}: {exc}") from None
    return str(answer["room_id"])


def register_accounts(
    synapse: LocalSynapse, prefix: str, levels: list[int]
) -> dict[int, list[Account]]:
    """Fresh users for every level (registered up front: the bot's config lists them)."""
    wanted = [(n, f"{prefix}n{n}w{i}") for n in levels for i in range(n)]

    def register(localpart: str) -> Account:
        password = secrets.token_urlsafe(12)
        return Account(synapse.register_user(localpart, password), password)

    with ThreadPoolExecutor(max_workers=8) as pool:
        made = list(pool.map(register, [name for _, name in wanted]))
    accounts: dict[int, list[Account]] = {n: [] for n in levels}
    for (n, _), account in zip(wanted, made, strict=True):
        accounts[n].append(account)
    return accounts


# -- output ------------------------------------------------------------------------------------


def _fmt(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.0f}" if value >= 100 else f"{value:.1f}"


HEADER = (
    f"{'N':>3} {'samples':>11}  {'Socialjour p50':>14} {'p99':>7}  "
    f"{'echo p50':>8} {'p99':>7}  {'ratio p50':>9} {'p99':>6}  {'replies/s sj/echo':>17}"
)


def level_row(level: Level) -> str:
    sj, ec = level.socialjour, level.echo
    return (
        f"{level.dialogues:>3} {f'{len(sj.samples)}/{len(ec.samples)}':>11}  "
        f"{_fmt(percentile(sj.ms, 50)):>11} ms {_fmt(percentile(sj.ms, 99)):>7}  "
        f"{_fmt(percentile(ec.ms, 50)):>5} ms {_fmt(percentile(ec.ms, 99)):>7}  "
        f"{level.ratio(50):>9.2f} {level.ratio(99):>6.2f}  "
        f"{sj.summary()['replies_per_s']:>8}/{ec.summary()['replies_per_s']}"
    )


CPU_HEADER = (
    f"{'N':>3}  CPU ms per reply:  {'Synapse sj/echo':>15}  {'bot sj/echo':>11}  "
    f"{'worker clients sj/echo':>22}"
)


def cpu_row(level: Level) -> str:
    sj, ec = level.socialjour.cpu_ms_per_reply(), level.echo.cpu_ms_per_reply()

    def pair(a: float | None, b: float | None) -> str:
        return f"{'-' if a is None else f'{a:.1f}'}/{'-' if b is None else f'{b:.1f}'}"

    return (
        f"{level.dialogues:>3}  {'':18} {pair(sj.get('synapse'), ec.get('synapse')):>15}  "
        f"{pair(sj.get('socialjour'), ec.get('echo_bot')):>11}  "
        f"{pair(sj.get('driver'), ec.get('driver')):>22}"
    )


def print_level(level: Level) -> None:
    log(f"N={level.dialogues}: done")
    print(HEADER, file=sys.stderr)
    print(level_row(level), file=sys.stderr)
    print(CPU_HEADER, file=sys.stderr)
    print(cpu_row(level), file=sys.stderr, flush=True)
    if level.setup_retries:
        log(f"N={level.dialogues}: cases opened again: {level.setup_retries}")
    if level.unexpected:
        log(
            f"N={level.dialogues}: {len(level.unexpected)} unexpected messages, e.g. "
            f"{level.unexpected[0]!r}"
        )


def goal(levels: list[Level]) -> dict[str, Any]:
    at = next((lv for lv in levels if lv.dialogues == GOAL_LEVEL), None)
    if at is None:
        return {"level": GOAL_LEVEL, "measured": False}
    r50, r99 = at.ratio(50), at.ratio(99)
    return {
        "level": GOAL_LEVEL,
        "measured": True,
        "ratio_max": GOAL_RATIO,
        "ratio_p50": round(r50, 3),
        "ratio_p99": round(r99, 3),
        "met_p50": r50 < GOAL_RATIO,
        "met_p99": r99 < GOAL_RATIO,
    }


def report(levels: list[Level], args: argparse.Namespace) -> str:
    lines = [
        "",
        "Time from a worker's encrypted answer to the decrypted reply "
        f"(think time 0-{args.think_ms:g} ms, worker sync long-poll "
        f"{args.worker_sync_timeout or 1000} ms):",
        HEADER,
        *(level_row(lv) for lv in levels),
        "",
        CPU_HEADER,
        *(cpu_row(lv) for lv in levels),
        "",
    ]
    g = goal(levels)
    if g["measured"]:
        verdict = {True: "met", False: "NOT met"}
        lines.append(
            f"Goal ratio < {GOAL_RATIO} at N={GOAL_LEVEL}: "
            f"p50 {g['ratio_p50']:.2f} {verdict[g['met_p50']]}, "
            f"p99 {g['ratio_p99']:.2f} {verdict[g['met_p99']]}"
        )
    else:
        lines.append(f"Goal (ratio < {GOAL_RATIO} at N={GOAL_LEVEL}): N={GOAL_LEVEL} not run")
    return "\n".join(lines)


def log_problems(text: str) -> list[str]:
    """ERROR lines of a log, each with the exception that ended its traceback (if any)."""
    problems: list[str] = []
    for line in text.splitlines():
        if " ERROR " in line:
            problems.append(line[:300])
        elif problems and re.match(r"^[A-Za-z_.]+(Error|Exception)\b", line):
            problems[-1] += f" -> {line[:200]}"
    return problems


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    with contextlib.suppress(OSError, subprocess.CalledProcessError):
        found["socialjour_commit"] = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],  # noqa: S607 - a fixed git command
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    for dist in ("matrix-nio", "vodozemac", "matrix-synapse"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            found[dist] = importlib.metadata.version(dist)
    return found


# -- main ------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.dialogue_latency",
        description="Socialjour's answer-to-next-question latency against an E2EE echo bot.",
    )
    parser.add_argument(
        "--dialogues",
        default="1,10,50",
        type=lambda s: [int(x) for x in s.split(",") if x.strip()],
        help="concurrency levels, comma-separated (default 1,10,50)",
    )
    parser.add_argument(
        "--answers", type=int, default=10, help="measured answers per dialogue (default 10)"
    )
    parser.add_argument(
        "--min-samples",
        type=int,
        default=40,
        help="at least this many samples per level and bot: small levels answer more "
        "(default 40, so N=1 answers 40 questions over several cases)",
    )
    parser.add_argument(
        "--think-ms",
        type=float,
        default=100.0,
        help="each worker waits uniformly 0..this many ms before every message (default 100)",
    )
    parser.add_argument(
        "--worker-sync-timeout",
        type=int,
        default=30_000,
        help="the workers' sync long-poll in ms; 0 keeps tests.matrix_helpers' own loop "
        "(1000 ms) (default 30000)",
    )
    parser.add_argument(
        "--order",
        choices=("abba", "echo-first", "socialjour-first"),
        default="abba",
        help="abba (default): half the messages echo then Socialjour, the other half "
        "Socialjour then echo, so that drift during a level weighs on both alike",
    )
    parser.add_argument("--seed", type=int, default=1, help="random seed for think times")
    parser.add_argument("--out", type=Path, help="write every sample and summary as JSON here")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs, databases)")
    args = parser.parse_args(argv)
    if not args.dialogues or min(args.dialogues) < 1 or args.answers < 1:
        parser.error("--dialogues and --answers must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # The workers see the duty room's earlier messages, sent before their devices existed;
    # nio's complaints about those (and about Olm sessions it then sets up) are expected.
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    logging.getLogger("nio").setLevel(logging.CRITICAL)
    env = Environment(Path(tempfile.mkdtemp(prefix="socialjour-bench-")), keep=args.keep)
    started = time.perf_counter()
    load_before = os.getloadavg()
    if load_before[0] > (os.cpu_count() or 1) / 2:
        log(
            f"warning: load average {load_before[0]:.1f} on {os.cpu_count()} CPUs before the "
            "start: other work on this machine will show in the numbers"
        )
    try:
        log(f"Synapse in {env.base}")
        synapse = env.synapse = LocalSynapse(env.base / "synapse")
        synapse.start()
        tag = secrets.token_hex(2)
        bot_password, echo_password = secrets.token_urlsafe(12), secrets.token_urlsafe(12)
        bot_user = synapse.register_user(f"socialjour{tag}", bot_password)
        echo_user = synapse.register_user(f"echo{tag}", echo_password)
        levels = sorted(set(args.dialogues), key=args.dialogues.index)
        args.dialogues = levels
        log(f"registering {sum(levels)} workers")
        accounts = register_accounts(synapse, f"w{tag}", levels)
        everyone = [a.user_id for n in levels for a in accounts[n]]

        duty_alias = f"#bench-duty-{tag}:{synapse.server_name}"
        web_port = free_port()
        folder = env.base / "socialjour"
        config = write_bot_config(
            folder,
            synapse=synapse,
            bot_user=bot_user,
            duty_alias=duty_alias,
            members=everyone,
            leads=everyone[:1],
            web_port=web_port,
            extra=MUNICIPALITY,
        )
        env.bot = BotProcess(config, bot_env(bot_password), web_port, folder / "bot.log")
        log("starting the echo bot and Socialjour")
        start_echo_bot(env, synapse, echo_user, echo_password)
        env.bot.start(timeout=180)  # inviting every worker to the duty room takes a while
        wait_echo_ready(env)

        pids = env.pids()
        results = asyncio.run(
            measure(
                args,
                synapse,
                accounts,
                duty_alias,
                bot_user,
                echo_user,
                env.base / "workers",
                pids,
            )
        )
        bot_errors = log_problems(env.bot.log_text())
        text = report(results, args)
        print(text)
        if bot_errors:
            print(f"Socialjour logged {len(bot_errors)} errors, e.g. {bot_errors[0]}")
        if args.out:
            args.out.write_text(
                json.dumps(
                    {
                        "what": "ms from a worker's send to its client having decrypted the reply",
                        "machine": {
                            "cpus": os.cpu_count(),
                            "load_average_before": [round(x, 2) for x in load_before],
                            "load_average_after": [round(x, 2) for x in os.getloadavg()],
                            "temp_dir": str(env.base.parent),
                            **versions(),
                        },
                        "settings": {
                            "dialogues": args.dialogues,
                            "answers": args.answers,
                            "min_samples": args.min_samples,
                            "think_ms_max": args.think_ms,
                            "worker_sync_timeout_ms": args.worker_sync_timeout or 1000,
                            "form": FORM,
                            "order": args.order,
                            "echo_bot": "separate process (python -m bench.echo_bot)",
                        },
                        "levels": [lv.as_json() for lv in results],
                        "goal": goal(results),
                        "socialjour_errors": bot_errors[:50],
                        "total_s": round(time.perf_counter() - started, 1),
                    },
                    indent=1,
                    ensure_ascii=False,
                )
                + "\n"
            )
            log(f"wrote {args.out}")
        log(f"total {time.perf_counter() - started:.0f} s")
        return 0
    except KeyboardInterrupt:
        log("interrupted; cleaning up")
        return 130
    except (BenchError, TimeoutError) as exc:
        log(f"failed: {exc}")
        if env.bot is not None and env.bot.proc is not None and env.bot.proc.poll() is None:
            env.bot.proc.send_signal(signal.SIGUSR1)  # the bot logs where each task waits
            time.sleep(1)
        if env.bot is not None:
            log("Socialjour log tail:\n" + env.bot.log_tail(40))
        return 1
    finally:
        env.cleanup()


if __name__ == "__main__":
    sys.exit(main())
