"""The Matrix connection: one nio client, its device, its sync loop.

Holds everything that is about Matrix and nothing about cases. Events reach the
rest of the program through :attr:`MatrixConnection.on_message`, each at most
once (deduplicated by event id in the database, across restarts too), in order
per room, and outside the sync loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from nio import (
    AsyncClient,
    AsyncClientConfig,
    LocalProtocolError,
    LoginResponse,
    MatrixRoom,
    MegolmEvent,
    ReactionEvent,
    RoomMessageText,
    SyncResponse,
    UnknownEvent,
    WhoamiResponse,
)
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot import crosssigning
from bot.events import POLL_RESPONSE_TYPES
from bot.sending import MatrixError, RoomSender
from bot.trust import DatabasePins, TrustPolicy
from config import Settings
from storage import repo

log = logging.getLogger(__name__)

#: (room, event, whether the sender's device is trusted)
MessageHandler = Callable[[MatrixRoom, RoomMessageText, bool], Awaitable[None]]
VoteHandler = Callable[[MatrixRoom, UnknownEvent, bool], Awaitable[None]]
UndecryptableHandler = Callable[[str, str], Awaitable[None]]
IdentityChangedHandler = Callable[[str, list[str]], Awaitable[None]]
ReactionHandler = Callable[[MatrixRoom, ReactionEvent, bool], Awaitable[None]]

#: How long to wait for a room key that arrives after its message.
DECRYPTION_GRACE = 60.0
SYNC_TIMEOUT_MS = 30_000
#: Synapse's default timeline limit is 10 events per room per sync: a burst of commands
#: (thirty workers typing !ny at once) would lose the earlier ones.
SYNC_FILTER = {"room": {"timeline": {"limit": 500}}}


@dataclass(frozen=True)
class StoredSession:
    user_id: str
    device_id: str
    access_token: str


class MatrixConnection:
    def __init__(self, settings: Settings, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.settings = settings
        self.sessions = sessions
        data_dir = settings.storage.data_dir
        self.store_dir = data_dir / "crypto"
        self.keys_dir = data_dir / "keys"
        self.session_file = data_dir / "session.json"
        for folder in (self.store_dir, self.keys_dir):
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.store_secret = settings.matrix.store_key or _read_or_create_secret(
            self.keys_dir / "store.key"
        )
        self.client = AsyncClient(
            settings.matrix.homeserver,
            settings.matrix.user_id,
            store_path=str(self.store_dir),
            config=AsyncClientConfig(
                encryption_enabled=True,
                store_sync_tokens=True,
                pickle_key=self.store_secret,
                max_timeouts=None,  # keep retrying while the homeserver is away
                max_timeout_retry_wait_time=5,
                request_timeout=SYNC_TIMEOUT_MS / 1000 + 15,
            ),
        )
        self.trust = TrustPolicy(
            self.client, mode=settings.matrix.trust, pins=DatabasePins(sessions)
        )
        self.on_message: MessageHandler | None = None
        self.on_vote: VoteHandler | None = None
        self.on_undecryptable: UndecryptableHandler | None = None
        self.on_identity_changed: IdentityChangedHandler | None = None
        self.on_reaction: ReactionHandler | None = None
        self.synced = asyncio.Condition()
        self.sync_count = 0
        self.last_sync_at: float | None = None
        self._room_locks: dict[str, asyncio.Lock] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._pending: list[tuple[float, MatrixRoom, MegolmEvent]] = []
        self._sync_task: asyncio.Task[None] | None = None
        self.sender = RoomSender(self)
        self.client.add_event_callback(self._on_text, RoomMessageText)
        self.client.add_event_callback(self._on_unknown, UnknownEvent)
        self.client.add_event_callback(self._on_undecrypted, MegolmEvent)
        self.client.add_event_callback(self._on_reaction, ReactionEvent)

    # -- login ---------------------------------------------------------------

    async def connect(self) -> None:
        """Restore the device (or log in the first time), sync once, set up cross-signing."""
        stored = self._load_session()
        if stored and (self.store_dir / f"{stored.user_id}_{stored.device_id}.db").exists():
            self.client.restore_login(stored.user_id, stored.device_id, stored.access_token)
            who = await self.client.whoami()
            if not isinstance(who, WhoamiResponse):
                log.warning("stored access token refused; logging in again on the same device")
                await self._login(device_id=stored.device_id)
        else:
            if stored:
                log.error(
                    "the E2EE store for device %s is missing; a new device is created. "
                    "Restore %s from backup to keep the old one.",
                    stored.device_id,
                    self.store_dir,
                )
            await self._login(device_id=None)
        await self.sync_once(full_state=True)
        if self.client.should_upload_keys:
            await self.client.keys_upload()
        await self._setup_cross_signing()
        log.info("connected as %s, device %s", self.client.user_id, self.client.device_id)

    async def _login(self, *, device_id: str | None) -> None:
        password = self.settings.matrix.password
        if not password:
            raise MatrixError("no stored session and no matrix.password to log in with")
        # nio logs in with the client's device_id: reusing it keeps the device and its keys.
        self.client.device_id = device_id
        resp = await self.client.login(password, device_name=self.settings.matrix.device_name)
        if not isinstance(resp, LoginResponse):
            raise MatrixError(f"login failed: {getattr(resp, 'message', resp)}")
        self._save_session(StoredSession(resp.user_id, resp.device_id, resp.access_token))

    def _load_session(self) -> StoredSession | None:
        try:
            data = json.loads(self.session_file.read_text())
            return StoredSession(data["user_id"], data["device_id"], data["access_token"])
        except (OSError, ValueError, KeyError):
            return None

    def _save_session(self, stored: StoredSession) -> None:
        _write_private(self.session_file, json.dumps(stored.__dict__).encode())

    async def _setup_cross_signing(self) -> None:
        keys_file = self.keys_dir / "cross_signing.sealed"
        salt = _read_or_create_secret(self.keys_dir / "cross_signing.salt").encode()
        key = crosssigning.derive_key(self.store_secret, salt=salt)
        if keys_file.exists():
            keys = crosssigning.load_keys(keys_file, key)
        else:
            keys = crosssigning.CrossSigningKeys.generate()
            crosssigning.save_keys(keys_file, keys, key)
        await crosssigning.setup_cross_signing(
            self.client, keys=keys, password=self.settings.matrix.password
        )

    # -- syncing -------------------------------------------------------------

    async def sync_once(self, *, full_state: bool = False, timeout_ms: int = 0) -> None:
        resp = await self.client.sync(
            timeout=timeout_ms, full_state=full_state, sync_filter=SYNC_FILTER
        )
        if not isinstance(resp, SyncResponse):
            raise MatrixError(f"sync failed: {getattr(resp, 'message', resp)}")
        for room_id, info in resp.rooms.join.items():
            if info.timeline.limited:
                # More events than the filter's limit arrived between two syncs.
                log.warning("sync gap in %s: some events were not delivered", room_id)
        await self._after_sync(resp)

    def start(self) -> None:
        self._sync_task = asyncio.create_task(self._sync_forever(), name="matrix-sync")

    async def _sync_forever(self) -> None:
        backoff = 1.0
        while True:
            try:
                await self.sync_once(timeout_ms=SYNC_TIMEOUT_MS)
                backoff = 1.0
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("sync failed (%s); retrying in %.0f s", type(exc).__name__, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 30.0)

    async def _after_sync(self, resp: SyncResponse) -> None:
        client = self.client
        self.trust.invalidate(resp.device_list.changed)
        await client.send_to_device_messages()
        if client.should_upload_keys:
            await client.keys_upload()
        if client.should_query_keys:
            await client.keys_query()
        if client.should_claim_keys:
            await client.keys_claim(client.get_users_for_key_claiming())
        self._retry_pending()
        self.sync_count += 1
        self.last_sync_at = time.monotonic()
        async with self.synced:
            self.synced.notify_all()

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 30.0) -> None:
        """Wait until ``predicate`` holds after some sync."""
        async with self.synced:
            await asyncio.wait_for(self.synced.wait_for(predicate), timeout)

    async def stop(self) -> None:
        """Stop syncing and finish running handlers; the device stays logged in."""
        if self._sync_task:
            self._sync_task.cancel()
            await asyncio.gather(self._sync_task, return_exceptions=True)
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=10)
        await self.client.close()

    # -- incoming events -----------------------------------------------------

    async def _on_text(self, room: MatrixRoom, event: RoomMessageText) -> None:
        if event.sender == self.client.user_id:
            return
        self._spawn(self._handle(room, event))

    async def _on_unknown(self, room: MatrixRoom, event: UnknownEvent) -> None:
        if event.sender != self.client.user_id and event.type in POLL_RESPONSE_TYPES:
            self._spawn(self._handle(room, event))

    async def _on_reaction(self, room: MatrixRoom, event: ReactionEvent) -> None:
        if event.sender != self.client.user_id:
            self._spawn(self._handle(room, event))

    async def _on_undecrypted(self, room: MatrixRoom, event: MegolmEvent) -> None:
        if event.sender == self.client.user_id:
            return
        log.info("waiting for the room key of an event in %s", room.room_id)
        self._pending.append((time.monotonic(), room, event))
        # LocalProtocolError: a request for this session is already out.
        with contextlib.suppress(LocalProtocolError):
            await self.client.request_room_key(event)

    def _retry_pending(self) -> None:
        still: list[tuple[float, MatrixRoom, MegolmEvent]] = []
        now = time.monotonic()
        for since, room, event in self._pending:
            try:
                decrypted = self.client.decrypt_event(event)
            except Exception:
                decrypted = None
            if isinstance(decrypted, RoomMessageText | ReactionEvent) or (
                isinstance(decrypted, UnknownEvent) and decrypted.type in POLL_RESPONSE_TYPES
            ):
                self._spawn(self._handle(room, decrypted))
            elif decrypted is not None:
                continue  # decrypted, but not a message we act on
            elif now - since > DECRYPTION_GRACE:
                log.warning("gave up waiting for a room key in %s", room.room_id)
                if self.on_undecryptable:
                    self._spawn(self.on_undecryptable(room.room_id, event.event_id))
            else:
                still.append((since, room, event))
        self._pending = still

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _handle(
        self, room: MatrixRoom, event: RoomMessageText | UnknownEvent | ReactionEvent
    ) -> None:
        lock = self._room_locks.setdefault(room.room_id, asyncio.Lock())
        async with lock:  # FIFO: commands in one room are handled in the order they came
            try:
                async with self.sessions() as session, session.begin():
                    fresh = await repo.claim_event(
                        session,
                        event_id=event.event_id,
                        room_id=room.room_id,
                        now=datetime.now(UTC),
                    )
                log.debug(
                    "event %s in %s (%s), first time: %s",
                    event.event_id,
                    room.room_id,
                    type(event).__name__,
                    fresh,
                )
                if not fresh:
                    return
                trusted = (not event.decrypted and not room.encrypted) or (
                    await self.trust.is_trusted_sender(event.sender, event.sender_key)
                )
                if isinstance(event, RoomMessageText) and self.on_message is not None:
                    await self.on_message(room, event, trusted)
                elif isinstance(event, UnknownEvent) and self.on_vote is not None:
                    await self.on_vote(room, event, trusted)
                elif isinstance(event, ReactionEvent) and self.on_reaction is not None:
                    await self.on_reaction(room, event, trusted)
            except Exception:
                log.exception("handling an event failed")

    # -- outgoing --------------------------------------------------------------

    async def send(
        self,
        room_id: str,
        content: dict[str, Any],
        event_type: str = "m.room.message",
        *,
        key: str | None = None,
    ) -> str:
        """Send one event (encrypted in encrypted rooms); see :class:`bot.sending.RoomSender`."""
        return await self.sender.send(room_id, content, event_type, key=key)

    async def wait_for_room(self, room_id: str) -> None:
        if room_id not in self.client.rooms:
            await self.wait_for(lambda: room_id in self.client.rooms)


def _read_or_create_secret(path: Path) -> str:
    """A random secret kept in a private file, created on first use."""
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        value = secrets.token_urlsafe(32)
        _write_private(path, value.encode())
        return value


def _write_private(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
