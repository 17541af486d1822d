"""A decision waiting for a signature alerts its decision-maker over every channel.

The bot runs as a real process against the session's Synapse; SMS and calls go to the
local 46elks stand-in (which plays the call against the bot's real webhooks), e-mail
to an aiosmtpd server on loopback. Each person's ``notify`` rule runs in seconds here,
and the municipality's escalation policy is kept quiet (its first step is an hour off).
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import re
import secrets
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiosmtpd.controller import Controller

from bot.elks_webhook import AUDIO_DIR
from bot.synapse_local import free_port
from tests.conftest import BotFactory, BotSetup, UserFactory
from tests.elks_server import ElksTestServer
from tests.matrix_helpers import MatrixUser
from tests.test_decision_matrix import LINK, LVU6_ANSWERS, signing_config, submit_lvu6

pytestmark = pytest.mark.integration

ELKS_USER = "u" + secrets.token_hex(8)
ELKS_PASSWORD = "p" + secrets.token_hex(12)
FROM_NUMBER = "+46700000000"
DAG_PHONE = "+46701234567"
DAG_EMAIL = "dag@example.org"
DECISION_TYPE = "Omedelbart omhändertagande enligt LVU"

#: What the report says about the child: never outside the encrypted rooms.
_ANSWERS = dict(LVU6_ANSWERS)
CHILD_NAME = _ANSWERS[1]
CHILD_PNR = _ANSWERS[2]
PERSONAL = [
    CHILD_NAME,
    CHILD_NAME.split()[-1],
    CHILD_PNR,
    CHILD_PNR.replace("-", ""),
    CHILD_PNR[2:],
    # The free-text answers (where, what happened, why now, placement, guardians, why
    # not informed, the proposed decision, the decision on where the care begins).
    *(_ANSWERS[q] for q in (4, 7, 8, 9, 10, 13, 15, 19)),
    # The decision-maker's own name is not in an alert either (handlers/notify.py).
    "Dagsson",
]


# --- an SMTP server ---------------------------------------------------------------------


@dataclass
class Mail:
    raw: bytes
    recipients: list[str]
    at: float

    def parsed(self) -> EmailMessage:
        message = email.message_from_bytes(self.raw, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        return message

    def texts(self) -> list[str]:
        """The raw message, every header decoded, and the decoded body."""
        message = self.parsed()
        headers = [f"{name}: {value}" for name, value in message.items()]
        return [self.raw.decode("utf-8", "replace"), *headers, message.get_content()]


@dataclass
class Mailbox:
    received: list[Mail] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        raw = envelope.original_content or envelope.content
        self.received.append(Mail(raw, list(envelope.rcpt_tos), time.monotonic()))
        return "250 OK"


@dataclass
class Smtp:
    port: int
    mailbox: Mailbox


@pytest.fixture
def smtp() -> Iterator[Smtp]:
    mailbox = Mailbox()
    controller = Controller(mailbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield Smtp(controller.port, mailbox)
    finally:
        controller.stop()


class TimedElks(ElksTestServer):
    """The 46elks stand-in, also noting when each request arrived (to order channels)."""

    def __init__(self, username: str, password: str, *, digit: str | None = "1") -> None:
        super().__init__(username, password, digit=digit)
        self.arrived: list[tuple[str, float]] = []

    async def _checked(
        self, request: web.Request, required: tuple[str, ...], *, text_sender: bool
    ) -> tuple[dict[str, str], web.Response | None]:
        self.arrived.append((request.path, time.monotonic()))
        return await super()._checked(request, required, text_sender=text_sender)

    def first(self, path: str) -> float:
        return next(at for arrived, at in self.arrived if arrived.endswith(path))


@pytest.fixture
async def elks() -> AsyncIterator[TimedElks]:
    server = TimedElks(ELKS_USER, ELKS_PASSWORD, digit="1")
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


# --- the installation -------------------------------------------------------------------


def channels_config(
    dag: MatrixUser, tag: str, smtp: Smtp, elks: ElksTestServer, rules: dict[str, str]
) -> str:
    """``rules``: channel -> after, Matrix at once before them."""
    notify = ", ".join(
        f'{{ after = "{after}", via = "{via}" }}'
        for via, after in {"matrix": "0m", **rules}.items()
    )
    return f"""
[notify.email]
host = "127.0.0.1"
port = {smtp.port}
starttls = false
from = "socialjour@example.org"

[notify.phone]
url = "{elks.url}"
username = "{ELKS_USER}"
password = "{ELKS_PASSWORD}"
from = "{FROM_NUMBER}"

[escalation_policies.quiet]
steps = [{{ after = "1h", action = "remind" }}]

[[municipalities]]
id = "skovde"
name = "Skövde kommun"
intake_room_alias = "#mottagning-skovde-{tag}:localhost"
escalation_policy = "quiet"

  [[municipalities.decision_makers]]
  user_id = "{dag.user_id}"
  name = "Dag Dagsson"
  role = "ordförande"
  appointed_by = "Kommunfullmäktige"
  appointed_on = 2023-01-12
  minutes_ref = "§ 4"
  valid_until = 2099-12-31
  email = "{DAG_EMAIL}"
  phone = "{DAG_PHONE}"
  notify = [{notify}]
"""


@dataclass
class Waiting:
    """A case sent for signing, and the decision-maker's Matrix alert."""

    bot: BotSetup
    number: str
    case_room: str
    #: When the worker saw "skickad och låst": the request was created before this.
    sent_at: float
    alert_body: str
    token: str


async def send_for_signing(
    make_user: UserFactory,
    make_bot: BotFactory,
    tmp_path: Path,
    smtp: Smtp,
    elks: ElksTestServer,
    rules: dict[str, str],
) -> tuple[MatrixUser, MatrixUser, Waiting]:
    anna = await make_user("anna")
    dag = await make_user("dag")
    extra = signing_config(tmp_path) + channels_config(dag, anna.localpart, smtp, elks, rules)
    bot = make_bot(members=[anna.user_id], extra=extra)
    number, case_room = await submit_lvu6(anna, bot.duty_alias)
    sent_at = time.monotonic()

    # The Matrix alert comes at once, as a mention, with the link.
    direct = await dag.wait(lambda: dag.invites[-1] if dag.invites else None)
    await dag.join(direct)
    alert = await dag.wait_message(direct, contains="/s/")
    assert number in alert.body and DECISION_TYPE in alert.body
    assert dag.user_id in alert.event.source["content"]["m.mentions"]["user_ids"]
    match = LINK.search(alert.body)
    assert match, alert.body
    return anna, dag, Waiting(bot, number, case_room, sent_at, alert.body, match.group(1))


async def until(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll ``predicate`` (servers in this process must keep answering meanwhile)."""
    deadline = time.monotonic() + timeout
    while not (result := predicate()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"not within {timeout} s: {what}")
        await asyncio.sleep(0.05)
    return result


async def sleep_until(moment: float) -> None:
    await asyncio.sleep(max(0.0, moment - time.monotonic()))


def sms_requests(elks: ElksTestServer) -> list[Any]:
    return [r for r in elks.requests if r.path.endswith("/sms")]


# --- what leaves the encrypted rooms ------------------------------------------------------


def assert_texts_carry_no_personal_data(waiting: Waiting, elks: ElksTestServer, smtp: Smtp) -> None:
    """Every SMS, call request, webhook answer and e-mail: the case number, the decision
    type and the link, and nothing about the child or the report."""
    link = f"/s/{waiting.token}"
    for sms in elks.sms:
        text = sms["message"]
        assert waiting.number in text and DECISION_TYPE in text, text
        assert link in text or "Element" in text, text
        assert sms["to"] == DAG_PHONE and sms["from"] == FROM_NUMBER
    for mail in smtp.mailbox.received:
        message = mail.parsed()
        assert mail.recipients == [DAG_EMAIL]
        assert waiting.number in str(message["Subject"])
        body = message.get_content()
        assert waiting.number in body and DECISION_TYPE in body, body
        assert link in body or "Element" in body, body

    scanned: list[str] = [str(r.form) for r in elks.requests]
    for call in elks.calls:
        scanned.append(str(call.form))
        scanned += [w.url + str(w.form) + w.raw.decode("utf-8", "replace") for w in call.webhooks]
        scanned += [f.url for f in call.fetched]
    for mail in smtp.mailbox.received:
        scanned += mail.texts()
    assert scanned
    for text in scanned:
        for secret in PERSONAL:
            assert secret not in text, f"{secret!r} left the encrypted rooms in: {text[:300]!r}"


def assert_log_carries_no_personal_data(bot: BotSetup) -> None:
    log = bot.process.log_text()
    for secret in [CHILD_NAME, CHILD_PNR, CHILD_PNR.replace("-", ""), DAG_PHONE, DAG_EMAIL]:
        assert secret not in log, f"{secret!r} is in the bot's log"
    assert "Traceback" not in log, log[-3000:]


# --- the tests ----------------------------------------------------------------------------


async def test_sms_then_a_call_whose_press_1_stops_the_email_due_after_it(
    make_user: UserFactory,
    make_bot: BotFactory,
    tmp_path: Path,
    smtp: Smtp,
    elks: TimedElks,
) -> None:
    rules = {"sms": "2s", "call": "3s", "email": "6s"}
    anna, _, waiting = await send_for_signing(make_user, make_bot, tmp_path, smtp, elks, rules)

    await until(lambda: elks.sms, 15, "the SMS")
    assert waiting.token in elks.sms[0]["message"], "the SMS carries the same link"
    await until(lambda: elks.calls, 15, "the call")
    assert [path for path, _ in elks.arrived] == ["/a1/sms", "/a1/calls"]
    call = await elks.call_done(timeout=15)
    assert call.error is None, call.error
    assert call.form["to"] == DAG_PHONE and call.form["from"] == FROM_NUMBER
    voice, digit = call.webhooks
    assert voice.status == 200 and voice.answer is not None and voice.answer["digits"] == 1
    assert digit.form["result"] == "1" and digit.status == 200
    assert call.fetched[-1].body == (AUDIO_DIR / "thanks-sv.mp3").read_bytes(), (
        "pressing 1 acknowledged nothing"
    )

    # The worker sees that the decision-maker is on it.
    told = await anna.wait_message(waiting.case_room, contains="tryckte 1 i samtalet")
    assert "Dag Dagsson" in told.body and "på väg" in told.body

    # The e-mail was due after the acknowledgement: it never goes.
    await sleep_until(waiting.sent_at + 6 + 3)
    assert smtp.mailbox.received == [], "the acknowledgement did not stop the e-mail"
    assert len(elks.sms) == 1 and len(elks.calls) == 1
    assert "email alert sent" not in waiting.bot.process.log_text()

    assert_texts_carry_no_personal_data(waiting, elks, smtp)
    assert_log_carries_no_personal_data(waiting.bot)


async def test_with_the_call_last_the_email_arrives_before_it(
    make_user: UserFactory,
    make_bot: BotFactory,
    tmp_path: Path,
    smtp: Smtp,
    elks: TimedElks,
) -> None:
    rules = {"sms": "1s", "email": "2s", "call": "4s"}
    anna, _, waiting = await send_for_signing(make_user, make_bot, tmp_path, smtp, elks, rules)

    await until(lambda: smtp.mailbox.received, 15, "the e-mail")
    mail = smtp.mailbox.received[0]
    assert f"/s/{waiting.token}" in mail.parsed().get_content()

    await until(lambda: elks.calls, 15, "the call")
    assert elks.first("/sms") < mail.at < elks.first("/calls"), "SMS, e-mail, then the call"
    call = await elks.call_done(timeout=15)
    assert call.error is None, call.error
    await anna.wait_message(waiting.case_room, contains="tryckte 1 i samtalet")
    assert len(smtp.mailbox.received) == 1 and len(elks.sms) == 1

    assert_texts_carry_no_personal_data(waiting, elks, smtp)
    assert_log_carries_no_personal_data(waiting.bot)


async def test_a_failing_sms_provider_stops_no_other_channel_and_is_retried(
    make_user: UserFactory,
    make_bot: BotFactory,
    tmp_path: Path,
    smtp: Smtp,
    elks: TimedElks,
) -> None:
    elks.fail_next(503, "Service unavailable")
    rules = {"sms": "1s", "email": "2s"}
    # The Matrix alert still arrives (checked inside).
    _, _, waiting = await send_for_signing(make_user, make_bot, tmp_path, smtp, elks, rules)

    await until(lambda: smtp.mailbox.received, 15, "the e-mail")
    assert [r.status for r in sms_requests(elks)] == [503], "the first SMS attempt failed"
    assert elks.sms == []

    # Tried again after the back-off (5 s), and this time the provider takes it.
    await until(lambda: elks.sms, 20, "the SMS retried")
    attempts = sms_requests(elks)
    assert len(attempts) >= 2 and [r.status for r in attempts][:2] == [503, 200]
    assert len(elks.sms) == 1 and len(smtp.mailbox.received) == 1

    log = waiting.bot.process.log_text()
    assert "sms alert failed: provider answered 503" in log
    assert re.search(r"escalation step \d+ \(channel sms\) failed, attempt 1", log), log[-2000:]

    assert_texts_carry_no_personal_data(waiting, elks, smtp)
    assert_log_carries_no_personal_data(waiting.bot)
