"""Identification finishes only in the browser that started it, and OIDC sign-ins
outlive a restart (issue 10, "the signing app").

Someone who has the link (a forwarded alert, a shoulder-surfed phone) must not be the
one who gets the signer's session when the signer completes BankID, enters the code
or comes back from the e-ID provider: starting identification sets a pre-auth cookie
in that browser, and status, verify and the OIDC callback answer only to it. Each
browser here is its own cookie jar over the real app, backend and database; BankID
is the local RP API server over mutual TLS, OpenID Connect the real oidc-provider
under Node (both as in tests/test_signing_api.py).
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass, field
from http.cookies import Morsel
from typing import Any

import sqlalchemy as sa
from yarl import URL

from storage import retention
from tests import test_signing_api
from tests.bankid_server import BankIdTestServer, Scenario
from tests.test_oidc import sign_in
from tests.test_signing_api import (
    DAG,
    Answer,
    Env,
    MakeEnv,
    Sessions,
    Submitted,
    oidc_installation,
)

# The fixtures of the signing API's tests: the installation, BankID, the OIDC provider.
dev_pki = test_signing_api.dev_pki
sqlite_sessions = test_signing_api.sqlite_sessions
make_env = test_signing_api.make_env
bankid_pki = test_signing_api.bankid_pki
bankid_server = test_signing_api.bankid_server
bankid_env = test_signing_api.bankid_env
oidc_issuer = test_signing_api.oidc_issuer
oidc_env = test_signing_api.oidc_env

PREAUTH = "sj_preauth"
SESSION = "sj_session"
WRONG_BROWSER_SV = (
    "Identifieringen påbörjades i en annan webbläsare. Slutför den på den enhet och i "
    "den webbläsare där du började, eller börja om här."
)
WRONG_BROWSER_EN = (
    "Identification was started in another browser. Finish it on the device and in "
    "the browser where you began, or start again here."
)
LOGIN_USED_SV = "Inloggningen är redan använd eller har gått ut. Börja om från länken i Element."


@dataclass
class Browser:
    """One browser with its own cookie jar: what the server set, sent back by path."""

    env: Env
    jar: dict[tuple[str, str], Morsel[str]] = field(default_factory=dict)

    def set(self, name: str, path: str, value: str) -> None:
        morsel: Morsel[str] = Morsel()
        morsel.set(name, value, value)
        morsel["path"] = path
        self.jar[(name, path)] = morsel

    def cookie(self, name: str) -> Morsel[str] | None:
        found = [morsel for (key, _), morsel in self.jar.items() if key == name]
        return found[-1] if found else None

    async def fetch(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        query: dict[str, str] | None = None,
    ) -> Answer:
        sent = [
            f"{name}={morsel.value}"
            for (name, where), morsel in self.jar.items()
            if path.startswith(where)
        ]
        options: dict[str, Any] = {"allow_redirects": False}
        options["headers"] = {"Cookie": "; ".join(sent)} if sent else {}
        if body is not None:
            options["json"] = body
        if query is not None:
            options["params"] = query
        async with self.env.client.request(method, path, **options) as response:
            for name, morsel in response.cookies.items():
                self.jar[(name, morsel["path"] or "/")] = morsel
            return Answer(response.status, await response.read(), response.headers)

    async def call(self, method: str, token: str, path: str = "", **options: Any) -> Answer:
        return await self.fetch(method, f"/api/v1/signing/{token}{path}", **options)


def refused(answer: Answer) -> None:
    """403 wrong_browser, with nothing about the identification, and no session."""
    assert answer.status == 403, answer.raw[:300]
    assert answer.headers["Content-Type"].startswith("application/json")
    assert set(answer.body) == {"error", "message"}, answer.body
    assert answer.body["error"] == "wrong_browser"
    assert SESSION not in answer.headers.get("Set-Cookie", "")


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


# -- BankID ---------------------------------------------------------------------------------


async def test_bankid_status_answers_only_the_browser_that_started(
    bankid_env: Env, bankid_server: BankIdTestServer
) -> None:
    env = bankid_env
    sub = await env.submit()
    phone, other = Browser(env), Browser(env)
    bankid_server.expected_sha256 = (await phone.call("GET", sub.token)).body["document_sha256"]
    bankid_server.queue(Scenario(hints=()))  # complete at the first collect

    started = await phone.call("POST", sub.token, "/auth", body={"method": "bankid"})
    assert started.status == 200, started.body

    # The signer completes BankID; someone else with the link polls first.
    stolen = await other.call("GET", sub.token, "/auth/status")
    refused(stolen)
    assert stolen.body["message"] == WRONG_BROWSER_SV
    english = await other.call("GET", sub.token, "/auth/status", query={"lang": "en"})
    refused(english)
    assert english.body["message"] == WRONG_BROWSER_EN
    # A made-up pre-auth cookie is no better than none.
    other.set(PREAUTH, f"/api/v1/signing/{sub.token}/auth", secrets.token_urlsafe(32))
    refused(await other.call("GET", sub.token, "/auth/status"))
    assert bankid_server.recorded("collect") == []  # not even asked: nothing could leak
    assert (await env.request(sub.token)).session_hash is None
    assert (await other.call("GET", sub.token)).body["identified"] is False
    assert "signer.identified" not in await env.audit(sub.case_id)

    done = await phone.call("GET", sub.token, "/auth/status")

    assert done.status == 200 and done.body == {"status": "done"}, done.body
    assert phone.cookie(SESSION) is not None
    assert (await phone.call("GET", sub.token)).body["identified"] is True
    assert (await phone.call("GET", sub.token, "/document.pdf")).status == 200
    assert (await other.call("GET", sub.token, "/document.pdf")).status == 401

    # The cookie: 256 random bits for this link's identification calls only, never
    # readable by scripts, as long as an attempt lasts; the database has its hash only.
    preauth = phone.cookie(PREAUTH)
    assert preauth is not None and len(preauth.value) >= 43
    assert preauth["httponly"] is True and preauth["secure"] == ""  # http base URL here
    assert preauth["path"] == f"/api/v1/signing/{sub.token}/auth"
    assert preauth["samesite"] == "Strict" and preauth["max-age"] == "900"
    async with env.sessions() as session:
        row = (
            await session.execute(
                sa.text("SELECT * FROM signing_requests WHERE token_hash = :h"),
                {"h": sha256(sub.token)},
            )
        ).one()
    assert row.auth_binding == sha256(preauth.value)
    assert preauth.value not in json.dumps([str(value) for value in row])


# -- the code in Element --------------------------------------------------------------------


async def test_the_code_is_taken_only_in_the_browser_that_asked_for_it(
    sessions: Sessions, make_env: MakeEnv
) -> None:
    env = await make_env(sessions)
    sub = await env.submit()
    phone, other = Browser(env), Browser(env)
    assert (await phone.call("POST", sub.token, "/auth", body={"method": "matrix-code"})).status
    code = (await env.codes(DAG))[-1]
    attempts = (await env.request(sub.token)).auth_attempts

    # The right code, from a browser that did not ask for it: refused, and no attempt
    # of the signer's is used up by it.
    stolen = await other.call("POST", sub.token, "/auth/verify", body={"code": code})
    refused(stolen)
    assert stolen.body["message"] == WRONG_BROWSER_SV
    assert (await env.request(sub.token)).session_hash is None
    assert (await env.request(sub.token)).auth_attempts == attempts

    done = await phone.call("POST", sub.token, "/auth/verify", body={"code": code})

    assert done.status == 200 and done.body == {"status": "done"}, done.body
    assert phone.cookie(SESSION) is not None
    assert (await phone.call("GET", sub.token)).body["identified"] is True
    assert (await other.call("GET", sub.token)).body["identified"] is False


# -- OpenID Connect -------------------------------------------------------------------------


async def start_oidc(browser: Browser, token: str) -> str:
    started = await browser.call("POST", token, "/auth", body={"method": "oidc"})
    assert started.status == 200, started.body
    return str(started.body["redirect"])


async def test_oidc_callback_only_in_the_browser_that_started(oidc_env: Env) -> None:
    env = oidc_env
    sub = await env.submit()
    phone, other = Browser(env), Browser(env)
    params = await sign_in(await start_oidc(phone, sub.token), "tolvan")

    # The provider's redirect opened in another browser (a forwarded or intercepted URL).
    stolen = await other.fetch("GET", "/oidc/callback", query=params)

    assert stolen.status == 403
    assert stolen.text == WRONG_BROWSER_SV
    assert other.cookie(SESSION) is None
    assert (await env.request(sub.token)).session_hash is None

    back = await phone.fetch("GET", "/oidc/callback", query=params)  # still usable here

    assert back.status == 303, back.raw
    assert back.headers["Location"] == f"/s/{sub.token}"
    assert (await phone.call("GET", sub.token)).body["identified"] is True
    # The provider's redirect back is a cross-site top-level navigation: Lax carries it.
    preauth = phone.cookie(PREAUTH)
    assert preauth is not None and preauth["path"] == "/oidc/callback"
    assert preauth["samesite"] == "Lax" and preauth["httponly"] is True
    assert preauth["secure"] is True  # the base URL is https


async def oidc_started(
    make_env: MakeEnv, sessions: Sessions, issuer: str
) -> tuple[Env, Submitted, Browser, str]:
    """An OIDC installation with a request sent for signing whose signer started
    OpenID Connect on a phone: the installation, request, phone and redirect."""
    env = await oidc_installation(make_env, sessions, issuer)
    sub = await env.submit()
    phone = Browser(env)
    return env, sub, phone, await start_oidc(phone, sub.token)


async def state_hashes(env: Env) -> list[str]:
    """The hashes of the OIDC sign-ins the database keeps."""
    async with env.sessions() as session:
        return list((await session.scalars(sa.text("SELECT state_hash FROM oidc_states"))).all())


async def test_an_oidc_sign_in_survives_a_restart_and_is_used_once(
    sqlite_sessions: Sessions, make_env: MakeEnv, oidc_issuer: str
) -> None:
    _, sub, phone, redirect = await oidc_started(make_env, sqlite_sessions, oidc_issuer)
    state = URL(redirect).query["state"]
    params = await sign_in(redirect, "tolvan")

    # The service restarts while the signer is at the provider: a new app and backend
    # over the same database.
    after = await oidc_installation(make_env, sqlite_sessions, oidc_issuer)
    phone.env = after
    back = await phone.fetch("GET", "/oidc/callback", query=params)

    assert back.status == 303, back.raw
    assert back.headers["Location"] == f"/s/{sub.token}"
    assert (await phone.call("GET", sub.token)).body["identified"] is True

    replay = await phone.fetch("GET", "/oidc/callback", query=params)

    assert replay.status == 404
    assert replay.body["error"] == "not_found" and replay.body["message"] == LOGIN_USED_SV
    assert SESSION not in replay.headers.get("Set-Cookie", "")
    # A used sign-in is gone from the database.
    assert sha256(state) not in await state_hashes(after)


async def test_an_oidc_sign_in_expires_and_is_cleaned_up(
    sqlite_sessions: Sessions, make_env: MakeEnv, oidc_issuer: str
) -> None:
    env, sub, phone, redirect = await oidc_started(make_env, sqlite_sessions, oidc_issuer)
    state = URL(redirect).query["state"]
    async with env.sessions() as session:
        (row,) = (await session.execute(sa.text("SELECT * FROM oidc_states"))).all()
    assert row.state_hash == sha256(state)
    stored = json.dumps([str(value) for value in row])
    assert state not in stored and sub.token not in stored
    assert phone.cookie(PREAUTH) is not None
    assert row.binding_hash == sha256(phone.cookie(PREAUTH).value)  # type: ignore[union-attr]
    params = await sign_in(redirect, "tolvan")

    env.clock.advance(seconds=16 * 60)  # longer than a sign-in may take
    late = await phone.fetch("GET", "/oidc/callback", query=params)

    assert late.status == 404 and late.body["message"] == LOGIN_USED_SV
    assert (await env.request(sub.token)).session_hash is None
    # The next start removes what expired unused.
    await start_oidc(phone, sub.token)
    hashes = await state_hashes(env)
    assert len(hashes) == 1 and hashes != [sha256(state)]


async def test_a_purged_case_keeps_no_oidc_sign_in(
    sqlite_sessions: Sessions, make_env: MakeEnv, oidc_issuer: str
) -> None:
    env, sub, _, _ = await oidc_started(make_env, sqlite_sessions, oidc_issuer)
    async with env.sessions() as session, session.begin():
        await session.execute(
            sa.text("UPDATE cases SET status = 'cancelled' WHERE id = :id"), {"id": sub.case_id}
        )
        counts = await retention.purge_case(session, case_id=sub.case_id, now=env.clock())
    assert counts is not None and counts["oidc"] == 1
    async with env.sessions() as session:
        assert (await session.execute(sa.text("SELECT * FROM oidc_states"))).all() == []
        (binding,) = (
            await session.execute(
                sa.text("SELECT auth_binding FROM signing_requests WHERE case_id = :id"),
                {"id": sub.case_id},
            )
        ).one()
    assert binding is None
