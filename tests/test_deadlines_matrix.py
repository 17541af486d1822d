"""Deadline clocks over real E2EE: started by the signature, marked from the intake
room, shown by ``!status``, alarmed once when missed, even across restarts.

One whole flow on the session's Synapse. The worker sends an LVU decision and the
decision-maker signs it; the intake member marks the underställning by case number;
the report to the committee is then made overdue in the database while the bot is
down, and the restarted bot alarms the duty lead and the intake room once (a second
restart says nothing again); the intake member marks it by replying to the alarm.
"""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from nio import RoomResolveAliasResponse

from handlers.workdays import SWEDEN
from tests.conftest import BotFactory, UserFactory
from tests.matrix_helpers import MatrixUser, Received
from tests.test_bot_matrix import join_duty_room
from tests.test_decision_matrix import signing_config, submit_lvu6
from tests.test_escalation_matrix import api, count, direct_alert, sign_with_matrix_code

pytestmark = pytest.mark.integration

WEEKDAYS = "mån tis ons tors fre lör sön".split()


def shown(day: object) -> str:
    """A day as the bot shows it: ``fre 2026-03-06``."""
    assert hasattr(day, "weekday")
    return f"{WEEKDAYS[day.weekday()]} {day.isoformat()}"  # type: ignore[attr-defined]


def municipality(dag: MatrixUser, intake: MatrixUser, tag: str, meeting: str) -> str:
    return f"""
[[municipalities]]
id = "skovde"
name = "Skövde kommun"
intake_room_alias = "#mottagning-skovde-{tag}:localhost"
intake_members = ["{intake.user_id}"]
meetings = [{meeting}]

  [[municipalities.decision_makers]]
  user_id = "{dag.user_id}"
  name = "Dag Dagsson"
  role = "ordförande"
  appointed_by = "Kommunfullmäktige"
  appointed_on = 2023-01-12
  minutes_ref = "§ 4"
  valid_until = 2099-12-31
"""


async def reply(user: MatrixUser, room: str, to: Received, body: str) -> str:
    """A reply as Element sends it: the quoted fallback, then the command."""
    return await user.send_event(
        room,
        "m.room.message",
        {
            "msgtype": "m.text",
            "body": f"> <@socialjour> {to.body.splitlines()[0]}\n\n{body}",
            "m.relates_to": {"m.in_reply_to": {"event_id": to.event.event_id}},
        },
    )


async def test_deadlines_started_marked_shown_and_alarmed_once_over_real_e2ee(
    make_user: UserFactory, make_bot: BotFactory, tmp_path: Path
) -> None:
    anna = await make_user("anna")  # duty worker and duty lead
    dag = await make_user("dag")
    cecilia = await make_user("cecilia")  # Skövde's intake
    today = datetime.now(SWEDEN).date()
    meeting = today + timedelta(days=10)
    extra = municipality(dag, cecilia, anna.localpart, meeting.isoformat()) + signing_config(
        tmp_path
    )
    bot = make_bot(members=[anna.user_id], extra=extra)
    duty = await join_duty_room(anna, bot.duty_alias)
    resolved = await cecilia.client.room_resolve_alias(
        f"#mottagning-skovde-{anna.localpart}:localhost"
    )
    assert isinstance(resolved, RoomResolveAliasResponse), resolved
    intake = resolved.room_id
    await cecilia.wait(lambda: intake in cecilia.invites)
    await cecilia.join(intake)

    # The signature starts the clocks: 7 § LVU a week from the decision day.
    number, case_room = await submit_lvu6(anna, bot.duty_alias)
    direct, _, token = await direct_alert(dag)
    await sign_with_matrix_code(dag, direct, api(bot, token))
    await anna.wait_message(case_room, contains="undertecknat", timeout=60)

    # The intake member marks the underställning from her room, by case number.
    mark, anna_mark = len(cecilia.received), len(anna.received)
    await cecilia.send(intake, f"!underställt {number}")
    done = await cecilia.wait_message(intake, contains="klart, markerat av", after=mark)
    assert "Underställning till förvaltningsrätten (7 § LVU)" in done.body
    told = await anna.wait_message(case_room, contains="klart, markerat av", after=anna_mark)
    assert cecilia.user_id in told.body

    # !status in the case room: every deadline with its day.
    anna_mark = len(anna.received)
    await anna.send(case_room, "!status")
    status = await anna.wait_message(case_room, contains="Frister", after=anna_mark)
    assert "Underställning till förvaltningsrätten (7 § LVU): klart ✓" in status.body
    assert "Ansökan om vård hos förvaltningsrätten (8 § LVU): startar när beslutet" in status.body
    assert f"Anmälan till nämnden (6 § andra stycket LVU): senast {shown(meeting)}" in status.body

    # While the bot is down, time passes: the clock started three days ago and the
    # committee met yesterday (the config now says so), without the report marked.
    assert bot.process.stop() == 0
    yesterday = datetime.now(SWEDEN).date() - timedelta(days=1)
    config = bot.config_path.read_text(encoding="utf-8")
    bot.config_path.write_text(
        config.replace(f"meetings = [{meeting}]", f"meetings = [{yesterday}]"), encoding="utf-8"
    )
    earlier = (datetime.now(UTC) - timedelta(days=3)).strftime("%Y-%m-%d %H:%M:%S.%f")
    with sqlite3.connect(bot.folder / "data" / "socialjour.db") as db:
        changed = db.execute(
            "UPDATE deadlines SET started_at = ? WHERE name = 'anmalan_namnd'", (earlier,)
        ).rowcount
    assert changed == 1
    anna_mark, mark = len(anna.received), len(cecilia.received)
    await asyncio.to_thread(bot.process.start)

    # At start-up: the duty lead (mentioned, in the duty room) and the intake room.
    alarm = f"Frist passerad: {number}"
    lead_alarm = await anna.wait_message(duty, contains=alarm, after=anna_mark, timeout=30)
    assert anna.user_id in lead_alarm.event.source["content"]["m.mentions"]["user_ids"]
    assert "Anmälan till nämnden (6 § andra stycket LVU)" in lead_alarm.body
    intake_alarm = await cecilia.wait_message(intake, contains=alarm, after=mark, timeout=30)
    assert f"!anmält {number}" in intake_alarm.body
    # Nothing about the person outside the case room.
    outside = [r.body for r in anna.received + cecilia.received if r.room_id in (duty, intake)]
    assert not any("Testsson" in body or "20160412" in body for body in outside)

    # Restarted again the same day: no second alarm, no second announcement.
    assert bot.process.stop() == 0
    await asyncio.to_thread(bot.process.start)
    await asyncio.sleep(5)  # the start-up sweep has had its go
    assert count(anna, duty, alarm) == 1
    assert count(cecilia, intake, alarm) == 1
    assert count(cecilia, intake, f"Frist i {number}: Anmälan") == 1
    assert count(anna, case_room, f"Frist i {number}: Anmälan") == 1
    assert count(anna, case_room, f"Frist i {number}: Underställning") <= 1

    # A reply to the alarm marks that case's report; the case room hears of it.
    anna_mark, mark = len(anna.received), len(cecilia.received)
    await reply(cecilia, intake, intake_alarm, "!anmält")
    done = await cecilia.wait_message(intake, contains="klart, markerat av", after=mark)
    assert "Anmälan till nämnden" in done.body and number in done.body
    await anna.wait_message(case_room, contains="Anmälan till nämnden", after=anna_mark)
    anna_mark = len(anna.received)
    await anna.send(case_room, "!status")
    status = await anna.wait_message(case_room, contains="Frister", after=anna_mark)
    assert status.body.count("klart ✓") == 2
    assert "senast" not in status.body  # nothing left running; the application waits
