"""An unsigned decision escalates: what the signer, the worker and the duty leads notice.

The real decision side (``tests.decision_services.Services``: the escalation engine,
the alerter, the signing backend) and the real dispatcher on a migrated database
(SQLite and PostgreSQL where cheap), the in-memory messenger and notifier standing
in for Matrix, SMS, calls and e-mail, and a clock the test moves by hand. The
scheduler is played by :meth:`Night.run_until`, which fires every pending row at
its due time, in order, as APScheduler would.
"""

from __future__ import annotations

import ast
import asyncio
import textwrap
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from config import Settings, load_settings
from handlers.context import local_time
from handlers.dialogue import DialogueState
from handlers.dispatcher import Dispatcher
from handlers.links import token_hash
from handlers.messenger import IncomingMessage, MemoryMessenger, Message
from handlers.notify import Alert, MemoryNotifier, alert_texts
from signing.devpki import DevPki, create_dev_pki
from signing.errors import Expired
from signing.identity import SigningContext
from signing.identity.matrix_code import MatrixCodeProvider
from signing.seal import close_signer, load_signer
from signing.web import PREAUTH_COOKIE, SESSION_COOKIE, create_app
from storage import create_engine, decisions, repo, session_factory, upgrade
from storage import escalation as steps
from storage.models import Case, EscalationStep, SigningRequest
from tests.decision_services import Services
from tests.test_handlers import FakeClock

pytest.register_assert_rewrite("tests.signing_fixtures")  # before it is imported
from tests.signing_fixtures import (  # noqa: E402
    CHILD_NAME,
    CHILD_PNR,
    CODE,
    LINK,
    LVU6_ANSWERS,
    PERSONAL_TEXTS,
    lvu6_report,
)

Sessions = async_sessionmaker[AsyncSession]

ANNA = "@anna:example.org"  # the social worker on duty who opened the case
BO = "@bo:example.org"
LENA = "@lena:example.org"  # the duty lead
DAG = "@dag:example.org"  # Skövde, first on call: Matrix, then SMS, call, e-mail
EVA = "@eva:example.org"  # Skövde, second on call: Matrix only
OLLE = "@olle:example.org"  # Skövde, third
IVAR = "@ivar:example.org"  # Tibro, first on call: Matrix only
JON = "@jon:example.org"  # Tibro, second
DAG_PHONE = "+46701111111"
DAG_EMAIL = "dag@example.org"
DUTY = "!duty:test"
BASE = "http://127.0.0.1:8080"
NOW = datetime(2026, 11, 24, 2, 30, tzinfo=UTC)  # 03:30 in Stockholm, a night shift

ALERT = "Brådskande beslut att underteckna"
REMINDER = "Påminnelse: ett brådskande beslut väntar på din underskrift"
LEADS = "fortfarande inte undertecknat"
UNREADABLE = "telefon kan inte läsa krypterade meddelanden"

CONFIG = """
[matrix]
homeserver = "http://127.0.0.1:8008"
user_id = "@socialjour:example.org"
password = {{ env = "SOCIALJOUR_MATRIX_PASSWORD" }}

[storage]
data_dir = "data"

[web]
public_base_url = "{base}"

[duty]
room_alias = "#socialjour:example.org"
members = ["{anna}", "{bo}"]
leads = ["{lena}"]
language = "sv"

[[municipalities]]
id = "skovde"
name = "Skövde kommun"
intake_room_alias = "#mottagning-skovde:example.org"
escalation_policy = "natt"

  [[municipalities.decision_makers]]
  user_id = "{dag}"
  name = "Dag Dagsson"
  role = "ordförande"
  appointed_by = "Kommunfullmäktige"
  appointed_on = 2023-01-12
  minutes_ref = "§ 4"
  valid_until = 2030-12-31
  phone = "{dag_phone}"
  email = "{dag_email}"
  notify = [
    {{ after = "0m", via = "matrix" }},
    {{ after = "2m", via = "sms" }},
    {{ after = "4m", via = "call" }},
    {{ after = "6m", via = "email" }},
  ]

  [[municipalities.decision_makers]]
  user_id = "{eva}"
  name = "Eva Evasdotter"
  role = "vice ordförande"
  appointed_by = "Socialnämnden"
  appointed_on = 2023-01-12
  minutes_ref = "§ 4"
  valid_until = 2030-12-31

  [[municipalities.decision_makers]]
  user_id = "{olle}"
  name = "Olle Olsson"
  role = "ledamot"
  appointed_by = "Socialnämnden"
  appointed_on = 2023-01-12
  minutes_ref = "§ 4"
  valid_until = 2030-12-31

[[municipalities]]
id = "tibro"
name = "Tibro kommun"
intake_room_alias = "#mottagning-tibro:example.org"
escalation_policy = "natt"

  [[municipalities.decision_makers]]
  user_id = "{ivar}"
  name = "Ivar Ivarsson"
  role = "ordförande"
  appointed_by = "Kommunfullmäktige"
  appointed_on = 2023-01-12
  minutes_ref = "§ 4"
  valid_until = 2030-12-31

  [[municipalities.decision_makers]]
  user_id = "{jon}"
  name = "Jon Jonsson"
  role = "vice ordförande"
  appointed_by = "Socialnämnden"
  appointed_on = 2023-01-12
  minutes_ref = "§ 4"
  valid_until = 2030-12-31

[escalation_policies.natt]
steps = [
  {{ after = "5m", action = "remind" }},
  {{ after = "10m", action = "next_signer" }},
  {{ after = "15m", action = "alert_leads" }},
]
repeat_every = "10m"
ack_window = "15m"

[notify.phone]
provider = "46elks"
url = "https://api.46elks.example/a1"
username = "elks-user"
password = "elks-password"
from = "+46700000000"

[notify.email]
host = "smtp.example.org"
from = "socialjour@example.org"

[signing]
auth_methods = ["matrix-code"]
link_ttl = "{link_ttl}"
seal_pkcs12 = "{seal}"
seal_pkcs12_password = {{ file = "{seal_password}" }}
trust_roots = ["{ca}"]
"""


def at(minutes: float = 0, seconds: float = 0) -> datetime:
    """A moment of the night, counted from when the decision was sent."""
    return NOW + timedelta(minutes=minutes, seconds=seconds)


def shown(moment: datetime) -> str:
    """A time as the bot shows it (Stockholm, 24 h)."""
    return local_time(moment)


def link_in(text: str) -> str:
    found = LINK.search(text)
    assert found, f"no signing link in {text!r}"
    return found.group(1)


# -- Matrix and the phone provider, with timestamps -------------------------------------------


@dataclass
class TimedMessenger(MemoryMessenger):
    """The in-memory messenger, remembering when (on the test's clock) each message went."""

    clock: FakeClock = field(default_factory=lambda: FakeClock(NOW))
    times: list[datetime] = field(default_factory=list)
    #: room -> how many of the next messages to it fail (the homeserver is unreachable)
    failing: dict[str, int] = field(default_factory=dict)

    async def send(self, room_id: str, message: Message, *, key: str | None = None) -> str:
        if self.failing.get(room_id):
            self.failing[room_id] -= 1
            raise ConnectionError("homeserver unreachable")
        posted = len(self.sent)
        event_id = await super().send(room_id, message, key=key)
        if len(self.sent) > posted:  # a repeated key posts nothing
            self.times.append(self.clock())
        return event_id


@dataclass
class TimedNotifier(MemoryNotifier):
    """The in-memory notifier, remembering when each attempt and each delivery happened."""

    clock: FakeClock = field(default_factory=lambda: FakeClock(NOW))
    attempts: list[tuple[str, datetime]] = field(default_factory=list)
    times: list[datetime] = field(default_factory=list)

    async def send(self, channel: str, to: str, alert: Alert) -> None:
        self.attempts.append((channel, self.clock()))
        await super().send(channel, to, alert)
        self.times.append(self.clock())

    def sent_at(self, channel: str) -> list[tuple[str, datetime]]:
        """(to, when) of every delivery over ``channel``."""
        delivered = zip(self.sent, self.times, strict=True)
        return [(to, when) for (c, to, _), when in delivered if c == channel]

    def tried_at(self, channel: str) -> list[datetime]:
        return [when for c, when in self.attempts if c == channel]


# -- one installation at night ------------------------------------------------------------------


@dataclass(frozen=True)
class Waiting:
    case_id: int
    number: str
    room: str


@dataclass
class Answer:
    status: int
    body: dict[str, Any]
    cookie: str | None = None


class Night:
    """The duty service's installation as the test drives it: a worker in the case room,
    decision-makers in their direct rooms, the signing API, and the scheduler's clock."""

    def __init__(
        self,
        settings: Settings,
        sessions: Sessions,
        messenger: TimedMessenger,
        notifier: TimedNotifier,
        clock: FakeClock,
        services: Services,
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.messenger = messenger
        self.notifier = notifier
        self.clock = clock
        self.services = services
        self.escalator = services.escalator
        self.decisions = services.decisions
        self.backend = services.backend
        self.wakeups = services.wakeups
        self.dispatcher = Dispatcher(
            settings=settings,
            sessions=sessions,
            messenger=messenger,
            clock=clock,
            decisions=services.decisions,
        )
        self.dispatcher.duty_room_id = DUTY
        self.client: TestClient | None = None
        self.preauth: dict[str, str] = {}  # link token -> the pre-auth cookie
        self._events = 0

    def second_process(self) -> Services:
        """Another bot process on the same database, link key and homeserver."""
        other = Services(
            self.settings,
            self.sessions,
            self.messenger,
            self.clock,
            notifier=self.notifier,
            duty_room=DUTY,
        )
        # One installation, one link key (``data_dir/keys/links.key``).
        other.alerter.sealer = other.escalator.issuer.sealer = self.services.sealer
        return other

    # -- cases ----------------------------------------------------------------------------

    async def draft(self, municipality: str = "skovde") -> Waiting:
        """A case in its room with every lvu6 question answered, not yet sent."""
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
        state = DialogueState(form_id=form.id)
        for field_id, (value, display) in LVU6_ANSWERS.items():
            state.answers[field_id] = {
                "value": display if value is None else value,
                "display": display,
                "by": ANNA,
                "at": now.isoformat(),
            }
        async with self.sessions() as session, session.begin():
            await repo.set_case_room(session, case_id=case_id, room_id=room)
            version = await repo.save_report_state(
                session,
                case_id=case_id,
                form_id=form.id,
                form_version=form.version,
                state=state.to_json(),
                expected_version=None,
                now=now,
            )
            assert version == 1
        return Waiting(case_id, number, room)

    async def submit(self, municipality: str = "skovde") -> Waiting:
        """A case sent for signature as ``!skicka`` does (report frozen, then sent)."""
        draft = await self.draft(municipality)
        report = lvu6_report(self.settings, case_number=draft.number, at=self.clock())
        async with self.sessions() as session, session.begin():
            assert await repo.submit_report(
                session, case_id=draft.case_id, expected_version=1, report=report, now=self.clock()
            )
        await self.services.request_signature(await self.case(draft.case_id), report)
        return draft

    async def case(self, case_id: int) -> Case:
        async with self.sessions() as session:
            case = await repo.get_case(session, case_id=case_id)
        assert case is not None
        return case

    async def status(self, case_id: int) -> str:
        return (await self.case(case_id)).status

    async def requests(self, case_id: int) -> list[SigningRequest]:
        async with self.sessions() as session:
            return await decisions.list_signing_requests(session, case_id=case_id)

    async def first_alert(self, token: str) -> str | None:
        """The event id of the first alert sent for the link's request."""
        request = await self.request(token)
        async with self.sessions() as session:
            events = await steps.alert_events(session, request_id=request.id)
        return events[0] if events else None

    async def request(self, token: str) -> SigningRequest:
        async with self.sessions() as session:
            found = await decisions.get_by_token_hash(session, token_hash=token_hash(token))
        assert found is not None
        return found

    async def rows(self, case_id: int) -> list[EscalationStep]:
        async with self.sessions() as session:
            return await steps.list_steps(session, case_id=case_id)

    async def pending(self, case_id: int | None = None) -> list[EscalationStep]:
        async with self.sessions() as session:
            return await steps.list_pending(session, case_id=case_id)

    async def unscheduled(self) -> list[EscalationStep]:
        """Pending rows the scheduler was not told about (or told another time)."""
        return [s for s in await self.pending() if self.wakeups.scheduled.get(s.id) != s.due_at]

    # -- rooms --------------------------------------------------------------------------------

    async def direct_room(self, user_id: str) -> str | None:
        async with self.sessions() as session:
            return await decisions.get_direct_room(session, user_id=user_id)

    def in_room(self, room: str | None) -> list[Message]:
        return [m for r, m in self.messenger.sent if r == room]

    def texts(self, room: str | None) -> list[str]:
        return [m.text for m in self.in_room(room)]

    def said(self, room: str | None, words: str) -> list[Message]:
        return [m for m in self.in_room(room) if words in m.text]

    def said_at(self, room: str | None, words: str) -> list[datetime]:
        return [
            when
            for (r, m), when in zip(self.messenger.sent, self.messenger.times, strict=True)
            if r == room and words in m.text
        ]

    async def alerts(self, user_id: str) -> list[Message]:
        """The messages with a signing link in the person's direct room, oldest first."""
        room = await self.direct_room(user_id)
        return [m for m in self.in_room(room) if LINK.search(m.text)]

    async def tokens(self, user_id: str) -> list[str]:
        return [link_in(m.text) for m in await self.alerts(user_id)]

    async def say(self, room: str, body: str, *, sender: str = ANNA) -> list[Message]:
        """A message in a room; the bot's answers in that room."""
        before = len(self.messenger.sent)
        self._events += 1
        await self.dispatcher.handle(IncomingMessage(room, sender, f"$in{self._events}", body))
        return [m for r, m in self.messenger.sent[before:] if r == room]

    # -- time -----------------------------------------------------------------------------

    async def run_until(self, when: datetime) -> None:
        """The scheduler, on time: each pending row fires at its due time, earliest first."""
        for _ in range(500):
            async with self.sessions() as session:
                due = await steps.list_pending(session, due_before=when)
            if not due:
                break
            self.clock.now = max(self.clock.now, due[0].due_at)
            await self._fire_jobs()
            # A row nobody scheduled is found by the minute's check.
            await self.escalator.wake(due[0].id)
        else:
            raise AssertionError("the escalation never settled")
        self.clock.now = max(self.clock.now, when)
        await self._fire_jobs()

    async def _fire_jobs(self) -> None:
        """The wake-ups whose time has come fire, and are gone (as date jobs are)."""
        while fired := sorted(
            (t, i) for i, t in self.wakeups.scheduled.items() if t <= self.clock.now
        ):
            for _, step_id in fired:
                del self.wakeups.scheduled[step_id]
                await self.escalator.wake(step_id)

    # -- the signing page -------------------------------------------------------------------

    async def api(
        self, method: str, token: str, path: str = "", *, body: Any = None, cookie: str = ""
    ) -> Answer:
        """The signing API as the page's script calls it."""
        if self.client is None:
            app = create_app(
                backend=self.backend,
                public_base_url=BASE,
            )
            self.client = TestClient(
                TestServer(app, host="127.0.0.1"), cookie_jar=aiohttp.DummyCookieJar()
            )
            await self.client.start_server()
        jar = [f"{SESSION_COOKIE}={cookie}"] if cookie else []
        if path.startswith("/auth") and token in self.preauth:  # the starting browser's
            jar.append(f"{PREAUTH_COOKIE}={self.preauth[token]}")
        headers = {"Cookie": "; ".join(jar)} if jar else {}
        async with self.client.request(
            method, f"/api/v1/signing/{token}{path}", json=body, headers=headers
        ) as response:
            if (preauth := response.cookies.get(PREAUTH_COOKIE)) is not None:
                self.preauth[token] = preauth.value
            morsel = response.cookies.get(SESSION_COOKIE)
            return Answer(response.status, await response.json(), morsel.value if morsel else None)

    async def code(self, user_id: str) -> str:
        room = await self.direct_room(user_id)
        codes = [found.group(1) for t in self.texts(room) if (found := CODE.search(t))]
        assert codes, "no one-time code was sent"
        return codes[-1]

    async def identify(self, token: str, user_id: str) -> str:
        """Matrix-code identification through the API; the session cookie."""
        started = await self.api("POST", token, "/auth", body={"method": "matrix-code"})
        assert started.status == 200, started.body
        done = await self.api(
            "POST", token, "/auth/verify", body={"code": await self.code(user_id)}
        )
        assert done.status == 200 and done.cookie, done.body
        return done.cookie


MakeNight = Callable[..., Awaitable[Night]]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> DevPki:
    return create_dev_pki(tmp_path_factory.mktemp("escalation-pki"))


@pytest.fixture
async def sqlite_sessions(tmp_path: Path) -> AsyncIterator[Sessions]:
    """A migrated SQLite database only, for tests whose storage side is covered elsewhere."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'db' / 'socialjour.db'}"
    await upgrade(url)
    engine = create_engine(url)
    yield session_factory(engine)
    await engine.dispose()


@pytest.fixture
async def make_night(tmp_path: Path, pki: DevPki) -> AsyncIterator[MakeNight]:
    made: list[Night] = []

    async def make(sessions: Sessions, *, link_ttl: str = "2h") -> Night:
        folder = tmp_path / f"night{len(made)}"
        folder.mkdir()
        path = folder / "config.toml"
        path.write_text(
            textwrap.dedent(
                CONFIG.format(
                    base=BASE,
                    anna=ANNA,
                    bo=BO,
                    lena=LENA,
                    dag=DAG,
                    dag_phone=DAG_PHONE,
                    dag_email=DAG_EMAIL,
                    eva=EVA,
                    olle=OLLE,
                    ivar=IVAR,
                    jon=JON,
                    link_ttl=link_ttl,
                    seal=pki.seal_pkcs12,
                    seal_password=pki.seal_password_file,
                    ca=pki.ca_cert,
                )
            ),
            encoding="utf-8",
        )
        settings = load_settings(path, environ={"SOCIALJOUR_MATRIX_PASSWORD": "secret"})
        clock = FakeClock(NOW)
        messenger = TimedMessenger(clock=clock)
        notifier = TimedNotifier(clock=clock)
        services = Services(
            settings,
            sessions,
            messenger,
            clock,
            signer=load_signer(settings.signing),
            notifier=notifier,
            duty_room=DUTY,
        )

        async def send_code(ctx: SigningContext, code: str) -> None:  # as bot/app.py does
            await services.alerter.send_code(ctx.signer_user_id, ctx.case_number, code)

        services.providers = {"matrix-code": MatrixCodeProvider(send_code)}
        night = Night(settings, sessions, messenger, notifier, clock, services)
        made.append(night)
        return night

    yield make
    for night in made:
        if night.client is not None:
            await night.client.close()
        close_signer(night.services.signer)


# -- 1. the first alert ----------------------------------------------------------------------


async def test_a_request_alerts_the_signer_tells_the_room_and_plans_every_row(
    sessions: Sessions, make_night: MakeNight
) -> None:
    night = await make_night(sessions)

    case = await night.submit()

    # The signer's phone rings: an m.text mention with the link, in their direct room.
    (alert,) = await night.alerts(DAG)
    assert alert.notice is False and alert.mentions == (DAG,)
    assert ALERT in alert.text and case.number in alert.text
    token = link_in(alert.text)
    assert f"{BASE}/s/{token}" in alert.text
    assert "Omedelbart omhändertagande enligt LVU" in alert.text
    request = await night.request(token)
    assert (request.status, request.signer_user_id) == ("pending", DAG)
    assert request.delivered_at == NOW and await night.first_alert(token)
    # The case room is told who was asked, and when.
    assert night.said_at(
        case.room, "Beslutet skickades till Dag Dagsson (ordförande) kl. 2026-11-24 03:30"
    ) == [NOW]
    # Nobody else was bothered, no other channel yet.
    assert night.in_room(DUTY) == [] and night.notifier.sent == []
    assert await night.alerts(EVA) == []

    rows = {
        (r.kind, r.action, r.user_id, r.request_id, r.due_at, r.status)
        for r in await night.rows(case.case_id)
    }
    assert rows == {
        ("policy", "remind", None, None, at(5), "pending"),
        ("policy", "next_signer", None, None, at(10), "pending"),
        ("policy", "alert_leads", None, None, at(15), "pending"),
        ("policy", "repeat", None, None, at(25), "pending"),
        ("channel", "matrix", DAG, request.id, at(0), "done"),
        ("channel", "sms", DAG, request.id, at(2), "pending"),
        ("channel", "call", DAG, request.id, at(4), "pending"),
        ("channel", "email", DAG, request.id, at(6), "pending"),
        ("expire", "expire", DAG, request.id, at(120), "pending"),
    }
    # The scheduler knows every pending row, at its time.
    assert len(await night.pending(case.case_id)) == 8
    assert await night.unscheduled() == []


# -- 2. reminders, once ------------------------------------------------------------------------


async def test_a_reminder_rings_again_with_the_same_link_and_fires_once(
    sessions: Sessions, make_night: MakeNight
) -> None:
    night = await make_night(sessions)
    case = await night.submit()
    (token,) = await night.tokens(DAG)

    await night.run_until(at(5) - timedelta(seconds=1))
    assert len(await night.alerts(DAG)) == 1  # not before its time
    await night.run_until(at(5))

    _, reminder = await night.alerts(DAG)
    assert REMINDER in reminder.text and case.number in reminder.text
    assert reminder.notice is False and reminder.mentions == (DAG,)
    assert link_in(reminder.text) == token  # the same link, still good
    assert (await night.request(token)).status == "pending"
    assert night.said_at(case.room, "Påminnelse skickad till Dag Dagsson kl. 2026-11-24 03:35") == [
        at(5)
    ]

    # The job runs again, the check runs, every wake-up fires early: nothing twice.
    sent, notified = len(night.messenger.sent), len(night.notifier.sent)
    (remind,) = [r for r in await night.rows(case.case_id) if r.action == "remind"]
    assert remind.status == "done" and remind.fired_at == at(5)
    assert await night.escalator.run_due(case.case_id) == 0
    await night.escalator.wake(remind.id)
    await night.escalator.check()
    for step_id in list(night.wakeups.scheduled):
        await night.escalator.wake(step_id)
    assert (len(night.messenger.sent), len(night.notifier.sent)) == (sent, notified)

    # The next step woken several times at once (its job, the minute's check, and a
    # second process on the same database, as around a restart) asks Eva once.
    night.clock.now = at(10)
    (nxt,) = [r for r in await night.pending(case.case_id) if r.action == "next_signer"]
    other = night.second_process()
    await asyncio.gather(
        night.escalator.wake(nxt.id),
        other.escalator.run_due(case.case_id),
        night.escalator.run_due(case.case_id),
        other.escalator.check(),
    )
    assert len(await night.alerts(EVA)) == 1
    assert len([r for r in await night.requests(case.case_id) if r.signer_user_id == EVA]) == 1
    assert await night.alerts(OLLE) == []
    assert len(night.said(case.room, "Nu tillfrågas även Eva Evasdotter")) == 1
    assert len(night.notifier.sent_at("email")) == 1  # Dag's e-mail (due at 6 min) went once


# -- 3. the next signer, and whoever decides first -------------------------------------------


async def test_the_next_signer_gets_an_own_link_and_the_first_decision_stops_everything(
    sessions: Sessions, make_night: MakeNight
) -> None:
    night = await make_night(sessions)
    case = await night.submit()
    (dag_token,) = await night.tokens(DAG)

    await night.run_until(at(10))

    (eva_alert,) = await night.alerts(EVA)
    assert eva_alert.mentions == (EVA,) and eva_alert.notice is False
    eva_token = link_in(eva_alert.text)
    assert eva_token != dag_token
    assert night.said(
        case.room, "Nu tillfrågas även Eva Evasdotter (vice ordförande) med en egen länk"
    )
    assert night.said(case.room, "Beslutet skickades till Eva Evasdotter")
    for token, name in ((dag_token, "Dag Dagsson"), (eva_token, "Eva Evasdotter")):
        view = await night.api("GET", token)
        assert view.status == 200 and view.body["status"] == "pending", view.body
        assert view.body["signer"] == name

    cookie = await night.identify(eva_token, EVA)
    signed = await night.api("POST", eva_token, "/decision", body={"action": "sign"}, cookie=cookie)
    assert signed.status == 200 and signed.body["status"] == "signed", signed.body
    await night.backend.outcomes.settled()  # the room is told in the background

    assert await night.status(case.case_id) == "signed"
    rows = await night.rows(case.case_id)
    assert {r.status for r in rows} == {"done", "cancelled"}
    assert {(r.kind, r.user_id) for r in rows if r.status == "cancelled"} >= {
        ("expire", DAG),
        ("expire", EVA),
        ("policy", None),
    }
    assert night.wakeups.scheduled == {}  # every wake-up dropped
    assert len([f for f in night.messenger.files if f[0] == case.room]) == 1
    sent, notified = len(night.messenger.sent), len(night.notifier.attempts)
    await night.run_until(at(6 * 60))
    await night.escalator.check()
    await night.escalator.run_due(case.case_id)
    assert night.messenger.sent[sent:] == []
    assert len(night.notifier.attempts) == notified

    # Dag's link now says who decided.
    opened = await night.api("GET", dag_token)
    assert (opened.status, opened.body["error"]) == (409, "already_decided")
    assert "Eva Evasdotter" in opened.body["message"]
    for path, body in (("/auth", {"method": "matrix-code"}), ("/decision", {"action": "sign"})):
        late = await night.api("POST", dag_token, path, body=body)
        assert (late.status, late.body["error"]) == (409, "already_decided"), late.body
        assert late.body["message"] == (
            "Beslutet är redan undertecknat av Eva Evasdotter. Inget mer behöver göras här."
        )


# -- 4. the duty leads, and the repeat --------------------------------------------------------


async def test_the_leads_are_alerted_and_then_again_on_the_cadence(
    sessions: Sessions, make_night: MakeNight
) -> None:
    night = await make_night(sessions)
    case = await night.submit()

    await night.run_until(at(15) - timedelta(seconds=1))
    assert night.said(DUTY, LEADS) == [] and night.said(case.room, LEADS) == []

    await night.run_until(at(15))
    (duty,) = night.said(DUTY, LEADS)
    assert duty.mentions == (LENA,) and duty.notice is False  # the leads' phones ring
    assert case.number in duty.text
    assert "Det har väntat sedan 2026-11-24 03:30" in duty.text
    assert "Tillfrågade: Dag Dagsson, Eva Evasdotter" in duty.text
    (room,) = night.said(case.room, LEADS)
    assert room.mentions == (ANNA,) and room.notice is False

    await night.run_until(at(45))
    assert night.said_at(DUTY, LEADS) == [at(15), at(25), at(35), at(45)]
    assert night.said_at(case.room, LEADS) == [at(15), at(25), at(35), at(45)]
    # Each repeat also reminds everyone asked.
    for user in (DAG, EVA):
        room_id = await night.direct_room(user)
        assert [t for t in night.said_at(room_id, REMINDER) if t >= at(25)] == [
            at(25),
            at(35),
            at(45),
        ]
    # And the next repeat is planned and scheduled.
    (repeat,) = [r for r in await night.pending(case.case_id) if r.kind == "policy"]
    assert (repeat.action, repeat.due_at) == ("repeat", at(55))
    assert night.wakeups.scheduled[repeat.id] == at(55)


# -- 5. "I am on it" ------------------------------------------------------------------------------


ACK_WAYS = {
    # how -> (when, what the case room says it was)
    "command": (at(1), "svarade i Element"),
    "reaction": (at(1), "reagerade med ✅"),
    "page": (at(3), "öppnade underskriftssidan"),
    "call": (at(4), "tryckte 1 i samtalet"),
}


async def acknowledge(night: Night, how: str, token: str) -> None:
    dag_room = await night.direct_room(DAG)
    assert dag_room is not None
    if how == "command":
        (reply,) = await night.say(dag_room, "!tittar", sender=DAG)
        assert "jouren ser att du är på väg" in reply.text
    elif how == "reaction":
        event_id = await night.first_alert(token)
        assert event_id
        # Not someone else's reaction, not another emoji, not another message.
        assert not await night.decisions.reaction(EVA, event_id, "✅")
        assert not await night.decisions.reaction(DAG, event_id, "👎")
        assert not await night.decisions.reaction(DAG, "$someother", "✅")
        assert await night.decisions.reaction(DAG, event_id, "✅")
    elif how == "page":
        assert (await night.api("GET", token)).status == 200
    else:
        ((_, _, call),) = [s for s in night.notifier.sent if s[0] == "call"]
        assert await night.escalator.acknowledge_step(call.reference, "call")


@pytest.mark.parametrize("how", list(ACK_WAYS))
async def test_an_acknowledgement_stops_the_other_channels_and_pauses_the_policy(
    sqlite_sessions: Sessions, make_night: MakeNight, how: str
) -> None:
    night = await make_night(sqlite_sessions)
    case = await night.submit()
    (token,) = await night.tokens(DAG)
    when, via = ACK_WAYS[how]
    await night.run_until(when)
    sent_before = [(c, t) for c, t, _ in night.notifier.sent]

    await acknowledge(night, how, token)

    request = await night.request(token)
    assert request.acknowledged_at == when
    assert request.acknowledged_via == {"command": "matrix"}.get(how, how)
    resumes = when + timedelta(minutes=15)
    (told,) = night.said(case.room, "har sett larmet")
    assert told.text == (
        f"Dag Dagsson har sett larmet ({via}) och är på väg. "
        f"Nästa påminnelse tidigast {shown(resumes)}."
    )
    # Nothing more reaches Dag until the window closes: no SMS, call, e-mail, reminder.
    await night.run_until(resumes - timedelta(seconds=1))
    assert [(c, t) for c, t, _ in night.notifier.sent] == sent_before
    assert night.said(await night.direct_room(DAG), REMINDER) == []
    assert await night.alerts(EVA) == [] and night.said(DUTY, LEADS) == []
    assert await night.unscheduled() == []
    # Then the policy resumes where it was, keeping its cadence.
    await night.run_until(resumes)
    assert night.said_at(await night.direct_room(DAG), REMINDER) == [resumes]
    await night.run_until(resumes + timedelta(minutes=5))
    assert len(await night.alerts(EVA)) == 1
    assert [(c, t) for c, t, _ in night.notifier.sent] == sent_before  # Dag's channels stay off


async def test_an_acknowledgement_moves_the_policy_rows_on_every_database(
    sessions: Sessions, make_night: MakeNight
) -> None:
    night = await make_night(sessions)
    case = await night.submit()
    dag_room = await night.direct_room(DAG)
    assert dag_room is not None
    night.clock.now = at(1)

    await night.say(dag_room, "!ack", sender=DAG)

    pending = {(r.action, r.due_at) for r in await night.pending(case.case_id)}
    assert pending == {
        ("remind", at(16)),
        ("next_signer", at(21)),
        ("alert_leads", at(26)),
        ("repeat", at(36)),
        ("expire", at(120)),
    }
    assert await night.unscheduled() == []


async def test_a_reaction_to_the_first_alert_still_counts_after_a_reminder(
    sqlite_sessions: Sessions, make_night: MakeNight
) -> None:
    night = await make_night(sqlite_sessions)
    await night.submit()
    (token,) = await night.tokens(DAG)
    first = await night.first_alert(token)
    assert first
    await night.run_until(at(5))  # a reminder arrives below the alert

    acknowledged = await night.decisions.reaction(DAG, first, "✅")

    assert acknowledged, "a ✅ on the alert itself was ignored once a reminder was sent"


async def test_tittar_after_a_later_reminder_pauses_again_and_is_told_once_per_window(
    sqlite_sessions: Sessions, make_night: MakeNight
) -> None:
    night = await make_night(sqlite_sessions)
    case = await night.submit()
    dag_room = await night.direct_room(DAG)
    assert dag_room is not None
    night.clock.now = at(1)
    await night.say(dag_room, "!tittar", sender=DAG)
    await night.run_until(at(16))  # the pause is over: a reminder asks for !tittar again
    (reminder,) = night.said(dag_room, REMINDER)
    assert "!tittar" in reminder.text

    night.clock.now = at(17)
    (reply,) = await night.say(dag_room, "!tittar", sender=DAG)
    night.clock.now = at(18)
    (again,) = await night.say(dag_room, "!ack", sender=DAG)  # a double tap

    for answer in (reply, again):
        assert "jouren ser att du är på väg" in answer.text
    assert night.said_at(case.room, "Dag Dagsson har sett larmet") == [at(1), at(17)]
    # The next step waits for the new window (from the last acknowledgement).
    await night.run_until(at(33) - timedelta(seconds=1))
    assert await night.alerts(EVA) == []
    await night.run_until(at(33))
    assert len(await night.alerts(EVA)) == 1


# -- 6. a phone that cannot decrypt -------------------------------------------------------------


async def test_an_unreadable_phone_is_told_at_once_and_the_next_channel_comes_forward(
    sessions: Sessions, make_night: MakeNight
) -> None:
    night = await make_night(sessions)
    night.messenger.undecryptable.add(DAG)

    case = await night.submit()

    assert await night.alerts(DAG) == []  # nothing sent that nobody could read
    (room,) = night.said(case.room, UNREADABLE)
    assert room.text.startswith(
        "Dag Dagssons telefon kan inte läsa krypterade meddelanden från Socialjour."
    )
    assert room.mentions == (ANNA,) and room.notice is False  # the worker's phone rings
    (duty,) = night.said(DUTY, UNREADABLE)
    assert duty.mentions == (LENA,) and "Dag Dagssons telefon" in duty.text
    assert night.said(case.room, "Beslutet skickades till") == []  # not claimed as sent
    # The SMS goes now instead of in two minutes; the rest of the rule stays.
    assert night.notifier.sent_at("sms") == [(DAG_PHONE, NOW)]
    await night.run_until(at(4))
    assert night.notifier.sent_at("call") == [(DAG_PHONE, at(4))]
    (status,) = [m for m in await night.say(case.room, "!status") if "Tillfrågad" in m.text]
    assert (
        "Tillfrågad: Dag Dagsson (ordförande) kl. 2026-11-24 03:30 – larmet har inte kommit fram"
        in status.text.splitlines()
    )


async def test_an_unreadable_phone_without_other_channels_asks_the_next_signer_at_once(
    sqlite_sessions: Sessions, make_night: MakeNight
) -> None:
    night = await make_night(sqlite_sessions)
    night.messenger.undecryptable.add(IVAR)

    case = await night.submit("tibro")

    assert await night.alerts(IVAR) == []
    (room,) = night.said(case.room, UNREADABLE)
    assert "Ivar Ivarssons telefon" in room.text and room.mentions == (ANNA,)
    (duty,) = night.said(DUTY, UNREADABLE)
    assert "Ivar Ivarssons telefon" in duty.text and duty.mentions == (LENA,)
    (jon,) = await night.alerts(JON)  # no waiting ten minutes for the policy
    assert jon.mentions == (JON,) and night.said_at(jon_room(night), ALERT) == [NOW]
    assert night.said_at(case.room, "Nu tillfrågas även Jon Jonsson") == [NOW]
    assert night.notifier.attempts == []  # Ivar has no other channel


def jon_room(night: Night) -> str:
    (room,) = [r for r, m in night.messenger.sent if JON in m.mentions]
    return room


async def test_when_nobody_is_left_to_ask_the_room_and_the_leads_are_told(
    sqlite_sessions: Sessions, make_night: MakeNight
) -> None:
    night = await make_night(sqlite_sessions)
    night.messenger.undecryptable.add(IVAR)
    case = await night.submit("tibro")  # Ivar unreadable: Jon is asked at once

    await night.run_until(at(10))  # the policy's own next_signer finds nobody left

    (room,) = night.said(case.room, "Ingen fler beslutsfattare att fråga")
    assert case.number in room.text and room.mentions == (ANNA,)
    (duty,) = night.said(DUTY, "Ingen fler beslutsfattare att fråga")
    assert case.number in duty.text and duty.mentions == (LENA,)


async def test_an_alert_the_homeserver_refused_is_told_at_once_and_retried(
    sqlite_sessions: Sessions, make_night: MakeNight
) -> None:
    night = await make_night(sqlite_sessions)
    dag_room = await night.services.direct_room(DAG)
    night.messenger.failing[dag_room] = 2

    case = await night.submit()

    assert await night.alerts(DAG) == []
    told = "kunde inte nås via Matrix just nu"
    assert night.said_at(case.room, told) == [NOW]
    assert night.said(case.room, told)[0].mentions == (ANNA,)
    assert night.said(DUTY, told)[0].mentions == (LENA,)
    await night.run_until(at(0, 15))  # tried again after 5 s (fails), after 10 s more

    assert len(await night.alerts(DAG)) == 1
    assert night.said_at(dag_room, ALERT) == [at(0, 15)]
    assert night.said_at(case.room, "Beslutet skickades till Dag Dagsson") == [at(0, 15)]
    assert len(night.said(case.room, told)) == 1  # told once, not per attempt


# -- 7. a link that runs out --------------------------------------------------------------------


async def test_an_expired_link_is_told_and_replaced_for_the_same_signer(
    sessions: Sessions, make_night: MakeNight
) -> None:
    night = await make_night(sessions, link_ttl="3m")
    case = await night.submit("tibro")
    (old,) = await night.tokens(IVAR)

    await night.run_until(at(3) - timedelta(seconds=1))
    assert (await night.request(old)).status == "pending"
    assert len(await night.alerts(IVAR)) == 1
    await night.run_until(at(3))

    told = "Länken till Ivar Ivarsson gick ut utan underskrift. En ny länk skickas nu."
    (room,) = night.said(case.room, told)
    assert room.mentions == (ANNA,)
    (duty,) = night.said(DUTY, told)
    assert duty.mentions == (LENA,)
    _, fresh_alert = await night.alerts(IVAR)
    assert fresh_alert.mentions == (IVAR,) and ALERT in fresh_alert.text
    fresh = link_in(fresh_alert.text)
    assert fresh != old
    assert (await night.request(old)).status == "expired"
    new_request = await night.request(fresh)
    assert (new_request.status, new_request.expires_at) == ("pending", at(6))
    assert await night.status(case.case_id) == "awaiting_signature"
    old_id = (await night.request(old)).id
    assert [r for r in await night.pending(case.case_id) if r.request_id == old_id] == []

    gone = await night.api("GET", old)
    assert (gone.status, gone.body["error"]) == (410, "expired")
    assert gone.body["message"] == "Länken har gått ut. Be jouren skicka en ny."
    started = await night.api("POST", old, "/auth", body={"method": "matrix-code"})
    assert started.status == 410
    assert (await night.api("GET", fresh)).body["status"] == "pending"


# -- 8. SMS, calls and e-mail -----------------------------------------------------------------

#: What must never leave the encrypted rooms: the child's name and personal number, the
#: family's names and phone number (everything personal in the report).
SECRETS = (
    *PERSONAL_TEXTS,
    CHILD_NAME.split()[0],
    CHILD_PNR.replace("-", ""),
    CHILD_PNR[2:],
    "Karin Åström",
    "Polisstationen",
)


def leaked(text: str) -> list[str]:
    return [secret for secret in SECRETS if secret.casefold() in text.casefold()]


async def test_channels_follow_the_persons_rule_and_carry_nothing_personal(
    sessions: Sessions, make_night: MakeNight
) -> None:
    night = await make_night(sessions)
    case = await night.submit()
    (token,) = await night.tokens(DAG)

    await night.run_until(at(2) - timedelta(seconds=1))
    assert night.notifier.attempts == []
    await night.run_until(at(16))

    assert night.notifier.sent_at("sms") == [(DAG_PHONE, at(2))]
    assert night.notifier.sent_at("call") == [(DAG_PHONE, at(4))]
    assert night.notifier.sent_at("email") == [(DAG_EMAIL, at(6))]
    rows = {r.action: r for r in await night.rows(case.case_id) if r.kind == "channel"}
    for channel, _, alert in night.notifier.sent:
        assert alert == Alert(
            case_number=case.number,
            decision_type="Omedelbart omhändertagande enligt LVU",
            link=f"{BASE}/s/{token}",
            language="sv",
            reference=str(rows[channel].id),  # what pressing 1 in the call sends back
        )
        subject, body, sms = alert_texts(alert)
        assert f"{BASE}/s/{token}" in body and f"{BASE}/s/{token}" in sms
        for text in (subject, body, sms, alert.case_number, alert.decision_type):
            assert leaked(text) == [], (channel, text)
    # Nor in anything the bot said to the decision-makers or in the duty room.
    eva_room = await night.direct_room(EVA)
    for room in (await night.direct_room(DAG), eva_room, DUTY):
        texts = night.texts(room)
        assert texts, room
        for text in texts:
            assert leaked(text) == [], (room, text)
    assert night.said(DUTY, LEADS) and night.said(eva_room, ALERT)  # all of it was looked at


async def test_a_failing_channel_is_retried_with_backoff_and_holds_nothing_up(
    sqlite_sessions: Sessions, make_night: MakeNight
) -> None:
    night = await make_night(sqlite_sessions)
    case = await night.submit()
    night.notifier.fail("sms")  # the provider is down: try again
    night.notifier.fail("email", retryable=False)  # refused: someone must fix the config

    await night.run_until(at(4))

    assert night.notifier.tried_at("sms") == [
        at(2),
        at(2, 5),
        at(2, 15),
        at(2, 35),
        at(3, 15),
    ]
    (sms,) = [r for r in await night.rows(case.case_id) if r.action == "sms"]
    assert (sms.status, sms.due_at) == ("pending", at(4, 35))
    assert night.wakeups.scheduled[sms.id] == at(4, 35)
    assert night.notifier.sent_at("call") == [(DAG_PHONE, at(4))]  # not held up

    night.notifier.recover("sms")
    await night.run_until(at(8))

    assert night.notifier.sent_at("sms") == [(DAG_PHONE, at(4, 35))]
    assert night.said_at(await night.direct_room(DAG), REMINDER) == [at(5)]  # policy on time
    assert night.notifier.tried_at("email") == [at(6)]  # once, not retried
    (email,) = [r for r in await night.rows(case.case_id) if r.action == "email"]
    assert email.status == "failed"
    assert night.notifier.sent_at("email") == []
    # Given up on: whoever can pick up a phone is told, at once.
    gave_up = "Larmet via e-post till Dag Dagsson gick inte fram och försöks inte igen."
    assert night.said_at(case.room, gave_up) == [at(6)]
    assert night.said_at(DUTY, gave_up) == [at(6)]
    assert night.said(case.room, gave_up)[0].mentions == (ANNA,)
    assert night.said(DUTY, gave_up)[0].mentions == (LENA,)
    assert night.said(case.room, "Larmet via sms") == []  # the SMS got through in the end


# -- 9. !skicka when the document cannot be made -------------------------------------------------


async def test_a_render_failure_keeps_the_report_open_and_a_second_skicka_sends(
    sqlite_sessions: Sessions, make_night: MakeNight, monkeypatch: pytest.MonkeyPatch
) -> None:
    night = await make_night(sqlite_sessions)
    case = await night.draft()

    def broken(*args: Any, **kwargs: Any) -> bytes:
        raise RuntimeError("the PDF library fell over")

    monkeypatch.setattr("signing.document.render_decision", broken)
    said = [m.text for m in await night.say(case.room, "!skicka")]

    failed = "Beslutsdokumentet kunde inte skapas, så inget skickades."
    assert any(t.startswith(failed) for t in said)
    assert not any("är skickad och låst" in t for t in said)
    assert await night.status(case.case_id) == "drafting"
    async with night.sessions() as session:
        report = await repo.get_report(session, case_id=case.case_id)
        audit = [e.action for e in await repo.list_audit(session, case_id=case.case_id)]
    assert report is not None and report.submitted_at is None  # still open for editing
    assert "status.awaiting_signature" not in audit and "report.submitted" not in audit
    assert await night.requests(case.case_id) == [] and await night.rows(case.case_id) == []
    assert await night.direct_room(DAG) is None  # nobody was bothered

    monkeypatch.undo()
    said = [m.text for m in await night.say(case.room, "!skicka")]

    assert any(f"Rapporten för {case.number} är skickad och låst" in t for t in said)
    assert await night.status(case.case_id) == "awaiting_signature"
    (alert,) = await night.alerts(DAG)
    assert case.number in alert.text


# -- 10. the promise, checked ---------------------------------------------------------------------


@pytest.mark.parametrize("closed_as", ["expired", "replaced"])
async def test_check_gives_a_case_without_a_live_link_a_new_one_and_says_so(
    sessions: Sessions, make_night: MakeNight, closed_as: str
) -> None:
    night = await make_night(sessions)
    case = await night.submit()
    (old,) = await night.tokens(DAG)
    async with night.sessions() as session, session.begin():
        (request,) = await decisions.list_signing_requests(session, case_id=case.case_id)
        await steps.close(session, request_ids=[request.id], status=closed_as)
        await steps.cancel(session, case_id=case.case_id)
    night.wakeups.scheduled.clear()
    night.clock.now = at(1)

    await night.escalator.check()

    _, alert = await night.alerts(DAG)
    fresh = link_in(alert.text)
    assert fresh != old and alert.mentions == (DAG,)
    assert (await night.request(fresh)).status == "pending"
    told = (
        "Ärendet väntade utan en giltig underskriftslänk. En ny länk har skickats till Dag Dagsson."
    )
    (room,) = night.said(case.room, told)
    assert room.mentions == (ANNA,)
    (duty,) = night.said(DUTY, told)
    assert duty.mentions == (LENA,)
    with pytest.raises(Expired):
        await night.backend.view(old)
    # It escalates again from here, and the scheduler knows it.
    pending = await night.pending(case.case_id)
    assert any(r.kind == "policy" for r in pending)
    assert any(r.kind == "expire" and r.due_at == at(121) for r in pending)
    assert await night.unscheduled() == []
    sent = len(night.messenger.sent)
    await night.escalator.check()
    assert night.messenger.sent[sent:] == []


async def test_steps_missed_while_the_bot_was_down_say_so_after_the_restart(
    sessions: Sessions, make_night: MakeNight
) -> None:
    night = await make_night(sessions)
    case = await night.submit()
    night.clock.now = at(7)  # the bot was down from before 03:35 until now
    night.escalator.started_at = night.clock.now

    await night.escalator.resume()

    assert night.said(
        case.room,
        "Steget som skulle ha körts kl. 2026-11-24 03:35 körs nu, 2 min sent "
        "(Socialjour var inte igång).",
    )
    dag_room = await night.direct_room(DAG)
    assert night.said_at(dag_room, REMINDER) == [at(7)]  # once


async def test_check_runs_rows_whose_wake_ups_were_lost_once_and_says_how_late(
    sessions: Sessions, make_night: MakeNight
) -> None:
    night = await make_night(sessions)
    case = await night.submit()
    night.wakeups.scheduled.clear()  # the scheduler lost its jobs (a crash, a bad restore)
    night.clock.now = at(7)

    await night.escalator.check()

    dag_room = await night.direct_room(DAG)
    assert night.said_at(dag_room, REMINDER) == [at(7)]
    assert [c for c, _, _ in night.notifier.sent] == ["sms", "call", "email"]
    # The bot ran all along (only the wake-ups were lost): late, but not "was down".
    assert night.said(
        case.room, "Steget som skulle ha körts kl. 2026-11-24 03:35 körs nu, 2 min sent."
    )
    assert await night.alerts(EVA) == []  # nothing early
    sent, notified = len(night.messenger.sent), len(night.notifier.attempts)
    await night.escalator.check()
    await night.escalator.resume()
    assert night.messenger.sent[sent:] == [] and len(night.notifier.attempts) == notified
    assert await night.unscheduled() == []  # resume() told the scheduler again


# -- 11. !status while it waits -------------------------------------------------------------------


async def status_of(night: Night, room: str) -> list[str]:
    (reply,) = [m for m in await night.say(room, "!status") if "Tillfrågad" in m.text]
    return reply.text.splitlines()


async def test_status_says_who_was_asked_when_what_they_saw_and_what_comes_next(
    sqlite_sessions: Sessions, make_night: MakeNight
) -> None:
    night = await make_night(sqlite_sessions)
    case = await night.submit()
    night.clock.now = at(1)

    lines = await status_of(night, case.room)
    assert "Tillfrågad: Dag Dagsson (ordförande) kl. 2026-11-24 03:30 – larmet har kommit fram" in (
        lines
    )
    assert "Nästa steg: påminnelse kl. 2026-11-24 03:35" in lines

    dag_room = await night.direct_room(DAG)
    assert dag_room is not None
    night.clock.now = at(2)
    await night.say(dag_room, "!tittar", sender=DAG)
    lines = await status_of(night, case.room)
    assert (
        "Tillfrågad: Dag Dagsson (ordförande) kl. 2026-11-24 03:30 – "
        "har sett larmet kl. 2026-11-24 03:32" in lines
    )
    assert "Nästa steg: påminnelse kl. 2026-11-24 03:47" in lines

    await night.run_until(at(22))
    lines = await status_of(night, case.room)
    assert [line for line in lines if line.startswith("Tillfrågad")] == [
        "Tillfrågad: Dag Dagsson (ordförande) kl. 2026-11-24 03:30 – "
        "har sett larmet kl. 2026-11-24 03:32",
        "Tillfrågad: Eva Evasdotter (vice ordförande) kl. 2026-11-24 03:52 – "
        "larmet har kommit fram",
    ]
    assert "Nästa steg: jourens samordnare larmas kl. 2026-11-24 03:57" in lines


# -- 12. !påminn and !skicka om -----------------------------------------------------------------


async def test_skicka_om_never_gives_a_lapsed_decision_maker_a_new_link(
    sqlite_sessions: Sessions, make_night: MakeNight
) -> None:
    """LVU 6 § second paragraph: only an appointment that holds today gives the power
    to decide. Once every appointment has run out, nobody gets a new link."""
    night = await make_night(sqlite_sessions)
    case = await night.submit()
    (first,) = await night.tokens(DAG)
    night.clock.now = datetime(2031, 1, 2, 1, 0, tzinfo=UTC)  # all end 2030-12-31

    said = [m.text for m in await night.say(case.room, "!skicka om")]

    assert await night.tokens(DAG) == [first], said
    assert not [t for t in said if "Nya länkar skickades" in t], said


async def test_paminn_rings_again_now_and_skicka_om_replaces_the_link(
    sqlite_sessions: Sessions, make_night: MakeNight
) -> None:
    night = await make_night(sqlite_sessions)
    case = await night.submit()
    (first,) = await night.tokens(DAG)
    dag_room = await night.direct_room(DAG)
    night.clock.now = at(1)

    said = [m.text for m in await night.say(case.room, "!påminn")]

    assert "Larmet skickades igen till 1 beslutsfattare." in said
    _, again = await night.alerts(DAG)
    assert again.mentions == (DAG,) and again.notice is False
    assert link_in(again.text) == first
    assert night.said_at(dag_room, ALERT) == [NOW, at(1)]

    night.clock.now = at(2)
    said = [m.text for m in await night.say(case.room, "!skicka om")]

    assert "Nya länkar skickades till Dag Dagsson. De gamla länkarna är stängda." in said
    *_, fresh_alert = await night.alerts(DAG)
    fresh = link_in(fresh_alert.text)
    assert fresh != first and fresh_alert.mentions == (DAG,)
    assert (await night.request(first)).status == "replaced"
    assert (await night.request(fresh)).status == "pending"
    closed = await night.api("GET", first)
    assert (closed.status, closed.body["error"]) == (410, "expired")
    assert closed.body["message"] == (
        "Den här länken har ersatts av en ny. Använd den senaste länken i Element."
    )
    old_id = (await night.request(first)).id
    pending = await night.pending(case.case_id)
    assert [r for r in pending if r.request_id == old_id] == []
    new_id = (await night.request(fresh)).id
    assert {(r.action, r.due_at) for r in pending if r.request_id == new_id} == {
        ("sms", at(4)),
        ("call", at(6)),
        ("email", at(8)),
        ("expire", at(122)),
    }
    # The English alias does the same.
    said = [m.text for m in await night.say(case.room, "!resend")]
    assert "Nya länkar skickades till Dag Dagsson. De gamla länkarna är stängda." in said
    assert len(set(await night.tokens(DAG))) == 3
    # And a case that waits for nothing says so.
    draft = await night.draft()
    said = [m.text for m in await night.say(draft.room, "!påminn")]
    assert said == ["Inget beslut väntar på underskrift i det här ärendet."]


# -- 13. cancelling a waiting case ------------------------------------------------------------


async def test_cancelling_a_waiting_case_closes_every_link_and_row(
    sessions: Sessions, make_night: MakeNight
) -> None:
    night = await make_night(sessions)
    case = await night.submit()
    await night.run_until(at(10))  # Dag and Eva both asked
    tokens = [*(await night.tokens(DAG))[:1], *(await night.tokens(EVA))]
    assert len(tokens) == 2

    await night.say(case.room, "!avbryt")
    said = [m.text for m in await night.say(case.room, "!avbryt ja")]

    assert any(t.startswith(f"Ärende {case.number} är avbrutet") for t in said)
    assert await night.status(case.case_id) == "cancelled"
    assert [r.status for r in await night.requests(case.case_id)] == ["cancelled", "cancelled"]
    assert await night.pending(case.case_id) == []
    assert night.wakeups.scheduled == {}
    for token in tokens:
        with pytest.raises(Expired) as refused:
            await night.backend.start_auth(token, "matrix-code", "127.0.0.1")
        assert (refused.value.status, refused.value.message_key) == (410, "error.case_cancelled")
    sent, notified = len(night.messenger.sent), len(night.notifier.attempts)
    await night.run_until(at(6 * 60))
    await night.escalator.check()
    assert night.messenger.sent[sent:] == [] and len(night.notifier.attempts) == notified


# -- 14. one state machine -------------------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[1]


def change_status_uses(root: Path = ROOT) -> list[str]:
    """Every call of (or import or getattr of) ``change_status`` in production code."""
    found: list[str] = []
    for package in ("bot", "handlers", "signing", "storage", "config"):
        for path in sorted((root / package).rglob("*.py")):
            where = path.relative_to(root).as_posix()
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=where)):
                if isinstance(node, ast.Call):
                    func = node.func
                    name = (
                        func.attr
                        if isinstance(func, ast.Attribute)
                        else func.id
                        if isinstance(func, ast.Name)
                        else None
                    )
                    names = [a.value for a in node.args if isinstance(a, ast.Constant)]
                    if name == "change_status" or (name == "getattr" and "change_status" in names):
                        found.append(f"{where}:{node.lineno}")
                elif isinstance(node, ast.ImportFrom) and any(
                    a.name == "change_status" for a in node.names
                ):
                    found.append(f"{where}:{node.lineno} (import)")
    return found


def test_only_the_state_machine_changes_a_case_status() -> None:
    uses = change_status_uses()

    assert uses, "the scan found no call at all: it is not looking at the code"
    assert [u for u in uses if not u.startswith("handlers/case_state.py:")] == []
    assert len(uses) == 1  # transition() is the one caller
    repo_tree = ast.parse((ROOT / "storage" / "repo.py").read_text(encoding="utf-8"))
    defined = [
        node.name
        for node in repo_tree.body
        if isinstance(node, ast.AsyncFunctionDef | ast.FunctionDef)
    ]
    assert "change_status" in defined


def test_the_scan_would_see_a_stray_status_change(tmp_path: Path) -> None:
    for package in ("bot", "handlers", "signing", "storage", "config"):
        (tmp_path / package).mkdir()
    (tmp_path / "handlers" / "case_state.py").write_text(
        "async def transition(s):\n    await repo.change_status(s)\n", encoding="utf-8"
    )
    (tmp_path / "bot" / "shortcut.py").write_text(
        "from storage.repo import change_status\n"
        "async def f(s):\n"
        "    await change_status(s)\n"
        "    await getattr(repo, 'change_status')(s)\n",
        encoding="utf-8",
    )

    assert change_status_uses(tmp_path) == [
        "bot/shortcut.py:1 (import)",
        "bot/shortcut.py:3",
        "bot/shortcut.py:4",
        "handlers/case_state.py:2",
    ]


async def test_a_policy_step_that_keeps_failing_is_retried_then_told_to_room_and_leads(
    sqlite_sessions: Sessions, make_night: MakeNight, monkeypatch: pytest.MonkeyPatch
) -> None:
    night = await make_night(sqlite_sessions)
    case = await night.submit()

    def broken(*args: Any, **kwargs: Any) -> bytes:
        raise RuntimeError("the PDF library fell over")

    # Eva's decision cannot be rendered when the next_signer step comes at +10 min.
    monkeypatch.setattr("signing.document.render_decision", broken)
    await night.run_until(at(11))
    told = "Ett steg i larmkedjan för"
    assert not night.said(case.room, told), "retried first, not reported at once"
    await night.run_until(at(20))  # 5 s, 10 s, 20 s, 40 s, 80 s later: given up

    (room_note,) = night.said(case.room, told)
    assert "nästa beslutsfattare tillfrågas" in room_note.text
    (lead_note,) = night.said(DUTY, told)
    assert LENA in lead_note.mentions
    (step,) = [r for r in await night.rows(case.case_id) if r.action == "next_signer"]
    assert (step.status, step.attempts) == ("failed", 6)
    assert await night.alerts(EVA) == []


# -- 15. a step run again posts nothing twice ---------------------------------------------------


class Crash(BaseException):
    """The process dies here: no handler catches it (it is not an ``Exception``)."""


def crash_before_done(monkeypatch: pytest.MonkeyPatch, action: str) -> None:
    """The next row doing ``action`` dies after its work, before it is marked done: its
    sends went out, what it wrote committed, and the row stays ``running``."""
    real = steps.mark

    async def mark(session: AsyncSession, *, step_id: int, status: str) -> None:
        step = await steps.get_step(session, step_id=step_id)
        if status == steps.DONE and step is not None and step.action == action:
            monkeypatch.setattr(steps, "mark", real)  # once: the restarted bot is whole
            raise Crash(action)
        await real(session, step_id=step_id, status=status)

    monkeypatch.setattr(steps, "mark", mark)


async def waiting_case(night: Night) -> Case:
    """The one case waiting for a signature (its sending was cut off: no ``Waiting``)."""
    async with night.sessions() as session:
        (case,) = await repo.list_cases(session, statuses=["awaiting_signature"])
    return case


async def restart(night: Night, when: datetime) -> None:
    """The bot starts again at ``when``: interrupted rows run again, then the check."""
    night.clock.now = when
    night.escalator.started_at = when
    await night.escalator.resume()


async def test_an_alert_cut_off_before_it_was_marked_done_is_not_posted_again(
    sessions: Sessions, make_night: MakeNight, monkeypatch: pytest.MonkeyPatch
) -> None:
    night = await make_night(sessions)
    crash_before_done(monkeypatch, "matrix")

    with pytest.raises(Crash):
        await night.submit()
    case = await waiting_case(night)
    assert len(await night.alerts(DAG)) == 1
    (alert_row,) = [r for r in await night.rows(case.id) if r.action == "matrix"]
    assert alert_row.status == "running"

    await restart(night, at(1))

    (alert_row,) = [r for r in await night.rows(case.id) if r.action == "matrix"]
    assert alert_row.status == "done"  # it ran again, to the end
    assert len(await night.alerts(DAG)) == 1  # and the homeserver kept the first alert
    assert len(night.said(case.room_id, "Beslutet skickades till Dag Dagsson")) == 1
    assert night.said(case.room_id, "körs nu") == []  # it ran on time the first time
    request = (await night.requests(case.id))[0]
    async with night.sessions() as session:
        assert len(await steps.alert_events(session, request_id=request.id)) == 1


@pytest.mark.parametrize("how", ["crash", "failure"])
async def test_a_reminder_run_again_rings_once_and_is_told_once(
    sqlite_sessions: Sessions, make_night: MakeNight, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    night = await make_night(sqlite_sessions)
    case = await night.submit()
    dag_room = await night.direct_room(DAG)

    if how == "crash":  # cut off after its sends, run again at the restart
        crash_before_done(monkeypatch, "remind")
        with pytest.raises(Crash):
            await night.run_until(at(5))
        assert night.said_at(dag_room, REMINDER) == [at(5)]
        await restart(night, at(7))
        told = at(5)
    else:  # the case room unreachable after the reminder went: retried 5 s later
        night.messenger.failing[case.room] = 1
        await night.run_until(at(5, 5))
        told = at(5, 5)

    assert night.said_at(dag_room, REMINDER) == [at(5)]
    assert night.said_at(case.room, "Påminnelse skickad till Dag Dagsson") == [told]
    assert night.said(case.room, "körs nu") == []  # the first run was on time
    (remind,) = [r for r in await night.rows(case.case_id) if r.action == "remind"]
    assert (remind.status, remind.attempts) == ("done", 2)


async def test_a_repeat_cut_off_posts_nothing_twice_and_the_cadence_still_rings(
    sessions: Sessions, make_night: MakeNight, monkeypatch: pytest.MonkeyPatch
) -> None:
    night = await make_night(sessions)
    case = await night.submit()
    await night.run_until(at(24))
    crash_before_done(monkeypatch, "repeat")

    with pytest.raises(Crash):
        await night.run_until(at(25))
    before = len(night.messenger.sent)
    await restart(night, at(26))

    assert night.messenger.sent[before:] == []
    assert night.said_at(DUTY, LEADS) == [at(15), at(25)]
    assert night.said_at(case.room, LEADS) == [at(15), at(25)]
    # One next occurrence, not two (the first run had planned it already).
    repeats = [r for r in await night.pending(case.case_id) if r.action == "repeat"]
    assert [(r.due_at, night.wakeups.scheduled.get(r.id)) for r in repeats] == [(at(35), at(35))]

    # Each later occurrence is a message of its own, once.
    await night.run_until(at(45))
    for user in (DAG, EVA):
        room = await night.direct_room(user)
        assert [t for t in night.said_at(room, REMINDER) if t >= at(25)] == [
            at(25),
            at(35),
            at(45),
        ]
    assert night.said_at(DUTY, LEADS) == [at(15), at(25), at(35), at(45)]
    assert len(night.said(case.room, "Påminnelse skickad")) == 4  # 5, 25, 35, 45 min


async def test_an_unreadable_alert_cut_off_asks_the_next_signer_once(
    sqlite_sessions: Sessions, make_night: MakeNight, monkeypatch: pytest.MonkeyPatch
) -> None:
    night = await make_night(sqlite_sessions)
    night.messenger.undecryptable.add(IVAR)
    crash_before_done(monkeypatch, "matrix")

    with pytest.raises(Crash):
        await night.submit("tibro")  # Ivar's alert: unreadable, the next signer planned
    case = await waiting_case(night)
    await restart(night, at(1))

    assert len(night.said(case.room_id, UNREADABLE)) == 1
    assert len(night.said(DUTY, UNREADABLE)) == 1
    assert len(await night.alerts(JON)) == 1
    assert len(night.said(case.room_id, "Nu tillfrågas även Jon Jonsson")) == 1
    assert night.said(case.room_id, "Ingen fler beslutsfattare") == []
    assert [r.signer_user_id for r in await night.requests(case.id)] == [IVAR, JON]


async def test_paminn_and_skicka_om_delivered_again_after_a_crash_act_once(
    sqlite_sessions: Sessions, make_night: MakeNight
) -> None:
    night = await make_night(sqlite_sessions)
    case = await night.submit()
    dag_room = await night.direct_room(DAG)
    night.clock.now = at(1)

    async def deliver(event_id: str, body: str) -> list[str]:
        before = len(night.messenger.sent)
        await night.dispatcher.handle(IncomingMessage(case.room, ANNA, event_id, body))
        return [m.text for r, m in night.messenger.sent[before:] if r == case.room]

    assert "Larmet skickades igen till 1 beslutsfattare." in await deliver("$p1", "!påminn")
    assert await deliver("$p1", "!påminn") == []  # the same event again: nothing
    assert night.said_at(dag_room, ALERT) == [NOW, at(1)]
    night.clock.now = at(2)
    await deliver("$p2", "!påminn")  # a new command rings again
    assert night.said_at(dag_room, ALERT) == [NOW, at(1), at(2)]

    night.clock.now = at(3)
    said = await deliver("$r1", "!skicka om")
    assert "Nya länkar skickades till Dag Dagsson. De gamla länkarna är stängda." in said
    assert await deliver("$r1", "!skicka om") == []
    assert len(set(await night.tokens(DAG))) == 2  # the first link and one fresh one
    assert [r.status for r in await night.requests(case.case_id)] == ["replaced", "pending"]
