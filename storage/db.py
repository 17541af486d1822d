"""Engines and sessions for the two supported databases: SQLite (one host) and PostgreSQL."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiosqlite
from sqlalchemy import Connection, event
from sqlalchemy.dialects.sqlite.aiosqlite import SQLiteDialect_aiosqlite
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.ext.asyncio import create_async_engine as _create_async_engine
from sqlalchemy.orm import Session

from storage.errors import UnsupportedDatabaseError

#: How long (ms) a SQLite connection waits for the write lock before failing.
SQLITE_BUSY_TIMEOUT_MS = 30_000
#: How long (ms) SQLite itself waits for a lock on the bot's connections: not at all,
#: since the event loop would wait with it; :class:`InlineConnection` waits instead,
#: asleep on the loop, up to :data:`SQLITE_BUSY_TIMEOUT_MS`.
SQLITE_INLINE_BUSY_MS = 0
#: SQLite connections kept open for reuse. Units of work waiting for the write lock
#: (see :class:`WriteGate`) each hold one: with SQLAlchemy's default of 5, a burst
#: of answers in many rooms closed and reopened connections (a thread, a file and
#: five PRAGMAs each) on every answer beyond the fifth.
SQLITE_POOL_SIZE = 20
#: Connections opened beyond those in a burst, and closed again afterwards.
SQLITE_POOL_OVERFLOW = 40
#: Commits between two write-ahead-log checkpoints of a SQLite file, which run on a
#: worker thread (see :class:`Checkpointer`), never inside a commit on the loop.
CHECKPOINT_EVERY = 200

log = logging.getLogger(__name__)

_ASYNC_DRIVERS = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+asyncpg"}


def normalise_url(url: str | URL) -> URL:
    """Return `url` with the async driver filled in; refuse any other database.

    Operators may write `sqlite:///...` or `postgresql://...`; the bot only has the
    async drivers, so pick them rather than fail on a detail.
    """
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    wanted = _ASYNC_DRIVERS.get(backend)
    if wanted is None:
        raise UnsupportedDatabaseError(f"unsupported database backend {backend!r}")
    if parsed.drivername == backend:
        parsed = parsed.set(drivername=wanted)
    elif parsed.drivername != wanted:
        raise UnsupportedDatabaseError(f"unsupported driver {parsed.drivername!r}; use {wanted!r}")
    return parsed


def _sqlite_file(url: URL) -> Path | None:
    """The database file of a SQLite URL, or None for in-memory and `file:` URI forms."""
    database = url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database).expanduser()


def _on_sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    """Configure each new SQLite connection.

    WAL lets readers work while one writer writes; busy_timeout makes a writer wait
    for the lock instead of failing at once; foreign keys are off by default in SQLite.
    `isolation_level = None` stops the sqlite3 module from issuing its own (deferred)
    BEGIN, so `_on_sqlite_begin` decides how transactions start.
    """
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        # In WAL mode NORMAL is crash-safe (a power cut may lose the last commits,
        # never corrupt the file) and spares an fsync per transaction.
        cursor.execute("PRAGMA synchronous=NORMAL")
        inline = isinstance(getattr(dbapi_connection, "_connection", None), InlineConnection)
        busy = SQLITE_INLINE_BUSY_MS if inline else SQLITE_BUSY_TIMEOUT_MS
        cursor.execute(f"PRAGMA busy_timeout={busy}")
        if inline and dbapi_connection._connection.checkpointer is not None:
            # Checkpoints are the Checkpointer's, off the loop (they fsync).
            cursor.execute("PRAGMA wal_autocheckpoint=0")
        cursor.execute("PRAGMA foreign_keys=ON")
    finally:
        cursor.close()


#: How a writing transaction starts on SQLite (see :func:`_on_sqlite_begin`).
BEGIN_WRITE = "BEGIN IMMEDIATE"

#: Execution option marking a read-only engine (see :func:`read_session_factory`).
READ_ONLY = "socialjour_read_only"


def _on_sqlite_begin(connection: Connection) -> None:
    """Start every writing transaction with the write lock (`BEGIN IMMEDIATE`).

    A deferred transaction that reads and then writes fails with "database is
    locked" (SQLITE_BUSY_SNAPSHOT) if another writer committed in between, and
    no wait can help it then. Taking the lock up front makes a concurrent unit of
    work wait (asleep on the loop, up to :data:`SQLITE_BUSY_TIMEOUT_MS`: see
    :class:`InlineConnection`) and then run as if alone: serialisable,
    no lost updates. The cost is that SQLite runs one transaction at a time, which
    a bot handling a few cases an hour never notices; keep sessions short.

    Sessions from :func:`read_session_factory` never write: they start a plain
    (deferred) transaction, which in WAL mode reads a snapshot without waiting for
    or blocking the writer.
    """
    if connection.get_execution_options().get(READ_ONLY):
        connection.exec_driver_sql("BEGIN")
    else:
        # Waiting for the lock, if another writer holds it, is InlineConnection's.
        connection.exec_driver_sql(BEGIN_WRITE)


def _busy(exc: sqlite3.OperationalError) -> bool:
    """The database is locked by another connection, and trying again may succeed
    (not SQLITE_BUSY_SNAPSHOT: a stale read transaction never can)."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is None:
        return "database is locked" in str(exc)
    return code == sqlite3.SQLITE_BUSY or (
        code & 0xFF == sqlite3.SQLITE_BUSY and code != BUSY_SNAPSHOT
    )


#: SQLITE_BUSY_SNAPSHOT (extended result code).
BUSY_SNAPSHOT = 517


class Checkpointer:
    """Moves a SQLite file's write-ahead log back into the file, on a worker thread.

    SQLite does this itself inside a commit once the log passes 1,000 pages, and a
    checkpoint waits for the disk twice (fsync). Commits run on the event loop (see
    :class:`InlineConnection`), so the bot's connections turn that off and this runs
    a passive checkpoint (it never waits for a reader or the writer) on a connection
    of its own every :data:`CHECKPOINT_EVERY` commits, one at a time.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.commits = 0
        self.running: asyncio.Future[None] | None = None

    def committed(self) -> None:
        self.commits += 1
        if self.commits < CHECKPOINT_EVERY or self.running is not None:
            return
        self.commits = 0
        self.running = asyncio.get_running_loop().run_in_executor(None, self._checkpoint)
        self.running.add_done_callback(self._done)

    def _checkpoint(self) -> None:
        connection = sqlite3.connect(self.path, timeout=SQLITE_BUSY_TIMEOUT_MS / 1000)
        try:
            connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        finally:
            connection.close()

    def _done(self, future: asyncio.Future[None]) -> None:
        self.running = None
        if not future.cancelled() and future.exception() is not None:
            log.warning("WAL checkpoint failed (%s)", type(future.exception()).__name__)


class WriteGate:
    """One writing transaction at a time per database file in this process, in turn.

    SQLite lets one connection write at a time; the others' ``BEGIN IMMEDIATE`` fails
    with SQLITE_BUSY. Without this, each waiting unit of work tried again on a timer
    (1 ms, doubling to 50 ms): a busy room polled the lock, and the lock could sit
    free for up to 50 ms while every writer slept. Here they queue on an
    :class:`asyncio.Lock` (first come, first served) and each is woken the moment the
    transaction before it commits or rolls back. Another process holding the lock is
    still waited for by polling (:class:`InlineConnection`).
    """

    def __init__(self) -> None:
        # One lock per event loop: a lock belongs to the loop it first waited on, and
        # an engine may be used from more than one loop (one after the other).
        self._locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
            weakref.WeakKeyDictionary()
        )

    def lock(self) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        lock = self._locks.get(loop)
        if lock is None:
            lock = self._locks[loop] = asyncio.Lock()
        return lock


class InlineConnection(aiosqlite.Connection):
    """aiosqlite's connection, with statements run on the event loop's own thread.

    aiosqlite hands every call (open a cursor, execute, fetch, close the cursor,
    commit) to a thread of its own and back, and each hand-off costs more CPU than
    the statement: about 0.1 ms, three or four times per statement (measured: 0.55
    against 0.15 ms of CPU for a one-row statement). A statement or a commit on a
    local file in WAL mode with ``synchronous=NORMAL`` takes microseconds and never
    waits for the disk (the log is written, not synced), so it runs where it is
    called. What can wait on the disk runs on aiosqlite's thread: ``VACUUM`` and
    explicit checkpoints; the log's regular checkpoints run on a worker thread
    (:class:`Checkpointer`). Closing a connection stays there too.

    Waiting for a lock must not stop the loop. The writing transactions of this
    process take turns at a :class:`WriteGate` before their ``BEGIN IMMEDIATE``.
    SQLite's own ``busy_timeout`` is 0 on these connections, and a statement that
    still finds the database locked (the write lock taken by another process; a
    reader during another connection's recovery) sleeps on the loop and is tried
    again, for up to :data:`SQLITE_BUSY_TIMEOUT_MS`. A statement that failed with
    SQLITE_BUSY changed nothing, so trying it again is safe.
    """

    _ON_THREAD = ("VACUUM", "PRAGMA WAL_CHECKPOINT")
    #: What those may start with (they may have leading white space too).
    _ON_THREAD_FIRST = frozenset("VvPp \t\n\r")
    _STATEMENTS = frozenset({"execute", "executemany", "executescript"})

    def __init__(
        self,
        connector: Callable[[], sqlite3.Connection],
        checkpointer: Checkpointer | None,
        gate: WriteGate | None = None,
    ) -> None:
        super().__init__(connector, 64)
        self.checkpointer = checkpointer
        self.gate = gate
        #: The gate's lock while this connection's writing transaction is open.
        self._writing: asyncio.Lock | None = None

    async def _execute(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        driver = self._connection
        if not self._running or driver is None:
            raise ValueError("Connection closed")
        if fn == driver.commit:
            fn()
            self._done_writing()
            if self.checkpointer is not None:
                self.checkpointer.committed()
            return None
        if fn == driver.rollback:
            # In WAL mode a rollback never waits for the disk (what the transaction
            # wrote is dropped, not undone), and most are the pool's reset of a
            # connection whose transaction has ended already: nothing to do at all.
            try:
                fn()
            finally:
                self._done_writing()
            return None
        if fn == driver.close:
            try:
                return await super()._execute(fn, *args, **kwargs)
            finally:
                self._done_writing()
        if getattr(fn, "__name__", None) not in self._STATEMENTS:
            return fn(*args, **kwargs)  # a cursor, a fetch: never locked
        if self._waits_on_disk(args):
            return await super()._execute(fn, *args, **kwargs)
        if self.gate is not None and self._writing is None and args[:1] == (BEGIN_WRITE,):
            # Wait for this process's writer before us, asleep, then take our turn; as
            # long as SQLite would have waited, and failing as SQLite would have (a
            # unit of work that opened another while holding the lock must not hang).
            lock = self.gate.lock()
            try:
                async with asyncio.timeout(SQLITE_BUSY_TIMEOUT_MS / 1000):
                    await lock.acquire()
            except TimeoutError:
                raise sqlite3.OperationalError("database is locked") from None
            self._writing = lock
            try:
                return await self._run(fn, *args, **kwargs)
            except BaseException:
                self._done_writing()
                raise
        return await self._run(fn, *args, **kwargs)

    def _done_writing(self) -> None:
        lock, self._writing = self._writing, None
        if lock is not None:
            lock.release()

    async def _run(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        # Let the rest of the loop run first: a transaction's statements would
        # otherwise run back to back without it, and each may wait for the GIL (SQLite
        # lets go of it while it works) as long as a busy thread holds it (a seal or a
        # page preview in a worker thread: 5 ms at a time).
        await asyncio.sleep(0)
        deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
        pause = 0.001
        while True:
            try:
                return fn(*args, **kwargs)
            except sqlite3.OperationalError as exc:
                if not _busy(exc) or time.monotonic() >= deadline:
                    raise
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.05)

    def _waits_on_disk(self, args: tuple[Any, ...]) -> bool:
        statement = args[0] if args and isinstance(args[0], str) else ""
        if statement[:1] not in self._ON_THREAD_FIRST:
            return False  # (most statements: SELECT, INSERT, UPDATE, BEGIN)
        return statement.lstrip()[:22].upper().startswith(self._ON_THREAD)


#: The gate of each database file in this process, shared by its engines (the bot's
#: and, say, a command's in the same process), kept while one of them uses it.
_GATES: weakref.WeakValueDictionary[str, WriteGate] = weakref.WeakValueDictionary()


def _gate_of(path: Path | None) -> WriteGate:
    if path is None:
        return WriteGate()  # in memory: each engine has a database of its own
    key = str(path.resolve())
    gate = _GATES.get(key)
    if gate is None:
        gate = _GATES[key] = WriteGate()
    return gate


def _inline_creator(url: URL) -> Callable[[], InlineConnection]:
    """SQLAlchemy's ``async_creator`` for an :class:`InlineConnection` to ``url``,
    opened with the arguments SQLAlchemy's own aiosqlite dialect would use."""
    args, kwargs = SQLiteDialect_aiosqlite().create_connect_args(url)
    kwargs = dict(kwargs)
    # Opened on aiosqlite's thread, used on the loop's: the two never at once.
    kwargs["check_same_thread"] = False
    kwargs["timeout"] = SQLITE_INLINE_BUSY_MS / 1000
    path = _sqlite_file(url)
    checkpointer = Checkpointer(str(path)) if path is not None else None
    gate = _gate_of(path)

    def connect() -> sqlite3.Connection:
        return sqlite3.connect(*args, **kwargs)  # type: ignore[call-overload]

    def create() -> InlineConnection:
        connection = InlineConnection(connect, checkpointer, gate)
        connection._thread.daemon = True
        return connection

    return create


def create_engine(url: str | URL) -> AsyncEngine:
    """Build the async engine for `url` (SQLite via aiosqlite or PostgreSQL via asyncpg).

    For SQLite the database folder is created, so a fresh installation starts with
    only a config file.
    """
    parsed = normalise_url(url)
    if parsed.get_backend_name() == "postgresql":
        # pool_pre_ping: a restarted or failed-over server must not cost the next case.
        # hide_parameters: a database error never logs bound values (report answers).
        return _create_async_engine(parsed, pool_pre_ping=True, hide_parameters=True)

    # aiosqlite logs every statement with its bound values at DEBUG: unless someone
    # chose its level on purpose, it never logs below INFO (bot.logs quiets it too).
    quiet = logging.getLogger("aiosqlite")
    if quiet.level == logging.NOTSET:
        quiet.setLevel(logging.INFO)
    path = _sqlite_file(parsed)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    engine = _create_async_engine(
        parsed,
        hide_parameters=True,
        async_creator=_inline_creator(parsed),
        pool_size=SQLITE_POOL_SIZE,
        max_overflow=SQLITE_POOL_OVERFLOW,
    )
    event.listen(engine.sync_engine, "connect", _on_sqlite_connect)
    event.listen(engine.sync_engine, "begin", _on_sqlite_begin)
    return engine


def session_factory(
    engine: AsyncEngine, *, check_before_commit: Callable[[], None] | None = None
) -> async_sessionmaker[AsyncSession]:
    """Sessions for one unit of work each; objects stay readable after commit.

    ``check_before_commit`` is called as each transaction commits; if it raises, the
    transaction is rolled back instead. The bot passes its lease's check there
    (``bot.instance_lock``): a process that was paused past its lease, or lost it,
    commits nothing (a claim, an answer, a claimed escalation step) that the node
    that took over would then find done but never told anyone about.
    """
    if check_before_commit is None:
        return async_sessionmaker(engine, expire_on_commit=False)
    check = check_before_commit

    class CheckedSession(Session):
        """A session whose every commit asks ``check`` first."""

    def before_commit(session: Session) -> None:
        check()

    event.listen(CheckedSession, "before_commit", before_commit)
    return async_sessionmaker(engine, expire_on_commit=False, sync_session_class=CheckedSession)


def read_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions for work that only reads: no write lock on SQLite (plain ``BEGIN``).

    Writing through one of these is a programming error; on SQLite it would fail
    with "database is locked" under contention instead of waiting its turn.
    """
    return async_sessionmaker(engine.execution_options(**{READ_ONLY: True}), expire_on_commit=False)


class DatabaseFailure(Exception):
    """A database error as it may be logged: what failed, not what the server said."""


def loggable(exc: BaseException) -> BaseException:
    """``exc`` fit for a log line with its traceback (``log.error(..., exc_info=...)``).

    ``hide_parameters`` keeps bound values out of SQLAlchemy's own messages, but the
    database server's message travels in the exception too, and may quote them:
    PostgreSQL's "DETAIL: Failing row contains (...)" for a violated constraint, or
    "Key (...)=(...) already exists". A database error (anywhere in the chain of
    causes) is therefore replaced by a :class:`DatabaseFailure` naming its class, the
    driver's error class, the SQLSTATE and the statement (placeholders only), with the
    original traceback; anything else is returned as it is.
    """
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, DBAPIError):
            return _scrubbed(cause, exc)
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return exc


def _scrubbed(error: DBAPIError, outer: BaseException) -> DatabaseFailure:
    orig = error.orig
    driver = type(getattr(orig, "__cause__", None) or orig).__name__ if orig else "-"
    code = (
        getattr(orig, "sqlstate", None)
        or getattr(orig, "pgcode", None)
        or getattr(orig, "sqlite_errorname", None)
    )
    statement = " ".join((error.statement or "").split())[:300]
    safe = DatabaseFailure(
        f"{type(error).__name__} ({driver}, code {code or '-'}) in: {statement or '-'}"
    )
    safe.__traceback__ = outer.__traceback__
    safe.__suppress_context__ = True
    return safe
