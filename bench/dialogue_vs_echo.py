"""Dialogue turn: Socialjour against a minimal E2EE echo bot, at N concurrent dialogues.

Everything runs on this machine over loopback (``bench.harness.Stack``): one
throw-away Synapse, Socialjour as an operator runs it (``python -m bot run
--config``, one municipality, Swedish) and ``bench.echo_bot`` as a separate
process on the same homeserver, as the baseline. For every level N, N fresh
workers (``bench.dialogue_driver``: cross-signed nio clients) each answer the
LVU form in case rooms of their own, opened before the measurement, and talk to
the echo bot in a room of their own. All N dialogues run at once in a closed
loop (a random think time of 0..``--think-ms`` before each message); the rounds
alternate ABBA (echo, Socialjour, Socialjour, echo) so that drift during a level
weighs on both bots alike. One sample: from just before the worker's client
sends its answer until it has decrypted the bot's next question (or the echo).

Reported per level: p50 and p99 for both bots and their ratios, and each
bot's CPU time per reply (``/proc``, over its own rounds; warm-up replies
included). Goals: p50 ratio <= 1.1 at N=1, p99 ratio <= 1.2 at N=50, Socialjour's
CPU per reply <= 2x the echo bot's.

    python -m bench.dialogue_vs_echo [--n 1,10,50] [--quick] [--out r.json]

See bench/README.md for what the numbers mean.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.dialogue_driver import (
    ANSWERS_PER_CASE,
    FORM,
    MUNICIPALITY,
    Phase,
    Sample,
    Worker,
    close_workers,
    run_phase,
    start_workers,
)
from bench.harness import (
    DISTS,
    RESULTS,
    Account,
    BenchError,
    Stack,
    fmt_ms,
    interrupt_on_signals,
    load_average,
    log,
    log_problems,
    machine,
    machine_line,
    percentile,
    ratio,
    run_async,
    verdict,
    versions,
    warn_if_busy,
    write_json,
)

#: The goals (issue 8).
GOAL_P50_RATIO = (1, 1.1)  # (N, at most)
GOAL_P99_RATIO = (50, 1.2)
GOAL_CPU_RATIO = 2.0


@dataclass
class Level:
    dialogues: int
    answers_per_dialogue: int
    socialjour: Phase
    echo: Phase
    setup_s: float
    workers: list[Worker]

    def ratio(self, q: float) -> float:
        return ratio(percentile(self.socialjour.ms, q), percentile(self.echo.ms, q))

    def bot_cpu_ms(self) -> tuple[float | None, float | None]:
        """Each bot's own CPU ms per reply (Socialjour's in its rounds, echo's in its)."""
        sj = self.socialjour.cpu_ms_per_reply().get("socialjour")
        ec = self.echo.cpu_ms_per_reply().get("echo_bot")
        return sj, ec

    def cpu_ratio(self) -> float:
        sj, ec = self.bot_cpu_ms()
        return math.nan if sj is None or ec is None else ratio(sj, ec)

    def as_json(self) -> dict[str, Any]:
        sj, ec = self.bot_cpu_ms()
        return {
            "dialogues": self.dialogues,
            "answers_per_dialogue": self.answers_per_dialogue,
            "setup_s": round(self.setup_s, 1),
            "cases_opened": sum(w.cases_opened for w in self.workers),
            "cases_opened_while_measuring": sum(w.cases_opened_measuring for w in self.workers),
            "setup_retries": [r for w in self.workers for r in w.setup_retries],
            "ratio_p50": round(self.ratio(50), 3),
            "ratio_p99": round(self.ratio(99), 3),
            "bot_cpu_ms_per_reply": {"socialjour": sj, "echo_bot": ec},
            "bot_cpu_ratio": round(self.cpu_ratio(), 2),
            "socialjour": {
                **self.socialjour.summary(),
                "raw_ms": [round(s.ms, 3) for s in self.socialjour.samples],
                "question": [s.step for s in self.socialjour.samples],
            },
            "echo": {
                **self.echo.summary(),
                "raw_ms": [round(s.ms, 3) for s in self.echo.samples],
            },
            "unexpected_messages": [m for w in self.workers for m in w.unexpected][:20],
        }


def rounds(order: str, answers: int) -> list[tuple[str, int]]:
    """The measuring rounds of one level: (bot, messages per dialogue).

    ``abba`` measures half of the messages echo, Socialjour, then the other half
    Socialjour, echo, so that a drift during the level (the homeserver's database
    grows, other work on the machine comes and goes) weighs on both alike.
    """
    first, second = (answers + 1) // 2, answers // 2
    plan = {
        "abba": [("echo", first), ("socialjour", first), ("socialjour", second), ("echo", second)],
        "echo-first": [("echo", answers), ("socialjour", answers)],
        "socialjour-first": [("socialjour", answers), ("echo", answers)],
    }[order]
    return [(name, count) for name, count in plan if count > 0]


def turns(bot: str, count: int) -> Callable[[Worker], Awaitable[list[Sample]]]:
    """What each worker does in a round: ``count`` measured turns with ``bot``."""

    def step(worker: Worker) -> Awaitable[list[Sample]]:
        return worker.echo(count) if bot == "echo" else worker.socialjour(count)

    return step


async def run_level(
    n: int,
    accounts: list[Account],
    *,
    stack: Stack,
    duty_room: str,
    bot_user: str,
    echo_user: str,
    args: argparse.Namespace,
) -> Level:
    answers = max(args.answers, math.ceil(args.min_samples / n))
    # Enough cases for every measured answer (each case: one warm-up, then the rest).
    cases_each = math.ceil(answers / (ANSWERS_PER_CASE - 1))
    began = time.perf_counter()
    workers: list[Worker] = []
    try:
        await start_workers(
            stack,
            accounts,
            duty_room=duty_room,
            bot_user=bot_user,
            echo_user=echo_user,
            think_ms=args.think_ms,
            seed=args.seed + 1000 * n,
            cases_each=cases_each,
            into=workers,
            sync_timeout_ms=args.worker_sync_timeout,
        )
        setup_s = time.perf_counter() - began
        log(f"N={n}: set up in {setup_s:.1f} s")
        phases = {"echo": Phase("echo"), "socialjour": Phase("socialjour")}
        for name, count in rounds(args.order, answers):
            log(f"N={n}: {name}, {count} messages per dialogue")
            phases[name].add(await run_phase(name, workers, turns(name, count), stack))
    finally:
        await close_workers(workers)
    return Level(n, answers, phases["socialjour"], phases["echo"], setup_s, workers)


async def measure(
    args: argparse.Namespace, stack: Stack, accounts: dict[str, Account]
) -> list[Level]:
    # The bot created the duty room at start-up and invited every worker.
    duty_room = stack.resolve_alias(stack.duty_alias)
    levels = []
    for n in args.n:
        workers = [accounts[f"n{n}w{i}"] for i in range(n)]
        level = await run_level(
            n,
            workers,
            stack=stack,
            duty_room=duty_room,
            bot_user=accounts["bot"].user_id,
            echo_user=accounts["echo"].user_id,
            args=args,
        )
        levels.append(level)
        log(f"N={n}: done")
        print("\n".join([HEADER, level_row(level)]), file=sys.stderr, flush=True)
    return levels


# -- output --------------------------------------------------------------------------------------

HEADER = (
    f"{'N':>3} {'samples':>9}  {'Socialjour p50':>14} {'p99':>6}  {'echo p50':>8} {'p99':>6}  "
    f"{'ratio p50':>9} {'p99':>5}  {'bot CPU ms/reply sj/echo':>24} {'ratio':>5}  "
    f"{'Synapse ms/reply sj/echo':>24}  {'clients sj/echo':>15}"
)


def _pair(a: float | None, b: float | None) -> str:
    return f"{'-' if a is None else f'{a:.1f}'}/{'-' if b is None else f'{b:.1f}'}"


def level_row(level: Level) -> str:
    sj, ec = level.socialjour, level.echo
    sj_cpu, ec_cpu = sj.cpu_ms_per_reply(), ec.cpu_ms_per_reply()
    return (
        f"{level.dialogues:>3} {f'{len(sj.samples)}/{len(ec.samples)}':>9}  "
        f"{fmt_ms(percentile(sj.ms, 50)):>11} ms {fmt_ms(percentile(sj.ms, 99)):>6}  "
        f"{fmt_ms(percentile(ec.ms, 50)):>5} ms {fmt_ms(percentile(ec.ms, 99)):>6}  "
        f"{level.ratio(50):>9.2f} {level.ratio(99):>5.2f}  "
        f"{_pair(*level.bot_cpu_ms()):>24} {level.cpu_ratio():>5.1f}  "
        f"{_pair(sj_cpu.get('synapse'), ec_cpu.get('synapse')):>24}  "
        f"{_pair(sj_cpu.get('driver'), ec_cpu.get('driver')):>15}"
    )


def goals(levels: list[Level]) -> dict[str, Any]:
    by_n = {lv.dialogues: lv for lv in levels}
    found: dict[str, Any] = {}
    for key, (n, limit), q in (
        ("p50_ratio", GOAL_P50_RATIO, 50),
        ("p99_ratio", GOAL_P99_RATIO, 99),
    ):
        level = by_n.get(n)
        value = level.ratio(q) if level else math.nan
        found[key] = {
            "at_n": n,
            "at_most": limit,
            "value": None if math.isnan(value) else round(value, 3),
            "met": None if math.isnan(value) else value <= limit,
        }
    cpu = {lv.dialogues: lv.cpu_ratio() for lv in levels}
    measured = [v for v in cpu.values() if not math.isnan(v)]
    found["bot_cpu_ratio"] = {
        "at_most": GOAL_CPU_RATIO,
        "by_n": {n: None if math.isnan(v) else round(v, 2) for n, v in cpu.items()},
        "met": all(v <= GOAL_CPU_RATIO for v in measured) if measured else None,
    }
    return found


def report(levels: list[Level], args: argparse.Namespace, info: dict[str, Any]) -> str:
    g = goals(levels)
    p50, p99, cpu = g["p50_ratio"], g["p99_ratio"], g["bot_cpu_ratio"]

    def value(x: float | None) -> str:
        return "-" if x is None else f"{x:.2f}"

    by_n = ", ".join(f"N={n} {value(v)}" for n, v in cpu["by_n"].items())
    return "\n".join(
        [
            "",
            "Dialogue turn (worker's encrypted answer -> decrypted next question / echo), "
            f"think time 0-{args.think_ms:g} ms, order {args.order}:",
            HEADER,
            *(level_row(lv) for lv in levels),
            "CPU per reply counts every reply of the bot's rounds, warm-ups included; "
            "'clients' is this process (all workers).",
            f"Machine: {machine_line(info)}",
            "",
            f"Goal p50 ratio <= {p50['at_most']} at N={p50['at_n']}: "
            f"{value(p50['value'])}, {verdict(p50['met'])}",
            f"Goal p99 ratio <= {p99['at_most']} at N={p99['at_n']}: "
            f"{value(p99['value'])}, {verdict(p99['met'])}",
            f"Goal Socialjour CPU per reply <= {GOAL_CPU_RATIO:g}x echo: {by_n}, "
            f"{verdict(cpu['met'])}",
        ]
    )


# -- main ----------------------------------------------------------------------------------------


def _levels(text: str) -> list[int]:
    try:
        levels = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of numbers: {text!r}") from None
    if not levels or min(levels) < 1:
        raise argparse.ArgumentTypeError("levels must be positive")
    return list(dict.fromkeys(levels))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.dialogue_vs_echo",
        description="Socialjour's answer-to-next-question latency and CPU per reply against "
        "a minimal E2EE echo bot, at N concurrent dialogues.",
    )
    parser.add_argument(
        "--n",
        "--dialogues",
        dest="n",
        type=_levels,
        default=None,
        help="concurrency levels, comma-separated (default 1,10,50; --quick: 1,10)",
    )
    parser.add_argument(
        "--answers",
        type=int,
        default=None,
        help="measured answers per dialogue and bot (default 10; --quick: 4)",
    )
    parser.add_argument(
        "--min-samples",
        type=int,
        default=None,
        help="at least this many samples per level and bot: small levels answer more "
        "(default 40, so N=1 answers 40 questions over 3 cases; --quick: 12)",
    )
    parser.add_argument("--quick", action="store_true", help="a short run (about 2 minutes)")
    parser.add_argument(
        "--think-ms",
        type=float,
        default=100.0,
        help="each worker waits uniformly 0..this many ms before every message (default 100)",
    )
    parser.add_argument(
        "--worker-sync-timeout",
        type=int,
        default=30_000,
        help="the workers' sync long-poll in ms; 0: 1000, as tests.matrix_helpers' own loop "
        "(default 30000)",
    )
    parser.add_argument(
        "--order",
        choices=("abba", "echo-first", "socialjour-first"),
        default="abba",
        help="abba (default): half the messages echo then Socialjour, the other half "
        "Socialjour then echo, so that drift during a level weighs on both alike",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=1800,
        help="give up (and clean up) after this many seconds of measuring (default 1800)",
    )
    parser.add_argument("--seed", type=int, default=1, help="random seed for think times")
    parser.add_argument(
        "--out", type=Path, help="the JSON (default bench/results/dialogue-vs-echo-<time>.json)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs, databases)")
    args = parser.parse_args(argv)
    quick = args.quick
    args.n = args.n or ([1, 10] if quick else [1, 10, 50])
    args.answers = args.answers or (4 if quick else 10)
    args.min_samples = args.min_samples if args.min_samples is not None else (12 if quick else 40)
    args.worker_sync_timeout = args.worker_sync_timeout or 1000
    if args.answers < 1:
        parser.error("--answers must be positive")
    if args.out is None:
        args.out = RESULTS / f"dialogue-vs-echo-{time.strftime('%Y%m%d-%H%M%S')}.json"
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # The workers see the duty room's earlier messages, sent before their devices existed;
    # nio's complaints about those (and about Olm sessions it then sets up) are expected.
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    logging.getLogger("nio").setLevel(logging.CRITICAL)
    interrupt_on_signals()
    warn_if_busy()
    stack = Stack("socialjour-dvse-", keep=args.keep)
    started = time.perf_counter()
    load_before = load_average()
    code = versions(*DISTS)  # the code as it is when the bot starts
    try:
        log(f"Synapse in {stack.base}")
        stack.start_synapse()
        names = ["bot", "echo", *(f"n{n}w{i}" for n in args.n for i in range(n))]
        log(f"registering {len(names)} users")
        accounts = stack.register(names)
        everyone = [accounts[k].user_id for k in names[2:]]
        stack.make_bot(
            accounts["bot"],
            members=everyone,
            leads=everyone[:1],
            extra=MUNICIPALITY.format(tag=stack.tag),
        )
        log("starting the echo bot and Socialjour")
        stack.start_echo_bot(accounts["echo"])
        stack.start_bot(timeout=240)  # it invites every worker to the duty room
        levels = run_async(measure(args, stack, accounts), timeout=args.timeout)
        info = machine(load_before, code)
        print(report(levels, args, info))
        assert stack.bot is not None
        problems = log_problems(stack.bot.log_path)
        if problems:
            print(f"Socialjour logged {len(problems)} warnings/errors, e.g. {problems[0]}")
        write_json(
            args.out,
            {
                "what": "ms from a worker's send to its client having decrypted the reply; "
                "CPU ms per reply of each bot",
                "machine": info,
                "settings": {
                    "n": args.n,
                    "answers": args.answers,
                    "min_samples": args.min_samples,
                    "think_ms_max": args.think_ms,
                    "worker_sync_timeout_ms": args.worker_sync_timeout,
                    "form": FORM,
                    "order": args.order,
                    "quick": args.quick,
                    "echo_bot": "separate process (python -m bench.echo_bot)",
                },
                "levels": [lv.as_json() for lv in levels],
                "goals": goals(levels),
                "socialjour_log_problems": problems[:50],
                "total_s": round(time.perf_counter() - started, 1),
            },
        )
        log(f"total {time.perf_counter() - started:.0f} s")
        return 0
    except KeyboardInterrupt:
        log("interrupted; cleaning up")
        logging.getLogger("asyncio").setLevel(logging.CRITICAL)
        return 130
    except (BenchError, TimeoutError) as exc:
        log(f"failed: {exc}")
        stack.dump_bot_tasks()
        if stack.bot is not None:
            log("Socialjour log tail:\n" + stack.bot.log_tail(40))
        return 1
    finally:
        stack.cleanup()


if __name__ == "__main__":
    sys.exit(main())
