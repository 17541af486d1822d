"""Open many cases and send them for signing through the bot's own code, fast.

``bench.escalation_latency`` runs this as a subprocess before it starts the bot::

    python -m bench.escalation_seed --config socialjour.toml --plan plan.json --out seed.json

It is the bot's first life: ``bot.app.Socialjour(settings).start()`` against the
benchmark's config and database (login, cross-signing, the duty and intake rooms,
the scheduler with its job store). Then, for every planned case, the same calls
the bot makes when a worker types:

1. a direct room with every decision-maker, through the alerter's ``DirectRooms``
   (as the first alert to each of them would);
2. ``!ny lvu6`` from the worker in the duty room, then the lvu6 answers and
   ``!hoppa`` in the case room, handed as ``IncomingMessage`` to a
   :class:`~handlers.dispatcher.Dispatcher` built as ``bot/app.py`` builds it.
   Its messenger creates the case rooms for real (the worker is invited) but
   keeps the dialogue's questions to itself: 19 questions and 7 polls per case
   over Matrix would take minutes, and they are not what is measured;
3. ``!skicka``: the report is frozen, the decision PDF rendered, the case moves to
   ``awaiting_signature`` and the signing request and the whole escalation plan
   are written in one transaction; the wake-ups go to the job store. The only
   change: the ``DecisionService``'s clock says the moment planned for that case
   (``t0 + offset``), so every case's steps fall into the measured window, which
   starts after this process has stopped and the bot has started again.

Then it stops the bot cleanly (``Socialjour.stop``). Nothing is due while it
runs (``t0`` lies after its end), so nothing is alerted from here.
"""

from __future__ import annotations

import argparse
import asyncio
import contextvars
import dataclasses
import json
import logging
import re
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from config import load_settings
from handlers import dialogue
from handlers.context import utcnow
from handlers.dispatcher import Dispatcher
from handlers.messenger import IncomingMessage, Message, Messenger, Poll
from storage import repo
from tests.test_decision_matrix import LVU6_ANSWERS

FORM = "lvu6"
CASE_NUMBER = re.compile(r"[A-Z]{1,8}-\d{4}-\d{4,}")
#: The case a seeding task is working on (its room, once created), and when its
#: decision is "sent": both read by objects the tasks share.
_SLOT: contextvars.ContextVar[dict[str, Any]] = contextvars.ContextVar("slot")
#: What the bot wrote in a case room: the last few lines, for error messages.
TAIL = 4


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] seed: {message}", file=sys.stderr, flush=True)


class QuietMessenger:
    """Rooms for real (through the bot's messenger); messages kept here, not sent."""

    def __init__(self, real: Messenger) -> None:
        self.real = real
        self.sent: dict[str, list[str]] = {}
        self._ids = 0

    def _event(self) -> str:
        self._ids += 1
        return f"$seed-quiet-{self._ids}"

    async def send(self, room_id: str, message: Message, *, key: str | None = None) -> str:
        self.sent.setdefault(room_id, []).append(message.text)
        return self._event()

    async def send_poll(self, room_id: str, poll: Poll, *, key: str | None = None) -> str:
        self.sent.setdefault(room_id, []).append(poll.fallback())
        return self._event()

    async def create_case_room(self, *, name: str, invite: Sequence[str]) -> str:
        room_id = await self.real.create_case_room(name=name, invite=invite)
        slot = _SLOT.get(None)
        if slot is not None:
            slot["room_id"], slot["number"] = room_id, name
        return room_id

    async def create_direct_room(self, user_id: str) -> str:
        return await self.real.create_direct_room(user_id)

    async def send_file(
        self, room_id: str, data: bytes, filename: str, mimetype: str, *, key: str | None = None
    ) -> str:
        return await self.real.send_file(room_id, data, filename, mimetype, key=key)

    async def invite(self, room_id: str, user_id: str) -> None:
        await self.real.invite(room_id, user_id)

    async def can_decrypt(self, room_id: str, user_id: str) -> bool:
        return await self.real.can_decrypt(room_id, user_id)

    async def close_room(self, room_id: str) -> None:
        await self.real.close_room(room_id)

    def tail(self, room_id: str) -> list[str]:
        return [text[:120] for text in self.sent.get(room_id, [])[-TAIL:]]


def planned_clock() -> datetime:
    """The ``DecisionService``'s clock: the moment planned for the case being sent."""
    slot = _SLOT.get(None)
    if slot is None or "send_at" not in slot:
        return utcnow()
    at: datetime = slot["send_at"]
    return at


class Seeder:
    def __init__(self, app: Any, plan: dict[str, Any]) -> None:
        from bot.app import Socialjour

        assert isinstance(app, Socialjour)
        self.app = app
        self.plan = plan
        self.worker: str = plan["worker"]
        self.quiet = QuietMessenger(app.messenger)
        settings = app.settings
        # The bot's own DecisionService (issuer, escalator, alerter, on-call), with the
        # planned clock; and a Dispatcher wired as bot/app.py wires its own.
        decisions = dataclasses.replace(app.decisions, clock=planned_clock)
        self.dispatcher = Dispatcher(
            settings=settings,
            sessions=app.sessions,
            messenger=self.quiet,
            clock=utcnow,
            decisions=decisions,
            oncall=app.dispatcher.oncall,
        )
        self.dispatcher.duty_room_id = app.dispatcher.duty_room_id
        self.dispatcher.intake_rooms = dict(app.dispatcher.intake_rooms)
        self._events = 0

    async def say(self, room_id: str, body: str) -> None:
        self._events += 1
        await self.dispatcher.handle(
            IncomingMessage(
                room_id=room_id,
                sender=self.worker,
                event_id=f"$seed-{self._events}",
                body=body,
            )
        )

    async def open_case(self, index: int, municipality: str) -> dict[str, Any]:
        """``!ny lvu6`` and the answers; returns the case's slot (number, room)."""
        slot: dict[str, Any] = {"index": index, "municipality": municipality}
        _SLOT.set(slot)
        duty = self.dispatcher.duty_room_id
        assert duty is not None
        await self.say(duty, f"!ny {FORM}")
        if "room_id" not in slot:
            raise RuntimeError(f"case {index}: no room after !ny: {self.quiet.tail(duty)}")
        room = slot["room_id"]
        for question, answer in LVU6_ANSWERS:
            await self.say(room, municipality if question == 3 else answer)
        async with self.app.sessions() as session:
            case = await repo.get_case_by_number(session, number=slot["number"])
        assert case is not None
        if case.municipality_id != municipality:
            raise RuntimeError(f"{slot['number']}: no municipality: {self.quiet.tail(room)}")
        slot["case_id"] = case.id
        return slot

    async def submit(self, slot: dict[str, Any], send_at: datetime) -> None:
        """``!skicka`` at the planned moment (for the decision's clock)."""
        slot["send_at"] = send_at
        _SLOT.set(slot)
        await self.say(slot["room_id"], "!skicka")
        async with self.app.sessions() as session:
            case = await repo.get_case(session, case_id=slot["case_id"])
        if case is None or case.status != "awaiting_signature":
            raise RuntimeError(
                f"{slot['number']}: not sent for signing: {self.quiet.tail(slot['room_id'])}"
            )

    async def render_seconds(self, slot: dict[str, Any]) -> float:
        """One rendering of a case's decision, timed (to plan how long sending takes)."""
        settings = self.app.settings
        async with self.app.sessions() as session:
            case = await repo.get_case(session, case_id=slot["case_id"])
            assert case is not None
            loaded = await self.dispatcher.reports.load(session, case)
        form = settings.forms[FORM]
        report = dialogue.build_report(
            form, loaded.state, case_number=slot["number"], submitted_by=self.worker, at=utcnow()
        )
        municipality = settings.municipality(slot["municipality"])
        assert municipality is not None
        began = time.perf_counter()
        await self.app.escalator.issuer.prepare(
            report, municipality, municipality.decision_makers[0]
        )
        return time.perf_counter() - began


async def in_parallel(jobs: list[Any], limit: int) -> list[Any]:
    gate = asyncio.Semaphore(limit)

    async def one(job: Any) -> Any:
        async with gate:
            return await job

    tasks = [asyncio.create_task(one(job)) for job in jobs]
    try:
        return list(await asyncio.gather(*tasks))
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def seed(config: Path, plan: dict[str, Any]) -> dict[str, Any]:
    from bot.app import Socialjour

    settings = load_settings(config)
    app = Socialjour(settings)
    timings: dict[str, float] = {}
    began = time.perf_counter()
    await app.start()
    # The minute's housekeeping would look for cases without a room while `!ny` is
    # still creating theirs (see bench/README.md); the bot's next life runs it.
    if app._housekeeping is not None:
        app._housekeeping.cancel()
    timings["start_s"] = time.perf_counter() - began
    try:
        seeder = Seeder(app, plan)
        direct = {}
        for user_id in plan["decision_makers"]:
            direct[user_id] = await app.alerter.rooms.get(user_id)
        timings["direct_rooms_s"] = time.perf_counter() - began - sum(timings.values())

        mark = time.perf_counter()
        cases = plan["cases"]
        slots = await in_parallel(
            [seeder.open_case(i, c["municipality"]) for i, c in enumerate(cases)],
            plan["concurrency"],
        )
        timings["open_cases_s"] = time.perf_counter() - mark
        log(f"{len(slots)} cases opened in {timings['open_cases_s']:.1f} s")

        # Plan t0 so that every case is sent before it and the bot is up again by then.
        render = await seeder.render_seconds(slots[0])
        sending = len(slots) * (render + 0.05) * 1.3
        t0 = utcnow() + timedelta(seconds=sending + plan["start_allowance_s"])
        log(
            f"rendering takes {render * 1000:.0f} ms; t0 in {(t0 - utcnow()).total_seconds():.0f} s"
        )
        print(json.dumps({"t0": t0.timestamp()}), flush=True)

        mark = time.perf_counter()
        await in_parallel(
            [
                seeder.submit(slot, t0 + timedelta(seconds=c["offset_s"]))
                for slot, c in zip(slots, cases, strict=True)
            ],
            plan["concurrency"],
        )
        timings["send_s"] = time.perf_counter() - mark
        # The job store's writes run on one thread, in order: this waits for them.
        jobs = await app.scheduler.pending_jobs()
        log(f"{len(slots)} cases sent in {timings['send_s']:.1f} s; {jobs} jobs stored")
    finally:
        mark = time.perf_counter()
        await app.stop()
        timings["stop_s"] = time.perf_counter() - mark
    margin = (t0 - datetime.now(UTC)).total_seconds()
    return {
        "t0": t0.timestamp(),
        "margin_after_stop_s": round(margin, 1),
        "render_ms": round(render * 1000, 1),
        "jobs_stored": jobs,
        "duty_room": app.dispatcher.duty_room_id,
        "direct_rooms": direct,
        "cases": [
            {
                "number": s["number"],
                "case_id": s["case_id"],
                "room_id": s["room_id"],
                "municipality": s["municipality"],
                "sent_at": s["send_at"].timestamp(),
            }
            for s in slots
        ],
        "timings": {k: round(v, 1) for k, v in timings.items()},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.escalation_seed")
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--plan", type=Path, required=True, help="JSON written by the benchmark")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for noisy in ("nio", "peewee", "aiohttp.access", "alembic", "aiosqlite", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    plan = json.loads(args.plan.read_text())
    result = asyncio.run(seed(args.config, plan))
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
