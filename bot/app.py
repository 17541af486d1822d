"""The composition root: builds every part from the settings and runs them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import signal
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiohttp import web

from bot import events
from bot.instance_lock import InstanceLock
from bot.matrix import InboxEvent, MatrixConnection
from bot.meeting_source import MeetingCalendars
from bot.notifiers import build_notifier
from bot.rooms import MatrixMessenger, RoomKeeper
from bot.roster_source import CalendarRosterSource
from bot.scheduler import Scheduler
from config import DecisionMaker, Settings
from handlers import i18n
from handlers.alerts import Alerter, DirectRooms
from handlers.archive import Archiver
from handlers.case_state import CaseStatus
from handlers.context import utcnow
from handlers.deadline_jobs import DeadlineJobs
from handlers.decisions import DecisionService
from handlers.dispatcher import Dispatcher
from handlers.escalation import Escalator
from handlers.issuing import Issuer
from handlers.links import LinkSealer
from handlers.messenger import IncomingMessage, IncomingVote
from handlers.oncall import OnCallCommands, on_call
from handlers.signing_backend import SigningBackend
from signing.identity import IdentityProvider, SigningContext
from signing.identity.matrix_code import MatrixCodeProvider
from signing.web import create_app
from storage import create_engine, read_session_factory, repo, session_factory, upgrade

log = logging.getLogger(__name__)

HOUSEKEEPING_INTERVAL = 60.0
#: The archive sweep's longest sleep (it also runs after each command, and when a
#: purge falls due).
ARCHIVE_INTERVAL = 60.0
#: How long handled event ids are remembered (longer than any sync gap we recover from).
EVENT_MEMORY = timedelta(days=30)


class Socialjour:
    """One running installation: database, Matrix connection, rooms, handlers, web."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.engine = create_engine(settings.storage.database_url)
        self.sessions = session_factory(self.engine)
        self.readers = read_session_factory(self.engine)
        self.lock = InstanceLock(self.sessions)
        self.matrix = MatrixConnection(settings, self.sessions, self.readers)
        self.rooms = RoomKeeper(self.matrix)
        self.messenger = MatrixMessenger(self.matrix, self.rooms)
        clock = utcnow
        sealer = LinkSealer(link_key(settings.storage.data_dir))
        direct_rooms = DirectRooms(self.sessions, self.messenger, clock)
        self.alerter = Alerter(
            settings, self.messenger, direct_rooms, sealer, duty_room=self._duty_room
        )
        self.roster = CalendarRosterSource(settings)

        async def who_is_on_call(municipality_id: str, at: datetime) -> list[DecisionMaker]:
            return await on_call(settings, self.sessions, municipality_id, at, roster=self.roster)

        self.notifier = build_notifier(settings, acknowledge=self._acknowledge_call)
        self.scheduler = Scheduler(settings.storage.database_url, self._wake)
        self.escalator = Escalator(
            settings,
            self.sessions,
            clock,
            self.alerter,
            Issuer(settings, sealer),
            who_is_on_call,
            wakeups=self.scheduler,
            notifier=self.notifier,
        )
        self.decisions = DecisionService(
            settings,
            self.sessions,
            self.messenger,
            clock,
            issuer=self.escalator.issuer,
            escalator=self.escalator,
            alerter=self.alerter,
            on_call=who_is_on_call,
        )
        self.backend = SigningBackend(
            settings,
            self.sessions,
            self.messenger,
            clock,
            escalator=self.escalator,
            providers=build_providers(settings, self._send_code),
            signer=load_seal(settings),
        )
        self.decisions.records = self.backend.records  # forms nobody signs: sealed records
        self.dispatcher = Dispatcher(
            settings=settings,
            sessions=self.sessions,
            messenger=self.messenger,
            clock=clock,
            decisions=self.decisions,
            oncall=OnCallCommands(settings, self.sessions, clock, roster=self.roster),
            readers=self.readers,
        )
        self.meetings = MeetingCalendars(settings)
        # Legal deadlines: announced, reminded and alarmed from the database each minute.
        self.deadline_jobs = DeadlineJobs(
            settings,
            self.sessions,
            self.messenger,
            clock,
            intake_rooms=lambda: self.dispatcher.intake_rooms,
            duty_room=self._duty_room,
            meetings=self.meetings,
        )
        # Closing, archiving and retention (issue 9 §5), from the database.
        self.archiver = Archiver(
            settings, self.sessions, self.messenger, clock, readers=self.readers
        )
        self._archive_wake = asyncio.Event()
        # Handlers are attached before the first sync; events wait in the inbox until
        # start() has resumed what a crash interrupted (start_processing).
        self.matrix.on_event = self._on_event
        self.matrix.on_undecryptable = self._on_undecryptable
        self.matrix.on_identity_changed = self._on_identity_changed
        self.events_handled = 0
        self.started_at = time.monotonic()
        self._runner: web.AppRunner | None = None
        self._housekeeping: asyncio.Task[None] | None = None
        self._catch_up: asyncio.Task[None] | None = None
        self._deadline_catch_up: asyncio.Task[None] | None = None
        self._archive: asyncio.Task[None] | None = None
        # Events that arrive while the rooms are still being set up wait for this.
        self._ready = asyncio.Event()

    def _duty_room(self) -> str | None:
        return self.dispatcher.duty_room_id

    async def start(self) -> None:
        settings = self.settings
        await upgrade(settings.storage.database_url)
        await self.lock.acquire()  # one scheduler per database: refuse to run twice
        await self.matrix.connect()
        self.matrix.start()
        duty = settings.duty
        self.dispatcher.duty_room_id = await self.rooms.ensure_room(
            alias=duty.room_alias, name="Socialjour", members=sorted(duty.allowed)
        )
        for m in settings.municipalities:
            room_id = await self.rooms.ensure_room(
                alias=m.intake_room_alias, name=f"Socialjour – {m.name}", members=m.intake_members
            )
            self.dispatcher.intake_rooms[room_id] = m.id
        await self.roster.start()
        await self.meetings.start()
        await self.dispatcher.resume()
        await self.backend.recover()
        await self._start_web()
        self.scheduler.start()
        self._housekeeping = asyncio.create_task(self._housekeep(), name="housekeeping")
        self._ready.set()
        await self.matrix.start_processing()
        log.info("ready")
        # Catching up on steps missed while the bot was down runs beside everything
        # else (each step is claimed once, whoever gets to it first).
        self._catch_up = asyncio.create_task(self.escalator.resume(), name="escalation-catch-up")
        # Deadline reminders and alarms due while the bot was down go out now, once.
        self._deadline_catch_up = asyncio.create_task(
            self.deadline_jobs.sweep(), name="deadline-catch-up"
        )
        # Closing, archiving and retention: now (what came due while the bot was down),
        # then every minute, after each command, and when a purge falls due.
        self._archive = asyncio.create_task(self._archive_loop(), name="archive")

    async def _wake(self, step_id: int) -> None:
        await self._ready.wait()
        await self.escalator.wake(step_id)

    async def _acknowledge_call(self, reference: str) -> bool:
        """A decision-maker pressed 1 in the alert call (``reference``: the call's step)."""
        return await self.escalator.acknowledge_step(reference, "call")

    async def _send_code(self, ctx: SigningContext, code: str) -> None:
        await self.alerter.send_code(ctx.signer_user_id, ctx.case_number, code)

    async def _start_web(self) -> None:
        app = create_app(
            health=self.health,
            metrics_source=self.metrics,
            backend=self.backend,
            public_base_url=self.settings.web.public_base_url,
        )
        self.notifier.add_routes(app)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(
            self._runner, self.settings.web.listen_host, self.settings.web.listen_port
        )
        await site.start()

    async def _housekeep(self) -> None:
        """Every minute: give cases that lost their room one; daily: forget old event ids."""
        last_prune = 0.0
        while True:
            await asyncio.sleep(HOUSEKEEPING_INTERVAL)
            try:
                await self.dispatcher.cases.recover()
                await self.backend.recover()
                await self.escalator.check()
                # Handovers: parts a crash kept back, and the intake's morning reminders.
                await self.dispatcher.handover.check()
                await self.deadline_jobs.sweep()
                if time.monotonic() - last_prune > 86400:
                    async with self.sessions() as session, session.begin():
                        await repo.prune_events(
                            session, older_than=datetime.now(UTC) - EVENT_MEMORY
                        )
                    last_prune = time.monotonic()
            except Exception:
                log.exception("housekeeping failed; trying again in a minute")

    async def _archive_loop(self) -> None:
        while True:
            self._archive_wake.clear()
            due = None
            try:
                due = await self.archiver.sweep()
            except Exception:
                log.exception("the archive sweep failed; trying again in a minute")
            # Sooner when a purge falls due before the next minute; an overdue one (it
            # failed) is tried again in a minute.
            wait = ARCHIVE_INTERVAL
            until = (due - datetime.now(UTC)).total_seconds() if due is not None else wait
            if 0 < until < wait:
                wait = max(until, 0.5)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._archive_wake.wait(), wait)

    async def stop(self) -> None:
        tasks = (self._housekeeping, self._catch_up, self._deadline_catch_up, self._archive)
        for task in tasks:
            if task:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        self.scheduler.shutdown()
        if self._runner:
            await self._runner.cleanup()
        await self.backend.close()  # posts under way, and the seal's thread
        await self.matrix.stop()
        await self.roster.stop()
        await self.meetings.close()
        await self.notifier.close()
        await self.lock.release()
        await self.engine.dispose()

    async def _on_event(self, event: InboxEvent, trusted: bool) -> bool:
        """One event from the inbox; True if its handler claimed it (see bot.matrix)."""
        await self._ready.wait()
        self.events_handled += 1
        if event.type == "m.room.message":
            body, replaces = events.message_text(event.content)
            claimed = await self.dispatcher.handle(
                IncomingMessage(
                    room_id=event.room_id,
                    sender=event.sender,
                    event_id=event.event_id,
                    body=body,
                    trusted_device=trusted,
                    replaces=replaces,
                    in_reply_to=events.reply_target(event.content),
                )
            )
            if body.lstrip().startswith("!"):
                # A !mottaget or a deadline marked done may have completed a case.
                self._archive_wake.set()
            return claimed
        if event.type == "m.reaction":
            # A ✅ on an alert from the person it went to: "I am on it". Element sends
            # reactions unencrypted even in encrypted rooms, so a plaintext reaction (its
            # sender vouched for by the homeserver) counts; an encrypted one from a device
            # the trust policy refuses does not. The worst a forged one can do is pause
            # the reminders for ack_window; the leads' alerts go on after it.
            relates = event.content.get("m.relates_to") or {}
            if (trusted or not event.decrypted) and relates.get("rel_type") == "m.annotation":
                await self.decisions.reaction(
                    event.sender, str(relates.get("event_id", "")), str(relates.get("key", ""))
                )
            return False
        parsed = events.vote(event.type, event.content)
        if parsed is None:
            return False
        return await self.dispatcher.handle_vote(
            IncomingVote(
                room_id=event.room_id,
                sender=event.sender,
                event_id=event.event_id,
                poll_event_id=parsed[0],
                answers=parsed[1],
                trusted_device=trusted,
            )
        )

    async def _on_undecryptable(self, room_id: str, event_id: str) -> None:
        kind, _ = await self.dispatcher.locate(room_id)
        if kind.value != "other":
            await self.messenger.send(
                room_id,
                i18n.render(self.settings.duty.language, "error.undecryptable", reply_to=event_id),
                key=f"{event_id}:undecryptable",
            )

    async def _on_identity_changed(self, room_id: str, user_ids: list[str]) -> None:
        for user_id in user_ids:
            await self.messenger.send(
                room_id,
                i18n.render(
                    self.settings.duty.language,
                    "error.identity_changed",
                    user=user_id,
                    notice=False,
                ),
            )

    async def health(self) -> dict[str, Any]:
        last = self.matrix.last_sync_at
        age = None if last is None else round(time.monotonic() - last, 1)
        ok = age is not None and age < 120
        return {
            "status": "ok" if ok else "degraded",
            "last_sync_age_s": age,
            "device_id": self.matrix.client.device_id,
        }

    async def metrics(self) -> str:
        async with self.sessions() as session:
            open_cases = len(
                await repo.list_cases(session, statuses=[s.value for s in CaseStatus if s.is_open])
            )
        lines = [
            "# HELP socialjour_up 1 while the bot runs.",
            "# TYPE socialjour_up gauge",
            "socialjour_up 1",
            "# TYPE socialjour_syncs_total counter",
            f"socialjour_syncs_total {self.matrix.sync_count}",
            "# TYPE socialjour_events_handled_total counter",
            f"socialjour_events_handled_total {self.events_handled}",
            "# TYPE socialjour_open_cases gauge",
            f"socialjour_open_cases {open_cases}",
        ]
        return "\n".join(lines) + "\n"


def dump_tasks() -> None:
    """On SIGUSR1: log where every task waits (for diagnosing a stuck installation)."""
    for task in asyncio.all_tasks():
        frames = task.get_stack(limit=12)
        where = " <- ".join(f"{f.f_code.co_name}:{f.f_lineno}" for f in reversed(frames))
        log.warning("task %s: %s", task.get_name(), where or "(not started)")


def build_providers(
    settings: Settings, send_code: Callable[[SigningContext, str], Awaitable[None]]
) -> dict[str, IdentityProvider]:
    """The identification methods the configuration enables."""
    providers: dict[str, IdentityProvider] = {}
    signing = settings.signing
    for method in signing.auth_methods:
        if method == "matrix-code":
            providers[method] = MatrixCodeProvider(send_code)
        elif method == "bankid" and signing.bankid is not None:
            from signing.identity.bankid import BankIdProvider

            providers[method] = BankIdProvider(signing.bankid)
        elif method == "oidc" and signing.oidc is not None:
            from signing.identity.oidc import OidcProvider

            providers[method] = OidcProvider(signing.oidc)
    return providers


def load_seal(settings: Settings) -> Any:
    """The seal (key, trust roots, TSA client and its worker thread, made once), or
    None when no seal key is configured (signing then refuses)."""
    if settings.signing.seal_pkcs12 is None and settings.signing.pkcs11 is None:
        log.warning("no seal key configured: decisions cannot be signed")
        return None
    from signing.seal import Seal

    return Seal.from_settings(settings.signing)


async def run(settings: Settings) -> None:
    """Run until SIGTERM or SIGINT, then stop cleanly without logging the device out."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGUSR1, dump_tasks)
    app = Socialjour(settings)
    try:
        await app.start()
        lost = asyncio.create_task(app.lock.lost.wait())
        waiting = asyncio.create_task(stop.wait())
        await asyncio.wait({lost, waiting}, return_when=asyncio.FIRST_COMPLETED)
        for task in (lost, waiting):
            task.cancel()
        log.info("stopping")
    finally:
        await app.stop()


def link_key(data_dir: Path) -> bytes:
    """The key that seals signing links (``data_dir/keys/links.key``), made once."""
    path = data_dir / "keys" / "links.key"
    try:
        return bytes.fromhex(path.read_text().strip())
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        key = secrets.token_bytes(32)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(key.hex() + "\n")
        return key
