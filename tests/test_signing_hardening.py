"""The signing app against someone trying too hard: parallel and scripted guessing, a
forged ``X-Forwarded-For``, plain http, and a stored decision changed behind the signer.

The real aiohttp app over the real decision side, with the fixtures of the signing API
tests (``tests.test_signing_api``): SQLite and PostgreSQL where the database decides,
the local BankID RP API server where BankID's ``endUserIp`` is the question.
"""

# The signing API tests' fixtures are imported by name, and tests take them as arguments.
# ruff: noqa: F811

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import update

from config import check_config, load_settings
from handlers.signing_backend import MAX_AUTH_ATTEMPTS
from signing.identity import IdentityProvider, SigningContext
from signing.identity.base import CheckResult, Started
from signing.web import create_app
from signing.web_common import ADDRESS_LIMIT, ADDRESS_WINDOW_SECONDS, SlidingWindow
from storage.models import SigningRequest
from tests.bankid_server import BankIdTestServer
from tests.test_config import MINIMAL, places, write
from tests.test_signing_api import (  # noqa: F401  (fixtures, used by name)
    DAG,
    HTTP_BASE,
    HTTPS_BASE,
    TOLVAN,
    Answer,
    Env,
    MakeEnv,
    Sessions,
    bankid_env,
    bankid_pki,
    bankid_server,
    dev_pki,
    error,
    make_env,
    sqlite_sessions,
)

Serve = Callable[..., Awaitable[Env]]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    """Another web app over an environment's decision side, with the options given
    (trusted proxies, the per-address limit), as bot/app.py builds it."""
    clients: list[TestClient] = []

    async def make(env: Env, **options: Any) -> Env:
        app = create_app(
            backend=env.service.backend,
            public_base_url=env.settings.web.public_base_url,
            **options,
        )
        client = TestClient(TestServer(app, host="127.0.0.1"), cookie_jar=aiohttp.DummyCookieJar())
        await client.start_server()
        clients.append(client)
        return Env(
            env.settings, env.sessions, env.messenger, env.clock, env.service, client, env.pki
        )

    yield make
    for client in clients:
        await client.close()


class Ticks:
    """A monotonic clock the test moves by hand (seconds)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def browser(*answers: Answer) -> dict[str, str]:
    """The Cookie header a browser sends back after these answers (every cookie they
    set, whatever its path: the test only ever calls the link's own API)."""
    jar: SimpleCookie = SimpleCookie()
    for answer in answers:
        for value in answer.headers.getall("Set-Cookie", []):
            jar.load(value)
    if not jar:
        return {}
    return {"Cookie": "; ".join(f"{name}={morsel.value}" for name, morsel in jar.items())}


async def start(env: Env, token: str, **options: Any) -> Answer:
    return await env.call("POST", token, "/auth", body={"method": "matrix-code"}, **options)


def other_than(code: str) -> str:
    return "000000" if code != "000000" else "111111"


class CountingCodes:
    """The real Matrix-code provider, counting how often a code is compared."""

    method = "matrix-code"

    def __init__(self, provider: IdentityProvider) -> None:
        self.provider = provider
        self.compared = 0

    async def start(self, ctx: SigningContext) -> Started:
        return await self.provider.start(ctx)

    async def check(
        self, ctx: SigningContext, state: Mapping[str, Any], params: Mapping[str, Any]
    ) -> CheckResult:
        self.compared += 1
        return await self.provider.check(ctx, state, params)

    async def cancel(self, ctx: SigningContext, state: Mapping[str, Any]) -> None:
        await self.provider.cancel(ctx, state)


# -- the per-link limit holds under parallel guessing ---------------------------------------


async def test_fifty_parallel_wrong_codes_are_compared_at_most_the_limit(
    sessions: Sessions, make_env: MakeEnv, serve: Serve
) -> None:
    # (a per-address limit far away: this is about the link's own count, in the database)
    env = await serve(await make_env(sessions), address_limit=SlidingWindow(limit=1000))
    sub = await env.submit()
    counting = CountingCodes(env.service.providers["matrix-code"])
    env.service.providers = {"matrix-code": counting}
    started = await start(env, sub.token)
    assert started.status == 200, started.body
    (code,) = await env.codes(DAG)
    cookies = browser(started)

    answers = await asyncio.gather(
        *(
            env.call(
                "POST", sub.token, "/auth/verify", body={"code": other_than(code)}, headers=cookies
            )
            for _ in range(50)
        )
    )

    # One start and five tries per link: at most five codes were compared.
    allowed = MAX_AUTH_ATTEMPTS - 1
    assert counting.compared == allowed
    statuses = sorted(answer.status for answer in answers)
    assert statuses == [401] * (allowed - 1) + [429] * (50 - allowed + 1)
    assert all(error(a)[1] == "too_many_attempts" for a in answers if a.status == 429)
    assert (await env.request(sub.token)).auth_attempts == MAX_AUTH_ATTEMPTS
    right = await env.call("POST", sub.token, "/auth/verify", body={"code": code}, headers=cookies)
    assert error(right) == (429, "too_many_attempts")
    assert right.cookie is None
    assert counting.compared == allowed
    assert (await env.request(sub.token)).auth_attempts == MAX_AUTH_ATTEMPTS


# -- the per-address limit, across links ------------------------------------------------------


async def test_one_address_gets_twenty_failures_in_ten_minutes_across_links(
    sqlite_sessions: Sessions, make_env: MakeEnv, serve: Serve
) -> None:
    ticks = Ticks()
    env = await serve(await make_env(sqlite_sessions), address_limit=SlidingWindow(clock=ticks))
    assert (ADDRESS_LIMIT, ADDRESS_WINDOW_SECONDS) == (20, 600.0)
    tokens = [(await env.submit()).token for _ in range(4)]
    # Three links used up: a start and five wrong codes each (18 failures).
    for token in tokens[:3]:
        started = await start(env, token)
        assert started.status == 200
        code = (await env.codes(DAG))[-1]
        statuses = [
            (
                await env.call(
                    "POST",
                    token,
                    "/auth/verify",
                    body={"code": other_than(code)},
                    headers=browser(started),
                )
            ).status
            for _ in range(5)
        ]
        assert statuses == [401, 401, 401, 401, 429]
    # The fourth link has tries left of its own, but the address has two.
    started = await start(env, tokens[3])
    assert started.status == 200
    code = (await env.codes(DAG))[-1]
    cookies = browser(started)
    wrong = await env.call(
        "POST", tokens[3], "/auth/verify", body={"code": other_than(code)}, headers=cookies
    )
    assert error(wrong) == (401, "not_identified")

    refused = await env.call(
        "POST", tokens[3], "/auth/verify", body={"code": code}, headers=cookies
    )

    assert error(refused) == (429, "too_many_attempts")
    assert refused.body["code"] == "slow_down" and refused.body["retry"] is True
    assert refused.headers["Retry-After"] == "600"
    assert refused.body["message"] == (
        "För många försök från din anslutning på kort tid. Vänta 10 minuter och försök sedan igen."
    )
    assert refused.cookie is None
    codes_sent = len(await env.codes(DAG))
    restart = await start(env, tokens[3], headers={"Accept-Language": "en"})
    assert error(restart) == (429, "too_many_attempts")
    assert restart.body["message"] == (
        "Too many attempts from your connection in a short time. "
        "Please wait 10 minutes and then try again."
    )
    assert len(await env.codes(DAG)) == codes_sent  # no code went out
    # What the address was refused did not use up the link's own tries.
    assert (await env.request(tokens[3])).auth_attempts == 2

    ticks.now += 599
    assert (await env.call("POST", tokens[3], "/auth/verify", body={"code": code})).headers[
        "Retry-After"
    ] == "1"
    ticks.now += 1  # the window slides past the first failures
    answer = await env.call("POST", tokens[3], "/auth/verify", body={"code": code}, headers=cookies)
    assert answer.status == 200, answer.body
    assert answer.cookie is not None


# -- trusted proxies ---------------------------------------------------------------------------


async def test_forwarded_for_counts_only_from_a_trusted_proxy(
    sqlite_sessions: Sessions, make_env: MakeEnv, serve: Serve
) -> None:
    env = await make_env(sqlite_sessions)
    direct = await serve(env, address_limit=SlidingWindow(limit=2))
    proxied = await serve(
        env, trusted_proxies=["10.0.0.0/8", "127.0.0.1"], address_limit=SlidingWindow(limit=2)
    )
    sub = await env.submit()

    async def verify(app: Env, forwarded_for: str) -> Answer:
        return await app.call(
            "POST",
            sub.token,
            "/auth/verify",
            body={"code": "123456"},
            headers={"X-Forwarded-For": forwarded_for},
        )

    # Straight from the client: a new X-Forwarded-For each time changes nothing.
    assert [(await verify(direct, f"203.0.113.{n}")).status for n in (1, 2)] == [400, 400]
    spoofed = await verify(direct, "203.0.113.3")
    assert error(spoofed) == (429, "too_many_attempts")
    assert spoofed.body["code"] == "slow_down"

    # Through the trusted proxy: each client is counted apart.
    assert [(await verify(proxied, "203.0.113.1")).status for _ in range(2)] == [400, 400]
    assert (await verify(proxied, "203.0.113.1")).body.get("code") == "slow_down"
    other = await verify(proxied, "198.51.100.2, 10.1.2.3")  # two proxies in a row
    assert error(other) == (400, "bad_request")
    # What the client wrote itself (left of the proxy's entry) is not believed.
    forged = await verify(proxied, "198.51.100.2, 203.0.113.1")
    assert forged.body.get("code") == "slow_down"


async def test_bankid_gets_the_client_address_from_a_trusted_proxy_only(
    bankid_env: Env, bankid_server: BankIdTestServer, serve: Serve
) -> None:
    sub = await bankid_env.submit()
    proxied = await serve(bankid_env, trusted_proxies=["127.0.0.1"])

    async def end_user_ip(app: Env, forwarded_for: str) -> str:
        await app.call(
            "POST",
            sub.token,
            "/auth",
            body={"method": "bankid"},
            headers={"X-Forwarded-For": forwarded_for},
        )
        order = bankid_server.recorded("sign")[-1]
        return str(order.body["endUserIp"])

    assert await end_user_ip(bankid_env, "203.0.113.9") == "127.0.0.1"
    assert await end_user_ip(proxied, "203.0.113.9") == "203.0.113.9"
    assert await end_user_ip(proxied, "192.0.2.1, 198.51.100.77") == "198.51.100.77"


def test_trusted_proxies_are_checked_addresses_or_networks(tmp_path: Path) -> None:
    good = MINIMAL + '\n[web]\ntrusted_proxies = ["127.0.0.1", "10.0.0.0/8", "::1"]\n'
    settings = load_settings(write(tmp_path / "good", good), environ={})
    assert settings.web.trusted_proxies == ("127.0.0.1", "10.0.0.0/8", "::1")
    assert load_settings(write(tmp_path / "none", MINIMAL), environ={}).web.trusted_proxies == ()

    bad = MINIMAL + '\n[web]\ntrusted_proxies = ["127.0.0.1", "proxy.local", "10.0.0.1/8"]\n'
    path = write(tmp_path / "bad", bad)
    problems = check_config(path, environ={})
    assert places(problems, path) == ["web.trusted_proxies[1]", "web.trusted_proxies[2]"]
    assert "'proxy.local'" in str(problems[0])


# -- HSTS -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("base_url", "hsts"), [(HTTPS_BASE, "max-age=31536000"), (HTTP_BASE, None)]
)
async def test_hsts_on_every_answer_when_public_over_https(
    sqlite_sessions: Sessions, make_env: MakeEnv, base_url: str, hsts: str | None
) -> None:
    env = await make_env(sqlite_sessions, base_url=base_url)
    sub = await env.submit()
    answers = [
        await env.call("GET", sub.token),
        await env.fetch("GET", f"/s/{sub.token}"),
        await env.fetch("GET", "/static/signing.js"),
        await env.call("GET", "x" * 40),  # 404
        await env.call("GET", sub.token, "/document.pdf"),  # 401
        await env.fetch("GET", "/nowhere"),
    ]
    assert [a.headers.get("Strict-Transport-Security") for a in answers] == [hsts] * len(answers)


# -- the document is the one the signer reviewed ----------------------------------------------


async def test_a_document_changed_in_the_database_is_not_sealed(
    sessions: Sessions, make_env: MakeEnv, caplog: pytest.LogCaptureFixture
) -> None:
    env = await make_env(sessions)
    sub = await env.submit()
    started = await start(env, sub.token)
    code = (await env.codes(DAG))[-1]
    done = await env.call(
        "POST", sub.token, "/auth/verify", body={"code": code}, headers=browser(started)
    )
    assert done.status == 200 and done.cookie is not None
    reviewed = await env.call("GET", sub.token, "/document.pdf", cookie=done.cookie.value)
    assert (
        hashlib.sha256(reviewed.raw).hexdigest() == (await env.request(sub.token)).document_sha256
    )
    request = await env.request(sub.token)
    tampered = bytearray(request.document)  # one bit, in the middle of the stored PDF
    tampered[len(tampered) // 2] ^= 1
    async with env.sessions() as session, session.begin():
        await session.execute(
            update(SigningRequest)
            .where(SigningRequest.id == request.id)
            .values(document=bytes(tampered))
        )
    caplog.set_level(logging.INFO)

    answer = await env.call(
        "POST", sub.token, "/decision", body={"action": "sign"}, cookie=done.cookie.value
    )

    assert error(answer) == (409, "document_changed")
    assert answer.body["message"] == (
        "Beslutsdokumentet har ändrats sedan det skickades till dig, så det undertecknas "
        "inte. Kontakta jouren."
    )
    await env.posted()
    after = await env.request(sub.token)
    assert after.status == "pending" and after.signed_document is None
    assert after.decided_at is None
    assert await env.case_status(sub.case_id) == "awaiting_signature"
    assert env.messenger.files_in(sub.room_id) == []
    trail = await env.audit(sub.case_id)
    assert "decision.document_changed" in trail and "decision.signed" not in trail
    logged = "\n".join(  # what the service itself logs (not the database driver's debug)
        record.getMessage()
        for record in caplog.records
        if record.name.split(".")[0] in ("handlers", "signing", "storage", "bot")
    )
    assert "has changed" in logged
    for personal in (DAG, "Dag Dagsson", TOLVAN, sub.token):
        assert personal not in logged
    english = await env.call(
        "POST",
        sub.token,
        "/decision",
        body={"action": "sign"},
        cookie=done.cookie.value,
        headers={"Accept-Language": "en"},
    )
    assert english.body["message"].startswith("The decision document has changed")
    assert json.loads(english.raw)["error"] == "document_changed"
