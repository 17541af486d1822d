"""Workers who answer the guided report over real E2EE, timing every turn.

Shared by ``bench.dialogue_vs_echo`` (Socialjour against the echo bot) and
``bench.signing_load`` (dialogues while decisions are signed). A :class:`Worker`
is one duty social worker (a cross-signed nio client, :class:`DialogueUser`)
with case rooms of their own: it opens cases with ``!ny lvu6`` before the
measurement (not measured) and then answers the LVU form's questions one after
the other from :data:`ANSWERS`. One turn (a :class:`Sample`) runs from just
before the worker's client starts sending its answer (trust check, encryption,
PUT) until the client has decrypted the bot's next question (stamped in the nio
callback, inside the worker's sync). A case's first answer is a warm-up and not
counted (it sets up the worker's Megolm session in that room). With an echo
room, the worker also talks to ``bench.echo_bot`` the same way.
"""

from __future__ import annotations

import asyncio
import random
import re
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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

from bench.harness import (
    Account,
    BenchError,
    Stack,
    TimedUser,
    add_cpu,
    fmt_ms,
    gather_limited,
    join_duty_room,
    log,
    percentile,
)

#: A valid answer to every question of lvu6 this benchmark meets, by question number.
#: A child (under 15): 6 and 20 are not asked. 11 "nej" hides 12 (and shows 13); 16
#: "nej" hides 17; 21, 23 and 25 "nej" hide 22, 24 and 26-27; 14 is optional and skipped.
ANSWERS: dict[int, str] = {
    1: "Test Testsson",
    2: "20160412-2380",
    3: "1",  # the first (in these benchmarks the only) municipality
    4: "Hemma",
    5: "1",  # missförhållanden i hemmet
    7: "Polisen larmade efter bråk i hemmet. Grannar hörde skrik under natten.",
    8: "Barnet kan inte vara kvar i hemmet i natt; vårdnadshavarna är berusade.",
    9: "Jourhem i Skövde",
    10: "Mamma Maria Testsson, 070-111 22 33, finns hemma.",
    11: "nej",
    13: "Gick inte att nå per telefon kl 02.10; nytt försök kl 08.00 av jouren.",
    14: "!hoppa",
    15: "Barnet omhändertas omedelbart med stöd av 6 § LVU. Vården behövs enligt 2 § LVU.",
    16: "nej",
    18: "nu",
    19: "Vården av Test Testsson ska inledas i jourhem.",
    21: "nej",
    23: "nej",
    25: "nej",
}
#: Answers one case takes (the first is the warm-up).
ANSWERS_PER_CASE = len(ANSWERS)
#: Questions the bot follows with a poll: the worker waits for the poll before answering,
#: as a person would, so the answer never queues behind the poll's send.
POLL_QUESTIONS = frozenset({3, 5, 11, 16, 21, 23, 25})
QUESTION = re.compile(r"Fråga (\d+) av (\d+)")
COMPLETE = "Alla frågor är besvarade"
FORM = "lvu6"
#: One municipality for the dialogue benchmark (the signing benchmark brings its own).
MUNICIPALITY = """
[[municipalities]]
id = "skovde"
name = "Skövde kommun"
intake_room_alias = "#bench-mottagning-skovde-{tag}:localhost"
"""
MEGOLM = "m.megolm.v1.aes-sha2"

REPLY_TIMEOUT = 60.0
SETUP_TIMEOUT = 180.0
INVITE_TIMEOUT = 60.0
#: Workers sending ``!ny`` at the same time during setup.
CASE_OPENING_GATE = 5


@dataclass(frozen=True)
class Inbound:
    """Something the worker's client decrypted: a text/notice or a poll."""

    kind: str  # "text" or "poll"
    sender: str
    body: str
    at: float  # time.perf_counter() in the nio callback, i.e. right after decryption


class DialogueUser(TimedUser):
    """A :class:`TimedUser` with a queue per room of what arrived, stamped with
    ``time.perf_counter()`` (the clock every turn is measured with)."""

    def __init__(self, base_url: str, account: Account, store: Path, **kwargs: Any) -> None:
        super().__init__(base_url, account, store, **kwargs)
        self._inboxes: dict[str, asyncio.Queue[Inbound]] = {}
        self.client.add_event_callback(self._queue_text, (RoomMessageText, RoomMessageNotice))
        self.client.add_event_callback(self._queue_poll, UnknownEvent)

    def inbox(self, room_id: str) -> asyncio.Queue[Inbound]:
        return self._inboxes.setdefault(room_id, asyncio.Queue())

    async def _queue_text(
        self, room: MatrixRoom, event: RoomMessageText | RoomMessageNotice
    ) -> None:
        if event.sender != self.user_id:
            self.inbox(room.room_id).put_nowait(
                Inbound("text", event.sender, event.body, time.perf_counter())
            )

    async def _queue_poll(self, room: MatrixRoom, event: UnknownEvent) -> None:
        if event.type.endswith("poll.start") and event.sender != self.user_id:
            self.inbox(room.room_id).put_nowait(
                Inbound("poll", event.sender, "", time.perf_counter())
            )

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


async def _next(queue: asyncio.Queue[Inbound], deadline: float, what: str) -> Inbound:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise BenchError(f"timed out waiting for {what}")
    try:
        return await asyncio.wait_for(queue.get(), remaining)
    except TimeoutError:
        raise BenchError(f"timed out waiting for {what}") from None


@dataclass(frozen=True)
class Sample:
    ms: float
    #: lvu6: the question answered; echo: the message's index in the dialogue.
    step: int
    #: time.perf_counter() at the send and at the reply's arrival.
    began: float
    ended: float


class Worker:
    """One duty social worker with case rooms (Socialjour) and maybe a room with the echo bot."""

    def __init__(
        self,
        user: DialogueUser,
        *,
        duty_room: str,
        bot_user: str,
        echo_user: str | None = None,
        think_ms: float,
        seed: int,
        gate: asyncio.Semaphore,
    ) -> None:
        self.user = user
        self.gate = gate
        self.duty_room = duty_room
        self.bot_user = bot_user
        self.echo_user = echo_user
        self.think_ms = think_ms
        self.rng = random.Random(seed)
        #: Cases opened before the measurement, each waiting at question 1.
        self.ready_cases: deque[str] = deque()
        self.case_room: str | None = None
        #: The question the bot asked last in the case room; None once the form is complete.
        self.question: int | None = None
        #: Whether this case's warm-up answer has been given.
        self.case_warm = False
        self.echo_room: str | None = None
        #: Texts sent to the echo bot so far (the first is the warm-up).
        self.echo_sent = 0
        self.cases_opened = 0
        #: Cases that had to be opened during a measured phase (none were ready).
        self.cases_opened_measuring = 0
        #: Why a case had to be opened again (``!ny`` lost, first question missing).
        self.setup_retries: list[str] = []
        #: Bot messages that were neither the awaited question nor a poll (should be none).
        self.unexpected: list[str] = []
        #: Exchanges in the current phase, warm-ups included (for CPU per reply).
        self.exchanges = 0

    # -- setup ---------------------------------------------------------------------------------

    async def open_case(self, *, pause_after: bool = False) -> str:
        """``!ny lvu6``, join the case room, wait for question 1. Not measured.

        Only ``CASE_OPENING_GATE`` workers at a time: Socialjour handles ``!ny`` one
        after the other anyway (the duty room's lock). A case whose first question
        never comes is left behind and another one opened. With ``pause_after`` the
        worker's client syncs only while it opens its case, so that the duty room's
        traffic does not wake every other worker's client.
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
            self.cases_opened += 1
            if pause_after:
                await user.pause_sync()
            return room
        raise BenchError(f"{user.localpart}: could not open a case: {self.setup_retries}")

    async def open_cases(self, count: int) -> None:
        """Open ``count`` cases up front; the worker answers them one after the other."""
        for _ in range(count):
            self.ready_cases.append(await self.open_case(pause_after=True))
        self._next_case()

    def _next_case(self) -> bool:
        if not self.ready_cases:
            return False
        self.case_room, self.question = self.ready_cases.popleft(), 1
        self.case_warm = False
        return True

    async def create_echo_room(self) -> None:
        assert self.echo_user is not None
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

        try:
            await self.user.wait(echo_joined, timeout=SETUP_TIMEOUT)
        except TimeoutError:
            raise BenchError(f"the echo bot did not join {room_id}") from None
        self.echo_room = room_id

    # -- the measured dialogues ----------------------------------------------------------------

    async def _think(self) -> None:
        if self.think_ms > 0:
            await asyncio.sleep(self.rng.uniform(0, self.think_ms) / 1000)

    async def _next_question(self, room: str, timeout: float) -> tuple[Inbound, int | None]:
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

    async def socialjour(
        self, measured: int | None = None, *, stop: asyncio.Event | None = None
    ) -> list[Sample]:
        """Answer until ``measured`` turns are measured or ``stop`` is set; a case's first
        answer is its warm-up, not measured. A complete form moves on to the next case."""
        samples: list[Sample] = []
        while (measured is None or len(samples) < measured) and not (stop and stop.is_set()):
            if self.question is None and not self._next_case():
                self.cases_opened_measuring += 1  # none ready: open one now, not measured
                self.ready_cases.append(await self.open_case())
                self._next_case()
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
            self.exchanges += 1
            if self.case_warm:
                samples.append(Sample((reply.at - began) * 1000, number, began, reply.at))
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
            self.exchanges += 1
            if index:
                samples.append(Sample((got.at - began) * 1000, index, began, got.at))
        return samples


# -- setting workers up --------------------------------------------------------------------------


async def start_workers(
    stack: Stack,
    accounts: Sequence[Account],
    *,
    duty_room: str,
    bot_user: str,
    echo_user: str | None,
    think_ms: float,
    seed: int,
    cases_each: int,
    into: list[Worker],
    sync_timeout_ms: int = 30_000,
) -> list[Worker]:
    """Sign the workers in (cross-signed), join the duty room, open ``cases_each`` cases
    each (``CASE_OPENING_GATE`` at a time) and, with ``echo_user``, a room with the echo
    bot. The workers are put in ``into`` as soon as they exist: the caller closes their
    clients (:func:`close_workers`) whatever happens."""
    synapse = stack.synapse
    assert synapse is not None
    gate = asyncio.Semaphore(CASE_OPENING_GATE)
    workers = [
        Worker(
            DialogueUser(
                synapse.base_url, a, stack.client_store(a), sync_timeout_ms=sync_timeout_ms
            ),
            duty_room=duty_room,
            bot_user=bot_user,
            echo_user=echo_user,
            think_ms=think_ms,
            seed=seed + i,
            gate=gate,
        )
        for i, a in enumerate(accounts)
    ]
    into.extend(workers)
    n = len(workers)
    log(f"{n} workers: signing in and cross-signing")
    await gather_limited((w.user.start() for w in workers), 10)
    # Everyone joins before anyone opens a case, and nobody leaves: a member who leaves
    # makes nio rotate the bot's Megolm session for the room, which can break a send.
    await asyncio.gather(*(join_duty_room(w.user, duty_room) for w in workers))
    log(f"{n} workers: opening {n * cases_each} cases ({CASE_OPENING_GATE} at a time)")
    await asyncio.gather(*(w.user.pause_sync() for w in workers))
    await asyncio.gather(*(w.open_cases(cases_each) for w in workers))
    for w in workers:
        w.user.resume_sync()
    if echo_user is not None:
        await asyncio.gather(*(w.create_echo_room() for w in workers))
    return workers


async def close_workers(workers: Sequence[Worker]) -> None:
    await asyncio.gather(*(w.user.close() for w in workers), return_exceptions=True)


# -- phases --------------------------------------------------------------------------------------


@dataclass
class Phase:
    """Turns of one bot, over one or more rounds, with the CPU the processes used."""

    name: str
    samples: list[Sample] = field(default_factory=list)
    #: Replies the bot gave, warm-ups included (what the CPU time is divided by).
    exchanges: int = 0
    wall_s: float = 0.0
    #: CPU seconds each process used during the phase ("driver" is this process).
    cpu_s: dict[str, float] = field(default_factory=dict)

    def add(self, other: Phase) -> None:
        """Fold another round of the same bot into this one."""
        self.samples.extend(other.samples)
        self.exchanges += other.exchanges
        self.wall_s += other.wall_s
        add_cpu(self.cpu_s, other.cpu_s)

    @property
    def ms(self) -> list[float]:
        return [s.ms for s in self.samples]

    def cpu_ms_per_reply(self) -> dict[str, float]:
        n = self.exchanges
        return {k: round(v * 1000 / n, 2) for k, v in self.cpu_s.items()} if n else {}

    def summary(self) -> dict[str, Any]:
        ms = self.ms
        return {
            "samples": len(ms),
            "replies": self.exchanges,
            "p50_ms": round(percentile(ms, 50), 2),
            "p90_ms": round(percentile(ms, 90), 2),
            "p99_ms": round(percentile(ms, 99), 2),
            "max_ms": round(max(ms), 2) if ms else None,
            "mean_ms": round(sum(ms) / len(ms), 2) if ms else None,
            "wall_s": round(self.wall_s, 2),
            "replies_per_s": round(self.exchanges / self.wall_s, 2) if self.wall_s else None,
            "cpu_s": {k: round(v, 3) for k, v in self.cpu_s.items()},
            "cpu_ms_per_reply": self.cpu_ms_per_reply(),
        }

    def line(self) -> str:
        return f"p50 {fmt_ms(percentile(self.ms, 50))} / p99 {fmt_ms(percentile(self.ms, 99))} ms"


async def run_phase(
    name: str,
    workers: Sequence[Worker],
    step: Callable[[Worker], Awaitable[list[Sample]]],
    stack: Stack,
) -> Phase:
    """All workers run ``step`` at once; the CPU of Synapse, both bots and the driver."""
    for w in workers:
        w.exchanges = 0
    meter = stack.meter("synapse", "socialjour", "echo_bot")
    began = time.perf_counter()
    results = await asyncio.gather(*(step(w) for w in workers))
    phase = Phase(name, wall_s=time.perf_counter() - began, cpu_s=meter.stop())
    phase.exchanges = sum(w.exchanges for w in workers)
    for samples in results:
        phase.samples.extend(samples)
    return phase
