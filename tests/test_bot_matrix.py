"""The bot over a real Synapse and real E2EE, as a social worker meets it in Element."""

from __future__ import annotations

import re

import pytest
from nio import MegolmEvent, RoomGetStateResponse, RoomResolveAliasResponse

from bot.crosssigning import query_cross_signing
from tests.conftest import BotFactory, UserFactory
from tests.matrix_helpers import MatrixUser

pytestmark = pytest.mark.integration

CASE_NUMBER = re.compile(r"SJ-\d{4}-\d{4}")


async def join_duty_room(user: MatrixUser, alias: str) -> str:
    resolved = await user.client.room_resolve_alias(alias)
    assert isinstance(resolved, RoomResolveAliasResponse), resolved
    await user.wait(lambda: resolved.room_id in user.invites)
    await user.join(resolved.room_id)
    return resolved.room_id


async def open_case(user: MatrixUser, duty_room: str) -> tuple[str, str]:
    """``!ny`` in the duty room; returns (case number, case room id) once joined."""
    seen_invites = len(user.invites)
    mark = len(user.received)
    await user.send(duty_room, "!ny")
    reply = await user.wait_message(duty_room, contains="SJ-", after=mark)
    number = CASE_NUMBER.search(reply.body)
    assert number, reply.body
    case_room = await user.wait(lambda: user.invites[seen_invites:] and user.invites[-1])
    await user.join(case_room)
    return number.group(0), case_room


async def test_new_case_opens_an_encrypted_room_named_by_number_alone(
    make_user: UserFactory, make_bot: BotFactory
) -> None:
    anna = await make_user("anna")
    bot = make_bot(members=[anna.user_id])
    duty = await join_duty_room(anna, bot.duty_alias)
    assert anna.client.rooms[duty].encrypted

    number, case_room = await open_case(anna, duty)

    welcome = await anna.wait_message(case_room, contains=f"Ärende {number}")
    assert welcome.event.decrypted, "the first message in the case room must be readable"
    assert "!hjälp" in welcome.body
    room = anna.client.rooms[case_room]
    assert room.encrypted
    assert room.name == number

    # The worker writes something personal; the homeserver's state must not show it.
    secret = "Tolvan Tolvansson 19121212-1212"
    await anna.send(case_room, secret)
    state = await anna.client.room_get_state(case_room)
    assert isinstance(state, RoomGetStateResponse), state
    types = {e["type"] for e in state.events}
    assert types <= {
        "m.room.create",
        "m.room.member",
        "m.room.power_levels",
        "m.room.join_rules",
        "m.room.history_visibility",
        "m.room.guest_access",
        "m.room.encryption",
        "m.room.name",
    }, types
    by_type = {e["type"]: e["content"] for e in state.events}
    assert by_type["m.room.name"] == {"name": number}
    assert by_type["m.room.join_rules"]["join_rule"] == "invite"
    assert by_type["m.room.encryption"]["algorithm"] == "m.megolm.v1.aes-sha2"
    assert by_type["m.room.power_levels"]["users"].get(anna.user_id, 0) < 100
    assert "Tolvan" not in str(state.events) and "19121212" not in str(state.events)
    assert "19121212" not in bot.process.log_text()


async def test_bot_device_is_cross_signed_and_survives_restart(
    make_user: UserFactory, make_bot: BotFactory
) -> None:
    anna = await make_user("anna")
    bot = make_bot(members=[anna.user_id])
    first = (await query_cross_signing(anna.client, [bot.user_id]))[bot.user_id]
    assert first.master_key is not None
    assert len(first.device_ed25519) == 1, "the bot must have exactly one device"
    (device_id,) = first.device_ed25519
    assert device_id in first.cross_signed_devices

    bot.process.stop()
    bot.process.start()
    again = (await query_cross_signing(anna.client, [bot.user_id]))[bot.user_id]
    assert again.master_key == first.master_key
    assert set(again.device_ed25519) == {device_id}, "a restart must not create a new device"
    assert device_id in again.cross_signed_devices


async def test_restart_between_commands_replays_nothing_and_loses_nothing(
    make_user: UserFactory, make_bot: BotFactory
) -> None:
    anna = await make_user("anna")
    bo = await make_user("bo")
    bot = make_bot(members=[anna.user_id, bo.user_id])
    duty = await join_duty_room(anna, bot.duty_alias)
    await join_duty_room(bo, bot.duty_alias)
    first, _first_room = await open_case(anna, duty)

    # Restart; bo is no longer on duty in the new config.
    bot.process.stop()
    text = bot.config_path.read_text().replace(f', "{bo.user_id}"', "")
    bot.config_path.write_text(text)
    bot.process.start()

    second, _ = await open_case(anna, duty)
    assert first.rsplit("-", 1)[1] == "0001" and second.rsplit("-", 1)[1] == "0002"
    mark = len(anna.received)
    await anna.send(duty, "!status")
    status = await anna.wait_message(duty, contains="Öppna ärenden", after=mark)
    assert first in status.body and second in status.body
    # The first !ny was not run again after the restart: exactly two cases, two rooms.
    assert "(2)" in status.body
    assert len([r for r in anna.invites if r != duty]) == 2

    mark = len(bo.received)
    await bo.send(duty, "!ny")
    refusal = await bo.wait_message(duty, contains="behörighet", after=mark)
    assert refusal.event.decrypted
    assert "!ny" not in bot.process.log_text().split("refused", 1)[-1].split("\n", 1)[0]


async def test_commands_keep_working_when_synapse_restarts(
    make_user: UserFactory, make_bot: BotFactory, synapse
) -> None:
    anna = await make_user("anna")
    bot = make_bot(members=[anna.user_id])
    duty = await join_duty_room(anna, bot.duty_alias)
    synapse.restart()
    mark = len(anna.received)
    await anna.send(duty, "!status")
    reply = await anna.wait_message(duty, contains="ärenden", after=mark, timeout=60)
    assert reply.event.decrypted
    assert bot.process.proc is not None and bot.process.proc.poll() is None


async def test_help_unknown_and_cancel_with_confirmation(
    make_user: UserFactory, make_bot: BotFactory
) -> None:
    anna = await make_user("anna")
    bot = make_bot(members=[anna.user_id])
    duty = await join_duty_room(anna, bot.duty_alias)

    mark = len(anna.received)
    await anna.send(duty, "!hjälp")
    help_text = await anna.wait_message(duty, contains="!ny", after=mark)
    assert "!status" in help_text.body and "!jour" in help_text.body

    mark = len(anna.received)
    await anna.send(duty, "!flyga")
    unknown = await anna.wait_message(duty, contains="Okänt kommando", after=mark)
    assert "!flyga" in unknown.body

    _number, case_room = await open_case(anna, duty)
    mark = len(anna.received)
    await anna.send(case_room, "!avbryt")
    await anna.wait_message(case_room, contains="!avbryt ja", after=mark)
    mark = len(anna.received)
    await anna.send(case_room, "!avbryt ja")
    await anna.wait_message(case_room, contains="avbrutet", after=mark)
    mark = len(anna.received)
    await anna.send(duty, "!status")
    await anna.wait_message(duty, contains="Inga öppna ärenden", after=mark)


async def test_device_not_cross_signed_gets_no_keys_and_no_service(
    make_user: UserFactory, make_bot: BotFactory
) -> None:
    anna = await make_user("anna")
    eve = await make_user("eve", cross_sign=False)
    bot = make_bot(members=[anna.user_id, eve.user_id])
    duty = await join_duty_room(anna, bot.duty_alias)
    await join_duty_room(eve, bot.duty_alias)

    mark = len(anna.received)
    await eve.send(duty, "!ny")
    warning = await anna.wait_message(duty, contains="inte är verifierad", after=mark)
    assert warning.sender == bot.user_id
    # Eve's device never got the bot's room key: what the bot said stays unreadable to her.
    await eve.wait(
        lambda: any(
            isinstance(e, MegolmEvent) and e.sender == bot.user_id for e in _timeline(eve, duty)
        ),
        timeout=30,
    )
    assert not [r for r in eve.received if r.sender == bot.user_id]
    assert len([r for r in eve.invites if r != duty]) == 0, "no case was opened for Eve"


def _timeline(user: MatrixUser, room_id: str) -> list[object]:
    return list(user.undecrypted.get(room_id, []))
