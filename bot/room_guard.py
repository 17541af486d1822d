"""Nobody but the expected people in the bot's rooms (issue 10, "Unexpected members").

Room keys go to every member the bot's client knows in a room (joined or invited)
whose device the trust policy accepts. A homeserver administrator can put an account
into any room (``make_room_admin``, or logging in as the bot), so membership is
checked against who *should* be there before every send:

* a case room: the case's participants; an intake room: the configured
  ``intake_members`` and the duty leads; a direct room: its owner. An unexpected
  member there stops every send into the room (so no room key and no message reaches
  them), is reported to the duty leads once, and is removed when the bot's power
  level allows it. The send waits until the room is clean again and then goes out (the
  message is not lost); when the intruder cannot be removed it fails after
  :data:`INTRUDER_WAIT` seconds with :class:`IntruderPresent`, and the normal repair
  paths (the report's resume, the handover's and escalation's periodic checks) send it
  again once someone with the power has removed them.
* the duty room: members outside ``duty.members``/``duty.leads`` are reported to the
  leads only. The duty room carries case numbers and never personal data, the alert
  itself goes there, and a colleague dropped from the configuration should not vanish
  without a lead deciding it.

The rule of a room is cached (invalidated when its participants change); who is in it
is read from the client's own view, the same one nio shares keys by, so the hot path
is a dictionary lookup and a set difference. Membership events trigger the same check
at once (:meth:`RoomGuard.membership_changed`), so an intruder is removed on joining or
being invited, not only at the next send. A member who has left was never sent a key
while they were there; the outbound megolm session is replaced anyway once the room is
clean.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from nio import RoomGetStateEventResponse, RoomKickResponse

from bot.sending import MatrixError

if TYPE_CHECKING:
    from bot.matrix import MatrixConnection

log = logging.getLogger(__name__)

#: How long a send waits for an intruder to be removed before it fails, seconds.
INTRUDER_WAIT = 30.0
#: The kick's reason (room state, visible to the homeserver: nothing about anyone).
KICK_REASON = "Not a participant"

RoomKind = Literal["case", "intake", "direct", "duty"]


@dataclass(frozen=True, slots=True)
class RoomRule:
    """Who may be in a room besides the bot, and what the alert calls the room."""

    kind: RoomKind
    members: frozenset[str]
    #: What the alert names the room by: the case number, the intake room's
    #: municipality, the direct room's owner ("" for the duty room).
    label: str = ""

    @property
    def guarded(self) -> bool:
        """Sends are held back and intruders removed (every room but the duty room)."""
        return self.kind != "duty"


class IntruderPresent(MatrixError):
    """A send was refused: an unexpected member stayed in the room."""


#: The rule of a room, or None for a room the bot does not guard.
RuleSource = Callable[[str], Awaitable[RoomRule | None]]
#: Tell the duty leads: (room id, its rule, the unexpected user, whether removed).
IntruderAlert = Callable[[str, RoomRule, str, bool], Awaitable[None]]


class RoomGuard:
    """Checks membership before sends and on membership events; see the module doc."""

    def __init__(
        self, connection: MatrixConnection, rules: RuleSource, alert: IntruderAlert
    ) -> None:
        self.connection = connection
        self.client = connection.client
        self.rules = rules
        self.alert = alert
        #: Off until the program knows its rooms (the duty and intake rooms' ids).
        self.active = False
        self._rules: dict[str, RoomRule | None] = {}
        self._alerted: set[tuple[str, str]] = set()
        self._locks: dict[str, asyncio.Lock] = {}
        #: Rooms that had an intruder: their outbound session is replaced when clean.
        self._tainted: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    # -- the hot path ----------------------------------------------------------

    async def before_send(self, room_id: str) -> None:
        """Return when ``room_id`` holds nobody unexpected; raise :class:`IntruderPresent`
        if someone stays longer than :data:`INTRUDER_WAIT` seconds."""
        if not self.active:
            return
        rule = await self.rule(room_id)
        if rule is None or not rule.guarded:
            return
        if self.intruders(room_id, rule):
            self._tainted.add(room_id)
            await self._deal_with(room_id, rule)
            try:
                await self.connection.wait_for(
                    lambda: not self.intruders(room_id, rule), timeout=INTRUDER_WAIT
                )
            except TimeoutError:
                log.error("send refused: an unexpected member is still in room %s", room_id)
                raise IntruderPresent(f"unexpected member in {room_id}") from None
        if room_id in self._tainted:
            # Whatever may have been shared while they were there is not used again.
            self._tainted.discard(room_id)
            if self.client.olm is not None:
                self.client.invalidate_outbound_session(room_id)

    def intruders(self, room_id: str, rule: RoomRule) -> list[str]:
        """Members (joined or invited) of the client's view of the room beyond ``rule``."""
        room = self.client.rooms.get(room_id)
        if room is None:
            return []
        bot = self.client.user_id
        return sorted(u for u in room.users if u != bot and u not in rule.members)

    async def rule(self, room_id: str) -> RoomRule | None:
        """The room's rule, cached. A room that is nothing to us yet is not cached: a
        new case room is created before the case records it."""
        if room_id in self._rules:
            return self._rules[room_id]
        rule = await self.rules(room_id)
        if rule is not None:
            self._rules[room_id] = rule
        return rule

    def invalidate(self, room_id: str | None = None) -> None:
        """Who may be in the room changed (a participant added, the configuration)."""
        if room_id is None:
            self._rules.clear()
        else:
            self._rules.pop(room_id, None)

    # -- membership events -------------------------------------------------------

    def membership_changed(self, room_ids: Iterable[str]) -> None:
        """Someone joined, was invited or left: check those rooms at once."""
        if not self.active:
            return
        for room_id in room_ids:
            self._spawn(self.inspect(room_id))

    def activate(self) -> None:
        """Start guarding (the rooms are known now) and look at every room once, in the
        background (intruders who came while the bot was down)."""
        self.active = True
        self._spawn(self._sweep())

    async def _sweep(self) -> None:
        for room_id in list(self.client.rooms):
            await self.inspect(room_id)

    async def inspect(self, room_id: str) -> None:
        """Report and remove whoever should not be in the room; never raises."""
        try:
            rule = await self.rule(room_id)
            if rule is not None and self.intruders(room_id, rule):
                if rule.guarded:
                    self._tainted.add(room_id)
                await self._deal_with(room_id, rule)
        except Exception:
            log.exception("checking the members of room %s failed", room_id)

    # -- dealing with them ---------------------------------------------------------

    async def _deal_with(self, room_id: str, rule: RoomRule) -> None:
        """Remove (where allowed) and report each intruder, each once per room."""
        async with self._locks.setdefault(room_id, asyncio.Lock()):
            for user_id in self.intruders(room_id, rule):
                removed = rule.guarded and await self._kick(room_id, user_id)
                if (room_id, user_id) in self._alerted:
                    continue
                self._alerted.add((room_id, user_id))
                log.warning("unexpected member %s in a %s room %s", user_id, rule.kind, room_id)
                try:
                    await self.alert(room_id, rule, user_id, removed)
                except Exception as exc:
                    self._alerted.discard((room_id, user_id))
                    log.error("could not tell the leads about %s: %s", user_id, type(exc).__name__)

    async def _kick(self, room_id: str, user_id: str) -> bool:
        """Remove ``user_id``; False when the homeserver refuses (the bot's power level is
        not above theirs, or the bot may not kick at all: the room's rules decide, in
        every room version, so the homeserver is asked rather than second-guessed)."""
        resp = await self.client.room_kick(room_id, user_id, reason=KICK_REASON)
        if isinstance(resp, RoomKickResponse):
            log.info("removed %s from room %s", user_id, room_id)
            return True
        if await self._gone_already(room_id, user_id):
            return True
        log.warning("could not remove %s: %s", user_id, getattr(resp, "message", resp))
        return False

    async def _gone_already(self, room_id: str, user_id: str) -> bool:
        """Whether the homeserver says ``user_id`` has left (or was removed from)
        ``room_id``, though the bot's view still has them: their leave has not come
        with a sync yet, or came before their invitation in one. The view is mended,
        so a message held back for them goes out; only the homeserver's own answer
        counts (an error says nothing either way)."""
        resp = await self.client.room_get_state_event(room_id, "m.room.member", user_id)
        if not isinstance(resp, RoomGetStateEventResponse):
            return False
        if resp.content.get("membership") not in ("leave", "ban"):
            return False
        room = self.client.rooms.get(room_id)
        if room is not None:
            room.remove_member(user_id)
        log.info("%s had left room %s already", user_id, room_id)
        return True

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work, name="room guard")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
