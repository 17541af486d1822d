"""The signing API as a decision-maker's phone (and someone holding the wrong link) meets it.

The real aiohttp app over the real decision side (``tests.decision_services``) on
SQLite and PostgreSQL (the storage fixtures), the in-memory messenger standing in
for Matrix, a seal from the development PKI and a clock the test moves. BankID runs
against the local RP API v6 server over mutual TLS (``tests/bankid_server.py``),
OpenID Connect against the real oidc-provider under Node (``tests/oidc``); those run
on SQLite only.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import re
import secrets
import textwrap
import zipfile
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from http.cookies import Morsel, SimpleCookie
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from multidict import CIMultiDictProxy
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from yarl import URL

from config import Settings, load_settings
from config.settings import BankIdSettings, OidcSettings
from handlers import i18n
from handlers.audit_export import export_case
from handlers.dispatcher import Dispatcher
from handlers.links import token_hash
from handlers.messenger import IncomingMessage, MemoryMessenger, Message
from handlers.signing_backend import SigningBackend
from signing.devpki import DevPki, create_dev_pki
from signing.identity import IdentityProvider, SigningContext
from signing.identity.bankid import BankIdProvider
from signing.identity.matrix_code import MatrixCodeProvider
from signing.identity.oidc import OidcProvider
from signing.seal import load_signer
from signing.verify import FileReport, async_verify_bytes
from signing.web import PREAUTH_COOKIE, SESSION_COOKIE, create_app
from storage import create_engine, decisions, repo, session_factory, upgrade
from storage.models import SigningRequest
from tests import test_oidc
from tests.bankid_server import BankIdPki, BankIdTestServer, Scenario, make_pki
from tests.decision_services import Services
from tests.test_handlers import FakeClock
from tests.test_oidc import (
    CLIENT_ID,
    CLIENT_SECRET,
    PUBLIC_BASE_URL,
    SCOPES,
    sign_in,
)
from tests.test_signing_document import LVU_ANSWERS, PNR, make_report, pdf_text

Sessions = async_sessionmaker[AsyncSession]

ANNA = "@anna:example.org"  # the worker who opened the case
BO = "@bo:example.org"
LENA = "@lena:example.org"  # duty lead
DAG = "@dag:example.org"  # first on call in Skövde; Tolvan's personal number
EVA = "@eva:example.org"  # second on call, another personal number
OLLE = "@olle:example.org"  # no personal number configured
HEDDA = "@hedda:example.org"  # Hjo's only decision-maker, her appointment ran out
TOLVAN = "19121212-1212"
EVA_NUMBER = "19800101-2387"
HTTP_BASE = "http://127.0.0.1:8080"
HTTPS_BASE = "https://signera.example.org"
NOW = datetime(2026, 11, 24, 2, 30, tzinfo=UTC)  # 03:30 in Stockholm
LINK = re.compile(r"/s/([A-Za-z0-9_-]{20,})")
CODE = re.compile(r"\b(\d{6})\b")

CONFIG = """
[matrix]
homeserver = "http://127.0.0.1:8008"
user_id = "@socialjour:example.org"
password = {{ env = "SOCIALJOUR_MATRIX_PASSWORD" }}

[storage]
data_dir = "data"

[web]
public_base_url = "{base_url}"

[duty]
room_alias = "#socialjour:example.org"
members = ["{anna}", "{bo}"]
leads = ["{lena}"]

[[municipalities]]
id = "skovde"
name = "Skövde kommun"
intake_room_alias = "#mottagning-skovde:example.org"

  [[municipalities.decision_makers]]
  user_id = "{dag}"
  name = "Dag Dagsson"
  role = "ordförande"
  personal_number = "{tolvan}"
  appointed_by = "Kommunfullmäktige"
  appointed_on = 2023-01-12
  minutes_ref = "§ 4"
  valid_until = 2030-12-31

  [[municipalities.decision_makers]]
  user_id = "{eva}"
  name = "Eva Evasdotter"
  role = "vice ordförande"
  personal_number = "{eva_number}"
  appointed_by = "Socialnämnden"
  appointed_on = 2023-01-26
  minutes_ref = "§ 12"
  valid_until = 2030-12-31

  [[municipalities.decision_makers]]
  user_id = "{olle}"
  name = "Olle Olsson"
  role = "ledamot"
  appointed_by = "Socialnämnden"
  appointed_on = 2023-01-26
  minutes_ref = "§ 13"
  valid_until = 2030-12-31

[[municipalities]]
id = "tibro"
name = "Tibro kommun"
intake_room_alias = "#mottagning-tibro:example.org"

[[municipalities]]
id = "hjo"
name = "Hjo kommun"
intake_room_alias = "#mottagning-hjo:example.org"
body_name = "Individ- och familjenämnden"

  # Her appointment ran out before the tests' night: she is never asked.
  [[municipalities.decision_makers]]
  user_id = "{hedda}"
  name = "Hedda Hjo"
  role = "förordnad ledamot"
  appointed_by = "Individ- och familjenämnden"
  appointed_on = 2023-01-26
  minutes_ref = "§ 3"
  valid_until = 2026-06-30

[signing]
auth_methods = ["matrix-code"]
link_ttl = "2h"
seal_pkcs12 = "{seal}"
seal_pkcs12_password = {{ file = "{seal_password}" }}
trust_roots = ["{ca}"]
"""


def write_settings(folder: Path, pki: DevPki, *, base_url: str) -> Settings:
    path = folder / "config.toml"
    text = CONFIG.format(
        base_url=base_url,
        anna=ANNA,
        bo=BO,
        lena=LENA,
        dag=DAG,
        eva=EVA,
        olle=OLLE,
        hedda=HEDDA,
        tolvan=TOLVAN,
        eva_number=EVA_NUMBER,
        seal=pki.seal_pkcs12,
        seal_password=pki.seal_password_file,
        ca=pki.ca_cert,
    )
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return load_settings(path, environ={"SOCIALJOUR_MATRIX_PASSWORD": "secret"})


# -- Matrix, with faults on demand -------------------------------------------------------------


@dataclass
class FaultyMessenger(MemoryMessenger):
    """The in-memory messenger, plus a homeserver that fails or stalls when told to."""

    file_failures: int = 0  # the next N attachments fail
    text_failures: dict[str, int] = field(default_factory=dict)  # room -> next N messages fail
    file_gate: asyncio.Event | None = None  # attachments wait for this
    files_waiting: int = 0

    async def send_file(
        self, room_id: str, data: bytes, filename: str, mimetype: str, *, key: str | None = None
    ) -> str:
        if self.file_gate is not None:
            self.files_waiting += 1
            await self.file_gate.wait()
        if self.file_failures:
            self.file_failures -= 1
            raise ConnectionError("homeserver unreachable")
        return await super().send_file(room_id, data, filename, mimetype, key=key)

    async def send(self, room_id: str, message: Message, *, key: str | None = None) -> str:
        if self.text_failures.get(room_id):
            self.text_failures[room_id] -= 1
            raise ConnectionError("homeserver unreachable")
        return await super().send(room_id, message, key=key)

    def in_room(self, room_id: str) -> list[Message]:
        return [m for r, m in self.sent if r == room_id]

    def files_in(self, room_id: str) -> list[tuple[str, bytes]]:
        return [(name, data) for r, name, data in self.files if r == room_id]


# -- the API as the page's script calls it ----------------------------------------------------


@dataclass
class Answer:
    status: int
    raw: bytes
    headers: CIMultiDictProxy[str]

    @property
    def body(self) -> Any:
        if self.headers.get("Content-Type", "").startswith("application/json"):
            return json.loads(self.raw)
        return self.raw

    @property
    def text(self) -> str:
        return self.raw.decode("utf-8")

    @property
    def cookie(self) -> Morsel[str] | None:
        jar: SimpleCookie = SimpleCookie()
        for value in self.headers.getall("Set-Cookie", []):
            jar.load(value)
        return jar.get(SESSION_COOKIE)


@dataclass
class Submitted:
    case_id: int
    number: str
    room_id: str
    token: str  # the link token sent to the first decision-maker ("" when none)


class Env:
    """One installation: settings, database, messenger, clock, service and the web app."""

    def __init__(
        self,
        settings: Settings,
        sessions: Sessions,
        messenger: FaultyMessenger,
        clock: FakeClock,
        service: Services,
        client: TestClient,
        pki: DevPki,
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.messenger = messenger
        self.clock = clock
        self.service = service
        self.client = client
        self.pki = pki
        #: The pre-auth cookie as the browser keeps it: its path -> its value.
        self.preauth: dict[str, str] = {}

    async def fetch(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        data: bytes | str | None = None,
        cookie: str | None = None,
        headers: Mapping[str, str] | None = None,
        query: Mapping[str, str] | None = None,
    ) -> Answer:
        sent = dict(headers or {})
        # Like the browser that started identification: its pre-auth cookie goes along
        # (unless the test says which cookies it sends).
        jar = [f"{PREAUTH_COOKIE}={v}" for at, v in self.preauth.items() if path.startswith(at)]
        if "Cookie" in sent:
            jar = []
        if cookie:
            jar.append(f"{SESSION_COOKIE}={cookie}")
        if jar:
            sent["Cookie"] = "; ".join(jar)
        options: dict[str, Any] = {"headers": sent, "allow_redirects": False}
        if query is not None:
            options["params"] = dict(query)
        if body is not None:
            options["json"] = body
        if data is not None:
            options["data"] = data
        async with self.client.request(method, path, **options) as response:
            preauth = response.cookies.get(PREAUTH_COOKIE)
            if preauth is not None:
                self.preauth[preauth["path"]] = preauth.value
            return Answer(response.status, await response.read(), response.headers)

    async def call(self, method: str, token: str, path: str = "", **options: Any) -> Answer:
        return await self.fetch(method, f"/api/v1/signing/{token}{path}", **options)

    async def decline(self, token: str, reason: str, cookie: str) -> Answer:
        """The identified signer (``cookie``) declines, giving ``reason``."""
        body = {"action": "decline", "reason": reason}
        return await self.call("POST", token, "/decision", body=body, cookie=cookie)

    async def posted(self) -> None:
        """Wait for the background posts to the case rooms (the API does not)."""
        await self.service.backend.outcomes.settled()

    async def submit(self, municipality: str = "skovde") -> Submitted:
        """A case with a submitted lvu6 report, sent for signing as ``!skicka`` does."""
        now = self.clock()
        form = self.settings.forms["lvu6"]
        async with self.sessions() as session, session.begin():
            case = await repo.create_case(
                session,
                prefix="SJ",
                year=now.year,
                created_by=ANNA,
                status="drafting",
                now=now,
                form_id=form.id,
                municipality_id=municipality,
            )
            case_id, number = case.id, case.number
        room = await self.messenger.create_case_room(name=number, invite=[ANNA])
        report = make_report(case_number=number, at=now)
        async with self.sessions() as session, session.begin():
            await repo.set_case_room(session, case_id=case_id, room_id=room)
            version = await repo.save_report_state(
                session,
                case_id=case_id,
                form_id=form.id,
                form_version=form.version,
                state={},
                expected_version=None,
                now=now,
            )
            assert version is not None
            assert await repo.submit_report(
                session, case_id=case_id, expected_version=version, report=report, now=now
            )
        async with self.sessions() as session:
            fresh = await repo.get_case(session, case_id=case_id)
        assert fresh is not None
        before = len(self.messenger.sent)
        await self.service.request_signature(fresh, report)
        links = [LINK.search(m.text) for _, m in self.messenger.sent[before:]]
        tokens = [found.group(1) for found in links if found]
        assert len(tokens) <= 1
        return Submitted(case_id, number, room, tokens[0] if tokens else "")

    async def add_request(self, submitted: Submitted, user_id: str) -> str:
        """Another decision-maker asked for the same case, as escalation will do."""
        municipality = self.settings.municipality("skovde")
        assert municipality is not None
        maker = next(d for d in municipality.decision_makers if d.user_id == user_id)
        token = secrets.token_urlsafe(32)
        now = self.clock()
        async with self.sessions() as session, session.begin():
            (first, *_) = await decisions.list_signing_requests(session, case_id=submitted.case_id)
            await decisions.create_signing_request(
                session,
                case_id=submitted.case_id,
                token_hash=token_hash(token),
                signer_user_id=maker.user_id,
                signer_name=maker.name,
                signer_role=maker.role,
                municipality_id=municipality.id,
                document=first.document,
                document_sha256=first.document_sha256,
                now=now,
                expires_at=now + self.settings.signing.link_ttl,
            )
        return token

    async def direct_room(self, user_id: str) -> str | None:
        async with self.sessions() as session:
            return await decisions.get_direct_room(session, user_id=user_id)

    async def codes(self, user_id: str) -> list[str]:
        room = await self.direct_room(user_id)
        return [
            found.group(1)
            for m in self.messenger.in_room(room or "")
            if "engångskod" in m.text and (found := CODE.search(m.text))
        ]

    async def identify(self, token: str, user_id: str = DAG) -> str:
        """Matrix-code identification through the API; the session cookie's value."""
        started = await self.call("POST", token, "/auth", body={"method": "matrix-code"})
        assert started.status == 200, started.body
        code = (await self.codes(user_id))[-1]
        done = await self.call("POST", token, "/auth/verify", body={"code": code})
        assert done.status == 200, done.body
        assert done.body == {"status": "done"}
        assert done.cookie is not None
        return done.cookie.value

    async def request(self, token: str) -> SigningRequest:
        async with self.sessions() as session:
            found = await decisions.get_by_token_hash(session, token_hash=token_hash(token))
        assert found is not None
        return found

    async def requests(self, case_id: int) -> list[SigningRequest]:
        async with self.sessions() as session:
            return await decisions.list_signing_requests(session, case_id=case_id)

    async def case_status(self, case_id: int) -> str:
        async with self.sessions() as session:
            case = await repo.get_case(session, case_id=case_id)
        assert case is not None
        return case.status

    async def audit(self, case_id: int) -> list[str]:
        async with self.sessions() as session:
            return [e.action for e in await repo.list_audit(session, case_id=case_id)]

    async def verify(self, pdf: bytes) -> FileReport:
        return await async_verify_bytes(pdf, trust_roots=[self.pki.ca_cert])


MakeEnv = Callable[..., Awaitable[Env]]


@pytest.fixture(scope="module")
def dev_pki(tmp_path_factory: pytest.TempPathFactory) -> DevPki:
    return create_dev_pki(tmp_path_factory.mktemp("devpki"))


@pytest.fixture
async def sqlite_sessions(tmp_path: Path) -> AsyncIterator[Sessions]:
    """A migrated SQLite database only (for the slower provider tests)."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'db' / 'socialjour.db'}"
    await upgrade(url)
    engine = create_engine(url)
    yield session_factory(engine)
    await engine.dispose()


@pytest.fixture
async def make_env(tmp_path: Path, dev_pki: DevPki) -> AsyncIterator[MakeEnv]:
    clients: list[TestClient] = []
    closers: list[Callable[[], Awaitable[None]]] = []
    backends: list[SigningBackend] = []

    async def make(
        sessions: Sessions,
        *,
        base_url: str = HTTP_BASE,
        methods: tuple[str, ...] = ("matrix-code",),
        providers: Mapping[str, IdentityProvider] | None = None,
        messenger: FaultyMessenger | None = None,
    ) -> Env:
        folder = tmp_path / f"env{len(clients)}"
        folder.mkdir()
        settings = write_settings(folder, dev_pki, base_url=base_url)
        settings = replace(settings, signing=replace(settings.signing, auth_methods=methods))
        messenger = messenger if messenger is not None else FaultyMessenger()
        clock = FakeClock(NOW)
        service = Services(
            settings, sessions, messenger, clock, signer=load_signer(settings.signing)
        )

        async def send_code(ctx: SigningContext, code: str) -> None:  # as bot/app.py does
            room = await service.direct_room(ctx.signer_user_id)
            await messenger.send(
                room,
                i18n.render(
                    settings.duty.language,
                    "auth.code",
                    number=ctx.case_number,
                    code=code,
                    mentions=(ctx.signer_user_id,),
                    notice=False,
                ),
            )

        service.providers = {"matrix-code": MatrixCodeProvider(send_code), **(providers or {})}
        for provider in (providers or {}).values():
            close = getattr(provider, "close", None)
            if close is not None:
                closers.append(close)

        app = create_app(
            backend=service.backend,
            public_base_url=settings.web.public_base_url,
        )
        # No cookie jar: every test says which cookie it sends.
        client = TestClient(TestServer(app, host="127.0.0.1"), cookie_jar=aiohttp.DummyCookieJar())
        await client.start_server()
        clients.append(client)
        backends.append(service.backend)
        return Env(settings, sessions, messenger, clock, service, client, dev_pki)

    yield make
    for client in clients:
        await client.close()
    for backend in backends:
        await backend.close()
    for close in closers:
        await close()


def error(answer: Answer) -> tuple[int, str]:
    assert answer.headers["Content-Type"].startswith("application/json"), answer.raw[:200]
    body = answer.body
    assert set(body) >= {"error", "message"} and body["message"], body
    return answer.status, body["error"]


async def poll_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition never became true"
        await asyncio.sleep(0.01)


# -- the link: view, unknown, foreign, tampered, expired -------------------------------------


async def test_view_shows_the_request_and_nothing_personal(
    sqlite_sessions: Sessions, make_env: MakeEnv
) -> None:
    env = await make_env(sqlite_sessions)
    sub = await env.submit()
    assert sub.token and len(sub.token) >= 43  # 32 random bytes

    answer = await env.call("GET", sub.token)

    assert answer.status == 200
    view = answer.body
    assert set(view) >= {
        "case_number",
        "decision_type",
        "status",
        "signer",
        "expires_at",
        "auth_methods",
    }
    assert view["case_number"] == sub.number
    assert view["decision_type"] == env.settings.forms["lvu6"].decision_type
    assert view["status"] == "pending"
    assert view["signer"] == "Dag Dagsson"
    assert datetime.fromisoformat(view["expires_at"]) == NOW + timedelta(hours=2)
    assert view["auth_methods"] == ["matrix-code"]
    assert view["identified"] is False
    # Nothing from the report's answers before identification.
    shown = json.dumps(view, ensure_ascii=False)
    for _, (value, display) in LVU_ANSWERS.items():
        for text in (display, value):
            if isinstance(text, str) and len(text) > 3:
                assert text not in shown, text
    for secret in ("Elsa", "Åström", PNR, PNR.replace("-", ""), TOLVAN, "Tolvan"):
        assert secret not in shown
    assert answer.headers["Cache-Control"] == "no-store"
    assert "frame-ancestors 'none'" in answer.headers["Content-Security-Policy"]

    # The link was sent to Dag's direct room only, mentioning him; the case room was told.
    dag_room = await env.direct_room(DAG)
    (alert,) = env.messenger.in_room(dag_room or "")
    assert alert.mentions == (DAG,)
    assert f"{HTTP_BASE}/s/{sub.token}" in alert.text
    assert "Elsa" not in alert.text and PNR not in alert.text
    assert any("Dag Dagsson" in m.text for m in env.messenger.in_room(sub.room_id))

    # The page itself (the script fetches the rest).
    page = await env.fetch("GET", f"/s/{sub.token}")
    assert page.status == 200 and page.headers["Content-Type"].startswith("text/html")
    assert "Underteckna beslut" in page.text and "Elsa" not in page.text


async def test_unknown_foreign_and_tampered_tokens_are_404(
    sqlite_sessions: Sessions, make_env: MakeEnv
) -> None:
    env = await make_env(sqlite_sessions)
    sub = await env.submit()
    position = len(sub.token) // 2
    changed = "A" if sub.token[position] != "A" else "B"
    tampered = sub.token[:position] + changed + sub.token[position + 1 :]
    foreign = secrets.token_urlsafe(32)  # the right length, never issued
    assert len(foreign) == len(sub.token)
    for token in (tampered, foreign, "x" * 25, "short", "y" * 101, sub.token + "A"):
        for method, path, body in (
            ("GET", "", None),
            ("POST", "/auth", {"method": "matrix-code"}),
            ("POST", "/auth/verify", {"code": "123456"}),
            ("GET", "/auth/status", None),
            ("GET", "/document.pdf", None),
            ("POST", "/decision", {"action": "sign"}),
        ):
            answer = await env.call(method, token, path, body=body)
            assert error(answer) == (404, "not_found"), (token, path)
            assert answer.body["message"].startswith("Länken är ogiltig")
    english = await env.call("GET", foreign, query={"lang": "en"})
    assert english.body["message"].startswith("The link is not valid")
    # A cut-off link still gets the page (HTML, not JSON); its first API call, asserted
    # above, makes it say that the link is invalid.
    cut_off = await env.fetch("GET", "/s/short")
    assert cut_off.status == 200 and cut_off.headers["Content-Type"].startswith("text/html")
    # Nothing was sent to anyone for the bad tokens.
    assert await env.codes(DAG) == []
    assert (await env.request(sub.token)).auth_attempts == 0


async def test_a_cookie_opens_only_its_own_request(sessions: Sessions, make_env: MakeEnv) -> None:
    env = await make_env(sessions)
    first, second = await env.submit(), await env.submit()
    assert first.number != second.number
    cookie = await env.identify(first.token)

    own = await env.call("GET", first.token, "/document.pdf", cookie=cookie)
    assert own.status == 200 and own.headers["Content-Type"] == "application/pdf"
    assert hashlib.sha256(own.raw).hexdigest() == (await env.request(first.token)).document_sha256
    other = await env.call("GET", second.token, "/document.pdf", cookie=cookie)
    assert error(other) == (401, "not_identified")
    sign_other = await env.call(
        "POST", second.token, "/decision", body={"action": "sign"}, cookie=cookie
    )
    assert error(sign_other) == (401, "not_identified")
    assert (await env.call("GET", second.token, cookie=cookie)).body["identified"] is False
    assert await env.case_status(second.case_id) == "awaiting_signature"


async def test_expired_link_is_410(sessions: Sessions, make_env: MakeEnv) -> None:
    env = await make_env(sessions)
    sub = await env.submit()
    ttl = env.settings.signing.link_ttl
    env.clock.advance(seconds=ttl.total_seconds() - 600)
    cookie = await env.identify(sub.token)  # identified ten minutes before the end
    env.clock.advance(seconds=601)

    for method, path, body, with_cookie in (
        ("GET", "", None, False),
        ("POST", "/auth", {"method": "matrix-code"}, False),
        ("POST", "/auth/verify", {"code": "123456"}, False),
        ("GET", "/auth/status", None, False),
        ("POST", "/decision", {"action": "sign"}, True),
        ("POST", "/decision", {"action": "decline", "reason": "Nej."}, True),
    ):
        sent = cookie if with_cookie else None
        answer = await env.call(method, sub.token, path, body=body, cookie=sent)
        assert error(answer) == (410, "expired"), (method, path)
        assert answer.body["message"] == "Länken har gått ut. Be jouren skicka en ny."
    assert len(await env.codes(DAG)) == 1  # no new code for an expired link
    assert await env.case_status(sub.case_id) == "awaiting_signature"


async def test_expired_link_is_410_on_document_and_decision_too(
    sessions: Sessions, make_env: MakeEnv
) -> None:
    env = await make_env(sessions)
    sub = await env.submit()
    env.clock.advance(seconds=env.settings.signing.link_ttl.total_seconds() - 600)
    cookie = await env.identify(sub.token)
    env.clock.advance(seconds=601)
    found = {
        "document, identified": (
            await env.call("GET", sub.token, "/document.pdf", cookie=cookie)
        ).status,
        "document, anonymous": (await env.call("GET", sub.token, "/document.pdf")).status,
        "decision, anonymous": (
            await env.call("POST", sub.token, "/decision", body={"action": "sign"})
        ).status,
    }
    assert found == dict.fromkeys(found, 410)


async def test_after_a_decision_the_view_says_so_and_everything_else_is_409(
    sessions: Sessions, make_env: MakeEnv
) -> None:
    env = await make_env(sessions)
    sub = await env.submit()
    cookie = await env.identify(sub.token)
    declined = await env.decline(sub.token, "Underlaget räcker inte.", cookie)
    assert declined.status == 200, declined.body

    view = await env.call("GET", sub.token, cookie=cookie)
    assert view.status == 200 and view.body["status"] == "declined"
    for method, path, body in (
        ("POST", "/auth", {"method": "matrix-code"}),
        ("POST", "/auth/verify", {"code": "123456"}),
        ("GET", "/auth/status", None),
        ("POST", "/decision", {"action": "sign"}),
        ("POST", "/decision", {"action": "decline", "reason": "Igen."}),
    ):
        answer = await env.call(method, sub.token, path, body=body, cookie=cookie)
        assert error(answer) == (409, "already_decided"), (method, path)
        assert answer.body["message"] == (
            "Beslutet är redan avslaget av Dag Dagsson. Inget mer behöver göras här."
        )
    # Long after, the decided link still says what happened (not "expired").
    env.clock.advance(days=2)
    assert (await env.call("GET", sub.token)).body["status"] == "declined"


# -- matrix-code identification and the session cookie ---------------------------------------


async def test_matrix_code_comes_to_the_direct_room_and_a_wrong_code_is_401(
    sqlite_sessions: Sessions, make_env: MakeEnv
) -> None:
    env = await make_env(sqlite_sessions)
    sub = await env.submit()

    started = await env.call("POST", sub.token, "/auth", body={"method": "matrix-code"})

    assert started.status == 200
    assert started.body == {"method": "matrix-code", "digits": 6, "expires_in": 600}
    assert started.cookie is None
    dag_room = await env.direct_room(DAG)
    code_message = env.messenger.in_room(dag_room or "")[-1]
    assert code_message.mentions == (DAG,)
    assert sub.number in code_message.text
    (code,) = await env.codes(DAG)
    assert code not in json.dumps(started.body)
    for r, m in env.messenger.sent:  # the code went nowhere else
        assert r == dag_room or code not in m.text
    stored = await env.request(sub.token)
    assert code not in json.dumps(stored.auth_state)  # only a salted hash is kept

    wrong = "000000" if code != "000000" else "111111"
    answer = await env.call("POST", sub.token, "/auth/verify", body={"code": wrong})
    assert error(answer) == (401, "not_identified")
    assert answer.body["code"] == "wrong_code"
    assert answer.body["message"] == "Fel kod. Kontrollera siffrorna och försök igen."
    assert answer.cookie is None
    english = await env.call(
        "POST", sub.token, "/auth/verify", body={"code": "12"}, headers={"Accept-Language": "en"}
    )
    assert english.body["message"] == "Wrong code. Check the digits and try again."

    right = await env.call(
        "POST", sub.token, "/auth/verify", body={"code": f"{code[:3]} {code[3:]}"}
    )
    assert right.status == 200 and right.cookie is not None
    assert (await env.call("GET", sub.token, cookie=right.cookie.value)).body["identified"] is True
    assert "signer.identified" in await env.audit(sub.case_id)
    # The code is single-use: identification is over.
    again = await env.call("POST", sub.token, "/auth/verify", body={"code": code})
    assert error(again) == (400, "bad_request")


async def test_verify_before_starting_is_400_and_unknown_methods_are_refused(
    sqlite_sessions: Sessions, make_env: MakeEnv
) -> None:
    env = await make_env(sqlite_sessions)
    sub = await env.submit()
    early = await env.call("POST", sub.token, "/auth/verify", body={"code": "123456"})
    assert error(early) == (400, "bad_request")
    assert early.body["message"] == "Börja med att välja hur du vill identifiera dig."
    for method in ("bankid", "oidc", "", "password"):  # bankid/oidc not configured here
        answer = await env.call("POST", sub.token, "/auth", body={"method": method})
        assert error(answer) == (400, "bad_request"), method
        assert answer.body["message"] == "Det identifieringssättet används inte här."


async def test_five_failures_lock_the_code_even_the_right_one(
    sessions: Sessions, make_env: MakeEnv
) -> None:
    env = await make_env(sessions)
    sub = await env.submit()
    await env.call("POST", sub.token, "/auth", body={"method": "matrix-code"})
    (code,) = await env.codes(DAG)
    wrong = "000000" if code != "000000" else "111111"
    statuses = [
        (await env.call("POST", sub.token, "/auth/verify", body={"code": wrong})).status
        for _ in range(5)
    ]
    assert statuses == [401, 401, 401, 401, 429]

    right = await env.call("POST", sub.token, "/auth/verify", body={"code": code})

    assert error(right) == (429, "too_many_attempts")
    assert right.body["message"] == "För många försök. Be jouren skicka en ny länk."
    assert right.cookie is None
    assert (await env.call("GET", sub.token, "/document.pdf")).status == 401


async def test_restarting_identification_does_not_lift_the_limit(
    sessions: Sessions, make_env: MakeEnv
) -> None:
    env = await make_env(sessions)
    sub = await env.submit()
    await env.call("POST", sub.token, "/auth", body={"method": "matrix-code"})
    for _ in range(5):
        await env.call("POST", sub.token, "/auth/verify", body={"code": "abcdef"})

    restarted = await env.call("POST", sub.token, "/auth", body={"method": "matrix-code"})
    code = (await env.codes(DAG))[-1]
    answer = await env.call("POST", sub.token, "/auth/verify", body={"code": code})

    assert (restarted.status, answer.status) == (429, 429)


@pytest.mark.parametrize(("base_url", "secure"), [(HTTP_BASE, False), (HTTPS_BASE, True)])
async def test_session_cookie_is_httponly_strict_scoped_and_secure_on_https(
    sqlite_sessions: Sessions, make_env: MakeEnv, base_url: str, secure: bool
) -> None:
    env = await make_env(sqlite_sessions, base_url=base_url)
    sub = await env.submit()
    await env.call("POST", sub.token, "/auth", body={"method": "matrix-code"})
    (code,) = await env.codes(DAG)

    answer = await env.call("POST", sub.token, "/auth/verify", body={"code": code})

    morsel = answer.cookie
    assert morsel is not None
    assert morsel["httponly"] is True
    assert morsel["samesite"] == "Strict"
    assert morsel["path"] == f"/api/v1/signing/{sub.token}"
    assert bool(morsel["secure"]) is secure
    assert 0 < int(morsel["max-age"]) <= 1800
    assert len(morsel.value) >= 40
    assert morsel.value not in json.dumps(answer.body)
    stored = await env.request(sub.token)
    assert stored.session_hash == token_hash(morsel.value)  # only its hash is kept


async def test_document_needs_the_session_which_expires(
    sessions: Sessions, make_env: MakeEnv
) -> None:
    env = await make_env(sessions)
    sub = await env.submit()
    anonymous = await env.call("GET", sub.token, "/document.pdf")
    assert error(anonymous) == (401, "not_identified")
    assert anonymous.body["message"] == "Identifiera dig först."
    cookie = await env.identify(sub.token)

    forged = cookie[:-1] + ("x" if cookie[-1] != "x" else "y")
    wrong_cookie = await env.call("GET", sub.token, "/document.pdf", cookie=forged)
    assert wrong_cookie.status == 401
    document = await env.call("GET", sub.token, "/document.pdf", cookie=cookie)
    assert document.status == 200
    assert document.raw.startswith(b"%PDF")
    assert document.headers["Content-Type"] == "application/pdf"
    assert (
        hashlib.sha256(document.raw).hexdigest()
        == (await env.call("GET", sub.token)).body["document_sha256"]
    )

    env.clock.advance(minutes=31)  # the session lasts 30 minutes
    assert (await env.call("GET", sub.token, "/document.pdf", cookie=cookie)).status == 401
    assert (await env.call("GET", sub.token, cookie=cookie)).body["identified"] is False


# -- CSRF --------------------------------------------------------------------------------------


async def test_posts_must_be_json_objects_from_our_own_origin(
    sqlite_sessions: Sessions, make_env: MakeEnv
) -> None:
    env = await make_env(sqlite_sessions, base_url=HTTPS_BASE)
    sub = await env.submit()
    cookie = await env.identify(sub.token)
    for path, body in (
        ("/auth", {"method": "matrix-code"}),
        ("/auth/verify", {"code": "123456"}),
        ("/decision", {"action": "sign"}),
    ):
        for origin in (
            "https://evil.example",
            "null",
            HTTP_BASE,
            "https://signera.example.org:444",
        ):
            answer = await env.call(
                "POST", sub.token, path, body=body, cookie=cookie, headers={"Origin": origin}
            )
            assert error(answer) == (403, "forbidden"), (path, origin)
            assert answer.body["message"] == "Begäran kom inte från signeringssidan."
        form = await env.call(
            "POST",
            sub.token,
            path,
            data="action=sign",
            cookie=cookie,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert error(form) == (400, "bad_request"), path
        plain = await env.call(
            "POST",
            sub.token,
            path,
            data=json.dumps(body),
            cookie=cookie,
            headers={"Content-Type": "text/plain"},
        )
        assert error(plain) == (400, "bad_request"), path
        for not_an_object in ("[1, 2]", '"sign"', "null", "{broken"):
            answer = await env.call(
                "POST",
                sub.token,
                path,
                data=not_an_object,
                cookie=cookie,
                headers={"Content-Type": "application/json"},
            )
            assert error(answer) == (400, "bad_request"), (path, not_an_object)
    assert await env.case_status(sub.case_id) == "awaiting_signature"
    assert len(await env.codes(DAG)) == 1  # no POST above started anything

    same_origin = await env.call(
        "POST",
        sub.token,
        "/decision",
        body={"action": "sign"},
        cookie=cookie,
        headers={"Origin": HTTPS_BASE},
    )
    assert same_origin.status == 200, same_origin.body


# -- deciding ----------------------------------------------------------------------------------


async def test_decline_needs_a_reason_and_reaches_the_case_room(
    sessions: Sessions, make_env: MakeEnv
) -> None:
    env = await make_env(sessions)
    sub = await env.submit()
    cookie = await env.identify(sub.token)
    for body in ({"action": "decline"}, {"action": "decline", "reason": "  \n "}):
        answer = await env.call("POST", sub.token, "/decision", body=body, cookie=cookie)
        assert error(answer) == (400, "bad_request")
        assert answer.body["message"] == "Skriv en motivering när du avslår."
    unknown = await env.call(
        "POST", sub.token, "/decision", body={"action": "maybe"}, cookie=cookie
    )
    assert error(unknown) == (400, "bad_request")
    assert await env.case_status(sub.case_id) == "awaiting_signature"

    answer = await env.decline(sub.token, "  Fel paragraf, se LVU 2 §.  ", cookie)

    assert answer.status == 200
    await env.posted()
    request = await env.request(sub.token)
    # A refusal is a decision too: sealed, kept with the request and posted to the room.
    assert answer.body == {"status": "declined", "document_sha256": request.signed_sha256}
    assert request.status == "declined" and request.decision_reason == "Fel paragraf, se LVU 2 §."
    assert await env.case_status(sub.case_id) == "declined"
    told = env.messenger.in_room(sub.room_id)[-1]
    assert "Dag Dagsson beslutade att inte fatta det föreslagna beslutet" in told.text
    assert "Fel paragraf, se LVU 2 §." in told.text
    assert ANNA in told.mentions
    ((name, refusal),) = env.messenger.files_in(sub.room_id)
    assert name == f"{sub.number}-beslut-avslag.pdf" and refusal == request.signed_document
    assert hashlib.sha256(refusal).hexdigest() == request.signed_sha256
    assert (await env.verify(refusal)).ok


async def test_sign_gives_a_validated_pdf_in_the_case_room(
    sessions: Sessions, make_env: MakeEnv
) -> None:
    env = await make_env(sessions)
    sub = await env.submit()
    cookie = await env.identify(sub.token)

    answer = await env.call("POST", sub.token, "/decision", body={"action": "sign"}, cookie=cookie)

    assert answer.status == 200, answer.body
    assert set(answer.body) == {"status", "document_sha256"}
    assert answer.body["status"] == "signed"
    await env.posted()  # the room gets it from a background task
    ((name, signed),) = env.messenger.files_in(sub.room_id)
    assert name == f"{sub.number}-beslut.pdf"
    assert hashlib.sha256(signed).hexdigest() == answer.body["document_sha256"]
    request = await env.request(sub.token)
    assert request.status == "signed" and request.signed_document == signed
    assert request.signed_sha256 == answer.body["document_sha256"] != request.document_sha256
    assert request.posted_at is not None
    report = await env.verify(signed)
    assert report.ok, report
    (signature,) = report.signatures
    assert signature.trusted and signature.intact and signature.whole_document
    assert signature.on_behalf_of == "Dag Dagsson"
    assert report.evidence is not None and report.evidence["method"] == "matrix-code"
    assert report.evidence["subject"] == DAG
    assert await env.case_status(sub.case_id) == "signed"
    told = env.messenger.in_room(sub.room_id)[-1]
    assert "undertecknat" in told.text and "Dag Dagsson" in told.text
    assert answer.body["document_sha256"] in told.text
    assert told.mentions == (ANNA,)
    audit = await env.audit(sub.case_id)
    assert audit.count("decision.signed") == 1 and "status.signed" in audit

    # The signed document is what the link now serves; the view shows its hash.
    document = await env.call("GET", sub.token, "/document.pdf", cookie=cookie)
    assert document.raw == signed
    assert (await env.call("GET", sub.token)).body["document_sha256"] == request.signed_sha256


async def test_sign_without_a_seal_is_503_and_changes_nothing(
    sqlite_sessions: Sessions, make_env: MakeEnv
) -> None:
    env = await make_env(sqlite_sessions)
    env.service.signer = None
    sub = await env.submit()
    cookie = await env.identify(sub.token)
    answer = await env.call("POST", sub.token, "/decision", body={"action": "sign"}, cookie=cookie)
    assert error(answer) == (503, "unavailable")
    assert "inte konfigurerad" in answer.body["message"]
    assert await env.case_status(sub.case_id) == "awaiting_signature"


# -- two decision-makers at once -------------------------------------------------------------


def settle_together(service: Services, parties: int = 2) -> None:
    """Hold every decision at the database step until all parties have reached it."""
    barrier = asyncio.Barrier(parties)
    settle = service.backend._settle

    async def together(*args: Any, **kwargs: Any) -> dict[str, Any]:
        await asyncio.wait_for(barrier.wait(), timeout=30)
        return await settle(*args, **kwargs)

    service.backend._settle = together  # type: ignore[method-assign]


@pytest.mark.parametrize("second_action", ["sign", "decline"])
async def test_two_decision_makers_at_once_make_exactly_one_decision(
    sessions: Sessions, make_env: MakeEnv, second_action: str
) -> None:
    env = await make_env(sessions)
    sub = await env.submit()
    eva_token = await env.add_request(sub, EVA)
    dag_cookie = await env.identify(sub.token, DAG)
    eva_cookie = await env.identify(eva_token, EVA)
    settle_together(env.service)

    dag, eva = await asyncio.gather(
        env.call("POST", sub.token, "/decision", body={"action": "sign"}, cookie=dag_cookie),
        env.call(
            "POST",
            eva_token,
            "/decision",
            body={"action": second_action, "reason": "Inte nödvändigt."},
            cookie=eva_cookie,
        ),
    )

    assert sorted([dag.status, eva.status]) == [200, 409], (dag.body, eva.body)
    await env.posted()
    winner, loser = (dag, eva) if dag.status == 200 else (eva, dag)
    assert error(loser) == (409, "already_decided")
    outcome = winner.body["status"]
    winner_name = "Dag Dagsson" if winner is dag else "Eva Evasdotter"
    assert winner_name in loser.body["message"]  # told who decided
    requests = await env.requests(sub.case_id)
    assert sorted(r.status for r in requests) == sorted([outcome, "superseded"])
    # One sealed document: the signed decision, or the refusal (a decision too).
    assert sum(r.signed_document is not None for r in requests) == 1
    assert await env.case_status(sub.case_id) == outcome
    assert len(env.messenger.files_in(sub.room_id)) == 1
    audit = await env.audit(sub.case_id)
    assert audit.count("decision.signed") + audit.count("decision.declined") == 1
    # The loser's link now says who decided, also when merely opened.
    loser_token = eva_token if winner is dag else sub.token
    assert error(await env.call("GET", loser_token)) == (409, "already_decided")


async def test_the_loser_is_told_who_decided(sessions: Sessions, make_env: MakeEnv) -> None:
    env = await make_env(sessions)
    sub = await env.submit()
    eva_token = await env.add_request(sub, EVA)
    dag_cookie = await env.identify(sub.token, DAG)
    eva_cookie = await env.identify(eva_token, EVA)
    signed = await env.call(
        "POST", sub.token, "/decision", body={"action": "sign"}, cookie=dag_cookie
    )
    assert signed.status == 200

    late = await env.call(
        "POST", eva_token, "/decision", body={"action": "sign"}, cookie=eva_cookie
    )
    view = await env.call("GET", eva_token, cookie=eva_cookie)

    assert error(late) == (409, "already_decided")
    assert late.body["message"] == (
        "Beslutet är redan undertecknat av Dag Dagsson. Inget mer behöver göras här."
    )
    assert error(view) == (409, "already_decided")
    assert "Dag Dagsson" in view.body["message"]
    english = await env.call(
        "POST",
        eva_token,
        "/auth",
        body={"method": "matrix-code"},
        headers={"Accept-Language": "en"},
    )
    assert english.body["message"] == (
        "The decision has already been signed by Dag Dagsson. Nothing more is needed here."
    )


# -- a crash between signing and posting ------------------------------------------------------


async def test_crash_before_posting_is_repaired_by_recover_once(
    sessions: Sessions, make_env: MakeEnv
) -> None:
    messenger = FaultyMessenger(file_failures=1)
    env = await make_env(sessions, messenger=messenger)
    sub = await env.submit()
    cookie = await env.identify(sub.token)

    answer = await env.call("POST", sub.token, "/decision", body={"action": "sign"}, cookie=cookie)

    # The homeserver's failure is the background post's, not the signer's.
    assert answer.status == 200
    await env.posted()  # the post failed
    request = await env.request(sub.token)
    assert request.status == "signed" and request.signed_document is not None
    assert request.posted_at is None
    assert await env.case_status(sub.case_id) == "signed"
    assert messenger.files_in(sub.room_id) == []
    retry = await env.call("POST", sub.token, "/decision", body={"action": "sign"}, cookie=cookie)
    assert error(retry) == (409, "already_decided")

    await env.service.recover()  # at start-up, or the next minute's sweep

    ((name, pdf),) = messenger.files_in(sub.room_id)
    assert name == f"{sub.number}-beslut.pdf" and pdf == request.signed_document
    assert hashlib.sha256(pdf).hexdigest() == request.signed_sha256
    assert (await env.verify(pdf)).ok
    assert sum("undertecknat" in m.text for m in messenger.in_room(sub.room_id)) == 1
    assert (await env.request(sub.token)).posted_at is not None

    sent, files = len(messenger.sent), len(messenger.files)
    await env.service.recover()
    assert (len(messenger.sent), len(messenger.files)) == (sent, files)


async def test_crash_before_posting_still_tells_the_signer_it_is_signed(
    sessions: Sessions, make_env: MakeEnv
) -> None:
    env = await make_env(sessions, messenger=FaultyMessenger(file_failures=1))
    sub = await env.submit()
    cookie = await env.identify(sub.token)

    answer = await env.call("POST", sub.token, "/decision", body={"action": "sign"}, cookie=cookie)

    assert answer.status == 200, answer.body
    assert answer.body == {
        "status": "signed",
        "document_sha256": (await env.request(sub.token)).signed_sha256,
    }


async def test_recover_during_a_live_post_does_not_post_twice(
    sessions: Sessions, make_env: MakeEnv
) -> None:
    messenger = FaultyMessenger()
    env = await make_env(sessions, messenger=messenger)
    sub = await env.submit()
    cookie = await env.identify(sub.token)
    messenger.file_gate = asyncio.Event()  # a slow upload of the signed PDF

    answer = await env.call("POST", sub.token, "/decision", body={"action": "sign"}, cookie=cookie)
    assert answer.status == 200  # the signer does not wait for the upload
    await poll_until(lambda: messenger.files_waiting == 1)
    # The minute's sweep leaves a post under way alone, and returns at once.
    await asyncio.wait_for(env.service.recover(), timeout=5)
    assert messenger.files_waiting == 1
    messenger.file_gate.set()
    await env.posted()

    assert len(messenger.files_in(sub.room_id)) == 1
    assert (await env.request(sub.token)).posted_at is not None


async def test_a_failure_after_the_upload_does_not_post_the_pdf_twice(
    sessions: Sessions, make_env: MakeEnv
) -> None:
    messenger = FaultyMessenger()
    env = await make_env(sessions, messenger=messenger)
    sub = await env.submit()
    cookie = await env.identify(sub.token)
    messenger.text_failures[sub.room_id] = 1

    await env.call("POST", sub.token, "/decision", body={"action": "sign"}, cookie=cookie)
    await env.posted()  # the PDF went up, the announcement failed
    await env.service.recover()

    assert len(messenger.files_in(sub.room_id)) == 1
    assert sum("undertecknat" in m.text for m in messenger.in_room(sub.room_id)) == 1


# -- the case changes under the link ---------------------------------------------------------


async def test_cancelling_the_case_closes_its_link(sessions: Sessions, make_env: MakeEnv) -> None:
    env = await make_env(sessions)
    sub = await env.submit()
    dispatcher = Dispatcher(
        settings=env.settings, sessions=env.sessions, messenger=env.messenger, clock=env.clock
    )
    for event, body in (("$c1", "!avbryt"), ("$c2", "!avbryt ja")):
        await dispatcher.handle(IncomingMessage(sub.room_id, ANNA, event, body))
    assert await env.case_status(sub.case_id) == "cancelled"

    view = await env.call("GET", sub.token)
    started = await env.call("POST", sub.token, "/auth", body={"method": "matrix-code"})

    assert view.status in (409, 410) or view.body["status"] != "pending"
    assert started.status in (409, 410)


# -- nobody on call ----------------------------------------------------------------------------


async def test_nobody_on_call_sends_the_case_back_to_drafting(
    sessions: Sessions, make_env: MakeEnv
) -> None:
    env = await make_env(sessions)

    sub = await env.submit("tibro")  # Tibro has no decision-makers

    assert sub.token == ""
    assert await env.case_status(sub.case_id) == "drafting"
    assert await env.requests(sub.case_id) == []
    async with env.sessions() as session:
        report = await repo.get_report(session, case_id=sub.case_id)
    assert report is not None and report.submitted_at is None  # open for editing again
    told = env.messenger.in_room(sub.room_id)[-1]
    assert "Ingen beslutsfattare har jour för Tibro kommun" in told.text
    assert "!jour ersätt" in told.text and "!skicka" in told.text
    leads = env.messenger.in_room("!duty:test")[-1]  # the duty leads get a notification
    assert leads.mentions == (LENA,) and "Tibro kommun" in leads.text
    assert told.notice is False
    assert all(name for name, _ in env.messenger.rooms.values())  # no direct room made
    # Nobody could be asked, so the case never left drafting (no status change at all).
    assert "status.awaiting_signature" not in await env.audit(sub.case_id)


async def test_nobody_with_a_valid_appointment_is_nobody_on_call(
    sessions: Sessions, make_env: MakeEnv
) -> None:
    """Hjo has a decision-maker, but her appointment ran out: she is never asked."""
    env = await make_env(sessions)

    sub = await env.submit("hjo")

    assert sub.token == ""
    assert await env.case_status(sub.case_id) == "drafting"
    assert await env.requests(sub.case_id) == []
    told = env.messenger.in_room(sub.room_id)[-1]
    assert "Ingen beslutsfattare har jour för Hjo kommun" in told.text
    leads = env.messenger.in_room("!duty:test")[-1]
    assert leads.mentions == (LENA,) and "Hjo kommun" in leads.text
    assert await env.direct_room(HEDDA) is None  # never contacted


# -- the decision date is the signature's -------------------------------------------------------


async def test_a_report_sent_at_2350_and_signed_at_0010_decides_on_the_next_day(
    sessions: Sessions, make_env: MakeEnv, tmp_path: Path
) -> None:
    env = await make_env(sessions)
    env.clock.now = datetime(2026, 11, 24, 22, 50, tzinfo=UTC)  # 23:50 in Stockholm
    sub = await env.submit()
    reviewed = (await env.request(sub.token)).document
    shown = pdf_text(reviewed, tmp_path, name="reviewed.pdf")
    assert "Beslutsdatum dagen för underskriften" in shown
    assert "upprättat 2026-11-24 kl. 23:50" in shown

    env.clock.now = datetime(2026, 11, 24, 23, 10, tzinfo=UTC)  # 00:10 on the 25th
    cookie = await env.identify(sub.token)
    answer = await env.call("POST", sub.token, "/decision", body={"action": "sign"}, cookie=cookie)

    assert answer.status == 200, answer.body
    request = await env.request(sub.token)  # stored before the API answered
    assert request.status == "signed" and request.signed_document is not None
    assert request.decided_at == env.clock.now
    sealed = pdf_text(request.signed_document, tmp_path, name="sealed.pdf")
    assert "Beslutsdatum 2026-11-25" in sealed
    assert "Beslutat 2026-11-25 kl. 00:10" in sealed
    assert "dagen för underskriften" not in sealed
    assert "upprättat 2026-11-24 kl. 23:50" in sealed  # the report keeps its own time
    assert (
        "Ordförande i Socialnämnden, vald av Kommunfullmäktige den 2023-01-12, § 4 "
        "(gäller till och med 2030-12-31), med stöd av 6 § andra stycket LVU, då nämndens "
        "beslut inte kunde avvaktas."
    ) in sealed
    report = await env.verify(request.signed_document)
    assert report.ok, report
    assert report.evidence is not None and report.evidence["decision"] == {
        "decided_at": "2026-11-24T23:10:00+00:00",
        "reviewed_sha256": request.document_sha256,
        "rendered_at_signing": True,
    }
    assert report.evidence["method"] == "matrix-code"


async def test_when_the_reviewed_document_cannot_be_made_again_it_is_sealed_as_it_is(
    sqlite_sessions: Sessions, make_env: MakeEnv, tmp_path: Path
) -> None:
    """The configuration changed between the link and the signature: what the signer was
    shown is sealed, and it says the decision date is the day of signing."""
    env = await make_env(sqlite_sessions)
    sub = await env.submit()
    skovde = env.settings.municipality("skovde")
    assert skovde is not None
    renamed = replace(skovde, body_name="Individ- och familjenämnden")
    backend = env.service.backend
    backend.settings = replace(
        env.settings,
        municipalities=tuple(
            renamed if m.id == "skovde" else m for m in env.settings.municipalities
        ),
    )
    cookie = await env.identify(sub.token)

    answer = await env.call("POST", sub.token, "/decision", body={"action": "sign"}, cookie=cookie)

    assert answer.status == 200, answer.body
    request = await env.request(sub.token)
    assert request.signed_document is not None
    assert request.signed_document.startswith(request.document)  # an incremental update of it
    sealed = pdf_text(request.signed_document, tmp_path)
    assert "Beslutsdatum dagen för underskriften" in sealed and "Socialnämnden" in sealed
    report = await env.verify(request.signed_document)
    assert report.ok and report.evidence is not None
    assert report.evidence["decision"]["rendered_at_signing"] is False
    assert report.evidence["decision"]["reviewed_sha256"] == request.document_sha256


@pytest.mark.parametrize("action", ["sign", "decline"])
async def test_without_an_appointment_that_holds_at_signing_nobody_decides(
    sqlite_sessions: Sessions, make_env: MakeEnv, action: str
) -> None:
    """The appointment ran out between the alert and the signature (here: the record of it
    changed): the signature is refused, and nothing changes."""
    env = await make_env(sqlite_sessions)
    sub = await env.submit()
    skovde = env.settings.municipality("skovde")
    assert skovde is not None and skovde.decision_makers[0].appointment is not None
    dag = skovde.decision_makers[0]
    lapsed = replace(dag, appointment=replace(dag.appointment, valid_until=date(2026, 11, 23)))
    env.service.backend.settings = replace(
        env.settings,
        municipalities=(replace(skovde, decision_makers=(lapsed, *skovde.decision_makers[1:])),),
    )
    cookie = await env.identify(sub.token)

    answer = await env.call(
        "POST", sub.token, "/decision", body={"action": action, "reason": "nej"}, cookie=cookie
    )

    assert error(answer) == (403, "forbidden")
    assert await env.case_status(sub.case_id) == "awaiting_signature"
    assert (await env.request(sub.token)).status == "pending"


# -- BankID through the API ------------------------------------------------------------------


@pytest.fixture(scope="module")
def bankid_pki(tmp_path_factory: pytest.TempPathFactory) -> BankIdPki:
    return make_pki(tmp_path_factory.mktemp("bankid-pki"))


@pytest.fixture
async def bankid_server(bankid_pki: BankIdPki) -> AsyncIterator[BankIdTestServer]:
    async with BankIdTestServer(bankid_pki) as running:
        yield running


@pytest.fixture
async def bankid_env(
    sqlite_sessions: Sessions,
    make_env: MakeEnv,
    bankid_pki: BankIdPki,
    bankid_server: BankIdTestServer,
) -> Env:
    settings = BankIdSettings(
        url=bankid_server.url,
        client_cert=bankid_pki.client_cert,
        client_key=bankid_pki.client_key,
        ca_cert=bankid_pki.server_ca,
        client_key_password=bankid_pki.client_key_password,
    )
    provider = BankIdProvider(settings, collect_interval=0)
    return await make_env(
        sqlite_sessions, methods=("matrix-code", "bankid"), providers={"bankid": provider}
    )


async def test_bankid_through_the_api(bankid_env: Env, bankid_server: BankIdTestServer) -> None:
    env = bankid_env
    sub = await env.submit()
    view = (await env.call("GET", sub.token)).body
    assert view["auth_methods"] == ["matrix-code", "bankid"]
    bankid_server.expected_sha256 = view["document_sha256"]  # shown in the app, or refused
    bankid_server.queue(Scenario(hints=("outstandingTransaction", "userSign")))

    started = await env.call("POST", sub.token, "/auth", body={"method": "bankid"})

    assert started.status == 200, started.body
    assert started.body["method"] == "bankid"
    assert set(started.body) >= {"autoStartToken", "autostart_url", "qr", "qr_svg"}
    assert "qrStartSecret" not in json.dumps(started.body)
    (order,) = bankid_server.recorded("sign")
    assert order.client_cn == "Socialjour RP"
    assert order.body["requirement"] == {"personalNumber": TOLVAN.replace("-", "")}
    assert order.body["endUserIp"] == "127.0.0.1"

    first = await env.call("GET", sub.token, "/auth/status")
    assert first.status == 200 and first.cookie is None
    assert first.body["status"] == "pending" and first.body["message"] == "Öppna BankID-appen."
    assert first.body["qr"].startswith("bankid.")
    second = await env.call("GET", sub.token, "/auth/status", query={"lang": "en"})
    assert second.body["status"] == "pending" and "security code" in second.body["message"]
    done = await env.call("GET", sub.token, "/auth/status")
    assert done.status == 200 and done.body == {"status": "done"}
    assert done.cookie is not None and done.cookie["httponly"] is True
    cookie = done.cookie.value

    signed = await env.call("POST", sub.token, "/decision", body={"action": "sign"}, cookie=cookie)

    assert signed.status == 200, signed.body
    await env.posted()
    ((_, pdf),) = env.messenger.files_in(sub.room_id)
    report = await env.verify(pdf)
    assert report.ok and report.evidence is not None
    assert "BankID" in (report.signatures[0].reason or "")
    # What travels with the PDF proves the identification without the personal
    # identity number or the device's IP address (issue 10): method, time, name, the
    # order reference and a digest of the full record, which stays in the database.
    request = await env.request(sub.token)
    embedded = report.evidence
    assert embedded["method"] == "bankid" and embedded["name"] == request.identity["name"]
    assert embedded["reference"] == {"orderRef": request.identity["evidence"]["orderRef"]}
    assert "subject" not in embedded and "evidence" not in embedded
    shown = json.dumps(embedded)
    assert TOLVAN.replace("-", "") not in shown and TOLVAN not in shown
    assert "127.0.0.1" not in shown
    completion = request.identity["evidence"]["completionData"]
    assert completion["user"]["personalNumber"] == TOLVAN.replace("-", "")
    full = json.dumps(request.identity, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert embedded["evidence_sha256"] == hashlib.sha256(full.encode()).hexdigest()
    # The audit export carries the full record, byte for byte as digested.
    export = await export_case(
        env.sessions, env.settings, number=sub.number, actor="cli:test", now=env.clock.now
    )
    assert export is not None
    with zipfile.ZipFile(io.BytesIO(export.data)) as archive:
        record = archive.read(f"{sub.number}/evidence/decision-{request.id}-identification.json")
    assert hashlib.sha256(record).hexdigest() == embedded["evidence_sha256"]
    assert json.loads(record)["evidence"]["completionData"] == completion


@pytest.mark.parametrize(
    ("hint", "swedish"),
    [("userCancel", "Du avbröt"), ("expiredTransaction", "svarade inte i tid")],
)
async def test_bankid_cancel_and_expiry_are_clear_401s(
    bankid_env: Env, bankid_server: BankIdTestServer, hint: str, swedish: str
) -> None:
    env = bankid_env
    sub = await env.submit()
    bankid_server.queue(Scenario.failing(hint))
    assert (await env.call("POST", sub.token, "/auth", body={"method": "bankid"})).status == 200
    assert (await env.call("GET", sub.token, "/auth/status")).body["status"] == "pending"

    failed = await env.call("GET", sub.token, "/auth/status")

    assert error(failed) == (401, "not_identified")
    assert failed.body["code"] == hint and failed.body["retry"] is True
    assert swedish in failed.body["message"]
    assert failed.cookie is None
    assert (await env.call("GET", sub.token, "/document.pdf")).status == 401
    # Trying again starts a fresh order.
    bankid_server.queue(Scenario(hints=()))
    assert (await env.call("POST", sub.token, "/auth", body={"method": "bankid"})).status == 200
    assert (await env.call("GET", sub.token, "/auth/status")).body == {"status": "done"}


@pytest.mark.parametrize("signer", [OLLE, EVA])
async def test_bankid_for_another_person_is_403(
    bankid_env: Env, bankid_server: BankIdTestServer, signer: str
) -> None:
    """Tolvan identifies on a link made for Olle (no personal number) or Eva (another one)."""
    env = bankid_env
    sub = await env.submit()
    token = await env.add_request(sub, signer)
    bankid_server.queue(Scenario(hints=()))
    assert (await env.call("POST", token, "/auth", body={"method": "bankid"})).status == 200
    (order,) = bankid_server.orders.values()
    if signer == EVA:
        assert order.personal_number == EVA_NUMBER.replace("-", "")
        order.personal_number = TOLVAN.replace("-", "")  # a BankID that ignored the requirement
    else:
        assert "requirement" not in order.body

    answer = await env.call("GET", token, "/auth/status")

    assert error(answer) == (403, "forbidden")
    assert answer.body["message"] == "Du är inte den beslutsfattare som länken gäller."
    assert answer.cookie is None
    assert (await env.request(token)).session_hash is None
    assert (await env.call("GET", token)).body["identified"] is False
    assert "signer.identified" not in await env.audit(sub.case_id)


# -- OpenID Connect through the API -----------------------------------------------------------

#: The real oidc-provider under Node, started once for this module (tests/test_oidc.py).
oidc_issuer = test_oidc.issuer


async def oidc_installation(make_env: MakeEnv, sessions: Sessions, issuer: str) -> Env:
    """An installation whose signers identify with OpenID Connect at ``issuer`` only."""
    provider = OidcProvider(
        OidcSettings(issuer=issuer, client_id=CLIENT_ID, client_secret=CLIENT_SECRET, scopes=SCOPES)
    )
    # The provider knows one redirect URI: the page's public https address.
    return await make_env(
        sessions, base_url=PUBLIC_BASE_URL, methods=("oidc",), providers={"oidc": provider}
    )


@pytest.fixture
async def oidc_env(sqlite_sessions: Sessions, make_env: MakeEnv, oidc_issuer: str) -> Env:
    return await oidc_installation(make_env, sqlite_sessions, oidc_issuer)


async def start_oidc(env: Env, token: str, oidc_issuer: str) -> str:
    started = await env.call("POST", token, "/auth", body={"method": "oidc"})
    assert started.status == 200, started.body
    assert started.body["method"] == "oidc"
    redirect = URL(started.body["redirect"])
    assert str(redirect).startswith(oidc_issuer)
    assert redirect.query["redirect_uri"] == f"{PUBLIC_BASE_URL}/oidc/callback"
    assert TOLVAN not in str(redirect)
    return str(redirect)


async def test_oidc_through_the_api(oidc_env: Env, oidc_issuer: str) -> None:
    env = oidc_env
    sub = await env.submit()
    redirect = await start_oidc(env, sub.token, oidc_issuer)
    params = await sign_in(redirect, "tolvan")

    back = await env.fetch("GET", "/oidc/callback", query=params)

    assert back.status == 303, back.raw
    assert back.headers["Location"] == f"/s/{sub.token}"
    morsel = back.cookie
    assert morsel is not None
    assert morsel["httponly"] is True and morsel["samesite"] == "Strict"
    assert morsel["path"] == f"/api/v1/signing/{sub.token}"
    cookie = morsel.value
    assert (await env.call("GET", sub.token, cookie=cookie)).body["identified"] is True
    assert (await env.call("GET", sub.token, "/document.pdf", cookie=cookie)).status == 200
    # The callback is single-use.
    replay = await env.fetch("GET", "/oidc/callback", query=params)
    assert error(replay) == (404, "not_found")

    signed = await env.call("POST", sub.token, "/decision", body={"action": "sign"}, cookie=cookie)

    assert signed.status == 200, signed.body
    await env.posted()
    ((_, pdf),) = env.messenger.files_in(sub.room_id)
    report = await env.verify(pdf)
    assert report.ok and report.evidence is not None
    # The provider's reference is embedded; its subject and raw ID token are not.
    embedded = report.evidence
    assert embedded["method"] == "oidc" and embedded["reference"]["iss"] == oidc_issuer
    assert "subject" not in embedded and "id_token" not in json.dumps(embedded)
    request = await env.request(sub.token)
    assert request.identity["subject"] == "tolvan" and request.identity["evidence"]["id_token"]


async def test_oidc_session_cookie_is_secure_when_the_base_url_is_https(
    oidc_env: Env,
    oidc_issuer: str,
) -> None:
    env = oidc_env
    sub = await env.submit()
    params = await sign_in(await start_oidc(env, sub.token, oidc_issuer), "tolvan")
    back = await env.fetch("GET", "/oidc/callback", query=params)
    assert back.status == 303 and back.cookie is not None
    assert back.cookie["secure"] is True


async def test_oidc_cancel_at_the_provider_is_a_clear_401(
    oidc_env: Env,
    oidc_issuer: str,
) -> None:
    env = oidc_env
    sub = await env.submit()
    params = await sign_in(await start_oidc(env, sub.token, oidc_issuer), "tolvan", cancel=True)
    assert params["error"] == "access_denied"

    back = await env.fetch("GET", "/oidc/callback", query=params)

    assert back.status == 401
    assert back.text == "Inloggningen avbröts. Du kan försöka igen."
    assert back.cookie is None
    assert (await env.call("GET", sub.token)).body["identified"] is False
    # Another try works.
    params = await sign_in(await start_oidc(env, sub.token, oidc_issuer), "tolvan")
    assert (await env.fetch("GET", "/oidc/callback", query=params)).status == 303


async def test_oidc_for_another_person_is_403(oidc_env: Env, oidc_issuer: str) -> None:
    env = oidc_env
    sub = await env.submit()
    token = await env.add_request(sub, EVA)  # Eva's link; Tolvan signs in
    params = await sign_in(await start_oidc(env, token, oidc_issuer), "tolvan")

    back = await env.fetch("GET", "/oidc/callback", query=params)

    assert back.status == 403
    assert back.text == "Du är inte den beslutsfattare som länken gäller."
    assert back.cookie is None
    assert (await env.request(token)).session_hash is None


class UnreachableSigner(FaultyMessenger):
    """A homeserver that cannot open a direct room with the decision-maker."""

    async def create_direct_room(self, user_id: str) -> str:
        raise ConnectionError("homeserver unreachable")


async def test_an_alert_that_cannot_be_delivered_is_told_to_the_worker_and_leads(
    sqlite_sessions: Sessions, make_env: MakeEnv
) -> None:
    messenger = UnreachableSigner()
    env = await make_env(sqlite_sessions, messenger=messenger)
    sub = await env.submit()

    (told,) = [m for m in messenger.in_room(sub.room_id) if "kunde inte nås" in m.text]
    assert "Ring beslutsfattaren" in told.text
    assert told.mentions == (ANNA,)  # the worker's phone rings
    (leads,) = [m for m in messenger.in_room("!duty:test") if "kunde inte nås" in m.text]
    assert leads.mentions == (LENA,)
    # The request itself stands: the link works once someone passes it on.
    async with env.sessions() as session:
        (request,) = await decisions.list_signing_requests(session, case_id=sub.case_id)
    assert request.status == "pending"
