"""Escalation latency: how late each step of 200 waiting decisions fires, across a SIGKILL.

Everything runs on this machine over loopback: one throw-away Synapse, Socialjour
as an operator runs it (``python -m bot run --config``), and real E2EE clients
(``bench.harness.TimedUser``): the worker, a duty lead, and one decision-maker per
municipality. Fifteen municipalities (Skaraborg's), each with a policy of its own
in seconds (remind after 2-6 s, alert the leads 3-6 s later, then repeat every
``--repeat`` seconds). ``bench.escalation_seed`` opens ``--cases`` cases and sends
them for signing through the bot's own code; case ``i`` is sent at ``t0 + offset_i``
(offsets uniform over ``--spread`` seconds). Then the bot is started, runs the
steps, is SIGKILLed at ``t0 + --kill-at`` and started again ``--down`` seconds later.
Then the bot is stopped (once every step due in the window has been claimed, and
``--drain`` seconds more), the rows are read from its database and the clients'
messages matched to them (:mod:`bench.escalation_analysis`). Measured, for every
step due before ``t0 + spread + tail``:

* from the database: ``fired_at - due_at``; for a step due while the bot was down
  (or due before the kill and claimed after it), also ``fired_at`` minus the moment
  the restarted bot logged "ready";
* from the clients: when the step's alert, reminder or leads message reached the
  homeserver (``origin_server_ts``) and when a client had decrypted it, minus the
  same references;
* fired twice: more messages of one kind for a case than claimed steps that send
  it, or a policy step claimed more than once other than a re-run after the crash;
* never fired: rows still pending after their due time; claimed steps whose
  messages never arrived.

    python -m bench.escalation_latency [--cases 200] [--out bench/results/x.json]

See bench/README.md for what the numbers mean.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import random
import signal
import sys
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select

from bench.escalation_analysis import Run, Timeline, analyse, problem_counts, report
from bench.harness import (
    DISTS,
    RESULTS,
    Account,
    BenchError,
    Stack,
    TimedUser,
    cpu_seconds,
    interrupt_on_signals,
    load_average,
    log,
    log_problems,
    read_log,
    run_async,
    versions,
    warn_if_busy,
)
from storage import create_engine, session_factory
from storage.models import EscalationStep
from tests.matrix_helpers import ROOT, BotProcess

#: Skaraborg's municipalities (id, name): Skövde's socialjour serves all fifteen.
MUNICIPALITIES = [
    ("essunga", "Essunga kommun"),
    ("falkoping", "Falköpings kommun"),
    ("grastorp", "Grästorps kommun"),
    ("gullspang", "Gullspångs kommun"),
    ("gotene", "Götene kommun"),
    ("hjo", "Hjo kommun"),
    ("karlsborg", "Karlsborgs kommun"),
    ("lidkoping", "Lidköpings kommun"),
    ("mariestad", "Mariestads kommun"),
    ("skara", "Skara kommun"),
    ("skovde", "Skövde kommun"),
    ("tibro", "Tibro kommun"),
    ("tidaholm", "Tidaholms kommun"),
    ("toreboda", "Töreboda kommun"),
    ("vara", "Vara kommun"),
]
JOIN_TIMEOUT = 120.0


# -- the plan ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Policy:
    municipality: str
    remind_s: int
    leads_s: int
    repeat_s: int

    def toml(self) -> str:
        return (
            f"\n[escalation_policies.bench_{self.municipality}]\n"
            f'steps = [{{ after = "{self.remind_s}s", action = "remind" }}, '
            f'{{ after = "{self.leads_s}s", action = "alert_leads" }}]\n'
            f'repeat_every = "{self.repeat_s}s"\n'
        )


def make_plan(args: argparse.Namespace, accounts: dict[str, Account]) -> dict[str, Any]:
    rng = random.Random(args.seed)
    chosen = MUNICIPALITIES[: args.municipalities]
    policies = []
    for mid, _ in chosen:
        remind = rng.randint(2, 6)
        policies.append(Policy(mid, remind, remind + rng.randint(3, 6), rng.randint(*args.repeat)))
    cases = [
        {
            "municipality": chosen[i % len(chosen)][0],
            "offset_s": round(rng.uniform(0, args.spread), 3),
        }
        for i in range(args.cases)
    ]
    return {
        "worker": accounts["worker"].user_id,
        "decision_makers": [accounts[f"dm{k}"].user_id for k in range(len(chosen))],
        "cases": cases,
        "concurrency": args.concurrency,
        "start_allowance_s": args.start_allowance,
        "policies": [asdict(p) for p in policies],
    }


def config_extra(plan: dict[str, Any], tag: str, log_level: str) -> str:
    text = f'\n[logging]\nlevel = "{log_level}"\n'
    for k, p in enumerate(plan["policies"]):
        policy = Policy(**p)
        name = dict(MUNICIPALITIES)[policy.municipality]
        text += policy.toml()
        text += f"""
[[municipalities]]
id = "{policy.municipality}"
name = "{name}"
intake_room_alias = "#bench-intake-{policy.municipality}-{tag}:localhost"
escalation_policy = "bench_{policy.municipality}"

  [[municipalities.decision_makers]]
  user_id = "{plan["decision_makers"][k]}"
  name = "Ledamot {k + 1}"
  role = "ordförande"
"""
    return text


# -- the run -----------------------------------------------------------------------------------


async def run_seed(stack: Stack, config: Path, plan: dict[str, Any], env: dict[str, str]) -> Any:
    plan_path, out = stack.base / "plan.json", stack.base / "seed.json"
    plan_path.write_text(json.dumps(plan))
    with (stack.base / "seed.log").open("ab") as errors:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.escalation_seed",
            "--config",
            str(config),
            "--plan",
            str(plan_path),
            "--out",
            str(out),
            env=env,
            cwd=ROOT,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=errors,
        )
        assert proc.stdout is not None
        async for line in proc.stdout:
            if line.startswith(b"{"):
                t0 = json.loads(line)["t0"]
                log(f"seed: t0 is in {t0 - time.time():.0f} s")
        code = await proc.wait()
    if code != 0:
        tail = "\n".join((stack.base / "seed.log").read_text().splitlines()[-25:])
        raise BenchError(f"seeding failed ({code}):\n{tail}")
    return json.loads(out.read_text())


def ready_after(bot: BotProcess, moment: float) -> float:
    """When the bot logged "ready" after ``moment`` (its start-up is complete)."""
    for line in read_log(bot.log_path):
        if line.logger == "bot.app" and line.message == "ready" and line.at >= moment - 0.01:
            return line.at
    raise BenchError("the bot answers /healthz but never logged 'ready'")


async def wait_until_ready(bot: BotProcess, spawned: float, timeout: float = 120) -> float:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return ready_after(bot, spawned)
        except BenchError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)


async def wait_joined(user: TimedUser, rooms: list[str]) -> None:
    try:
        await user.wait(lambda: user.joined(rooms), JOIN_TIMEOUT)
    except TimeoutError:
        raise BenchError(f"{user.localpart} did not join its rooms: {user.join_failures}") from None


def _delta(after: float | None, before: float | None) -> float | None:
    return None if after is None or before is None else after - before


async def sleep_until(moment: float) -> None:
    await asyncio.sleep(max(0.0, moment - time.time()))


async def read_steps(database_url: str) -> list[dict[str, Any]]:
    engine = create_engine(database_url)
    try:
        async with session_factory(engine)() as session:
            rows = list(await session.scalars(select(EscalationStep)))
    finally:
        await engine.dispose()
    return [
        {
            "id": r.id,
            "case_id": r.case_id,
            "kind": r.kind,
            "action": r.action,
            "seq": r.seq,
            "due": r.due_at.timestamp(),
            "status": r.status,
            "fired": r.fired_at.timestamp() if r.fired_at else None,
            "attempts": r.attempts,
        }
        for r in rows
    ]


async def measure(
    args: argparse.Namespace,
    stack: Stack,
    accounts: dict[str, Account],
    plan: dict[str, Any],
    config: Path,
    database_url: str,
) -> Run:
    synapse, bot = stack.synapse, stack.bot
    assert synapse is not None and bot is not None
    clients = stack.base / "clients"
    worker = TimedUser(synapse.base_url, accounts["worker"], clients / "worker", auto_join=True)
    lead = TimedUser(synapse.base_url, accounts["lead"], clients / "lead", auto_join=True)
    makers = [
        TimedUser(synapse.base_url, accounts[f"dm{k}"], clients / f"dm{k}", auto_join=True)
        for k in range(len(plan["decision_makers"]))
    ]
    users = [worker, lead, *makers]
    tl = Timeline()
    cpu: dict[str, float] = {}
    try:
        await asyncio.gather(*(u.start() for u in users))
        log(f"{len(users)} clients signed in; seeding {len(plan['cases'])} cases")
        seeded = await run_seed(stack, config, plan, bot.env)
        tl.t0 = seeded["t0"]
        tl.end = tl.t0 + args.spread + args.tail
        log(
            f"seeded in {sum(seeded['timings'].values()):.0f} s ({seeded['timings']}); "
            f"{seeded['jobs_stored']} wake-ups in the job store"
        )
        direct = seeded["direct_rooms"]
        await asyncio.gather(
            wait_joined(worker, [seeded["duty_room"], *(c["room_id"] for c in seeded["cases"])]),
            wait_joined(lead, [seeded["duty_room"]]),
            *(wait_joined(m, [direct[m.user_id]]) for m in makers),
        )
        log(f"clients joined their rooms; t0 in {tl.t0 - time.time():.1f} s")

        tl.first_spawn = time.time()
        await asyncio.to_thread(bot.start, 120)
        tl.first_ready = await wait_until_ready(bot, tl.first_spawn)
        log(
            f"bot ready in {tl.first_ready - tl.first_spawn:.1f} s, {tl.t0 - tl.first_ready:.1f} s "
            "before t0"
        )
        gaps = {u.localpart: u.gaps for u in users}  # joining a room's history: expected
        pids = stack.pids()
        before = {"synapse": cpu_seconds(pids.get("synapse")), "driver": cpu_seconds(None)}
        life = "socialjour"
        if args.kill_at is not None:
            await sleep_until(tl.t0 + args.kill_at)
            first_life = cpu_seconds(pids["socialjour"])
            tl.kill = time.time()
            bot.stop(signal.SIGKILL)
            log(f"SIGKILL at t0 + {tl.kill - tl.t0:.1f} s")
            if first_life is not None:
                cpu["socialjour_first_life"] = first_life
            await asyncio.sleep(args.down)
            tl.second_spawn = time.time()
            await asyncio.to_thread(bot.start, 120)
            tl.second_ready = await wait_until_ready(bot, tl.second_spawn)
            log(
                f"restarted: ready at t0 + {tl.second_ready - tl.t0:.1f} s "
                f"({tl.second_ready - tl.second_spawn:.1f} s after the start)"
            )
            pids["socialjour"], life = stack.pids()["socialjour"], "socialjour_second_life"

        # Everything due in the window has had its chance, also after a slow restart:
        # then until nothing due in the window is pending (at most --drain-timeout), and
        # --drain seconds more for the messages of the last claims.
        await sleep_until(max(tl.end, tl.second_ready or 0.0) + args.grace)
        deadline = time.time() + args.drain_timeout
        while time.time() < deadline:
            due = [s for s in await read_steps(database_url) if s["due"] <= tl.end]
            if not any(s["status"] == "pending" for s in due):
                break
            await asyncio.sleep(1)
        tl.drained = time.time()
        await asyncio.sleep(args.drain)
        for key, value in (
            (life, cpu_seconds(pids["socialjour"])),  # the whole life, start-up included
            ("synapse", _delta(cpu_seconds(pids.get("synapse")), before["synapse"])),
            ("driver", _delta(cpu_seconds(None), before["driver"])),
        ):
            if value is not None:
                cpu[key] = value
        tl.stop = time.time()
        await asyncio.to_thread(bot.stop)  # SIGTERM: what it sent so far is in the rows
        steps = await read_steps(database_url)
        await asyncio.sleep(3)  # the last messages on their way to the clients
    finally:
        await asyncio.gather(*(u.close() for u in users), return_exceptions=True)
    case_rooms = {c["room_id"] for c in seeded["cases"]}
    return Run(
        timeline=tl,
        seed=seeded,
        steps=steps,
        arrivals={
            "direct": [a for m in makers for a in m.arrivals if a.room_id == direct[m.user_id]],
            "duty": [a for a in lead.arrivals if a.room_id == seeded["duty_room"]],
            "case": [a for a in worker.arrivals if a.room_id in case_rooms],
        },
        undecryptable={u.localpart: sum(len(v) for v in u.undecrypted.values()) for u in users},
        sync_gaps={
            u.localpart: u.gaps - gaps[u.localpart] for u in users if u.gaps > gaps[u.localpart]
        },
        cpu_s={k: round(v, 2) for k, v in cpu.items()},
        join_failures=[f for u in users for f in u.join_failures],
    )


# -- main --------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.escalation_latency",
        description="How late escalation steps fire for many waiting decisions, across a "
        "SIGKILL and restart of the bot.",
    )
    parser.add_argument("--cases", type=int, default=200, help="open cases (default 200)")
    parser.add_argument(
        "--municipalities",
        type=int,
        default=15,
        help="municipalities, each with its own policy and decision-maker (default 15, at most 15)",
    )
    parser.add_argument(
        "--spread",
        type=float,
        default=60,
        help="cases are sent for signing uniformly over this many seconds after t0 (default 60)",
    )
    parser.add_argument(
        "--tail",
        type=float,
        default=30,
        help="seconds after the spread in which steps still count (default 30)",
    )
    parser.add_argument(
        "--repeat",
        type=lambda s: tuple(int(x) for x in s.split("-")),
        default=(15, 25),
        help="repeat_every of the policies, drawn from this range in seconds (default 15-25)",
    )
    parser.add_argument(
        "--kill-at",
        type=float,
        default=None,
        help="SIGKILL the bot this many seconds after t0 (default: the middle of the window)",
    )
    parser.add_argument("--no-kill", action="store_true", help="no SIGKILL and restart")
    parser.add_argument(
        "--down",
        type=float,
        default=5,
        help="seconds between the SIGKILL and the new start (default 5)",
    )
    parser.add_argument(
        "--grace",
        type=float,
        default=5,
        help="seconds after the window (or the restart's 'ready', if later) before looking "
        "for pending rows (default 5)",
    )
    parser.add_argument(
        "--drain-timeout",
        type=float,
        default=60,
        help="then wait at most this long for every row due in the window to be claimed "
        "(default 60)",
    )
    parser.add_argument(
        "--drain",
        type=float,
        default=10,
        help="then this many seconds for the last messages before the bot is stopped (default 10)",
    )
    parser.add_argument(
        "--bot-log-level",
        choices=("INFO", "DEBUG"),
        default="INFO",
        help="the bot's log level; DEBUG adds a line before every send (default INFO)",
    )
    parser.add_argument(
        "--start-allowance",
        type=float,
        default=20,
        help="seconds planned between the end of seeding and t0, for the bot's start (default 20)",
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=10,
        help="cases opened at once while seeding (default 10)",
    )
    parser.add_argument("--seed", type=int, default=1, help="random seed for policies and offsets")
    parser.add_argument(
        "--out", type=Path, help="the JSON (default bench/results/escalation-<time>.json)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs, database)")
    args = parser.parse_args(argv)
    if args.cases < 1 or not 1 <= args.municipalities <= len(MUNICIPALITIES):
        parser.error("--cases must be positive and --municipalities between 1 and 15")
    if args.no_kill:
        args.kill_at = None
    elif args.kill_at is None:
        args.kill_at = (args.spread + args.tail) / 2
    if args.out is None:
        args.out = RESULTS / f"escalation-{time.strftime('%Y%m%d-%H%M%S')}.json"
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    logging.getLogger("nio").setLevel(logging.CRITICAL)
    interrupt_on_signals()
    warn_if_busy()
    stack = Stack("socialjour-escbench-", keep=args.keep)
    started = time.perf_counter()
    load_before = load_average()
    # The code as it is when the bot starts (others may commit during a run).
    code = versions(*DISTS, "APScheduler")
    try:
        log(f"Synapse in {stack.base}")
        stack.start_synapse()
        names = ["bot", "worker", "lead", *(f"dm{k}" for k in range(args.municipalities))]
        accounts = stack.register(names)
        plan = make_plan(args, accounts)
        folder = stack.bot_folder
        database_url = f"sqlite+aiosqlite:///{folder / 'data' / 'socialjour.db'}"
        bot = stack.make_bot(
            accounts["bot"],
            members=[accounts["worker"].user_id],
            leads=[accounts["lead"].user_id],
            database_url=database_url,
            extra=config_extra(plan, stack.tag, args.bot_log_level),
        )
        config = bot.config_path
        run = run_async(measure(args, stack, accounts, plan, config, database_url))
        result = analyse(run, folder / "bot.log")
        print(report(result, run, args))
        problems = problem_counts(log_problems(folder / "bot.log"))
        total = time.perf_counter() - started
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(
            json.dumps(
                {
                    "what": "how late escalation steps fire (claim and client arrival), "
                    "across a SIGKILL and restart",
                    "machine": {
                        "cpus": os.cpu_count(),
                        "load_average_before": load_before,
                        "load_average_after": load_average(),
                        "temp_dir": str(stack.base.parent),
                        **code,
                    },
                    "settings": {k: v for k, v in vars(args).items() if k != "out"},
                    "policies": plan["policies"],
                    "timeline_from_t0_s": {
                        k: (None if v is None else round(v - run.timeline.t0, 3))
                        for k, v in asdict(run.timeline).items()
                    },
                    "t0_utc": datetime.fromtimestamp(run.timeline.t0, UTC).isoformat(),
                    "seed": {k: v for k, v in run.seed.items() if k != "cases"},
                    "cpu_s": run.cpu_s,
                    "undecryptable": run.undecryptable,
                    "client_sync_gaps": run.sync_gaps,
                    "join_failures": run.join_failures,
                    **result,
                    "bot_log_problems": problems,
                    "total_s": round(total, 1),
                },
                indent=1,
                ensure_ascii=False,
            )
            + "\n"
        )
        if problems:
            print(f"the bot's log: {problems}")
        log(f"wrote {args.out}; total {total:.0f} s")
        return 0
    except KeyboardInterrupt:
        log("interrupted; cleaning up")
        logging.getLogger("asyncio").setLevel(logging.CRITICAL)
        return 130
    except (BenchError, TimeoutError) as exc:
        log(f"failed: {exc}")
        if stack.bot is not None:
            log("Socialjour log tail:\n" + stack.bot.log_tail(30))
        return 1
    finally:
        stack.cleanup()


if __name__ == "__main__":
    sys.exit(main())
