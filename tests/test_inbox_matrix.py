"""Nothing a worker sends is lost, doubled or left unanswered: restarts, kill -9 at
random moments, bursts larger than a sync, over the real Synapse and real E2EE.

The chaos test prints its seed; run it again with ``SOCIALJOUR_CHAOS_SEED=<seed>``.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import signal
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import BotFactory, BotSetup, UserFactory
from tests.matrix_helpers import MatrixUser
from tests.test_bot_matrix import join_duty_room, open_case
from tests.test_decision_matrix import LINK, LVU6_ANSWERS, Http, municipality, signing_config
from tests.test_report_matrix import Worker

pytestmark = pytest.mark.integration

QUESTION = re.compile(r"Fråga (\d+) av 27")
DONE = "Alla frågor är besvarade"
#: lvu6 questions answered in free text (shown back in the summary as typed).
FREE_TEXT = {1, 4, 7, 8, 9, 10, 13, 15, 19}
#: How long to keep listening for a copy after the expected message arrived.
SETTLE = 2.0


def following(i: int) -> str:
    """What the bot says after the i-th answer of LVU6_ANSWERS."""
    return f"Fråga {LVU6_ANSWERS[i + 1][0]} av" if i + 1 < len(LVU6_ANSWERS) else DONE


def asked(user: MatrixUser, room: str) -> Counter[str]:
    """How often each question (and the closing line) was posted in ``room``."""
    seen: Counter[str] = Counter()
    for r in user.received:
        if r.room_id != room:
            continue
        match = QUESTION.search(r.body)
        if match and r.body.lstrip("*").startswith("Fråga"):
            seen[match.group(1)] += 1
        elif DONE in r.body:
            seen["done"] += 1
    return seen


def polls_in(user: MatrixUser, room: str) -> Counter[str]:
    seen: Counter[str] = Counter()
    for r, poll, _ in user.polls:
        if r == room:
            body = poll.source["content"]["org.matrix.msc3381.poll.start"]["question"]["body"]
            seen[body] += 1
    return seen


async def start_lvu6(anna: MatrixUser, duty: str) -> tuple[str, str, Worker]:
    number, room = await open_case(anna, duty)
    await anna.wait_message(room, contains="Vilket beslut")
    w = Worker(anna, room)
    await w.say("lvu6", "Fråga 1 av 27")
    return number, room, w


# -- a message sent while the bot is down --------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
async def test_an_answer_sent_while_the_bot_is_down_is_answered_after_restart(
    make_user: UserFactory, make_bot: BotFactory, sig: signal.Signals
) -> None:
    anna = await make_user("anna")
    bot = make_bot(members=[anna.user_id], extra=municipality(anna, anna.localpart))
    duty = await join_duty_room(anna, bot.duty_alias)
    _, room, w = await start_lvu6(anna, duty)
    await w.say("Test Testsson", "Fråga 2 av 27")

    bot.process.stop(sig)
    mark = w.mark()
    await anna.send(room, "20160412-2380")
    bot.process.start()

    await anna.wait_message(room, contains="Fråga 3 av 27", after=mark, timeout=60)
    await asyncio.sleep(SETTLE)
    assert asked(anna, room) == Counter({"1": 1, "2": 1, "3": 1})


# -- a burst larger than one sync -----------------------------------------------------------


async def test_a_burst_larger_than_a_sync_is_handled_in_order_and_once(
    make_user: UserFactory, make_bot: BotFactory
) -> None:
    """Eight answers while the bot is away, with room for three per sync: the other
    five come back through /messages, and every one answers its own question."""
    anna = await make_user("anna")
    bot = make_bot(members=[anna.user_id], extra=municipality(anna, anna.localpart), start=False)
    name = 'device_name = "Socialjour test"'
    config = bot.config_path.read_text().replace(name, f"{name}\nsync_timeline_limit = 3")
    bot.config_path.write_text(config)
    bot.process.start()
    duty = await join_duty_room(anna, bot.duty_alias)
    _, room, w = await start_lvu6(anna, duty)

    bot.process.stop()
    burst = LVU6_ANSWERS[:8]
    mark = w.mark()
    for _, answer in burst:
        await anna.send(room, answer)
    bot.process.start()

    await anna.wait_message(room, contains=following(len(burst) - 1), after=mark, timeout=90)
    await asyncio.sleep(SETTLE)
    expected = Counter({str(q): 1 for q, _ in burst})
    expected[str(LVU6_ANSWERS[len(burst)][0])] = 1
    assert asked(anna, room) == expected
    assert "back-filled" in bot.process.log_text()
    summary = await w_summary(anna, room)
    for question, answer in burst:
        if question in FREE_TEXT:
            assert re.search(rf"^{question}\. [^\n]+\n{re.escape(answer)}$", summary, re.M), (
                question,
                answer,
            )


async def w_summary(anna: MatrixUser, room: str) -> str:
    mark = len(anna.received)
    await anna.send(room, "!sammanfattning")
    reply = await anna.wait_message(room, contains="Sammanfattning", after=mark)
    return reply.body


# -- chaos: kill -9 at random moments -------------------------------------------------------


class Chaos:
    """Kills the bot with SIGKILL at a random moment after something was sent, and
    restarts it at once; remembers every trial for the report."""

    def __init__(self, bot: BotSetup, rng: random.Random) -> None:
        self.bot, self.rng = bot, rng
        self.trials: list[str] = []

    async def kill_soon(self, label: str) -> None:
        delay = self.rng.uniform(0, 0.4)
        await asyncio.sleep(delay)
        self.bot.process.stop(signal.SIGKILL)
        self.trials.append(f"{label} +{delay * 1000:.0f} ms")
        await asyncio.to_thread(self.bot.process.start)


async def answer_with_chaos(
    chaos: Chaos, anna: MatrixUser, room: str, w: Worker, *, kills: int
) -> None:
    """Answer the whole form, killing the bot after ``kills`` randomly chosen answers."""
    chosen = set(chaos.rng.sample(range(len(LVU6_ANSWERS)), kills))
    for i, (question, answer) in enumerate(LVU6_ANSWERS):
        await w.question(question)
        mark = w.mark()
        await anna.send(room, answer)
        if i in chosen:
            await chaos.kill_soon(f"answer to question {question}")
        # The worker always ends up holding the next question.
        await anna.wait_message(room, contains=following(i), after=mark, timeout=60)


async def sign_with_chaos(
    chaos: Chaos, anna: MatrixUser, dag: MatrixUser, room: str, number: str
) -> None:
    direct = await dag.wait(lambda: dag.invites[-1] if dag.invites else None)
    if direct not in dag.client.rooms:
        await dag.join(direct)
    alert = await dag.wait(
        lambda: next(
            (r for r in reversed(dag.received) if r.room_id == direct and number in r.body),
            None,
        )
    )
    token = LINK.search(alert.body).group(1)  # type: ignore[union-attr]
    api = Http(f"http://127.0.0.1:{chaos.bot.process.web_port}/api/v1/signing/{token}")
    await identify(api, dag, direct)

    signing = asyncio.create_task(api.acall("POST", "/decision", {"action": "sign"}))
    await chaos.kill_soon(f"signing {number}")
    try:
        await signing
    except OSError:
        pass  # the connection died with the bot

    status, view = await api.acall("GET", "")
    assert status == 200, view
    if view["status"] != "signed":
        # Killed before the decision was stored: the link still works, sign again.
        if (await api.acall("GET", "/document.pdf"))[0] == 401:
            await identify(api, dag, direct)
        status, result = await api.acall("POST", "/decision", {"action": "sign"})
        assert status == 200 and result["status"] == "signed", result
    # Exactly one decision: a second signature is refused.
    assert (await api.acall("POST", "/decision", {"action": "sign"}))[0] == 409
    await anna.wait(lambda: any(r == room for r, _ in anna.files), timeout=60)
    await anna.wait_message(room, contains="undertecknat", timeout=60)


async def identify(api: Http, dag: MatrixUser, direct: str) -> None:
    mark = len(dag.received)
    status, body = await api.acall("POST", "/auth", {"method": "matrix-code"})
    assert status == 200, body
    message = await dag.wait_message(direct, contains="engångskod", after=mark, timeout=60)
    code = re.search(r"\b(\d{6})\b", message.body).group(1)  # type: ignore[union-attr]
    status, body = await api.acall("POST", "/auth/verify", {"code": code})
    assert status == 200, body


async def test_chaos_kill_9_never_loses_doubles_or_drops_an_answer(
    make_user: UserFactory, make_bot: BotFactory, tmp_path: Path
) -> None:
    seed = int(os.environ.get("SOCIALJOUR_CHAOS_SEED") or random.SystemRandom().randrange(10**6))
    print(f"chaos seed: {seed} (SOCIALJOUR_CHAOS_SEED={seed} repeats this run)")
    rng = random.Random(seed)
    anna = await make_user("anna")
    dag = await make_user("dag")
    extra = municipality(dag, anna.localpart) + signing_config(tmp_path)
    bot = make_bot(members=[anna.user_id], extra=extra)
    chaos = Chaos(bot, rng)
    duty = await join_duty_room(anna, bot.duty_alias)

    rooms: list[tuple[str, str]] = []
    # 15 of the 19 answers + 2, both !skicka and both signatures: 21 kills (each costs a
    # restart, about 5 s).
    for kills in (15, 2):
        number, room, w = await start_lvu6(anna, duty)
        await answer_with_chaos(chaos, anna, room, w, kills=kills)
        mark = w.mark()
        await anna.send(room, "!skicka")
        await chaos.kill_soon(f"!skicka of {number}")
        await anna.wait_message(room, contains="skickad och låst", after=mark, timeout=60)
        rooms.append((number, room))
    for number, room in rooms:
        await sign_with_chaos(chaos, anna, dag, room, number)

    await asyncio.sleep(SETTLE)
    print(f"{len(chaos.trials)} kills: " + "; ".join(chaos.trials))
    assert len(chaos.trials) >= 20
    every_question = Counter({str(q): 1 for q, _ in LVU6_ANSWERS} | {"done": 1})
    for number, room in rooms:
        # 0 lost (every question was followed by the next), 0 applied twice (no question
        # skipped or asked again), 0 posted twice (each question and poll once).
        assert asked(anna, room) == every_question, (number, asked(anna, room))
        assert all(n == 1 for n in polls_in(anna, room).values()), polls_in(anna, room)
        submitted = [r for r in anna.received if r.room_id == room and "skickad och låst" in r.body]
        assert len(submitted) == 1, number
        files = [e for r, e in anna.files if r == room]
        assert len(files) == 1, f"{number}: the signed PDF was posted {len(files)} times"
        signed = [r for r in anna.received if r.room_id == room and "undertecknat" in r.body]
        assert len(signed) == 1, number


# -- a message nobody gave the bot the key for ----------------------------------------------


async def test_an_unreadable_message_is_answered_with_a_request_to_send_it_again(
    make_user: UserFactory, make_bot: BotFactory
) -> None:
    """An encrypted event whose room key never comes (a broken client, a lost to-device
    message) is not met with silence: after a few seconds the worker is asked, once,
    to send it again; the report waits where it was."""
    from nio import Api, RoomSendResponse

    anna = await make_user("anna")
    bot = make_bot(members=[anna.user_id], extra=municipality(anna, anna.localpart))
    duty = await join_duty_room(anna, bot.duty_alias)
    _, room, w = await start_lvu6(anna, duty)

    client = anna.client
    assert client.olm is not None
    content = {
        "algorithm": "m.megolm.v1.aes-sha2",
        "sender_key": client.olm.account.identity_keys["curve25519"],
        "device_id": client.device_id,
        "session_id": "a-session-nobody-has",
        "ciphertext": "AwgAEnB4om+unreadable",
    }
    method, path, data = Api.room_send(
        client.access_token, room, "m.room.encrypted", content, "unreadable-1"
    )
    mark = w.mark()
    sent = await client._send(RoomSendResponse, method, path, data, (room,))
    assert isinstance(sent, RoomSendResponse), sent

    notice = await anna.wait_message(room, contains="kunde inte läsa", after=mark, timeout=30)
    assert notice.event.source["content"]["m.relates_to"]["m.in_reply_to"]["event_id"] == (
        sent.event_id
    )
    # Nothing else was taken as an answer: the report still waits for question 1.
    await w.say("Test Testsson", "Fråga 2 av 27")
    await asyncio.sleep(SETTLE)
    told = [r for r in anna.received if r.room_id == room and "kunde inte läsa" in r.body]
    assert len(told) == 1
