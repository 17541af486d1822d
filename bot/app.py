"""The composition root: builds every part from the settings and runs them."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib.metadata
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
from sqlalchemy import text

from bot import events
from bot.instance_lock import InstanceLock
from bot.matrix import InboxEvent, MatrixConnection
from bot.meeting_source import MeetingCalendars
from bot.metrics import HealthState, Metrics, Phase, observe_seconds
from bot.notifiers import build_notifier
from bot.room_guard import RoomGuard, RoomRule
from bot.rooms import MatrixMessenger, RoomKeeper
from bot.roster_source import CalendarRosterSource
from bot.scheduler import Scheduler
from bot.trust import TrustNotices
from config import DecisionMaker, Settings
from handlers import i18n
from handlers.alerts import Alerter, DirectRooms
from handlers.archive import Archiver
from handlers.case_state import CaseStatus
from handlers.commands import RoomKind
from handlers.context import utcnow
from handlers.deadline_jobs import DeadlineJobs
from handlers.decisions import DecisionService
from handlers.dispatcher import Dispatcher
from handlers.escalation import Escalator
from handlers.issuing import Issuer
from handlers.links import LinkSealer
from handlers.messenger import IncomingMessage, IncomingRedaction, IncomingVote
from handlers.oncall import OnCallCommands, on_call
from handlers.signing_backend import SigningBackend
from signing.identity import IdentityProvider, SigningContext
from signing.identity.matrix_code import MatrixCodeProvider
from signing.web import create_admin_app, create_app
from storage import create_engine, read_session_factory, repo, session_factory, upgrade
from storage import decisions as decisions_repo

log = logging.getLogger(__name__)

HOUSEKEEPING_INTERVAL = 60.0
#: The archive sweep's longest sleep (it also runs after each command, and when a
#: purge falls due).
ARCHIVE_INTERVAL = 60.0
#: How long handled event ids are remembered (longer than any sync gap we recover from).
EVENT_MEMORY = timedelta(days=30)
#: ``/healthz`` says "degraded" (503) when the last sync is older than this (a sync
#: long-polls for at most 30 s, so a healthy connection answers well within it).
SYNC_STALE_AFTER = 120.0
#: How long ``/healthz`` waits for the database before calling it unreachable.
HEALTH_DB_TIMEOUT = 5.0


class ListenerError(Exception):
    """A listener's address cannot be bound: ``socialjour run`` says which and stops."""


class Socialjour:
    """One running installation: database, Matrix connection, rooms, handlers, web."""

    def __init__(self, settings: Settings, *, exit_when_fenced: bool = False) -> None:
        self.settings = settings
        self.engine = create_engine(settings.storage.database_url)
        # The lease: on PostgreSQL other nodes wait as standbys, and everything that
        # acts on the world (homeserver requests, SMS, calls, e-mail, every commit of
        # the handlers' transactions) asks it first. The lease's own transactions,
        # the standby's included, are not asked.
        self.lock = InstanceLock(
            session_factory(self.engine),
            fencing=self.engine.dialect.name == "postgresql",
            exit_when_fenced=exit_when_fenced,
        )
        fence = self.lock.ensure_leader
        self.sessions = session_factory(
            self.engine, check_before_commit=fence if self.lock.fencing else None
        )
        self.readers = read_session_factory(self.engine)
        self.matrix = MatrixConnection(settings, self.sessions, self.readers, fence=fence)
        # Health and metrics for the admin listener; each handler gets only the
        # ``observe`` of the histogram it feeds.
        self.health_state = HealthState()
        self.metrics = Metrics(
            open_statuses=tuple(s.value for s in CaseStatus if s.is_open),
            syncs=lambda: self.matrix.sync_count,
        )
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

        self.notifier = build_notifier(settings, acknowledge=self._acknowledge_call, fence=fence)
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
            observe_lateness=observe_seconds(self.metrics.escalation_lateness.observe),
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
            observe_sign_to_pdf=observe_seconds(self.metrics.sign_to_pdf.observe),
            readers=self.readers,
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
            observe_turn=observe_seconds(self.metrics.dialogue_turn.observe),
        )
        # Sessions the bot cannot trust: their owners cannot read a refusal, so the
        # people who can act are told, and the duty room's !status lists them.
        self.trust_notices = TrustNotices(
            settings,
            self.sessions,
            self.messenger,
            self.matrix.trust,
            locate=self.dispatcher.locate,
            duty_room=self._duty_room,
            intake_rooms=lambda: self.dispatcher.intake_rooms,
        )
        self.dispatcher.cases.duty_status_sources = (self.trust_notices.status_lines,)
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
        # Nobody but the expected people gets a message or a room key (issue 10).
        self.guard = RoomGuard(self.matrix, self._room_rule, self._intruder_alert)
        self.matrix.guard = self.guard
        self.started_at = time.monotonic()
        self._runner: web.AppRunner | None = None
        self._admin_runner: web.AppRunner | None = None
        #: Where the admin listener listens, once started (the real port when it is 0).
        self.admin_address: tuple[str, int] | None = None
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
        if self.lock.fencing:
            # PostgreSQL: /healthz first, so it says "starting" through the migrations
            # and "standby" while another node leads; a standby touches neither the
            # homeserver nor the crypto store until it has taken over.
            await self._start_admin()
            await upgrade(settings.storage.database_url)
            await self.lock.wait_until_leader(
                on_standby=lambda: self.health_state.set(Phase.STANDBY)
            )
            self.health_state.set(Phase.STARTING)
        else:
            # SQLite: one process per database. A second one refuses before it binds
            # anything (it would find the first one's ports taken and say only that).
            await upgrade(settings.storage.database_url)
            await self.lock.acquire()
            await self._start_admin()
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
        # The rooms are known: guard every send from here on, and look at each room once.
        self.guard.activate()
        await self.roster.start()
        await self.meetings.start()
        await self.dispatcher.resume()
        await self.backend.recover()
        await self._start_web()
        self.scheduler.start()
        self._housekeeping = asyncio.create_task(self._housekeep(), name="housekeeping")
        self._ready.set()
        await self.matrix.start_processing()
        self.health_state.set(Phase.OK)
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
            backend=self.backend,
            public_base_url=self.settings.web.public_base_url,
            trusted_proxies=self.settings.web.trusted_proxies,
        )
        self.notifier.add_routes(app)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        web_settings = self.settings.web
        try:
            await web.TCPSite(
                self._runner, web_settings.listen_host, web_settings.listen_port
            ).start()
        except OSError as exc:
            raise ListenerError(
                f"web.listen {web_settings.listen_host}:{web_settings.listen_port} is not "
                f"available ({exc.strerror or exc})"
            ) from None

    async def _start_admin(self) -> None:
        """``/healthz`` and ``/metrics`` on ``web.admin_listen``, never the public port."""
        runner = web.AppRunner(
            create_admin_app(health=self.health, metrics_source=self.metrics_text),
            access_log=None,
        )
        await runner.setup()
        self._admin_runner = runner
        web_settings = self.settings.web
        try:
            await web.TCPSite(runner, web_settings.admin_host, web_settings.admin_port).start()
        except OSError as exc:
            raise ListenerError(
                f"web.admin_listen {web_settings.admin_host}:{web_settings.admin_port} is not "
                f"available ({exc.strerror or exc}); on one machine each node needs its own"
            ) from None
        host, port = runner.addresses[0][:2]
        self.admin_address = (str(host), int(port))
        shown = f"[{host}]" if ":" in str(host) else host
        log.info("health and metrics on http://%s:%d/healthz and /metrics", shown, port)

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
        if self._admin_runner:
            await self._admin_runner.cleanup()
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
        self.metrics.events_handled.inc()
        untrusted = not trusted and event.decrypted
        if untrusted and (event.type == "m.room.message" or events.vote(event.type, event.content)):
            # A member's session the bot does not trust: tell those who can act.
            if await self.trust_notices.untrusted_sender(event.room_id, event.sender):
                return False
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
                    received_at=event.received_at,
                )
            )
            if body.lstrip().startswith("!"):
                # A !mottaget or a deadline marked done may have completed a case.
                self._archive_wake.set()
            return claimed
        if event.type == "m.room.redaction":
            # A removed message (plaintext by protocol): its author, or a moderator by the
            # room's power levels, takes the answer it gave out of the report.
            room = self.matrix.client.rooms.get(event.room_id)
            moderator = room is not None and room.power_levels.can_user_redact(event.sender)
            return await self.dispatcher.handle_redaction(
                IncomingRedaction(
                    room_id=event.room_id,
                    sender=event.sender,
                    event_id=event.event_id,
                    redacts=str(event.content.get("redacts", "")),
                    moderator=bool(moderator),
                )
            )
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
                received_at=event.received_at,
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

    async def _room_rule(self, room_id: str) -> RoomRule | None:
        """Who may be in ``room_id`` besides the bot (None: a room the bot does not guard)."""
        kind, case = await self.dispatcher.locate(room_id)
        leads = frozenset(self.settings.duty.leads)
        if kind is RoomKind.DUTY:
            return RoomRule("duty", self.settings.duty.allowed)
        if kind is RoomKind.INTAKE:
            place = self.settings.municipality(self.dispatcher.intake_rooms[room_id])
            members = frozenset(place.intake_members) if place else frozenset()
            return RoomRule("intake", members | leads, place.name if place else "")
        if kind is RoomKind.CASE and case is not None:
            return RoomRule("case", frozenset(p.user_id for p in case.participants), case.number)
        if kind is RoomKind.DIRECT:
            async with self.readers() as session:
                owner = await decisions_repo.direct_room_owner(session, room_id=room_id)
            return RoomRule("direct", frozenset([owner] if owner else []), owner or "")
        return None

    async def _intruder_alert(
        self, room_id: str, rule: RoomRule, user_id: str, removed: bool
    ) -> None:
        """Tell the duty leads (the case by its number, never the person it is about)."""
        lang = self.settings.duty.language
        outcome = "rooms.outcome.removed" if removed else "rooms.outcome.stuck"
        await self.alerter.tell_leads(
            f"rooms.intruder.{rule.kind}",
            once=f"intruder:{room_id}:{user_id}",
            user=user_id,
            number=rule.label,
            place=rule.label,
            owner=rule.label,
            outcome=i18n.text(lang, outcome),
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
        """``/healthz``: the phase (``starting`` until synced and handling events, then
        ``ok``, or ``degraded`` when the homeserver or the database is away; ``standby``
        is for a hot standby, issue 11), with nothing personal in it."""
        phase = self.health_state.phase
        body: dict[str, Any] = {
            "status": phase.value,
            "version": _VERSION,
            "uptime_s": round(time.monotonic() - self.started_at),
        }
        if phase is not Phase.OK:
            return body
        last = self.matrix.last_sync_at
        age = None if last is None else round(time.monotonic() - last, 1)
        database = await self._database_reachable()
        body.update(
            last_sync_age_s=age,
            database="ok" if database else "unreachable",
            device_id=self.matrix.client.device_id,
        )
        if age is None or age >= SYNC_STALE_AFTER or not database:
            body["status"] = "degraded"
        return body

    async def _database_reachable(self) -> bool:
        try:
            async with asyncio.timeout(HEALTH_DB_TIMEOUT), self.readers() as session:
                await session.execute(text("SELECT 1"))
        except Exception as exc:
            log.warning("health check: the database did not answer (%s)", type(exc).__name__)
            return False
        return True

    async def metrics_text(self) -> str:
        """``/metrics``: the registry, with the open cases counted in one query."""
        return await self.metrics.scrape(self._count_open_cases)

    async def _count_open_cases(self) -> dict[str, int]:
        async with self.readers() as session:
            return await repo.count_cases_by_status(session, statuses=self.metrics.open_statuses)


def _package_version() -> str:
    try:
        return importlib.metadata.version("socialjour")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


_VERSION = _package_version()


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
    """The seal (key, trust roots, TSA client, made once), or None when no seal key is
    configured (signing then refuses). With ``signing.seal_processes`` > 0 its seal
    processes are started and hold the key before this returns (a second or two)."""
    if settings.signing.seal_pkcs12 is None and settings.signing.pkcs11 is None:
        log.warning("no seal key configured: decisions cannot be signed")
        return None
    from signing.seal import Seal

    # The signing backend renders the decided document where the seal works.
    seal = Seal.from_settings(settings.signing, preload=("handlers.issuing",))
    processes = len(seal.process_ids)
    log.info("seal ready: %s", f"{processes} seal process(es)" if processes else "in a thread")
    return seal


async def run(settings: Settings) -> None:
    """Run until SIGTERM or SIGINT, then stop cleanly without logging the device out."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGUSR1, dump_tasks)
    app = Socialjour(settings, exit_when_fenced=True)
    try:
        await app.start()
        # What start-up made (settings, templates, nio's state, compiled statements)
        # lives as long as the process: moved out of the collector's sight, so that a
        # collection during an answer does not walk it again every time.
        gc.collect()
        gc.freeze()
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
