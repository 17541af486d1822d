"""Closing, archiving and retention (issue 9 §5).

The handler harness of ``tests/test_handover.py`` (a real dispatcher on a real,
migrated database, SQLite and PostgreSQL; the in-memory messenger; a clock moved by
hand) brings a case to handed-over; the deadlines are marked with the intake's
commands, the archive sweep closes and locks it, and retention deletes its personal
data. What is left is checked by reading every row of every table in the database.
"""

from __future__ import annotations

import hashlib
import io
import json
import textwrap
import zipfile
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import MetaData, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.rooms import read_only
from config import check_config, load_settings
from handlers import audit_export, deadlines
from handlers.archive import Archiver
from handlers.case_state import transition
from handlers.deadline_jobs import DeadlineJobs
from storage import decisions as decisions_repo
from storage import handover as handover_store
from storage import repo, retention
from storage.models import Case, SigningRequest
from tests.test_handover import (
    ANNA,
    CECILIA,
    CONFIG,
    DUTY,
    INTAKE,
    NAME,
    PNR,
    SIGNED_AT,
    Office,
    Sessions,
)

#: The decision-maker's own personal identity number, as identification returned it.
SIGNER_PNR = "19650318-4417"
#: A decline's grounds (free text: it may name the person).
GROUNDS = "Testsson kan bo kvar hos mormor"
#: Every string about a person the test puts in; none may be left anywhere after retention.
NEEDLES = (
    PNR,
    PNR.replace("-", ""),
    NAME,
    "Testsson",
    "jourhem i Skövde",
    "NN omhändertas omedelbart",
    SIGNER_PNR,
    SIGNER_PNR.replace("-", ""),
    "mormor",
)
RETENTION = timedelta(days=30)


@pytest.fixture
def office(sessions: Sessions, tmp_path: Path) -> Office:
    """The handover tests' installation, keeping personal data 30 days after a case ends."""
    path = tmp_path / "config.toml"
    config = textwrap.dedent(CONFIG.format(language="sv"))
    path.write_text(f'{config}\n[retention]\nafter_close = "30d"\n')
    settings = load_settings(path, environ={"SOCIALJOUR_MATRIX_PASSWORD": "secret"})
    return Office(settings, sessions)


def archiver(office: Office) -> Archiver:
    return Archiver(office.settings, office.sessions, office.messenger, office.clock)


async def handed_over_with_clocks(office: Office) -> Case:
    """Signed (the decision's clocks started, as the signature does), executed (its
    clock starts), handed over to Skövde's intake."""
    case = await office.signed_case()
    async with office.sessions() as session, session.begin():
        await deadlines.start_clocks(
            session,
            case_id=case.id,
            trigger="decision",
            at=SIGNED_AT,
            now=SIGNED_AT,
            settings=office.settings,
        )
        # The evidence of the signature: who identified, and how.
        await session.execute(
            update(SigningRequest)
            .where(SigningRequest.case_id == case.id)
            .values(
                identity={"name": "Dag Dagsson", "personal_number": SIGNER_PNR},
                auth_method="bankid",
                auth_state={"order": "x", "personal_number": SIGNER_PNR},
            )
        )
    await office.execute(case)
    await office.say(case.room_id or "", "!överlämna")
    return await office.case(case.id)


async def cancelled_after_decline(office: Office) -> Case:
    """A report the decision-maker declined with grounds, which the worker then ends
    (``!avbryt``: DECLINED -> CANCELLED)."""
    await office.say(DUTY, "!ny lvu6")
    async with office.sessions() as session:
        case = (await repo.list_cases(session))[-1]
    room = case.room_id or ""
    await office.say(room, NAME)
    await office.say(room, PNR)
    now = office.clock.now
    pdf = b"%PDF-1.7 a decision about Testsson"
    async with office.sessions() as session, session.begin():
        await transition(
            session, case_id=case.id, old="drafting", new="awaiting_signature", actor=ANNA, now=now
        )
        request = await decisions_repo.create_signing_request(
            session,
            case_id=case.id,
            token_hash=hashlib.sha256(case.number.encode()).hexdigest(),
            signer_user_id="@dag:example.org",
            signer_name="Dag Dagsson",
            signer_role="ordförande",
            municipality_id="skovde",
            document=pdf,
            document_sha256=hashlib.sha256(pdf).hexdigest(),
            now=now,
            expires_at=now + timedelta(hours=12),
        )
        assert await decisions_repo.decide(
            session, request_id=request.id, status="declined", now=now, reason=GROUNDS
        )
        await transition(
            session, case_id=case.id, old="awaiting_signature", new="declined", actor=ANNA, now=now
        )
    await office.say(room, "!avbryt")
    said = await office.say(room, "!avbryt ja")
    assert "avbrutet" in said[-1].text, said
    return await office.case(case.id)


async def scan(sessions: Sessions) -> tuple[set[str], set[str]]:
    """Every row of every table in the database: (``table.column`` where one of
    :data:`NEEDLES` is in the text, ``table.column`` holding non-empty binary data)."""
    found: set[str] = set()
    blobs: set[str] = set()
    # JSON columns may store "ö" as \\u00f6: look for both spellings.
    needles = {n for needle in NEEDLES for n in (needle, json.dumps(needle)[1:-1])}
    database = MetaData()  # what the database holds, not what the models say
    async with sessions() as session:
        await (await session.connection()).run_sync(database.reflect)
        for table in database.sorted_tables:
            for row in (await session.execute(select(table))).mappings().all():
                for column, value in row.items():
                    if isinstance(value, bytes | memoryview):
                        if bytes(value):
                            blobs.add(f"{table.name}.{column}")
                        value = bytes(value).decode("latin-1")
                    shown = value if isinstance(value, str) else json.dumps(value, default=str)
                    if any(needle in shown for needle in needles):
                        found.add(f"{table.name}.{column}")
    return found, blobs


def sqlite_files(sessions: Sessions) -> list[Path]:
    """The files of a SQLite database (its write-ahead log too); none for PostgreSQL."""
    url = sessions.kw["bind"].url
    if url.get_backend_name() != "sqlite":
        return []
    path = Path(url.database)
    return [f for f in (path, path.with_name(path.name + "-wal")) if f.exists()]


def in_files(files: list[Path]) -> set[str]:
    """The needles found anywhere in the raw bytes of ``files``."""
    data = b"".join(f.read_bytes() for f in files)
    return {needle for needle in (PNR, NAME, SIGNER_PNR, GROUNDS) if needle.encode() in data}


async def trail(office: Office, case_id: int) -> list[str]:
    return [action for action, _ in await office.audit(case_id)]


async def chain_ok(sessions: Sessions) -> bool:
    return (await audit_export.verify_chain(sessions)).ok


# -- closing ----------------------------------------------------------------------------------


async def test_a_case_closes_once_received_with_no_deadline_open_and_its_room_is_locked(
    office: Office,
) -> None:
    case = await handed_over_with_clocks(office)
    room = case.room_id or ""
    archive = archiver(office)
    said_before_lock: list[str] = []
    lock = office.messenger.close_room

    async def close_room(room_id: str) -> None:
        said_before_lock.extend(office.messenger.texts(room_id))
        await lock(room_id)

    office.messenger.close_room = close_room  # type: ignore[method-assign]
    await archive.sweep()
    assert (await office.case(case.id)).status == "handed_over"  # not received yet

    await office.say(INTAKE, f"!mottaget {case.number}", sender=CECILIA)
    await archive.sweep()
    # Received, but the deadlines are open: 7 § LVU, 8 § LVU and the report to the committee.
    async with office.sessions() as session:
        still = {d.name for d in await deadlines.open_deadlines(session, case_id=case.id)}
    assert still == {"understallning", "ansokan_vard", "anmalan_namnd"}
    assert (await office.case(case.id)).status == "handed_over"

    for act in ("underställt", "ansökt"):
        said = await office.say(INTAKE, f"!{act} {case.number}", sender=CECILIA)
        assert "klart, markerat av" in said[-1].text, said
        await archive.sweep()
        assert (await office.case(case.id)).status == "handed_over"
    assert office.messenger.closed == []

    await office.say(INTAKE, f"!anmält {case.number}", sender=CECILIA)
    await archive.sweep()
    closed = await office.case(case.id)
    assert closed.status == "closed" and closed.archived_at is not None
    # Told in the case room before it was locked, once; the intake room hears the number.
    [told] = [m for m in office.sent_to(room) if "är avslutat" in m.text]
    assert "skrivskyddat" in told.text and "kvitterat överlämningen" in told.text
    assert (SIGNED_AT + timedelta(minutes=30) + RETENTION).strftime("%Y-%m-%d") in told.text
    [notice] = [m for m in office.sent_to(INTAKE) if "är avslutat" in m.text]
    assert case.number in notice.text
    assert NAME not in notice.text and PNR not in notice.text
    assert office.messenger.closed == [room]
    assert told.text in said_before_lock
    actions = await trail(office, case.id)
    assert actions[-2:] == ["status.closed", "case.archived"]

    # Again, and after a restart: nothing more is said, the room is locked once.
    await archive.sweep()
    office.restart()
    await archiver(office).sweep()
    assert office.messenger.closed == [room]
    assert len([m for m in office.sent_to(room) if "är avslutat" in m.text]) == 1
    assert len([m for m in office.sent_to(INTAKE) if "är avslutat" in m.text]) == 1
    assert (await trail(office, case.id)).count("case.archived") == 1


async def test_a_crash_before_the_lock_is_recorded_repeats_nothing_visible(
    office: Office, monkeypatch: pytest.MonkeyPatch
) -> None:
    case = await handed_over_with_clocks(office)
    await office.say(INTAKE, f"!mottaget {case.number}", sender=CECILIA)
    for act in ("underställt", "ansökt", "anmält"):
        await office.say(INTAKE, f"!{act} {case.number}", sender=CECILIA)
    real = retention.mark_archived

    async def crash(session: AsyncSession, **kwargs: Any) -> bool:
        raise ConnectionError("database gone")

    monkeypatch.setattr(retention, "mark_archived", crash)
    await archiver(office).sweep()
    assert (await office.case(case.id)).archived_at is None
    monkeypatch.setattr(retention, "mark_archived", real)
    await archiver(office).sweep()
    assert (await office.case(case.id)).archived_at is not None
    # The messages went under their keys: one each. Locking a locked room changes nothing.
    assert len([m for m in office.sent_to(case.room_id or "") if "är avslutat" in m.text]) == 1
    assert len([m for m in office.sent_to(INTAKE) if "är avslutat" in m.text]) == 1
    assert (await trail(office, case.id)).count("case.archived") == 1


# -- retention --------------------------------------------------------------------------------


async def test_retention_deletes_every_personal_field_and_keeps_the_audit_chain_valid(
    office: Office,
) -> None:
    case = await handed_over_with_clocks(office)
    await office.say(INTAKE, f"!mottaget {case.number}", sender=CECILIA)
    for act in ("underställt", "ansökt", "anmält"):
        await office.say(INTAKE, f"!{act} {case.number}", sender=CECILIA)
    archive = archiver(office)
    await archive.sweep()
    closed_at = office.clock.now
    assert (await office.case(case.id)).status == "closed"
    cancelled = await cancelled_after_decline(office)
    # An event from the case room that arrived and was never handled holds its content.
    async with office.sessions() as session, session.begin():
        await repo.store_events(
            session,
            events=[("$late", case.room_id or "", 99, {"body": f"{NAME} {PNR}"})],
            now=closed_at,
        )
    async with office.sessions() as session:
        hashes_before = sorted(
            (r.document_sha256, r.signed_sha256)
            for r in await session.scalars(select(SigningRequest))
        )
    found, blobs = await scan(office.sessions)
    # The test can fail: the personal data is there to begin with.
    assert {
        "reports.state",
        "reports.submitted",
        "executions.state",
        "executions.record",
        "signing_requests.identity",
        "signing_requests.auth_state",
        "signing_requests.decision_reason",
        "processed_events.payload",
    } <= found
    assert {
        "signing_requests.document",
        "signing_requests.signed_document",
        "handover_documents.data",
    } <= blobs

    files = sqlite_files(office.sessions)
    assert in_files(files) == ({PNR, NAME, SIGNER_PNR, GROUNDS} if files else set())

    # Not before the retention time has run out.
    office.clock.at(closed_at + RETENTION - timedelta(minutes=1))
    due = await archive.sweep()
    assert due is not None and closed_at + RETENTION <= due <= office.clock.now + timedelta(
        minutes=2
    )
    assert (await office.case(case.id)).purged_at is None

    office.clock.at(closed_at + RETENTION + timedelta(minutes=5))
    assert await archive.sweep() is None  # nothing left waiting
    found, blobs = await scan(office.sessions)
    assert found == set() and blobs == set()
    # Nor in the file: SQLite's free space and write-ahead log kept old copies.
    assert in_files(sqlite_files(office.sessions)) == set()
    for ended, status in ((case, "closed"), (cancelled, "cancelled")):
        purged = await office.case(ended.id)
        assert purged.purged_at == office.clock.now
        assert purged.number == ended.number and purged.status == status
    [(_, what)] = [(a, d) for a, d in await office.audit(case.id) if a == "retention.deleted"]
    assert what == {
        "what": {"report": 1, "decisions": 1, "execution": 1, "handover": 4, "inbox": 1}
    }
    assert (await trail(office, cancelled.id)).count("retention.deleted") == 1
    # What is not personal stays: the hashes, the deadlines' days, the whole trail.
    async with office.sessions() as session:
        hashes_after = sorted(
            (r.document_sha256, r.signed_sha256)
            for r in await session.scalars(select(SigningRequest))
        )
        left = await deadlines.open_deadlines(session, case_id=case.id)
    assert hashes_after == hashes_before and left == []
    assert await chain_ok(office.sessions)

    # Twice is safe: nothing more changes, nothing more is written.
    rows = len(await office.audit(case.id)) + len(await office.audit(cancelled.id))
    await archive.sweep()
    assert len(await office.audit(case.id)) + len(await office.audit(cancelled.id)) == rows
    assert await chain_ok(office.sessions)

    # Nothing errors on a purged case: the duty room's !status (open cases only), the
    # case room's !status and !logg, the handover and deadline jobs, the case file.
    said = await office.say(DUTY, "!status")
    assert case.number not in said[-1].text and cancelled.number not in said[-1].text
    said = await office.say(case.room_id or "", "!status")
    assert "avslutat" in said[-1].text
    said = await office.say(case.room_id or "", "!logg")
    assert "personuppgifter gallrades" in said[-1].text
    await office.dispatcher.handover.check()
    await DeadlineJobs(office.settings, office.sessions, office.messenger, office.clock).sweep()
    export = await audit_export.export_case(
        office.sessions, office.settings, number=case.number, actor="cli:test", now=office.clock.now
    )
    assert export is not None
    with zipfile.ZipFile(io.BytesIO(export.data)) as archive_file:
        exported = json.loads(archive_file.read(f"{case.number}/trail.json"))
        contents = b"".join(archive_file.read(name) for name in archive_file.namelist())
        sizes = {info.filename: info.file_size for info in archive_file.infolist()}
    # No document survives as an empty file; the case says when its content went.
    assert not any("/documents/" in name for name in sizes), sizes
    assert exported["case"]["purged_at"] is not None
    # The trail still lists what existed (each document's hash), and says it was deleted.
    [sent] = [e["detail"] for e in exported["entries"] if e["action"] == "handover.sent"]
    async with office.sessions() as session:
        kept = {
            d.part: d.sha256 for d in await handover_store.list_documents(session, case_id=case.id)
        }
    assert sent["files"] == kept and len(kept) == 4
    assert "retention.deleted" in [e["action"] for e in exported["entries"]]
    assert not any(needle.encode() in contents for needle in (PNR, NAME, SIGNER_PNR))
    found, _ = await scan(office.sessions)
    assert found == set()


async def test_a_crash_between_two_cases_is_completed_by_the_next_run(
    office: Office, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = await cancelled_after_decline(office)
    second = await cancelled_after_decline(office)
    office.clock.at(office.clock.now + RETENTION + timedelta(seconds=1))
    real = retention.purge_case

    async def crash_in_the_second(
        session: AsyncSession, *, case_id: int, now: Any
    ) -> dict[str, int] | None:
        done = await real(session, case_id=case_id, now=now)
        if case_id == second.id:
            raise ConnectionError("the process died here")  # half-way: rolled back
        return done

    monkeypatch.setattr(retention, "purge_case", crash_in_the_second)
    await archiver(office).sweep()
    assert (await office.case(first.id)).purged_at is not None
    assert (await office.case(second.id)).purged_at is None
    async with office.sessions() as session:
        report = await repo.get_report(session, case_id=second.id)
    assert report is not None and report.state["answers"]["personnummer"]["value"] == PNR
    assert "retention.deleted" not in await trail(office, second.id)

    monkeypatch.setattr(retention, "purge_case", real)
    await archiver(office).sweep()  # the next run, e.g. after the restart
    assert (await office.case(second.id)).purged_at is not None
    found, blobs = await scan(office.sessions)
    assert found == set() and blobs == set()
    for case in (first, second):
        assert (await trail(office, case.id)).count("retention.deleted") == 1
    assert await chain_ok(office.sessions)


# -- the parts ----------------------------------------------------------------------------------


def test_read_only_power_levels_keep_the_bot_and_refuse_everyone_else() -> None:
    bot = "@socialjour:example.org"
    levels: dict[str, Any] = {
        "users": {bot: 100},
        "users_default": 0,
        "events_default": 0,
        "state_default": 100,
        "redact": 50,
        "events": {"m.room.name": 100, "m.reaction": 0},
    }
    closed = read_only(levels, bot)
    assert closed is not None
    assert closed["events_default"] == 100 and closed["users"] == {bot: 100}
    assert closed["events"] == {"m.room.name": 100, "m.reaction": 100}
    assert closed["state_default"] == 100 and closed["users_default"] == 0
    assert levels["events_default"] == 0  # the input is left as it was
    assert read_only(closed, bot) is None  # closing a closed room changes nothing
    # Room version 12: the creator is not listed (and must not be).
    assert "users" not in (read_only({"events_default": 0}, bot) or {})


def test_retention_is_read_from_the_config(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    config = textwrap.dedent(CONFIG.format(language="sv"))
    path.write_text(config)
    env = {"SOCIALJOUR_MATRIX_PASSWORD": "secret"}
    assert load_settings(path, environ=env).retention.after_close == timedelta(days=90)
    path.write_text(f'{config}\n[retention]\nafter_close = "1d12h"\n')
    assert load_settings(path, environ=env).retention.after_close == timedelta(hours=36)
    path.write_text(f'{config}\n[retention]\nafter_close = "3 months"\n')
    [problem] = check_config(path, environ=env)
    assert problem.place.endswith("retention.after_close") and "like 30s" in problem.message
