"""Who signs which form, refusals as decisions, and an on-call override for someone who
cannot decide (issue 9 §1), as the worker, the duty lead and the signer notice it.

The real dispatcher and decision side (``tests.decision_services.Services``) on a
migrated database (SQLite and PostgreSQL where the storage matters), the in-memory
messenger standing in for Matrix, a seal from the development PKI (so sealed PDFs are
checked with pyHanko against the development CA) and a clock the test moves.
"""

from __future__ import annotations

import hashlib
import secrets
import textwrap
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from config import Settings, check_config, load_settings
from config.forms import FormTemplate, builtin_forms, load_forms
from handlers.dialogue import DialogueState
from handlers.dispatcher import Dispatcher
from handlers.links import token_hash
from handlers.messenger import IncomingMessage, MemoryMessenger, Message
from signing.devpki import DevPki, create_dev_pki
from signing.seal import load_signer
from signing.verify import FileReport, async_verify_bytes
from storage import create_engine, decisions, records, repo, session_factory, upgrade
from storage import escalation as steps
from storage.models import Case, SigningRequest
from tests.decision_services import Services
from tests.test_handlers import FakeClock
from tests.test_signing_document import luhn_number, pdf_text

Sessions = async_sessionmaker[AsyncSession]

ANNA = "@anna:example.org"  # the worker on duty
LENA = "@lena:example.org"  # the duty lead
DAG = "@dag:example.org"  # Skövde's chair, appointed until 2030
EVA = "@eva:example.org"  # Skövde's appointed member
OLLE = "@olle:example.org"  # Skövde, no appointment recorded
PER = "@per:example.org"  # Skövde, appointed until the night's day
JONNA = "@jonna:example.org"  # Skövde's first delegate (jourchef)
KARL = "@karl:example.org"  # Skövde's second delegate
HEDDA = "@hedda:example.org"  # Hjo, her appointment ran out in June
IVAR = "@ivar:example.org"  # Tibro's chair; Tibro has no delegate
DUTY = "!duty:test"
NOW = datetime(2026, 11, 24, 2, 30, tzinfo=UTC)  # 03:30 in Stockholm, a night shift
PNR = luhn_number("20120315", "238")
JONNA_REF = "Delegationsordning 2026 p. 4.2"

CONFIG = """
[matrix]
homeserver = "http://127.0.0.1:8008"
user_id = "@socialjour:example.org"
password = "secret"

[storage]
data_dir = "data"

[duty]
room_alias = "#socialjour:example.org"
members = ["{anna}"]
leads = ["{lena}"]

[[municipalities]]
id = "skovde"
name = "Skövde kommun"
intake_room_alias = "#mottagning-skovde:example.org"

  [[municipalities.decision_makers]]
  user_id = "{dag}"
  name = "Dag Dagsson"
  role = "ordförande"
  appointed_by = "Kommunfullmäktige"
  appointed_on = 2023-01-12
  minutes_ref = "§ 4"
  valid_until = 2030-12-31

  [[municipalities.decision_makers]]
  user_id = "{eva}"
  name = "Eva Evasdotter"
  role = "förordnad ledamot"
  appointed_by = "Socialnämnden"
  appointed_on = 2023-01-26
  minutes_ref = "§ 12"
  valid_until = 2030-12-31

  [[municipalities.decision_makers]]
  user_id = "{olle}"
  name = "Olle Olsson"
  role = "förordnad ledamot"

  [[municipalities.decision_makers]]
  user_id = "{per}"
  name = "Per Persson"
  role = "förordnad ledamot"
  appointed_by = "Socialnämnden"
  appointed_on = 2023-01-26
  minutes_ref = "§ 12"
  valid_until = 2026-11-24

  [[municipalities.delegates]]
  user_id = "{jonna}"
  name = "Jonna Jonsson"
  title = "jourchef"
  delegation_ref = "{jonna_ref}"

  [[municipalities.delegates]]
  user_id = "{karl}"
  name = "Karl Krantz"
  delegation_ref = "Delegationsordning 2026 p. 4.3"

[[municipalities]]
id = "tibro"
name = "Tibro kommun"
intake_room_alias = "#mottagning-tibro:example.org"

  [[municipalities.decision_makers]]
  user_id = "{ivar}"
  name = "Ivar Ivarsson"
  role = "ordförande"
  appointed_by = "Kommunfullmäktige"
  appointed_on = 2023-01-12
  minutes_ref = "§ 4"
  valid_until = 2030-12-31

[[municipalities]]
id = "hjo"
name = "Hjo kommun"
intake_room_alias = "#mottagning-hjo:example.org"

  [[municipalities.decision_makers]]
  user_id = "{hedda}"
  name = "Hedda Hjo"
  role = "förordnad ledamot"
  appointed_by = "Socialnämnden"
  appointed_on = 2023-01-26
  minutes_ref = "§ 3"
  valid_until = 2026-06-30

[signing]
auth_methods = ["matrix-code"]
seal_pkcs12 = "{seal}"
seal_pkcs12_password = {{ file = "{seal_password}" }}
trust_roots = ["{ca}"]
"""


def write_settings(folder: Path, pki: DevPki) -> Settings:
    path = folder / "config.toml"
    text = CONFIG.format(
        anna=ANNA,
        lena=LENA,
        dag=DAG,
        eva=EVA,
        olle=OLLE,
        per=PER,
        jonna=JONNA,
        jonna_ref=JONNA_REF,
        karl=KARL,
        hedda=HEDDA,
        ivar=IVAR,
        seal=pki.seal_pkcs12,
        seal_password=pki.seal_password_file,
        ca=pki.ca_cert,
    )
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return load_settings(path, environ={})


def answer_for(form: FormTemplate, field_id: str, municipality: str) -> tuple[Any, str]:
    """A valid stored answer (value, display) for any question of any form."""
    spec = form.field(field_id)
    match spec.type:
        case "choice":
            return spec.choices[0].value, spec.choices[0].label
        case "multi_choice":
            return [spec.choices[0].value], spec.choices[0].label
        case "yes_no":
            return False, "Nej"
        case "personnummer":
            return PNR, PNR
        case "municipality":
            return municipality, municipality
        case "date":
            return "2026-11-25", "2026-11-25"
        case "datetime":
            return "2026-11-24T03:15:00+01:00", "2026-11-24 03:15"
        case "matrix_user":
            return ANNA, ANNA
    shown = f"Svar på {spec.label.lower()} (Elsa Åström)"
    return shown, shown


@dataclass
class Filed:
    case_id: int
    number: str
    room: str


@dataclass
class Night:
    settings: Settings
    sessions: Sessions
    messenger: MemoryMessenger
    clock: FakeClock
    services: Services
    pki: DevPki
    tmp: Path
    dispatcher: Dispatcher = field(init=False)
    _events: int = 0

    def __post_init__(self) -> None:
        self.dispatcher = Dispatcher(
            settings=self.settings,
            sessions=self.sessions,
            messenger=self.messenger,
            clock=self.clock,
            decisions=self.services.decisions,
        )
        self.dispatcher.duty_room_id = DUTY

    async def draft(self, form_id: str, municipality: str = "skovde") -> Filed:
        """A case with every question of ``form_id`` answered, not yet sent."""
        now = self.clock()
        form = self.settings.forms[form_id]
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
        for spec in form.fields:
            value, display = answer_for(form, spec.id, municipality)
            state.answers[spec.id] = {
                "value": value,
                "display": display,
                "by": ANNA,
                "at": now.isoformat(),
            }
        async with self.sessions() as session, session.begin():
            await repo.set_case_room(session, case_id=case_id, room_id=room)
            assert await repo.save_report_state(
                session,
                case_id=case_id,
                form_id=form.id,
                form_version=form.version,
                state=state.to_json(),
                expected_version=None,
                now=now,
            )
        return Filed(case_id, number, room)

    async def say(self, room: str, body: str, *, sender: str = ANNA) -> list[tuple[str, Message]]:
        before = len(self.messenger.sent)
        self._events += 1
        await self.dispatcher.handle(IncomingMessage(room, sender, f"$in{self._events}", body))
        return self.messenger.sent[before:]

    async def case(self, case_id: int) -> Case:
        async with self.sessions() as session:
            case = await repo.get_case(session, case_id=case_id)
        assert case is not None
        return case

    async def requests(self, case_id: int) -> list[SigningRequest]:
        async with self.sessions() as session:
            return await decisions.list_signing_requests(session, case_id=case_id)

    async def audit(self, case_id: int) -> list[str]:
        async with self.sessions() as session:
            return [e.action for e in await repo.list_audit(session, case_id=case_id)]

    async def direct_room(self, user_id: str) -> str | None:
        async with self.sessions() as session:
            return await decisions.get_direct_room(session, user_id=user_id)

    def texts(self, room: str | None) -> list[str]:
        return [m.text for r, m in self.messenger.sent if r == room]

    def files(self, room: str) -> list[tuple[str, bytes]]:
        return [(name, data) for r, name, data in self.messenger.files if r == room]

    async def escalate_to(self, minutes: float) -> None:
        """The scheduler: every escalation row due by then runs, in order."""
        self.clock.now = NOW + timedelta(minutes=minutes)
        async with self.sessions() as session:
            due = await steps.list_pending(session, due_before=self.clock.now)
        for case_id in sorted({s.case_id for s in due}):
            await self.services.escalator.run_due(case_id)

    async def decline(self, request: SigningRequest, reason: str) -> dict[str, Any]:
        """The signer, identified, declines on the signing page."""
        cookie = secrets.token_urlsafe(16)
        token = secrets.token_urlsafe(32)
        async with self.sessions() as session, session.begin():
            # A fresh link for the request (its own is sealed in the alert).
            await session.execute(
                SigningRequest.__table__.update()
                .where(SigningRequest.id == request.id)
                .values(token_hash=token_hash(token))
            )
            await decisions.open_session(
                session,
                request_id=request.id,
                session_hash=token_hash(cookie),
                expires_at=self.clock() + timedelta(minutes=30),
                identity={"method": "matrix-code", "subject": request.signer_user_id},
            )
        answer = await self.services.backend.decide(token, cookie, "decline", reason)
        await self.services.backend.outcomes.settled()
        return answer

    async def verify(self, pdf: bytes) -> FileReport:
        return await async_verify_bytes(pdf, trust_roots=[self.pki.ca_cert])

    def text_of(self, pdf: bytes) -> str:
        return pdf_text(pdf, self.tmp, name=f"{hashlib.sha256(pdf).hexdigest()[:12]}.pdf")


MakeNight = Callable[[Sessions], Awaitable[Night]]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> DevPki:
    return create_dev_pki(tmp_path_factory.mktemp("signer-kinds-pki"))


@pytest.fixture
async def sqlite_sessions(tmp_path: Path) -> AsyncIterator[Sessions]:
    """A migrated SQLite database only, where the storage side is covered elsewhere."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'db' / 'socialjour.db'}"
    await upgrade(url)
    engine = create_engine(url)
    yield session_factory(engine)
    await engine.dispose()


@pytest.fixture
async def make_night(tmp_path: Path, pki: DevPki) -> AsyncIterator[MakeNight]:
    made: list[Night] = []

    async def make(sessions: Sessions) -> Night:
        folder = tmp_path / f"night{len(made)}"
        folder.mkdir()
        settings = write_settings(folder, pki)
        messenger = MemoryMessenger()
        clock = FakeClock(NOW)
        services = Services(
            settings, sessions, messenger, clock, signer=load_signer(settings.signing)
        )
        night = Night(settings, sessions, messenger, clock, services, pki, folder)
        made.append(night)
        return night

    yield make
    for night in made:
        await night.services.backend.close()


# -- templates and config ------------------------------------------------------------------


def test_each_shipped_template_says_who_signs_it() -> None:
    forms = builtin_forms()
    assert {form_id: form.signer for form_id, form in forms.items()} == {
        "lvu6": "committee_member",
        "lvm13": "committee_member",
        "sol_placering": "delegate",
        "skyddsbedomning": "none",
    }
    # Every form that can be refused names its refusal, with the deciding body in it.
    for form_id in ("lvu6", "lvm13", "sol_placering"):
        form = forms[form_id]
        for language in ("sv", "en"):
            assert form.text_in("refusal_title", language)
            assert "{body}" in form.text_in("refusal_text", language)
    assert forms["lvu6"].text_in("refusal_text", "en").startswith("{body} decided not to")
    assert forms["skyddsbedomning"].refusal_text == ""


def write_form(folder: Path, extra: str) -> Path:
    """A minimal template with ``extra`` top-level keys, in its own folder."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "prov.toml").write_text(
        textwrap.dedent(
            """
            id = "prov"
            version = 1
            title = "Prov"
            decision_type = "Prov"
            legal_reference = "Ingen"
            next_step = "Inget"
            description = "Ett prov"
            {extra}

            [[fields]]
            id = "beslut"
            type = "long_text"
            label = "Förslag"
            decision = true
            """
        ).format(extra=extra),
        encoding="utf-8",
    )
    return folder


@pytest.mark.parametrize(
    ("extra", "place", "expected"),
    [
        (
            'signer = "politician"',
            "signer",
            "expected one of 'committee_member', 'delegate', 'none', got 'politician'",
        ),
        (
            'signer = "delegat"',
            "signer",
            "expected one of 'committee_member', 'delegate', 'none', got 'delegat'; "
            "did you mean 'delegate'?",
        ),
        ("signer = 3", "signer", "expected a string, got an integer (3)"),
        (
            'signer = "none"\nrefusal_title = "Avslag"\nrefusal_text = "{body} avslog."',
            "refusal_title",
            'a form with signer = "none" is the worker\'s record and is never refused: '
            "remove the refusal texts",
        ),
        (
            'refusal_title = "Avslag"',
            "refusal_text",
            "missing required key: a refusal needs refusal_title and refusal_text",
        ),
        (
            'refusal_title = "Avslag"\nrefusal_text = "{nämnd} avslog."',
            "refusal_text",
            "unknown placeholder {nämnd}: only {body} (the deciding body) is filled in",
        ),
    ],
)
def test_check_config_names_a_bad_signer_or_refusal_key(
    tmp_path: Path, extra: str, place: str, expected: str
) -> None:
    folder = write_form(tmp_path / "forms", extra)
    forms, problems = load_forms((folder,))
    assert forms == {}
    assert [
        (p.place.rsplit(": ", 1)[1], p.message) for p in problems if p.place.endswith(place)
    ] == [(place, expected)]


def test_a_template_without_signer_is_decided_by_the_committee_as_before(tmp_path: Path) -> None:
    forms, problems = load_forms((write_form(tmp_path / "forms", ""),))
    assert problems == []
    assert forms["prov"].signer == "committee_member"
    assert forms["prov"].refusal_title == ""


def test_delegates_are_read_and_a_municipality_without_one_is_warned_about(
    tmp_path: Path, pki: DevPki
) -> None:
    settings = write_settings(tmp_path, pki)

    skovde = settings.municipality("skovde")
    assert skovde is not None
    jonna, karl = skovde.delegates
    assert (jonna.user_id, jonna.name, jonna.label, jonna.delegation_ref) == (
        JONNA,
        "Jonna Jonsson",
        "jourchef",
        JONNA_REF,
    )
    assert karl.label == "delegat"  # no title
    # A delegate form that cannot be sent somewhere is a warning, not a problem: the
    # built-in sol_placering is in every installation.
    warned = {w.place: w.message for w in settings.warnings if w.place.endswith(".delegates")}
    assert sorted(warned) == ["municipalities[1].delegates", "municipalities[2].delegates"]
    assert warned["municipalities[1].delegates"].startswith(
        "Tibro kommun lists no delegate, but sol_placering is decided by a delegate"
    )
    assert "[[municipalities.delegates]]" in warned["municipalities[1].delegates"]


def test_a_delegate_needs_a_delegation_ref_and_is_listed_once(tmp_path: Path, pki: DevPki) -> None:
    write_settings(tmp_path, pki)
    path = tmp_path / "config.toml"
    text = path.read_text(encoding="utf-8")
    text = text.replace(f'delegation_ref = "{JONNA_REF}"', "", 1)
    text = text.replace(f'user_id = "{KARL}"', f'user_id = "{JONNA}"', 1)
    path.write_text(text, encoding="utf-8")

    problems = {p.place.split(": ", 1)[1]: p.message for p in check_config(path, environ={})}

    assert problems == {
        "municipalities[0].delegates[0].delegation_ref": "missing required key",
        "municipalities[0].delegates[1].user_id": (
            f"{JONNA} is listed twice among the delegates (also at municipalities[0].delegates[0])"
        ),
    }


# -- a delegate form -------------------------------------------------------------------------


async def test_a_delegate_form_goes_to_the_delegates_in_order_and_never_to_a_politician(
    sessions: Sessions, make_night: MakeNight
) -> None:
    night = await make_night(sessions)
    filed = await night.draft("sol_placering")

    await night.say(filed.room, "!skicka")

    (first,) = await night.requests(filed.case_id)
    assert (first.signer_user_id, first.signer_kind, first.signer_role) == (
        JONNA,
        "delegate",
        "jourchef",
    )
    assert (await night.case(filed.case_id)).status == "awaiting_signature"
    # The decision she reviews states the delegation, not a committee mandate.
    reviewed = night.text_of(first.document)
    assert f"Beslut fattat med stöd av delegation enligt {JONNA_REF}." in reviewed
    assert "nämndens beslut inte kunde avvaktas" not in reviewed
    alerts = night.texts(await night.direct_room(JONNA))
    assert alerts and "Brådskande beslut att underteckna" in alerts[0]

    # The standard policy: reminded at 5, the next signer at 10, the leads at 15, and
    # repeated: the next signer is the second delegate, and after the delegates nobody.
    await night.escalate_to(40)

    asked = [r.signer_user_id for r in await night.requests(filed.case_id)]
    assert asked == [JONNA, KARL]
    assert {r.signer_kind for r in await night.requests(filed.case_id)} == {"delegate"}
    for politician in (DAG, EVA, OLLE, PER):
        assert await night.direct_room(politician) is None, politician
    case_room = night.texts(filed.room)
    assert any("Karl Krantz" in t for t in case_room)


async def test_a_delegate_form_without_a_delegate_asks_nobody_and_says_so(
    sqlite_sessions: Sessions, make_night: MakeNight
) -> None:
    night = await make_night(sqlite_sessions)
    filed = await night.draft("sol_placering", municipality="tibro")

    await night.say(filed.room, "!skicka")

    assert await night.requests(filed.case_id) == []
    assert (await night.case(filed.case_id)).status == "drafting"
    told = night.texts(filed.room)
    assert any(
        "Ingen delegat är inlagd för **Tibro kommun**".replace("**", "") in t for t in told
    ), told
    leads = night.texts(DUTY)
    assert any(filed.number in t and "[[municipalities.delegates]]" in t for t in leads), leads
    # Nothing personal in the duty room, and the chair was not asked instead.
    assert not any("Elsa" in t for t in leads)
    assert await night.direct_room(IVAR) is None


async def test_a_committee_form_never_goes_to_a_delegate(
    sqlite_sessions: Sessions, make_night: MakeNight
) -> None:
    night = await make_night(sqlite_sessions)
    filed = await night.draft("lvu6")

    await night.say(filed.room, "!skicka")
    await night.escalate_to(40)

    requests = await night.requests(filed.case_id)
    assert [r.signer_user_id for r in requests] == [DAG, EVA]  # Olle and Per: no mandate
    assert {r.signer_kind for r in requests} == {"committee_member"}
    assert await night.direct_room(JONNA) is None and await night.direct_room(KARL) is None


# -- a form nobody signs -----------------------------------------------------------------------


async def test_a_form_nobody_signs_is_sealed_as_the_workers_record(
    sessions: Sessions, make_night: MakeNight
) -> None:
    night = await make_night(sessions)
    filed = await night.draft("skyddsbedomning")

    await night.say(filed.room, "!skicka")

    # No signing request, no escalation, nobody alerted.
    assert await night.requests(filed.case_id) == []
    async with night.sessions() as session:
        assert await steps.list_steps(session, case_id=filed.case_id) == []
        record = await records.get_record(session, case_id=filed.case_id)
    assert (await night.case(filed.case_id)).status == "recorded"
    for person in (DAG, EVA, JONNA, KARL):
        assert await night.direct_room(person) is None
    # The sealed record is in the case room, once, and in the database.
    ((name, pdf),) = night.files(filed.room)
    assert name == f"{filed.number}-dokumentation.pdf"
    assert record is not None and record.document == pdf and record.recorded_by == ANNA
    assert record.sha256 == hashlib.sha256(pdf).hexdigest()
    told = night.texts(filed.room)[-1]
    assert f"Dokumentationen i {filed.number} är förseglad" in told and record.sha256 in told
    # pyHanko: a seal over the whole file, trusted, with the worker as the evidence.
    report = await night.verify(pdf)
    assert report.ok, report
    (signature,) = report.signatures
    assert signature.trusted and signature.intact and signature.whole_document
    assert signature.on_behalf_of == ANNA
    assert signature.reason is not None and signature.reason.startswith(f"Dokumenterat av {ANNA}")
    assert report.evidence is not None and report.evidence["subject"] == ANNA
    text = night.text_of(pdf)
    assert "Dokumentation" in text and f"Dokumenterat av {ANNA} den 2026-11-24 kl. 03:30." in text
    assert "Beslutsfattare" not in text and "Beslutsdatum" not in text
    audit = await night.audit(filed.case_id)
    assert "status.recorded" in audit and audit.count("record.sealed") == 1
    assert "signature.requested" not in audit

    # The report is locked: a second !skicka records nothing more.
    await night.say(filed.room, "!skicka")
    assert len(night.files(filed.room)) == 1


async def test_a_record_that_did_not_reach_the_room_is_posted_once_at_recover(
    sqlite_sessions: Sessions, make_night: MakeNight
) -> None:
    night = await make_night(sqlite_sessions)
    filed = await night.draft("skyddsbedomning")
    real = night.messenger.send_file
    failures = [ConnectionError("homeserver unreachable")]

    async def flaky(room_id: str, data: bytes, filename: str, mimetype: str, **kw: Any) -> str:
        if failures:
            raise failures.pop()
        return await real(room_id, data, filename, mimetype, **kw)

    night.messenger.send_file = flaky  # type: ignore[method-assign]

    await night.say(filed.room, "!skicka")

    assert (await night.case(filed.case_id)).status == "recorded"  # kept, not lost
    assert night.files(filed.room) == []
    await night.services.backend.recover()
    await night.services.backend.recover()
    assert len(night.files(filed.room)) == 1
    assert sum("är förseglad" in t for t in night.texts(filed.room)) == 1


async def test_without_a_seal_a_record_is_not_made_and_the_report_stays_open(
    sqlite_sessions: Sessions, make_night: MakeNight
) -> None:
    night = await make_night(sqlite_sessions)
    night.services.backend.signer = None
    filed = await night.draft("skyddsbedomning")

    await night.say(filed.room, "!skicka")

    assert (await night.case(filed.case_id)).status == "drafting"
    assert night.files(filed.room) == []
    assert any("ingen sigillnyckel är konfigurerad" in t for t in night.texts(filed.room))
    async with night.sessions() as session:
        assert await records.get_record(session, case_id=filed.case_id) is None


# -- refusals ------------------------------------------------------------------------------------


async def test_a_refusal_is_a_sealed_decision_in_the_case_room(
    sessions: Sessions, make_night: MakeNight
) -> None:
    night = await make_night(sessions)
    filed = await night.draft("lvu6")
    await night.say(filed.room, "!skicka")
    (request,) = await night.requests(filed.case_id)
    night.clock.advance(minutes=3)

    answer = await night.decline(request, "Barnet kan bo hos mormor i natt; inget behov av LVU.")

    assert answer["status"] == "declined"
    ((name, pdf),) = night.files(filed.room)
    assert name == f"{filed.number}-beslut-avslag.pdf"
    assert answer["document_sha256"] == hashlib.sha256(pdf).hexdigest()
    (declined,) = await night.requests(filed.case_id)
    assert declined.status == "declined" and declined.signed_document == pdf
    assert declined.signed_sha256 == answer["document_sha256"]
    assert (await night.case(filed.case_id)).status == "declined"
    report = await night.verify(pdf)
    assert report.ok, report
    (signature,) = report.signatures
    assert (
        signature.trusted and signature.whole_document and signature.on_behalf_of == "Dag Dagsson"
    )
    assert report.evidence is not None and report.evidence["decision"]["outcome"] == "declined"
    text = night.text_of(pdf)
    assert "Beslut att inte omhänderta omedelbart enligt LVU" in text
    assert "Socialnämnden beslutade att inte omedelbart omhänderta den unge enligt 6 § LVU." in text
    assert "Skäl för beslutet Barnet kan bo hos mormor i natt; inget behov av LVU." in text
    assert "Dag Dagsson" in text and "Ordförande i Socialnämnden, vald av Kommunfullmäktige" in text
    assert "Beslutat 2026-11-24 kl. 03:33" in text
    # What follows a custody decision is not printed on its refusal.
    assert "Hur man överklagar" not in text and "Nästa steg" not in text
    told = night.texts(filed.room)[-1]
    assert "Dag Dagsson beslutade att inte fatta det föreslagna beslutet" in told
    assert "Barnet kan bo hos mormor" in told and declined.signed_sha256 in told

    # The worker may still revise and send again; the refusal stays in the file.
    await night.say(filed.room, "!ändra 1")
    await night.say(filed.room, "Elsa Åström Berg")
    await night.say(filed.room, "!skicka")
    first, second = await night.requests(filed.case_id)
    assert first.signed_document == pdf and second.status == "pending"
    assert (await night.case(filed.case_id)).status == "awaiting_signature"


async def test_a_delegates_refusal_states_the_delegation_and_how_to_appeal(
    sqlite_sessions: Sessions, make_night: MakeNight
) -> None:
    night = await make_night(sqlite_sessions)
    filed = await night.draft("sol_placering")
    await night.say(filed.room, "!skicka")
    (request,) = await night.requests(filed.case_id)

    await night.decline(request, "Samtycket är inte klart.")

    ((_, pdf),) = night.files(filed.room)
    text = night.text_of(pdf)
    assert "Beslut att inte bevilja placering med samtycke" in text
    assert "Socialnämnden beslutade att inte bevilja bistånd" in text
    assert f"Beslut fattat med stöd av delegation enligt {JONNA_REF}." in text
    assert "Jonna Jonsson" in text and "jourchef" in text
    assert "Hur man överklagar" in text and "förvaltningsrätten" in text
    assert (await night.verify(pdf)).ok


# -- !jour ersätt for someone who cannot decide -------------------------------------------------


@pytest.mark.parametrize(
    ("who", "period", "expected"),
    [
        (
            OLLE,
            "nu 2026-11-24T08:00",
            "kommer inte att tillfrågas om nämndbeslut: inget förordnande är inlagt",
        ),
        (HEDDA, "nu 2026-11-24T08:00", "förordnandet gick ut 2026-06-30."),
        (PER, "18:00 07:00", "förordnandet gäller bara till och med 2026-11-24: efter det"),
    ],
)
async def test_putting_someone_on_call_who_cannot_decide_warns_the_lead(
    sqlite_sessions: Sessions, make_night: MakeNight, who: str, period: str, expected: str
) -> None:
    night = await make_night(sqlite_sessions)

    answers = [m for room, m in await night.say(DUTY, f"!jour ersätt {who} {period}", sender=LENA)]

    texts = [m.text for m in answers]
    assert any(expected in t for t in texts), texts
    warning = next(t for t in texts if expected in t)
    assert "6 § andra stycket LVU" in warning and who in warning
    not_asked = who != PER
    # Saying "on call first" alone would mislead: only a partial appointment also says so.
    assert any(t.startswith(f"{who} har beslutsjour först") for t in texts) is not not_asked


async def test_putting_someone_with_an_appointment_on_call_says_nothing_more(
    sqlite_sessions: Sessions, make_night: MakeNight
) -> None:
    night = await make_night(sqlite_sessions)

    answers = await night.say(DUTY, f"!jour ersätt {EVA} nu 2026-11-25T08:00", sender=LENA)

    (only,) = [m.text for _, m in answers]
    assert only.startswith(f"{EVA} har beslutsjour först för Skövde kommun")
