"""A whole case over real E2EE, from ``!ny`` to the archive.

One flow on the session's Synapse: a worker sends an LVU decision, the
decision-maker signs it with a one-time code, the worker records the execution
and hands the case over; the intake member's client decrypts the four attachments
and acknowledges with a reply, and the worker's case room is told. The intake member
then marks the deadlines done; the case closes, its room becomes read-only (the
homeserver refuses a member's message), retention deletes the bot's copy of the
personal data, and neither the homeserver's database nor the bot's holds the
personnummer in clear. Every message the three clients got, they decrypted.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import secrets
import sqlite3
from datetime import date, timedelta
from pathlib import Path

import pytest
from nio import RoomResolveAliasResponse, RoomSendError

from bot.synapse_local import LocalSynapse
from config.personnummer import luhn_valid
from tests.conftest import BotFactory, UserFactory
from tests.matrix_helpers import MatrixUser
from tests.test_bot_matrix import join_duty_room, open_case
from tests.test_decision_matrix import LINK, LVU6_ANSWERS, Http, signing_config
from tests.test_report_matrix import Worker
from tests.test_signing_document import pdf_text

pytestmark = pytest.mark.integration


def municipality(dag: MatrixUser, intake: MatrixUser, tag: str) -> str:
    return f"""
[[municipalities]]
id = "skovde"
name = "Skövde kommun"
intake_room_alias = "#mottagning-skovde-{tag}:localhost"
intake_members = ["{intake.user_id}"]

  [[municipalities.decision_makers]]
  user_id = "{dag.user_id}"
  name = "Dag Dagsson"
  role = "ordförande"
  appointed_by = "Kommunfullmäktige"
  appointed_on = 2023-01-12
  minutes_ref = "§ 4"
  valid_until = 2099-12-31
"""


def a_child() -> tuple[str, str]:
    """A name and a valid personnummer of a ten-year-old that no other test uses: the
    homeserver is shared by the whole session, so the scan at the end finds this case's
    only."""
    rng = secrets.SystemRandom()
    syllables = "".join(rng.choice("bdfgklmnprstv") + rng.choice("aeiou") for _ in range(3))
    born = date.today() - timedelta(days=3653 + rng.randrange(300))
    digits = f"{born:%y%m%d}{rng.randrange(1000):03d}"
    check = next(str(c) for c in range(10) if luhn_valid(f"{digits}{c}"))
    return f"Tova {syllables.capitalize()}sson", f"{born:%Y%m%d}-{digits[6:]}{check}"


async def submit_lvu6_about(
    anna: MatrixUser, bot_alias: str, name: str, pnr: str
) -> tuple[str, str]:
    """``!ny``, the LVU 6 § report about ``name`` (``pnr``) and ``!skicka``."""
    duty = await join_duty_room(anna, bot_alias)
    number, room = await open_case(anna, duty)
    await anna.wait_message(room, contains="Vilket beslut")
    w = Worker(anna, room)
    await w.say("lvu6", "Fråga 1 av 27")
    answers = [(q, {1: name, 2: pnr}.get(q, answer)) for q, answer in LVU6_ANSWERS]
    for i, (question, answer) in enumerate(answers):
        await w.question(question)
        following = (
            f"Fråga {answers[i + 1][0]} av" if i + 1 < len(answers) else "Alla frågor är besvarade"
        )
        await w.say(answer, following)
    await w.say("!skicka", "skickad och låst")
    return number, room


def holding(folder: Path, needles: list[str]) -> list[str]:
    """Where under ``folder`` a file's bytes contain one of ``needles`` (in UTF-8)."""
    found = []
    for path in sorted(folder.rglob("*")):
        try:
            data = path.read_bytes() if path.is_file() else b""
        except FileNotFoundError:  # a temporary file of the running server, gone
            continue
        found += [f"{path.relative_to(folder)}: {n}" for n in needles if n.encode() in data]
    return found


async def sign_with_code(dag: MatrixUser, web_port: int) -> None:
    """The decision-maker opens the link, identifies with the code and signs."""
    direct = await dag.wait(lambda: dag.invites[-1] if dag.invites else None)
    await dag.join(direct)
    alert = await dag.wait_message(direct, contains="/s/")
    token = LINK.search(alert.body).group(1)  # type: ignore[union-attr]
    api = Http(f"http://127.0.0.1:{web_port}/api/v1/signing/{token}")
    mark = len(dag.received)
    assert (await api.acall("POST", "/auth", {"method": "matrix-code"}))[0] == 200
    code_message = await dag.wait_message(direct, contains="engångskod", after=mark)
    code = re.search(r"\b(\d{6})\b", code_message.body).group(1)  # type: ignore[union-attr]
    assert (await api.acall("POST", "/auth/verify", {"code": code}))[0] == 200
    status, result = await api.acall("POST", "/decision", {"action": "sign"})
    assert status == 200 and result["status"] == "signed", result


async def test_a_whole_case_from_new_to_the_archive_over_real_e2ee(
    make_user: UserFactory, make_bot: BotFactory, synapse: LocalSynapse, tmp_path: Path
) -> None:
    anna = await make_user("anna")
    dag = await make_user("dag")
    cecilia = await make_user("cecilia")
    name, pnr = a_child()
    # A retention of one second: the personal data goes as soon as the case closes.
    extra = municipality(dag, cecilia, anna.localpart) + signing_config(tmp_path)
    bot = make_bot(members=[anna.user_id], extra=extra + '\n[retention]\nafter_close = "1s"\n')

    # The intake member joins the intake room the bot made and invited her to.
    alias = f"#mottagning-skovde-{anna.localpart}:localhost"
    resolved = await cecilia.client.room_resolve_alias(alias)
    assert isinstance(resolved, RoomResolveAliasResponse), resolved
    intake = resolved.room_id
    await cecilia.wait(lambda: intake in cecilia.invites)
    await cecilia.join(intake)

    number, case_room = await submit_lvu6_about(anna, bot.duty_alias, name, pnr)
    await sign_with_code(dag, bot.process.web_port)
    await anna.wait_message(case_room, contains="undertecknat", timeout=60)

    w = Worker(anna, case_room)
    await w.say("!verkställt", "Fråga 1 av 8")
    await w.say("nu", "Fråga 2 av 8")
    await w.say("Jourhem i Skövde", "43 § LVU")
    await w.say("ja", "Fråga 4 av 8")
    await w.say("1", "Fråga 5 av 8")
    await w.say("nu", "Fråga 7 av 8")
    await w.say("jag", "Fråga 8 av 8")
    await w.say("!hoppa", "Alla frågor om verkställigheten")
    await w.say("!verkställt", "Verkställigheten är registrerad")
    await w.say("!status", "Verkställt:")
    await w.say("!överlämna", "är överlämnat")

    # The intake client decrypts the four attachments and the message that mentions her.
    handover = await cecilia.wait_message(intake, contains=f"Överlämnat ärende {number}")
    content = handover.event.source["content"]
    assert cecilia.user_id in content["m.mentions"]["user_ids"]
    assert f"https://matrix.to/#/{cecilia.user_id}" in content["formatted_body"]
    assert name not in handover.body and pnr[:8] not in handover.body
    await cecilia.wait(lambda: len([r for r, _ in cecilia.files if r == intake]) == 4)
    files = {event.body: await cecilia.download_file(event) for r, event in cecilia.files}
    assert sorted(files) == sorted(
        f"{number}-{part}.pdf" for part in ("beslut", "rapport", "verkstallighet", "handelselogg")
    )
    assert all(data.startswith(b"%PDF") for data in files.values())
    report = pdf_text(files[f"{number}-rapport.pdf"], tmp_path, name="report.pdf")
    assert name in report and pnr in report
    execution = pdf_text(files[f"{number}-verkstallighet.pdf"], tmp_path, name="execution.pdf")
    assert "Jourhem i Skövde" in execution
    timeline = pdf_text(files[f"{number}-handelselogg.pdf"], tmp_path, name="timeline.pdf")
    assert name not in timeline and "Jourhem" not in timeline

    # She acknowledges with a reply; the worker's room is told who and when.
    mark, anna_mark = len(cecilia.received), len(anna.received)
    await cecilia.send_event(
        intake,
        "m.room.message",
        {
            "msgtype": "m.text",
            "body": f"> <@socialjour> Överlämnat ärende {number}\n\n!mottaget",
            "m.relates_to": {"m.in_reply_to": {"event_id": handover.event.event_id}},
        },
    )
    await cecilia.wait_message(intake, contains="är kvitterat av", after=mark)
    told = await anna.wait_message(case_room, contains="Mottaget av", after=anna_mark)
    assert cecilia.user_id in told.body

    # The intake member marks the deadlines done from her room; the last one closes the
    # case: the case room is told, then locked; the intake room hears the number only.
    for act in ("underställt", "ansökt", "anmält"):
        mark = len(cecilia.received)
        await cecilia.send(intake, f"!{act} {number}")
        await cecilia.wait_message(intake, contains="klart, markerat av", after=mark)
    closed = await anna.wait_message(case_room, contains=f"Ärende {number} är avslutat")
    assert "skrivskyddat" in closed.body
    notice = await cecilia.wait_message(intake, contains=f"Ärende {number} är avslutat")
    assert name not in notice.body and pnr[:8] not in notice.body
    room = anna.client.rooms[case_room]
    await anna.wait(lambda: room.power_levels.defaults.events_default == 100)
    await anna.trust.prepare_room(case_room)
    refused = await anna.client.room_send(
        case_room, "m.room.message", {"msgtype": "m.text", "body": "!status"}
    )
    assert isinstance(refused, RoomSendError) and refused.status_code == "M_FORBIDDEN", refused

    # Retention (one second here) deletes the bot's copy of the personal data, and the
    # database file is scrubbed of old copies right after.
    database = bot.folder / "data" / "socialjour.db"
    secrets_ = [pnr, pnr.replace("-", ""), pnr[2:], name]

    def purged() -> bool:
        with contextlib.closing(sqlite3.connect(database, timeout=10)) as db:
            row = db.execute("SELECT purged_at FROM cases WHERE number = ?", (number,)).fetchone()
        return row is not None and row[0] is not None

    for _ in range(100):
        if await asyncio.to_thread(purged) and not holding(bot.folder, secrets_):
            break
        await asyncio.sleep(0.2)
    assert await asyncio.to_thread(purged), "retention did not run"
    # Not in the bot's folder: its database, its log, its E2EE store.
    assert holding(bot.folder, secrets_) == []

    # Every message was decrypted by the worker, the decision-maker and the intake.
    assert not anna.undecrypted.get(case_room)
    assert not cecilia.undecrypted.get(intake)
    assert not any(dag.undecrypted.values())
    # Nor on the homeserver, which holds ciphertext, and a room name that is the number.
    homeserver = synapse.base_dir / "data"
    assert holding(homeserver, [number]), "the scan reads the homeserver's database"
    assert holding(homeserver, secrets_) == []
