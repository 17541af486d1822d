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


def _setup_logging(level: str, fmt: str = "text") -> None:
    from bot.logs import setup_logging

    setup_logging(level, fmt)


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
    from bot.app import ListenerError, run
    from bot.instance_lock import AlreadyRunning
    from bot.rooms import RoomSetupError

    settings = _load(args.config)
    _setup_logging(settings.logging.level, settings.logging.format)
    for warning in settings.warnings:  # e.g. an appointment that ran out: never asked
        log.warning("config: %s", _warning(args.config, warning))
    try:
        asyncio.run(run(settings))
    except (AlreadyRunning, RoomSetupError, ListenerError) as exc:
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


#: Where the person finds the fingerprint in Element (Element Web/Desktop).
ELEMENT_WHERE = "Settings → Security & Privacy → Cryptography"


def cmd_trust_accept(args: argparse.Namespace) -> int:
    """Accept a user's new cross-signing identity, exactly the key the administrator
    checked with the person.

    The new key comes from the database: the running bot records the master key it
    refused (and the sessions that key vouches for) when it meets the change, so this
    shows what the bot actually refuses and needs no homeserver access. With the
    matching ``--fingerprint`` the key is pinned; the running bot reads the pin at the
    user's next check, no restart needed. Without it, or with another one, nothing
    changes and the exit code is 1.
    """
    from bot.trust import accept_identity, format_fingerprint, load_refused, same_fingerprint

    settings = _load(args.config)
    user_id = args.user_id.strip()

    async def work(sessions: Any) -> int:
        async with sessions() as session, session.begin():
            refused = await load_refused(session, user_id=user_id)
            if refused is None:
                print(
                    f"socialjour trust accept: Socialjour has refused no new encryption "
                    f"identity of {user_id}: nothing to accept. (The bot records one when "
                    "the person's key changes and they write, or a message goes to them.)",
                    file=sys.stderr,
                )
                return 1
            fingerprint = format_fingerprint(refused.master_key)
            if args.fingerprint is None:
                seen = f"{refused.seen_at:%Y-%m-%d %H:%M} UTC"
                print(f"{user_id} has a new encryption identity (seen {seen}).")
                print("Fingerprint of the new master key:")
                print(f"    {fingerprint}")
                if refused.sessions:
                    print('Sessions it vouches for (Element calls the key the "Session key"):')
                    for device_id, key in sorted(refused.sessions.items()):
                        print(f"    {device_id}: {format_fingerprint(key)}")
                print(
                    "Ask the person to read the fingerprint from Element: "
                    f"{ELEMENT_WHERE}, over a channel you trust (phone, in person), never "
                    "through Matrix. If it is the same, run:"
                )
                print(
                    f'    socialjour trust accept {user_id} --fingerprint "THE FINGERPRINT '
                    f'YOU CHECKED" --config {args.config}'
                )
                return 1
            if not same_fingerprint(args.fingerprint, refused.master_key):
                print(
                    f"socialjour trust accept: {args.fingerprint!r} is not the fingerprint of "
                    f"{user_id}'s new key; nothing changed. Run without --fingerprint to see it.",
                    file=sys.stderr,
                )
                return 1
            await accept_identity(
                session, user_id=user_id, master_key=refused.master_key, now=datetime.now(UTC)
            )
        print(f"{user_id}: the new identity {fingerprint} is accepted.")
        print("The running Socialjour uses it from the person's next message; no restart needed.")
        return 0

    return _with_sessions(settings, work)


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


def _passphrase(args: argparse.Namespace, settings: Settings) -> str | None:
    """``--passphrase-env NAME`` first, then ``[backup] passphrase``; None if neither."""
    if args.passphrase_env:
        value = os.environ.get(args.passphrase_env)
        if not value:
            print(
                f"socialjour {args.command}: --passphrase-env {args.passphrase_env}: "
                "the variable is not set",
                file=sys.stderr,
            )
            raise SystemExit(1)
        return value
    return settings.backup.passphrase


def cmd_backup(args: argparse.Namespace) -> int:
    """An online, encrypted snapshot of the database and data_dir (see bot.backup)."""
    from bot.backup import BackupError, create_backup

    settings = _load(args.config)
    _setup_logging(settings.logging.level, settings.logging.format)
    passphrase = None if args.no_encrypt else _passphrase(args, settings)
    if passphrase is None and not args.no_encrypt:
        print(
            'socialjour backup: no passphrase: set [backup] passphrase = { env = "NAME" }, '
            "or give --passphrase-env NAME (an unencrypted backup needs --no-encrypt)",
            file=sys.stderr,
        )
        return 1
    try:
        written = asyncio.run(create_backup(settings, Path(args.to), passphrase=passphrase))
    except BackupError as exc:
        print(f"socialjour backup: {exc}", file=sys.stderr)
        return 1
    state = "encrypted" if written.encrypted else "NOT encrypted"
    print(
        f"{written.folder}: {written.files} files, {written.size} bytes, {state}, "
        f"schema {written.schema_revision or 'none'}"
    )
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    """A backup back into the configured (empty) database and data_dir."""
    from bot.backup import BackupError, restore_backup

    settings = _load(args.config)
    _setup_logging(settings.logging.level, settings.logging.format)
    try:
        restored = asyncio.run(
            restore_backup(
                settings,
                Path(args.source),
                passphrase=_passphrase(args, settings),
                force=args.force,
            )
        )
    except BackupError as exc:
        print(f"socialjour restore: {exc}", file=sys.stderr)
        return 1
    print(f"restored {restored.files} files, schema {restored.schema_revision or 'none'}")
    if restored.migrated_to:
        print(f"database migrated to {restored.migrated_to}")
    print("Start Socialjour (socialjour run) on this installation only; stop the old one first.")
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    """Check a live installation end to end; exit 1 on any FAIL."""
    from bot.doctor import run_doctor

    return run_doctor(args.config, admin_token_env=args.admin_token_env)


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

    p = sub.add_parser("backup", help="an online, encrypted snapshot of database and data_dir")
    p.add_argument("--config", required=True, metavar="PATH")
    p.add_argument("--to", required=True, metavar="DIR", help="a new (or empty) folder")
    p.add_argument("--passphrase-env", metavar="NAME", help="read the passphrase from $NAME")
    p.add_argument("--no-encrypt", action="store_true", help="write it unencrypted")
    p.set_defaults(func=cmd_backup)

    p = sub.add_parser("restore", help="restore a backup into an empty database and data_dir")
    p.add_argument("--config", required=True, metavar="PATH")
    p.add_argument("--from", dest="source", required=True, metavar="DIR")
    p.add_argument("--passphrase-env", metavar="NAME", help="read the passphrase from $NAME")
    p.add_argument("--force", action="store_true", help="replace a non-empty database and data_dir")
    p.set_defaults(func=cmd_restore)

    p = sub.add_parser("doctor", help="check a live installation; exit 1 on any FAIL")
    p.add_argument("--config", required=True, metavar="PATH")
    p.add_argument(
        "--admin-token-env",
        metavar="NAME",
        help="a Synapse admin's access token in $NAME (to check the rate-limit override)",
    )
    p.set_defaults(func=cmd_doctor)

    trust = sub.add_parser("trust", help="encryption identities of users")
    tsub = trust.add_subparsers(dest="trust_command", required=True)
    p = tsub.add_parser(
        "accept",
        help="accept a user's changed cross-signing identity (shows its fingerprint)",
    )
    p.add_argument("user_id", metavar="@user")
    p.add_argument(
        "--fingerprint",
        metavar="FP",
        help="the new key's fingerprint as checked with the person (spaces and case ignored)",
    )
    p.add_argument("--config", required=True, metavar="PATH")
    p.set_defaults(func=cmd_trust_accept)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
