"""A worker fills in a real form over real E2EE, as from Element on a phone."""

from __future__ import annotations

import pytest

from tests.conftest import BotFactory, UserFactory
from tests.matrix_helpers import MatrixUser
from tests.test_bot_matrix import join_duty_room, open_case

pytestmark = pytest.mark.integration

MUNICIPALITIES = """
[[municipalities]]
id = "skovde"
name = "Skövde kommun"
intake_room_alias = "#mottagning-skovde-{tag}:localhost"

[[municipalities]]
id = "mariestad"
name = "Mariestads kommun"
intake_room_alias = "#mottagning-mariestad-{tag}:localhost"
"""


class Worker:
    """One worker in one case room: say something, wait for the bot's next words."""

    def __init__(self, user: MatrixUser, room: str) -> None:
        self.user, self.room = user, room
        self.polls_seen = 0

    def mark(self) -> int:
        """Remember what has arrived so far: what the bot says next comes after this."""
        self.polls_seen = len(self.user.polls)
        return len(self.user.received)

    async def say(self, text: str, expect: str, *, timeout: float = 30) -> str:
        mark = self.mark()
        event_id = await self.user.send(self.room, text)
        await self.user.wait_message(self.room, contains=expect, after=mark, timeout=timeout)
        return event_id

    async def vote(self, question: int | None, answers: list[str], expect: str) -> None:
        """Vote in the poll of ``question`` (None: the form choice)."""

        asked = "Vilket beslut" if question is None else f"Fråga {question} av"
        prefix = "Vilket beslut" if question is None else f"{question}. "

        def poll_of_question() -> str | None:
            # The poll that follows the latest asking of the question (the bot sends the
            # question's text first, then its poll; an older poll is no longer valid).
            texts = [
                r.seq for r in self.user.received if r.room_id == self.room and asked in r.body
            ]
            if not texts:
                return None
            for room, poll, seq in self.user.polls:
                body = poll.source["content"]["org.matrix.msc3381.poll.start"]["question"]["body"]
                if room == self.room and seq > texts[-1] and body.startswith(prefix):
                    return str(poll.event_id)
            return None

        poll_id = await self.user.wait(poll_of_question)
        mark = self.mark()
        await self.user.vote(self.room, poll_id, answers)
        await self.user.wait_message(self.room, contains=expect, after=mark)

    async def question(self, number: int) -> None:
        """Wait until question ``number`` is the latest thing asked."""
        await self.user.wait(
            lambda: any(
                f"Fråga {number} av" in r.body
                for r in self.user.received[-3:]
                if r.room_id == self.room
            )
        )


async def test_worker_completes_lvu_form_with_text_polls_edit_and_restart(
    make_user: UserFactory, make_bot: BotFactory
) -> None:
    anna = await make_user("anna")
    bot = make_bot(members=[anna.user_id], extra=MUNICIPALITIES.format(tag=anna.localpart))
    duty = await join_duty_room(anna, bot.duty_alias)
    number, room = await open_case(anna, duty)
    w = Worker(anna, room)

    # The form is chosen in a poll.
    await anna.wait_message(room, contains="Vilket beslut gäller ärendet?")
    poll = await anna.wait_poll(room)
    assert "lvu6" in str(poll.source["content"])
    await w.vote(None, ["lvu6"], "Fråga 1 av 27")

    await w.say("Tolvan Tolvansson", "Fråga 2 av 27")
    # A wrong personnummer is explained and asked again; nothing is lost.
    mark = w.mark()
    await anna.send(room, "20160412-2381")
    complaint = await anna.wait_message(room, after=mark)
    assert "Fråga 2" not in complaint.body
    await anna.wait_message(room, contains="Fråga 2 av 27", after=mark)
    await w.say("20160412-2380", "Fråga 3 av 27")
    await w.vote(3, ["mariestad"], "Fråga 4 av 27")

    # The latest answer is corrected by editing the message in Element.
    typo = await w.say("Hemma", "Fråga 5 av 27")
    mark = w.mark()
    await anna.edit(room, typo, "Hos mormor, Storgatan 1")
    changed = await anna.wait_message(room, contains="ändrat till", after=mark)
    assert "Hos mormor" in changed.body
    await anna.wait_message(room, contains="Fråga 5 av 27", after=mark)

    # Several grounds at once, by poll; a child: 6 (grounds for 18 and over) is left out.
    await w.vote(5, ["hemmet", "missbruk"], "Fråga 7 av 27")

    # The bot restarts in the middle of the report.
    bot.process.stop()
    bot.process.start()
    await w.say("Polisen larmade efter bråk i hemmet.", "Fråga 8 av 27")
    await w.say("Barnet kan inte vara kvar i natt.", "Fråga 9 av 27")
    await w.say("Jourhem A", "Fråga 10 av 27")
    # Back one question: it is asked again, with its current answer.
    mark = w.mark()
    await anna.send(room, "!tillbaka")
    again = await anna.wait_message(room, contains="Fråga 9 av 27", after=mark)
    assert "Jourhem A" in again.body
    await w.say("Jourhem B", "Fråga 10 av 27")
    await w.say("Mamma Maria, 070-111 22 33", "Fråga 11 av 27")
    await w.say("ja", "Fråga 12 av 27")  # informed: the how-question appears
    await w.say("Per telefon kl 02.10", "Fråga 14 av 27")
    await w.say("!hoppa", "Fråga 15 av 27")  # the child's view is optional
    await w.say("Omedelbart omhändertagande enligt 6 § LVU.", "Fråga 16 av 27")
    await w.vote(16, ["nej"], "Fråga 18 av 27")  # no police: 17 does not apply
    await w.say("nu", "Fråga 19 av 27")
    # Under 15: 20 (the young person as a party) is left out.
    await w.say("Vården av Tolvan ska inledas i jourhem.", "Fråga 21 av 27")
    await w.say("nej", "Fråga 23 av 27")  # no interpreter: 22 does not apply
    await w.say("nej", "Fråga 25 av 27")  # no protected data: 24 does not apply
    await w.say("nej", "Alla frågor är besvarade")  # no 14 § decision: 26-27 do not apply

    # Change the home municipality afterwards.
    await w.say("!ändra 3", "Fråga 3 av 27")
    await w.say("Skövde", "Alla frågor är besvarade")

    mark = len(anna.received)
    await anna.send(room, "!sammanfattning")
    summary = await anna.wait_message(room, contains="Sammanfattning", after=mark)
    for expected in (
        "Tolvan Tolvansson",
        "20160412-2380",
        "Skövde kommun",
        "Hos mormor, Storgatan 1",
        "Jourhem B",
        "överhoppad",
    ):
        assert expected in summary.body, expected
    assert "Mariestad" not in summary.body and "Jourhem A" not in summary.body
    assert "<" not in summary.body

    # Nobody is on call for Skövde in this configuration: the worker is told at once,
    # the duty lead is mentioned, and the report opens again.
    mark = len(anna.received)
    await anna.send(room, "!skicka")
    nobody = await anna.wait_message(room, contains="Ingen beslutsfattare har jour", after=mark)
    assert anna.user_id in nobody.event.source["content"]["m.mentions"]["user_ids"]
    mark = len(anna.received)
    await anna.send(room, "!status")
    status = await anna.wait_message(room, contains=number, after=mark)
    assert "utkast" in status.body
    # Nothing personal reached the log.
    log = bot.process.log_text()
    assert "Tolvan" not in log and "20160412" not in log and "mormor" not in log
