"""Real E2EE Matrix users for the tests, and the bot as a real process.

A :class:`MatrixUser` is a matrix-nio client with its own crypto store whose
device is cross-signed exactly as the bot's is, and which trusts other devices
by the same code (``bot.trust``), so the default trust policy is exercised from
both sides.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nio import (
    AsyncClient,
    AsyncClientConfig,
    DownloadResponse,
    InviteMemberEvent,
    JoinResponse,
    LoginResponse,
    MatrixRoom,
    MegolmEvent,
    RoomEncryptedFile,
    RoomMessageNotice,
    RoomMessageText,
    RoomSendResponse,
    SyncResponse,
    UnknownEvent,
)
from nio.crypto.attachments import decrypt_attachment
from nio.exceptions import OlmUnverifiedDeviceError

from bot.crosssigning import CrossSigningKeys, setup_cross_signing
from bot.synapse_local import LocalSynapse, free_port
from bot.trust import MemoryPins, TrustPolicy

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Received:
    room_id: str
    sender: str
    body: str
    event: RoomMessageText | RoomMessageNotice
    #: Arrival order among everything this client received (messages and polls).
    seq: int = 0


class MatrixUser:
    def __init__(
        self, base_url: str, user_id: str, password: str, store: Path, *, cross_sign: bool = True
    ) -> None:
        self.password = password
        self.user_id = user_id
        self.localpart = user_id[1:].split(":", 1)[0]
        store.mkdir(parents=True, exist_ok=True)
        self.client = AsyncClient(
            base_url,
            self.user_id,
            store_path=str(store),
            config=AsyncClientConfig(
                encryption_enabled=True, store_sync_tokens=True, max_timeout_retry_wait_time=2
            ),
        )
        self.cross_sign = cross_sign
        self.trust = TrustPolicy(self.client, mode="cross-signed", pins=MemoryPins())
        self.received: list[Received] = []
        self.invites: list[str] = []
        #: Encrypted files received: (room id, event).
        self.files: list[tuple[str, RoomEncryptedFile]] = []
        #: Polls received: (room id, event, arrival order).
        self.polls: list[tuple[str, UnknownEvent, int]] = []
        self._seq = itertools.count(1)
        #: Encrypted events this device could not decrypt, per room.
        self.undecrypted: dict[str, list[MegolmEvent]] = {}
        self._changed = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None
        self.client.add_event_callback(self._on_text, (RoomMessageText, RoomMessageNotice))  # type: ignore[arg-type]
        self.client.add_event_callback(self._on_invite, InviteMemberEvent)  # type: ignore[arg-type]
        self.client.add_event_callback(self._on_undecrypted, MegolmEvent)  # type: ignore[arg-type]
        self.client.add_event_callback(self._on_unknown, UnknownEvent)  # type: ignore[arg-type]
        self.client.add_event_callback(self._on_file, RoomEncryptedFile)  # type: ignore[arg-type]

    @classmethod
    def register(
        cls, synapse: LocalSynapse, localpart: str, store: Path, *, cross_sign: bool = True
    ) -> MatrixUser:
        password = secrets.token_urlsafe(12)
        user_id = synapse.register_user(localpart, password)
        return cls(synapse.base_url, user_id, password, store, cross_sign=cross_sign)

    async def start(self) -> MatrixUser:
        resp = await self.client.login(self.password, device_name="test")
        assert isinstance(resp, LoginResponse), resp
        await self._sync(full_state=True)
        if self.client.should_upload_keys:
            await self.client.keys_upload()
        if self.cross_sign:
            await setup_cross_signing(
                self.client, keys=CrossSigningKeys.generate(), password=self.password
            )
        self._task = asyncio.create_task(self._loop())
        return self

    async def _sync(self, *, full_state: bool = False, timeout: int = 0) -> None:
        resp = await self.client.sync(timeout=timeout, full_state=full_state)
        if isinstance(resp, SyncResponse):
            self.trust.invalidate(resp.device_list.changed)
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
                await self._sync(timeout=1000)
            except asyncio.CancelledError:
                raise
            except Exception:
                await asyncio.sleep(0.5)

    async def _on_text(self, room: MatrixRoom, event: RoomMessageText | RoomMessageNotice) -> None:
        if event.sender != self.user_id:
            self.received.append(
                Received(room.room_id, event.sender, event.body, event, next(self._seq))
            )

    async def _on_file(self, room: MatrixRoom, event: RoomEncryptedFile) -> None:
        if event.sender != self.user_id:
            self.files.append((room.room_id, event))

    async def download_file(self, event: RoomEncryptedFile) -> bytes:
        """Fetch an encrypted attachment and decrypt it the way Element does."""
        resp = await self.client.download(event.url)
        assert isinstance(resp, DownloadResponse), resp
        return decrypt_attachment(resp.body, event.key["k"], event.hashes["sha256"], event.iv)

    async def _on_unknown(self, room: MatrixRoom, event: UnknownEvent) -> None:
        if event.type.endswith("poll.start") and event.sender != self.user_id:
            self.polls.append((room.room_id, event, next(self._seq)))

    async def _on_undecrypted(self, room: MatrixRoom, event: MegolmEvent) -> None:
        self.undecrypted.setdefault(room.room_id, []).append(event)

    async def _on_invite(self, room: MatrixRoom, event: InviteMemberEvent) -> None:
        if event.state_key == self.user_id and event.membership == "invite":
            if room.room_id not in self.invites:
                self.invites.append(room.room_id)

    async def wait(self, predicate: Callable[[], Any], timeout: float = 30.0) -> Any:
        """Wait until ``predicate()`` is truthy (checked after every sync) and return it."""
        deadline = time.monotonic() + timeout
        async with self._changed:
            while not (result := predicate()):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    recent = "\n".join(f"  {r.body[:160]!r}" for r in self.received[-6:])
                    raise TimeoutError(
                        f"{self.localpart}: condition not met in {timeout} s; "
                        f"last messages:\n{recent}"
                    )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), remaining)
            return result

    async def wait_message(
        self,
        room_id: str | None = None,
        *,
        contains: str = "",
        after: int = 0,
        timeout: float = 30.0,
    ) -> Received:
        def find() -> Received | None:
            for r in self.received[after:]:
                if (room_id is None or r.room_id == room_id) and contains in r.body:
                    return r
            return None

        return await self.wait(find, timeout)  # type: ignore[no-any-return]

    async def join(self, room_id: str) -> None:
        resp = await self.client.join(room_id)
        assert isinstance(resp, JoinResponse), resp
        await self.wait(lambda: room_id in self.client.rooms)

    async def send(self, room_id: str, body: str) -> str:
        return await self.send_event(room_id, "m.room.message", {"msgtype": "m.text", "body": body})

    async def send_event(self, room_id: str, event_type: str, content: dict[str, Any]) -> str:
        for attempt in range(3):
            await self.trust.prepare_room(room_id)
            try:
                resp = await self.client.room_send(room_id, event_type, content)
                break
            except OlmUnverifiedDeviceError as exc:
                # Someone joined between deciding the members' devices and the send (a
                # sync ran in between) with a session nobody verified: left out, as
                # Element leaves out insecure devices, and the message sent without it.
                if attempt == 2:
                    raise
                self.client.blacklist_device(exc.device)
        assert isinstance(resp, RoomSendResponse), resp
        return resp.event_id

    async def edit(self, room_id: str, event_id: str, body: str) -> str:
        """Edit an earlier message the way Element does (m.replace)."""
        return await self.send_event(
            room_id,
            "m.room.message",
            {
                "msgtype": "m.text",
                "body": f"* {body}",
                "m.new_content": {"msgtype": "m.text", "body": body},
                "m.relates_to": {"rel_type": "m.replace", "event_id": event_id},
            },
        )

    async def vote(self, room_id: str, poll_event_id: str, answers: list[str]) -> str:
        """Vote in a poll the way Element does (MSC3381, unstable types)."""
        return await self.send_event(
            room_id,
            "org.matrix.msc3381.poll.response",
            {
                "org.matrix.msc3381.poll.response": {"answers": answers},
                "m.relates_to": {"rel_type": "m.reference", "event_id": poll_event_id},
            },
        )

    async def wait_poll(
        self, room_id: str, *, after: int = 0, timeout: float = 30.0
    ) -> UnknownEvent:
        def find() -> UnknownEvent | None:
            for rid, event, _ in self.polls[after:]:
                if rid == room_id:
                    return event
            return None

        return await self.wait(find, timeout)  # type: ignore[no-any-return]

    async def close(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.client.close()


@dataclass
class BotProcess:
    """The bot run exactly as an operator runs it: ``python -m bot run --config``."""

    config_path: Path
    env: dict[str, str]
    web_port: int
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    starts: int = field(default=0)
    #: The admin listener's port (``/healthz``, ``/metrics``); 0: read from the config.
    admin_port: int = 0

    def __post_init__(self) -> None:
        if not self.admin_port:
            config = tomllib.loads(self.config_path.read_text())
            self.admin_port = int(config["web"]["admin_listen"].rsplit(":", 1)[1])

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    def start(self, timeout: float = 60, *, until: str = "ok") -> None:
        """Start the process and wait until ``/healthz`` says ``until`` ("standby" for
        a second node on the same database)."""
        self.starts += 1
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bot", "run", "--config", str(self.config_path)],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"bot exited with {self.proc.returncode}:\n{self.log_tail()}")
            if self.status() == until:
                return
            time.sleep(0.2)
        raise TimeoutError(f"bot not {until} in {timeout} s:\n{self.log_tail()}")

    def healthy(self) -> bool:
        return self.status() == "ok"

    def status(self) -> str | None:
        """What ``/healthz`` says (also when it answers 503), or None without an answer."""
        try:
            with urllib.request.urlopen(f"{self.admin_url}/healthz", timeout=2) as r:
                return str(json.load(r).get("status"))
        except urllib.error.HTTPError as answer:
            try:
                return str(json.load(answer).get("status"))
            except ValueError:
                return None
        except OSError:
            return None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")


def write_bot_config(
    folder: Path,
    *,
    synapse: LocalSynapse,
    bot_user: str,
    duty_alias: str,
    members: list[str],
    leads: list[str],
    web_port: int,
    database_url: str | None = None,
    extra: str = "",
    admin_port: int | None = None,
) -> Path:
    """The bot's config; ``/healthz`` and ``/metrics`` on ``admin_port`` (a free one
    unless given: :class:`BotProcess` reads it back from the file)."""
    folder.mkdir(parents=True, exist_ok=True)
    db = database_url or "sqlite+aiosqlite:///data/socialjour.db"
    path = folder / "socialjour.toml"
    path.write_text(f"""
[matrix]
homeserver = "{synapse.base_url}"
user_id = "{bot_user}"
password = {{ env = "SOCIALJOUR_MATRIX_PASSWORD" }}
device_name = "Socialjour test"

[storage]
data_dir = "data"
database_url = "{db}"

[web]
listen = "127.0.0.1:{web_port}"
public_base_url = "http://127.0.0.1:{web_port}"
admin_listen = "127.0.0.1:{admin_port or free_port()}"

[duty]
room_alias = "{duty_alias}"
members = {json.dumps(members)}
leads = {json.dumps(leads)}
language = "sv"
{extra}
""")
    return path


def another_node(node: BotProcess, folder: Path) -> BotProcess:
    """A second node of ``node``'s installation: the same database and ``data_dir``
    (shared storage in production), listeners of its own; not started."""
    text = node.config_path.read_text()
    config = tomllib.loads(text)
    data_dir = (node.config_path.parent / config["storage"]["data_dir"]).resolve()
    port, admin = free_port(), free_port()
    for key, value in (
        ("data_dir", str(data_dir)),
        ("listen", f"127.0.0.1:{port}"),
        ("public_base_url", f"http://127.0.0.1:{port}"),
        ("admin_listen", f"127.0.0.1:{admin}"),
    ):
        text = re.sub(rf'(?m)^{key} = ".*"$', f'{key} = "{value}"', text)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "socialjour.toml"
    path.write_text(text)
    return BotProcess(path, node.env, port, folder / "bot.log", admin_port=admin)


def bot_env(password: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env["SOCIALJOUR_MATRIX_PASSWORD"] = password
    env["PYTHONUNBUFFERED"] = "1"
    return env


__all__ = [
    "BotProcess",
    "MatrixUser",
    "Received",
    "another_node",
    "bot_env",
    "free_port",
    "write_bot_config",
]
