"""The audit trail: a hash chain that proves what happened and shows where it was changed.

The chain on SQLite and PostgreSQL (appends, rollbacks, concurrent writers), the
command line an administrator uses (``audit verify`` naming the first broken row
after a row is changed, deleted, moved or cut off; ``audit export``; ``audit
access``), the migration chaining the rows written before it, ``!logg`` in a case
room, and the accesses the signing page and the report record.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import sqlite3
import textwrap
import zipfile
from collections.abc import Iterator
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

pytest.register_assert_rewrite("tests.signing_fixtures")
from bot.cli import main  # noqa: E402
from handlers import i18n  # noqa: E402
from handlers.audit import LINK_OPENED_QUIET, LOG_LIMIT  # noqa: E402
from storage import audit, create_engine, decisions, repo, session_factory, upgrade  # noqa: E402
from storage.models import AuditEntry, UTCDateTime  # noqa: E402
from tests.signing_fixtures import (  # noqa: E402
    CHILD_NAME,
    CHILD_PNR,
    DECISION_MAKER,
    PERSONAL_TEXTS,
    SigningServer,
)
from tests.storage_fixtures import NOW, WORKER, Sessions, in_session  # noqa: E402
from tests.test_handlers import (  # noqa: E402, F401 - the harness and its fixture
    ANNA,
    DUTY,
    Harness,
    MakeHarness,
    make_harness,
)

pytest_plugins = ("tests.signing_fixtures",)

PASSWORD_VAR = "SOCIALJOUR_MATRIX_PASSWORD"
OTHER = "@bo:socialjour.example"


# --- helpers ------------------------------------------------------------------------------


async def new_case(session: AsyncSession, *, by: str = WORKER, at: datetime = NOW) -> int:
    case = await repo.create_case(
        session, prefix="SJ", year=at.year, created_by=by, status="drafting", now=at
    )
    return case.id


async def chained(sessions: Sessions) -> list[AuditEntry]:
    async with sessions() as session:
        rows = await session.scalars(sa.select(AuditEntry).order_by(AuditEntry.seq))
        return list(rows)


async def check(sessions: Sessions) -> audit.ChainCheck:
    async with sessions() as session, session.begin():
        return await audit.verify(session)


def assert_linked(rows: list[AuditEntry]) -> None:
    """seq 1..n without gaps, each row pointing at the one before, from the genesis."""
    assert [r.seq for r in rows] == list(range(1, len(rows) + 1))
    assert [r.prev_hash for r in rows] == [audit.GENESIS_HASH] + [r.hash for r in rows[:-1]]


# --- the format ----------------------------------------------------------------------------


def test_the_hash_format_is_fixed() -> None:
    """A changed encoding would make every chain already written look tampered with."""
    fields: dict[str, Any] = {
        "seq": 1,
        "case_id": 7,
        "at": datetime(2026, 3, 1, 2, 30, 0, 120, tzinfo=UTC),
        "actor": "@anna:example.org",
        "action": "answer.given",
        "detail": {"question": 3, "field": "grund", "deadline": "underställning"},
        "prev_hash": audit.GENESIS_HASH,
    }
    encoded = audit.canonical(**fields)
    assert encoded == (
        b'{"action":"answer.given","actor":"@anna:example.org",'
        b'"at":"2026-03-01T02:30:00.000120Z","case_id":7,'
        b'"detail":{"deadline":"underst\\u00e4llning","field":"grund","question":3},'
        b'"prev_hash":"' + b"0" * 64 + b'","seq":1}'
    )
    assert audit.entry_hash(**fields) == hashlib.sha256(encoded).hexdigest()
    # The same moment in Swedish time hashes the same.
    local = fields["at"].astimezone(ZoneInfo("Europe/Stockholm"))
    assert audit.entry_hash(**{**fields, "at": local}) == audit.entry_hash(**fields)


def test_every_action_has_words_in_both_languages() -> None:
    for action in audit.ACTIONS:
        for lang in ("sv", "en"):
            assert f"audit.action.{action}" in i18n.CATALOGUES[lang], (lang, action)


# --- the chain on both databases ------------------------------------------------------------


async def test_rows_are_chained_at_commit_and_the_chain_verifies(sessions: Sessions) -> None:
    case_id = await in_session(sessions, new_case)

    async def work(session: AsyncSession) -> AuditEntry:
        entry = await repo.add_audit(
            session,
            case_id=case_id,
            actor=WORKER,
            action="answer.given",
            now=NOW,
            detail={"question": 1, "field": "namn"},
        )
        assert entry.seq is None  # inside the transaction: not yet in the chain
        return entry

    entry = await in_session(sessions, work)
    assert entry.seq == 2 and entry.hash is not None  # filled in by the commit
    for step in range(3):
        await in_session(
            sessions,
            lambda s, step=step: repo.add_audit(
                s,
                case_id=None,
                actor="socialjour",
                action="bot.test",
                now=NOW,
                detail={"step": step, "ids": (1, 2)},
            ),
        )

    rows = await chained(sessions)
    assert [r.action for r in rows] == ["case.created", "answer.given", *["bot.test"] * 3]
    assert_linked(rows)
    assert rows[-1].detail == {"step": 2, "ids": [1, 2]}
    result = await check(sessions)
    assert result.ok and result.count == 5
    assert (result.head_seq, result.head_hash) == (5, rows[-1].hash)


async def test_a_rolled_back_transaction_leaves_no_gap(sessions: Sessions) -> None:
    case_id = await in_session(sessions, new_case)
    async with sessions() as session:
        async with session.begin():
            await repo.add_audit(session, case_id=case_id, actor=WORKER, action="x.a", now=NOW)
            await session.rollback()
    await in_session(
        sessions,
        lambda s: repo.add_audit(s, case_id=case_id, actor=WORKER, action="x.b", now=NOW),
    )
    rows = await chained(sessions)
    assert [r.action for r in rows] == ["case.created", "x.b"]
    assert_linked(rows)
    assert (await check(sessions)).ok


async def test_rows_of_a_rolled_back_savepoint_or_a_closed_session_are_never_written(
    sessions: Sessions,
) -> None:
    case_id = await in_session(sessions, new_case)
    async with sessions() as session, session.begin():
        await repo.add_audit(session, case_id=case_id, actor=WORKER, action="x.kept", now=NOW)
        savepoint = await session.begin_nested()
        await repo.add_audit(session, case_id=case_id, actor=WORKER, action="x.undone", now=NOW)
        await savepoint.rollback()
        async with session.begin_nested():
            await repo.add_audit(session, case_id=case_id, actor=WORKER, action="x.too", now=NOW)
    async with sessions() as session:  # never committed
        await repo.add_audit(session, case_id=case_id, actor=WORKER, action="x.lost", now=NOW)
    await in_session(
        sessions,
        lambda s: repo.add_audit(s, case_id=case_id, actor=WORKER, action="x.last", now=NOW),
    )
    rows = await chained(sessions)
    assert [r.action for r in rows] == ["case.created", "x.kept", "x.too", "x.last"]
    assert_linked(rows)
    assert (await check(sessions)).ok


async def test_concurrent_writers_never_fork_the_chain(sessions: Sessions) -> None:
    """Eight units of work at once, each writing two rows with a pause between: on
    PostgreSQL they really overlap (one connection each); every row gets its own
    place and each transaction's rows stay together."""
    case_id = await in_session(sessions, new_case)
    writers = 8

    async def writer(n: int) -> None:
        async with sessions() as session, session.begin():
            await repo.add_audit(
                session, case_id=case_id, actor=WORKER, action="x.first", now=NOW, detail={"n": n}
            )
            await asyncio.sleep(0.02)
            await repo.add_audit(
                session, case_id=case_id, actor=WORKER, action="x.second", now=NOW, detail={"n": n}
            )

    await asyncio.gather(*(writer(n) for n in range(writers)))

    rows = await chained(sessions)
    assert len(rows) == 1 + 2 * writers
    assert_linked(rows)
    by_writer: dict[int, list[int]] = {}
    for row in rows[1:]:
        by_writer.setdefault(row.detail["n"], []).append(row.seq or 0)
    assert all(b == a + 1 for a, b in by_writer.values())
    result = await check(sessions)
    assert result.ok and result.count == len(rows)


async def test_the_chain_lock_is_taken_last_so_it_joins_no_deadlock(
    sessions: Sessions, migrated_url: str
) -> None:
    """One transaction audits and then waits for a case row another holds; the other
    updates that row, audits and commits. Had the first taken the chain's lock when it
    audited, each would wait for the other (PostgreSQL would kill one)."""
    if migrated_url.startswith("sqlite"):
        pytest.skip("SQLite runs one writing transaction at a time")
    case_id = await in_session(sessions, new_case)
    audited, updated = asyncio.Event(), asyncio.Event()

    async def first() -> None:
        async with sessions() as session, session.begin():
            await repo.add_audit(session, case_id=case_id, actor=WORKER, action="x.one", now=NOW)
            audited.set()
            await asyncio.wait_for(updated.wait(), 10)
            await repo.set_case_form(session, case_id=case_id, form_id="lvm13")

    async def second() -> None:
        await asyncio.wait_for(audited.wait(), 10)
        async with sessions() as session, session.begin():
            await repo.set_case_form(session, case_id=case_id, form_id="lvu6")
            updated.set()
            await repo.add_audit(session, case_id=case_id, actor=OTHER, action="x.two", now=NOW)

    await asyncio.wait_for(asyncio.gather(first(), second()), 30)
    rows = await chained(sessions)
    assert [r.action for r in rows] == ["case.created", "x.two", "x.one"]  # commit order
    assert_linked(rows)
    assert (await check(sessions)).ok


async def test_a_link_opened_again_and_again_is_one_row_per_period(sessions: Sessions) -> None:
    case_id = await in_session(sessions, new_case)

    async def opened(at: datetime, *, identified: bool = False) -> AuditEntry | None:
        async with sessions() as session, session.begin():
            return await audit.append_unless_recent(
                session,
                case_id=case_id,
                actor="web",
                action=audit.LINK_OPENED,
                now=at,
                detail={"request": 1, "identified": identified},
                within=LINK_OPENED_QUIET,
            )

    results = await asyncio.gather(*(opened(NOW) for _ in range(5)))
    assert sum(r is not None for r in results) == 1  # five at once: one row
    assert await opened(NOW + timedelta(minutes=9)) is None
    assert await opened(NOW + timedelta(minutes=9), identified=True) is not None
    assert await opened(NOW + LINK_OPENED_QUIET + timedelta(seconds=1)) is not None
    actions = [r.action for r in await chained(sessions)]
    assert actions.count(audit.LINK_OPENED) == 3


async def test_the_migration_chains_the_rows_written_before_it(database_url: str) -> None:
    await upgrade(database_url, revision="0007")
    engine = create_engine(database_url)
    try:
        async with engine.begin() as connection:
            cases = sa.table(
                "cases",
                *(sa.column(name) for name in ("id", "number", "status", "created_by")),
                sa.column("created_at", UTCDateTime()),
                sa.column("updated_at", UTCDateTime()),
            )
            await connection.execute(
                sa.insert(cases).values(
                    id=1,
                    number="SJ-2026-0001",
                    status="drafting",
                    created_by=WORKER,
                    created_at=NOW,
                    updated_at=NOW,
                )
            )
            old = sa.table(
                "audit_entries",
                sa.column("case_id"),
                sa.column("at", UTCDateTime()),
                sa.column("actor"),
                sa.column("action"),
                sa.column("detail", sa.JSON()),
            )
            for n, action in enumerate(["case.created", "room.created", "status.cancelled"]):
                await connection.execute(
                    sa.insert(old).values(
                        case_id=1,
                        at=NOW + timedelta(seconds=n, microseconds=n),
                        actor=WORKER,
                        action=action,
                        detail={"from": "drafting", "n": n} if n == 2 else None,
                    )
                )
        await upgrade(database_url)
        sessions = session_factory(engine)
        rows = await chained(sessions)
        assert [r.action for r in rows] == ["case.created", "room.created", "status.cancelled"]
        assert [r.id for r in rows] == sorted(r.id for r in rows)  # in the order written
        assert_linked(rows)
        assert (await check(sessions)).ok
        # Writing goes on from the migrated head.
        await in_session(
            sessions,
            lambda s: repo.add_audit(s, case_id=1, actor=WORKER, action="trail.viewed", now=NOW),
        )
        rows = await chained(sessions)
        assert rows[-1].seq == 4
        assert_linked(rows)
        result = await check(sessions)
        assert result.ok and result.count == 4
    finally:
        await engine.dispose()


# --- the command line (SQLite, as an administrator runs it) ---------------------------------

CONFIG = """
[matrix]
homeserver = "http://127.0.0.1:8008"
user_id = "@socialjour:example.org"
password = { env = "SOCIALJOUR_MATRIX_PASSWORD" }

[storage]
data_dir = "data"
database_url = "sqlite+aiosqlite:///db/socialjour.db"

[web]
listen = "127.0.0.1:1"

[duty]
room_alias = "#socialjour:example.org"
members = ["@anna:socialjour.example"]
leads = ["@anna:socialjour.example"]
language = "sv"

[[municipalities]]
id = "skovde"
name = "Skövde kommun"
intake_room_alias = "#mottagning-skovde:example.org"

  [[municipalities.decision_makers]]
  user_id = "@ordf:socialjour.example"
  name = "Dag Dagsson"
  role = "ordförande"
  appointed_by = "Socialnämnden"
  appointed_on = 2026-01-15
  minutes_ref = "§ 12"
  valid_until = 2099-12-31
"""


class Installation:
    """A config file and its SQLite database with a small trail (two cases)."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.config = folder / "config.toml"
        self.config.write_text(textwrap.dedent(CONFIG), encoding="utf-8")
        self.db = folder / "db" / "socialjour.db"
        self.url = f"sqlite+aiosqlite:///{self.db}"

    def run(self, *args: str) -> int:
        return main(["audit", *args, "--config", str(self.config)])

    def sql(self, statement: str, *params: Any) -> list[tuple[Any, ...]]:
        with closing(sqlite3.connect(self.db)) as connection, connection:
            return connection.execute(statement, params).fetchall()

    def seq_of(self, action: str) -> tuple[int, int]:
        [(seq, entry_id)] = self.sql("SELECT seq, id FROM audit_entries WHERE action = ?", action)
        return seq, entry_id

    async def fill(self) -> None:
        await upgrade(self.url)
        engine = create_engine(self.url)
        sessions = session_factory(engine)
        try:
            async with sessions() as session, session.begin():
                case = await new_case(session)
                for n, action in enumerate(["answer.given", "answer.changed", "report.submitted"]):
                    await repo.add_audit(
                        session,
                        case_id=case,
                        actor=WORKER,
                        action=action,
                        now=NOW + timedelta(minutes=n + 1),
                        detail={"question": n + 1},
                    )
                request = await decisions.create_signing_request(
                    session,
                    case_id=case,
                    token_hash="a" * 64,
                    signer_user_id="@ordf:socialjour.example",
                    signer_name="Dag Dagsson",
                    signer_role="ordförande",
                    municipality_id="skovde",
                    document=b"%PDF-unsigned",
                    document_sha256=hashlib.sha256(b"%PDF-unsigned").hexdigest(),
                    now=NOW,
                    expires_at=NOW + timedelta(hours=12),
                )
                await decisions.decide(
                    session,
                    request_id=request.id,
                    status="signed",
                    now=NOW + timedelta(minutes=9),
                    signed_document=b"%PDF-signed",
                    signed_sha256=hashlib.sha256(b"%PDF-signed").hexdigest(),
                )
                await repo.add_audit(
                    session,
                    case_id=case,
                    actor="@ordf:socialjour.example",
                    action="decision.signed",
                    now=NOW + timedelta(minutes=9),
                    detail={"request": request.id},
                )
            async with sessions() as session, session.begin():
                other = await new_case(session, by=OTHER, at=NOW + timedelta(days=1))
                await repo.add_audit(
                    session,
                    case_id=other,
                    actor=WORKER,
                    action="trail.viewed",
                    now=NOW + timedelta(days=2),
                    detail={"shown": 1},
                )
        finally:
            await engine.dispose()


@pytest.fixture
def installation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Installation]:
    monkeypatch.setenv(PASSWORD_VAR, "secret")
    monkeypatch.chdir(tmp_path)
    found = Installation(tmp_path / "site")
    asyncio.run(found.fill())
    yield found


def test_verify_says_ok_with_the_count(
    installation: Installation, capsys: pytest.CaptureFixture[str]
) -> None:
    assert installation.run("verify") == 0
    out = capsys.readouterr().out
    assert "OK" in out and "7 entries" in out


def _swap_two_rows(site: Installation) -> int:
    """Move a row before the one written before it (swap their places in the chain)."""
    a, _ = site.seq_of("answer.changed")
    b = a + 1
    site.sql("UPDATE audit_entries SET seq = -1 WHERE seq = ?", a)
    site.sql("UPDATE audit_entries SET seq = ? WHERE seq = ?", a, b)
    site.sql("UPDATE audit_entries SET seq = ? WHERE seq = -1", b)
    return a


def _rehash(site: Installation) -> int:
    """Change a detail and give the row a matching hash: the next row's link breaks."""
    seq, entry_id = site.seq_of("answer.changed")
    [(case_id, at, actor, action, prev)] = site.sql(
        "SELECT case_id, at, actor, action, prev_hash FROM audit_entries WHERE id = ?", entry_id
    )
    moment = datetime.fromisoformat(at).replace(tzinfo=UTC)
    detail = {"question": 9}
    digest = audit.entry_hash(
        seq=seq,
        case_id=case_id,
        at=moment,
        actor=actor,
        action=action,
        detail=detail,
        prev_hash=prev,
    )
    site.sql(
        "UPDATE audit_entries SET detail = ?, hash = ? WHERE id = ?",
        json.dumps(detail),
        digest,
        entry_id,
    )
    return seq + 1


def _change_detail(site: Installation) -> int:
    seq, entry_id = site.seq_of("answer.changed")
    site.sql("UPDATE audit_entries SET detail = ? WHERE id = ?", '{"question": 9}', entry_id)
    return seq


def _change_time(site: Installation) -> int:
    seq, entry_id = site.seq_of("report.submitted")
    site.sql("UPDATE audit_entries SET at = '2026-03-01 01:00:00.000000' WHERE id = ?", entry_id)
    return seq


def _delete_middle(site: Installation) -> int:
    seq, _ = site.seq_of("answer.changed")
    site.sql("DELETE FROM audit_entries WHERE seq = ?", seq)
    return seq + 1


def _cut_the_end(site: Installation) -> int:
    [(last,)] = site.sql("SELECT max(seq) FROM audit_entries")
    site.sql("DELETE FROM audit_entries WHERE seq = ?", last)
    return last


def _append_around(site: Installation) -> int:
    """A row added at the end with a correct hash, by someone who knows the format:
    only the head, moved in the same transaction as every real row, tells."""
    [(seq, prev)] = site.sql("SELECT seq, hash FROM audit_entries ORDER BY seq DESC LIMIT 1")
    at = datetime(2026, 3, 3, 4, 0, tzinfo=UTC)
    digest = audit.entry_hash(
        seq=seq + 1,
        case_id=1,
        at=at,
        actor=WORKER,
        action="answer.given",
        detail=None,
        prev_hash=prev,
    )
    site.sql(
        "INSERT INTO audit_entries (case_id, at, actor, action, detail, seq, prev_hash, hash) "
        "VALUES (1, '2026-03-03 04:00:00.000000', ?, 'answer.given', 'null', ?, ?, ?)",
        WORKER,
        seq + 1,
        prev,
        digest,
    )
    return seq + 1


TAMPERING = {
    "detail changed": (_change_detail, "hash mismatch"),
    "time changed": (_change_time, "hash mismatch"),
    "detail changed and rehashed": (_rehash, "broken link"),
    "row deleted": (_delete_middle, "gap"),
    "rows reordered": (_swap_two_rows, "hash mismatch"),
    "last row cut off": (_cut_the_end, "rows missing at the end"),
    "row appended around the bot": (_append_around, "rows after the head"),
}


@pytest.mark.parametrize("how", list(TAMPERING))
def test_verify_names_the_first_broken_row(
    installation: Installation, capsys: pytest.CaptureFixture[str], how: str
) -> None:
    tamper, problem = TAMPERING[how]
    expected_seq = tamper(installation)

    assert installation.run("verify") == 1
    out = capsys.readouterr().out
    first = out.splitlines()[0]
    assert "BROKEN" in first and problem in first, out
    assert f"at seq {expected_seq}" in first, out


def test_export_writes_the_trail_the_documents_and_their_sums(
    installation: Installation, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "export" / "case.zip"
    out.parent.mkdir()
    assert installation.run("export", "SJ-2026-0001", "--out", str(out)) == 0
    assert str(out) in capsys.readouterr().out

    with zipfile.ZipFile(io.BytesIO(out.read_bytes())) as archive:
        files = {
            name.removeprefix("SJ-2026-0001/"): archive.read(name) for name in archive.namelist()
        }
    assert set(files) == {
        "trail.json",
        "trail.csv",
        "documents/decision-1-unsigned.pdf",
        "documents/decision-1-signed.pdf",
        "manifest.json",
        "SHA256SUMS",
    }
    assert files["documents/decision-1-unsigned.pdf"] == b"%PDF-unsigned"
    assert files["documents/decision-1-signed.pdf"] == b"%PDF-signed"
    # SHA256SUMS, as `sha256sum -c` reads it, covers every other file.
    sums = dict(reversed(line.split("  ", 1)) for line in files["SHA256SUMS"].decode().splitlines())
    assert set(sums) == set(files) - {"SHA256SUMS"}
    assert all(hashlib.sha256(files[name]).hexdigest() == sums[name] for name in sums)
    manifest = json.loads(files["manifest.json"])
    assert {f["name"]: f["sha256"] for f in manifest["files"]} == {
        name: digest for name, digest in sums.items() if name != "manifest.json"
    }
    assert manifest["chain"]["ok"] is True
    # The trail of this case only, in chain order, with the export itself at the end.
    trail = json.loads(files["trail.json"])
    actions = [e["action"] for e in trail["entries"]]
    assert actions[0] == "case.created" and actions[-1] == "trail.exported"
    assert "trail.viewed" not in actions  # the other case's
    exported = trail["entries"][-1]
    assert exported["actor"].startswith("cli:") and len(exported["actor"]) > 4
    csv_text = files["trail.csv"].decode("utf-8-sig")
    assert "besvarade fråga 1" in csv_text and "Dag Dagsson" in csv_text
    # The export is in the chain, which still verifies.
    assert installation.run("verify") == 0


def test_export_of_an_unknown_case_says_so(
    installation: Installation, capsys: pytest.CaptureFixture[str]
) -> None:
    assert installation.run("export", "SJ-2026-0999") == 1
    assert "SJ-2026-0999" in capsys.readouterr().err
    assert not list(Path.cwd().glob("*.zip"))


def test_access_lists_what_one_person_did(
    installation: Installation, capsys: pytest.CaptureFixture[str]
) -> None:
    assert installation.run("access", "--user", WORKER) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 5  # case.created, three report steps, the other case's log view
    assert lines[0].startswith("2026-03-01 03:30:00  SJ-2026-0001  case.created  öppnade ärendet")
    assert "SJ-2026-0001  answer.changed  ändrade svaret på fråga 2" in lines[2]
    assert "SJ-2026-0002  trail.viewed  visade ärendets logg" in lines[-1]

    assert installation.run("access", "--user", WORKER, "--since", "2026-03-03") == 0
    [only] = capsys.readouterr().out.splitlines()
    assert "trail.viewed" in only

    assert installation.run("access", "--user", "@nobody:example.org") == 0
    captured = capsys.readouterr()
    assert captured.out == "" and "no entries" in captured.err


# --- !logg in the case room ---------------------------------------------------------------


@pytest.fixture
def h(make_harness: MakeHarness) -> Harness:  # noqa: F811
    return make_harness()


async def test_log_shows_the_trail_in_words_and_swedish_time(h: Harness) -> None:
    number, room = await h.open_case()
    h.clock.advance(minutes=1)
    await h.reply(room, "!avbryt")
    h.clock.advance(minutes=1)
    await h.reply(room, "!avbryt ja")

    answer = await h.reply(room, "!logg")

    assert answer.reply_to is not None
    lines = answer.text.splitlines()
    assert lines[0] == f"Logg för ärende {number} (svensk tid)"
    assert lines[1] == f"2026-03-01 03:30:00 · {ANNA} · öppnade ärendet"
    assert lines[2] == "2026-03-01 03:30:00 · Socialjour · skapade ärenderummet"
    assert lines[-1] == f"2026-03-01 03:32:00 · {ANNA} · ärendet fick läget ”avbrutet”"
    assert len(lines) == 1 + len(await h.audit_actions(number)) - 1  # all but the viewing
    # Looking at the trail is on the trail.
    assert (await h.audit_actions(number))[-1] == "trail.viewed"


async def test_log_in_english_and_trimmed_to_the_newest_rows(make_harness: MakeHarness) -> None:  # noqa: F811
    h = make_harness(language="en")
    number, room = await h.open_case()
    case = await h.case(number)
    async with h.sessions() as session, session.begin():
        for n in range(LOG_LIMIT + 5):
            await repo.add_audit(
                session,
                case_id=case.id,
                actor=ANNA,
                action="answer.given",
                now=h.clock.now + timedelta(seconds=n),
                detail={"question": n + 1},
            )
    total = len(await h.audit_actions(number))

    lines = (await h.reply(room, "!log")).text.splitlines()

    assert lines[0] == f"Log of case {number} (Swedish time)"
    assert lines[1].startswith(f"Showing the newest {LOG_LIMIT} of {total} events.")
    assert number in lines[1]
    assert len(lines) == 2 + LOG_LIMIT
    assert lines[-1].endswith(f"· {ANNA} · answered question {LOG_LIMIT + 5}")


async def test_answers_are_recorded_by_question_never_by_content(h: Harness) -> None:
    await h.say(DUTY, "!ny lvu6")
    case = (await h.cases())[-1]
    assert case.room_id is not None
    await h.say(case.room_id, CHILD_NAME)
    await h.say(case.room_id, CHILD_PNR)
    await h.say(case.room_id, "!ändra 1")
    await h.say(case.room_id, "Karin Åström")

    async with h.sessions() as session:
        trail = await repo.list_audit(session, case_id=case.id)
    answers = [(e.action, e.detail) for e in trail if e.action.startswith("answer.")]
    assert answers == [
        ("answer.given", {"question": 1, "field": "namn"}),
        ("answer.given", {"question": 2, "field": "personnummer"}),
        ("answer.changed", {"question": 1, "field": "namn"}),
    ]
    stored = json.dumps([e.detail for e in trail], ensure_ascii=False)
    assert not any(text in stored for text in (*PERSONAL_TEXTS, "Karin"))
    shown = (await h.reply(case.room_id, "!logg")).text
    assert "besvarade fråga 2" in shown and "ändrade svaret på fråga 1" in shown
    assert not any(text in shown for text in (*PERSONAL_TEXTS, "Karin"))


# --- the signing page's accesses -----------------------------------------------------------


async def test_the_signing_page_records_every_access_once(signing_server: SigningServer) -> None:
    server = signing_server
    token = await server.new_request()
    case = await server.case(token)

    async def trail() -> list[AuditEntry]:
        async with server.sessions() as session:
            return await repo.list_audit(session, case_id=case.id)

    async def actions() -> list[str]:
        return [e.action for e in await trail()]

    assert ["document.rendered", "signature.requested", "link.sent"] == [
        a for a in await actions() if a in ("document.rendered", "signature.requested", "link.sent")
    ]
    # Opened, reloaded at once (one row), and again after the quiet period (a second).
    for _ in range(3):
        await server.service.view(token, None)
    server.clock.advance(seconds=LINK_OPENED_QUIET.total_seconds() + 1)
    await server.service.view(token, None)
    opened = [e for e in await trail() if e.action == "link.opened"]
    assert [(e.actor, e.detail) for e in opened] == [
        ("web", {"request": opened[0].detail["request"], "identified": False})
    ] * 2

    await server.service.start_auth(token, "matrix-code", "127.0.0.1")
    _, cookie = await server.service.check_auth(token, {"code": await server.last_code()}, "x")
    await server.service.view(token, cookie)
    await server.service.document(token, cookie)
    await server.service.document(token, cookie)  # a viewer fetching twice: one download
    await server.service.decide(token, cookie, "sign", "")
    await server.posted()

    rows = await trail()
    after = [(e.action, e.actor) for e in rows if e.at >= opened[-1].at][1:]
    assert [a for a, _ in after if a.split(".")[0] not in ("status", "deadline")] == [
        "identification.started",
        "signer.identified",
        "link.opened",
        "document.downloaded",
        "decision.signed",
    ]
    assert dict(after)["identification.started"] == "web"
    assert dict(after)["document.downloaded"] == DECISION_MAKER
    assert dict(after)["link.opened"] == DECISION_MAKER
    signed = (await server.request(token)).signed_sha256
    [decided] = [e for e in rows if e.action == "decision.signed"]
    assert decided.detail is not None and decided.detail["sha256"] == signed
    # Nothing personal in the trail, and the whole chain holds.
    stored = json.dumps([e.detail for e in rows], ensure_ascii=False)
    assert not any(text in stored for text in PERSONAL_TEXTS)
    async with server.sessions() as session, session.begin():
        assert (await audit.verify(session)).ok
