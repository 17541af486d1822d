"""Creating and keeping the bot's rooms, and the Messenger the domain talks to.

Every room the bot creates is private, invite-only and encrypted from its first
event. Its state carries nothing about the person a case is about: the name is
the case number (or a fixed label for the duty and intake rooms) and there is
no topic or alias besides the configured ones.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterable, Sequence
from typing import Any

from nio import (
    JoinResponse,
    RoomCreateResponse,
    RoomGetStateEventResponse,
    RoomGetStateResponse,
    RoomInviteResponse,
    RoomPreset,
    RoomPutStateResponse,
    RoomResolveAliasResponse,
    RoomVisibility,
    UploadResponse,
)

from bot.events import POLL_START, poll_content
from bot.matrix import MatrixConnection
from bot.sending import MatrixError
from handlers.messenger import Message, Poll

log = logging.getLogger(__name__)

MEGOLM = "m.megolm.v1.aes-sha2"


def secure_initial_state() -> list[dict[str, Any]]:
    return [
        {"type": "m.room.encryption", "state_key": "", "content": {"algorithm": MEGOLM}},
        # Someone added later does not see what was said before their invitation.
        {
            "type": "m.room.history_visibility",
            "state_key": "",
            "content": {"history_visibility": "invited"},
        },
        {"type": "m.room.guest_access", "state_key": "", "content": {"guest_access": "forbidden"}},
    ]


def power_levels() -> dict[str, Any]:
    """Members may talk; only the bot changes the room (name, members, encryption).

    ``users`` is left to the server: the creator gets 100 in room versions up to
    11 and is above all levels from version 12 on, where listing it is an error.
    """
    admin_only = [
        "m.room.name",
        "m.room.topic",
        "m.room.avatar",
        "m.room.power_levels",
        "m.room.history_visibility",
        "m.room.canonical_alias",
        "m.room.encryption",
        "m.room.tombstone",
        "m.room.server_acl",
        "m.room.join_rules",
        "m.room.pinned_events",
    ]
    return {
        "users_default": 0,
        "events_default": 0,
        "state_default": 100,
        "invite": 100,
        "kick": 100,
        "ban": 100,
        "redact": 50,
        "events": {t: 100 for t in admin_only},
        "notifications": {"room": 100},
    }


class RoomSetupError(MatrixError):
    """An existing duty or intake room is not set up safely: the bot refuses to start."""


#: What the bot must be able to do in its rooms: invite, remove, change their state.
_NEEDED_LEVELS = (("invite", 0), ("kick", 50), ("state_default", 50))


def room_problems(events: Iterable[dict[str, Any]], bot_user_id: str) -> list[str]:
    """What is wrong with a room for the bot's use, from its full state (empty: fine).

    Power levels as the spec defines them: in room versions from 12 on the creators
    (the create event's sender and ``additional_creators``) are above every level;
    before, the levels' ``users`` (or ``users_default``) say it. Without a power
    levels event the creator has 100 and the rest defaults apply.
    """
    state = {(e.get("type"), e.get("state_key")): e for e in events}
    problems: list[str] = []
    encryption = (state.get(("m.room.encryption", "")) or {}).get("content") or {}
    if encryption.get("algorithm") != MEGOLM:
        problems.append(f"it is not end-to-end encrypted (m.room.encryption must be {MEGOLM})")
    join_rules = (state.get(("m.room.join_rules", "")) or {}).get("content") or {}
    if join_rules.get("join_rule") != "invite":
        problems.append(
            f"it is not invite-only (join rule {join_rules.get('join_rule')!r}, must be 'invite')"
        )
    create = state.get(("m.room.create", "")) or {}
    create_content = create.get("content") or {}
    version = str(create_content.get("room_version", "1"))
    creators = {create.get("sender")}
    extra = create_content.get("additional_creators")
    if isinstance(extra, list):
        creators.update(str(u) for u in extra)
    if version.isdigit() and int(version) >= 12 and bot_user_id in creators:
        return problems  # the creator can do anything in these versions
    levels_event = state.get(("m.room.power_levels", ""))
    if levels_event is None:
        level = 100 if bot_user_id in creators else 0
        needed = {"invite": 0, "kick": 50, "state_default": 0}
    else:
        levels = levels_event.get("content") or {}
        users = levels.get("users") or {}
        level = int(users.get(bot_user_id, levels.get("users_default", 0)))
        needed = {name: int(levels.get(name, default)) for name, default in _NEEDED_LEVELS}
    short = [f"{name} ({required})" for name, required in needed.items() if level < required]
    if short:
        problems.append(
            f"the bot's power level {level} is below what it needs for " + ", ".join(short)
        )
    return problems


class RoomKeeper:
    def __init__(self, matrix: MatrixConnection) -> None:
        self.matrix = matrix
        self.client = matrix.client

    async def create_private_room(
        self,
        *,
        name: str | None,
        invite: Sequence[str],
        alias_localpart: str | None = None,
        direct: bool = False,
    ) -> str:
        resp = await self.client.room_create(
            visibility=RoomVisibility.private,
            alias=alias_localpart,
            name=name,
            is_direct=direct,
            preset=RoomPreset.private_chat,
            invite=list(invite),
            initial_state=secure_initial_state(),
            power_level_override=power_levels(),
        )
        if not isinstance(resp, RoomCreateResponse):
            raise MatrixError(f"room creation failed: {getattr(resp, 'message', resp)}")
        room_id = resp.room_id
        log.debug("room %s created; waiting for the invitees", room_id)
        # Until our own sync has seen the invitees, a message would be encrypted for
        # nobody but us: wait for them (invited is enough).
        await self.matrix.wait_for(
            lambda: (
                room_id in self.client.rooms
                and self.client.rooms[room_id].encrypted
                and all(u in self.client.rooms[room_id].users for u in invite)
            )
        )
        return room_id

    async def ensure_room(self, *, alias: str, name: str, members: Iterable[str]) -> str:
        """The room behind ``alias``: joined, created if missing, configured members invited."""
        members = list(dict.fromkeys(members))
        resolved = await self.client.room_resolve_alias(alias)
        if isinstance(resolved, RoomResolveAliasResponse):
            room_id = resolved.room_id
            if room_id not in self.client.rooms:
                joined = await self.client.join(room_id)
                if not isinstance(joined, JoinResponse):
                    raise RoomSetupError(
                        f"{alias}: the bot cannot join the room "
                        f"({getattr(joined, 'message', joined)}). Fix: invite "
                        f"{self.client.user_id} into it with power level 100, or remove the "
                        "alias so that the bot creates the room itself."
                    )
                await self.matrix.wait_for(lambda: room_id in self.client.rooms)
            await self.check_existing(alias, room_id)
            await self.invite_missing(room_id, members)
            return room_id
        localpart, _, server = alias[1:].partition(":")
        own_server = self.client.user_id.partition(":")[2]
        if server != own_server:
            raise MatrixError(f"{alias} does not exist and is not on the bot's server {own_server}")
        log.info("creating room %s", alias)
        return await self.create_private_room(name=name, invite=members, alias_localpart=localpart)

    async def check_existing(self, alias: str, room_id: str) -> None:
        """Refuse a room someone else set up that is not as the bot would make it.

        A duty or intake room that is not encrypted shows everything to the homeserver;
        one that anybody may join needs no invitation; one where the bot lacks power
        cannot be kept clean (see :mod:`bot.room_guard`). Raises :class:`RoomSetupError`.
        """
        state = await self.client.room_get_state(room_id)
        if not isinstance(state, RoomGetStateResponse):
            raise RoomSetupError(
                f"{alias}: cannot read the room's state: {getattr(state, 'message', state)}"
            )
        problems = room_problems(state.events, self.client.user_id)
        if problems:
            raise RoomSetupError(
                f"{alias} ({room_id}) is not safe to use: " + "; ".join(problems) + ". Fix "
                "it in Element with an account that has power level 100 in the room, or "
                "remove the alias (Room settings → General → Published addresses) so that "
                "the bot creates a new, correctly set up room on its next start."
            )

    async def invite_missing(self, room_id: str, members: Iterable[str]) -> None:
        """Invite configured members who are neither joined nor invited. Never removes anyone."""
        room = self.client.rooms[room_id]
        if not room.members_synced:
            await self.client.joined_members(room_id)
        for user_id in members:
            if user_id in room.users or user_id == self.client.user_id:
                continue
            resp = await self.client.room_invite(room_id, user_id)
            if not isinstance(resp, RoomInviteResponse):
                log.warning("could not invite %s: %s", user_id, getattr(resp, "message", resp))
        await self.matrix.wait_for(
            lambda: all(u in room.users for u in members if u != self.client.user_id), timeout=30
        )


class MatrixMessenger:
    """The :class:`handlers.messenger.Messenger` over a real Matrix connection."""

    def __init__(self, matrix: MatrixConnection, rooms: RoomKeeper) -> None:
        self.matrix = matrix
        self.rooms = rooms

    async def send(self, room_id: str, message: Message, *, key: str | None = None) -> str:
        return await self.matrix.send(room_id, message_content(message), key=key)

    async def send_poll(self, room_id: str, poll: Poll, *, key: str | None = None) -> str:
        return await self.matrix.send(room_id, poll_content(poll), POLL_START, key=key)

    async def create_case_room(self, *, name: str, invite: Sequence[str]) -> str:
        return await self.rooms.create_private_room(name=name, invite=invite)

    async def create_direct_room(self, user_id: str) -> str:
        return await self.rooms.create_private_room(name=None, invite=[user_id], direct=True)

    async def send_file(
        self, room_id: str, data: bytes, filename: str, mimetype: str, *, key: str | None = None
    ) -> str:
        """Upload encrypted (the homeserver stores ciphertext only) and send as m.file."""
        resp, keys = await self.matrix.client.upload(
            lambda *_: io.BytesIO(data),
            content_type="application/octet-stream",
            filename=None,
            encrypt=True,
            filesize=len(data),
        )
        if not isinstance(resp, UploadResponse) or keys is None:
            raise MatrixError(f"upload failed: {getattr(resp, 'message', resp)}")
        content = {
            "msgtype": "m.file",
            "body": filename,
            "filename": filename,
            "info": {"mimetype": mimetype, "size": len(data)},
            "file": {**keys, "url": resp.content_uri},
        }
        return await self.matrix.send(room_id, content, key=key)

    async def invite(self, room_id: str, user_id: str) -> None:
        if self.matrix.guard is not None:
            # A new participant: the guard reads who may be in the room again.
            self.matrix.guard.invalidate(room_id)
        await self.rooms.invite_missing(room_id, [user_id])

    async def close_room(self, room_id: str) -> None:
        """Raise the level to post to the bot's own (see :func:`read_only`)."""
        client = self.matrix.client
        current = await client.room_get_state_event(room_id, "m.room.power_levels")
        if not isinstance(current, RoomGetStateEventResponse):
            raise MatrixError(f"cannot read power levels: {getattr(current, 'message', current)}")
        closed = read_only(current.content, client.user_id)
        if closed is None:
            return
        resp = await client.room_put_state(room_id, "m.room.power_levels", closed)
        if not isinstance(resp, RoomPutStateResponse):
            raise MatrixError(f"cannot lock the room: {getattr(resp, 'message', resp)}")
        log.info("room %s is read-only now", room_id)

    async def can_decrypt(self, room_id: str, user_id: str) -> bool:
        """At least one of the user's devices will get this room's keys from us.

        nio encrypts for whoever is left after the trust policy and reports success
        even when that is nobody; this is the check that makes "sent" mean "readable".
        """
        client = self.matrix.client
        await self.matrix.wait_for(lambda: room_id in client.rooms)
        if user_id not in client.rooms[room_id].users:
            return False
        if client.olm is not None and not list(_devices(client, user_id)):
            client.olm.users_for_key_query.add(user_id)
            await client.keys_query()
        await self.matrix.trust.prepare_room(room_id)
        devices = list(_devices(client, user_id))
        if self.matrix.trust.shares_with_all:
            return bool(devices)
        return client.olm is not None and any(client.olm.is_device_verified(d) for d in devices)


def read_only(levels: dict[str, Any], bot_user_id: str) -> dict[str, Any] | None:
    """The power levels ``levels`` with the room made read-only, or None if it is already.

    Members keep reading but can no longer send anything (messages, reactions,
    redactions, polls): ``events_default`` and every event type go to 100, the level
    only the bot has. State changes stay the bot's as before. The bot keeps 100 where
    the levels list users (rooms up to version 11); from version 12 on the creator is
    above all levels and is not listed.
    """
    found = levels.get("events")
    events: dict[str, Any] = found if isinstance(found, dict) else {}
    if levels.get("events_default") == 100 and all(v >= 100 for v in events.values()):
        return None
    closed = dict(levels)
    closed["events_default"] = 100
    closed["events"] = {event_type: max(level, 100) for event_type, level in events.items()}
    users = levels.get("users")
    if isinstance(users, dict) and bot_user_id in users:
        closed["users"] = {**users, bot_user_id: max(users[bot_user_id], 100)}
    return closed


def _devices(client: Any, user_id: str) -> Iterable[Any]:
    try:
        return list(client.device_store.active_user_devices(user_id))
    except (KeyError, AttributeError):
        return []


def message_content(message: Message) -> dict[str, Any]:
    content: dict[str, Any] = {
        # An alert must be m.text with a mention: notices do not ring phones.
        "msgtype": "m.notice" if message.notice and not message.mentions else "m.text",
        "body": message.text,
        "m.mentions": {"user_ids": list(message.mentions)} if message.mentions else {},
    }
    if message.html is not None:
        content["format"] = "org.matrix.custom.html"
        content["formatted_body"] = message.html
    if message.reply_to:
        content["m.relates_to"] = {"m.in_reply_to": {"event_id": message.reply_to}}
    return content
