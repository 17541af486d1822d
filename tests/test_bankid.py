"""BankID sign orders against a local RP API v6 over real mutual TLS on loopback."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import re
import ssl
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from config.settings import BankIdSettings
from signing.identity.bankid import (
    BANKID_MESSAGES,
    ERROR_CODES,
    FAILED_HINTS,
    PENDING_HINTS,
    BankIdError,
    BankIdProvider,
    bankid_message,
    client_ssl_context,
)
from signing.identity.base import (
    Done,
    Failed,
    IdentityProvider,
    Pending,
    SigningContext,
    Started,
)
from signing.identity.qr import qr_svg
from tests.bankid_server import BankIdPki, BankIdTestServer, Scenario, make_pki

DOCUMENT = b"%PDF-1.7 beslut om omedelbart omhandertagande"
SHA256 = hashlib.sha256(DOCUMENT).hexdigest()
PERSONAL_NUMBER = "19121212-1212"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> BankIdPki:
    return make_pki(tmp_path_factory.mktemp("bankid-pki"))


@pytest.fixture
async def server(pki: BankIdPki) -> AsyncIterator[BankIdTestServer]:
    async with BankIdTestServer(pki) as running:
        running.expected_sha256 = SHA256
        yield running


def settings_for(pki: BankIdPki, url: str, **changes: Any) -> BankIdSettings:
    settings = BankIdSettings(
        url=url,
        client_cert=pki.client_cert,
        client_key=pki.client_key,
        ca_cert=pki.server_ca,
        client_key_password=pki.client_key_password,
    )
    return replace(settings, **changes)


@pytest.fixture
async def provider(pki: BankIdPki, server: BankIdTestServer) -> AsyncIterator[BankIdProvider]:
    async with BankIdProvider(settings_for(pki, server.url), collect_interval=0) as bankid:
        yield bankid


@pytest.fixture
def ctx() -> SigningContext:
    return SigningContext(
        request_id="req-7f3a",
        case_number="SJ-2026-0042",
        decision_type="Omedelbart omhändertagande enligt 6 § LVU",
        document_sha256=SHA256,
        signer_user_id="@ordforande:example.org",
        signer_name="Tolvan Tolvansson",
        signer_personal_number=PERSONAL_NUMBER,
        language="sv",
        end_user_ip="127.0.0.1",
        public_base_url="https://signera.example.org",
    )


def b64_text(value: str) -> str:
    return base64.b64decode(value).decode("utf-8")


def parse_qr(text: str) -> tuple[str, int, str]:
    match = re.fullmatch(r"bankid\.([0-9a-f-]{36})\.(\d+)\.([0-9a-f]{64})", text)
    assert match, text
    return match.group(1), int(match.group(2)), match.group(3)


# --- a whole order -------------------------------------------------------------


async def test_whole_order_to_completion(
    provider: BankIdProvider, server: BankIdTestServer, ctx: SigningContext
) -> None:
    server.queue(Scenario(hints=("outstandingTransaction", "userSign")))
    started = await provider.start(ctx)

    assert isinstance(started, Started)
    assert set(started.page) >= {"autoStartToken", "qr", "qr_svg"}
    assert started.page["autostart_url"].startswith("https://app.bankid.com/?autostarttoken=")
    assert set(started.state) >= {"orderRef", "qrStartToken", "qrStartSecret", "started_at"}
    assert "qrStartSecret" not in json.dumps(started.page)
    json.dumps(dict(started.state))  # the web app stores it

    first = await provider.check(ctx, started.state, {})
    assert isinstance(first, Pending) and first.hint == "bankid.start_app"
    second = await provider.check(ctx, first.state or started.state, {})
    assert isinstance(second, Pending) and second.hint == "bankid.enter_security_code"
    done = await provider.check(ctx, second.state or started.state, {})

    assert isinstance(done, Done)
    identity = done.identity
    assert identity.method == "bankid"
    assert identity.personal_number == PERSONAL_NUMBER
    assert identity.subject == PERSONAL_NUMBER
    assert identity.name == "Tolvan Tolvansson"
    assert identity.matches(ctx)
    assert not identity.matches(replace(ctx, signer_personal_number="19800101-0000"))
    assert not identity.matches(replace(ctx, signer_personal_number=None))
    evidence = identity.evidence
    assert evidence["orderRef"] == started.state["orderRef"]
    completion = evidence["completionData"]
    assert completion["user"]["personalNumber"] == "191212121212"
    assert completion["user"]["givenName"] == "Tolvan"
    assert completion["device"]["ipAddress"] == "127.0.0.1"
    assert set(completion) >= {"bankIdIssueDate", "stepUp", "signature", "ocspResponse"}
    json.dumps(dict(evidence))  # kept with the signed document

    (sign,) = server.recorded("sign")
    assert sign.client_cn == "Socialjour RP"  # mutual TLS carried our certificate
    body = sign.body
    assert body["endUserIp"] == "127.0.0.1"
    assert body["userVisibleDataFormat"] == "simpleMarkdownV1"
    assert body["requirement"] == {"personalNumber": "191212121212"}
    text = b64_text(body["userVisibleData"])
    assert "SJ-2026-0042" in text
    assert "Omedelbart omhändertagande enligt 6 § LVU" in text
    assert SHA256 in "".join(text.split())
    assert SHA256[:4] + " " + SHA256[4:8] in text  # grouped for reading
    assert json.loads(b64_text(body["userNonVisibleData"])) == {
        "v": 1,
        "request": "req-7f3a",
        "sha256": SHA256,
    }
    assert [r.body for r in server.recorded("collect")] == [
        {"orderRef": started.state["orderRef"]}
    ] * 3


async def test_english_text_and_markdown_escaped(
    provider: BankIdProvider, server: BankIdTestServer, ctx: SigningContext
) -> None:
    english = replace(ctx, language="en", decision_type="Urgent *decision* # | 2")
    await provider.start(english)
    text = b64_text(server.recorded("sign")[0].body["userVisibleData"])
    assert text.startswith("# Sign decision\n")
    assert r"Decision: *Urgent \*decision\* \# \| 2*" in text


async def test_logs_hold_no_personal_data(
    provider: BankIdProvider,
    server: BankIdTestServer,
    ctx: SigningContext,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    server.queue(Scenario(hints=()))
    started = await provider.start(ctx)
    assert isinstance(await provider.check(ctx, started.state, {}), Done)
    logged = caplog.text
    assert started.state["orderRef"] in logged
    for secret in ("191212121212", PERSONAL_NUMBER, "Tolvansson", "signature"):
        assert secret not in logged


# --- hints, failures, errors -----------------------------------------------------


@pytest.mark.parametrize(
    ("hint", "key", "swedish"),
    [
        ("outstandingTransaction", "bankid.start_app", "Öppna BankID-appen."),
        ("noClient", "bankid.start_app", "Öppna BankID-appen."),
        ("started", "bankid.searching", "Letar efter ditt BankID"),
        ("userMrtd", "bankid.scan_id_document", "id-handling"),
        ("userCallConfirm", "bankid.confirm_call", "telefon"),
        ("userSign", "bankid.enter_security_code", "säkerhetskod"),
        ("someNewHint", "bankid.in_progress", "pågår"),
    ],
)
async def test_pending_hints_map_to_swedish_messages(
    provider: BankIdProvider,
    server: BankIdTestServer,
    ctx: SigningContext,
    hint: str,
    key: str,
    swedish: str,
) -> None:
    server.queue(Scenario.forever(hint))
    started = await provider.start(ctx)
    result = await provider.check(ctx, started.state, {})
    assert isinstance(result, Pending)
    assert result.hint == key
    assert swedish in bankid_message(key, "sv")
    assert result.page["qr"].startswith("bankid.")
    assert result.page["qr_svg"].startswith("<svg")


async def test_autostart_mode_says_the_app_is_opening(
    provider: BankIdProvider, server: BankIdTestServer, ctx: SigningContext
) -> None:
    server.queue(Scenario.forever())
    started = await provider.start(ctx)
    result = await provider.check(ctx, started.state, {"mode": "autostart"})
    assert isinstance(result, Pending) and result.hint == "bankid.starting_app"
    assert bankid_message(result.hint, "en") == "Opening the BankID app …"


@pytest.mark.parametrize(
    ("hint", "mode", "key", "retry", "swedish"),
    [
        ("userCancel", None, "bankid.user_cancelled", True, "Du avbröt"),
        ("expiredTransaction", None, "bankid.expired", True, "svarade inte i tid"),
        ("startFailed", None, "bankid.start_failed", True, "startade inte"),
        ("startFailed", "qr", "bankid.start_failed_qr", True, "QR-koden kunde inte läsas"),
        ("certificateErr", None, "bankid.certificate_error", True, "spärrat"),
        ("cancelled", None, "bankid.cancelled", True, "avbröts"),
        ("userDeclinedCall", None, "bankid.call_declined", True, "telefon"),
        ("notSupportedByUserApp", None, "bankid.update_app", True, "Uppdatera"),
        ("transactionRiskBlocked", None, "bankid.risk_blocked", False, "säkerhetsskäl"),
        ("brandNewFailure", None, "bankid.unknown_error", True, "Något gick fel"),
    ],
)
async def test_failed_orders(
    provider: BankIdProvider,
    server: BankIdTestServer,
    ctx: SigningContext,
    hint: str,
    mode: str | None,
    key: str,
    retry: bool,
    swedish: str,
) -> None:
    server.queue(Scenario.failing(hint))
    started = await provider.start(ctx)
    params = {"mode": mode} if mode else {}
    assert isinstance(await provider.check(ctx, started.state, params), Pending)
    result = await provider.check(ctx, started.state, params)
    assert result == Failed(code=hint, message_key=key, retry=retry)
    assert swedish in bankid_message(key, "sv")


async def test_already_in_progress(
    provider: BankIdProvider, server: BankIdTestServer, ctx: SigningContext
) -> None:
    server.queue(Scenario.forever(), Scenario.forever())
    first = await provider.start(ctx)
    with pytest.raises(BankIdError) as raised:
        await provider.start(replace(ctx, request_id="req-second"))
    assert raised.value.failed == Failed("alreadyInProgress", "bankid.already_in_progress", True)
    assert "redan" in bankid_message("bankid.already_in_progress", "sv")
    # Like the real service, the order already under way is aborted too.
    result = await provider.check(ctx, first.state, {})
    assert result == Failed("cancelled", "bankid.cancelled", True)


async def test_request_bodies_are_validated(
    provider: BankIdProvider, server: BankIdTestServer, ctx: SigningContext
) -> None:
    with pytest.raises(BankIdError) as raised:
        await provider.start(replace(ctx, end_user_ip=""))
    assert raised.value.failed == Failed("invalidParameters", "bankid.service_error", False)

    server.expected_sha256 = "0" * 64  # not the hash the text shows
    with pytest.raises(BankIdError) as raised:
        await provider.start(ctx)
    assert raised.value.code == "invalidParameters"

    unknown = {"orderRef": "00000000-0000-0000-0000-000000000000", "started_at": time.time()}
    unknown |= {"qrStartToken": "t", "qrStartSecret": "s"}
    result = await provider.check(ctx, unknown, {})
    assert result == Failed("invalidParameters", "bankid.service_error", False)


async def test_raw_api_answers_like_the_real_one(pki: BankIdPki, server: BankIdTestServer) -> None:
    server.expected_sha256 = None
    ssl_context = client_ssl_context(settings_for(pki, server.url))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ssl_context)) as http:

        async def post(endpoint: str, body: Any, **kw: Any) -> tuple[int, Any]:
            kw.setdefault("json", body)
            async with http.post(f"{server.url}/{endpoint}", **kw) as response:
                return response.status, await response.json()

        assert await post("sign", {"userVisibleData": "SGVq"}) == (
            400,
            {"errorCode": "invalidParameters", "details": "Invalid endUserIp"},
        )
        status, answer = await post("auth", {"endUserIp": "127.0.0.1", "personalNumber": "1"})
        assert (status, answer["errorCode"]) == (400, "invalidParameters")  # v6: in requirement
        status, answer = await post("collect", {"orderRef": "nope"})
        assert (status, answer) == (
            400,
            {"errorCode": "invalidParameters", "details": "No such order"},
        )
        status, answer = await post(
            "collect", None, data=b"{}", headers={"Content-Type": "text/plain"}
        )
        assert (status, answer["errorCode"]) == (415, "unsupportedMediaType")
        status, answer = await post("nothing", {})
        assert (status, answer["errorCode"]) == (404, "notFound")

        status, answer = await post("auth", {"endUserIp": "::1"})
        assert status == 200 and set(answer) == {
            "orderRef",
            "autoStartToken",
            "qrStartToken",
            "qrStartSecret",
        }
        server.queue(Scenario.forever("userCallConfirm"))
        body = {"personalNumber": "191212121212", "callInitiator": "RP"}
        status, answer = await post("phone/sign", body | {"userVisibleData": "SGVq"})
        assert status == 200 and set(answer) == {"orderRef"}
        status, collected = await post("collect", {"orderRef": answer["orderRef"]})
        assert collected["hintCode"] == "userCallConfirm"
        status, answer = await post("phone/auth", body | {"callInitiator": "nobody"})
        assert (status, answer["errorCode"]) == (400, "invalidParameters")


@pytest.mark.parametrize(
    ("status", "code", "key", "retry"),
    [
        (503, "maintenance", "bankid.maintenance", True),
        (500, "internalError", "bankid.internal_error", True),
        (408, "requestTimeout", "bankid.internal_error", True),
        (429, "tooManyRequests", "bankid.busy", True),
        (401, "unauthorized", "bankid.service_error", False),
        (400, "somethingNew", "bankid.unknown_error", True),
    ],
)
async def test_http_errors(
    provider: BankIdProvider,
    server: BankIdTestServer,
    ctx: SigningContext,
    status: int,
    code: str,
    key: str,
    retry: bool,
) -> None:
    server.fail_next("sign", status, code)
    with pytest.raises(BankIdError) as raised:
        await provider.start(ctx)
    assert raised.value.failed == Failed(code, key, retry)

    started = await provider.start(ctx)
    server.fail_next("collect", status, code)
    assert await provider.check(ctx, started.state, {}) == Failed(code, key, retry)


async def test_timeout_is_unreachable(
    pki: BankIdPki, server: BankIdTestServer, ctx: SigningContext
) -> None:
    server.delay = 1.0
    async with BankIdProvider(settings_for(pki, server.url), timeout=0.3) as slow:
        with pytest.raises(BankIdError) as raised:
            await slow.start(ctx)
    assert raised.value.failed == Failed("unreachable", "bankid.unreachable", True)


async def test_forged_signature_is_refused(
    provider: BankIdProvider, server: BankIdTestServer, ctx: SigningContext
) -> None:
    server.queue(Scenario(hints=(), tamper_signature=True))
    started = await provider.start(ctx)
    result = await provider.check(ctx, started.state, {})
    assert result == Failed("signatureMismatch", "bankid.signature_mismatch", False)


# --- TLS ----------------------------------------------------------------------


async def test_wrong_client_certificate_cannot_connect(
    pki: BankIdPki, server: BankIdTestServer, ctx: SigningContext
) -> None:
    rogue = settings_for(
        pki,
        server.url,
        client_cert=pki.rogue_cert,
        client_key=pki.rogue_key,
        client_key_password=None,
    )
    async with BankIdProvider(rogue) as bankid:
        with pytest.raises(BankIdError) as raised:
            await bankid.start(ctx)
    assert raised.value.failed == Failed("unreachable", "bankid.unreachable", True)
    assert server.requests == []  # refused at TLS, before HTTP


async def test_no_client_certificate_cannot_connect(
    pki: BankIdPki, server: BankIdTestServer
) -> None:
    context = ssl.create_default_context(cafile=str(pki.server_ca))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as http:
        with pytest.raises((aiohttp.ClientError, ssl.SSLError)):
            async with http.post(f"{server.url}/auth", json={"endUserIp": "127.0.0.1"}) as r:
                await r.read()
    assert server.requests == []


async def test_server_must_be_from_the_configured_ca(
    pki: BankIdPki, server: BankIdTestServer, ctx: SigningContext
) -> None:
    untrusting = settings_for(pki, server.url, ca_cert=pki.client_ca)
    async with BankIdProvider(untrusting) as bankid:
        with pytest.raises(BankIdError) as raised:
            await bankid.start(ctx)
    assert raised.value.code == "unreachable"
    assert server.requests == []


async def test_hostname_is_checked(pki: BankIdPki, ctx: SigningContext) -> None:
    async with BankIdTestServer(pki, host="127.0.0.2") as elsewhere:  # not in the certificate
        async with BankIdProvider(settings_for(pki, elsewhere.url)) as bankid:
            with pytest.raises(BankIdError) as raised:
                await bankid.start(ctx)
        assert raised.value.code == "unreachable"
        assert elsewhere.requests == []


async def test_certificate_and_key_in_one_file(
    pki: BankIdPki, server: BankIdTestServer, ctx: SigningContext
) -> None:
    combined = settings_for(
        pki, server.url, client_cert=pki.client_combined, client_key=None, client_key_password=None
    )
    async with BankIdProvider(combined) as bankid:
        assert isinstance(await bankid.start(ctx), Started)


def test_is_an_identity_provider(pki: BankIdPki) -> None:
    bankid: IdentityProvider = BankIdProvider(settings_for(pki, "https://127.0.0.1:1/rp/v6.0"))
    assert bankid.method == "bankid"


def test_wrong_key_password_fails_at_construction(pki: BankIdPki) -> None:
    with pytest.raises(ssl.SSLError):
        BankIdProvider(settings_for(pki, "https://127.0.0.1:1/rp/v6.0", client_key_password="no"))


# --- the animated QR code -----------------------------------------------------


async def test_animated_qr_follows_the_hmac_formula(
    provider: BankIdProvider, server: BankIdTestServer, ctx: SigningContext
) -> None:
    server.queue(Scenario.forever())
    started = await provider.start(ctx)
    token, secret = started.state["qrStartToken"], started.state["qrStartSecret"]
    order = server.orders[started.state["orderRef"]]
    assert (token, secret) == (order.qr_start_token, order.qr_start_secret)

    def expected(seconds: int) -> str:
        code = hmac.new(secret.encode(), str(seconds).encode(), hashlib.sha256).hexdigest()
        return f"bankid.{token}.{seconds}.{code}"

    assert started.page["qr"] == expected(0)
    first = await provider.check(ctx, started.state, {})
    await asyncio.sleep(1.05)
    second = await provider.check(ctx, started.state, {})
    assert isinstance(first, Pending) and isinstance(second, Pending)
    assert first.page["qr"] != second.page["qr"]
    for result in (first, second):
        qr_token, seconds, _ = parse_qr(result.page["qr"])
        assert qr_token == token
        assert result.page["qr"] == expected(seconds)
    assert parse_qr(second.page["qr"])[1] > parse_qr(first.page["qr"])[1]
    elapsed = time.time() - started.state["started_at"]
    assert abs(parse_qr(second.page["qr"])[1] - elapsed) < 1.5


async def test_collect_is_not_called_more_often_than_the_interval(
    pki: BankIdPki, server: BankIdTestServer, ctx: SigningContext
) -> None:
    server.queue(Scenario.forever("started"))
    async with BankIdProvider(settings_for(pki, server.url), collect_interval=2.0) as bankid:
        started = await bankid.start(ctx)
        first = await bankid.check(ctx, started.state, {})
        assert isinstance(first, Pending) and first.state is not None
        again = await bankid.check(ctx, first.state, {})
    assert isinstance(again, Pending)
    assert again.hint == first.hint == "bankid.searching"
    assert again.page["qr"].startswith(f"bankid.{started.state['qrStartToken']}.")
    assert len(server.recorded("collect")) == 1


# --- cancel ---------------------------------------------------------------------


async def test_cancel_reaches_the_server(
    provider: BankIdProvider, server: BankIdTestServer, ctx: SigningContext
) -> None:
    server.queue(Scenario.forever())
    started = await provider.start(ctx)
    await provider.cancel(ctx, started.state)
    assert [r.body for r in server.recorded("cancel")] == [{"orderRef": started.state["orderRef"]}]
    assert server.orders[started.state["orderRef"]].gone
    result = await provider.check(ctx, started.state, {})
    assert isinstance(result, Failed) and result.code == "invalidParameters"
    await provider.cancel(ctx, started.state)  # twice: logged, not raised
    # A fresh order for the same person is now possible.
    assert isinstance(await provider.start(ctx), Started)


# --- messages ------------------------------------------------------------------


def test_every_code_has_a_message_in_both_languages() -> None:
    assert set(BANKID_MESSAGES) == {"sv", "en"}
    assert set(BANKID_MESSAGES["sv"]) == set(BANKID_MESSAGES["en"])
    keys = set(PENDING_HINTS.values())
    keys |= {key for key, _ in FAILED_HINTS.values()}
    keys |= {key for key, _ in ERROR_CODES.values()}
    keys |= {"bankid.starting_app", "bankid.start_failed_qr", "bankid.in_progress"}
    keys |= {"bankid.unknown_error", "bankid.unreachable", "bankid.signature_mismatch"}
    assert keys <= set(BANKID_MESSAGES["sv"])
    assert set(PENDING_HINTS) == {
        "outstandingTransaction",
        "noClient",
        "started",
        "userMrtd",
        "userCallConfirm",
        "userSign",
    }
    for language in ("sv", "en"):
        for text in BANKID_MESSAGES[language].values():
            assert 0 < len(text) <= 160  # fits a phone


def test_unknown_language_falls_back_to_swedish() -> None:
    assert bankid_message("bankid.start_app", "fi") == BANKID_MESSAGES["sv"]["bankid.start_app"]
    assert bankid_message("no.such.key", "en") == BANKID_MESSAGES["en"]["bankid.unknown_error"]


# --- the QR SVG --------------------------------------------------------------------


def svg_modules(svg: str) -> tuple[int, set[tuple[int, int]]]:
    """The dark modules of our SVG: its path is runs of ``h`` lines between moves."""
    size = int(re.search(r'viewBox="0 0 (\d+) \1"', svg).group(1))  # type: ignore[union-attr]
    path = re.search(r'<path stroke="#000" d="([^"]+)"', svg).group(1)  # type: ignore[union-attr]
    dark: set[tuple[int, int]] = set()
    x = y = 0.0
    for command, args in re.findall(r"([MmHh])([-\d. ]+)", path):
        numbers = [float(n) for n in args.split()]
        if command == "M":
            x, y = numbers
        elif command == "m":
            x, y = x + numbers[0], y + numbers[1]
        else:
            end = numbers[0] if command == "H" else x + numbers[0]
            dark |= {(int(col), int(y)) for col in range(int(x), int(end))}
            x = end
    return size, dark


def test_qr_svg_is_a_small_inline_svg() -> None:
    svg = qr_svg("bankid.67df3917-fa0d-44e5-b327-edcc928297f8.0.abc")
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert "<?xml" not in svg and "<script" not in svg and "style" not in svg
    assert 'viewBox="0 0 ' in svg and "<path" in svg and ' d="M' in svg
    assert "href" not in svg and "http" not in svg.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert len(svg) < 6000
    size, dark = svg_modules(svg)
    assert dark and all(4 <= x < size - 4 and 4 <= y < size - 4 for x, y in dark)  # quiet zone


def test_qr_svg_grows_with_content() -> None:
    small, _ = svg_modules(qr_svg("bankid.x"))
    large, _ = svg_modules(qr_svg("bankid." + "a" * 300))
    assert large > small


def test_qr_svg_decodes_to_the_text(tmp_path: Path) -> None:
    zxingcpp = pytest.importorskip("zxingcpp")
    image_module = pytest.importorskip("PIL.Image")
    text = "bankid.67df3917-fa0d-44e5-b327-edcc928297f8.12." + "0f" * 32
    size, dark = svg_modules(qr_svg(text))
    scale = 6
    image = image_module.new("L", (size * scale, size * scale), 255)
    for x, y in dark:
        image.paste(0, (x * scale, y * scale, (x + 1) * scale, (y + 1) * scale))
    results = zxingcpp.read_barcodes(image)
    assert [r.text for r in results] == [text]
