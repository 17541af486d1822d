"""The bot's rooms under attack (issue 10, "The rooms"), over a real Synapse and E2EE.

The attacker is the homeserver's administrator: Synapse's admin API hands out an
access token for any account (``/_synapse/admin/v1/users/{user}/login``), the bot's
included, so an administrator can invite anyone into a case room as if the bot had.
"""

from __future__ import annotations

import secrets
import urllib.parse
from typing import Any

import pytest
from nio import JoinResponse

from bot.synapse_local import LocalSynapse, SynapseError
from tests.conftest import BotFactory, UserFactory, unique
from tests.matrix_helpers import MatrixUser
from tests.test_bot_matrix import join_duty_room, open_case

pytestmark = pytest.mark.integration


def q(value: str) -> str:
    return urllib.parse.quote(value, safe="")


def admin_token(synapse: LocalSynapse) -> str:
    password = secrets.token_urlsafe(12)
    localpart = unique("admin")
    synapse.register_user(localpart, password, admin=True)
    return str(synapse.login(localpart, password)["access_token"])


def puppet(synapse: LocalSynapse, user_id: str) -> str:
    """An access token for ``user_id``, as any homeserver administrator can get one."""
    answer = synapse.request(
        "POST", f"/_synapse/admin/v1/users/{q(user_id)}/login", {}, token=admin_token(synapse)
    )
    return str(answer["access_token"])


def admin_invites_as_the_bot(synapse: LocalSynapse, bot_user: str, room_id: str, user: str) -> None:
    """What a homeserver administrator can do: invite ``user`` into ``room_id`` as the bot."""
    synapse.request(
        "POST",
        f"/_matrix/client/v3/rooms/{q(room_id)}/invite",
        {"user_id": user},
        token=puppet(synapse, bot_user),
    )


def membership(synapse: LocalSynapse, reader: MatrixUser, room_id: str, user_id: str) -> str:
    """``user_id``'s membership in ``room_id`` as the homeserver has it (read by a member)."""
    try:
        content = synapse.request(
            "GET",
            f"/_matrix/client/v3/rooms/{q(room_id)}/state/m.room.member/{q(user_id)}",
            token=reader.client.access_token,
        )
    except SynapseError as err:
        if err.status == 404:
            return "none"
        raise
    return str(content.get("membership"))


def timeline_since(
    synapse: LocalSynapse, reader: MatrixUser, room_id: str, invited: str
) -> list[dict[str, Any]]:
    """The room's events (oldest first) from ``invited``'s invitation on."""
    answer = synapse.request(
        "GET",
        f"/_matrix/client/v3/rooms/{q(room_id)}/messages?dir=b&limit=100",
        token=reader.client.access_token,
    )
    events = list(reversed(answer["chunk"]))
    start = next(
        i
        for i, e in enumerate(events)
        if e["type"] == "m.room.member"
        and e.get("state_key") == invited
        and e["content"].get("membership") == "invite"
    )
    return events[start:]


def send_plaintext(synapse: LocalSynapse, user: MatrixUser, room_id: str, body: str) -> None:
    """An unencrypted message into an encrypted room, straight through the client API
    (what a client that skips encryption, or the homeserver itself, can do)."""
    synapse.request(
        "PUT",
        f"/_matrix/client/v3/rooms/{q(room_id)}/send/m.room.message/{secrets.token_hex(8)}",
        {"msgtype": "m.text", "body": body},
        token=user.client.access_token,
    )


async def test_a_stranger_put_into_a_case_room_is_removed_gets_nothing_and_leads_are_told(
    make_user: UserFactory, make_bot: BotFactory, synapse: LocalSynapse
) -> None:
    anna = await make_user("anna")
    mallory = await make_user("mallory")
    bot = make_bot(members=[anna.user_id])  # anna is the duty lead too
    duty = await join_duty_room(anna, bot.duty_alias)
    number, case_room = await open_case(anna, duty)
    await anna.wait_message(case_room, contains=f"Ärende {number}")

    # The administrator, as the bot, invites mallory; anna asks the bot something at once.
    mark = len(anna.received)
    admin_invites_as_the_bot(synapse, bot.user_id, case_room, mallory.user_id)
    await mallory.client.join(case_room)  # if the bot has not removed her yet
    await anna.send(case_room, "!status")

    alert = await anna.wait_message(duty, contains=mallory.user_id, after=mark)
    assert number in alert.body
    assert "tagit bort" in alert.body
    assert anna.user_id in alert.event.source["content"]["m.mentions"]["user_ids"]
    assert membership(synapse, anna, case_room, mallory.user_id) == "leave"

    # The bot answers anna once the room is clean, and nothing it said reached mallory.
    reply = await anna.wait_message(case_room, contains=number, after=mark)
    assert reply.event.decrypted
    # Everything the bot sent since the invitation came after she was out of the room,
    # so the room key for it was shared with nobody but anna.
    timeline = timeline_since(synapse, anna, case_room, mallory.user_id)
    left = next(
        i
        for i, e in enumerate(timeline)
        if e["type"] == "m.room.member"
        and e.get("state_key") == mallory.user_id
        and e["content"].get("membership") == "leave"
    )
    bot_events = [
        i for i, e in enumerate(timeline) if e["sender"] == bot.user_id and "state_key" not in e
    ]
    assert bot_events and min(bot_events) > left, timeline
    assert not [r for r in mallory.received if r.room_id == case_room]
    # Kicked, not invited again: mallory cannot come back on her own.
    assert not isinstance(await mallory.client.join(case_room), JoinResponse)
    assert not [r for r in mallory.received if r.room_id == case_room]


async def test_a_stranger_in_the_duty_room_is_reported_to_the_leads(
    make_user: UserFactory, make_bot: BotFactory, synapse: LocalSynapse
) -> None:
    anna = await make_user("anna")
    mallory = await make_user("mallory")
    bot = make_bot(members=[anna.user_id])
    duty = await join_duty_room(anna, bot.duty_alias)

    mark = len(anna.received)
    admin_invites_as_the_bot(synapse, bot.user_id, duty, mallory.user_id)
    alert = await anna.wait_message(duty, contains=mallory.user_id, after=mark)
    assert "duty.members" in alert.body
    # Reported once, however often the bot speaks in the room afterwards.
    await anna.send(duty, "!status")
    status = await anna.wait_message(duty, contains="öppna ärenden", after=mark)
    assert status.seq > alert.seq
    assert len([r for r in anna.received[mark:] if mallory.user_id in r.body]) == 1


def _make_room(synapse: LocalSynapse, token: str, body: dict[str, Any]) -> str:
    return str(
        synapse.request("POST", "/_matrix/client/v3/createRoom", body, token=token)["room_id"]
    )


@pytest.mark.parametrize("flaw", ["public-plaintext", "no-power"])
async def test_an_existing_duty_room_that_is_not_safe_stops_the_start(
    make_user: UserFactory, make_bot: BotFactory, synapse: LocalSynapse, flaw: str
) -> None:
    anna = await make_user("anna")
    bot = make_bot(members=[anna.user_id], start=False)
    localpart = bot.duty_alias[1:].split(":", 1)[0]
    token = anna.client.access_token
    if flaw == "public-plaintext":
        _make_room(synapse, token, {"preset": "public_chat", "room_alias_name": localpart})
    else:
        # Encrypted and invite-only, but the bot is invited without any power.
        _make_room(
            synapse,
            token,
            {
                "preset": "private_chat",
                "room_alias_name": localpart,
                "invite": [bot.user_id],
                "initial_state": [
                    {
                        "type": "m.room.encryption",
                        "state_key": "",
                        "content": {"algorithm": "m.megolm.v1.aes-sha2"},
                    }
                ],
            },
        )

    with pytest.raises(RuntimeError):
        bot.process.start()
    assert bot.process.proc is not None and bot.process.proc.returncode == 1
    log = bot.process.log_text()
    line = next(x for x in log.splitlines() if x.startswith("socialjour run:"))
    assert bot.duty_alias in line
    if flaw == "public-plaintext":
        assert "not end-to-end encrypted" in line and "not invite-only" in line
    else:
        assert "power level" in line and "kick" in line
        assert "encrypted" not in line.split("is not safe to use:")[1].split(".")[0]
    assert "Fix" in line


async def test_plaintext_messages_in_encrypted_rooms_are_never_acted_on(
    make_user: UserFactory, make_bot: BotFactory, synapse: LocalSynapse
) -> None:
    anna = await make_user("anna")
    bot = make_bot(members=[anna.user_id])
    duty = await join_duty_room(anna, bot.duty_alias)
    number, case_room = await open_case(anna, duty)
    await anna.wait_message(case_room, contains=f"Ärende {number}")
    await anna.wait_message(case_room, contains="Vilket beslut")  # the report's first question
    invites = len(anna.invites)

    # Unencrypted commands, with anna's own account: no case, no cancel, no answer.
    mark = len(anna.received)
    send_plaintext(synapse, anna, duty, "!ny")
    send_plaintext(synapse, anna, case_room, "!avbryt")
    # The bot handles each room's events in order: once it answers these (encrypted)
    # commands, it has been through the plaintext ones before them.
    await anna.send(duty, "!status")
    await anna.send(case_room, "!status")
    status = await anna.wait_message(duty, contains="Öppna ärenden", after=mark)
    assert "(1)" in status.body, "the plaintext !ny opened a case"
    await anna.wait_message(case_room, contains=number, after=mark)
    from_bot = [r for r in anna.received[mark:] if r.sender == bot.user_id]
    assert len(from_bot) == 2, [r.body[:80] for r in from_bot]
    assert len(anna.invites) == invites
