"""What ``socialjour audit`` does: verify the chain, export a case file, list a
person's accesses (loggkontroll).

Each function takes the session factory and returns what the command line prints
or writes; ``bot/cli.py`` only parses arguments and sets exit codes. Exporting is
itself an access: it is recorded (actor ``cli:<os user>``) before anything is read.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from config import Settings
from handlers.audit import actor_label, describe, known_names, local_stamp
from handlers.context import LOCAL_TZ
from signing.evidence import canonical
from storage import audit, repo
from storage.models import AuditEntry, Case

Sessions = async_sessionmaker[AsyncSession]


# --- verify ---------------------------------------------------------------------------------


async def verify_chain(sessions: Sessions) -> audit.ChainCheck:
    async with sessions() as session, session.begin():
        return await audit.verify(session)


def verify_lines(check: audit.ChainCheck) -> list[str]:
    """What ``audit verify`` prints: the count and OK, or the first broken row."""
    if check.first_break is None:
        return [
            f"audit chain OK: {check.count} entries, "
            f"head seq {check.head_seq} hash {check.head_hash}"
        ]
    broken = check.first_break
    where = [f"seq {broken.seq}" if broken.seq is not None else None]
    where.append(f"row id {broken.entry_id}" if broken.entry_id is not None else None)
    where.append(local_stamp(broken.at) + " (Swedish time)" if broken.at is not None else None)
    place = ", ".join(part for part in where if part)
    return [
        f"audit chain BROKEN at {place}: {broken.message}",
        f"({check.count} chained entries read)",
    ]


# --- access listing ---------------------------------------------------------------------------


async def access_lines(
    sessions: Sessions, settings: Settings, *, user: str, since: datetime | None
) -> list[str]:
    """One line per row ``user`` wrote: time, case number, action code and words."""
    async with sessions() as session:
        rows = await audit.by_actor(session, actor=user, since=since)
    lang, names = settings.duty.language, known_names(settings)
    return [
        "  ".join(
            [
                local_stamp(entry.at),
                number or "-",
                entry.action,
                describe(lang, entry.action, entry.detail, names),
            ]
        )
        for entry, number in rows
    ]


# --- export ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Export:
    number: str
    data: bytes
    #: File name in the ZIP -> SHA-256, for every file but ``SHA256SUMS`` itself.
    sums: dict[str, str]
    #: The chain's head when the file was made (keep it elsewhere: see the README).
    head_seq: int
    head_hash: str


def _entry_json(entry: AuditEntry) -> dict[str, Any]:
    return {
        "seq": entry.seq,
        "id": entry.id,
        "at": audit.utc_iso(entry.at),
        "case_id": entry.case_id,
        "actor": entry.actor,
        "action": entry.action,
        "detail": entry.detail,
        "prev_hash": entry.prev_hash,
        "hash": entry.hash,
    }


def _trail_csv(entries: Sequence[AuditEntry], lang: str, names: dict[str, str]) -> bytes:
    """The trail for a person to read (a spreadsheet opens it; UTF-8 with a BOM so
    Swedish letters show)."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(
        ["seq", "time (Swedish)", "time (UTC)", "actor", "action", "what", "detail", "hash"]
    )
    for entry in entries:
        writer.writerow(
            [
                entry.seq,
                local_stamp(entry.at),
                audit.utc_iso(entry.at),
                actor_label(lang, entry.actor, names),
                entry.action,
                describe(lang, entry.action, entry.detail, names),
                json.dumps(entry.detail, ensure_ascii=False, sort_keys=True),
                entry.hash,
            ]
        )
    return out.getvalue().encode("utf-8-sig")


def _case_json(case: Case) -> dict[str, Any]:
    return {
        "number": case.number,
        "status": case.status,
        "form": case.form_id,
        "municipality": case.municipality_id,
        "created_at": audit.utc_iso(case.created_at),
        "created_by": case.created_by,
        # After retention the documents and answers are deleted; the trail says what
        # existed (with hashes) and this says when the content went.
        "purged_at": audit.utc_iso(case.purged_at) if case.purged_at else None,
    }


def build_zip(
    *,
    case: Case,
    entries: Sequence[AuditEntry],
    documents: Sequence[tuple[str, bytes]],
    check: audit.ChainCheck,
    evidence: Sequence[tuple[str, bytes]] = (),
    settings: Settings,
    exported_by: str,
    now: datetime,
) -> Export:
    """The case file: trail.json, trail.csv, documents/, evidence/ (each signer's full
    identification record, whose digest the sealed PDF names), manifest.json and
    SHA256SUMS."""
    lang, names = settings.duty.language, known_names(settings)
    files: list[tuple[str, bytes]] = [
        (
            "trail.json",
            json.dumps(
                {"case": _case_json(case), "entries": [_entry_json(e) for e in entries]},
                ensure_ascii=False,
                indent=2,
            ).encode("utf-8"),
        ),
        ("trail.csv", _trail_csv(entries, lang, names)),
    ]
    files.extend((f"documents/{name}", data) for name, data in documents)
    files.extend((f"evidence/{name}", data) for name, data in evidence)
    sums = {name: hashlib.sha256(data).hexdigest() for name, data in files}
    manifest = {
        "case": _case_json(case),
        "exported_at": audit.utc_iso(now),
        "exported_by": exported_by,
        "chain": {
            "ok": check.ok,
            "entries": check.count,
            "head_seq": check.head_seq,
            "head_hash": check.head_hash,
            "problem": check.first_break.message if check.first_break else None,
        },
        "hash_format": "SHA-256 of JSON with sorted keys, no spaces, ASCII only, of seq, "
        "case_id, at (UTC with microseconds, ...Z), actor, action, detail, prev_hash; "
        f"the first row's prev_hash is {audit.GENESIS_HASH}",
        "files": [{"name": name, "sha256": sums[name], "bytes": len(data)} for name, data in files],
    }
    manifest_bytes = json.dumps(manifest, ensure_ascii=False, indent=2).encode("utf-8")
    files.append(("manifest.json", manifest_bytes))
    sums["manifest.json"] = hashlib.sha256(manifest_bytes).hexdigest()
    listing = "".join(f"{sums[name]}  {name}\n" for name, _ in files).encode("utf-8")
    files.append(("SHA256SUMS", listing))
    stamp = now.astimezone(LOCAL_TZ).timetuple()[:6]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in files:
            info = zipfile.ZipInfo(f"{case.number}/{name}", date_time=stamp)
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data)
    return Export(case.number, buffer.getvalue(), sums, check.head_seq, check.head_hash)


async def export_case(
    sessions: Sessions, settings: Settings, *, number: str, actor: str, now: datetime
) -> Export | None:
    """The case file of case ``number``, or None if there is no such case. The export
    is recorded first, so the file holds its own export."""
    async with sessions() as session, session.begin():
        case = await repo.get_case_by_number(session, number=number)
        if case is None:
            return None
        await repo.add_audit(
            session, case_id=case.id, actor=actor, action=audit.TRAIL_EXPORTED, now=now
        )
    async with sessions() as session, session.begin():
        entries = await audit.case_trail(session, case_id=case.id)
        documents = await audit.case_documents(session, case.id)
        identifications = await audit.case_identifications(session, case.id)
    check = await verify_chain(sessions)
    return build_zip(
        case=case,
        entries=entries,
        documents=documents,
        evidence=[
            (f"decision-{request_id}-identification.json", canonical(record))
            for request_id, record in identifications
        ],
        check=check,
        settings=settings,
        exported_by=actor,
        now=now,
    )
