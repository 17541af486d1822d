"""Sending against a real Synapse: nio 0.26's key-sharing races, reproduced step by step,
and transaction ids that make a repeated send harmless across restarts.

Each race is forced at its critical point by wrapping one nio method on the bot's
client, so the test takes the same path every run instead of hoping for bad timing.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from nio import (
    GroupEncryptionError,
    MegolmEvent,
    RoomCreateResponse,
    RoomMessagesResponse,
    RoomMessageText,
    ShareGroupSessionResponse,
)
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.matrix import MatrixConnection
from bot.rooms import secure_initial_state
from bot.synapse_local import LocalSynapse, free_port
from config import Settings, load_settings
from storage import create_engine, session_factory, upgrade
from tests.conftest import UserFactory, unique
from tests.matrix_helpers import MatrixUser, write_bot_config

pytestmark = pytest.mark.integration

#: Only a guard against a hang: every awaited step here takes well under a second.
HANG = 20.0


def text(body: str) -> dict[str, Any]:
    return {"msgtype": "m.text", "body": body}


@dataclass
class BotDevice:
    """The bot's account and data folder; each :meth:`connect` is a fresh process's
    ``MatrixConnection`` (a new nio client restored from the same store and session)."""

    settings: Settings
    _open: list[tuple[MatrixConnection, AsyncEngine]] = field(default_factory=list)

    async def connect(self) -> MatrixConnection:
        engine = create_engine(self.settings.storage.database_url)
        conn = MatrixConnection(self.settings, session_factory(engine))
        self._open.append((conn, engine))
        await conn.connect()
        conn.start()
        return conn

    async def stop(self, conn: MatrixConnection) -> None:
        for i, (open_conn, engine) in enumerate(self._open):
            if open_conn is conn:
                del self._open[i]
                await conn.stop()
                await engine.dispose()
                return

    async def stop_all(self) -> None:
        while self._open:
            await self.stop(self._open[-1][0])


@pytest.fixture
async def bot_device(synapse: LocalSynapse, tmp_path: Path) -> AsyncIterator[BotDevice]:
    password = secrets.token_urlsafe(12)
    bot_user = synapse.register_user(unique("sender"), password)
    folder = tmp_path / unique("bot")
    database_url = f"sqlite+aiosqlite:///{folder / 'data' / 'socialjour.db'}"
    path = write_bot_config(
        folder,
        synapse=synapse,
        bot_user=bot_user,
        duty_alias=f"#{unique('duty')}:{synapse.server_name}",
        members=[f"@nobody:{synapse.server_name}"],
        leads=[],
        web_port=free_port(),
        database_url=database_url,
    )
    settings = load_settings(path, environ={"SOCIALJOUR_MATRIX_PASSWORD": password})
    await upgrade(database_url)
    device = BotDevice(settings)
    yield device
    await device.stop_all()


async def shared_room(conn: MatrixConnection, *users: MatrixUser) -> str:
    """An encrypted room with ``users`` joined, once the bot's own sync has seen them."""
    resp = await conn.client.room_create(
        invite=[u.user_id for u in users], initial_state=secure_initial_state()
    )
    assert isinstance(resp, RoomCreateResponse), resp
    room_id = resp.room_id
    for user in users:
        await user.join(room_id)

    def all_joined() -> bool:
        room = conn.client.rooms.get(room_id)
        return room is not None and all(
            u.user_id in room.users and u.user_id not in room.invited_users for u in users
        )

    await conn.wait_for(all_joined)
    return room_id


@dataclass
class SendSpy:
    """Wraps the bot client's ``room_send``: counts the calls, notes what they raised,
    and fires an event when a given call has begun."""

    conn: MatrixConnection
    errors: list[type[BaseException]] = field(default_factory=list)
    calls: int = 0
    _entered: dict[int, asyncio.Event] = field(default_factory=dict)

    def __post_init__(self) -> None:
        original = self.conn.client.room_send

        async def room_send(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            if self.calls in self._entered:
                self._entered[self.calls].set()
            try:
                return await original(*args, **kwargs)
            except BaseException as exc:
                self.errors.append(type(exc))
                raise

        self.conn.client.room_send = room_send

    def call_began(self, number: int) -> Callable[[], Awaitable[bool]]:
        """``await spy.call_began(n)()`` returns once the n-th ``room_send`` has run up
        to its first wait (nio's ``room_send`` does not yield before waiting for an
        ongoing key share when the room's members are already synced)."""
        event = self._entered.setdefault(number, asyncio.Event())
        return event.wait


async def wait_decrypted(user: MatrixUser, room_id: str, *bodies: str) -> None:
    for body in bodies:
        got = await user.wait_message(room_id, contains=body, timeout=HANG)
        assert got.event.decrypted, body
    assert not user.undecrypted.get(room_id), "every message must be readable"


# -- race (a): the outbound session is dropped while its keys are being shared ------


async def test_session_dropped_while_its_keys_are_shared_is_shared_again(
    bot_device: BotDevice, make_user: UserFactory
) -> None:
    """A member leaves after the keys reached every device (nio marked the session
    shared) but before ``share_group_session`` finished: the bot's sync drops the
    session, nio's own ``outbound_group_sessions[room].shared = True`` raises KeyError,
    and a send that was waiting for the share finds no shared session
    (GroupEncryptionError). Both sends must go out, readable, after sharing anew."""
    alice = await make_user("alice")
    bob = await make_user("bob")
    conn = await bot_device.connect()
    room_id = await shared_room(conn, alice, bob)
    client = conn.client
    assert client.olm is not None
    spy = SendSpy(conn)
    second_waiting = spy.call_began(2)
    second: asyncio.Task[str] | None = None
    raced = False
    original_send = client._send

    async def _send(response_class: type, *args: Any, **kwargs: Any) -> Any:
        nonlocal raced, second
        if response_class is not ShareGroupSessionResponse or raced:
            return await original_send(response_class, *args, **kwargs)
        raced = True
        # The first share is under way: a second send now waits for it to finish.
        assert room_id in client.sharing_session
        second = asyncio.create_task(conn.send(room_id, text("second")))
        await asyncio.wait_for(second_waiting(), HANG)
        resp = await original_send(response_class, *args, **kwargs)
        # The keys reached every device; bob leaves before the share returns.
        assert client.olm is not None
        assert client.olm.outbound_group_sessions[room_id].shared
        await bob.client.room_leave(room_id)
        await conn.wait_for(
            lambda: client.olm is not None and room_id not in client.olm.outbound_group_sessions,
            HANG,
        )
        return resp

    client._send = _send

    first_id = await asyncio.wait_for(conn.send(room_id, text("first")), HANG)
    assert raced and second is not None
    second_id = await asyncio.wait_for(second, HANG)

    assert KeyError in spy.errors, spy.errors
    assert GroupEncryptionError in spy.errors, spy.errors
    assert first_id != second_id
    await wait_decrypted(alice, room_id, "first", "second")


# -- race (b): a key share fails after nio marked it in progress ---------------------


@pytest.mark.parametrize("failure", ["request-raises", "send-cancelled"])
async def test_sends_after_a_failed_key_share_do_not_wait_forever(
    bot_device: BotDevice, make_user: UserFactory, failure: str
) -> None:
    """nio marks a share in progress (``sharing_session[room]``), then claims one-time
    keys outside the ``try/finally`` that clears the mark. The claim fails here: its
    request raises an aiohttp error nio does not retry, or the send is cancelled while
    it waits. Unhandled, every later send to the room waits forever on the mark."""
    alice = await make_user("alice")
    conn = await bot_device.connect()
    room_id = await shared_room(conn, alice)
    client = conn.client
    spy = SendSpy(conn)
    second_waiting = spy.call_began(2)
    claim_reached = asyncio.Event()
    release = asyncio.Event()
    armed = True
    original_send = client.send

    async def send(method: str, path: str, *args: Any, **kwargs: Any) -> Any:
        nonlocal armed
        if armed and "/keys/claim" in path and room_id in client.sharing_session:
            armed = False
            claim_reached.set()
            await release.wait()
            raise aiohttp.ClientPayloadError("Response payload is not completed")
        return await original_send(method, path, *args, **kwargs)

    client.send = send

    first = asyncio.create_task(conn.send(room_id, text("first"), key="race-b:first"))
    await asyncio.wait_for(claim_reached.wait(), HANG)
    # A second send arrives during the claim and waits for the share to finish.
    second = asyncio.create_task(conn.send(room_id, text("second")))
    await asyncio.wait_for(second_waiting(), HANG)
    assert not second.done()

    expected = ["first", "second", "third"]
    if failure == "request-raises":
        release.set()
        await asyncio.wait_for(first, HANG)
        assert aiohttp.ClientPayloadError in spy.errors, spy.errors
    else:
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        assert asyncio.CancelledError in spy.errors, spy.errors
        expected.remove("first")

    await asyncio.wait_for(second, HANG)
    assert GroupEncryptionError in spy.errors, spy.errors
    await asyncio.wait_for(conn.send(room_id, text("third")), HANG)
    assert not armed
    await wait_decrypted(alice, room_id, *expected)


# -- transaction ids ----------------------------------------------------------------


async def bot_events(user: MatrixUser, room_id: str, sender: str) -> list[Any]:
    """The room's events from ``sender``, newest first, as another member reads them."""
    resp = await user.client.room_messages(room_id, limit=100)
    assert isinstance(resp, RoomMessagesResponse), resp
    return [e for e in resp.chunk if getattr(e, "sender", None) == sender]


async def test_a_repeated_key_posts_one_event_across_restarts(
    bot_device: BotDevice, make_user: UserFactory, synapse: LocalSynapse
) -> None:
    """The same key gives the same event, from the same client, from a new client
    restored from the same store and session, and, after Synapse itself restarted
    (its in-memory transaction cache gone), from a new login on the same device."""
    alice = await make_user("alice")
    conn = await bot_device.connect()
    room_id = await shared_room(conn, alice)
    bot_user = conn.client.user_id
    device_id = conn.client.device_id
    token = conn.client.access_token

    first = await conn.send(room_id, text("once"), key="dedup:once")
    assert await conn.send(room_id, text("once"), key="dedup:once") == first
    other = await conn.send(room_id, text("other"), key="dedup:other")
    assert other != first
    await bot_device.stop(conn)

    # A restart: the stored session (same device, same access token) is restored.
    conn = await bot_device.connect()
    assert (conn.client.device_id, conn.client.access_token) == (device_id, token)
    assert await conn.send(room_id, text("once"), key="dedup:once") == first
    await bot_device.stop(conn)

    # Synapse restarts, and the bot's token is refused: it logs in again on its device.
    synapse.restart()
    session_file = conn.session_file
    stored = json.loads(session_file.read_text())
    session_file.write_text(json.dumps({**stored, "access_token": "revoked"}))
    conn = await bot_device.connect()
    assert conn.client.device_id == device_id
    assert conn.client.access_token not in (token, "revoked")
    assert await conn.send(room_id, text("once"), key="dedup:once") == first
    last = await conn.send(room_id, text("last"))

    await alice.wait_message(room_id, contains="last", timeout=HANG)
    events = await bot_events(alice, room_id, bot_user)
    sent = [e for e in events if isinstance(e, RoomMessageText | MegolmEvent)]
    assert [e.event_id for e in sent] == [last, other, first]
    assert all(isinstance(e, RoomMessageText) for e in sent), "alice reads every one"
    assert [r.body for r in alice.received if r.room_id == room_id] == ["once", "other", "last"]
