"""A minimal end-to-end encrypted echo bot: the baseline of ``bench.dialogue_vs_echo``.

It does the least a bot with Socialjour's security setup has to do: one
matrix-nio client with E2EE (vodozemac), its device cross-signed with
``bot.crosssigning.setup_cross_signing``, room keys shared only with devices
their owner cross-signed (``bot.trust.TrustPolicy`` with in-memory pins, as the
test clients use), the same sync loop shape as Socialjour (30 s long-poll with
the same timeline filter, key upload/query/claim after each sync, handlers
started as tasks). It joins every room it is invited to and answers every
``m.text`` with an ``m.text`` carrying the same body. No database, no commands, no per-room lock.

Run as its own process (the benchmark does this, so that it competes for the
CPU the same way Socialjour does)::

    BENCH_ECHO_PASSWORD=... python -m bench.echo_bot \\
        --homeserver http://127.0.0.1:8008 --user-id @echo:localhost --store DIR

It prints ``READY <device id>`` on stdout once it is cross-signed and syncing,
and stops cleanly on SIGTERM or SIGINT (without logging its device out).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from nio import (
    AsyncClient,
    AsyncClientConfig,
    InviteMemberEvent,
    JoinResponse,
    LoginResponse,
    MatrixRoom,
    OlmUnverifiedDeviceError,
    RoomMessageText,
    RoomSendResponse,
    SyncResponse,
)

from bot.crosssigning import CrossSigningKeys, setup_cross_signing
from bot.trust import MemoryPins, TrustPolicy

log = logging.getLogger("bench.echo_bot")

PASSWORD_ENV = "BENCH_ECHO_PASSWORD"  # noqa: S105 - the variable's name, not a password
SYNC_TIMEOUT_MS = 30_000
#: As Socialjour's sync (``bot.matrix``): up to 100 timeline events per room and sync.
SYNC_FILTER = {"room": {"timeline": {"limit": 100}}}


class EchoBot:
    def __init__(self, homeserver: str, user_id: str, password: str, store: Path) -> None:
        store.mkdir(parents=True, exist_ok=True)
        self.password = password
        self.client = AsyncClient(
            homeserver,
            user_id,
            store_path=str(store),
            config=AsyncClientConfig(
                encryption_enabled=True,
                store_sync_tokens=True,
                max_timeout_retry_wait_time=2,
                request_timeout=SYNC_TIMEOUT_MS / 1000 + 15,
            ),
        )
        self.trust = TrustPolicy(self.client, mode="cross-signed", pins=MemoryPins())
        self.echoed = 0
        self.failed = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self.client.add_event_callback(self._on_invite, InviteMemberEvent)
        self.client.add_event_callback(self._on_text, RoomMessageText)

    async def start(self) -> None:
        resp = await self.client.login(self.password, device_name="bench echo bot")
        if not isinstance(resp, LoginResponse):
            raise RuntimeError(f"login failed: {resp}")
        await self.sync(timeout_ms=0, full_state=True)
        if self.client.should_upload_keys:
            await self.client.keys_upload()
        await setup_cross_signing(
            self.client, keys=CrossSigningKeys.generate(), password=self.password
        )

    async def sync(self, *, timeout_ms: int, full_state: bool = False) -> None:
        client = self.client
        resp = await client.sync(timeout=timeout_ms, full_state=full_state, sync_filter=SYNC_FILTER)
        if not isinstance(resp, SyncResponse):
            raise RuntimeError(f"sync failed: {resp}")
        self.trust.invalidate(resp.device_list.changed)
        await client.send_to_device_messages()
        if client.should_upload_keys:
            await client.keys_upload()
        if client.should_query_keys:
            await client.keys_query()
        if client.should_claim_keys:
            await client.keys_claim(client.get_users_for_key_claiming())

    async def sync_forever(self) -> None:
        while True:
            try:
                await self.sync(timeout_ms=SYNC_TIMEOUT_MS)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("sync failed: %s", exc)
                await asyncio.sleep(0.5)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _on_invite(self, room: MatrixRoom, event: InviteMemberEvent) -> None:
        if event.state_key == self.client.user_id and event.membership == "invite":
            self._spawn(self._join(room.room_id))

    async def _join(self, room_id: str) -> None:
        resp = await self.client.join(room_id)
        if not isinstance(resp, JoinResponse):
            log.warning("could not join %s: %s", room_id, resp)

    async def _on_text(self, room: MatrixRoom, event: RoomMessageText) -> None:
        if event.sender != self.client.user_id:
            self._spawn(self._echo(room.room_id, event.body))

    async def _echo(self, room_id: str, body: str) -> None:
        content = {"msgtype": "m.text", "body": body}
        for attempt in range(3):
            await self.trust.prepare_room(room_id)
            try:
                resp = await self.client.room_send(room_id, "m.room.message", content)
            except OlmUnverifiedDeviceError as exc:
                # A device appeared between the trust check and the send: judge it, retry.
                self.trust.invalidate([exc.device.user_id])
                continue
            if isinstance(resp, RoomSendResponse):
                self.echoed += 1
            else:
                self.failed += 1
                log.warning("echo failed (attempt %d): %s", attempt + 1, resp)
            return
        self.failed += 1

    async def close(self) -> None:
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=5)
        await self.client.close()  # never logout(): that would delete the device


async def run(homeserver: str, user_id: str, password: str, store: Path) -> None:
    bot = EchoBot(homeserver, user_id, password, store)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await bot.start()
        syncing = asyncio.create_task(bot.sync_forever(), name="echo-sync")
        print("READY", bot.client.device_id, flush=True)
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait({syncing, stopping}, return_when=asyncio.FIRST_COMPLETED)
        for task in (syncing, stopping):
            task.cancel()
        await asyncio.gather(syncing, stopping, return_exceptions=True)
    finally:
        log.info("echoed %d messages, %d failed", bot.echoed, bot.failed)
        await bot.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.echo_bot", description=__doc__)
    parser.add_argument("--homeserver", required=True, help="e.g. http://127.0.0.1:8008")
    parser.add_argument("--user-id", required=True, help="an existing user, e.g. @echo:localhost")
    parser.add_argument("--store", required=True, type=Path, help="folder for the crypto store")
    args = parser.parse_args(argv)
    password = os.environ.get(PASSWORD_ENV)
    if not password:
        parser.error(f"set the password in ${PASSWORD_ENV}")
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    for noisy in ("nio", "peewee", "aiohttp"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    asyncio.run(run(args.homeserver, args.user_id, password, args.store))
    return 0


if __name__ == "__main__":
    sys.exit(main())
