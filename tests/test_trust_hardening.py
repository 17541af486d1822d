"""Trust in encryption identities, hardened (issue 10, "The rooms"), over a real Synapse
with real E2EE clients and the bot as a real process.

* ``socialjour trust accept @user --fingerprint FP`` accepts exactly the key the
  administrator checked, and the running bot uses it without a restart;
* a member writing from a session the bot cannot trust is told about to the people
  who can act (once a day), and ``!status`` lists such members;
* the bot's own device left behind by a lost crypto store never gets a room key.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess

import pytest
from nio import (
    AsyncClient,
    AsyncClientConfig,
    EncryptionError,
    MegolmEvent,
    RoomMessageText,
    SyncResponse,
)

from bot.crosssigning import CrossSigningKeys, setup_cross_signing
from bot.synapse_local import LocalSynapse
from bot.trust import format_fingerprint, same_fingerprint
from tests.bot_cli import run_bot
from tests.conftest import BotFactory, BotSetup, UserFactory
from tests.test_bot_matrix import join_duty_room, open_case

pytestmark = pytest.mark.integration


def trust_cli(bot: BotSetup, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m bot trust accept ...`` against the bot's configuration, as an
    administrator runs it beside the running bot."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env["SOCIALJOUR_MATRIX_PASSWORD"] = bot.process.env["SOCIALJOUR_MATRIX_PASSWORD"]
    return run_bot("trust", "accept", *args, "--config", str(bot.config_path), env=env)


def test_fingerprints_compare_without_spaces_and_case() -> None:
    key = CrossSigningKeys.generate().master_public
    shown = format_fingerprint(key)
    assert shown.replace(" ", "") == key and all(len(g) <= 4 for g in shown.split())
    assert same_fingerprint(shown.lower(), key)
    assert same_fingerprint(f"  {shown.upper()}\n", key)
    assert not same_fingerprint("", key)
    assert not same_fingerprint(shown[:-1], key)
    assert not same_fingerprint(format_fingerprint(CrossSigningKeys.generate().master_public), key)


async def test_trust_accept_takes_exactly_the_checked_key_and_the_running_bot_uses_it(
    make_user: UserFactory, make_bot: BotFactory
) -> None:
    anna = await make_user("anna")
    bo = await make_user("bo")
    bot = make_bot(members=[anna.user_id, bo.user_id], leads=[anna.user_id])
    duty = await join_duty_room(anna, bot.duty_alias)
    await join_duty_room(bo, bot.duty_alias)

    # The bot meets Bo's identity (and pins it) and answers him.
    mark = len(bo.received)
    await bo.send(duty, "!status")
    await bo.wait_message(duty, contains="ärenden", after=mark)

    # Bo resets his cross-signing (a new phone, a lost recovery key... or an impostor).
    new_keys = CrossSigningKeys.generate()
    await setup_cross_signing(bo.client, keys=new_keys, password=bo.password)
    mark = len(anna.received)
    await bo.send(duty, "!status")
    # Refused: the lead is told what to do.
    told = await anna.wait_message(duty, contains="trust accept", after=mark)
    assert bo.user_id in told.body

    # Without --fingerprint: the new key's fingerprint, where to compare it, exit 1.
    fingerprint = format_fingerprint(new_keys.master_public)
    shown = trust_cli(bot, bo.user_id)
    assert shown.returncode == 1, shown.stderr
    assert fingerprint in shown.stdout
    assert "Settings → Security & Privacy → Cryptography" in shown.stdout

    # Another key's fingerprint changes nothing.
    other = format_fingerprint(CrossSigningKeys.generate().master_public)
    wrong = trust_cli(bot, bo.user_id, "--fingerprint", other)
    assert wrong.returncode == 1
    assert "nothing changed" in wrong.stderr
    mark = len(bo.received)
    await bo.send(duty, "!status")
    # Still refused: nothing reaches Bo (the lead's notice about him is once a day, so
    # wait for the bot's answer to Anna, which comes after Bo's message is handled).
    mark_anna = len(anna.received)
    await anna.send(duty, "!status")
    await anna.wait_message(duty, contains="ärenden", after=mark_anna)
    assert not [r for r in bo.received[mark:] if r.sender == bot.user_id and r.event.decrypted]

    # The fingerprint the administrator read out with Bo, typed in lower case and spaces.
    accepted = trust_cli(bot, bo.user_id, "--fingerprint", fingerprint.lower())
    assert accepted.returncode == 0, accepted.stderr
    assert "accepted" in accepted.stdout

    # The running bot (never restarted) answers Bo again, readable on his device.
    mark = len(bo.received)
    await bo.send(duty, "!status")
    reply = await bo.wait_message(duty, contains="ärenden", after=mark)
    assert reply.sender == bot.user_id and reply.event.decrypted
    assert bot.process.starts == 1

    # Accepted once: there is nothing left to accept.
    again = trust_cli(bot, bo.user_id, "--fingerprint", fingerprint)
    assert again.returncode == 1


async def test_an_untrusted_session_is_told_to_the_leads_once_a_day_and_listed_in_status(
    make_user: UserFactory, make_bot: BotFactory
) -> None:
    anna = await make_user("anna")
    eve = await make_user("eve", cross_sign=False)
    await eve.client.set_displayname("Eve Evesson")
    bot = make_bot(members=[anna.user_id, eve.user_id], leads=[anna.user_id])
    duty = await join_duty_room(anna, bot.duty_alias)
    await join_duty_room(eve, bot.duty_alias)

    mark = len(anna.received)
    await eve.send(duty, "!ny")
    notice = await anna.wait_message(duty, contains=eve.user_id, after=mark)
    assert notice.sender == bot.user_id and notice.event.decrypted
    assert "Eve Evesson" in notice.body
    assert "verifiera sessionen i Element: Inställningar → Säkerhet" in notice.body
    content = notice.event.source["content"]
    assert anna.user_id in content.get("m.mentions", {}).get("user_ids", [])
    assert content["msgtype"] == "m.text", "a notice that must reach a phone rings"

    def notices_about_eve(after: int) -> list[str]:
        return [
            r.body
            for r in anna.received[after:]
            if r.sender == bot.user_id and eve.user_id in r.body and "skrev från" in r.body
        ]

    # The same day again: no second notice. Anna's !status is handled after Eve's
    # message (one room, in order), so its answer comes after any notice would.
    mark = len(anna.received)
    await eve.send(duty, "!status")
    await anna.send(duty, "!status")
    status = await anna.wait_message(duty, contains="inte kan lita på", after=mark)
    assert notices_about_eve(mark) == []
    # !status lists Eve (display name, Matrix id, what is wrong), not Anna.
    assert "Eve Evesson" in status.body and eve.user_id in status.body
    assert "korssignering" in status.body
    assert anna.user_id not in status.body.split("inte kan lita på", 1)[1]
    # Eve never got a refusal she could not read.
    assert not [r for r in eve.received if r.sender == bot.user_id]

    # A restart remembers that Eve was told today.
    bot.process.stop()
    bot.process.start()
    mark = len(anna.received)
    await eve.send(duty, "!status")
    await anna.send(duty, "!status")
    await anna.wait_message(duty, contains="inte kan lita på", after=mark)
    assert notices_about_eve(mark) == []


async def test_the_bots_old_device_after_a_lost_store_gets_no_room_keys(
    make_user: UserFactory, make_bot: BotFactory, synapse: LocalSynapse
) -> None:
    anna = await make_user("anna")
    bot = make_bot(members=[anna.user_id])
    data = bot.folder / "data"
    old_session = json.loads((data / "session.json").read_text())
    store_key = (data / "keys" / "store.key").read_text().strip()

    # The crypto store is lost (here: set aside, as a thief who copied it would have
    # it); the cross-signing keys survive, so the old device stays cross-signed.
    bot.process.stop()
    old_store = bot.folder / "old-crypto"
    shutil.move(data / "crypto", old_store)
    bot.process.start()
    new_session = json.loads((data / "session.json").read_text())
    assert new_session["device_id"] != old_session["device_id"]

    old = AsyncClient(
        synapse.base_url,
        bot.user_id,
        store_path=str(old_store),
        config=AsyncClientConfig(
            encryption_enabled=True, store_sync_tokens=False, pickle_key=store_key
        ),
    )
    try:
        old.restore_login(bot.user_id, old_session["device_id"], old_session["access_token"])

        duty = await join_duty_room(anna, bot.duty_alias)
        number, case_room = await open_case(anna, duty)
        welcome = await anna.wait_message(case_room, contains=f"Ärende {number}")
        assert welcome.event.decrypted

        # The old device reads what reached it: the case room's messages from the new
        # device, and every to-device message sent before them.
        sync_filter = {"room": {"timeline": {"limit": 50}}}
        first = await old.sync(timeout=0, full_state=True, sync_filter=sync_filter)
        assert isinstance(first, SyncResponse), first
        # Once more, for to-device messages beyond the first sync's share.
        assert isinstance(await old.sync(timeout=0), SyncResponse)
        timeline = first.rooms.join[case_room].timeline.events
        from_bot = [e for e in timeline if e.sender == bot.user_id]
        encrypted = [e for e in from_bot if isinstance(e, MegolmEvent | RoomMessageText)]
        assert encrypted, "the old device must see the case room's messages"
        readable = [e.body for e in encrypted if isinstance(e, RoomMessageText)]
        for event in encrypted:
            if isinstance(event, MegolmEvent):
                event.room_id = case_room
                with contextlib.suppress(EncryptionError):
                    readable.append(old.decrypt_event(event).body)  # type: ignore[attr-defined]
        assert readable == [], "the bot's old device could read the case room"
    finally:
        await old.close()
