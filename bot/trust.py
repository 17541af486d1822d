"""Which devices get room keys: the ``matrix.trust`` policy.

``cross-signed`` (the default) shares room keys only with devices their owner
has cross-signed, pins each user's master key on first sight and refuses to
encrypt for a user whose master key later changes. ``all`` shares with every
device and is meant for development only. Among the bot's own devices only the
one it runs as is trusted: a device left behind by a lost crypto store is still
cross-signed by the bot's keys, but nobody holds its keys any more (or an
attacker does), so it never gets a room key.

nio knows nothing of cross-signing, so the verdict is written into nio's own
device store: a cross-signed device is *verified*, anything else is
*blacklisted*. nio then never shares a session with a blacklisted device, and
never raises for an unverified one because none is left undecided.

A changed identity is accepted by an administrator with ``socialjour trust
accept @user --fingerprint FP``. The command learns the new key from the
database, not from the homeserver: when the bot refuses a new master key it
records it (with the sessions that key vouches for) in ``bot_state`` under
:func:`refused_key`, and the command shows exactly that key and pins it only when
the administrator types its fingerprint. The running bot reads the pin again on
every check of a refused user (a refused user is never cached as decided), so
the next message or send picks the acceptance up without a restart.

People whose sessions the bot cannot trust are told about, not answered
(:class:`TrustNotices`): a refusal encrypted for a device the bot does not trust
is unreadable to exactly the person it is for.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum
from typing import TYPE_CHECKING, Any, Protocol

from nio import AsyncClient
from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.crosssigning import UserCrossSigning, query_cross_signing
from handlers import i18n
from handlers.commands import RoomKind
from handlers.context import LOCAL_TZ
from storage import decisions as decisions_repo
from storage import repo
from storage.models import BotState

if TYPE_CHECKING:
    from config import Settings
    from handlers.messenger import Message, Messenger

log = logging.getLogger(__name__)

#: Prefixes of the ``bot_state`` keys (its key column holds 64 characters, a Matrix
#: id up to 255, so the id is hashed; the value names the user).
REFUSED_PREFIX = "trust.refused."
NOTICE_PREFIX = "trust.notice."


def _state_key(prefix: str, user_id: str) -> str:
    return prefix + hashlib.sha256(user_id.encode()).hexdigest()[:40]


def refused_key(user_id: str) -> str:
    """The ``bot_state`` key of the new identity the bot refused for ``user_id``."""
    return _state_key(REFUSED_PREFIX, user_id)


def notice_key(user_id: str) -> str:
    """The ``bot_state`` key of the day ``user_id``'s untrusted session was last told."""
    return _state_key(NOTICE_PREFIX, user_id)


def format_fingerprint(key: str) -> str:
    """A public key in groups of four characters, as Element prints keys."""
    return " ".join(key[i : i + 4] for i in range(0, len(key), 4))


def same_fingerprint(typed: str, key: str) -> bool:
    """Whether what an administrator typed is ``key`` (spaces and case ignored)."""

    def bare(text: str) -> str:
        return re.sub(r"\s+", "", text).casefold()

    return bool(typed.strip()) and bare(typed) == bare(key)


@dataclass(frozen=True)
class RefusedIdentity:
    """A master key the bot saw for a user whose pinned key is another one."""

    user_id: str
    master_key: str
    #: Device id -> Ed25519 session key of the devices the new master key cross-signs.
    sessions: Mapping[str, str]
    seen_at: datetime

    def to_json(self) -> str:
        return json.dumps(
            {
                "user_id": self.user_id,
                "master_key": self.master_key,
                "sessions": dict(self.sessions),
                "seen_at": self.seen_at.isoformat(),
            }
        )

    @classmethod
    def from_json(cls, text: str) -> RefusedIdentity:
        data = json.loads(text)
        return cls(
            user_id=data["user_id"],
            master_key=data["master_key"],
            sessions=dict(data.get("sessions") or {}),
            seen_at=datetime.fromisoformat(data["seen_at"]),
        )


async def load_refused(session: AsyncSession, *, user_id: str) -> RefusedIdentity | None:
    """The new identity the bot last refused for ``user_id`` (None: none waits)."""
    value = await repo.get_state(session, key=refused_key(user_id))
    if not value:
        return None
    refused = RefusedIdentity.from_json(value)
    return refused if refused.user_id == user_id else None


async def accept_identity(
    session: AsyncSession, *, user_id: str, master_key: str, now: datetime
) -> None:
    """Pin ``master_key`` for ``user_id`` and drop the refusal record (one transaction).

    The running bot compares against the pin at the user's next check.
    """
    await repo.remember_master_key(session, user_id=user_id, master_key=master_key, now=now)
    await _drop_state(session, refused_key(user_id))


async def _drop_state(session: AsyncSession, key: str) -> None:
    await session.execute(
        delete(BotState).where(BotState.key == key).execution_options(synchronize_session=False)
    )


class PinStore(Protocol):
    """Where each user's master key is remembered on first sight, and where a
    refused new key waits for an administrator."""

    async def get(self, user_id: str) -> str | None: ...

    async def remember(self, user_id: str, master_key: str) -> None: ...

    async def record_refused(self, refused: RefusedIdentity) -> None: ...

    async def clear_refused(self, user_id: str) -> None: ...


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

    async def record_refused(self, refused: RefusedIdentity) -> None:
        async with self.sessions() as session, session.begin():
            await repo.set_state(session, key=refused_key(refused.user_id), value=refused.to_json())

    async def clear_refused(self, user_id: str) -> None:
        async with self.sessions() as session, session.begin():
            await _drop_state(session, refused_key(user_id))


class MemoryPins:
    def __init__(self) -> None:
        self.keys: dict[str, str] = {}
        self.refused: dict[str, RefusedIdentity] = {}

    async def get(self, user_id: str) -> str | None:
        return self.keys.get(user_id)

    async def remember(self, user_id: str, master_key: str) -> None:
        self.keys[user_id] = master_key

    async def record_refused(self, refused: RefusedIdentity) -> None:
        self.refused[refused.user_id] = refused

    async def clear_refused(self, user_id: str) -> None:
        self.refused.pop(user_id, None)


class Distrust(Enum):
    """Why the bot does not trust a person's sessions (what someone must do about it)."""

    #: No cross-signing at all: none of their sessions is verified.
    NO_CROSS_SIGNING = "no_cross_signing"
    #: A new master key the administrator has not accepted.
    IDENTITY_CHANGED = "identity_changed"
    #: Cross-signing, but (some of) their sessions are not signed by it.
    UNVERIFIED_SESSION = "unverified_session"
    #: No session with encryption keys at all (never logged in with an E2EE client).
    NO_SESSIONS = "no_sessions"


@dataclass(frozen=True)
class Untrusted:
    """A person the bot cannot (fully) trust, for ``!status``."""

    user_id: str
    reason: Distrust
    #: Sessions the bot does not trust, and all the sessions the person has.
    untrusted_sessions: int = 0
    sessions: int = 0


class TrustPolicy:
    def __init__(self, client: AsyncClient, *, mode: str, pins: PinStore) -> None:
        self.client = client
        self.mode = mode
        self.pins = pins
        self._fresh: set[str] = set()
        #: Users whose pinned master key no longer matches: nothing is encrypted for them.
        self.changed_identities: set[str] = set()
        #: The last /keys/query verdict per user (why a sender is untrusted).
        self._seen: dict[str, UserCrossSigning] = {}
        #: The refused key recorded per user in this process (written once per key).
        self._recorded: dict[str, str] = {}

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
            self._seen[user_id] = info
            identity_ok = await self._check_identity(user_id, info)
            if self._apply(user_id, info, identity_ok):
                changed_rooms.update(
                    rid for rid, room in self.client.rooms.items() if user_id in room.users
                )
            if user_id not in self.changed_identities:
                # A refused identity is checked again every time: an administrator's
                # `trust accept` must take effect in the running bot.
                self._fresh.add(user_id)
        for room_id in changed_rooms:
            # A device that just became trusted must get a fresh session it can read.
            self.client.invalidate_outbound_session(room_id)

    async def _check_identity(self, user_id: str, info: UserCrossSigning) -> bool:
        master_key = info.master_key
        if master_key is None:
            return False
        pinned = await self.pins.get(user_id)
        if pinned is None:
            await self.pins.remember(user_id, master_key)
            return True
        if pinned == master_key:
            if user_id in self.changed_identities:
                self.changed_identities.discard(user_id)
                self._recorded.pop(user_id, None)
                await self.pins.clear_refused(user_id)
                log.info("the new identity of %s is accepted", user_id)
            return True
        if user_id not in self.changed_identities:
            log.warning(
                "cross-signing master key of %s changed; refusing to encrypt for it", user_id
            )
        self.changed_identities.add(user_id)
        if self._recorded.get(user_id) != master_key:
            # What `socialjour trust accept` shows the administrator.
            await self.pins.record_refused(
                RefusedIdentity(
                    user_id=user_id,
                    master_key=master_key,
                    sessions={
                        d: k
                        for d, k in sorted(info.device_ed25519.items())
                        if d in info.cross_signed_devices
                    },
                    seen_at=datetime.now(UTC),
                )
            )
            self._recorded[user_id] = master_key
        return False

    def distrust(self, user_id: str) -> Distrust:
        """Why a message from ``user_id`` was not trusted (after :meth:`is_trusted_sender`)."""
        if user_id in self.changed_identities:
            return Distrust.IDENTITY_CHANGED
        info = self._seen.get(user_id)
        if info is None or info.master_key is None:
            return Distrust.NO_CROSS_SIGNING
        return Distrust.UNVERIFIED_SESSION

    async def survey(self, user_ids: Iterable[str]) -> list[Untrusted]:
        """Everyone among ``user_ids`` with a session the bot does not trust.

        Read-only (asks the homeserver, pins nothing): for ``!status``.
        """
        users = sorted({u for u in user_ids if u != self.client.user_id})
        if self.shares_with_all or not users:
            return []
        answers = await query_cross_signing(self.client, users)
        found: list[Untrusted] = []
        for user_id in users:
            info = answers[user_id]
            sessions = len(info.device_ed25519)
            bad = sessions - len(info.cross_signed_devices & set(info.device_ed25519))
            if not sessions:
                found.append(Untrusted(user_id, Distrust.NO_SESSIONS))
                continue
            if info.master_key is None:
                found.append(Untrusted(user_id, Distrust.NO_CROSS_SIGNING, sessions, sessions))
                continue
            pinned = await self.pins.get(user_id)
            if pinned is not None and pinned != info.master_key:
                found.append(Untrusted(user_id, Distrust.IDENTITY_CHANGED, sessions, sessions))
            elif bad:
                found.append(Untrusted(user_id, Distrust.UNVERIFIED_SESSION, bad, sessions))
        return found

    def _apply(self, user_id: str, info: UserCrossSigning, identity_ok: bool) -> bool:
        """Write the verdicts into nio's store; True if any changed."""
        client = self.client
        changed = False
        own = user_id == client.user_id
        for device in client.device_store.active_user_devices(user_id):
            if own and device.id == client.device_id:
                continue
            trusted = (
                # The bot's other devices are leftovers of a lost store: never trusted.
                not own
                and identity_ok
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


#: (room kind, the room's case if any) of a room, as the dispatcher sees it.
Locate = Callable[[str], Awaitable[tuple[Any, Any]]]


@dataclass
class TrustNotices:
    """Tell the people who can act about someone whose session the bot cannot trust.

    A refusal encrypted for the sender's untrusted device is unreadable to them, so
    the duty leads (in the duty room) and, in a case room, the case's other
    participants are told instead: who it is and what to do. At most once per person
    and day, remembered in ``bot_state`` (:func:`notice_key`) so a restart does not
    repeat it; the sends carry an idempotency key, so a crash between sending and
    remembering posts nothing twice either.
    """

    settings: Settings
    sessions: async_sessionmaker[AsyncSession]
    messenger: Messenger
    trust: TrustPolicy
    #: The dispatcher's room lookup: (RoomKind, Case | None).
    locate: Locate
    duty_room: Callable[[], str | None]
    intake_rooms: Callable[[], Mapping[str, str]]
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock, init=False, repr=False)

    @property
    def lang(self) -> str:
        return self.settings.duty.language

    async def untrusted_sender(self, room_id: str, user_id: str) -> bool:
        """A message from a session the bot does not trust. True when it was dealt
        with here (a member of the room: the people who can act are told); False
        for anyone else, whom the dispatcher refuses as usual."""
        kind, case = await self.locate(room_id)
        if not await self._belongs(kind, case, room_id, user_id):
            return False
        reason = self.trust.distrust(user_id)
        async with self._lock:
            day = datetime.now(UTC).astimezone(LOCAL_TZ).date().isoformat()
            async with self.sessions() as session:
                if await repo.get_state(session, key=notice_key(user_id)) == day:
                    return True
            once = f"trust:untrusted:{user_id}:{day}"
            told = False
            if kind is RoomKind.CASE and case is not None and case.room_id:
                others = tuple(p.user_id for p in case.participants if p.user_id != user_id)
                told |= await self._notice(case.room_id, user_id, reason, others, once)
            duty = self.duty_room()
            if duty is not None:
                leads = tuple(u for u in self.settings.duty.leads if u != user_id)
                told |= await self._notice(duty, user_id, reason, leads, once)
            if told:
                async with self.sessions() as session, session.begin():
                    await repo.set_state(session, key=notice_key(user_id), value=day)
        return True

    async def _belongs(self, kind: Any, case: Any, room_id: str, user_id: str) -> bool:
        if kind is RoomKind.DUTY:
            return user_id in self.settings.duty.allowed
        if kind is RoomKind.CASE:
            return case is not None and any(p.user_id == user_id for p in case.participants)
        if kind is RoomKind.INTAKE:
            owner = self.intake_rooms().get(room_id)
            municipality = self.settings.municipality(owner) if owner else None
            return municipality is not None and user_id in municipality.intake_members
        if kind is RoomKind.DIRECT:
            async with self.sessions() as session:
                owner = await decisions_repo.direct_room_owner(session, room_id=room_id)
            return owner == user_id
        return False

    async def _notice(
        self, room_id: str, user_id: str, reason: Distrust, mentions: tuple[str, ...], once: str
    ) -> bool:
        message = i18n.render(
            self.lang,
            f"trust.untrusted.{reason.value}",
            user=user_id,
            name=self.display_name(user_id),
            mentions=mentions,
            notice=not mentions,
        )
        try:
            await self.messenger.send(room_id, message, key=f"{once}@{room_id}")
        except Exception as exc:
            log.warning("could not tell about an untrusted session (%s)", type(exc).__name__)
            return False
        return True

    def display_name(self, user_id: str) -> str:
        """The person's display name as a room the bot shares with them shows it
        (the duty room first), or their Matrix id."""
        rooms = self.trust.client.rooms
        duty = self.duty_room()
        ordered = ([rooms[duty]] if duty in rooms else []) + list(rooms.values())
        for room in ordered:
            member = room.users.get(user_id)
            if member is not None and member.display_name:
                return str(member.display_name)
        return user_id

    def people(self) -> set[str]:
        """Everyone the configuration names: duty members and leads, intake members,
        decision-makers."""
        found = set(self.settings.duty.allowed)
        for municipality in self.settings.municipalities:
            found.update(municipality.intake_members)
            found.update(maker.user_id for maker in municipality.decision_makers)
        return found

    async def status_lines(self) -> list[Message]:
        """For ``!status`` in the duty room: the people whose sessions the bot cannot
        trust (nothing when everyone is fine)."""
        try:
            found = await self.trust.survey(self.people())
        except Exception as exc:
            log.warning("could not check the members' sessions (%s)", type(exc).__name__)
            return [i18n.render(self.lang, "trust.status.unknown")]
        if not found:
            return []
        lines = [i18n.render(self.lang, "trust.status.header", count=len(found))]
        lines += [
            i18n.render(
                self.lang,
                f"trust.status.{u.reason.value}",
                user=u.user_id,
                name=self.display_name(u.user_id),
                count=u.untrusted_sessions,
                total=u.sessions,
            )
            for u in found
        ]
        return lines
