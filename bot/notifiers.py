"""The real alert channels outside Matrix: e-mail over SMTP, SMS and calls via 46elks.

Each turns failures into :class:`~handlers.notify.NotifyError` with a short code and
the right ``retryable``, and logs only the channel and a status code: never an
address, a number or a text. :func:`build_notifier` combines what the config has.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import re
import secrets
import ssl
from collections.abc import Callable
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import Any

import aiohttp
import aiosmtplib
from aiohttp import web

from bot.elks_webhook import add_elks_routes, voice_start_url
from config.settings import EmailSettings, PhoneSettings, Settings
from handlers.notify import Acknowledge, Alert, NotifyError, alert_texts

__all__ = [
    "CompositeNotifier",
    "ElksNotifier",
    "EmailNotifier",
    "build_notifier",
    "webhook_secret",
]

log = logging.getLogger(__name__)

#: Seconds for each SMTP command (connect, EHLO, STARTTLS, AUTH, MAIL, RCPT, DATA).
SMTP_TIMEOUT = 15.0
#: Seconds for each request to the phone provider, from connect to the last byte.
HTTP_TIMEOUT = 10.0
SECRET_FILE = Path("keys") / "elks_webhook.secret"

_E164 = re.compile(r"\+[1-9][0-9]{6,14}")
_SEPARATORS = re.compile(r"[ -]")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+")

Clock = Callable[[], datetime]


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _caused_by(exc: BaseException, kind: type[BaseException]) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, kind):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


# --- e-mail -------------------------------------------------------------------------


class EmailNotifier:
    """Alert e-mails: UTF-8 plain text, STARTTLS (587) or implicit TLS (465) as configured."""

    def __init__(
        self, settings: EmailSettings, *, timeout: float = SMTP_TIMEOUT, clock: Clock = _utc_now
    ) -> None:
        self.settings = settings
        self.timeout = timeout
        self._clock = clock
        self._tls_context: ssl.SSLContext | None = None

    def channels(self) -> frozenset[str]:
        return frozenset({"email"})

    def tls_context(self) -> ssl.SSLContext:
        """System roots plus ``ca_cert`` when the mail server has a private CA."""
        if self._tls_context is None:
            context = ssl.create_default_context()
            if self.settings.ca_cert is not None:
                context.load_verify_locations(cafile=str(self.settings.ca_cert))
            self._tls_context = context
        return self._tls_context

    def message(self, to: str, alert: Alert) -> EmailMessage:
        subject, body, _ = alert_texts(alert)
        sender = self.settings.from_addr
        message = EmailMessage()
        message["From"] = sender
        message["To"] = to
        message["Subject"] = subject
        message["Date"] = format_datetime(self._clock())
        message["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2] or None)
        message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no out-of-office replies
        message["Content-Language"] = "en" if alert.language == "en" else "sv"
        message.set_content(body, subtype="plain", charset="utf-8")
        return message

    async def send(self, channel: str, to: str, alert: Alert) -> None:
        if channel != "email":
            raise NotifyError("channel_unavailable", retryable=False)
        if not _EMAIL.fullmatch(to):
            raise NotifyError("bad_address", retryable=False)
        message = self.message(to, alert)
        try:
            # Each SMTP command has its own limit; this bounds the whole conversation.
            async with asyncio.timeout(self.timeout * 6):
                await self._deliver(message)
        except NotifyError as exc:
            log.warning("email alert failed: %s", exc.code)
            raise
        except aiosmtplib.SMTPResponseException as exc:
            # SMTP's own rule: 4xx is temporary, 5xx permanent.
            log.warning("email alert failed: smtp %s", exc.code)
            auth = isinstance(exc, aiosmtplib.SMTPAuthenticationError)
            code = "smtp_auth" if auth else "smtp_refused"
            raise NotifyError(code, retryable=400 <= exc.code < 500) from None
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [r.code for r in exc.recipients]
            log.warning("email alert failed: smtp %s", ",".join(map(str, codes)) or "?")
            retryable = bool(codes) and all(400 <= c < 500 for c in codes)
            raise NotifyError("smtp_refused", retryable=retryable) from None
        except aiosmtplib.SMTPNotSupported:
            log.warning("email alert failed: the mail server lacks a needed extension")
            raise NotifyError("smtp_not_supported", retryable=False) from None
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            if _caused_by(exc, ssl.SSLCertVerificationError):
                log.warning("email alert failed: the mail server's certificate is not trusted")
                raise NotifyError("smtp_tls", retryable=False) from None
            log.warning("email alert failed: %s", type(exc).__name__)
            raise NotifyError("smtp_unreachable", retryable=True) from None

    async def _deliver(self, message: EmailMessage) -> None:
        s = self.settings
        smtp = aiosmtplib.SMTP(
            hostname=s.host,
            port=s.port,
            use_tls=s.tls,
            start_tls=False,  # done by hand below, so a server without it is refused
            tls_context=self.tls_context(),
            timeout=self.timeout,
        )
        await smtp.connect()
        try:
            if s.starttls and not s.tls:
                await smtp.ehlo()
                if not smtp.supports_extension("starttls"):
                    raise NotifyError("smtp_no_starttls", retryable=False)
                await smtp.starttls()
            if s.username:
                await smtp.ehlo()  # again after STARTTLS: what the server offers may differ
                if not smtp.supports_extension("auth"):
                    raise NotifyError("smtp_no_auth", retryable=False)
                await smtp.login(s.username, s.password or "")
            await smtp.send_message(message)
        finally:
            try:
                await smtp.quit()
            except (aiosmtplib.SMTPException, OSError, TimeoutError):
                smtp.close()

    async def close(self) -> None:
        """Nothing to release: each alert is its own short SMTP session."""


# --- 46elks ---------------------------------------------------------------------------


class ElksNotifier:
    """SMS and voice calls through 46elks's HTTP API (form-encoded POST, basic auth)."""

    def __init__(
        self,
        settings: PhoneSettings,
        *,
        public_base_url: str,
        webhook_secret: str,
        timeout: float = HTTP_TIMEOUT,
    ) -> None:
        self.settings = settings
        self.public_base_url = public_base_url.rstrip("/")
        self._secret = webhook_secret
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    def channels(self) -> frozenset[str]:
        return frozenset({"sms", "call"})

    def _client(self) -> aiohttp.ClientSession:
        # Made on first use: the session must be created inside the running loop.
        if self._session is None or self._session.closed:
            credentials = f"{self.settings.username}:{self.settings.password}".encode()
            self._session = aiohttp.ClientSession(
                headers={"Authorization": "Basic " + base64.b64encode(credentials).decode()},
                timeout=self._timeout,
            )
        return self._session

    async def send(self, channel: str, to: str, alert: Alert) -> None:
        if channel not in ("sms", "call"):
            raise NotifyError("channel_unavailable", retryable=False)
        number = _SEPARATORS.sub("", to)  # "+46 70-123 45 67" is fine; "070..." is not
        if not _E164.fullmatch(number):
            raise NotifyError("bad_number", retryable=False)
        form = {"from": self.settings.from_number, "to": number}
        if channel == "sms":
            form["message"] = alert_texts(alert)[2]
            await self._post(channel, "/sms", form)
        else:
            form["voice_start"] = voice_start_url(
                self.public_base_url, self._secret, alert.reference, alert.language
            )
            await self._post(channel, "/calls", form)

    async def _post(self, channel: str, path: str, form: dict[str, str]) -> dict[str, Any]:
        try:
            async with self._client().post(
                self.settings.url + path, data=form, allow_redirects=False
            ) as response:
                status = response.status
                # The body is read but never logged: it may echo the number and the text.
                body = await response.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("%s alert failed: %s", channel, type(exc).__name__)
            raise NotifyError("provider_unreachable", retryable=True) from None
        if not 200 <= status < 300:
            log.warning("%s alert failed: provider answered %s", channel, status)
            raise _status_error(status)
        try:
            answer = json.loads(body) if body else {}
        except ValueError:
            answer = {}
        if not isinstance(answer, dict):
            answer = {}
        log.info("%s alert accepted by the provider (id %s)", channel, answer.get("id", "?"))
        return answer

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def _status_error(status: int) -> NotifyError:
    """An HTTP answer other than 2xx, as the escalation engine needs to see it."""
    if status in (401, 403):
        return NotifyError("provider_auth", retryable=False)
    if status == 402:
        return NotifyError("provider_no_credit", retryable=False)
    if status in (408, 429):
        return NotifyError("provider_busy", retryable=True)
    if status >= 500:
        return NotifyError("provider_unavailable", retryable=True)
    return NotifyError("provider_refused", retryable=False)


# --- together -------------------------------------------------------------------------


class CompositeNotifier:
    """The configured channels behind one :class:`~handlers.notify.Notifier`."""

    def __init__(
        self,
        *,
        email: EmailNotifier | None,
        phone: ElksNotifier | None,
        acknowledge: Acknowledge,
        webhook_secret: str | None,
        public_base_url: str,
        fence: Callable[[], None] | None = None,
    ) -> None:
        self.email = email
        #: Asked before every send whether this process still holds the lease.
        self.fence = fence
        self.phone = phone
        self.acknowledge = acknowledge
        self.webhook_secret = webhook_secret
        self.public_base_url = public_base_url

    def channels(self) -> frozenset[str]:
        found: frozenset[str] = frozenset()
        for notifier in (self.email, self.phone):
            if notifier is not None:
                found |= notifier.channels()
        return found

    async def send(self, channel: str, to: str, alert: Alert) -> None:
        if self.fence is not None:
            self.fence()  # a fenced process sends no SMS, call or e-mail (bot.instance_lock)
        if channel == "email" and self.email is not None:
            await self.email.send(channel, to, alert)
        elif channel in ("sms", "call") and self.phone is not None:
            await self.phone.send(channel, to, alert)
        else:
            raise NotifyError("channel_unavailable", retryable=False)

    def add_routes(self, app: web.Application) -> None:
        """Add the call webhooks to the web app when calls are configured."""
        if self.phone is not None and self.webhook_secret:
            add_elks_routes(
                app,
                secret=self.webhook_secret,
                acknowledge=self.acknowledge,
                public_base_url=self.public_base_url,
            )

    async def close(self) -> None:
        for notifier in (self.email, self.phone):
            if notifier is not None:
                await notifier.close()


def webhook_secret(phone: PhoneSettings, data_dir: Path) -> str:
    """The configured secret, or one made once and kept in ``data_dir/keys`` (mode 0600)."""
    if phone.webhook_secret:
        return phone.webhook_secret
    path = data_dir / SECRET_FILE
    try:
        existing = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        existing = ""
    if existing:
        return existing
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    value = secrets.token_urlsafe(32)
    temporary = path.with_suffix(".tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="ascii") as handle:
        handle.write(value + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    return value


def build_notifier(
    settings: Settings,
    *,
    acknowledge: Acknowledge,
    data_dir: Path | None = None,
    fence: Callable[[], None] | None = None,
) -> CompositeNotifier:
    """The notifier for ``[notify.email]`` and ``[notify.phone]``; then, in the composition
    root, ``notifier.add_routes(app)`` after ``create_app`` and ``await notifier.close()``
    at shutdown."""
    folder = data_dir if data_dir is not None else settings.storage.data_dir
    base = settings.web.public_base_url.rstrip("/")
    email = EmailNotifier(settings.notify.email) if settings.notify.email else None
    phone: ElksNotifier | None = None
    secret: str | None = None
    if settings.notify.phone is not None:
        secret = webhook_secret(settings.notify.phone, folder)
        phone = ElksNotifier(settings.notify.phone, public_base_url=base, webhook_secret=secret)
    return CompositeNotifier(
        email=email,
        phone=phone,
        acknowledge=acknowledge,
        webhook_secret=secret,
        public_base_url=base,
        fence=fence,
    )
