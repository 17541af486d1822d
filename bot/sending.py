"""Sending events into rooms: trust decided first, transaction ids that make a repeat
harmless, and one retry policy for everything nio can throw at a send.

A send that a repair or a retry may repeat carries an idempotency ``key`` (what the
message is, e.g. ``report:12:v7:question``). The key becomes the Matrix transaction
id, which the homeserver remembers per device: a second ``PUT`` with the same id
answers with the first event's id instead of posting a copy (Synapse keeps them for
a day; see ``MATRIX.md``). Without a key every send gets a fresh random id.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
import uuid
from typing import TYPE_CHECKING, Any

from nio import GroupEncryptionError, OlmUnverifiedDeviceError, RoomSendResponse

if TYPE_CHECKING:
    from bot.matrix import MatrixConnection

log = logging.getLogger(__name__)

#: Attempts of one send before it fails (each decides trust again).
SEND_ATTEMPTS = 4
#: Base of the exponential backoff between attempts, seconds (with full jitter).
SEND_BACKOFF = 0.05


class MatrixError(Exception):
    """A Matrix operation failed in a way retries did not fix."""


def transaction_id(key: str | None) -> str:
    """The Matrix transaction id for an idempotency key (random without one)."""
    if key is None:
        return uuid.uuid4().hex
    return "sj-" + hashlib.sha256(key.encode()).hexdigest()[:40]


def backoff(attempt: int) -> float:
    """Full jitter: a random wait up to ``SEND_BACKOFF * 2**attempt`` seconds."""
    return random.uniform(0, SEND_BACKOFF * (2**attempt))


class RoomSender:
    def __init__(self, connection: MatrixConnection) -> None:
        self.connection = connection
        self.client = connection.client
        self.trust = connection.trust
        self._warned: set[tuple[str, str]] = set()

    async def send(
        self,
        room_id: str,
        content: dict[str, Any],
        event_type: str = "m.room.message",
        *,
        key: str | None = None,
    ) -> str:
        await self.connection.wait_for_room(room_id)
        tx_id = transaction_id(key)
        last: Exception | None = None
        for attempt in range(SEND_ATTEMPTS):
            if attempt:
                await asyncio.sleep(backoff(attempt))
            changed = await self.trust.prepare_room(room_id)
            new = sorted(u for u in changed if (room_id, u) not in self._warned)
            handler = self.connection.on_identity_changed
            if new and handler is not None:
                # Their devices are already excluded; tell the others once.
                self._warned.update((room_id, u) for u in new)
                await handler(room_id, new)
            try:
                resp = await self.client.room_send(
                    room_id,
                    event_type,
                    content,
                    tx_id=tx_id,
                    ignore_unverified_devices=self.trust.shares_with_all,
                )
            except OlmUnverifiedDeviceError as exc:
                # A device appeared between our check and the send: judge it, then retry.
                self.trust.invalidate([exc.device.user_id])
                last = exc
                continue
            except (KeyError, GroupEncryptionError) as exc:
                # nio 0.26 races: the outbound session was dropped (membership or trust
                # changed) while its keys were being shared, or a send waited on a share
                # that failed and found no shared session. A new session is made on retry.
                last = exc
                continue
            if isinstance(resp, RoomSendResponse):
                return resp.event_id
            raise MatrixError(f"send failed: {getattr(resp, 'message', resp)}")
        raise MatrixError(f"send failed after {SEND_ATTEMPTS} attempts") from last
