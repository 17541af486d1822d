"""OpenID Connect identification against a real provider (node oidc-provider, dev mode).

The provider runs from ``tests/oidc`` on a loopback port; a browser is played by
an aiohttp session with a cookie jar that fills the development login and
consent forms and stops at the redirect back to Socialjour, whose query is what
the signing page would hand to :meth:`OidcProvider.check`. Claim checks that a
real provider cannot be made to get wrong run against a small fake issuer whose
keys the test holds.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import select
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from yarl import URL

from config.settings import OidcSettings
from signing.identity import Done, Failed, SigningContext
from signing.identity.oidc import (
    OIDC_MESSAGES,
    OidcError,
    OidcProvider,
    normalise_personal_number,
)
from tests.components import unavailable

PROVIDER_DIR = Path(__file__).resolve().parent / "oidc"
PUBLIC_BASE_URL = "https://signera.socialjour.test"
REDIRECT_URI = f"{PUBLIC_BASE_URL}/oidc/callback"
CLIENT_ID = "socialjour"
CLIENT_SECRET = "socialjour-test-secret-" + "x" * 16
SCOPES = ("openid", "profile", "personal_number")
TOLVAN = "19121212-1212"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_ctx(personal_number: str | None = TOLVAN, language: str = "sv") -> SigningContext:
    return SigningContext(
        request_id="req-1",
        case_number="SJ-2026-0042",
        decision_type="lvu-6",
        document_sha256="ab" * 32,
        signer_user_id="@ordf:socialjour.test",
        signer_name="Tolvan Tolvansson",
        signer_personal_number=personal_number,
        language=language,
        end_user_ip="127.0.0.1",
        public_base_url=PUBLIC_BASE_URL,
    )


# -- the provider process ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def issuer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        unavailable("Node.js not installed")
    if not (PROVIDER_DIR / "node_modules" / "oidc-provider").is_dir():
        subprocess.run(
            [npm, "ci", "--prefix", str(PROVIDER_DIR), "--no-audit", "--no-fund"],
            check=True,
            capture_output=True,
            timeout=300,
        )
    port = free_port()
    log_path = tmp_path_factory.mktemp("oidc") / "provider.log"
    command = [node, str(PROVIDER_DIR / "provider.mjs"), str(port), REDIRECT_URI]
    command += [CLIENT_ID, CLIENT_SECRET]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=log,
            env={**os.environ, "NODE_ENV": "development"},
        )
        try:
            _wait_ready(process, log_path)
            yield f"http://127.0.0.1:{port}"
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            if process.stdout is not None:
                process.stdout.close()


def _wait_ready(process: subprocess.Popen[bytes], log_path: Path, timeout: float = 30) -> None:
    assert process.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([process.stdout], [], [], 0.2)
        if ready:
            line = process.stdout.readline()
            if line.startswith(b"READY "):
                return
            if not line and process.poll() is not None:
                break
    raise RuntimeError(f"oidc-provider did not start:\n{log_path.read_text()[-2000:]}")


@pytest.fixture
async def provider(issuer: str) -> AsyncIterator[OidcProvider]:
    oidc = OidcProvider(
        OidcSettings(issuer=issuer, client_id=CLIENT_ID, client_secret=CLIENT_SECRET, scopes=SCOPES)
    )
    yield oidc
    await oidc.close()


@pytest.fixture
async def public_provider(issuer: str) -> AsyncIterator[OidcProvider]:
    oidc = OidcProvider(OidcSettings(issuer=issuer, client_id=f"{CLIENT_ID}-public", scopes=SCOPES))
    yield oidc
    await oidc.close()


# -- the browser ------------------------------------------------------------------------------


class _Page(HTMLParser):
    """The first form (action and fields) and the links of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.action: str | None = None
        self.fields: dict[str, str] = {}
        self.links: dict[str, str] = {}
        self._href: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {name: value or "" for name, value in attrs}
        if tag == "form" and self.action is None:
            self.action = attributes.get("action")
        elif tag == "input" and "name" in attributes:
            self.fields.setdefault(attributes["name"], attributes.get("value", ""))
        elif tag == "a":
            self._href = attributes.get("href")

    def handle_data(self, data: str) -> None:
        if self._href is not None and data.strip():
            self.links[data.strip()] = self._href
            self._href = None


async def sign_in(authorization_url: str, username: str, *, cancel: bool = False) -> dict[str, str]:
    """Log in and consent like a phone's browser; the query of the redirect back to us."""
    jar = aiohttp.CookieJar(unsafe=True)  # the provider is on an IP address
    async with aiohttp.ClientSession(cookie_jar=jar) as browser:
        method, url, form = "GET", URL(authorization_url), None
        for _ in range(20):
            async with browser.request(method, url, data=form, allow_redirects=False) as response:
                if response.status in (302, 303):
                    target = url.join(URL(response.headers["Location"]))
                    if str(target).startswith(REDIRECT_URI):
                        return dict(target.query)  # the browser would go to Socialjour now
                    method, url, form = "GET", target, None
                    continue
                assert response.status == 200, await response.text()
                page = _Page()
                page.feed(await response.text())
            if cancel:
                method, url, form = "GET", url.join(URL(page.links["[ Cancel ]"])), None
                continue
            assert page.action is not None
            form = dict(page.fields)
            if form.get("prompt") == "login":
                form |= {"login": username, "password": "anything"}
            method, url = "POST", url.join(URL(page.action))
    raise AssertionError("the provider never redirected back")


async def identify(
    oidc: OidcProvider, username: str = "tolvan", ctx: SigningContext | None = None
) -> tuple[dict[str, Any], dict[str, str], Done | Failed | Any]:
    ctx = ctx or make_ctx()
    started = await oidc.start(ctx)
    params = await sign_in(started.page["redirect"], username)
    return dict(started.state), params, await oidc.check(ctx, started.state, params)


# -- the whole flow ---------------------------------------------------------------------------


async def test_start_builds_a_pkce_request_without_personal_data(provider: OidcProvider) -> None:
    started = await provider.start(make_ctx(language="en"))
    url = URL(started.page["redirect"])
    query = url.query
    assert query["response_type"] == "code"
    assert query["client_id"] == CLIENT_ID
    assert query["redirect_uri"] == REDIRECT_URI
    assert query["scope"] == "openid profile personal_number"
    assert query["code_challenge_method"] == "S256"
    assert query["ui_locales"] == "en"
    assert (query["prompt"], query["max_age"]) == ("login", "0")
    assert "login_hint" not in query
    assert TOLVAN not in str(url) and "191212121212" not in str(url)
    state = started.state
    assert set(state) == {"state", "nonce", "code_verifier", "redirect_uri", "started_at"}
    assert query["state"] == state["state"] and query["nonce"] == state["nonce"]
    digest = hashlib.sha256(state["code_verifier"].encode()).digest()
    assert query["code_challenge"] == base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    assert state["code_verifier"] not in str(url)
    assert state["redirect_uri"] == REDIRECT_URI


async def test_confidential_client_identifies_tolvan(provider: OidcProvider, issuer: str) -> None:
    ctx = make_ctx()
    _, params, result = await identify(provider, "tolvan", ctx)
    assert set(params) >= {"code", "state", "iss"}
    assert isinstance(result, Done), result
    identity = result.identity
    assert identity.method == "oidc"
    assert identity.subject == "tolvan"
    assert identity.personal_number == TOLVAN
    assert identity.name == "Tolvan Tolvansson"
    assert identity.matches(ctx)
    assert not identity.matches(make_ctx(personal_number="19900101-0017"))
    assert not identity.matches(make_ctx(personal_number=None))
    evidence = identity.evidence
    assert evidence["iss"] == issuer and evidence["sub"] == "tolvan"
    assert evidence["aud"] == CLIENT_ID
    assert isinstance(evidence["iat"], int) and isinstance(evidence["auth_time"], int)
    assert {"acr", "amr"} <= set(evidence)
    assert evidence["personal_number_from"] == "id_token"
    assert jwt.get_unverified_header(evidence["id_token"])["alg"] == "RS256"
    json.dumps(evidence)  # kept with the signed document


async def test_public_client_reads_the_personal_number_from_userinfo(
    public_provider: OidcProvider,
) -> None:
    _, _, result = await identify(public_provider, "tolvan-userinfo")
    assert isinstance(result, Done), result
    assert result.identity.personal_number == TOLVAN
    assert result.identity.name == "Tolvan Tolvansson"
    assert result.identity.evidence["personal_number_from"] == "userinfo"
    assert jwt.get_unverified_header(result.identity.evidence["id_token"])["alg"] == "ES256"
    assert (
        TOLVAN
        not in jwt.decode(
            result.identity.evidence["id_token"], options={"verify_signature": False}
        ).values()
    )


async def test_wrong_state_fails(provider: OidcProvider) -> None:
    ctx = make_ctx()
    started = await provider.start(ctx)
    params = await sign_in(started.page["redirect"], "tolvan")
    forged = {**params, "state": params["state"][:-2] + "xx"}
    result = await provider.check(ctx, started.state, forged)
    assert result == Failed("state_mismatch", "oidc.state_mismatch")
    missing = {key: value for key, value in params.items() if key != "state"}
    assert await provider.check(ctx, started.state, missing) == result
    other_flow = await provider.start(ctx)
    assert await provider.check(ctx, other_flow.state, params) == result


async def test_cancel_at_the_provider_fails_with_the_cancel_message(
    provider: OidcProvider,
) -> None:
    ctx = make_ctx()
    started = await provider.start(ctx)
    params = await sign_in(started.page["redirect"], "tolvan", cancel=True)
    assert params["error"] == "access_denied"
    result = await provider.check(ctx, started.state, params)
    assert isinstance(result, Failed)
    assert (result.code, result.message_key, result.retry) == ("cancelled", "oidc.cancelled", True)
    assert OIDC_MESSAGES["sv"][result.message_key] == "Inloggningen avbröts. Du kan försöka igen."
    assert OIDC_MESSAGES["en"][result.message_key] == "Sign-in was cancelled. You can try again."


async def test_other_provider_errors_fail(provider: OidcProvider, issuer: str) -> None:
    ctx = make_ctx()
    started = await provider.start(ctx)
    base = {"state": started.state["state"], "iss": issuer}
    result = await provider.check(ctx, started.state, {**base, "error": "login_required"})
    assert result == Failed("provider_login_required", "oidc.failed")
    result = await provider.check(ctx, started.state, {**base, "error": "temporarily_unavailable"})
    assert isinstance(result, Failed) and result.message_key == "oidc.unreachable"
    no_iss = {"state": started.state["state"], "error": "access_denied"}
    assert await provider.check(ctx, started.state, no_iss) == Failed(
        "issuer_mismatch", "oidc.state_mismatch"
    )


async def test_replayed_code_fails(provider: OidcProvider) -> None:
    ctx = make_ctx()
    state, params, result = await identify(provider, "tolvan", ctx)
    assert isinstance(result, Done)
    replay = await provider.check(ctx, state, params)
    assert replay == Failed("token_exchange_failed", "oidc.token_exchange_failed")


async def test_code_with_another_verifier_fails(provider: OidcProvider) -> None:
    ctx = make_ctx()
    started = await provider.start(ctx)
    params = await sign_in(started.page["redirect"], "tolvan")
    state = {**started.state, "code_verifier": "x" * 64}
    result = await provider.check(ctx, state, params)
    assert result == Failed("token_exchange_failed", "oidc.token_exchange_failed")


async def test_missing_personal_number_fails(provider: OidcProvider) -> None:
    _, _, result = await identify(provider, "utan-personnummer")
    assert result == Failed("missing_personal_number", "oidc.missing_personal_number", retry=False)
    assert "personnummer" in OIDC_MESSAGES["sv"]["oidc.missing_personal_number"]
    assert "personal identity number" in OIDC_MESSAGES["en"]["oidc.missing_personal_number"]


async def test_expired_flow_fails(provider: OidcProvider) -> None:
    ctx = make_ctx()
    started = await provider.start(ctx)
    params = await sign_in(started.page["redirect"], "tolvan")
    old = (datetime.now(UTC) - timedelta(minutes=30)).isoformat()
    result = await provider.check(ctx, {**started.state, "started_at": old}, params)
    assert result == Failed("expired", "oidc.expired")


def _flip_signature_byte(token: str) -> str:
    header, payload, signature = token.split(".")
    raw = bytearray(base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4)))
    raw[len(raw) // 2] ^= 0x01
    return ".".join([header, payload, base64.urlsafe_b64encode(raw).rstrip(b"=").decode()])


async def test_tampered_id_token_is_refused(provider: OidcProvider) -> None:
    state, _, result = await identify(provider, "tolvan")
    assert isinstance(result, Done)
    token = result.identity.evidence["id_token"]
    nonce = state["nonce"]
    claims = await provider.validate_id_token(token, nonce=nonce)
    assert claims["sub"] == "tolvan" and claims["personal_number"] == TOLVAN

    with pytest.raises(OidcError) as tampered:
        await provider.validate_id_token(_flip_signature_byte(token), nonce=nonce)
    assert tampered.value.failed == Failed("token_InvalidSignatureError", "oidc.invalid_token")

    header, payload, signature = token.split(".")
    body = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    body["personal_number"] = "19900101-0017"
    forged = base64.urlsafe_b64encode(json.dumps(body).encode()).rstrip(b"=").decode()
    with pytest.raises(OidcError, match="token_InvalidSignatureError"):
        await provider.validate_id_token(f"{header}.{forged}.{signature}", nonce=nonce)

    with pytest.raises(OidcError, match="nonce_mismatch"):
        await provider.validate_id_token(token, nonce="another-nonce")
    unsigned = jwt.encode(body, key="", algorithm="none")
    with pytest.raises(OidcError, match="algorithm_refused"):
        await provider.validate_id_token(unsigned, nonce=nonce)
    hmac_signed = jwt.encode(body, CLIENT_SECRET, algorithm="HS256")  # not declared by the OP
    with pytest.raises(OidcError, match="algorithm_refused"):
        await provider.validate_id_token(hmac_signed, nonce=nonce)
    with pytest.raises(OidcError, match="malformed_token"):
        await provider.validate_id_token("not-a-jwt", nonce=nonce)


async def test_unreachable_provider() -> None:
    oidc = OidcProvider(
        OidcSettings(issuer=f"http://127.0.0.1:{free_port()}", client_id=CLIENT_ID), timeout=5
    )
    try:
        with pytest.raises(OidcError) as raised:
            await oidc.start(make_ctx())
        assert raised.value.message_key == "oidc.unreachable"
        state = {"state": "s", "nonce": "n", "code_verifier": "v", "redirect_uri": REDIRECT_URI}
        result = await oidc.check(make_ctx(), state, {"state": "s", "code": "c"})
        assert result == Failed("unreachable", "oidc.unreachable")
    finally:
        await oidc.close()


async def test_discovery_issuer_must_match_exactly(issuer: str) -> None:
    oidc = OidcProvider(OidcSettings(issuer=issuer + "/", client_id=CLIENT_ID))
    try:
        with pytest.raises(OidcError, match="discovery_issuer_mismatch"):
            await oidc.discovery()
    finally:
        await oidc.close()


# -- claim checks against a fake issuer whose keys the test holds -----------------------------


@dataclass
class FakeIssuer:
    url: str
    keys: dict[str, Any]  # kid -> private key
    published: list[str]  # kids in the JWKS
    jwks_fetches: int = 0
    algs: tuple[str, ...] = ("RS256", "ES256", "PS256")

    def token(
        self, kid: str = "rsa-1", alg: str = "RS256", signer: str | None = None, **overrides: Any
    ) -> str:
        now = int(time.time())
        claims = {
            "iss": self.url,
            "sub": "tolvan",
            "aud": CLIENT_ID,
            "iat": now,
            "exp": now + 300,
            "auth_time": now,
            "nonce": "n-1",
            "personal_number": "191212121212",
        } | overrides
        claims = {key: value for key, value in claims.items() if value is not None}
        return jwt.encode(claims, self.keys[signer or kid], algorithm=alg, headers={"kid": kid})


def _jwk(kid: str, key: Any) -> dict[str, Any]:
    algorithm = jwt.algorithms.RSAAlgorithm if kid.startswith("rsa") else jwt.algorithms.ECAlgorithm
    public = json.loads(algorithm.to_jwk(key.public_key()))
    return public | {"kid": kid, "use": "sig"}


@pytest.fixture
async def fake() -> AsyncIterator[FakeIssuer]:
    keys = {
        "rsa-1": rsa.generate_private_key(public_exponent=65537, key_size=2048),
        "rsa-2": rsa.generate_private_key(public_exponent=65537, key_size=2048),
        "ec-1": ec.generate_private_key(ec.SECP256R1()),
    }
    state = FakeIssuer(url="", keys=keys, published=["rsa-1", "ec-1"])

    async def discovery(_: web.Request) -> web.Response:
        return web.json_response(
            {
                "issuer": state.url,
                "authorization_endpoint": f"{state.url}/auth",
                "token_endpoint": f"{state.url}/token",
                "jwks_uri": f"{state.url}/jwks",
                "id_token_signing_alg_values_supported": list(state.algs),
            }
        )

    async def jwks(_: web.Request) -> web.Response:
        state.jwks_fetches += 1
        return web.json_response({"keys": [_jwk(kid, keys[kid]) for kid in state.published]})

    app = web.Application()
    app.router.add_get("/.well-known/openid-configuration", discovery)
    app.router.add_get("/jwks", jwks)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    state.url = str(server.make_url("")).rstrip("/")
    yield state
    await server.close()


async def _fake_provider(fake: FakeIssuer, **settings: Any) -> OidcProvider:
    return OidcProvider(OidcSettings(issuer=fake.url, client_id=CLIENT_ID, **settings))


async def test_token_checks(fake: FakeIssuer) -> None:
    oidc = await _fake_provider(fake)
    now = int(time.time())
    cases: dict[str, dict[str, Any]] = {
        "token_InvalidIssuerError": {"iss": fake.url + "/evil"},
        "token_InvalidAudienceError": {"aud": "someone-else"},
        "missing_azp": {"aud": [CLIENT_ID, "someone-else"]},
        "azp_mismatch": {"aud": [CLIENT_ID, "other"], "azp": "other"},
        "token_ExpiredSignatureError": {"exp": now - 120, "iat": now - 600},
        "token_ImmatureSignatureError": {"iat": now + 600, "exp": now + 900},
        "nonce_mismatch": {"nonce": "n-2"},
        "token_MissingRequiredClaimError": {"sub": None},
        "stale_authentication": {"auth_time": now - 3600},
    }
    try:
        started = datetime.now(UTC) - timedelta(seconds=5)
        claims = await oidc.validate_id_token(fake.token(), nonce="n-1", not_before=started)
        assert claims["sub"] == "tolvan"
        ok = fake.token(aud=[CLIENT_ID, "other"], azp=CLIENT_ID, exp=now - 30)  # within leeway
        assert (await oidc.validate_id_token(ok, nonce="n-1"))["azp"] == CLIENT_ID
        for code, overrides in cases.items():
            with pytest.raises(OidcError) as raised:
                await oidc.validate_id_token(
                    fake.token(**overrides), nonce="n-1", not_before=started
                )
            assert raised.value.code == code, overrides
            assert raised.value.message_key == "oidc.invalid_token"
        es = fake.token(kid="ec-1", alg="ES256")
        assert (await oidc.validate_id_token(es, nonce="n-1"))["sub"] == "tolvan"
        ps = fake.token(alg="PS256")
        assert (await oidc.validate_id_token(ps, nonce="n-1"))["sub"] == "tolvan"
        with pytest.raises(OidcError, match="unknown_signing_key"):  # an RSA alg on an EC key
            await oidc.validate_id_token(
                fake.token(kid="ec-1", alg="RS256", signer="rsa-2"), nonce="n-1"
            )
    finally:
        await oidc.close()


async def test_unknown_kid_refetches_the_key_set_once(fake: FakeIssuer) -> None:
    oidc = await _fake_provider(fake)
    try:
        await oidc.validate_id_token(fake.token(), nonce="n-1")
        await oidc.validate_id_token(fake.token(), nonce="n-1")
        assert fake.jwks_fetches == 1  # cached
        with pytest.raises(OidcError, match="unknown_signing_key"):
            await oidc.validate_id_token(fake.token(kid="rsa-2"), nonce="n-1")
        assert fake.jwks_fetches == 2  # one refetch, not more
        fake.published.append("rsa-2")  # the provider rotates in a new key
        claims = await oidc.validate_id_token(fake.token(kid="rsa-2"), nonce="n-1")
        assert claims["sub"] == "tolvan" and fake.jwks_fetches == 3
    finally:
        await oidc.close()


async def test_hmac_only_with_a_secret_and_when_declared(fake: FakeIssuer) -> None:
    secret = "s" * 40
    claims: dict[str, Any] = {"iss": fake.url, "sub": "tolvan", "aud": CLIENT_ID, "nonce": "n-1"}
    claims |= {"iat": int(time.time()), "exp": int(time.time()) + 300}
    token = jwt.encode(claims, secret, algorithm="HS256")
    without_secret = await _fake_provider(fake)
    with_secret = await _fake_provider(fake, client_secret=secret)
    try:
        for oidc in (without_secret, with_secret):
            with pytest.raises(OidcError, match="algorithm_refused"):
                await oidc.validate_id_token(token, nonce="n-1")
        fake.algs = ("RS256", "HS256")
        with_secret_declared = await _fake_provider(fake, client_secret=secret)
        try:
            assert (await with_secret_declared.validate_id_token(token, nonce="n-1"))["sub"]
            with pytest.raises(OidcError, match="algorithm_refused"):
                await without_secret.validate_id_token(token, nonce="n-1")
        finally:
            await with_secret_declared.close()
    finally:
        await without_secret.close()
        await with_secret.close()


async def test_insecure_endpoints_are_refused(fake: FakeIssuer) -> None:
    oidc = OidcProvider(OidcSettings(issuer=fake.url, client_id=CLIENT_ID))
    try:
        meta = await oidc.discovery()
        assert meta.issuer == fake.url  # http is allowed on loopback only
    finally:
        await oidc.close()
    from signing.identity.oidc import _require_secure

    with pytest.raises(OidcError, match="discovery_insecure_token"):
        _require_secure("http://idp.example.se/token", "token")
    assert _require_secure("https://idp.example.se/token", "token")


# -- personal numbers -------------------------------------------------------------------------

TODAY = date(2026, 3, 1)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("19121212-1212", "19121212-1212"),
        ("191212121212", "19121212-1212"),
        (" 19121212 1212 ", "19121212-1212"),
        ("121212-1212", "20121212-1212"),
        ("1212121212", "20121212-1212"),
        ("121212+1212", "19121212-1212"),
        ("640823-3234", "19640823-3234"),
        ("19640883-3231", "19640883-3231"),  # samordningsnummer
        ("19121212-1213", None),  # check digit
        ("19121312-1212", None),  # month 13
        ("19120230-1212", None),  # 30 February
        ("19121212+1212", None),
        ("1912121-21212", None),
        ("", None),
        (191212121212, None),
        (None, None),
    ],
)
def test_normalise_personal_number(value: object, expected: str | None) -> None:
    assert normalise_personal_number(value, today=TODAY) == expected


def test_messages_cover_both_languages() -> None:
    assert OIDC_MESSAGES["sv"].keys() == OIDC_MESSAGES["en"].keys()
    for key in (
        "oidc.cancelled",
        "oidc.state_mismatch",
        "oidc.token_exchange_failed",
        "oidc.invalid_token",
        "oidc.missing_personal_number",
        "oidc.unreachable",
    ):
        assert key in OIDC_MESSAGES["sv"]
