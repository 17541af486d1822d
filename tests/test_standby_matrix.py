"""Two nodes on one PostgreSQL database and one data_dir: the leader acts, the standby
waits; killing or pausing the leader loses nothing and sends nothing twice (issue 11).

Over the real Synapse, with both nodes run as an operator runs them
(``python -m bot run --config``). The take-over times are printed.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections import Counter
from pathlib import Path

import pytest

from bot.instance_lock import EXIT_FENCED
from tests.conftest import BotFactory, UserFactory
from tests.matrix_helpers import BotProcess, MatrixUser, another_node
from tests.storage_fixtures import postgres_database
from tests.test_bot_matrix import join_duty_room
from tests.test_decision_matrix import LVU6_ANSWERS
from tests.test_escalation_matrix import REMINDER, count, direct_alert, escalation_config
from tests.test_inbox_matrix import asked, following, start_lvu6

pytestmark = pytest.mark.integration

#: How long to keep listening for a copy after the expected message arrived.
SETTLE = 3.0


async def until_status(process: BotProcess, status: str, timeout: float = 60) -> float:
    """Seconds until ``process``'s /healthz says ``status``."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if await asyncio.to_thread(process.status) == status:
            return time.monotonic() - started
        await asyncio.sleep(0.2)
    raise TimeoutError(f"not {status} in {timeout} s:\n{process.log_tail()}")


def replies(user: MatrixUser, room: str, text: str, after: int) -> int:
    return sum(1 for r in user.received[after:] if r.room_id == room and text in r.body)


async def test_killing_the_leader_mid_dialogue_and_mid_escalation_loses_and_repeats_nothing(
    make_user: UserFactory, make_bot: BotFactory, tmp_path: Path
) -> None:
    anna = await make_user("anna")
    dag = await make_user("dag")
    remind = '{ after = "25s", action = "remind" }'
    extra = escalation_config(tmp_path, [(dag, "Dag Dagsson")], anna.localpart, "ha", remind)
    async with postgres_database() as url:
        first = make_bot(members=[anna.user_id], database_url=url, extra=extra)
        second = another_node(first.process, tmp_path / "node-2")
        try:
            await asyncio.to_thread(second.start, until="standby")
            duty = await join_duty_room(anna, first.duty_alias)
            _, room, w = await start_lvu6(anna, duty)

            # Mid-dialogue: the leader dies right after an answer; the standby answers it.
            kill_after = 3
            for i, (question, answer) in enumerate(LVU6_ANSWERS):
                await w.question(question)
                mark = w.mark()
                await anna.send(room, answer)
                if i == kill_after:
                    killed = time.monotonic()
                    assert first.process.stop(signal.SIGKILL) == -signal.SIGKILL
                await anna.wait_message(room, contains=following(i), after=mark, timeout=60)
                if i == kill_after:
                    dialogue_takeover = time.monotonic() - killed
                    # The killed node comes back, as the standby now.
                    await asyncio.to_thread(first.process.start, until="standby")
            every_question = Counter({str(q): 1 for q, _ in LVU6_ANSWERS} | {"done": 1})
            await asyncio.sleep(SETTLE)
            assert asked(anna, room) == every_question, asked(anna, room)

            # Mid-escalation: the decision waits for Dag; the leader dies before the
            # reminder is due; the other node sends it, once.
            mark = w.mark()
            await anna.send(room, "!skicka")
            await anna.wait_message(room, contains="skickad och låst", after=mark, timeout=60)
            dag_room, _, _ = await direct_alert(dag, timeout=60)
            killed = time.monotonic()
            assert second.stop(signal.SIGKILL) == -signal.SIGKILL
            escalation_takeover = await until_status(first.process, "ok")
            await dag.wait_message(dag_room, contains=REMINDER, timeout=60)
            await asyncio.sleep(SETTLE)
            print(
                f"take-over: {dialogue_takeover:.1f} s from SIGKILL to the answer handled "
                f"mid-dialogue; {escalation_takeover:.1f} s from SIGKILL to serving "
                f"mid-escalation (reminder {time.monotonic() - killed:.1f} s after the kill)"
            )
            assert count(dag, dag_room, REMINDER) == 1
            assert count(dag, dag_room, "/s/") == 2  # the alert and one reminder
            assert count(anna, room, "skickad och låst") == 1
        finally:
            for node in (first.process, second):
                if node.proc is not None:
                    node.stop()
            (tmp_path / "node-2.log").write_text(second.log_tail(400))


async def test_a_paused_leader_that_wakes_after_the_take_over_sends_nothing(
    make_user: UserFactory, make_bot: BotFactory, tmp_path: Path
) -> None:
    anna = await make_user("anna")
    async with postgres_database() as url:
        first = make_bot(members=[anna.user_id], database_url=url)
        second = another_node(first.process, tmp_path / "node-2")
        try:
            await asyncio.to_thread(second.start, until="standby")
            duty = await join_duty_room(anna, first.duty_alias)
            assert first.process.proc is not None
            leader = first.process.proc.pid

            os.kill(leader, signal.SIGSTOP)  # a frozen machine, a long GC pause
            paused = time.monotonic()
            took_over = await until_status(second, "ok")
            mark = len(anna.received)
            await anna.send(duty, "!hjälp")
            await anna.wait_message(duty, contains="!ny", after=mark, timeout=60)
            handled = time.monotonic() - paused
            first_help = mark
            print(
                f"take-over after SIGSTOP: serving in {took_over:.1f} s, !hjälp answered "
                f"{handled:.1f} s after the pause"
            )

            os.kill(leader, signal.SIGCONT)
            exit_code = await asyncio.to_thread(first.process.proc.wait, 30)
            assert exit_code == EXIT_FENCED, first.process.log_tail()
            assert "fenced" in first.process.log_text()
            mark = len(anna.received)
            await anna.send(duty, "!hjälp")
            await anna.wait_message(duty, contains="!ny", after=mark, timeout=60)
            await asyncio.sleep(SETTLE)
            # One answer to each !hjälp: the woken node sent nothing.
            assert replies(anna, duty, "!ny", first_help) == 2
            assert second.status() == "ok"
        finally:
            if first.process.proc is not None and first.process.proc.poll() is None:
                os.kill(first.process.proc.pid, signal.SIGCONT)
            for node in (first.process, second):
                if node.proc is not None:
                    node.stop()
            (tmp_path / "node-2.log").write_text(second.log_tail(400))
