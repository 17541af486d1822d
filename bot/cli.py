"""The ``socialjour`` command line."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from config import ConfigError, Problem, Settings, load_settings

log = logging.getLogger("socialjour")


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
