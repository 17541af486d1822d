"""``socialjour backup`` and ``socialjour restore``: an online, encrypted snapshot.

A backup folder holds two files:

- ``socialjour-backup.json``, the header: format, whether and how the archive is
  encrypted (scrypt parameters and salt, never the key), and the archive's SHA-256,
  so a damaged or altered file is named before anything is decrypted;
- ``backup.tar.enc`` (or ``backup.tar`` with ``--no-encrypt``): a tar stream with the
  database snapshot, ``data_dir`` and ``manifest.json`` (versions, the schema
  revision, the time, and a SHA-256 per file), sealed in 1 MiB chunks with
  AES-256-GCM. Each chunk's nonce carries its number and its associated data says
  whether it is the last, so chunks cannot be reordered, dropped or cut off unseen.

The bot keeps running: SQLite files (the database, the nio crypto store) are copied
with SQLite's backup API, which reads one consistent snapshot; PostgreSQL with
``pg_dump``. The database is copied *before* the crypto store: restored, the bot
resumes from the database's sync token, and a crypto store that is a little newer
already holds every room key those events need (older, it could miss some).
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import platform
import shutil
import sqlite3
import struct
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import IO, Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt
from sqlalchemy import delete, text
from sqlalchemy.engine import URL

from config import Settings
from storage import create_engine, current_revision, head_revision, normalise_url, upgrade
from storage.migrate import alembic_config
from storage.models import InstanceLock

__all__ = ["BackupError", "Restored", "Written", "create_backup", "restore_backup"]

FORMAT = 1
HEADER = "socialjour-backup.json"
ENCRYPTED_ARCHIVE = "backup.tar.enc"
PLAIN_ARCHIVE = "backup.tar"
MANIFEST = "manifest.json"
SQLITE_MEMBER = "database/socialjour.sqlite"
PG_MEMBER = "database/socialjour.pgdump"
DATA_PREFIX = "data"
CHUNK = 1 << 20
#: scrypt cost: 64 MiB and about a quarter of a second, once per backup or restore.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**16, 8, 1
_SQLITE_MAGIC = b"SQLite format 3\x00"
_SIDE_FILES = ("-wal", "-shm", "-journal")


class BackupError(Exception):
    """The backup cannot be written or restored; the text says why and what to do."""


@dataclass(frozen=True)
class Written:
    folder: Path
    files: int
    size: int
    encrypted: bool
    schema_revision: str | None


@dataclass(frozen=True)
class Restored:
    files: int
    schema_revision: str | None
    migrated_to: str | None


# -- encryption ------------------------------------------------------------------------


def _derive(passphrase: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return Scrypt(salt=salt, length=32, n=n, r=r, p=p).derive(passphrase.encode("utf-8"))


def _nonce(prefix: bytes, index: int) -> bytes:
    return prefix + struct.pack(">I", index)


def _aad(backup_id: bytes, last: bool) -> bytes:
    return backup_id + (b"\x01" if last else b"\x00")


class _SealingWriter(io.RawIOBase):
    """A write-only file that seals what it is given, chunk by chunk, into ``out``."""

    def __init__(self, out: IO[bytes], key: bytes, prefix: bytes, backup_id: bytes) -> None:
        self._out, self._aead, self._prefix, self._id = out, AESGCM(key), prefix, backup_id
        self._buffer = bytearray()
        self._index = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self._buffer += data
        while len(self._buffer) > CHUNK:
            self._seal(bytes(self._buffer[:CHUNK]), last=False)
            del self._buffer[:CHUNK]
        return len(data)

    def _seal(self, chunk: bytes, *, last: bool) -> None:
        sealed = self._aead.encrypt(_nonce(self._prefix, self._index), chunk, _aad(self._id, last))
        self._out.write(struct.pack(">I", len(sealed)) + sealed)
        self._index += 1

    def finish(self) -> None:
        self._seal(bytes(self._buffer), last=True)
        self._buffer.clear()


class _OpeningReader(io.RawIOBase):
    """A read-only file of what ``source`` seals; fails on a wrong key or any change."""

    def __init__(self, source: IO[bytes], key: bytes, prefix: bytes, backup_id: bytes) -> None:
        self._source, self._aead, self._prefix, self._id = source, AESGCM(key), prefix, backup_id
        self._buffer = b""
        self._index = 0
        self._done = False

    def readable(self) -> bool:
        return True

    def readinto(self, target: Any) -> int:
        while not self._buffer and not self._done:
            self._buffer = self._next_chunk()
        count = min(len(target), len(self._buffer))
        target[:count] = self._buffer[:count]
        self._buffer = self._buffer[count:]
        return count

    def _next_chunk(self) -> bytes:
        head = self._source.read(4)
        if len(head) < 4:
            raise BackupError("the archive ends early: it is damaged")
        sealed = self._source.read(struct.unpack(">I", head)[0])
        last = self._source.peek(1) == b"" if hasattr(self._source, "peek") else False
        nonce = _nonce(self._prefix, self._index)
        try:
            plain = self._aead.decrypt(nonce, sealed, _aad(self._id, last))
        except InvalidTag:
            if self._index == 0:
                raise BackupError(
                    "cannot decrypt the backup: wrong passphrase (or the backup was altered)"
                ) from None
            raise BackupError(f"chunk {self._index} of the archive was altered") from None
        self._index += 1
        self._done = last
        return plain


# -- writing ---------------------------------------------------------------------------


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _is_sqlite(path: Path) -> bool:
    try:
        with path.open("rb") as fh:
            return fh.read(16) == _SQLITE_MAGIC
    except OSError:
        return False


def _sqlite_snapshot(source: Path, target: Path) -> None:
    """A consistent copy of a live SQLite file (WAL or not) as one self-contained file."""
    src = sqlite3.connect(source, timeout=30)
    dst = sqlite3.connect(target)
    try:
        src.backup(dst)
        dst.execute("PRAGMA journal_mode=DELETE")
    finally:
        dst.close()
        src.close()


def sqlite_path(url: str | URL) -> Path | None:
    """The file of a SQLite database URL; None for PostgreSQL."""
    parsed = normalise_url(url)
    if parsed.get_backend_name() != "sqlite":
        return None
    if not parsed.database or parsed.database == ":memory:":
        raise BackupError("an in-memory SQLite database cannot be backed up")
    return Path(parsed.database)


def _pg_env(url: str | URL) -> dict[str, str]:
    """libpq's environment for ``url``: the password never shows in ``ps``."""
    parsed = normalise_url(url)
    env = dict(os.environ)
    for var, value in (
        ("PGHOST", parsed.host),
        ("PGPORT", parsed.port),
        ("PGUSER", parsed.username),
        ("PGPASSWORD", parsed.password),
        ("PGDATABASE", parsed.database),
    ):
        if value is not None:
            env[var] = str(value)
    return env


async def _run(*command: str, env: dict[str, str]) -> str:
    try:
        proc = await asyncio.create_subprocess_exec(
            *command, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
    except FileNotFoundError:
        raise BackupError(
            f"{command[0]} is not installed: install the PostgreSQL client "
            "(Debian: apt install postgresql-client) in the server's major version"
        ) from None
    out, err = await proc.communicate()
    if proc.returncode != 0:
        raise BackupError(f"{command[0]} failed: {err.decode(errors='replace').strip()}")
    return out.decode(errors="replace").strip()


def _data_files(data_dir: Path, skip: set[Path]) -> Iterator[Path]:
    """Every file under ``data_dir`` except ``skip`` and SQLite's side files."""
    skip = {path.resolve() for path in skip}
    for folder, dirs, files in os.walk(data_dir):
        here = Path(folder)
        dirs[:] = sorted(d for d in dirs if (here / d).resolve() not in skip)
        for name in sorted(files):
            path = here / name
            if path.resolve() in skip or name.endswith(_SIDE_FILES) or not path.is_file():
                continue
            yield path


def _prepare_target(target: Path) -> Path:
    target = target.resolve()
    if target.exists() and any(target.iterdir()):
        raise BackupError(f"{target} is not empty: back up into a new folder")
    target.mkdir(parents=True, exist_ok=True, mode=0o700)
    return target


def _version() -> str:
    try:
        return metadata.version("socialjour")
    except metadata.PackageNotFoundError:  # pragma: no cover - always installed
        return "unknown"


async def create_backup(
    settings: Settings, target: Path, *, passphrase: str | None, now: datetime | None = None
) -> Written:
    """Write a backup of the running installation into ``target`` (created; must be empty).

    ``passphrase`` None writes it unencrypted (the CLI asks for ``--no-encrypt``).
    """
    target = await asyncio.to_thread(_prepare_target, target)
    url = settings.storage.database_url
    data_dir = settings.storage.data_dir
    db_file = sqlite_path(url)
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "created_at": (now or datetime.now(UTC)).isoformat(),
        "socialjour_version": _version(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "files": {},
    }
    # Plaintext snapshots wait here (mode 0700) only until they are in the archive.
    with tempfile.TemporaryDirectory(dir=target, prefix=".staging-") as staging_name:
        staging = Path(staging_name)
        members: list[tuple[Path, str]] = []
        if db_file is not None:
            if not db_file.is_file():
                raise BackupError(f"no database at {db_file}: nothing to back up")
            copy = staging / "database.sqlite"
            await asyncio.to_thread(_sqlite_snapshot, db_file, copy)
            revision = await current_revision(f"sqlite+aiosqlite:///{copy}")
            manifest["database"] = {"kind": "sqlite", "file": SQLITE_MEMBER}
            members.append((copy, SQLITE_MEMBER))
        else:
            revision = await current_revision(url)
            copy = staging / "database.pgdump"
            env = _pg_env(url)
            tool = await _run("pg_dump", "--version", env=env)
            await _run(
                "pg_dump", "--format=custom", "--no-owner", "--no-privileges",
                f"--file={copy}", env=env,
            )  # fmt: skip
            manifest["database"] = {"kind": "postgresql", "file": PG_MEMBER, "tool": tool}
            members.append((copy, PG_MEMBER))
        manifest["schema_revision"] = revision
        skip = {target, staging} | ({db_file} if db_file else set())
        if data_dir.is_dir():
            for number, path in enumerate(_data_files(data_dir, skip)):
                name = f"{DATA_PREFIX}/{path.relative_to(data_dir).as_posix()}"
                if _is_sqlite(path):  # the nio crypto store: a live SQLite file
                    snapshot = staging / f"sqlite-{number}"
                    await asyncio.to_thread(_sqlite_snapshot, path, snapshot)
                    members.append((snapshot, name))
                else:
                    members.append((path, name))
        written = await asyncio.to_thread(_write_archive, target, members, manifest, passphrase)
    return Written(target, len(members), written, passphrase is not None, revision)


def _write_archive(
    target: Path, members: list[tuple[Path, str]], manifest: dict[str, Any], passphrase: str | None
) -> int:
    header: dict[str, Any] = {"format": FORMAT, "encrypted": passphrase is not None}
    archive = target / (ENCRYPTED_ARCHIVE if passphrase else PLAIN_ARCHIVE)
    fd = os.open(archive, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        sink: IO[bytes] = out
        sealer = None
        if passphrase is not None:
            salt, prefix, backup_id = os.urandom(16), os.urandom(8), os.urandom(16)
            header["kdf"] = {"name": "scrypt", "n": SCRYPT_N, "r": SCRYPT_R, "p": SCRYPT_P,
                             "salt": salt.hex()}  # fmt: skip
            header["cipher"] = {"name": "AES-256-GCM", "chunk": CHUNK, "nonce_prefix":
                                prefix.hex(), "id": backup_id.hex()}  # fmt: skip
            key = _derive(passphrase, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
            sealer = _SealingWriter(out, key, prefix, backup_id)
            sink = io.BufferedWriter(sealer, CHUNK)
        with tarfile.open(fileobj=sink, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            for path, name in members:
                manifest["files"][name] = _sha256(path)
                info = tar.gettarinfo(str(path), arcname=name)
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                with path.open("rb") as fh:
                    tar.addfile(info, fh)
            data = json.dumps(manifest, indent=2).encode()
            info = tarfile.TarInfo(MANIFEST)
            info.size, info.mode = len(data), 0o600
            tar.addfile(info, io.BytesIO(data))
        if sealer is not None:
            sink.flush()
            sealer.finish()
        out.flush()
        os.fsync(out.fileno())
    header["archive"] = {"file": archive.name, "sha256": _sha256(archive)}
    header["created_at"] = manifest["created_at"]
    header["schema_revision"] = manifest["schema_revision"]
    (target / HEADER).write_text(json.dumps(header, indent=2) + "\n")
    return archive.stat().st_size


# -- restoring -------------------------------------------------------------------------


def read_header(source: Path) -> dict[str, Any]:
    try:
        header = json.loads((source / HEADER).read_text())
    except FileNotFoundError:
        raise BackupError(f"{source} holds no {HEADER}: not a Socialjour backup") from None
    except ValueError:
        raise BackupError(f"{source / HEADER} is damaged (not JSON)") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise BackupError(f"{source / HEADER}: unknown backup format")
    return header


async def _database_is_empty(url: str) -> bool:
    db_file = sqlite_path(url)
    if db_file is not None:
        if not db_file.exists() or db_file.stat().st_size == 0:
            return True
        with sqlite3.connect(db_file) as connection:
            return connection.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            found = await connection.scalar(
                text(
                    "SELECT count(*) FROM information_schema.tables WHERE table_schema "
                    "NOT IN ('pg_catalog', 'information_schema')"
                )
            )
    finally:
        await engine.dispose()
    return found == 0


def _data_dir_is_empty(data_dir: Path, db_file: Path | None) -> bool:
    if not data_dir.exists():
        return True
    database = {db_file.name + side for side in ("", *_SIDE_FILES)} if db_file else set()
    in_it = db_file is not None and db_file.parent.resolve() == data_dir.resolve()
    return all(in_it and entry.name in database for entry in data_dir.iterdir())


def _check_revision(revision: str | None) -> None:
    if revision is None:
        return
    from alembic.script import ScriptDirectory
    from alembic.util import CommandError

    try:
        found = ScriptDirectory.from_config(alembic_config()).get_revision(revision)
    except CommandError:
        found = None
    if found is None:
        raise BackupError(
            f"the backup's database is at migration {revision}, unknown to this version "
            f"(newest {head_revision()}): restore with the Socialjour version that made it"
        )


def _extract(source: Path, header: dict[str, Any], passphrase: str | None, into: Path) -> None:
    archive = source / header["archive"]["file"]
    with archive.open("rb") as raw:
        stream: IO[bytes] = raw
        if header["encrypted"]:
            if passphrase is None:
                raise BackupError(
                    "the backup is encrypted: give its passphrase "
                    "([backup] passphrase or --passphrase-env NAME)"
                )
            kdf, cipher = header["kdf"], header["cipher"]
            key = _derive(
                passphrase, bytes.fromhex(kdf["salt"]), int(kdf["n"]), int(kdf["r"]), int(kdf["p"])
            )
            opener = _OpeningReader(
                io.BufferedReader(raw, CHUNK + 64),
                key,
                bytes.fromhex(cipher["nonce_prefix"]),
                bytes.fromhex(cipher["id"]),
            )
            stream = io.BufferedReader(opener, CHUNK)
        with tarfile.open(fileobj=stream, mode="r|") as tar:
            tar.extractall(into, filter="data")


def _verify_files(staging: Path) -> dict[str, Any]:
    try:
        manifest = json.loads((staging / MANIFEST).read_text())
    except (OSError, ValueError):
        raise BackupError(f"the archive has no readable {MANIFEST}: it is damaged") from None
    listed: dict[str, str] = manifest.get("files", {})
    present = {
        p.relative_to(staging).as_posix()
        for p in staging.rglob("*")
        if p.is_file() and p.name != MANIFEST
    }
    if present != set(listed):
        raise BackupError("the archive's files differ from its manifest: it is damaged")
    for name, digest in listed.items():
        if _sha256(staging / name) != digest:
            raise BackupError(f"checksum mismatch for {name}: the backup is damaged or altered")
    return manifest


async def restore_backup(
    settings: Settings, source: Path, *, passphrase: str | None, force: bool = False
) -> Restored:
    """Bring a backup back into the configured database and ``data_dir``.

    Both must be empty (a fresh installation) unless ``force``: then ``data_dir`` is
    moved aside (``DATA_DIR.replaced-TIME``) and the database's objects are replaced.
    """
    header = read_header(source)
    url = settings.storage.database_url
    data_dir = settings.storage.data_dir
    db_file = sqlite_path(url)
    if not force:
        if not await _database_is_empty(url):
            raise BackupError(
                "the configured database is not empty: restore into a new one, or give --force"
            )
        if not _data_dir_is_empty(data_dir, db_file):
            raise BackupError(
                f"data_dir {data_dir} is not empty: restore into a new folder, or give --force"
            )
    archive = source / header["archive"]["file"]
    if not archive.is_file():
        raise BackupError(f"{archive} is missing")
    if await asyncio.to_thread(_sha256, archive) != header["archive"]["sha256"]:
        raise BackupError(f"checksum mismatch: {archive.name} is damaged or altered")
    _check_revision(header.get("schema_revision"))
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=data_dir.parent, prefix=".restore-") as staging_name:
        staging = Path(staging_name)
        await asyncio.to_thread(_extract, source, header, passphrase, staging)
        manifest = await asyncio.to_thread(_verify_files, staging)
        revision = manifest.get("schema_revision")
        _check_revision(revision)
        database = manifest["database"]
        if (database["kind"] == "sqlite") != (db_file is not None):
            raise BackupError(
                f"the backup holds a {database['kind']} database; the configuration names "
                "the other kind (pg_restore and SQLite files do not convert)"
            )
        await asyncio.to_thread(_place_files, staging, data_dir, db_file, database["file"])
        if db_file is None:
            clean = ("--clean", "--if-exists") if force else ()
            await _run(
                "pg_restore", "--no-owner", "--no-privileges", "--exit-on-error",
                "--single-transaction", *clean, f"--dbname={normalise_url(url).database}",
                str(staging / database["file"]), env=_pg_env(url),
            )  # fmt: skip
    await _forget_lock_holder(url)
    migrated = None
    if revision != head_revision():
        await upgrade(url)
        migrated = head_revision()
    return Restored(len(manifest["files"]), revision, migrated)


def _place_files(staging: Path, data_dir: Path, db_file: Path | None, member: str) -> None:
    """Move the extracted ``data_dir`` (and a SQLite database) into place."""
    restored_data = staging / DATA_PREFIX
    if data_dir.exists() and not _data_dir_is_empty(data_dir, db_file):
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        data_dir.rename(data_dir.with_name(f"{data_dir.name}.replaced-{stamp}"))
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    if restored_data.is_dir():
        for entry in restored_data.iterdir():
            os.replace(entry, data_dir / entry.name)
    if db_file is not None:
        db_file.parent.mkdir(parents=True, exist_ok=True)
        for side in _SIDE_FILES:
            Path(f"{db_file}{side}").unlink(missing_ok=True)
        incoming = db_file.with_name(db_file.name + ".restoring")
        shutil.copyfile(staging / member, incoming)
        os.replace(incoming, db_file)


async def _forget_lock_holder(url: str) -> None:
    """The snapshot names the process that ran when it was taken; that one does not run
    this database: without this, a restore on another host waits out its heartbeat."""
    engine = create_engine(url)
    try:
        async with engine.begin() as connection:
            if await connection.run_sync(
                lambda sync: sync.dialect.has_table(sync, InstanceLock.__tablename__)
            ):
                await connection.execute(delete(InstanceLock))
    finally:
        await engine.dispose()
