"""The alert channels outside Matrix, against real servers on 127.0.0.1.

E-mail goes to an aiosmtpd server (plain, STARTTLS with a certificate made here,
implicit TLS); SMS and calls go to a local 46elks stand-in that plays a call the way
the provider does, against the bot's real web app with the 46elks webhooks added.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import email
import email.policy
import ipaddress
import logging
import socket
import stat
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, replace
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from bot.elks_webhook import AUDIO_DIR, add_elks_routes
from bot.notifiers import (
    SECRET_FILE,
    CompositeNotifier,
    ElksNotifier,
    EmailNotifier,
    build_notifier,
)
from config.settings import (
    DecisionMaker,
    DutySettings,
    EmailSettings,
    MatrixSettings,
    NotifySettings,
    PhoneSettings,
    Settings,
    StorageSettings,
    WebSettings,
)
from handlers.notify import Alert, MemoryNotifier, NotifyError, alert_texts
from signing.web import create_app
from tests.elks_server import ElksTestServer

ELKS_USER = "u0123456789abcdef"
ELKS_PASSWORD = "elks-api-password"
FROM_NUMBER = "+46766860000"
CALLEE = "+46701234567"
SMTP_USER = "socialjour"
SMTP_PASSWORD = "smtp-password"

# Who the decision is about and who signs it: known to the bot, never in an alert.
SIGNER = DecisionMaker(
    name="Birgitta Almqvist",
    role="ordförande",
    user_id="@birgitta:example.org",
    email="birgitta.almqvist@example.org",
    phone=CALLEE,
    personal_number="19650412-2389",
)
REPORT_ANSWERS = {"barnets_namn": "Kevin Almqvist", "personnummer": "20140307-4411"}

ALERT = Alert(
    case_number="SJ-2026-0042",
    decision_type="Omedelbart omhändertagande (6 § LVU)",
    link="https://jour.example.org/s/4f1c0a9d2b7e4c6fa1b2c3d4e5f60718",
    language="sv",
    reference="alert-7f3a9c",
)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _true(reference: str) -> bool:
    return True


# --- the texts --------------------------------------------------------------------------


def test_swedish_texts_carry_the_case_the_decision_and_the_link() -> None:
    subject, body, sms = alert_texts(ALERT)
    assert subject == "Socialjour: ett beslut väntar på din underskrift (SJ-2026-0042)"
    assert "Ett beslut i ärende SJ-2026-0042 väntar på din underskrift" in body
    assert "Omedelbart omhändertagande (6 § LVU)" in body
    assert f"Läs och underteckna beslutet här:\n{ALERT.link}" in body
    assert sms == (
        "Socialjour: Ett beslut väntar på din underskrift. Ärende SJ-2026-0042: "
        f"Omedelbart omhändertagande (6 § LVU). {ALERT.link}"
    )


def test_without_a_link_the_texts_say_open_element() -> None:
    subject, body, sms = alert_texts(replace(ALERT, link=None))
    assert "Öppna Element för att läsa och underteckna beslutet." in body
    assert sms.endswith("(6 § LVU). Öppna Element.")
    assert "http" not in subject + body + sms


def test_english_texts() -> None:
    subject, body, sms = alert_texts(replace(ALERT, language="en", link=None))
    assert subject == "Socialjour: a decision awaits your signature (SJ-2026-0042)"
    assert "A decision in case SJ-2026-0042 is waiting for your signature" in body
    assert "Open Element to read and sign the decision." in body
    assert sms == (
        "Socialjour: A decision awaits your signature. Case SJ-2026-0042: "
        "Omedelbart omhändertagande (6 § LVU). Open Element."
    )
    assert "ärende" not in body.lower()


def test_a_reference_that_cannot_travel_in_a_url_is_refused() -> None:
    with pytest.raises(ValueError):
        replace(ALERT, reference="Birgitta Almqvist/1")
    with pytest.raises(ValueError):
        replace(ALERT, reference="")


async def test_memory_notifier_records_and_fails_on_request() -> None:
    notifier = MemoryNotifier(configured=frozenset({"sms", "email"}))
    await notifier.send("sms", CALLEE, ALERT)
    notifier.fail("email", retryable=False, code="smtp_auth")
    with pytest.raises(NotifyError) as failed:
        await notifier.send("email", "a@example.org", ALERT)
    assert (failed.value.code, failed.value.retryable) == ("smtp_auth", False)
    with pytest.raises(NotifyError) as missing:
        await notifier.send("call", CALLEE, ALERT)
    assert missing.value.code == "channel_unavailable"
    notifier.recover("email")
    await notifier.send("email", "a@example.org", ALERT)
    assert notifier.sent == [("sms", CALLEE, ALERT), ("email", "a@example.org", ALERT)]
    assert notifier.to("email") == ["a@example.org"]


# --- e-mail -----------------------------------------------------------------------------


@dataclass
class Received:
    sender: str
    recipients: list[str]
    raw: bytes
    tls: bool
    login: bytes | None

    def parsed(self) -> EmailMessage:
        message = email.message_from_bytes(self.raw, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        return message


class Mailbox:
    """An aiosmtpd handler that keeps what arrives and can refuse recipients."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.refuse_rcpt: str | None = None

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: Any
    ) -> str:
        if self.refuse_rcpt:
            return self.refuse_rcpt
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        login = session.auth_data.login if session.authenticated else None
        self.received.append(
            Received(
                envelope.mail_from,
                list(envelope.rcpt_tos),
                envelope.original_content or envelope.content,
                session.ssl is not None
                or server.transport.get_extra_info("sslcontext") is not None,
                login,
            )
        )
        return "250 OK"


def _authenticator(
    server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
) -> AuthResult:
    ok = (
        isinstance(auth_data, LoginPassword)
        and auth_data.login == SMTP_USER.encode()
        and auth_data.password == SMTP_PASSWORD.encode()
    )
    return AuthResult(success=ok, handled=False, auth_data=auth_data)


@dataclass
class Tls:
    cert: Path
    key: Path

    def server_context(self) -> Any:
        import ssl

        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(str(self.cert), str(self.key))
        return context


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Tls:
    """A self-signed certificate for 127.0.0.1 and localhost."""
    folder = tmp_path_factory.mktemp("smtp-tls")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test mail server")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return Tls(cert_path, key_path)


@pytest.fixture
def mailbox() -> Mailbox:
    return Mailbox()


@pytest.fixture
def plain_smtp(mailbox: Mailbox) -> Iterator[int]:
    controller = Controller(mailbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield controller.port
    finally:
        controller.stop()


@pytest.fixture
def starttls_smtp(mailbox: Mailbox, tls: Tls) -> Iterator[int]:
    """Requires STARTTLS before anything, and a login (only over TLS)."""
    controller = Controller(
        mailbox,
        hostname="127.0.0.1",
        port=free_port(),
        tls_context=tls.server_context(),
        require_starttls=True,
        auth_required=True,
        auth_require_tls=True,
        authenticator=_authenticator,
    )
    controller.start()
    try:
        yield controller.port
    finally:
        controller.stop()


def _email_settings(port: int, **changes: Any) -> EmailSettings:
    base = EmailSettings(
        host="127.0.0.1", port=port, starttls=False, tls=False, from_addr="jour@example.org"
    )
    return replace(base, **changes)


async def test_plain_email_arrives_in_utf8_with_message_id_and_date(
    plain_smtp: int, mailbox: Mailbox
) -> None:
    fixed = dt.datetime(2026, 3, 4, 2, 15, tzinfo=dt.UTC)
    notifier = EmailNotifier(_email_settings(plain_smtp), clock=lambda: fixed)
    await notifier.send("email", SIGNER.email or "", ALERT)

    [got] = mailbox.received
    assert got.sender == "jour@example.org"
    assert got.recipients == ["birgitta.almqvist@example.org"]
    message = got.parsed()
    subject, body, _ = alert_texts(ALERT)
    assert message["Subject"] == subject
    assert message["Message-ID"].endswith("@example.org>")
    assert message["Date"] == "Wed, 04 Mar 2026 02:15:00 +0000"
    assert message.get_content_type() == "text/plain"
    assert message.get_content_charset() == "utf-8"
    assert message.get_content().replace("\r\n", "\n") == body
    assert not got.tls


async def test_email_over_starttls_with_a_private_ca_and_a_login(
    starttls_smtp: int, mailbox: Mailbox, tls: Tls
) -> None:
    settings = _email_settings(
        starttls_smtp,
        starttls=True,
        username=SMTP_USER,
        password=SMTP_PASSWORD,
        ca_cert=tls.cert,
    )
    await EmailNotifier(settings).send("email", "jour-lead@example.org", replace(ALERT, link=None))

    [got] = mailbox.received
    assert got.tls and got.login == SMTP_USER.encode()
    assert "Öppna Element" in got.parsed().get_content()


async def test_email_refuses_a_server_whose_certificate_it_does_not_trust(
    starttls_smtp: int, mailbox: Mailbox
) -> None:
    settings = _email_settings(
        starttls_smtp, starttls=True, username=SMTP_USER, password=SMTP_PASSWORD
    )
    with pytest.raises(NotifyError) as failed:
        await EmailNotifier(settings).send("email", "jour-lead@example.org", ALERT)
    assert (failed.value.code, failed.value.retryable) == ("smtp_tls", False)
    assert mailbox.received == []


async def test_email_with_starttls_refuses_a_server_without_it(
    plain_smtp: int, mailbox: Mailbox
) -> None:
    with pytest.raises(NotifyError) as failed:
        await EmailNotifier(_email_settings(plain_smtp, starttls=True)).send(
            "email", "a@example.org", ALERT
        )
    assert (failed.value.code, failed.value.retryable) == ("smtp_no_starttls", False)
    assert mailbox.received == []


async def test_a_login_the_server_does_not_offer_is_a_config_error(
    plain_smtp: int, mailbox: Mailbox
) -> None:
    settings = _email_settings(plain_smtp, username=SMTP_USER, password=SMTP_PASSWORD)
    with pytest.raises(NotifyError) as failed:
        await EmailNotifier(settings).send("email", "a@example.org", ALERT)
    assert (failed.value.code, failed.value.retryable) == ("smtp_no_auth", False)
    assert mailbox.received == []


async def test_email_over_implicit_tls(mailbox: Mailbox, tls: Tls) -> None:
    controller = Controller(
        mailbox, hostname="127.0.0.1", port=free_port(), ssl_context=tls.server_context()
    )
    controller.start()
    try:
        settings = _email_settings(controller.port, tls=True, ca_cert=tls.cert)
        await EmailNotifier(settings).send("email", "a@example.org", ALERT)
    finally:
        controller.stop()
    [got] = mailbox.received
    assert got.tls


async def test_a_wrong_smtp_password_is_not_retried(
    starttls_smtp: int, mailbox: Mailbox, tls: Tls
) -> None:
    settings = _email_settings(
        starttls_smtp, starttls=True, username=SMTP_USER, password="wrong", ca_cert=tls.cert
    )
    with pytest.raises(NotifyError) as failed:
        await EmailNotifier(settings).send("email", "a@example.org", ALERT)
    assert (failed.value.code, failed.value.retryable) == ("smtp_auth", False)


@pytest.mark.parametrize(
    ("answer", "retryable"),
    [("550 5.1.1 No such user", False), ("451 4.3.0 Try again later", True)],
)
async def test_a_refused_recipient_is_retried_only_when_temporary(
    plain_smtp: int, mailbox: Mailbox, answer: str, retryable: bool
) -> None:
    mailbox.refuse_rcpt = answer
    with pytest.raises(NotifyError) as failed:
        await EmailNotifier(_email_settings(plain_smtp)).send("email", "a@example.org", ALERT)
    assert (failed.value.code, failed.value.retryable) == ("smtp_refused", retryable)


async def test_an_unreachable_mail_server_is_retryable() -> None:
    notifier = EmailNotifier(_email_settings(free_port()), timeout=2)
    with pytest.raises(NotifyError) as failed:
        await notifier.send("email", "a@example.org", ALERT)
    assert (failed.value.code, failed.value.retryable) == ("smtp_unreachable", True)


# --- SMS and calls ----------------------------------------------------------------------


@dataclass
class Bot:
    """The bot's web app (signing app plus 46elks webhooks) on a real port."""

    base_url: str
    secret: str
    acknowledged: list[str]
    answers: list[bool | Exception]


@pytest.fixture
async def elks() -> AsyncIterator[ElksTestServer]:
    async with ElksTestServer(ELKS_USER, ELKS_PASSWORD) as server:
        yield server


@pytest.fixture
async def bot() -> AsyncIterator[Bot]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    base_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    state = Bot(base_url=base_url, secret="s3cr3t-Tq8vN2xZ", acknowledged=[], answers=[])

    async def acknowledge(reference: str) -> bool:
        state.acknowledged.append(reference)
        answer = state.answers.pop(0) if state.answers else True
        if isinstance(answer, Exception):
            raise answer
        return answer

    app = create_app(public_base_url=base_url)
    add_elks_routes(app, secret=state.secret, acknowledge=acknowledge, public_base_url=base_url)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.SockSite(runner, sock).start()
    try:
        yield state
    finally:
        await runner.cleanup()


def _phone_settings(elks: ElksTestServer, **changes: Any) -> PhoneSettings:
    base = PhoneSettings(
        url=elks.url, username=ELKS_USER, password=ELKS_PASSWORD, from_number=FROM_NUMBER
    )
    return replace(base, **changes)


@pytest.fixture
async def phone(elks: ElksTestServer, bot: Bot) -> AsyncIterator[ElksNotifier]:
    notifier = ElksNotifier(
        _phone_settings(elks), public_base_url=bot.base_url, webhook_secret=bot.secret
    )
    yield notifier
    await notifier.close()


async def test_an_sms_reaches_the_provider_as_46elks_wants_it(
    phone: ElksNotifier, elks: ElksTestServer
) -> None:
    await phone.send("sms", CALLEE, ALERT)
    [request] = elks.requests
    assert request.authorised and request.content_type == "application/x-www-form-urlencoded"
    assert elks.sms == [{"from": FROM_NUMBER, "to": CALLEE, "message": alert_texts(ALERT)[2]}]


async def test_press_1_in_a_call_acknowledges_the_alert(
    phone: ElksNotifier, elks: ElksTestServer, bot: Bot
) -> None:
    await phone.send("call", CALLEE, ALERT)
    call = await elks.call_done()
    assert call.error is None
    assert call.form["from"] == FROM_NUMBER and call.form["to"] == CALLEE

    voice, digit = call.webhooks
    assert voice.status == 200 and voice.answer is not None
    assert voice.answer["digits"] == 1 and voice.answer["repeat"] in (1, 2)
    assert voice.answer["next"].startswith(f"{bot.base_url}/elks/{bot.secret}/digit/")
    prompt, thanks = call.fetched
    assert prompt.status == 200 and prompt.content_type == "audio/mpeg"
    assert prompt.body == (AUDIO_DIR / "alert-sv.mp3").read_bytes()
    assert digit.form["result"] == "1" and digit.status == 200

    assert bot.acknowledged == ["alert-7f3a9c"]
    assert thanks.body == (AUDIO_DIR / "thanks-sv.mp3").read_bytes()


async def test_an_english_call_plays_the_english_message(
    phone: ElksNotifier, elks: ElksTestServer
) -> None:
    await phone.send("call", CALLEE, replace(ALERT, language="en"))
    call = await elks.call_done()
    assert call.fetched[0].body == (AUDIO_DIR / "alert-en.mp3").read_bytes()
    assert call.fetched[1].body == (AUDIO_DIR / "thanks-en.mp3").read_bytes()


@pytest.mark.parametrize("digit", ["2", None])
async def test_another_digit_or_none_acknowledges_nothing(
    phone: ElksNotifier, elks: ElksTestServer, bot: Bot, digit: str | None
) -> None:
    elks.digit = digit
    await phone.send("call", CALLEE, ALERT)
    call = await elks.call_done()
    assert bot.acknowledged == []
    assert call.webhooks[-1].status == 200
    assert call.fetched[-1].body == (AUDIO_DIR / "goodbye-sv.mp3").read_bytes()


@pytest.mark.parametrize("outcome", [False, RuntimeError("database is down")])
async def test_a_failed_acknowledgement_still_answers_the_provider_and_says_so(
    phone: ElksNotifier, elks: ElksTestServer, bot: Bot, outcome: bool | Exception
) -> None:
    bot.answers.append(outcome)
    await phone.send("call", CALLEE, ALERT)
    call = await elks.call_done()
    assert bot.acknowledged == ["alert-7f3a9c"]
    assert call.webhooks[-1].status == 200
    assert call.fetched[-1].body == (AUDIO_DIR / "goodbye-sv.mp3").read_bytes()


async def test_a_wrong_webhook_secret_is_refused_quietly(
    bot: Bot, elks: ElksTestServer, caplog: pytest.LogCaptureFixture
) -> None:
    import aiohttp

    caplog.set_level(logging.WARNING)
    async with aiohttp.ClientSession() as client:
        for path in ("voice", "digit"):
            url = f"{bot.base_url}/elks/not-the-secret/{path}/alert-7f3a9c"
            async with client.post(url, data={"result": "1"}) as response:
                assert response.status == 404
        async with client.get(f"{bot.base_url}/elks/audio/alert-sv.mp3") as response:
            assert response.status == 200  # the audio needs no secret: it holds no case data
        async with client.get(f"{bot.base_url}/elks/audio/README.md") as response:
            assert response.status == 404
    assert bot.acknowledged == []
    refusals = [r for r in caplog.records if "wrong secret" in r.getMessage()]
    assert len(refusals) == 2
    assert not any("not-the-secret" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    ("status", "code", "retryable"),
    [
        (503, "provider_unavailable", True),
        (500, "provider_unavailable", True),
        (429, "provider_busy", True),
        (400, "provider_refused", False),
        (402, "provider_no_credit", False),
    ],
)
async def test_provider_errors_say_whether_to_retry(
    phone: ElksNotifier, elks: ElksTestServer, status: int, code: str, retryable: bool
) -> None:
    elks.fail_next(status, "Something went wrong")
    with pytest.raises(NotifyError) as failed:
        await phone.send("sms", CALLEE, ALERT)
    assert (failed.value.code, failed.value.retryable) == (code, retryable)
    assert elks.sms == []
    await phone.send("sms", CALLEE, ALERT)  # the next try goes through
    assert len(elks.sms) == 1


async def test_wrong_provider_credentials_are_not_retried(elks: ElksTestServer, bot: Bot) -> None:
    notifier = ElksNotifier(
        _phone_settings(elks, password="wrong"),
        public_base_url=bot.base_url,
        webhook_secret=bot.secret,
    )
    try:
        for channel in ("sms", "call"):
            with pytest.raises(NotifyError) as failed:
                await notifier.send(channel, CALLEE, ALERT)
            assert (failed.value.code, failed.value.retryable) == ("provider_auth", False)
    finally:
        await notifier.close()
    assert [r.status for r in elks.requests] == [401, 401]
    assert elks.sms == [] and elks.calls == []


async def test_an_unreachable_provider_is_retryable(bot: Bot) -> None:
    settings = PhoneSettings(
        url=f"http://127.0.0.1:{free_port()}/a1",
        username=ELKS_USER,
        password=ELKS_PASSWORD,
        from_number=FROM_NUMBER,
    )
    notifier = ElksNotifier(settings, public_base_url=bot.base_url, webhook_secret=bot.secret)
    try:
        with pytest.raises(NotifyError) as failed:
            await notifier.send("call", CALLEE, ALERT)
    finally:
        await notifier.close()
    assert (failed.value.code, failed.value.retryable) == ("provider_unreachable", True)


async def test_spaces_and_dashes_in_a_number_are_dropped(
    phone: ElksNotifier, elks: ElksTestServer
) -> None:
    await phone.send("sms", "+46 70-123 45 67", ALERT)
    assert [sms["to"] for sms in elks.sms] == [CALLEE]


async def test_a_number_not_in_e164_never_reaches_the_provider(
    phone: ElksNotifier, elks: ElksTestServer
) -> None:
    with pytest.raises(NotifyError) as failed:
        await phone.send("sms", "070-123 45 67", ALERT)
    assert (failed.value.code, failed.value.retryable) == ("bad_number", False)
    assert elks.requests == []


# --- composing --------------------------------------------------------------------------


def _settings(tmp_path: Path, notify: NotifySettings, base_url: str) -> Settings:
    return Settings(
        config_path=tmp_path / "socialjour.toml",
        matrix=MatrixSettings(homeserver="http://127.0.0.1:8008", user_id="@jour:example.org"),
        storage=StorageSettings(data_dir=tmp_path / "data", database_url="sqlite://"),
        web=WebSettings(public_base_url=base_url),
        duty=DutySettings(room_alias="#jour:example.org", members=("@a:example.org",)),
        notify=notify,
    )


async def test_build_notifier_keeps_one_private_webhook_secret(
    tmp_path: Path, elks: ElksTestServer
) -> None:
    notify = NotifySettings(email=_email_settings(25), phone=_phone_settings(elks))
    settings = _settings(tmp_path, notify, "https://jour.example.org/")
    first = build_notifier(settings, acknowledge=_true, data_dir=settings.storage.data_dir)
    second = build_notifier(settings, acknowledge=_true, data_dir=settings.storage.data_dir)
    try:
        assert first.channels() == frozenset({"email", "sms", "call"})
        path = settings.storage.data_dir / SECRET_FILE
        assert path == settings.storage.data_dir / "keys" / "elks_webhook.secret"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert first.webhook_secret and len(first.webhook_secret) >= 32
        assert first.webhook_secret == second.webhook_secret == path.read_text().strip()
    finally:
        await first.close()
        await second.close()


async def test_a_configured_webhook_secret_wins_and_nothing_is_written(
    tmp_path: Path, elks: ElksTestServer
) -> None:
    notify = NotifySettings(phone=_phone_settings(elks, webhook_secret="configured-secret-1"))
    settings = _settings(tmp_path, notify, "https://jour.example.org")
    notifier = build_notifier(settings, acknowledge=_true, data_dir=settings.storage.data_dir)
    try:
        assert notifier.webhook_secret == "configured-secret-1"
        assert notifier.channels() == frozenset({"sms", "call"})
        assert not (settings.storage.data_dir / SECRET_FILE).exists()
        with pytest.raises(NotifyError) as failed:
            await notifier.send("email", "a@example.org", ALERT)
        assert (failed.value.code, failed.value.retryable) == ("channel_unavailable", False)
    finally:
        await notifier.close()


async def test_without_notify_sections_there_are_no_channels(tmp_path: Path) -> None:
    settings = _settings(tmp_path, NotifySettings(), "https://jour.example.org")
    notifier = build_notifier(settings, acknowledge=_true)
    assert notifier.channels() == frozenset()
    app = web.Application()
    notifier.add_routes(app)
    assert len(app.router.routes()) == 0
    assert not (settings.storage.data_dir / SECRET_FILE).exists()


async def test_the_composite_routes_a_whole_call_through_the_web_app(
    tmp_path: Path, elks: ElksTestServer
) -> None:
    """``build_notifier`` + ``add_routes``: what the composition root does."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    base_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    acknowledged: list[str] = []

    async def acknowledge(reference: str) -> bool:
        acknowledged.append(reference)
        return True

    settings = _settings(tmp_path, NotifySettings(phone=_phone_settings(elks)), base_url)
    notifier: CompositeNotifier = build_notifier(settings, acknowledge=acknowledge)

    app = create_app(public_base_url=base_url)
    notifier.add_routes(app)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.SockSite(runner, sock).start()
    try:
        await notifier.send("call", CALLEE, ALERT)
        call = await elks.call_done()
    finally:
        await notifier.close()
        await runner.cleanup()
    assert call.error is None
    assert acknowledged == [ALERT.reference]


# --- privacy ----------------------------------------------------------------------------


async def test_no_alert_text_or_log_line_carries_personal_data(
    plain_smtp: int,
    mailbox: Mailbox,
    phone: ElksNotifier,
    elks: ElksTestServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    notifier = CompositeNotifier(
        email=EmailNotifier(_email_settings(plain_smtp)),
        phone=phone,
        acknowledge=_true,
        webhook_secret="unused",
        public_base_url="http://127.0.0.1",
    )
    for language in ("sv", "en"):
        for link in (ALERT.link, None):
            alert = replace(ALERT, language=language, link=link)
            await notifier.send("email", SIGNER.email or "", alert)
            await notifier.send("sms", CALLEE, alert)
            await notifier.send("call", CALLEE, alert)
            await elks.call_done()
    # One failing of each kind, so the error paths' log lines are scanned too.
    elks.fail_next(503)
    with pytest.raises(NotifyError):
        await notifier.send("sms", CALLEE, ALERT)
    mailbox.refuse_rcpt = "550 5.1.1 No such user"
    with pytest.raises(NotifyError):
        await notifier.send("email", SIGNER.email or "", ALERT)

    sent: list[str] = [m.raw.decode() for m in mailbox.received]
    sent += [m.parsed().get_content() for m in mailbox.received]
    sent += [str(r.form) for r in elks.requests]
    for call in elks.calls:
        sent += [w.url + str(w.form) + w.raw.decode() for w in call.webhooks]
        sent += [f.url for f in call.fetched]
    assert len(mailbox.received) == 4 and len(elks.sms) == 4 and len(elks.calls) == 4
    assert all("SJ-2026-0042" in text for text in sent[:8] + [s["message"] for s in elks.sms])

    personal = [
        SIGNER.name,
        "Almqvist",
        *REPORT_ANSWERS.values(),
        "196504122389",
        "201403074411",
        SIGNER.personal_number or "",
    ]
    for text in sent:
        for secret in personal:
            assert secret not in text
    # The test mail server logs whole conversations; the bot's own lines must not.
    logs = "\n".join(r.getMessage() for r in caplog.records if not r.name.startswith("mail."))
    for secret in [*personal, CALLEE, SIGNER.email or "", "underskrift", "signature"]:
        assert secret not in logs
    assert "sms alert failed: provider answered 503" in logs


async def test_concurrent_sends_share_one_session(
    phone: ElksNotifier, elks: ElksTestServer
) -> None:
    await asyncio.gather(*(phone.send("sms", CALLEE, ALERT) for _ in range(5)))
    assert len(elks.sms) == 5
