"""A real signing web service on loopback, for tests of the signing page and its API.

The fixture :func:`signing_server` starts the web app (``signing.web.create_app``)
on a free port of 127.0.0.1 with the real decision side (``tests.decision_services.Services``)
as its backend: a fresh, migrated SQLite database, the in-memory messenger
standing in for Matrix, the matrix-code identification method, and a seal from a
development PKI (``signing.devpki.create_dev_pki``), so "sign" makes a real PAdES
signature that ``signing.verify`` validates against the development CA.

Use it from a test module with::

    import pytest

    pytest.register_assert_rewrite("tests.signing_fixtures")  # before importing it
    from tests.signing_fixtures import SigningServer  # noqa: E402

    pytest_plugins = ("tests.signing_fixtures",)

    async def test_something(signing_server: SigningServer) -> None:
        token = await signing_server.new_request()     # an lvu6 decision, pending
        url = signing_server.page_url(token)           # what the phone opens
        api = signing_server.api_url(token, "/auth")   # POST {"method": "matrix-code"}
        ...
        code = await signing_server.last_code()        # the code "sent" in Element

Further helpers on :class:`SigningServer`: ``request(token)`` and ``case(token)``
(fresh from the database), ``case_room(token)`` and ``direct_room()`` (to read
``messenger.sent`` and ``messenger.files``), ``expire(token)``,
``decide_directly(token, action, reason)``, ``posted()`` and ``clock.advance(...)``.

The API answers a decision before it is in the case room (a background task
posts it); ``posted()`` waits for that, and ``case_room(token)`` and
``decide_directly`` call it, so a test reads the room as its members will see it.

The server runs on the test's own event loop, so talk to it with an async client
(``aiohttp.ClientSession``, Playwright's async API). A blocking client (urllib,
requests, Playwright's sync API) would wait for a server that can never answer.
Blocking work of your own (``signing.verify.verify_bytes``) belongs in
``asyncio.to_thread``.

Everything personal in the report is in :data:`CHILD_NAME`, :data:`CHILD_PNR` and
:data:`PERSONAL_TEXTS`, so a test can check that none of it leaks before
identification.
"""

from __future__ import annotations

import dataclasses
import re
import socket
import textwrap
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from config import Settings, load_settings
from handlers import i18n
from handlers.case_state import CaseStatus
from handlers.dialogue import DialogueState, build_report
from handlers.links import token_hash
from handlers.messenger import MemoryMessenger
from signing.devpki import DevPki, create_dev_pki
from signing.identity import SigningContext
from signing.identity.matrix_code import MatrixCodeProvider
from signing.seal import close_signer, load_signer
from signing.web import create_app
from storage import create_engine, decisions, repo, session_factory, upgrade
from storage.models import Case, SigningRequest
from tests.decision_services import Services

__all__ = [
    "CHILD_NAME",
    "CHILD_PNR",
    "DECISION_MAKER",
    "DECISION_TYPE",
    "PERSONAL_TEXTS",
    "WORKER",
    "MovableClock",
    "SigningServer",
    "lvu6_report",
    "signing_server",
]

Sessions = async_sessionmaker[AsyncSession]

#: The social worker on duty who writes the report.
WORKER = "@anna:example.org"
#: The on-call decision-maker (chair of the committee) the links are made for.
DECISION_MAKER = "@dag:example.org"
DECISION_MAKER_NAME = "Dag Dagsson"
DECISION_MAKER_ROLE = "ordförande"
MUNICIPALITY = "skovde"
DECISION_TYPE = "Omedelbart omhändertagande enligt LVU"

#: The child: a made-up name and a made-up but well-formed (Luhn) personnummer.
CHILD_NAME = "Elsa Åström"
CHILD_PNR = "20120315-2382"

#: lvu6 field id -> (stored value or None for "same as display", display text).
LVU6_ANSWERS: dict[str, tuple[Any, str]] = {
    "namn": (None, CHILD_NAME),
    "personnummer": (None, CHILD_PNR),
    "hemkommun": (MUNICIPALITY, "Skövde kommun"),
    "vistelse": (None, "Polisstationen i Skövde"),
    "grund": (["hemmet"], "Missförhållanden i hemmet (2 §)"),
    "handelse": (
        None,
        "Polisen ringde kl. 02.40: grannar hörde skrik och slag i lägenheten. "
        "Elsa (14 år) sprang till grannen Öberg och säger att pappan slog henne.",
    ),
    "bradskande": (
        None,
        "Pappan är berusad och hotfull; mamman är inlagd på sjukhus. "
        "Väntar vi på rättens beslut riskerar Elsa att skadas igen i natt.",
    ),
    "placering": (None, "Jourhem i Skövde"),
    "vardnadshavare": (None, "Mamma: Karin Åström, 070-123 45 67. Pappa: Per Åström."),
    "underrattade": (True, "Ja"),
    "underrattelse": (None, "Mamman underrättades per telefon kl. 03.10."),
    "barnets_installning": (None, "”Jag vill inte åka hem i natt.”"),
    "forslag": (
        None,
        f"{CHILD_NAME}, {CHILD_PNR}, omhändertas omedelbart med stöd av 6 § LVU. "
        "Vården behövs enligt 2 § LVU.",
    ),
    "polis": (False, "Nej"),
    "tidpunkt": ("2026-11-24T03:15:00+01:00", "2026-11-24 03:15"),
    # lvu6 version 2
    "placeringsbeslut": (None, "Vården av Elsa Åström ska inledas i jourhem."),
    # asked from the 15th birthday (15 March 2027); ignored while hidden
    "unge_part": (None, "Elsa får beslutet av handläggaren i jourhemmet i dag."),
    "tolk": (False, "Nej"),
    "skyddade": ("nej", "Nej"),
    "beslut_14": (False, "Nej"),
}

#: Strings from the report that identify people; none may show before identification.
PERSONAL_TEXTS = (CHILD_NAME, CHILD_PNR, "Åström", "20120315", "070-123 45 67", "Öberg")

LINK = re.compile(r"/s/([A-Za-z0-9_-]{20,100})")
#: The code in the ``auth.code`` message ("Din engångskod för att underteckna SJ-…: 123456").
CODE = re.compile(r"(?:engångskod|one-time code)[^:]*:\s*(\d{6})\b")

CONFIG = """
[matrix]
homeserver = "http://127.0.0.1:8008"
user_id = "@socialjour:example.org"
password = {{ env = "SOCIALJOUR_MATRIX_PASSWORD" }}

[storage]
data_dir = "data"

[duty]
room_alias = "#socialjour:example.org"
members = ["{worker}"]
leads = ["{worker}"]
language = "{language}"

[[municipalities]]
id = "{municipality}"
name = "Skövde kommun"
intake_room_alias = "#mottagning-skovde:example.org"

  [[municipalities.decision_makers]]
  user_id = "{maker}"
  name = "{maker_name}"
  role = "{maker_role}"
  appointed_by = "Kommunfullmäktige"
  appointed_on = 2023-01-12
  minutes_ref = "§ 4"
  valid_until = 2099-12-31
"""


class MovableClock:
    """The service's clock: real time plus an offset a test can move (``advance``)."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def advance(self, **delta: float) -> None:
        self.offset += timedelta(**delta)


def lvu6_report(settings: Settings, *, case_number: str, at: datetime) -> dict[str, Any]:
    """A complete lvu6 report (child taken into care at night), built as ``!skicka`` does."""
    form = settings.forms["lvu6"]
    state = DialogueState(form_id=form.id)
    for field_id, (value, display) in LVU6_ANSWERS.items():
        state.answers[field_id] = {
            "value": display if value is None else value,
            "display": display,
            "by": WORKER,
            "at": at.isoformat(),
        }
    return build_report(form, state, case_number=case_number, submitted_by=WORKER, at=at)


@dataclass
class SigningServer:
    """The running service and what a test needs to drive and inspect it."""

    base_url: str  # "http://127.0.0.1:PORT", also the installation's public_base_url
    service: Services
    messenger: MemoryMessenger
    clock: MovableClock
    settings: Settings
    sessions: Sessions
    pki: DevPki

    # -- addresses -------------------------------------------------------------------

    def page_url(self, token: str, *, lang: str | None = None) -> str:
        """The signing page ``GET /s/{token}`` (optionally ``?lang=en``)."""
        return f"{self.base_url}/s/{token}" + (f"?lang={lang}" if lang else "")

    def api_url(self, token: str, path: str = "") -> str:
        """``/api/v1/signing/{token}`` + ``path`` (e.g. ``"/auth"``, ``"/document.pdf"``)."""
        return f"{self.base_url}/api/v1/signing/{token}{path}"

    # -- making signing requests ------------------------------------------------------

    async def new_request(self) -> str:
        """Open a case, submit a realistic lvu6 report and ask for a signature.

        Goes the way ``!ny`` and ``!skicka`` do: the case gets a room (in the
        memory messenger) and the worker as participant, the report is frozen,
        the case moves to awaiting signature, then
        :meth:`DecisionService.request_signature` renders the PDF and alerts the
        decision-maker. Returns the link token taken from that alert, as the
        decision-maker's phone would.
        """
        now = self.clock()
        async with self.sessions() as session, session.begin():
            case = await repo.create_case(
                session,
                prefix=self.settings.duty.case_prefix,
                year=now.year,
                created_by=WORKER,
                status=CaseStatus.DRAFTING.value,
                now=now,
                form_id="lvu6",
                municipality_id=MUNICIPALITY,
            )
        room = await self.messenger.create_case_room(name=case.number, invite=[WORKER])
        report = lvu6_report(self.settings, case_number=case.number, at=now)
        async with self.sessions() as session, session.begin():
            await repo.set_case_room(session, case_id=case.id, room_id=room)
            version = await repo.save_report_state(
                session,
                case_id=case.id,
                form_id="lvu6",
                form_version=report["form"]["version"],
                state={"form_id": "lvu6"},
                expected_version=None,
                now=now,
            )
            assert version is not None
            assert await repo.submit_report(
                session, case_id=case.id, expected_version=version, report=report, now=now
            )
        before = len(self.messenger.sent)
        await self.service.request_signature(case, report)
        direct = await self.direct_room()
        alerts = [m.text for r, m in self.messenger.sent[before:] if r == direct]
        found = LINK.search(alerts[-1]) if alerts else None
        assert found, f"no signing link was sent to the decision-maker: {alerts}"
        return found.group(1)

    # -- what the decision-maker and the case room received -------------------------

    async def direct_room(self) -> str:
        """The decision-maker's direct room (where alerts and one-time codes go)."""
        return await self.service.direct_room(DECISION_MAKER)

    async def codes(self) -> list[str]:
        """Every one-time code sent in the decision-maker's direct room, oldest first."""
        direct = await self.direct_room()
        return [
            found.group(1)
            for room, message in self.messenger.sent
            if room == direct
            for found in [CODE.search(message.text)]
            if found
        ]

    async def last_code(self) -> str:
        """The newest one-time code (fails the test if none was sent)."""
        codes = await self.codes()
        assert codes, "no one-time code was sent"
        return codes[-1]

    async def request(self, token: str) -> SigningRequest:
        """The signing request behind a link token, fresh from the database."""
        async with self.sessions() as session:
            found = await decisions.get_by_token_hash(session, token_hash=token_hash(token))
        assert found is not None, "no signing request for this token"
        return found

    async def case(self, token: str) -> Case:
        """The case a link is for, fresh from the database."""
        request = await self.request(token)
        async with self.sessions() as session:
            case = await repo.get_case(session, case_id=request.case_id)
        assert case is not None
        return case

    async def posted(self) -> None:
        """Wait until the decisions being posted to their case rooms are there (or failed)."""
        await self.service.backend.outcomes.settled()

    async def case_room(self, token: str) -> str:
        """The Matrix room of the case a link is for (once the posts under way are done)."""
        await self.posted()
        room = (await self.case(token)).room_id
        assert room is not None
        return room

    # -- changing the world -----------------------------------------------------------

    async def expire(self, token: str) -> None:
        """Put the link's expiry one minute in the past (in the database)."""
        request = await self.request(token)
        async with self.sessions() as session, session.begin():
            await session.execute(
                update(SigningRequest)
                .where(SigningRequest.id == request.id)
                .values(expires_at=self.clock() - timedelta(minutes=1))
            )

    async def decide_directly(self, token: str, action: str = "sign", reason: str = "") -> None:
        """Settle the request without a browser (identify by code, then decide)."""
        await self.service.start_auth(token, "matrix-code", "127.0.0.1")
        code = await self.last_code()
        _, cookie = await self.service.check_auth(token, {"code": code}, "127.0.0.1")
        await self.service.decide(token, cookie, action, reason)
        await self.posted()


def _settings(folder: Path, pki: DevPki, base_url: str, language: str) -> Settings:
    """The installation's settings: one municipality, one decision-maker, the dev seal."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "config.toml"
    text = CONFIG.format(
        language=language,
        worker=WORKER,
        municipality=MUNICIPALITY,
        maker=DECISION_MAKER,
        maker_name=DECISION_MAKER_NAME,
        maker_role=DECISION_MAKER_ROLE,
    )
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    settings = load_settings(path, environ={"SOCIALJOUR_MATRIX_PASSWORD": "secret"})
    signing = dataclasses.replace(
        pki.signing_settings(), auth_methods=("matrix-code",), link_ttl=timedelta(hours=1)
    )
    web_settings = dataclasses.replace(settings.web, public_base_url=base_url)
    return dataclasses.replace(settings, signing=signing, web=web_settings)


def _code_sender(service: Services, messenger: MemoryMessenger, language: str) -> Any:
    """Send a one-time code the way the bot does (``bot.app.Socialjour._send_code``)."""

    async def send_code(ctx: SigningContext, code: str) -> None:
        room = await service.direct_room(ctx.signer_user_id)
        await messenger.send(
            room,
            i18n.render(
                language,
                "auth.code",
                number=ctx.case_number,
                code=code,
                mentions=(ctx.signer_user_id,),
                notice=False,
            ),
        )

    return send_code


@pytest.fixture(scope="session")
def dev_pki(tmp_path_factory: pytest.TempPathFactory) -> DevPki:
    """One development CA and seal for the whole test session (RSA keys are slow)."""
    return create_dev_pki(tmp_path_factory.mktemp("signing-pki"))


@pytest.fixture
async def signing_server(tmp_path: Path, dev_pki: DevPki) -> AsyncIterator[SigningServer]:
    """The signing web service on 127.0.0.1:PORT, Swedish, with a fresh SQLite database."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'db' / 'socialjour.db'}"
    await upgrade(url)
    engine: AsyncEngine = create_engine(url)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))  # bound before the app exists: no free-port race
    base_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    settings = _settings(tmp_path / "config", dev_pki, base_url, "sv")
    messenger = MemoryMessenger()
    clock = MovableClock()
    sessions = session_factory(engine)
    service = Services(settings, sessions, messenger, clock, signer=None)
    service.providers = {"matrix-code": MatrixCodeProvider(_code_sender(service, messenger, "sv"))}
    service.signer = load_signer(settings.signing)
    app = create_app(
        backend=service.backend,
        public_base_url=base_url,
    )
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.SockSite(runner, sock).start()
    try:
        yield SigningServer(base_url, service, messenger, clock, settings, sessions, dev_pki)
    finally:
        await runner.cleanup()
        sock.close()
        await service.backend.close()
        close_signer(service.signer)
        await engine.dispose()
