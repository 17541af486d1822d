"""The Matrix connection: one nio client, its device, its sync loop.

Holds everything that is about Matrix and nothing about cases. Events reach the
rest of the program through :attr:`MatrixConnection.on_event`, effectively once:

* every event the bot acts on is written to the inbox (``processed_events``,
  ``pending``) in the same transaction as the sync token that delivered it, so a
  crash can only make the homeserver deliver it again, never lose it (nio's own
  sync-token store is off: the database holds the token);
* a gap in a sync (``timeline.limited``) is back-filled through ``/messages``;
* the handler marks the event ``done`` in the same transaction as the change the
  event causes (see :func:`storage.repo.claim_event`); one that does not, or fails,
  is marked done after it, so nothing is handled twice and nothing stays pending;
* events are handled in order per room, rooms side by side, outside the sync loop;
* an event nobody gave us the key for gets a key request at once and, if still
  unreadable after :data:`UNDECRYPTABLE_NOTICE` seconds, a polite "please send it
  again" (through :attr:`on_undecryptable`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nio import (
    AsyncClient,
    AsyncClientConfig,
    Event,
    LocalProtocolError,
    LoginResponse,
    MatrixRoom,
    MegolmEvent,
    MessageDirection,
    ReactionEvent,
    RoomMemberEvent,
    RoomMessagesResponse,
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

if TYPE_CHECKING:
    from bot.room_guard import RoomGuard

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class InboxEvent:
    """An event as the handlers see it, rebuilt from the inbox after a restart too."""

    room_id: str
    event_id: str
    sender: str
    #: ``m.room.message``, ``m.reaction`` or a poll response type.
    type: str
    content: dict[str, Any]
    #: Whether it arrived encrypted (and so ``sender_key`` says which device sent it).
    decrypted: bool
    sender_key: str | None
    #: When the bot received it (stored with the inbox row, so also after a restart).
    received_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Pending:
    """An inbox event waiting for its handler (as stored in ``processed_events``)."""

    event_id: str
    room_id: str
    position: int
    payload: dict[str, Any]
    received_at: datetime


#: (event, whether the sender's device is trusted) -> whether the handler claimed the
#: event itself, in the transaction of the change it caused.
EventHandler = Callable[[InboxEvent, bool], Awaitable[bool]]
UndecryptableHandler = Callable[[str, str], Awaitable[None]]
IdentityChangedHandler = Callable[[str, list[str]], Awaitable[None]]

#: How long an unreadable event waits for its room key before the sender is asked to
#: send it again. Keys normally arrive before or with their message (seconds at most).
UNDECRYPTABLE_NOTICE = 5.0
SYNC_TIMEOUT_MS = 30_000
#: How far a gap is back-filled: pages of :data:`BACKFILL_PAGE` events.
BACKFILL_PAGES = 20
BACKFILL_PAGE = 100
#: Where the sync token is kept (the ``bot_state`` table).
SYNC_STATE_KEY = "matrix.sync_token"
#: A sync that brought nothing to act on saves its token at most this often.
TOKEN_SAVE_INTERVAL = 60.0
#: Event types the bot acts on (besides poll responses and redactions).
ACTED_ON = ("m.room.message", "m.reaction")
#: A removed message (``m.room.redaction``): never encrypted, see :meth:`_payload`.
REDACTION = "m.room.redaction"


@dataclass(frozen=True)
class StoredSession:
    user_id: str
    device_id: str
    access_token: str


class MatrixConnection:
    def __init__(
        self,
        settings: Settings,
        sessions: async_sessionmaker[AsyncSession],
        readers: async_sessionmaker[AsyncSession] | None = None,
        *,
        fence: Callable[[], None] | None = None,
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.readers = readers or sessions
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
                # The token is saved with the inbox, in one transaction (see _commit).
                store_sync_tokens=False,
                pickle_key=self.store_secret,
                max_timeouts=None,  # keep retrying while the homeserver is away
                max_timeout_retry_wait_time=5,
                request_timeout=SYNC_TIMEOUT_MS / 1000 + 15,
            ),
        )
        if fence is not None:
            _fence_requests(self.client, fence)
        self.trust = TrustPolicy(
            self.client, mode=settings.matrix.trust, pins=DatabasePins(sessions)
        )
        self.on_event: EventHandler | None = None
        self.on_undecryptable: UndecryptableHandler | None = None
        self.on_identity_changed: IdentityChangedHandler | None = None
        #: Checks every send and membership change against who may be in the room
        #: (set by the composition root; see :mod:`bot.room_guard`).
        self.guard: RoomGuard | None = None
        self.timeline_limit = settings.matrix.sync_timeline_limit
        self.synced = asyncio.Condition()
        self.sync_count = 0
        self.last_sync_at: float | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        #: Events the callbacks saw in the sync being processed, in order.
        self._batch: list[tuple[str, Event]] = []
        #: Rooms with a drain task running, and rooms whose drain must look again.
        self._draining: dict[str, asyncio.Task[None]] = {}
        self._again: set[str] = set()
        #: What the inbox holds pending, per room in order, so the hot path need not
        #: read back what it has just written (the database stays the truth: it is
        #: read once, at start_processing).
        self._queued: dict[str, list[Pending]] = {}
        self._queued_ids: set[str] = set()
        #: Rooms holding events that wait for a room key.
        self._waiting_keys: set[str] = set()
        #: Set by :meth:`start_processing` once the program is ready for events.
        self._processing = False
        self._had_token = False
        self._token_saved_at = 0.0
        self._sync_task: asyncio.Task[None] | None = None
        self.sender = RoomSender(self)
        self.client.add_event_callback(self._collect, Event)

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
        await self._load_sync_token()
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

    async def _load_sync_token(self) -> None:
        """Continue from the token saved with the inbox (or, once after an upgrade,
        from the one nio kept in its own store)."""
        async with self.sessions() as session:
            token = await repo.get_state(session, key=SYNC_STATE_KEY)
        if token is None and self.client.store is not None:
            token = self.client.store.load_sync_token()
        self.client.loaded_sync_token = token or ""
        self._had_token = bool(token)

    # -- syncing -------------------------------------------------------------

    @property
    def sync_filter(self) -> dict[str, Any]:
        return {"room": {"timeline": {"limit": self.timeline_limit}}}

    async def sync_once(self, *, full_state: bool = False, timeout_ms: int = 0) -> None:
        self._batch = []
        # A room joined in this sync has no gap to fill: its past is not ours to act on.
        # (On the first sync of a process nio knows no rooms yet: every room counts.)
        known_rooms = set(self.client.rooms) if self.sync_count else None
        since = self.client.next_batch or self.client.loaded_sync_token
        resp = await self.client.sync(
            timeout=timeout_ms, full_state=full_state, sync_filter=self.sync_filter
        )
        if not isinstance(resp, SyncResponse):
            raise MatrixError(f"sync failed: {getattr(resp, 'message', resp)}")
        batch, self._batch = self._batch, []
        try:
            await self._after_sync(resp)
            earlier: list[tuple[str, Event]] = []
            if self._had_token:
                for room_id, info in resp.rooms.join.items():
                    limited = info.timeline.limited and info.timeline.prev_batch
                    if limited and (known_rooms is None or room_id in known_rooms):
                        earlier += await self._backfill(room_id, info.timeline.prev_batch)
            else:
                # The first sync of a new device: what was said before is history, not
                # commands for us (and could not be decrypted by this device anyway).
                batch = []
            await self._commit(earlier + batch, resp.next_batch)
        except BaseException:
            # Not in the inbox: the next sync must fetch these events again.
            self.client.next_batch = since
            raise
        self._had_token = True

    async def _backfill(self, room_id: str, prev_batch: str) -> list[tuple[str, Event]]:
        """The events a limited timeline left out, oldest first, back to the first one
        the inbox knows (or :data:`BACKFILL_PAGES` pages, whichever comes first)."""
        found: list[Event] = []
        token: str | None = prev_batch
        for _ in range(BACKFILL_PAGES):
            if token is None:
                break
            resp = await self.client.room_messages(
                room_id, start=token, direction=MessageDirection.back, limit=BACKFILL_PAGE
            )
            if not isinstance(resp, RoomMessagesResponse) or not resp.chunk:
                break
            ids = [e.event_id for e in resp.chunk if getattr(e, "event_id", None)]
            async with self.readers() as session:
                known = await repo.known_events(session, event_ids=ids)
            stop = False
            for event in resp.chunk:
                if event.event_id in known:
                    stop = True
                    break
                found.append(event)
            if stop:
                break
            token = resp.end
        else:
            log.warning("sync gap in %s: back-filled %d pages, gave up", room_id, BACKFILL_PAGES)
        if found:
            log.info("sync gap in %s: %d events back-filled", room_id, len(found))
        return [(room_id, e) for e in reversed(found)]

    async def _commit(self, events: list[tuple[str, Event]], next_batch: str) -> None:
        """Put the events into the inbox and move the sync token, in one transaction."""
        rows: list[tuple[str, str, int, dict[str, Any]]] = []
        base = time.time_ns()
        for room_id, event in events:
            payload = self._payload(event)
            if payload is not None:
                rows.append((event.event_id, room_id, base + len(rows), payload))
        due = time.monotonic() - self._token_saved_at > TOKEN_SAVE_INTERVAL
        if not rows and not due:
            return
        async with self.sessions() as session, session.begin():
            if rows:
                await repo.store_events(session, events=rows, now=datetime.now(UTC))
            await repo.set_state(session, key=SYNC_STATE_KEY, value=next_batch)
        self._token_saved_at = time.monotonic()
        received = datetime.now(UTC)
        self._enqueue(Pending(e, r, p, payload, received) for e, r, p, payload in rows)

    def _enqueue(self, items: Iterable[Pending]) -> None:
        rooms: set[str] = set()
        for item in items:
            if item.event_id in self._queued_ids:
                continue
            self._queued_ids.add(item.event_id)
            queue = self._queued.setdefault(item.room_id, [])
            queue.append(item)
            if len(queue) > 1 and queue[-2].position > item.position:
                queue.sort(key=lambda i: i.position)
            rooms.add(item.room_id)
        for room_id in rooms:
            self._kick(room_id)

    def _payload(self, event: Event) -> dict[str, Any] | None:
        """What the inbox keeps of an event we act on; None for everything else."""
        if getattr(event, "sender", None) in (None, self.client.user_id):
            return None
        if isinstance(event, MegolmEvent):
            # Unreadable for now: keep it encrypted and ask for its key at once.
            self._request_key(event)
            return {"encrypted": event.source}
        kind = event.source.get("type")
        if kind == REDACTION:
            # A removed message: an answer it gave goes with it (plaintext by protocol,
            # the homeserver vouches for the sender). Only which event, never a reason.
            redacts = event.source.get("redacts") or (event.source.get("content") or {}).get(
                "redacts"
            )
            if not isinstance(redacts, str):
                return None
            return {
                "sender": event.sender,
                "type": kind,
                "content": {"redacts": redacts},
                "decrypted": False,
                "sender_key": None,
            }
        if not (kind in ACTED_ON or kind in POLL_RESPONSE_TYPES):
            return None
        if not isinstance(event, RoomMessageText | ReactionEvent | UnknownEvent):
            return None  # e.g. an image: nothing the bot acts on
        return {
            "sender": event.sender,
            "type": kind,
            "content": event.source.get("content") or {},
            "decrypted": bool(event.decrypted),
            "sender_key": getattr(event, "sender_key", None),
        }

    def _request_key(self, event: MegolmEvent) -> None:
        async def request() -> None:
            # LocalProtocolError: a request for this session is already out.
            with contextlib.suppress(LocalProtocolError):
                await self.client.request_room_key(event)

        self._spawn(request())

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
        for room_id in list(self._waiting_keys):
            self._kick(room_id)  # a key may have come with this sync
        if self.guard is not None:
            # Joined, invited, left: the guard looks at once, not only at the next send.
            self.guard.membership_changed(
                room_id
                for room_id, info in resp.rooms.join.items()
                if any(isinstance(e, RoomMemberEvent) for e in [*info.state, *info.timeline.events])
            )
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
        self._processing = False
        if self._sync_task:
            self._sync_task.cancel()
            await asyncio.gather(self._sync_task, return_exceptions=True)
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=10)
        await self.client.close()

    # -- incoming events -----------------------------------------------------

    async def _collect(self, room: MatrixRoom, event: Event) -> None:
        """nio's callback for every timeline event: note it for the inbox."""
        self._batch.append((room.room_id, event))

    async def start_processing(self) -> None:
        """Start handling the inbox: what waited from before a restart, then what comes."""
        async with self.readers() as session:
            pending = await repo.pending_events(session)
        self._processing = True
        self._enqueue(
            Pending(r.event_id, r.room_id, r.position or 0, r.payload or {}, r.processed_at)
            for r in pending
        )
        for room_id in list(self._queued):
            self._kick(room_id)

    def _kick(self, room_id: str) -> None:
        """Make sure the room's inbox is being worked through (one task per room)."""
        if not self._processing:
            return
        if room_id in self._draining:
            self._again.add(room_id)
            return
        task = asyncio.create_task(self._drain(room_id), name=f"inbox {room_id}")
        self._draining[room_id] = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _drain(self, room_id: str) -> None:
        try:
            while self._processing:
                self._again.discard(room_id)
                queue = self._queued.get(room_id, [])
                waiting: list[Pending] = []
                while queue and self._processing:
                    item = queue.pop(0)
                    if await self._process(item):
                        self._queued_ids.discard(item.event_id)
                    else:
                        waiting.append(item)
                if waiting:
                    # Still without their keys: tried again after a sync or this timer.
                    queue[:0] = waiting
                    self._waiting_keys.add(room_id)
                    asyncio.get_running_loop().call_later(
                        UNDECRYPTABLE_NOTICE / 2, self._kick, room_id
                    )
                else:
                    self._waiting_keys.discard(room_id)
                    if not queue:
                        self._queued.pop(room_id, None)
                if room_id not in self._again:
                    return
        except Exception:
            log.exception("working through the inbox of a room failed")
        finally:
            self._draining.pop(room_id, None)

    async def _process(self, item: Pending) -> bool:
        """Handle one inbox event; False if it still waits for its room key."""
        event_id, room_id, payload = item.event_id, item.room_id, item.payload
        if "encrypted" in payload:
            event = self._decrypt(payload["encrypted"], room_id)
            if event is None:
                age = (datetime.now(UTC) - item.received_at).total_seconds()
                if age < UNDECRYPTABLE_NOTICE:
                    return False
                log.warning("no room key for an event in %s; asking to resend", room_id)
                await self._run_handler(self._tell_undecryptable(room_id, event_id))
                await self._claim(event_id, room_id)
                return True
            payload = event
        claimed = False
        if payload:
            claimed = await self._run_handler(
                self._dispatch(room_id, event_id, payload, item.received_at)
            )
        if not claimed:
            await self._claim(event_id, room_id)
        return True

    async def _tell_undecryptable(self, room_id: str, event_id: str) -> bool:
        if self.on_undecryptable is not None:
            await self.on_undecryptable(room_id, event_id)
        return False

    async def _dispatch(
        self,
        room_id: str,
        event_id: str,
        payload: dict[str, Any],
        received_at: datetime | None = None,
    ) -> bool:
        incoming = InboxEvent(
            room_id=room_id,
            event_id=event_id,
            sender=payload["sender"],
            type=payload["type"],
            content=payload["content"],
            decrypted=payload["decrypted"],
            sender_key=payload["sender_key"],
            received_at=received_at,
        )
        if not incoming.decrypted and incoming.type not in ("m.reaction", REDACTION):
            # Plaintext is never trusted: every room the bot acts in is encrypted, so an
            # unencrypted message or vote there was made by a client that bypassed the
            # encryption (or by the homeserver itself). Not acted on, not answered.
            # (Element sends reactions unencrypted, and redactions are never encrypted;
            # bot.app decides what those may do.)
            log.warning("ignored an unencrypted %s in room %s", incoming.type, room_id)
            return False
        room = self.client.rooms.get(room_id)
        encrypted_room = room is not None and room.encrypted
        trusted = (not incoming.decrypted and not encrypted_room) or (
            await self.trust.is_trusted_sender(incoming.sender, incoming.sender_key)
        )
        if self.on_event is None:
            return False
        return await self.on_event(incoming, trusted)

    @staticmethod
    async def _run_handler(work: Awaitable[bool]) -> bool:
        """Run a handler; a failure is logged and the event counts as handled (a
        poison event must not block its room for ever)."""
        try:
            return await work
        except Exception:
            log.exception("handling an event failed")
            return False

    def _decrypt(self, source: dict[str, Any], room_id: str) -> dict[str, Any] | None:
        """The payload of a stored encrypted event if its key is here now; None if not."""
        event = Event.parse_event(source)
        if not isinstance(event, MegolmEvent):
            return None
        event.room_id = room_id
        try:
            decrypted = self.client.decrypt_event(event)
        except Exception:
            return None
        payload = self._payload(decrypted)
        return payload if payload is not None else {}

    async def _claim(self, event_id: str, room_id: str) -> None:
        """Mark an event done that its handler did not claim (read-only commands,
        failures), so it is not handled again after a restart."""
        try:
            async with self.sessions() as session, session.begin():
                await repo.claim_event(
                    session, event_id=event_id, room_id=room_id, now=datetime.now(UTC)
                )
        except Exception:
            log.exception("could not mark an event handled")

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

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


def _fence_requests(client: AsyncClient, fence: Callable[[], None]) -> None:
    """Make every request to the homeserver, and the processing of every answer
    (which writes the crypto store), first ask ``fence`` whether this process still
    holds the lease (see :mod:`bot.instance_lock`): a standby that took over owns the
    device now. Every nio request, retries included, goes through ``send``; every
    answer through ``receive_response``."""
    send, receive = client.send, client.receive_response

    async def fenced_send(*args: Any, **kwargs: Any) -> Any:
        fence()
        return await send(*args, **kwargs)

    async def fenced_receive(response: Any) -> None:
        fence()
        await receive(response)

    client.send = fenced_send
    client.receive_response = fenced_receive


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
