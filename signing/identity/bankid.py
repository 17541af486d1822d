"""BankID (Relying Party API v6) as an identification method for signing.

The decision-maker signs a short text in the BankID app that names the case and
the decision and carries the PDF's SHA-256, so the BankID signature and the
sealed PDF are bound to each other. The order is started on the server over
mutual TLS; the page then polls :meth:`BankIdProvider.check`, which collects
the order at most every ``collect_interval`` seconds and hands the page a fresh
animated QR code every time.

Personal numbers and completion data are never logged: only order references,
hint codes and error codes are.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import re
import ssl
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import aiohttp

from config.settings import BankIdSettings
from signing.identity.base import (
    CheckResult,
    Done,
    Failed,
    Identity,
    Pending,
    SigningContext,
    Started,
)
from signing.identity.qr import qr_svg

__all__ = [
    "BANKID_MESSAGES",
    "ERROR_CODES",
    "FAILED_HINTS",
    "PENDING_HINTS",
    "BankIdError",
    "BankIdProvider",
    "bankid_message",
    "qr_data",
    "user_visible_text",
]

log = logging.getLogger(__name__)

# hintCode of a pending order -> message key.
PENDING_HINTS: Mapping[str, str] = {
    "outstandingTransaction": "bankid.start_app",
    "noClient": "bankid.start_app",
    "started": "bankid.searching",
    "userMrtd": "bankid.scan_id_document",
    "userCallConfirm": "bankid.confirm_call",
    "userSign": "bankid.enter_security_code",
}
PENDING_UNKNOWN = "bankid.in_progress"

# hintCode of a failed order -> (message key, may a new order help?).
FAILED_HINTS: Mapping[str, tuple[str, bool]] = {
    "userCancel": ("bankid.user_cancelled", True),
    "cancelled": ("bankid.cancelled", True),
    "expiredTransaction": ("bankid.expired", True),
    "certificateErr": ("bankid.certificate_error", True),
    "startFailed": ("bankid.start_failed", True),
    "userDeclinedCall": ("bankid.call_declined", True),
    "notSupportedByUserApp": ("bankid.update_app", True),
    "transactionRiskBlocked": ("bankid.risk_blocked", False),
}

# errorCode of an HTTP error -> (message key, may a new order help?). The codes that
# mean our own request or setup is wrong are not shown to the user as BankID errors.
ERROR_CODES: Mapping[str, tuple[str, bool]] = {
    "alreadyInProgress": ("bankid.already_in_progress", True),
    "invalidParameters": ("bankid.service_error", False),
    "unauthorized": ("bankid.service_error", False),
    "notFound": ("bankid.service_error", False),
    "methodNotAllowed": ("bankid.service_error", False),
    "unsupportedMediaType": ("bankid.service_error", False),
    "requestTimeout": ("bankid.internal_error", True),
    "internalError": ("bankid.internal_error", True),
    "maintenance": ("bankid.maintenance", True),
    "tooManyRequests": ("bankid.busy", True),
}
UNKNOWN_ERROR = "bankid.unknown_error"

# The user messages, in the spirit of BankID's recommended messages (RFA1-RFA23).
BANKID_MESSAGES: Mapping[str, Mapping[str, str]] = {
    "sv": {
        "bankid.start_app": "Öppna BankID-appen.",
        "bankid.starting_app": "BankID-appen öppnas …",
        "bankid.searching": "Letar efter ditt BankID. Det kan ta en liten stund.",
        "bankid.scan_id_document": "Läs av din id-handling med BankID-appen.",
        "bankid.confirm_call": "Bekräfta i BankID-appen att du pratar med oss i telefon.",
        "bankid.enter_security_code": (
            "Skriv din säkerhetskod i BankID-appen och välj Skriv under."
        ),
        "bankid.in_progress": "Underskrift med BankID pågår.",
        "bankid.user_cancelled": "Du avbröt i BankID-appen.",
        "bankid.cancelled": "Underskriften avbröts. Försök igen.",
        "bankid.expired": (
            "BankID-appen svarade inte i tid. Kontrollera att appen är öppen och att "
            "du har internet, och försök igen."
        ),
        "bankid.certificate_error": (
            "Ditt BankID är spärrat eller för gammalt. Använd ett annat BankID eller "
            "skaffa ett nytt hos din bank."
        ),
        "bankid.start_failed": (
            "BankID-appen startade inte. Kontrollera att den är installerad och "
            "uppdaterad, och försök igen."
        ),
        "bankid.start_failed_qr": (
            "QR-koden kunde inte läsas. Öppna BankID-appen, skanna koden igen och se "
            "till att appen är uppdaterad."
        ),
        "bankid.call_declined": (
            "Avbrutet: du angav i appen att du inte pratar med oss i telefon."
        ),
        "bankid.update_app": "Uppdatera BankID-appen och försök igen.",
        "bankid.risk_blocked": (
            "BankID stoppade underskriften av säkerhetsskäl. Kontakta din bank om du har frågor."
        ),
        "bankid.already_in_progress": (
            "Du har redan en identifiering eller underskrift på gång. Avsluta den i "
            "BankID-appen och försök igen."
        ),
        "bankid.internal_error": "Tekniskt fel hos BankID. Försök igen.",
        "bankid.maintenance": "BankID har en tillfällig störning. Försök igen om en stund.",
        "bankid.busy": "BankID är hårt belastat just nu. Försök igen om en stund.",
        "bankid.unreachable": "Vi får inte kontakt med BankID. Försök igen om en stund.",
        "bankid.service_error": (
            "Ett tekniskt fel i tjänsten. Säg till den som skickade länken om det händer igen."
        ),
        "bankid.signature_mismatch": (
            "Underskriften stämde inte med beslutet och godtogs inte. Säg till den som "
            "skickade länken."
        ),
        "bankid.unknown_error": "Något gick fel. Försök igen.",
        "bankid.open_app": "Öppna BankID",
        "bankid.scan_qr": (
            "Öppna BankID-appen på en annan enhet, tryck på QR-symbolen och skanna koden."
        ),
    },
    "en": {
        "bankid.start_app": "Open the BankID app.",
        "bankid.starting_app": "Opening the BankID app …",
        "bankid.searching": "Looking for your BankID. This may take a moment.",
        "bankid.scan_id_document": "Scan your ID document with the BankID app.",
        "bankid.confirm_call": "Confirm in the BankID app that you are on the phone with us.",
        "bankid.enter_security_code": "Enter your security code in the BankID app and choose Sign.",
        "bankid.in_progress": "Signing with BankID in progress.",
        "bankid.user_cancelled": "You cancelled in the BankID app.",
        "bankid.cancelled": "The signing was cancelled. Please try again.",
        "bankid.expired": (
            "The BankID app did not answer in time. Check that the app is open and that "
            "you are online, then try again."
        ),
        "bankid.certificate_error": (
            "Your BankID is blocked or too old. Use another BankID or get a new one from your bank."
        ),
        "bankid.start_failed": (
            "The BankID app did not start. Check that it is installed and up to date, "
            "then try again."
        ),
        "bankid.start_failed_qr": (
            "The QR code could not be read. Open the BankID app, scan the code again and "
            "make sure the app is up to date."
        ),
        "bankid.call_declined": (
            "Cancelled: you said in the app that you are not on the phone with us."
        ),
        "bankid.update_app": "Update the BankID app and try again.",
        "bankid.risk_blocked": (
            "BankID stopped the signing for security reasons. Contact your bank if you "
            "have questions."
        ),
        "bankid.already_in_progress": (
            "You already have an identification or signing under way. Finish it in the "
            "BankID app and try again."
        ),
        "bankid.internal_error": "Technical error at BankID. Please try again.",
        "bankid.maintenance": "BankID is temporarily unavailable. Try again in a while.",
        "bankid.busy": "BankID is very busy right now. Try again in a while.",
        "bankid.unreachable": "We cannot reach BankID. Try again in a while.",
        "bankid.service_error": (
            "A technical error in the service. Tell whoever sent you the link if it happens again."
        ),
        "bankid.signature_mismatch": (
            "The signature did not match the decision and was not accepted. Tell whoever "
            "sent you the link."
        ),
        "bankid.unknown_error": "Something went wrong. Please try again.",
        "bankid.open_app": "Open BankID",
        "bankid.scan_qr": (
            "Open the BankID app on another device, tap the QR symbol and scan the code."
        ),
    },
}

# Our own failure codes, beside BankID's.
UNREACHABLE = "unreachable"
BAD_RESPONSE = "badResponse"
SIGNATURE_MISMATCH = "signatureMismatch"

_STATUS_ERRORS = {
    400: "invalidParameters",
    401: "unauthorized",
    403: "unauthorized",
    404: "notFound",
    405: "methodNotAllowed",
    408: "requestTimeout",
    415: "unsupportedMediaType",
    429: "tooManyRequests",
    500: "internalError",
    503: "maintenance",
}

_TEXTS = {
    "sv": (
        "Underteckna beslut",
        "Ärende",
        "Beslut",
        "Genom att skriva under fattar du beslutet i dokumentet med denna kontrollsumma (SHA-256):",
    ),
    "en": (
        "Sign decision",
        "Case",
        "Decision",
        "By signing you make the decision in the document with this checksum (SHA-256):",
    ),
}
_MARKDOWN_SPECIALS = re.compile(r"([\\*#|])")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_SIGNED_ELEMENT = r"<(?:[\w.-]+:)?{name}\b[^>]*>([^<]*)</(?:[\w.-]+:)?{name}>"


def bankid_message(key: str, language: str) -> str:
    """The user message for ``key``; Swedish when the language is not known."""
    messages = BANKID_MESSAGES.get(language, BANKID_MESSAGES["sv"])
    return messages.get(key, messages[UNKNOWN_ERROR])


def qr_data(qr_start_token: str, qr_start_secret: str, seconds: int) -> str:
    """The animated QR string for ``seconds`` whole seconds after the order started."""
    auth_code = hmac.new(
        qr_start_secret.encode("ascii"), str(seconds).encode("ascii"), hashlib.sha256
    ).hexdigest()
    return f"bankid.{qr_start_token}.{seconds}.{auth_code}"


def _grouped_hash(sha256_hex: str) -> list[str]:
    """The hash in lines of four groups of four, short enough for a phone."""
    groups = [sha256_hex[i : i + 4] for i in range(0, len(sha256_hex), 4)]
    return [" ".join(groups[i : i + 4]) for i in range(0, len(groups), 4)]


def _escape(text: str) -> str:
    """Keep user text literal in simpleMarkdownV1 (one line, specials escaped)."""
    return _MARKDOWN_SPECIALS.sub(r"\\\1", " ".join(text.split()))


def user_visible_text(ctx: SigningContext) -> str:
    """The simpleMarkdownV1 text the signer reads and signs in the BankID app."""
    sha256_hex = ctx.document_sha256.lower()
    if not _HEX64.fullmatch(sha256_hex):
        raise ValueError("document_sha256 must be 64 hex digits")
    title, case, decision, binding = _TEXTS.get(ctx.language, _TEXTS["sv"])
    return "\n".join(
        [
            f"# {title}",
            "",
            f"{case}: *{_escape(ctx.case_number)}*",
            f"{decision}: *{_escape(ctx.decision_type)}*",
            "",
            binding,
            "",
            *_grouped_hash(sha256_hex),
        ]
    )


def _non_visible_data(ctx: SigningContext) -> str:
    """Binds the order to this signing request and document, invisibly."""
    payload = {"v": 1, "request": ctx.request_id, "sha256": ctx.document_sha256.lower()}
    return json.dumps(payload, separators=(",", ":"), sort_keys=True)


def _b64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def _normalised_personal_number(value: Any) -> str | None:
    """BankID's twelve digits as YYYYMMDD-NNNN; None if it is not twelve digits."""
    if not isinstance(value, str) or not re.fullmatch(r"\d{12}", value):
        return None
    return f"{value[:8]}-{value[8:]}"


def _signed_element(signature_xml: str, name: str) -> str | None:
    match = re.search(_SIGNED_ELEMENT.format(name=name), signature_xml)
    return "".join(match.group(1).split()) if match else None


def _signature_binds(signature_b64: Any, state: Mapping[str, Any]) -> bool:
    """Does BankID's signature carry exactly the texts this order sent?"""
    if not isinstance(signature_b64, str):
        return False
    try:
        xml = base64.b64decode(signature_b64, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return False
    visible = _signed_element(xml, "usrVisibleData")
    hidden = _signed_element(xml, "usrNonVisibleData")
    return (
        visible is not None
        and hidden is not None
        and hmac.compare_digest(_digest(visible), str(state.get("visible_sha256", "")))
        and hmac.compare_digest(_digest(hidden), str(state.get("non_visible_sha256", "")))
    )


class BankIdError(Exception):
    """An order that cannot go on; :attr:`failed` is what the page shows."""

    def __init__(self, code: str, message_key: str, *, retry: bool = True) -> None:
        super().__init__(code)
        self.code = code
        self.message_key = message_key
        self.retry = retry

    @property
    def failed(self) -> Failed:
        return Failed(code=self.code, message_key=self.message_key, retry=self.retry)


def _api_error(code: str) -> BankIdError:
    key, retry = ERROR_CODES.get(code, (UNKNOWN_ERROR, True))
    return BankIdError(code, key, retry=retry)


def _bad_response() -> BankIdError:
    return BankIdError(BAD_RESPONSE, "bankid.service_error")


def client_ssl_context(settings: BankIdSettings) -> ssl.SSLContext:
    """Mutual TLS: our RP certificate, and the configured CA as the only trust anchor."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(settings.ca_cert))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = True
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_cert_chain(
        certfile=str(settings.client_cert),
        keyfile=str(settings.client_key) if settings.client_key else None,
        password=settings.client_key_password,
    )
    return context


class BankIdProvider:
    """The BankID sign flow: start an order, collect it with an animated QR, cancel it.

    ``check`` understands one optional parameter from the page, ``mode``:
    ``"autostart"`` when the page opened the app on this device, ``"qr"`` when
    the user scans the code with another device; it only chooses the message.
    """

    method = "bankid"

    def __init__(
        self,
        settings: BankIdSettings,
        *,
        timeout: float = 10.0,
        collect_interval: float = 2.0,
        require_pin_code: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._base_url = settings.url.rstrip("/")
        self._ssl = client_ssl_context(settings)
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._collect_interval = collect_interval
        self._require_pin_code = require_pin_code
        self._clock = clock
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> BankIdProvider:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self._ssl),
                timeout=self._timeout,
                headers={"Accept": "application/json"},
            )
        return self._session

    async def _post(self, endpoint: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """One API call: its JSON answer; raises :class:`BankIdError`."""
        try:
            async with self._client().post(
                f"{self._base_url}/{endpoint}",
                data=json.dumps(body).encode("utf-8"),
                headers={"Content-Type": "application/json"},
            ) as response:
                status, raw = response.status, await response.read()
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            log.warning("BankID %s unreachable: %s: %s", endpoint, type(exc).__name__, exc)
            raise BankIdError(UNREACHABLE, "bankid.unreachable") from exc
        try:
            answer = json.loads(raw) if raw else {}
        except ValueError:
            answer = None
        if status != 200:
            code = answer.get("errorCode") if isinstance(answer, dict) else None
            if not isinstance(code, str) or not code:
                code = _STATUS_ERRORS.get(status, "unknown")
            # "details" may name the user: never logged.
            log.warning("BankID %s replied HTTP %s %s", endpoint, status, code)
            raise _api_error(code)
        if not isinstance(answer, dict):
            log.warning("BankID %s replied with something that is not a JSON object", endpoint)
            raise _bad_response()
        return answer

    def _qr_page(self, state: Mapping[str, Any]) -> dict[str, str]:
        seconds = max(0, int(self._clock() - float(state["started_at"])))
        text = qr_data(str(state["qrStartToken"]), str(state["qrStartSecret"]), seconds)
        return {"qr": text, "qr_svg": qr_svg(text)}

    def _sign_request(self, ctx: SigningContext) -> dict[str, Any]:
        body: dict[str, Any] = {
            "endUserIp": ctx.end_user_ip,
            "userVisibleData": _b64(user_visible_text(ctx)),
            "userVisibleDataFormat": "simpleMarkdownV1",
            "userNonVisibleData": _b64(_non_visible_data(ctx)),
        }
        requirement: dict[str, Any] = {}
        digits = re.sub(r"\D", "", ctx.signer_personal_number or "")
        if len(digits) == 12:
            requirement["personalNumber"] = digits
        elif ctx.signer_personal_number:
            log.warning("signer's personal number is not 12 digits; order not restricted")
        if self._require_pin_code:
            requirement["pinCode"] = True
        if requirement:
            body["requirement"] = requirement
        return body

    async def start(self, ctx: SigningContext) -> Started:
        """Open a sign order; raises :class:`BankIdError` (its ``failed`` for the page)."""
        body = self._sign_request(ctx)
        answer = await self._post("sign", body)
        try:
            state: dict[str, Any] = {
                "orderRef": str(answer["orderRef"]),
                "qrStartToken": str(answer["qrStartToken"]),
                "qrStartSecret": str(answer["qrStartSecret"]),
                "started_at": self._clock(),
                "visible_sha256": _digest(body["userVisibleData"]),
                "non_visible_sha256": _digest(body["userNonVisibleData"]),
            }
            auto_start_token = str(answer["autoStartToken"])
        except KeyError:
            log.warning("BankID sign reply lacks a field")
            raise _bad_response() from None
        log.info("BankID order %s started for request %s", state["orderRef"], ctx.request_id)
        page = {
            "autoStartToken": auto_start_token,
            "autostart_url": (
                f"https://app.bankid.com/?autostarttoken={auto_start_token}&redirect=null"
            ),
            **self._qr_page(state),
        }
        return Started(page=page, state=state)

    async def check(
        self, ctx: SigningContext, state: Mapping[str, Any], params: Mapping[str, Any]
    ) -> CheckResult:
        mode = params.get("mode")
        last = state.get("collected_at")
        if isinstance(last, int | float) and self._clock() - last < self._collect_interval:
            # Too soon to ask BankID again: only the QR code moves on.
            hint = str(state.get("hint_key", PENDING_UNKNOWN))
            return Pending(hint=hint, page=self._qr_page(state))
        order_ref = str(state["orderRef"])
        try:
            answer = await self._post("collect", {"orderRef": order_ref})
        except BankIdError as error:
            return error.failed
        status, hint = answer.get("status"), str(answer.get("hintCode", ""))
        if status == "pending":
            key = PENDING_HINTS.get(hint, PENDING_UNKNOWN)
            if hint == "outstandingTransaction" and mode == "autostart":
                key = "bankid.starting_app"
            new_state = {**state, "collected_at": self._clock(), "hint_key": key}
            return Pending(hint=key, page=self._qr_page(state), state=new_state)
        if status == "failed":
            key, retry = FAILED_HINTS.get(hint, (UNKNOWN_ERROR, True))
            if hint == "startFailed" and mode == "qr":
                key = "bankid.start_failed_qr"
            log.info("BankID order %s failed: %s", order_ref, hint or "no hintCode")
            return Failed(code=hint or "unknown", message_key=key, retry=retry)
        if status == "complete":
            return self._complete(order_ref, state, answer.get("completionData"))
        log.warning("BankID order %s has an unknown status", order_ref)
        return _bad_response().failed

    def _complete(self, order_ref: str, state: Mapping[str, Any], data: Any) -> CheckResult:
        user = data.get("user") if isinstance(data, dict) else None
        if not isinstance(user, dict):
            user = {}
        number = _normalised_personal_number(user.get("personalNumber"))
        if not isinstance(data, dict) or number is None:
            log.warning("BankID order %s completed without usable user data", order_ref)
            return _bad_response().failed
        if not _signature_binds(data.get("signature"), state):
            log.error("BankID order %s: signature does not carry the texts sent", order_ref)
            return BankIdError(SIGNATURE_MISMATCH, "bankid.signature_mismatch", retry=False).failed
        log.info("BankID order %s complete", order_ref)
        name = user.get("name")
        return Done(
            Identity(
                method=self.method,
                subject=number,
                name=name if isinstance(name, str) else None,
                personal_number=number,
                at=datetime.now(UTC),
                evidence={"orderRef": order_ref, "completionData": data},
            )
        )

    async def cancel(self, ctx: SigningContext, state: Mapping[str, Any]) -> None:
        """Best effort: an order that is gone or unreachable is simply left to expire."""
        order_ref = state.get("orderRef")
        if not order_ref:
            return
        try:
            await self._post("cancel", {"orderRef": str(order_ref)})
        except BankIdError as error:
            log.info("BankID order %s not cancelled: %s", order_ref, error.code)
        else:
            log.info("BankID order %s cancelled", order_ref)
