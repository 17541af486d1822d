"""An unsigned decision escalates on a policy of seconds, over real E2EE.

What the people's clients receive and decrypt: the reminder, the deputy's own link,
the acknowledgement's pause, a step missed while the bot was killed, an unreadable
phone, an expired link; and a second bot on the same database refusing to start.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from nio import RoomResolveAliasResponse

from tests.conftest import BotFactory, BotSetup, UserFactory
from tests.matrix_helpers import ROOT, MatrixUser, Received
from tests.test_bot_matrix import join_duty_room
from tests.test_decision_matrix import LINK, Http, signing_config, submit_lvu6

pytestmark = pytest.mark.integration

REMINDER = "Påminnelse: ett brådskande beslut"
LEADS_ALERT = "fortfarande inte undertecknat"


def policy(name: str, steps: str, *, ack_window: str = "15m", repeat_every: str = "") -> str:
    repeat = f'repeat_every = "{repeat_every}"' if repeat_every else ""
    return f"""
[escalation_policies.{name}]
steps = [{steps}]
ack_window = "{ack_window}"
{repeat}
"""


def municipality(makers: list[tuple[MatrixUser, str]], tag: str, policy_name: str) -> str:
    """Skövde with ``makers`` (user, name) on call in this order."""
    text = f"""
[[municipalities]]
id = "skovde"
name = "Skövde kommun"
intake_room_alias = "#mottagning-skovde-{tag}:localhost"
escalation_policy = "{policy_name}"
"""
    for user, name in makers:
        text += f"""
  [[municipalities.decision_makers]]
  user_id = "{user.user_id}"
  name = "{name}"
  role = "ordförande"
  appointed_by = "Kommunfullmäktige"
  appointed_on = 2023-01-12
  minutes_ref = "§ 4"
  valid_until = 2099-12-31
"""
    return text


def escalation_config(
    folder: Path,
    makers: list[tuple[MatrixUser, str]],
    tag: str,
    name: str,
    steps: str,
    **options: str,
) -> str:
    """The bot's extra configuration: Skövde with ``makers`` on call under the policy
    ``name`` of ``steps`` (and ``options``), signing with a development seal in ``folder``."""
    return municipality(makers, tag, name) + policy(name, steps, **options) + signing_config(folder)


async def direct_alert(
    user: MatrixUser, *, after: int = 0, timeout: float = 30
) -> tuple[str, Received, str]:
    """The person's direct room with the bot (joined), its first link message, its token."""
    room = await user.wait(lambda: user.invites[-1] if user.invites else None, timeout)
    if room not in user.client.rooms:
        await user.join(room)
    message = await user.wait_message(room, contains="/s/", after=after, timeout=timeout)
    return room, message, token_of(message)


def token_of(message: Received) -> str:
    found = LINK.search(message.body)
    assert found, message.body
    return found.group(1)


async def duty_room_of(user: MatrixUser, bot: BotSetup) -> str:
    resolved = await user.client.room_resolve_alias(bot.duty_alias)
    assert isinstance(resolved, RoomResolveAliasResponse), resolved
    return resolved.room_id


def api(bot: BotSetup, token: str) -> Http:
    return Http(f"http://127.0.0.1:{bot.process.web_port}/api/v1/signing/{token}")


def is_ringing_mention(message: Received, user: MatrixUser) -> bool:
    content = message.event.source["content"]
    return (
        content.get("msgtype") == "m.text"
        and user.user_id in content.get("m.mentions", {}).get("user_ids", [])
        and "m.relates_to" not in content  # a new message, not an edit
    )


async def sign_with_matrix_code(user: MatrixUser, direct: str, link: Http) -> dict[str, str]:
    mark = len(user.received)
    assert (await link.acall("POST", "/auth", {"method": "matrix-code"}))[0] == 200
    code_message = await user.wait_message(direct, contains="engångskod", after=mark)
    code = re.search(r"\b(\d{6})\b", code_message.body).group(1)  # type: ignore[union-attr]
    status, _ = await link.acall("POST", "/auth/verify", {"code": code})
    assert status == 200 and link.cookie
    status, result = await link.acall("POST", "/decision", {"action": "sign"})
    assert status == 200 and result["status"] == "signed", result
    return result


def count(user: MatrixUser, room: str, text: str) -> int:
    return sum(1 for r in user.received if r.room_id == room and text in r.body)


async def sleep_until(deadline: float) -> None:
    await asyncio.sleep(max(0.0, deadline - time.monotonic()))


async def acked_case(
    make_user: UserFactory, make_bot: BotFactory, tmp_path: Path, steps: str, window: str
) -> tuple[MatrixUser, MatrixUser, str, str, Received]:
    """A decision waiting for Dag alone on ``steps``: (anna, dag, case room, dag's room, alert)."""
    anna = await make_user("anna")
    dag = await make_user("dag")
    extra = escalation_config(
        tmp_path, [(dag, "Dag Dagsson")], anna.localpart, "p", steps, ack_window=window
    )
    bot = make_bot(members=[anna.user_id], extra=extra)
    _, case_room = await submit_lvu6(anna, bot.duty_alias)
    dag_room, alert, _ = await direct_alert(dag)
    return anna, dag, case_room, dag_room, alert


# -- 1. reminder, deputy, sign ------------------------------------------------------------


async def test_reminder_then_deputy_who_signs_and_then_nothing_more(
    make_user: UserFactory, make_bot: BotFactory, tmp_path: Path
) -> None:
    anna = await make_user("anna")
    dag = await make_user("dag")
    vera = await make_user("vera")
    extra = escalation_config(
        tmp_path,
        [(dag, "Dag Dagsson"), (vera, "Vera Vice")],
        anna.localpart,
        "fast",
        '{ after = "3s", action = "remind" }, { after = "6s", action = "next_signer" }, '
        '{ after = "12s", action = "alert_leads" }',
        ack_window="1s",
        repeat_every="3s",
    )
    bot = make_bot(members=[anna.user_id], extra=extra)
    number, case_room = await submit_lvu6(anna, bot.duty_alias)
    t0 = time.monotonic()  # the request was made just before this
    duty_room = await duty_room_of(anna, bot)

    dag_room, alert, dag_token = await direct_alert(dag)
    assert is_ringing_mention(alert, dag)

    # The reminder: a new m.text mention in the same direct room, with the same link.
    reminder = await dag.wait_message(dag_room, contains=REMINDER, timeout=15)
    assert time.monotonic() - t0 >= 2.5, "the reminder came before its step"
    assert reminder.event.event_id != alert.event.event_id
    assert is_ringing_mention(reminder, dag) and number in reminder.body
    assert token_of(reminder) == dag_token
    await anna.wait_message(case_room, contains="Påminnelse skickad till Dag Dagsson")

    # The deputy: a link of their own, in their own direct room.
    vera_room, vera_alert, vera_token = await direct_alert(vera)
    assert vera_room != dag_room and vera_token != dag_token
    assert is_ringing_mention(vera_alert, vera) and number in vera_alert.body
    assert time.monotonic() - t0 >= 5.5, "the deputy was asked before the step"
    await anna.wait_message(case_room, contains="tillfrågas även Vera Vice")

    vera_link = api(bot, vera_token)
    status, view = await vera_link.acall("GET", "")
    assert status == 200 and view["status"] == "pending" and view["signer"] == "Vera Vice"
    result = await sign_with_matrix_code(vera, vera_room, vera_link)
    signed_at = time.monotonic() - t0
    assert signed_at < 11.5, f"signing took until {signed_at:.1f} s, past the leads' step"

    await anna.wait(lambda: any(r == case_room for r, _ in anna.files), timeout=30)
    (file_event,) = [e for r, e in anna.files if r == case_room]
    signed = await anna.download_file(file_event)
    assert signed.startswith(b"%PDF") and b"/ByteRange" in signed
    assert hashlib.sha256(signed).hexdigest() == result["document_sha256"]
    await anna.wait_message(case_room, contains="undertecknat av Vera Vice")

    # Past the leads' step and the first repeat: nothing more, anywhere.
    marks = {u.user_id: len(u.received) for u in (anna, dag, vera)}
    await sleep_until(t0 + 17)
    for user in (anna, dag, vera):
        late = [r.body[:100] for r in user.received[marks[user.user_id] :]]
        assert late == [], f"{user.localpart} got after the signature: {late}"
    assert count(anna, duty_room, LEADS_ALERT) == 0
    assert count(dag, dag_room, REMINDER) == 1 and count(vera, vera_room, REMINDER) == 0

    # The first signer's link is closed and says who decided.
    dag_link = api(bot, dag_token)
    status, view = await dag_link.acall("GET", "")
    assert status == 409 or view["status"] != "pending", view  # the page shows "decided"
    status, body = await dag_link.acall("POST", "/auth", {"method": "matrix-code"})
    assert status == 409 and body["error"] == "already_decided", body
    assert "Vera Vice" in body["message"], body


# -- 2. !tittar pauses the policy for the ack window -------------------------------------


async def test_ack_in_direct_room_pauses_reminders_for_the_window_and_again(
    make_user: UserFactory, make_bot: BotFactory, tmp_path: Path
) -> None:
    window = 4.0
    anna, dag, case_room, dag_room, _ = await acked_case(
        make_user,
        make_bot,
        tmp_path,
        '{ after = "3s", action = "remind" }, { after = "4s", action = "remind" }',
        f"{int(window)}s",
    )
    previous: str | None = None
    for ack in (1, 2):  # acknowledged again after the reminder: paused again
        mark, mark_case = len(dag.received), len(anna.received)
        acked_at = time.monotonic()
        await dag.send(dag_room, "!tittar")
        await dag.wait_message(dag_room, contains="Tack – jouren ser att du är på väg", after=mark)
        assert count(dag, dag_room, REMINDER) == ack - 1, f"ack {ack} came too late for this test"
        told = await anna.wait_message(
            case_room, contains="Dag Dagsson har sett larmet", after=mark_case
        )
        assert "svarade i Element" in told.body and "Nästa påminnelse tidigast" in told.body

        reminder = await dag.wait_message(dag_room, contains=REMINDER, after=mark, timeout=20)
        waited = time.monotonic() - acked_at
        assert window - 0.2 <= waited <= window + 3, f"reminder {waited:.1f} s after ack {ack}"
        assert is_ringing_mention(reminder, dag) and reminder.event.event_id != previous
        previous = reminder.event.event_id


async def test_ack_by_reaction_on_the_alert(
    make_user: UserFactory, make_bot: BotFactory, tmp_path: Path
) -> None:
    anna, dag, case_room, dag_room, alert = await acked_case(
        make_user, make_bot, tmp_path, '{ after = "60s", action = "remind" }', "5s"
    )
    # Sent exactly as Element sends it: m.reaction is never encrypted (nio neither).
    await dag.send_event(
        dag_room,
        "m.reaction",
        {
            "m.relates_to": {
                "rel_type": "m.annotation",
                "event_id": alert.event.event_id,
                "key": "✅",
            }
        },
    )
    try:
        told = await anna.wait_message(case_room, contains="har sett larmet", timeout=5)
    except TimeoutError as exc:
        raise AssertionError("the ✅ was not taken as an acknowledgement") from exc
    assert "Dag Dagsson" in told.body and "reagerade med ✅" in told.body


# -- 3. SIGKILL between two steps ---------------------------------------------------------


async def test_step_missed_while_killed_runs_once_late_after_restart(
    make_user: UserFactory, make_bot: BotFactory, tmp_path: Path
) -> None:
    anna = await make_user("anna")
    dag = await make_user("dag")
    extra = escalation_config(
        tmp_path,
        [(dag, "Dag Dagsson")],
        anna.localpart,
        "crash",
        '{ after = "2s", action = "remind" }, { after = "4s", action = "remind" }',
    )
    bot = make_bot(members=[anna.user_id], extra=extra)
    _, case_room = await submit_lvu6(anna, bot.duty_alias)
    t0 = time.monotonic()
    dag_room, _, _ = await direct_alert(dag)
    await dag.wait_message(dag_room, contains=REMINDER, timeout=15)
    await anna.wait_message(case_room, contains="Påminnelse skickad")  # the step is whole
    assert time.monotonic() - t0 < 4, "the first step was too late to kill before the second"

    assert bot.process.stop(signal.SIGKILL) == -signal.SIGKILL  # reaped: no zombie
    # Down well past the second step (a missed step says so past 5 s: LATE_NOTICE).
    await sleep_until(t0 + 4 + 8)
    assert count(dag, dag_room, REMINDER) == 1
    mark_dag, mark_anna = len(dag.received), len(anna.received)
    await asyncio.to_thread(bot.process.start)

    late = await anna.wait_message(
        case_room, contains=" sent (Socialjour", after=mark_anna, timeout=30
    )
    assert "(Socialjour var inte igång)" in late.body
    await dag.wait_message(dag_room, contains=REMINDER, after=mark_dag, timeout=30)
    await asyncio.sleep(4)  # the restored job and the start-up check both had their go
    assert count(dag, dag_room, REMINDER) == 2, [r.body[:60] for r in dag.received]
    assert count(dag, dag_room, "/s/") == 3  # the alert and two reminders, nothing again
    assert count(anna, case_room, "Socialjour var inte igång") == 1
    assert count(anna, case_room, "Påminnelse skickad") == 2


async def test_killed_inside_next_signer_still_asks_the_deputy_after_restart(
    make_user: UserFactory, make_bot: BotFactory, tmp_path: Path
) -> None:
    anna = await make_user("anna")
    dag = await make_user("dag")
    vera = await make_user("vera")
    extra = escalation_config(
        tmp_path,
        [(dag, "Dag Dagsson"), (vera, "Vera Vice")],
        anna.localpart,
        "k",
        '{ after = "3s", action = "next_signer" }, { after = "90s", action = "alert_leads" }',
    )
    bot = make_bot(members=[anna.user_id], extra=extra)
    await submit_lvu6(anna, bot.duty_alias)
    await direct_alert(dag)
    db = bot.folder / "data" / "socialjour.db"

    def state() -> tuple[str, int]:
        """(the next_signer row's status, how many signing requests exist)."""
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as c:
            (status,) = c.execute(
                "select status from escalation_steps where action = 'next_signer'"
            ).fetchone()
            (requests,) = c.execute("select count(*) from signing_requests").fetchone()
        return str(status), int(requests)

    def kill_once_claimed() -> tuple[str, int]:
        """SIGKILL the moment the step is claimed (its work, rendering, takes ~0.1 s)."""
        deadline = time.monotonic() + 15
        while state()[0] == "pending" and time.monotonic() < deadline:
            time.sleep(0.002)
        bot.process.stop(signal.SIGKILL)
        return state()

    status, requests = await asyncio.to_thread(kill_once_claimed)
    if status == "pending" or requests > 1:
        pytest.skip(f"the kill missed the step's work ({status}, {requests} requests)")
    await asyncio.to_thread(bot.process.start)
    try:
        _, alert, _ = await direct_alert(vera, timeout=8)
    except TimeoutError as exc:
        raise AssertionError(f"after the restart the deputy was never asked ({state()})") from exc
    assert is_ringing_mention(alert, vera)


# -- 4. a decision-maker whose phone cannot read the alert --------------------------------


async def test_untrusted_first_signer_is_reported_and_the_deputy_asked_at_once(
    make_user: UserFactory, make_bot: BotFactory, tmp_path: Path
) -> None:
    anna = await make_user("anna")
    eva = await make_user("eva", cross_sign=False)
    dag = await make_user("dag")
    extra = escalation_config(
        tmp_path,
        [(eva, "Eva Osäker"), (dag, "Dag Dagsson")],
        anna.localpart,
        "slow",
        '{ after = "60s", action = "remind" }, { after = "120s", action = "next_signer" }',
    )
    bot = make_bot(members=[anna.user_id], extra=extra)
    _, case_room = await submit_lvu6(anna, bot.duty_alias)
    t0 = time.monotonic()
    duty_room = await duty_room_of(anna, bot)

    unreadable = "kan inte läsa krypterade meddelanden"
    in_case = await anna.wait_message(case_room, contains=unreadable, timeout=15)
    in_duty = await anna.wait_message(duty_room, contains=unreadable, timeout=15)
    for told in (in_case, in_duty):
        assert "Eva Osäker" in told.body and is_ringing_mention(told, anna)
    _, alert, _ = await direct_alert(dag)
    assert is_ringing_mention(alert, dag)
    assert time.monotonic() - t0 < 10, "the deputy was not asked at once"
    await anna.wait_message(case_room, contains="tillfrågas även Dag Dagsson")


# -- 5. an expired link --------------------------------------------------------------------


async def test_expired_link_is_reported_and_replaced(
    make_user: UserFactory, make_bot: BotFactory, tmp_path: Path
) -> None:
    anna = await make_user("anna")
    dag = await make_user("dag")
    signing = signing_config(tmp_path)
    assert 'link_ttl = "1h"' in signing
    extra = (
        municipality([(dag, "Dag Dagsson")], anna.localpart, "slow")
        + policy("slow", '{ after = "60s", action = "remind" }')
        + signing.replace('link_ttl = "1h"', 'link_ttl = "5s"')
    )
    bot = make_bot(members=[anna.user_id], extra=extra)
    _, case_room = await submit_lvu6(anna, bot.duty_alias)
    duty_room = await duty_room_of(anna, bot)
    dag_room, _, old_token = await direct_alert(dag)
    mark = len(dag.received)

    told = await anna.wait_message(case_room, contains="gick ut utan underskrift", timeout=15)
    assert "Dag Dagsson" in told.body
    await anna.wait_message(duty_room, contains="gick ut utan underskrift")
    fresh = await dag.wait_message(dag_room, contains="/s/", after=mark, timeout=10)
    assert is_ringing_mention(fresh, dag)
    new_token = token_of(fresh)
    assert new_token != old_token

    status, body = await api(bot, new_token).acall("GET", "")
    assert status == 200 and body["status"] == "pending", body
    status, body = await api(bot, old_token).acall("GET", "")
    assert status == 410, body


# -- 6. one bot per database -----------------------------------------------------------------


async def test_second_run_on_the_same_database_refuses_and_the_first_keeps_working(
    make_user: UserFactory, make_bot: BotFactory
) -> None:
    anna = await make_user("anna")
    bot = make_bot(members=[anna.user_id])
    duty = await join_duty_room(anna, bot.duty_alias)

    second = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "bot", "run", "--config", str(bot.config_path)],
        env=bot.process.env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    output = second.stdout + second.stderr
    (bot.folder / "second-run.log").write_text(output)
    assert second.returncode != 0, output
    assert "another Socialjour is running" in output, output
    assert "Traceback" not in output, output

    assert bot.process.proc is not None and bot.process.proc.poll() is None
    assert bot.process.healthy()
    mark = len(anna.received)
    await anna.send(duty, "!hjälp")
    await anna.wait_message(duty, contains="!ny", after=mark)
    assert "took the scheduler lock" not in bot.process.log_text()
