"""Sending events into rooms: trust decided first, transaction ids that make a repeat
harmless, and one retry policy for everything nio can throw at a send.

A send that a repair or a retry may repeat carries an idempotency ``key`` (what the
message is, e.g. ``report:12:v7:question``). The key becomes the Matrix transaction
id: a second ``PUT`` with the same id answers with the first event's id instead of
posting a copy. Without a key every send gets a fresh random id.

How long Synapse remembers a transaction id (read in matrix-synapse 1.163.2's source;
the restarts are exercised by ``tests/test_send_races.py``): per room, user and
*device*, not per access token, so a restart that restores the session, a restart of
Synapse, or a new login on the same device id still deduplicates; a new device does not.

* In memory, ``HttpTransactionCache`` (``synapse/rest/client/transactions.py``,
  ``_get_transaction_key``: request path + user + device) replays the first response
  for 30 to 60 minutes (``CLEANUP_PERIOD``, ``_cleanup``); lost when Synapse restarts.
* In the database, table ``event_txn_id_device_id`` (room, user, device, txn id ->
  event id), written by ``PersistEventsStore._persist_transaction_ids_txn``
  (``synapse/storage/databases/main/events.py``) and read before a new event is made
  by ``EventCreationHandler.get_event_id_from_transaction`` (``synapse/handlers/
  message.py``) through ``EventsWorkerStore.get_event_id_from_transaction_id_and_device_id``
  (and again at persist time, ``get_already_persisted_events``). It survives Synapse
  restarts; ``EventsWorkerStore._cleanup_old_transaction_ids``
  (``synapse/storage/databases/main/events_worker.py``, every 5 minutes) deletes rows
  older than 24 hours, and deleting the device deletes its rows (``ON DELETE CASCADE``).

So a repeat within 24 hours of the first send is harmless; after that it posts a copy.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
import uuid
from typing import TYPE_CHECKING, Any

import aiohttp
from nio import (
    AsyncClient,
    GroupEncryptionError,
    OlmUnverifiedDeviceError,
    RoomSendResponse,
    ShareGroupSessionError,
    ShareGroupSessionResponse,
)

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


def guard_group_sharing(client: AsyncClient) -> None:
    """Make a failed megolm key share clear its "sharing in progress" marker.

    nio 0.26's ``share_group_session`` puts an ``asyncio.Event`` into
    ``client.sharing_session[room_id]`` and then claims one-time keys *before* the
    ``try/finally`` that removes and sets it. If the claim raises (a request error nio
    does not retry) or the send is cancelled there, the marker stays, and every later
    ``room_send`` to the room waits on it forever. This wraps the client's
    ``share_group_session`` (``room_send`` calls it through the instance) so that a
    share which fails removes the marker it made and wakes the sends waiting on it;
    those find no shared session, raise ``GroupEncryptionError`` and retry.
    """
    original = client.share_group_session
    if getattr(original, "_clears_stale_marker", False):
        return

    async def share_group_session(
        room_id: str, ignore_unverified_devices: bool = False
    ) -> ShareGroupSessionResponse | ShareGroupSessionError:
        # A marker already there belongs to another share (ours then refuses to start).
        before = client.sharing_session.get(room_id)
        try:
            return await original(room_id, ignore_unverified_devices=ignore_unverified_devices)
        except BaseException as exc:
            # No await between nio's raise and here: a marker other than ``before`` is
            # the one this share made and did not clear.
            marker = client.sharing_session.get(room_id)
            if marker is not None and marker is not before:
                log.warning("key share for a room failed (%s); unblocking", type(exc).__name__)
                del client.sharing_session[room_id]
                marker.set()
            raise

    share_group_session._clears_stale_marker = True  # type: ignore[attr-defined]
    client.share_group_session = share_group_session


class RoomSender:
    def __init__(self, connection: MatrixConnection) -> None:
        self.connection = connection
        self.client = connection.client
        self.trust = connection.trust
        self._warned: set[tuple[str, str]] = set()
        guard_group_sharing(self.client)

    async def send(
        self,
        room_id: str,
        content: dict[str, Any],
        event_type: str = "m.room.message",
        *,
        key: str | None = None,
    ) -> str:
        """Send one event; a repeat of ``key`` returns the first event's id.

        Retried (same transaction id, so a send that reached the homeserver is not
        posted twice): a device that appeared since trust was decided, an outbound
        megolm session dropped while its keys were being shared, a key share that
        failed, and request errors nio gives up on.
        """
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
            guard = self.connection.guard
            if guard is not None:
                # Nobody unexpected gets this message or the room key: waits until the
                # room is clean, or raises IntruderPresent (see bot.room_guard).
                await guard.before_send(room_id)
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
                # changed) after it was marked shared but before the share finished
                # (KeyError), or a send waited on a share that was dropped or failed and
                # found no shared session (GroupEncryptionError). Retrying shares anew.
                last = exc
                continue
            except (aiohttp.ClientError, TimeoutError) as exc:
                # A request nio does not retry (or gave up on), during the key share or
                # the PUT itself: the transaction id makes sending again harmless.
                log.warning("send attempt failed (%s); retrying", type(exc).__name__)
                last = exc
                continue
            if isinstance(resp, RoomSendResponse):
                return resp.event_id
            raise MatrixError(f"send failed: {getattr(resp, 'message', resp)}")
        raise MatrixError(f"send failed after {SEND_ATTEMPTS} attempts") from last
