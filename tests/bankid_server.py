"""A local stand-in for BankID's Relying Party API v6, over real mutual TLS.

It makes its own PKI (a server CA and a server certificate for 127.0.0.1 and
localhost; an RP client CA with a client certificate; a rogue client
certificate from another CA), refuses at TLS any client without a certificate
from its client CA, validates request bodies the way the real service does,
and plays a scripted :class:`Scenario` per order. Every request is recorded.

Deliberately like the real service: errors are ``{"errorCode", "details"}``;
``alreadyInProgress`` is HTTP 400 and also cancels the order already under way;
an order can be collected once after it ended and is gone after ``cancel``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import datetime as dt
import ipaddress
import json
import re
import secrets
import socket
import ssl
import uuid
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

API_PREFIX = "/rp/v6.0"
PENDING_HINTS = (
    "outstandingTransaction",
    "noClient",
    "started",
    "userMrtd",
    "userCallConfirm",
    "userSign",
)
FAILED_HINTS = (
    "expiredTransaction",
    "certificateErr",
    "userCancel",
    "cancelled",
    "startFailed",
    "userDeclinedCall",
    "notSupportedByUserApp",
    "transactionRiskBlocked",
)
_ORDER_KEYS = {
    "endUserIp",
    "requirement",
    "userVisibleData",
    "userNonVisibleData",
    "userVisibleDataFormat",
    "returnUrl",
    "returnRisk",
    "app",
    "web",
}
_REQUIREMENT_KEYS = {"pinCode", "mrtd", "cardReader", "certificatePolicies", "personalNumber"}
_PHONE_KEYS = {
    "personalNumber",
    "callInitiator",
    "requirement",
    "userVisibleData",
    "userNonVisibleData",
    "userVisibleDataFormat",
}


# --- the PKI -----------------------------------------------------------------


@dataclass(frozen=True)
class BankIdPki:
    directory: Path
    server_ca: Path  # what the RP trusts (BankIdSettings.ca_cert)
    server_cert: Path
    server_key: Path
    client_ca: Path  # what the server trusts
    client_cert: Path
    client_key: Path  # encrypted with client_key_password
    client_key_password: str
    client_combined: Path  # the client certificate and its unencrypted key in one PEM
    rogue_cert: Path  # a client certificate from a CA the server does not know
    rogue_key: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "SE"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Socialjour test"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _builder(subject: x509.Name, issuer: x509.Name, public_key: Any) -> x509.CertificateBuilder:
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )


def _make_ca(common_name: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name(common_name)
    usage = x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=True,
        crl_sign=True,
        encipher_only=False,
        decipher_only=False,
    )
    cert = (
        _builder(name, name, key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(usage, critical=True)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _issue(
    ca: tuple[ec.EllipticCurvePrivateKey, x509.Certificate],
    common_name: str,
    *,
    server: bool,
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    ca_key, ca_cert = ca
    key = ec.generate_private_key(ec.SECP256R1())
    usage = x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )
    purpose = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    builder = (
        _builder(_name(common_name), ca_cert.subject, key.public_key())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(usage, critical=True)
        .add_extension(x509.ExtendedKeyUsage([purpose]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
    )
    if server:
        names: list[x509.GeneralName] = [
            x509.DNSName("localhost"),
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        ]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return key, builder.sign(ca_key, hashes.SHA256())


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: ec.EllipticCurvePrivateKey, password: str | None = None) -> bytes:
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password.encode())
        if password
        else serialization.NoEncryption()
    )
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )


def make_pki(directory: Path) -> BankIdPki:
    """Write a fresh test PKI into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    server_ca = _make_ca("Test BankID server CA")
    server_key, server_cert = _issue(server_ca, "appapi.test.invalid", server=True)
    client_ca = _make_ca("Test BankID RP CA")
    client_key, client_cert = _issue(client_ca, "Socialjour RP", server=False)
    rogue_key, rogue_cert = _issue(_make_ca("Rogue CA"), "Rogue RP", server=False)
    password = secrets.token_urlsafe(12)
    files = {
        "server-ca.pem": _pem(server_ca[1]),
        "server.pem": _pem(server_cert),
        "server-key.pem": _key_pem(server_key),
        "client-ca.pem": _pem(client_ca[1]),
        "client.pem": _pem(client_cert),
        "client-key.pem": _key_pem(client_key, password),
        "client-combined.pem": _pem(client_cert) + _key_pem(client_key),
        "rogue.pem": _pem(rogue_cert),
        "rogue-key.pem": _key_pem(rogue_key),
    }
    for filename, data in files.items():
        (directory / filename).write_bytes(data)
    return BankIdPki(
        directory=directory,
        server_ca=directory / "server-ca.pem",
        server_cert=directory / "server.pem",
        server_key=directory / "server-key.pem",
        client_ca=directory / "client-ca.pem",
        client_cert=directory / "client.pem",
        client_key=directory / "client-key.pem",
        client_key_password=password,
        client_combined=directory / "client-combined.pem",
        rogue_cert=directory / "rogue.pem",
        rogue_key=directory / "rogue-key.pem",
    )


# --- scenarios and orders ----------------------------------------------------


@dataclass(frozen=True)
class BankIdUser:
    personal_number: str = "191212121212"
    given_name: str = "Tolvan"
    surname: str = "Tolvansson"

    @property
    def name(self) -> str:
        return f"{self.given_name} {self.surname}"


@dataclass(frozen=True)
class Scenario:
    """What one order does: one pending hint per collect, then the outcome.

    ``outcome`` is ``"complete"``, a failed hintCode, or ``"pending"`` (stays on
    the last hint until cancelled).
    """

    hints: tuple[str, ...] = ("outstandingTransaction", "userSign")
    outcome: str = "complete"
    user: BankIdUser = BankIdUser()
    tamper_signature: bool = False  # the signature carries another text than was sent

    @classmethod
    def failing(
        cls, hint: str, *, after: tuple[str, ...] = ("outstandingTransaction",)
    ) -> Scenario:
        return cls(hints=after, outcome=hint)

    @classmethod
    def forever(cls, hint: str = "outstandingTransaction") -> Scenario:
        return cls(hints=(hint,), outcome="pending")


@dataclass
class Order:
    order_ref: str
    endpoint: str
    body: dict[str, Any]
    personal_number: str | None
    scenario: Scenario
    qr_start_token: str = field(default_factory=lambda: str(uuid.uuid4()))
    qr_start_secret: str = field(default_factory=lambda: str(uuid.uuid4()))
    auto_start_token: str = field(default_factory=lambda: str(uuid.uuid4()))
    polls: int = 0
    ended_with: str | None = None  # a failed hintCode set from outside (e.g. "cancelled")
    gone: bool = False  # collected after it ended, or cancelled

    @property
    def pending(self) -> bool:
        return not self.gone and self.ended_with is None


@dataclass(frozen=True)
class Recorded:
    endpoint: str
    body: Any
    client_cn: str | None


class ApiError(Exception):
    def __init__(self, status: int, code: str, details: str) -> None:
        super().__init__(code)
        self.status, self.code, self.details = status, code, details


def _invalid(details: str) -> ApiError:
    return ApiError(400, "invalidParameters", details)


def _base64_text(body: dict[str, Any], key: str, limit: int) -> str | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not 1 <= len(value) <= limit:
        raise _invalid(f"Invalid {key}")
    try:
        return base64.b64decode(value, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise _invalid(f"Invalid {key}") from None


def _personal_number(value: Any, place: str) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"(19|20)\d{10}", value):
        raise _invalid(f"Invalid {place}")
    return value


def _requirement(body: dict[str, Any]) -> str | None:
    requirement = body.get("requirement")
    if requirement is None:
        return None
    if not isinstance(requirement, dict) or set(requirement) - _REQUIREMENT_KEYS:
        raise _invalid("Invalid requirement")
    for flag in ("pinCode", "mrtd"):
        if flag in requirement and not isinstance(requirement[flag], bool):
            raise _invalid(f"Invalid requirement.{flag}")
    if requirement.get("cardReader", "class1") not in ("class1", "class2"):
        raise _invalid("Invalid requirement.cardReader")
    if "personalNumber" not in requirement:
        return None
    return _personal_number(requirement["personalNumber"], "requirement.personalNumber")


def _signature_xml(order: Order) -> str:
    visible = order.body.get("userVisibleData", "")
    if order.scenario.tamper_signature:
        visible = base64.b64encode("Något helt annat".encode()).decode()
    hidden = order.body.get("userNonVisibleData", "")
    fake = base64.b64encode(secrets.token_bytes(64)).decode()
    return (
        '<?xml version="1.0" encoding="UTF-8" standalone="no"?>'
        '<Signature xmlns="http://www.w3.org/2000/09/xmldsig#">'
        f"<SignedInfo><SignatureMethod Algorithm="
        f'"http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256"/></SignedInfo>'
        f"<SignatureValue>{fake}</SignatureValue>"
        '<Object><bankIdSignedData xmlns="http://www.bankid.com/signature/v1.0.0/types" '
        'Id="bidSignedData">'
        f'<usrVisibleData charset="UTF-8" visible="wysiwys">{visible}</usrVisibleData>'
        f"<usrNonVisibleData>{hidden}</usrNonVisibleData>"
        "<srvInfo><name>Socialjour test</name>"
        f"<nonce>{secrets.token_hex(16)}</nonce></srvInfo>"
        "</bankIdSignedData></Object></Signature>"
    )


def _completion(order: Order) -> dict[str, Any]:
    user = order.scenario.user
    number = order.personal_number or user.personal_number
    return {
        "user": {
            "personalNumber": number,
            "name": user.name,
            "givenName": user.given_name,
            "surname": user.surname,
        },
        "device": {
            "ipAddress": order.body.get("endUserIp", "127.0.0.1"),
            "uhi": base64.urlsafe_b64encode(secrets.token_bytes(21)).decode(),
        },
        "bankIdIssueDate": "2024-03-11",
        "stepUp": {"mrtd": False},
        "signature": base64.b64encode(_signature_xml(order).encode()).decode(),
        "ocspResponse": base64.b64encode(b"\x30\x82" + secrets.token_bytes(300)).decode(),
    }


# --- the server --------------------------------------------------------------


class BankIdTestServer:
    """``async with BankIdTestServer(pki) as server:`` then ``server.url``."""

    def __init__(self, pki: BankIdPki, *, host: str = "127.0.0.1") -> None:
        self.pki = pki
        self.host = host
        self.port = 0
        self.default_scenario = Scenario()
        self.scenarios: deque[Scenario] = deque()
        self.orders: dict[str, Order] = {}
        self.requests: list[Recorded] = []
        self.expected_sha256: str | None = None  # userVisibleData must show this hash
        self.delay = 0.0  # seconds before each answer
        self._errors: dict[str, deque[ApiError]] = {}
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.port}{API_PREFIX}"

    def queue(self, *scenarios: Scenario) -> None:
        """Scenarios for the next orders, in order; then ``default_scenario``."""
        self.scenarios.extend(scenarios)

    def fail_next(self, endpoint: str, status: int, error_code: str, details: str = "") -> None:
        self._errors.setdefault(endpoint, deque()).append(ApiError(status, error_code, details))

    def recorded(self, endpoint: str) -> list[Recorded]:
        return [r for r in self.requests if r.endpoint == endpoint]

    def ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(
            ssl.Purpose.CLIENT_AUTH, cafile=str(self.pki.client_ca)
        )
        context.verify_mode = ssl.CERT_REQUIRED  # no client certificate, no connection
        context.load_cert_chain(str(self.pki.server_cert), str(self.pki.server_key))
        return context

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{path:.*}", self._dispatch)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind((self.host, 0))
        self.port = sock.getsockname()[1]
        site = web.SockSite(self._runner, sock, ssl_context=self.ssl_context())
        await site.start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> BankIdTestServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # --- request handling ----------------------------------------------------

    async def _dispatch(self, request: web.Request) -> web.Response:
        endpoint = request.path.removeprefix(API_PREFIX + "/")
        handlers = {
            "auth": self._order,
            "sign": self._order,
            "phone/auth": self._phone,
            "phone/sign": self._phone,
            "collect": self._collect,
            "cancel": self._cancel,
        }
        try:
            if not request.path.startswith(API_PREFIX + "/") or endpoint not in handlers:
                raise ApiError(404, "notFound", "No such resource")
            if request.method != "POST":
                raise ApiError(405, "methodNotAllowed", "Only POST is allowed")
            if request.content_type != "application/json" or request.charset:
                raise ApiError(415, "unsupportedMediaType", "Use Content-Type application/json")
            try:
                body = json.loads(await request.read())
            except ValueError:
                raise _invalid("Body is not JSON") from None
            self.requests.append(Recorded(endpoint, body, _client_cn(request)))
            if self.delay:
                await asyncio.sleep(self.delay)
            injected = self._errors.get(endpoint)
            if injected:
                raise injected.popleft()
            if not isinstance(body, dict):
                raise _invalid("Body is not a JSON object")
            return web.json_response(handlers[endpoint](endpoint, body))
        except ApiError as error:
            answer = {"errorCode": error.code, "details": error.details}
            return web.json_response(answer, status=error.status)

    def _new_order(self, endpoint: str, body: dict[str, Any], number: str | None) -> Order:
        if number is not None:
            for other in self.orders.values():
                if other.pending and other.personal_number == number:
                    other.ended_with = "cancelled"  # the real service aborts both
                    raise ApiError(400, "alreadyInProgress", "Order already in progress for pno")
        scenario = self.scenarios.popleft() if self.scenarios else self.default_scenario
        order = Order(str(uuid.uuid4()), endpoint, body, number, scenario)
        self.orders[order.order_ref] = order
        return order

    def _check_texts(self, endpoint: str, body: dict[str, Any]) -> None:
        visible = _base64_text(body, "userVisibleData", 40_000)
        _base64_text(body, "userNonVisibleData", 200_000)
        if endpoint.endswith("sign") and visible is None:
            raise _invalid("Missing userVisibleData")
        if body.get("userVisibleDataFormat", "plaintext") not in ("plaintext", "simpleMarkdownV1"):
            raise _invalid("Invalid userVisibleDataFormat")
        if endpoint.endswith("sign") and self.expected_sha256:
            shown = "".join((visible or "").split()).lower()
            if self.expected_sha256.lower() not in shown:
                raise _invalid("userVisibleData does not show the document hash")

    def _order(self, endpoint: str, body: dict[str, Any]) -> dict[str, Any]:
        unknown = set(body) - _ORDER_KEYS
        if unknown:
            raise _invalid(f"Unknown parameter {sorted(unknown)[0]}")
        ip = body.get("endUserIp")
        try:
            ipaddress.ip_address(ip if isinstance(ip, str) else "")
        except ValueError:
            raise _invalid("Invalid endUserIp") from None
        self._check_texts(endpoint, body)
        number = _requirement(body)
        order = self._new_order(endpoint, body, number)
        return {
            "orderRef": order.order_ref,
            "autoStartToken": order.auto_start_token,
            "qrStartToken": order.qr_start_token,
            "qrStartSecret": order.qr_start_secret,
        }

    def _phone(self, endpoint: str, body: dict[str, Any]) -> dict[str, Any]:
        unknown = set(body) - _PHONE_KEYS
        if unknown:
            raise _invalid(f"Unknown parameter {sorted(unknown)[0]}")
        number = _personal_number(body.get("personalNumber"), "personalNumber")
        if body.get("callInitiator") not in ("user", "RP"):
            raise _invalid("Invalid callInitiator")
        self._check_texts(endpoint, body)
        _requirement(body)
        return {"orderRef": self._new_order(endpoint, body, number).order_ref}

    def _known(self, body: dict[str, Any]) -> Order:
        ref = body.get("orderRef")
        order = self.orders.get(ref) if isinstance(ref, str) else None
        if order is None or order.gone:
            raise _invalid("No such order")
        return order

    def _collect(self, endpoint: str, body: dict[str, Any]) -> dict[str, Any]:
        order = self._known(body)
        answer: dict[str, Any] = {"orderRef": order.order_ref}
        if order.ended_with is not None:
            order.gone = True
            return {**answer, "status": "failed", "hintCode": order.ended_with}
        order.polls += 1
        hints, outcome = order.scenario.hints, order.scenario.outcome
        if order.polls <= len(hints) or outcome == "pending":
            hint = hints[min(order.polls, len(hints)) - 1] if hints else "outstandingTransaction"
            return {**answer, "status": "pending", "hintCode": hint}
        order.gone = True
        if outcome == "complete":
            return {**answer, "status": "complete", "completionData": _completion(order)}
        return {**answer, "status": "failed", "hintCode": outcome}

    def _cancel(self, endpoint: str, body: dict[str, Any]) -> dict[str, Any]:
        order = self._known(body)
        if not order.pending:
            raise _invalid("Order cannot be cancelled")
        order.gone = True
        return {}


def _client_cn(request: web.Request) -> str | None:
    transport = request.transport
    peer = transport.get_extra_info("peercert") if transport else None
    if not peer:
        return None
    for rdn in peer.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return None
