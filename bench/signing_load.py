"""Signing under load: decisions signed at once while dialogues run.

Everything runs on this machine over loopback (``bench.harness.Stack``): one
throw-away Synapse, Socialjour as an operator runs it with one municipality, a
decision-maker, the development seal and the development RFC 3161 TSA (PAdES
B-T, as in production), set up as ``bench.signing_latency`` does it.

Not measured: a worker (anna) submits ``--bursts`` x ``--at-once`` LVU reports
and the decision-maker (dag) identifies on every link over the signing HTTP API
(``bench.signing_latency.prepare_cases``: ``POST /auth`` with the matrix code,
``/auth/verify``, ``GET /document.pdf``); ``--dialogues`` workers
(``bench.dialogue_driver``) open their cases.

Measured: the workers answer their forms in a closed loop all the time (think
time 0..``--think-ms``). After ``--quiet`` seconds, ``--at-once`` decisions are
signed at the same moment (``POST /decision {"action": "sign"}`` on each link,
concurrently), then ``--quiet`` seconds again, and so on ``--bursts`` times. A
burst lasts from the POSTs until anna's client has every signed PDF and every
"signed" message. A dialogue turn that overlaps a burst counts as *during
signing*; one that lies in the quiet time (and not within ``--settle`` seconds
after a burst) as *without*. Per decision: from just before its POST to the PDF
event on the homeserver (``origin_server_ts``), at anna's client (decrypted) and
downloaded and decrypted there.

Goals: dialogue p99 during signing within 1.2x of without; sign -> PDF in the
room p99 under 1 s.

    python -m bench.signing_load [--dialogues 20] [--bursts 4] [--quick] [--out r.json]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import logging
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from nio import DownloadResponse, RoomEncryptedFile
from nio.crypto.attachments import decrypt_attachment

from bench.dialogue_driver import Sample, Worker, close_workers, start_workers
from bench.harness import (
    DISTS,
    RESULTS,
    Account,
    BenchError,
    Stack,
    add_cpu,
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
    summary,
    verdict,
    versions,
    warn_if_busy,
    write_json,
)
from bench.signing_latency import STEP_TIMEOUT, Case, StampedUser, make_signing_bot, prepare_cases

GOAL_P99_RATIO = 1.2
GOAL_PDF_P99_MS = 1000.0
SIGNED = "är undertecknat"


@dataclass
class Signed:
    """One decision of a burst; every time in ms after its POST was started."""

    case: str
    burst: int
    api_ms: float
    #: The PDF's m.file event: on the homeserver, decrypted by anna's client, then
    #: downloaded and decrypted there.
    server_ms: float
    event_ms: float
    pdf_ms: float
    #: anna's client decrypted the bot's "signed" message (the bot's work is done).
    text_ms: float


@dataclass
class Burst:
    index: int
    began: float  # time.perf_counter()
    ended: float
    decisions: list[Signed]
    tsa_requests: int
    cpu_s: dict[str, float]

    @property
    def seconds(self) -> float:
        return self.ended - self.began


@dataclass
class Results:
    bursts: list[Burst] = field(default_factory=list)
    during: list[Sample] = field(default_factory=list)
    without: list[Sample] = field(default_factory=list)
    #: Turns near a burst (within --settle after it) or before the first quiet time.
    left_out: int = 0
    quiet_s: float = 0.0
    quiet_cpu_s: dict[str, float] = field(default_factory=dict)
    setup_s: float = 0.0
    workers: list[Worker] = field(default_factory=list)

    @property
    def decisions(self) -> list[Signed]:
        return [d for b in self.bursts for d in b.decisions]

    @property
    def signing_s(self) -> float:
        return sum(b.seconds for b in self.bursts)

    @property
    def signing_cpu_s(self) -> dict[str, float]:
        total: dict[str, float] = {}
        for b in self.bursts:
            add_cpu(total, b.cpu_s)
        return total

    def ratio(self, q: float) -> float:
        return ratio(
            percentile([s.ms for s in self.during], q), percentile([s.ms for s in self.without], q)
        )


# -- one decision, one burst ---------------------------------------------------------------------


async def sign_one(case: Case, burst: int, anna: StampedUser) -> Signed:
    """POST sign; wait until anna's client has the signed PDF (downloaded, decrypted,
    the bot's document) and the "signed" message in the case room."""
    api = case.api
    assert api is not None
    mark_files, mark_texts = len(anna.files), len(anna.received)

    def signed_file() -> RoomEncryptedFile | None:
        return next((e for r, e in anna.files[mark_files:] if r == case.room), None)

    wall0, t0 = time.time(), time.perf_counter()
    posting = asyncio.create_task(api.call("POST", "/decision", {"action": "sign"}))
    api_done: list[float] = []
    posting.add_done_callback(lambda _: api_done.append(time.perf_counter()))
    try:
        event: RoomEncryptedFile = await anna.wait(signed_file, STEP_TIMEOUT)
        response = await anna.client.download(event.url)
        if not isinstance(response, DownloadResponse):
            raise BenchError(f"{case.number}: download failed: {response}")
        pdf = decrypt_attachment(response.body, event.key["k"], event.hashes["sha256"], event.iv)
        pdf_at = time.perf_counter()
        status, result = await asyncio.wait_for(posting, STEP_TIMEOUT)
        text = await anna.wait_message(
            case.room, contains=SIGNED, after=mark_texts, timeout=STEP_TIMEOUT
        )
    except TimeoutError as exc:
        raise BenchError(f"{case.number}: {exc}") from None
    finally:
        if not posting.done():
            posting.cancel()
    if status != 200 or result.get("status") != "signed":
        raise BenchError(f"{case.number}: POST /decision -> {status} {result}")
    if hashlib.sha256(pdf).hexdigest() != result["document_sha256"]:
        raise BenchError(f"{case.number}: the worker's PDF is not the one the bot signed")

    def ms(t: float) -> float:
        return round((t - t0) * 1000, 1)

    return Signed(
        case=case.number,
        burst=burst,
        api_ms=ms(api_done[0]),
        server_ms=round((event.server_timestamp / 1000 - wall0) * 1000, 1),
        event_ms=ms(anna.file_seen.get(event.event_id, pdf_at)),
        pdf_ms=ms(pdf_at),
        text_ms=ms(anna.text_seen.get(text.event.event_id, time.perf_counter())),
    )


async def burst(index: int, cases: list[Case], anna: StampedUser, stack: Stack) -> Burst:
    tsa_before = stack.tsa.requests if stack.tsa else 0
    meter = stack.meter("synapse", "socialjour")
    began = time.perf_counter()
    decisions = await asyncio.gather(*(sign_one(c, index, anna) for c in cases))
    ended = time.perf_counter()
    return Burst(
        index=index,
        began=began,
        ended=ended,
        decisions=list(decisions),
        tsa_requests=(stack.tsa.requests if stack.tsa else 0) - tsa_before,
        cpu_s=meter.stop(),
    )


# -- the run -------------------------------------------------------------------------------------


def classify(results: Results, samples: list[Sample], start: float, settle: float) -> None:
    """Sort the turns into during a burst, without (quiet time), or left out."""
    for s in samples:
        if any(s.began < b.ended and s.ended > b.began for b in results.bursts):
            results.during.append(s)
        elif s.began < start or any(
            s.began < b.ended + settle and s.ended > b.ended for b in results.bursts
        ):
            results.left_out += 1
        else:
            results.without.append(s)


async def measure(args: argparse.Namespace, stack: Stack, accounts: dict[str, Account]) -> Results:
    synapse, bot = stack.synapse, stack.bot
    assert synapse is not None and bot is not None
    results = Results()
    began = time.perf_counter()

    def user(key: str) -> StampedUser:
        a = accounts[key]
        return StampedUser(synapse.base_url, a.user_id, a.password, stack.client_store(a))

    anna, dag = user("anna"), user("dag")
    workers: list[Worker] = []
    stop = asyncio.Event()
    running: list[asyncio.Task[list[Sample]]] = []
    timeout = aiohttp.ClientTimeout(total=STEP_TIMEOUT)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as http:
            await asyncio.gather(anna.start(), dag.start())
            count = args.bursts * args.at_once
            log(f"anna submits {count} reports; dag identifies on each link")
            cases, _ = await prepare_cases(
                count,
                args.parallel,
                anna,
                dag,
                stack.duty_alias,
                http,
                f"http://127.0.0.1:{bot.web_port}",
            )
            await start_workers(
                stack,
                [accounts[f"w{i}"] for i in range(args.dialogues)],
                duty_room=stack.resolve_alias(stack.duty_alias),
                bot_user=accounts["bot"].user_id,
                echo_user=None,
                think_ms=args.think_ms,
                seed=args.seed,
                cases_each=args.cases_each,
                into=workers,
            )
            results.workers = workers
            results.setup_s = time.perf_counter() - began
            log(f"set up in {results.setup_s:.0f} s; {args.dialogues} dialogues start")

            running = [asyncio.create_task(w.socialjour(stop=stop)) for w in workers]
            await asyncio.sleep(args.warmup)  # every worker's first (warm-up) turn
            start = time.perf_counter()
            quiet = stack.meter("synapse", "socialjour")
            for k in range(args.bursts):
                quiet.start()
                await watch(running, args.quiet)
                add_cpu(results.quiet_cpu_s, quiet.stop())
                results.quiet_s += args.quiet
                chosen = cases[k * args.at_once : (k + 1) * args.at_once]
                log(f"burst {k + 1}/{args.bursts}: signing {len(chosen)} decisions at once")
                done = await burst(k, chosen, anna, stack)
                results.bursts.append(done)
                log(
                    f"burst {k + 1}: {done.seconds:.2f} s; PDF at the worker's client "
                    f"{', '.join(fmt_ms(d.event_ms) for d in done.decisions)} ms"
                )
                await watch(running, args.settle)
            quiet.start()
            await watch(running, args.quiet)  # quiet time after the last burst as well
            add_cpu(results.quiet_cpu_s, quiet.stop())
            results.quiet_s += args.quiet
            stop.set()
            samples = [s for turns in await asyncio.gather(*running) for s in turns]
            classify(results, samples, start, args.settle)
    finally:
        stop.set()
        for task in running:
            if not task.done():
                task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
        await close_workers(workers)
        await asyncio.gather(anna.close(), dag.close(), return_exceptions=True)
    return results


async def watch(running: list[asyncio.Task[list[Sample]]], seconds: float) -> None:
    """Sleep while the dialogues run; a dialogue that failed ends the run at once."""
    done, _ = await asyncio.wait(running, timeout=seconds, return_when=asyncio.FIRST_EXCEPTION)
    for task in done:
        failure = task.exception()
        if failure is not None:
            raise failure
    if done:
        raise BenchError("a dialogue stopped before it was told to")


# -- output --------------------------------------------------------------------------------------


def row(name: str, values: list[float]) -> str:
    return (
        f"  {name:44} {len(values):>5} {fmt_ms(percentile(values, 50)):>7} "
        f"{fmt_ms(percentile(values, 90)):>7} {fmt_ms(percentile(values, 99)):>7} "
        f"{fmt_ms(max(values) if values else math.nan):>7}"
    )


def goals(results: Results) -> dict[str, Any]:
    r99 = results.ratio(99)
    pdf99 = percentile([d.event_ms for d in results.decisions], 99)
    return {
        "dialogue_p99_ratio": {
            "at_most": GOAL_P99_RATIO,
            "value": None if math.isnan(r99) else round(r99, 3),
            "met": None if math.isnan(r99) else r99 <= GOAL_P99_RATIO,
        },
        "pdf_in_room_p99_ms": {
            "under": GOAL_PDF_P99_MS,
            "value": None if math.isnan(pdf99) else round(pdf99, 1),
            "met": None if math.isnan(pdf99) else pdf99 < GOAL_PDF_P99_MS,
            "measured_to": "the m.file event decrypted by the worker's client",
        },
    }


def cpu_per_s(cpu: dict[str, float], seconds: float) -> str:
    if not seconds:
        return "-"
    return ", ".join(f"{k} {v / seconds:.2f}" for k, v in sorted(cpu.items()))


def report(results: Results, args: argparse.Namespace, info: dict[str, Any]) -> str:
    ds = results.decisions
    g = goals(results)
    r99, pdf = g["dialogue_p99_ratio"], g["pdf_in_room_p99_ms"]
    r99_value = "-" if r99["value"] is None else f"{results.ratio(99):.2f}"
    burst_s = [b.seconds * 1000 for b in results.bursts]
    head = f"  {'':44} {'n':>5} {'p50':>7} {'p90':>7} {'p99':>7} {'max':>7}  (ms)"
    return "\n".join(
        [
            "",
            f"Signing under load: {args.dialogues} dialogues (think 0-{args.think_ms:g} ms), "
            f"{len(results.bursts)} bursts of {args.at_once} decisions signed at once "
            f"(PAdES B-T, dev TSA), {args.quiet:g} s quiet around each",
            "Dialogue turn (answer -> next question at the worker's client):",
            head,
            row("without signing", [s.ms for s in results.without]),
            row("during signing", [s.ms for s in results.during]),
            f"  ({results.left_out} turns within {args.settle:g} s after a burst or before "
            "the first quiet time left out)",
            f"  ratio during/without: p50 {results.ratio(50):.2f}, p99 {results.ratio(99):.2f}",
            "Sign (POST /decision) -> signed PDF, per decision:",
            head,
            row("API answer", [d.api_ms for d in ds]),
            row("PDF event on the homeserver (origin_server_ts)", [d.server_ms for d in ds]),
            row("PDF event decrypted at the worker's client", [d.event_ms for d in ds]),
            row("PDF downloaded + decrypted there", [d.pdf_ms for d in ds]),
            row("'signed' message at the worker's client", [d.text_ms for d in ds]),
            row("whole burst (first POST -> last message)", burst_s),
            "CPU seconds per second, quiet: "
            f"{cpu_per_s(results.quiet_cpu_s, results.quiet_s)}; during signing: "
            f"{cpu_per_s(results.signing_cpu_s, results.signing_s)}",
            f"Machine: {machine_line(info)}",
            "",
            f"Goal dialogue p99 during signing <= {GOAL_P99_RATIO}x without: "
            f"{r99_value}, {verdict(r99['met'])}",
            f"Goal sign -> PDF in the room p99 < {GOAL_PDF_P99_MS:.0f} ms: "
            f"{fmt_ms(pdf['value'])} ms, {verdict(pdf['met'])}",
        ]
    )


def as_json(
    results: Results, args: argparse.Namespace, info: dict[str, Any], total_s: float
) -> dict[str, Any]:
    ds = results.decisions
    ws = results.workers
    return {
        "what": "dialogue turns (ms) while decisions are signed at once, against quiet time; "
        "ms from POST /decision to the signed PDF in the case room",
        "machine": info,
        "settings": {
            k: v for k, v in vars(args).items() if k not in ("out", "keep", "timeout", "quick")
        }
        | {"quick": args.quick, "signature": "PAdES B-T (dev TSA on loopback)"},
        "dialogue_without": summary([s.ms for s in results.without]),
        "dialogue_during": summary([s.ms for s in results.during]),
        "dialogue_left_out": results.left_out,
        "dialogue_ratio_p50": round(results.ratio(50), 3),
        "dialogue_ratio_p99": round(results.ratio(99), 3),
        "api_answer": summary([d.api_ms for d in ds]),
        "pdf_on_server": summary([d.server_ms for d in ds]),
        "pdf_event_at_client": summary([d.event_ms for d in ds]),
        "pdf_downloaded": summary([d.pdf_ms for d in ds]),
        "signed_text_at_client": summary([d.text_ms for d in ds]),
        "goals": goals(results),
        "bursts": [
            {
                "index": b.index,
                "seconds": round(b.seconds, 3),
                "tsa_requests": b.tsa_requests,
                "cpu_s": {k: round(v, 2) for k, v in b.cpu_s.items()},
                "decisions": [asdict(d) for d in b.decisions],
            }
            for b in results.bursts
        ],
        "quiet_s": results.quiet_s,
        "quiet_cpu_s": {k: round(v, 2) for k, v in results.quiet_cpu_s.items()},
        "cases_opened": sum(w.cases_opened for w in ws),
        "cases_opened_while_measuring": sum(w.cases_opened_measuring for w in ws),
        "setup_retries": [r for w in ws for r in w.setup_retries],
        "unexpected_messages": [m for w in ws for m in w.unexpected][:20],
        "raw_without_ms": [round(s.ms, 2) for s in results.without],
        "raw_during_ms": [round(s.ms, 2) for s in results.during],
        "setup_s": round(results.setup_s, 1),
        "total_s": round(total_s, 1),
    }


# -- main ----------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.signing_load",
        description="Dialogue latency while decisions are signed at once, and the time from "
        "'sign' to the signed PDF in the case room.",
    )
    parser.add_argument("--dialogues", type=int, default=20, help="dialogues (default 20)")
    parser.add_argument(
        "--at-once", type=int, default=5, help="decisions signed at once (default 5)"
    )
    parser.add_argument(
        "--bursts", type=int, default=None, help="bursts of signing (default 4; --quick: 1)"
    )
    parser.add_argument(
        "--quiet",
        type=float,
        default=None,
        help="seconds of dialogues without signing before each burst and after the last "
        "(default 12; --quick: 8)",
    )
    parser.add_argument(
        "--settle",
        type=float,
        default=2.0,
        help="turns within this many seconds after a burst count neither way (default 2)",
    )
    parser.add_argument(
        "--warmup",
        type=float,
        default=3.0,
        help="seconds of dialogue before the first quiet time counts (default 3)",
    )
    parser.add_argument(
        "--think-ms",
        type=float,
        default=1000.0,
        help="each worker waits uniformly 0..this many ms before every answer (default 1000)",
    )
    parser.add_argument(
        "--cases-each",
        type=int,
        default=None,
        help="cases each worker opens before the measurement (default 4; --quick: 2); "
        "a worker who runs out opens another while measuring (counted in the JSON)",
    )
    parser.add_argument(
        "--parallel",
        type=int,
        default=5,
        help="reports anna fills in at once while preparing (not measured; default 5)",
    )
    parser.add_argument("--quick", action="store_true", help="a short run (about 2-3 minutes)")
    parser.add_argument(
        "--timeout",
        type=float,
        default=1800,
        help="give up (and clean up) after this many seconds (default 1800)",
    )
    parser.add_argument("--seed", type=int, default=1, help="random seed for think times")
    parser.add_argument(
        "--out", type=Path, help="the JSON (default bench/results/signing-load-<time>.json)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs, databases)")
    args = parser.parse_args(argv)
    args.bursts = args.bursts or (1 if args.quick else 4)
    args.quiet = args.quiet if args.quiet is not None else (8.0 if args.quick else 12.0)
    args.cases_each = args.cases_each or (2 if args.quick else 4)
    if min(args.dialogues, args.at_once, args.bursts, args.parallel) < 1:
        parser.error("--dialogues, --at-once, --bursts and --parallel must be positive")
    if args.out is None:
        args.out = RESULTS / f"signing-load-{time.strftime('%Y%m%d-%H%M%S')}.json"
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    logging.getLogger("nio").setLevel(logging.CRITICAL)
    interrupt_on_signals()
    warn_if_busy()
    stack = Stack("socialjour-signload-", keep=args.keep)
    started = time.perf_counter()
    load_before = load_average()
    code = versions(*DISTS, "aiohttp")
    try:
        log(f"Synapse in {stack.base}")
        stack.start_synapse()
        workers = [f"w{i}" for i in range(args.dialogues)]
        accounts = stack.register(["bot", "anna", "dag", *workers])
        make_signing_bot(
            stack,
            accounts,
            members=[accounts[k].user_id for k in ("anna", *workers)],
            tsa=True,
        )
        log("starting Socialjour")
        stack.start_bot(timeout=240)
        results = run_async(measure(args, stack, accounts), timeout=args.timeout)
        info = machine(load_before, code)
        print(report(results, args, info))
        assert stack.bot is not None
        problems = log_problems(stack.bot.log_path)
        if problems:
            print(f"Socialjour logged {len(problems)} warnings/errors, e.g. {problems[0]}")
        total = time.perf_counter() - started
        write_json(
            args.out,
            as_json(results, args, info, total) | {"socialjour_log_problems": problems[:50]},
        )
        log(f"total {total:.0f} s")
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
