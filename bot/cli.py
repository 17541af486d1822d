"""The ``socialjour`` command line."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, TypeVar

from config import ConfigError, Problem, Settings, load_settings

log = logging.getLogger("socialjour")
T = TypeVar("T")


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # nio logs event contents at DEBUG and key details at INFO: keep it quiet.
    for noisy in ("nio", "peewee", "aiohttp.access", "alembic", "aiosqlite", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _load(path: str) -> Settings:
    try:
        return load_settings(path)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        raise SystemExit(1) from None


def _warning(label: str, warning: Problem) -> str:
    """A warning as check-config prints it: ``config.toml: key: warning: message``."""
    return f"{label}: {warning.place}: warning: {warning.message}"


def cmd_run(args: argparse.Namespace) -> int:
    from bot.app import run
    from bot.instance_lock import AlreadyRunning

    settings = _load(args.config)
    _setup_logging(settings.logging.level)
    for warning in settings.warnings:  # e.g. an appointment that ran out: never asked
        log.warning("config: %s", _warning(args.config, warning))
    try:
        asyncio.run(run(settings))
    except AlreadyRunning as exc:
        print(f"socialjour run: {exc}", file=sys.stderr)
        return 1
    return 0


def cmd_check_config(args: argparse.Namespace) -> int:
    """Every problem (exit 1), or OK with the warnings: what the file may say but
    should change (an old role, a missing or expiring appointment; exit 0)."""
    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem)
        print(f"{len(exc.problems)} problem(s) found.", file=sys.stderr)
        return 1
    for warning in settings.warnings:
        print(_warning(args.config, warning))
    count = len(settings.warnings)
    print(f"{args.config}: OK" + (f" ({count} warning(s))" if count else ""))
    return 0


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from storage import upgrade

    settings = _load(args.config)
    asyncio.run(upgrade(settings.storage.database_url))
    print("database is up to date")
    return 0


def cmd_trust_accept(args: argparse.Namespace) -> int:
    from storage import create_engine, repo, session_factory

    settings = _load(args.config)

    async def forget() -> bool:
        engine = create_engine(settings.storage.database_url)
        try:
            async with session_factory(engine)() as session, session.begin():
                return await repo.forget_master_key(session, user_id=args.user_id)
        finally:
            await engine.dispose()

    found = asyncio.run(forget())
    print(
        f"{args.user_id}: the next identity seen will be trusted"
        if found
        else f"{args.user_id}: no pinned identity"
    )
    print("Restart Socialjour for the change to take effect.")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from signing.verify import print_report, verify_file

    settings = _load(args.config).signing if args.config else None
    report = verify_file(
        Path(args.file), trust_roots=[Path(p) for p in args.trust or []], settings=settings
    )
    print_report(report)
    return 0 if report.ok else 1


def _with_sessions(settings: Settings, work: Callable[[Any], Awaitable[T]]) -> T:
    """Run ``work(session factory)`` against the configured database. A database that is
    not at this version's schema is left alone: reading the trail never migrates it."""
    from storage import create_engine, current_revision, head_revision, session_factory

    async def run() -> T:
        found = await current_revision(settings.storage.database_url)
        if found != head_revision():
            print(
                f"socialjour: the database is at migration {found or 'none'}, this version "
                f"needs {head_revision()}: run `socialjour db upgrade --config PATH` first",
                file=sys.stderr,
            )
            raise SystemExit(1)
        engine = create_engine(settings.storage.database_url)
        try:
            return await work(session_factory(engine))
        finally:
            await engine.dispose()

    return asyncio.run(run())


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name (a container without passwd entry)
        return str(os.getuid()) if hasattr(os, "getuid") else "unknown"


def cmd_audit_verify(args: argparse.Namespace) -> int:
    """The whole chain: the count and OK (exit 0), or the first broken row (exit 1)."""
    from handlers.audit_export import verify_chain, verify_lines

    check = _with_sessions(_load(args.config), verify_chain)
    for line in verify_lines(check):
        print(line)
    return 0 if check.ok else 1


def cmd_audit_export(args: argparse.Namespace) -> int:
    """A case file: the trail (JSON, CSV), the documents, a manifest of SHA-256 sums."""
    from handlers.audit_export import export_case
    from storage.audit import cli_actor

    settings = _load(args.config)
    number = args.case.strip()
    exported = _with_sessions(
        settings,
        lambda sessions: export_case(
            sessions,
            settings,
            number=number,
            actor=cli_actor(_os_user()),
            now=datetime.now(UTC),
        ),
    )
    if exported is None:
        print(f"socialjour audit export: no case {number}", file=sys.stderr)
        return 1
    out = Path(args.out or f"{number}.zip")
    out.write_bytes(exported.data)
    print(f"{out}: {len(exported.sums)} files (sums in {number}/SHA256SUMS)")
    print(f"audit chain head at export: seq {exported.head_seq} hash {exported.head_hash}")
    return 0


def _since(value: str) -> datetime:
    """``--since 2026-03-01``: from the start of that day in Swedish time."""
    from handlers.workdays import SWEDEN

    try:
        day = date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {value!r}") from None
    return datetime(day.year, day.month, day.day, tzinfo=SWEDEN)


def cmd_audit_access(args: argparse.Namespace) -> int:
    """Loggkontroll: what one person opened and did, one line per row."""
    from handlers.audit_export import access_lines

    settings = _load(args.config)
    lines = _with_sessions(
        settings,
        lambda sessions: access_lines(sessions, settings, user=args.user, since=args.since),
    )
    for line in lines:
        print(line)
    if not lines:
        print(f"no entries for {args.user}", file=sys.stderr)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from bot.demo import run_demo

    _setup_logging("INFO")
    return run_demo(Path(args.dir), synapse_port=args.synapse_port, web_port=args.web_port)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="socialjour",
        description="Socialjour: urgent social-services decisions over encrypted Matrix.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="run the bot and its web service until SIGTERM/SIGINT")
    p.add_argument("--config", required=True, metavar="PATH")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("check-config", help="validate the configuration; exit 1 on any problem")
    p.add_argument("--config", required=True, metavar="PATH")
    p.set_defaults(func=cmd_check_config)

    p = sub.add_parser("demo", help="a whole local installation: Synapse, demo users, the bot")
    p.add_argument("--dir", default="demo-data", help="where the demo keeps its state")
    p.add_argument("--synapse-port", type=int, default=8008, help="0 for any free port")
    p.add_argument("--web-port", type=int, default=8080, help="0 for any free port")
    p.set_defaults(func=cmd_demo)

    db = sub.add_parser("db", help="database maintenance")
    dbsub = db.add_subparsers(dest="db_command", required=True)
    p = dbsub.add_parser("upgrade", help="apply database migrations")
    p.add_argument("--config", required=True, metavar="PATH")
    p.set_defaults(func=cmd_db_upgrade)

    p = sub.add_parser("verify", help="validate the signatures of a decision PDF")
    p.add_argument("file", metavar="FILE.pdf")
    p.add_argument(
        "--trust", action="append", metavar="CA.pem", help="a trusted root certificate (repeatable)"
    )
    p.add_argument("--config", metavar="PATH", help="also trust signing.trust_roots from here")
    p.set_defaults(func=cmd_verify)

    audit = sub.add_parser("audit", help="the audit trail: verify, export a case, access log")
    asub = audit.add_subparsers(dest="audit_command", required=True)
    p = asub.add_parser("verify", help="check the whole hash chain; exit 1 at a broken row")
    p.add_argument("--config", required=True, metavar="PATH")
    p.set_defaults(func=cmd_audit_verify)
    p = asub.add_parser("export", help="a ZIP with a case's trail, documents and SHA-256 sums")
    p.add_argument("case", metavar="CASE", help="the case number, e.g. SJ-2026-0042")
    p.add_argument("--config", required=True, metavar="PATH")
    p.add_argument("--out", metavar="FILE.zip", help="where to write it (default: CASE.zip)")
    p.set_defaults(func=cmd_audit_export)
    p = asub.add_parser("access", help="what one person opened and did (loggkontroll)")
    p.add_argument("--user", required=True, metavar="@x", help="a Matrix id, or cli:NAME")
    p.add_argument("--config", required=True, metavar="PATH")
    p.add_argument("--since", type=_since, metavar="DATE", help="from this day (YYYY-MM-DD)")
    p.set_defaults(func=cmd_audit_access)

    trust = sub.add_parser("trust", help="encryption identities of users")
    tsub = trust.add_subparsers(dest="trust_command", required=True)
    p = tsub.add_parser("accept", help="accept a user's changed cross-signing identity")
    p.add_argument("user_id")
    p.add_argument("--config", required=True, metavar="PATH")
    p.set_defaults(func=cmd_trust_accept)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
