"""Which devices get room keys: the ``matrix.trust`` policy.

``cross-signed`` (the default) shares room keys only with devices their owner
has cross-signed, pins each user's master key on first sight and refuses to
encrypt for a user whose master key later changes. ``all`` shares with every
device and is meant for development only.

nio knows nothing of cross-signing, so the verdict is written into nio's own
device store: a cross-signed device is *verified*, anything else is
*blacklisted*. nio then never shares a session with a blacklisted device, and
never raises for an unverified one because none is left undecided.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Protocol

from nio import AsyncClient
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.crosssigning import UserCrossSigning, query_cross_signing
from storage import repo

log = logging.getLogger(__name__)


class PinStore(Protocol):
    """Where each user's master key is remembered on first sight."""

    async def get(self, user_id: str) -> str | None: ...

    async def remember(self, user_id: str, master_key: str) -> None: ...


class DatabasePins:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions

    async def get(self, user_id: str) -> str | None:
        async with self.sessions() as session:
            return await repo.get_master_key(session, user_id=user_id)

    async def remember(self, user_id: str, master_key: str) -> None:
        async with self.sessions() as session, session.begin():
            await repo.remember_master_key(
                session, user_id=user_id, master_key=master_key, now=datetime.now(UTC)
            )


class MemoryPins:
    def __init__(self) -> None:
        self.keys: dict[str, str] = {}

    async def get(self, user_id: str) -> str | None:
        return self.keys.get(user_id)

    async def remember(self, user_id: str, master_key: str) -> None:
        self.keys[user_id] = master_key


class TrustPolicy:
    def __init__(self, client: AsyncClient, *, mode: str, pins: PinStore) -> None:
        self.client = client
        self.mode = mode
        self.pins = pins
        self._fresh: set[str] = set()
        #: Users whose pinned master key no longer matches: nothing is encrypted for them.
        self.changed_identities: set[str] = set()

    @property
    def shares_with_all(self) -> bool:
        return self.mode == "all"

    def invalidate(self, user_ids: Iterable[str]) -> None:
        """Forget verdicts for users whose devices or signatures changed."""
        self._fresh.difference_update(user_ids)

    async def prepare_room(self, room_id: str) -> set[str]:
        """Decide every member device of an encrypted room before sending.

        Returns the members whose identity changed since first seen.
        """
        if self.shares_with_all:
            return set()
        room = self.client.rooms.get(room_id)
        if room is None or not room.encrypted:
            return set()
        users = list(room.users)
        await self.evaluate(users)
        return self.changed_identities.intersection(users)

    async def is_trusted_sender(self, user_id: str, sender_key: str | None) -> bool:
        """Did this message come from a device its owner cross-signed?"""
        if self.shares_with_all:
            return True
        if sender_key is None:
            return False
        for attempt in range(2):
            if attempt:
                # An unknown device: fetch the user's keys once more before refusing.
                self.client.olm.users_for_key_query.add(user_id)
                self.invalidate([user_id])
            await self.evaluate([user_id])
            for device in self.client.device_store.active_user_devices(user_id):
                if device.curve25519 == sender_key:
                    return bool(self.client.olm.is_device_verified(device))
        return False

    async def evaluate(self, user_ids: Iterable[str]) -> None:
        stale = sorted(set(user_ids) - self._fresh)
        if not stale:
            return
        if self.client.should_query_keys:
            await self.client.keys_query()
        answers = await query_cross_signing(self.client, stale)
        changed_rooms: set[str] = set()
        for user_id in stale:
            info = answers.get(user_id) or UserCrossSigning(
                user_id=user_id,
                master_key=None,
                cross_signed_devices=frozenset(),
                device_ed25519={},
            )
            identity_ok = await self._check_identity(user_id, info.master_key)
            if self._apply(user_id, info, identity_ok):
                changed_rooms.update(
                    rid for rid, room in self.client.rooms.items() if user_id in room.users
                )
            self._fresh.add(user_id)
        for room_id in changed_rooms:
            # A device that just became trusted must get a fresh session it can read.
            self.client.invalidate_outbound_session(room_id)

    async def _check_identity(self, user_id: str, master_key: str | None) -> bool:
        if master_key is None:
            return False
        pinned = await self.pins.get(user_id)
        if pinned is None:
            await self.pins.remember(user_id, master_key)
            return True
        if pinned == master_key:
            self.changed_identities.discard(user_id)
            return True
        if user_id not in self.changed_identities:
            log.warning(
                "cross-signing master key of %s changed; refusing to encrypt for it", user_id
            )
        self.changed_identities.add(user_id)
        return False

    def _apply(self, user_id: str, info: UserCrossSigning, identity_ok: bool) -> bool:
        """Write the verdicts into nio's store; True if any changed."""
        client = self.client
        changed = False
        for device in client.device_store.active_user_devices(user_id):
            if user_id == client.user_id and device.id == client.device_id:
                continue
            trusted = (
                identity_ok
                and device.id in info.cross_signed_devices
                and info.device_ed25519.get(device.id) == device.ed25519
            )
            if trusted and not device.verified:
                client.unblacklist_device(device)
                client.verify_device(device)
                changed = True
            elif not trusted and not device.blacklisted:
                client.unverify_device(device)
                client.blacklist_device(device)
                changed = True
        return changed
