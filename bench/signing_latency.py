"""Signing latency: the decision-maker taps "sign" -> the worker's client has the signed PDF.

Everything runs on this machine over loopback: one throw-away Synapse
(``bot.synapse_local.LocalSynapse``), Socialjour as an operator runs it
(``python -m bot run --config``) with one municipality, one decision-maker and
a development seal (``signing.devpki``), and, by default, the development
RFC 3161 TSA (``signing.devtsa``) served by this process on a thread and loop
of its own, so every signature is PAdES B-T as in production.

One worker and one decision-maker are real E2EE nio clients (the test suite's
``MatrixUser``). The worker drives ``--decisions`` LVU 6 § reports through the
form and submits them; the decision-maker gets a link for each in a direct
room and identifies on every link with a one-time code over the signing API.
None of that is measured. Then, one decision at a time:

* t0 is taken just before ``POST /decision {"action": "sign"}``;
* the API answer time is t0 -> the HTTP response (the bot answers after it has
  sealed the PDF, stored it and posted it and the "signed" message);
* t1 is the moment the worker's client has downloaded *and* decrypted the
  signed PDF (its ``m.file`` event is watched in the client's sync; the
  download and decryption are timed inside). t1 - t0 is the end-to-end sample.

Beside that, pyHanko alone: ``signing.seal.sign_decision`` on the same
rendered decision PDF in this process, with the same seal, trust roots and TSA
setting as the bot, once after every decision (so that both see the same
background load). The bot's log adds when it had sealed and stored each
decision (and, with ``--bot-log-level DEBUG``, when it sent the file and the
text), so the end-to-end time can be split.

    python -m bench.signing_latency [--decisions 20] [--tsa/--no-tsa] [--out r.json]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import logging
import math
import os
import re
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
from nio import (
    DownloadResponse,
    MatrixRoom,
    RoomEncryptedFile,
    RoomMessageNotice,
    RoomMessageText,
)
from nio.crypto.attachments import decrypt_attachment

from bench.harness import (
    DISTS,
    RESULTS,
    Account,
    BenchError,
    LogFollower,
    LogLine,
    SigningApi,
    Stack,
    TsaServer,
    add_cpu,
    cpus,
    interrupt_on_signals,
    load_average,
    log,
    machine,
    percentile,
    run_async,
    summary,
    versions,
    write_json,
)
from tests.matrix_helpers import MatrixUser
from tests.test_bot_matrix import join_duty_room, open_case
from tests.test_decision_matrix import (
    LINK,
    LVU6_ANSWERS,
    municipality,
    signing_config,
)
from tests.test_report_matrix import Worker

GOAL_P99_MS = 2000.0
STEP_TIMEOUT = 60.0
#: Links identified on from one loopback address (the page's per-address limit is 20).
IDENTIFICATIONS_PER_ADDRESS = 8
CODE = re.compile(r"\b(\d{6})\b")


# -- the two people -------------------------------------------------------------------------------


class StampedUser(MatrixUser):
    """The test suite's E2EE user, noting when each ``m.file`` event and text was decrypted."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: event id -> time.perf_counter() in the nio callback (right after decryption).
        self.file_seen: dict[str, float] = {}
        self.text_seen: dict[str, float] = {}
        self.client.add_event_callback(self._stamp_file, RoomEncryptedFile)
        self.client.add_event_callback(self._stamp_text, (RoomMessageText, RoomMessageNotice))

    async def _stamp_file(self, room: MatrixRoom, event: RoomEncryptedFile) -> None:
        self.file_seen.setdefault(event.event_id, time.perf_counter())

    async def _stamp_text(
        self, room: MatrixRoom, event: RoomMessageText | RoomMessageNotice
    ) -> None:
        self.text_seen.setdefault(event.event_id, time.perf_counter())


@dataclass
class Case:
    number: str
    room: str
    token: str = ""
    api: SigningApi | None = None


@dataclass
class Decision:
    """One measured decision; every time is in ms after t0."""

    case: str
    e2e_ms: float
    api_ms: float
    #: The worker's client decrypted the m.file event (nio callback, inside its sync).
    event_ms: float
    #: The worker's code saw it (the end of that sync: to-device, key queries).
    noticed_ms: float
    download_ms: float
    decrypt_ms: float
    pdf_bytes: int
    tsa_requests: int
    #: How long the TSA took to answer each of them (server side).
    tsa_server_ms: list[float]
    #: From the bot's log (ms resolution, wall clock): sealed and recorded.
    bot_recorded_ms: float | None = None
    #: From the bot's log at --bot-log-level DEBUG: the file event and the text are sent.
    bot_file_send_ms: float | None = None
    bot_text_send_ms: float | None = None


@dataclass
class Results:
    decisions: list[Decision] = field(default_factory=list)
    pyhanko_ms: list[float] = field(default_factory=list)
    #: Server-side handling of each time-stamp request in pyHanko alone.
    pyhanko_tsa_ms: list[float] = field(default_factory=list)
    document_bytes: int = 0
    setup_s: float = 0.0
    load_before: list[float] = field(default_factory=list)
    load_after: list[float] = field(default_factory=list)
    cpu_s: dict[str, float] = field(default_factory=dict)


# -- the bot's log ------------------------------------------------------------------------------


def bot_stages(
    lines: list[LogLine], wall0: float, room: str
) -> tuple[float | None, float | None, float | None]:
    """ms after t0 at which the bot had recorded the decision, sent the file, sent the text.

    "signing request N: signed" follows sealing and the database commit; at DEBUG,
    ``bot.matrix`` logs "trust decided for <room>" right before each ``room_send``
    (the first one after the upload: the file event; the second: the text).
    """
    recorded = next(
        (x.at for x in lines if re.match(r"signing request \d+: signed", x.message)), None
    )
    sends = [
        x.at for x in lines if x.logger == "bot.matrix" and x.message == f"trust decided for {room}"
    ]
    if recorded is not None:
        sends = [t for t in sends if t >= recorded]

    def ms(t: float | None) -> float | None:
        return None if t is None else round((t - wall0) * 1000, 1)

    return (
        ms(recorded),
        ms(sends[0] if sends else None),
        ms(sends[1] if len(sends) > 1 else None),
    )


# -- the run ------------------------------------------------------------------------------------


async def wait_for_direct_room(dag: MatrixUser) -> str:
    """The bot invites the decision-maker to one direct room, with the first alert."""
    direct: str = await dag.wait(lambda: dag.invites[-1] if dag.invites else None, STEP_TIMEOUT)
    await dag.join(direct)
    return direct


async def submit_report(anna: MatrixUser, duty_room: str, opening: asyncio.Lock) -> tuple[str, str]:
    """``submit_lvu6`` of the test suite, safe to run for several cases at once.

    Opening a case is serialised (``open_case`` takes the newest invite), and each
    answer waits for the next question in its own room (``Worker.say``) rather than
    among the last three messages of all rooms (``Worker.question``). The form is
    chosen once the bot's form poll is there, as a person would: the bot sends the
    question, then the poll, then saves both (``ReportService._ask_form``, under
    the duty room's lock), and an answer handled in between is refused as a
    concurrent change.
    """
    async with opening:
        number, room = await open_case(anna, duty_room)
    try:
        await anna.wait(lambda: any(r == room for r, _, _ in anna.polls), STEP_TIMEOUT)
    except TimeoutError:
        raise BenchError(f"{number}: the bot did not ask for the form") from None
    steps = [("lvu6", "Fråga 1 av 27")]
    for i, (_, answer) in enumerate(LVU6_ANSWERS):
        following = (
            f"Fråga {LVU6_ANSWERS[i + 1][0]} av"
            if i + 1 < len(LVU6_ANSWERS)
            else "Alla frågor är besvarade"
        )
        steps.append((answer, following))
    steps.append(("!skicka", "skickad och låst"))
    worker = Worker(anna, room)
    for answer, expect in steps:
        try:
            await worker.say(answer, expect, timeout=STEP_TIMEOUT)
        except TimeoutError:
            said = [r.body[:100] for r in anna.received if r.room_id == room][-4:]
            raise BenchError(
                f"{number}: no {expect!r} after {answer!r}; the bot said last: {said}"
            ) from None
    return number, room


async def prepare_cases(
    count: int,
    parallel: int,
    anna: MatrixUser,
    dag: MatrixUser,
    duty_alias: str,
    http: aiohttp.ClientSession,
    web_base: str,
) -> tuple[list[Case], bytes]:
    """Submit the reports, collect the links and identify on each (not measured).

    The first report goes alone: its alert makes the bot create the direct room
    with the decision-maker. The others are filled in ``parallel`` at a time,
    only to keep the run short.
    """
    began = time.perf_counter()
    duty_room = await join_duty_room(anna, duty_alias)
    opening, gate = asyncio.Lock(), asyncio.Semaphore(parallel)
    reports = [await submit_report(anna, duty_room, opening)]
    direct = await wait_for_direct_room(dag)
    log(f"case 1/{count} submitted ({time.perf_counter() - began:.1f} s)")
    if count > 1:

        async def one() -> tuple[str, str]:
            async with gate:
                return await submit_report(anna, duty_room, opening)

        tasks = [asyncio.create_task(one()) for _ in range(count - 1)]
        try:
            reports += await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        log(f"{count} cases submitted ({time.perf_counter() - began:.1f} s)")

    cases: list[Case] = []
    for number, room in reports:

        def alert(number: str = number) -> str | None:
            for r in dag.received:
                if r.room_id == direct and number in r.body and (m := LINK.search(r.body)):
                    return m.group(1)
            return None

        cases.append(Case(number, room, await dag.wait(alert, STEP_TIMEOUT)))

    assert direct is not None
    unsigned = b""
    phones: dict[str, aiohttp.ClientSession] = {}
    try:
        for index, case in enumerate(cases):
            # The signing page allows ADDRESS_LIMIT identifications per address in ten
            # minutes: a few links per loopback address (as from several phones) keep
            # a run of 20 below it. The measured POSTs go through ``http``.
            address = f"127.0.0.{2 + index // IDENTIFICATIONS_PER_ADDRESS}"
            if address not in phones:
                phones[address] = aiohttp.ClientSession(
                    timeout=http.timeout,
                    connector=aiohttp.TCPConnector(local_addr=(address, 0)),
                )
            phone = SigningApi(phones[address], web_base, case.token)
            document = await identify(case, phone, dag, direct)
            unsigned = unsigned or document
            case.api = SigningApi(http, web_base, case.token)
            case.api.cookie = phone.cookie
    finally:
        for phone_http in phones.values():
            await phone_http.close()
    log(f"identified on {len(cases)} links")
    return cases, unsigned


async def identify(case: Case, api: SigningApi, dag: MatrixUser, direct: str) -> bytes:
    """Identify on ``case``'s link with a one-time code; the unsigned document."""
    mark = len(dag.received)
    status, answer = await api.call("POST", "/auth", {"method": "matrix-code"})
    if status != 200:
        raise BenchError(f"{case.number}: POST /auth -> {status} {answer}")
    message = await dag.wait_message(direct, contains=case.number, after=mark, timeout=STEP_TIMEOUT)
    code = CODE.search(message.body.replace(case.number, ""))
    if code is None:
        raise BenchError(f"{case.number}: no one-time code in {message.body!r}")
    status, answer = await api.call("POST", "/auth/verify", {"code": code.group(1)})
    if status != 200 or not api.cookie:
        raise BenchError(f"{case.number}: POST /auth/verify -> {status} {answer}")
    status, document = await api.call("GET", "/document.pdf")
    if status != 200 or not document.startswith(b"%PDF"):
        raise BenchError(f"{case.number}: GET /document.pdf -> {status}")
    return bytes(document)


async def measure_one(
    case: Case, anna: StampedUser, tsa: TsaServer | None, bot_log: LogFollower
) -> Decision:
    assert case.api is not None
    mark = len(anna.files)
    tsa_before = tsa.requests if tsa else 0
    bot_log.skip()

    def signed_file() -> RoomEncryptedFile | None:
        return next((e for r, e in anna.files[mark:] if r == case.room), None)

    api_done: list[float] = []

    async def post() -> tuple[int, Any]:
        answer = await case.api.call("POST", "/decision", {"action": "sign"})  # type: ignore[union-attr]
        api_done.append(time.perf_counter())
        return answer

    wall0 = time.time()
    t0 = time.perf_counter()
    posting = asyncio.create_task(post())
    try:
        event: RoomEncryptedFile = await anna.wait(signed_file, STEP_TIMEOUT)
        noticed = time.perf_counter()
        response = await anna.client.download(event.url)
        downloaded = time.perf_counter()
        if not isinstance(response, DownloadResponse):
            raise BenchError(f"{case.number}: download failed: {response}")
        pdf = decrypt_attachment(response.body, event.key["k"], event.hashes["sha256"], event.iv)
        t1 = time.perf_counter()
        status, result = await asyncio.wait_for(posting, STEP_TIMEOUT)
    finally:
        if not posting.done():
            posting.cancel()
    if status != 200 or result.get("status") != "signed":
        raise BenchError(f"{case.number}: POST /decision -> {status} {result}")
    if hashlib.sha256(pdf).hexdigest() != result["document_sha256"]:
        raise BenchError(f"{case.number}: the worker's PDF is not the one the bot signed")
    # Let the bot finish (the "signed" text) before the next decision starts.
    await anna.wait_message(case.room, contains="är undertecknat", timeout=STEP_TIMEOUT)
    await asyncio.sleep(0.3)
    recorded, file_sent, text_sent = bot_stages(bot_log.new_lines(), wall0, case.room)
    tsa_ms = tsa.handled_ms[tsa_before:] if tsa else []

    def ms(t: float) -> float:
        return round((t - t0) * 1000, 2)

    return Decision(
        case=case.number,
        e2e_ms=ms(t1),
        api_ms=ms(api_done[0]),
        event_ms=ms(anna.file_seen.get(event.event_id, noticed)),
        noticed_ms=ms(noticed),
        download_ms=round((downloaded - noticed) * 1000, 2),
        decrypt_ms=round((t1 - downloaded) * 1000, 2),
        pdf_bytes=len(pdf),
        tsa_requests=len(tsa_ms),
        tsa_server_ms=[round(x, 2) for x in tsa_ms],
        bot_recorded_ms=recorded,
        bot_file_send_ms=file_sent,
        bot_text_send_ms=text_sent,
    )


class PyhankoAlone:
    """``sign_decision`` as the bot calls it: same document, seal, trust roots and TSA."""

    def __init__(self, pki_folder: Path, document: bytes, tsa: TsaServer | None) -> None:
        from signing.devpki import DevPki
        from signing.seal import load_signer

        self.settings = DevPki(pki_folder).signing_settings(tsa_url=tsa.url if tsa else None)
        self.signer = load_signer(self.settings)
        self.document = document
        self.tsa = tsa
        self.ms: list[float] = []
        self.tsa_ms: list[float] = []

    async def sample(self) -> float:
        from signing.seal import StampInfo, sign_decision

        now = datetime.now(UTC)
        identity = {
            "method": "matrix-code",
            "subject": "@dag:localhost",
            "name": "Dag Dagsson",
            "at": now.isoformat(),
            "evidence": {"device_id": "BENCH", "code_sent_at": now.isoformat()},
        }
        seen = self.tsa.requests if self.tsa else 0
        began = time.perf_counter()
        signed = await sign_decision(
            self.document,
            signer=self.signer,
            stamp=StampInfo(
                signer_name="Dag Dagsson",
                signer_role="ordförande",
                method_label="Matrix-kod",
                signed_at=now,
                case_number="SJ-0000-0000",
            ),
            evidence=identity,
            timestamper_url=self.settings.tsa_url,
            trust_roots=self.settings.trust_roots,
        )
        self.ms.append((time.perf_counter() - began) * 1000)
        if not signed.startswith(b"%PDF"):
            raise BenchError("sign_decision returned something that is not a PDF")
        if self.tsa:
            self.tsa_ms += self.tsa.handled_ms[seen:]
        return self.ms[-1]


async def measure(args: argparse.Namespace, stack: Stack, accounts: dict[str, Account]) -> Results:
    """Prepare the cases, then per case: one decision end to end, one pyHanko signature.

    Interleaving the two puts both under the same background load, which on a
    shared machine changes from minute to minute; the pyHanko signature runs
    once the bot is idle again (its "signed" message has arrived).
    """
    results = Results()
    began = time.perf_counter()
    synapse, bot = stack.synapse, stack.bot
    assert synapse is not None and bot is not None
    anna = StampedUser(
        synapse.base_url,
        accounts["anna"].user_id,
        accounts["anna"].password,
        stack.client_store(accounts["anna"]),
    )
    dag = MatrixUser(
        synapse.base_url,
        accounts["dag"].user_id,
        accounts["dag"].password,
        stack.client_store(accounts["dag"]),
    )
    web_base = f"http://127.0.0.1:{bot.web_port}"
    timeout = aiohttp.ClientTimeout(total=STEP_TIMEOUT)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as http:
            await asyncio.gather(anna.start(), dag.start())
            cases, unsigned = await prepare_cases(
                args.decisions, args.parallel, anna, dag, stack.duty_alias, http, web_base
            )
            results.document_bytes = len(unsigned)
            alone = PyhankoAlone(stack.bot_folder / "pki", unsigned, stack.tsa)
            results.setup_s = time.perf_counter() - began
            await asyncio.sleep(1.0)  # let the last codes' sends and syncs settle

            results.load_before = load_average()
            bot_log = LogFollower(bot.log_path)
            for i, case in enumerate(cases):
                meter = stack.meter("synapse", "socialjour")
                decision = await measure_one(case, anna, stack.tsa, bot_log)
                add_cpu(results.cpu_s, meter.stop())
                results.decisions.append(decision)
                pyhanko = await alone.sample()
                log(
                    f"decision {i + 1}/{len(cases)} {case.number}: end-to-end "
                    f"{decision.e2e_ms:.0f} ms, API answer {decision.api_ms:.0f} ms; "
                    f"pyHanko alone {pyhanko:.0f} ms"
                )
            results.load_after = load_average()
    finally:
        await asyncio.gather(anna.close(), dag.close(), return_exceptions=True)
    results.pyhanko_ms = alone.ms
    results.pyhanko_tsa_ms = alone.tsa_ms
    results.cpu_s = {k: round(v, 2) for k, v in results.cpu_s.items()}
    return results


def make_signing_bot(
    stack: Stack,
    accounts: dict[str, Account],
    *,
    members: list[str],
    tsa: bool,
    log_level: str = "INFO",
) -> None:
    """Socialjour with one municipality whose decision-maker is ``accounts["dag"]``, the
    dev PKI's seal, matrix-code identification and (with ``tsa``) the dev TSA, which is
    started here. ``accounts["anna"]`` is the duty lead."""
    folder = stack.bot_folder
    tsa_url = stack.start_tsa().url if tsa else None
    extra = municipality(SimpleNamespace(user_id=accounts["dag"].user_id), stack.tag)  # type: ignore[arg-type]
    extra += signing_config(folder, tsa_url=tsa_url)  # creates the dev PKI in folder/pki
    # SOCIALJOUR_BENCH_SEAL_PROCESSES=0 compares the seal processes with the seal thread.
    processes = os.environ.get("SOCIALJOUR_BENCH_SEAL_PROCESSES")
    if processes is not None:
        extra = extra.replace("[signing]\n", f"[signing]\nseal_processes = {int(processes)}\n", 1)
    if stack.tsa is not None:
        stack.tsa.start()
    stack.make_bot(
        accounts["bot"],
        members=members,
        leads=[accounts["anna"].user_id],
        extra=extra,
        log_level=log_level,
    )


# -- output ---------------------------------------------------------------------------------------


def _f(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:7.0f}"


def report(results: Results, args: argparse.Namespace) -> str:
    ds = results.decisions
    e2e = [d.e2e_ms for d in ds]
    api = [d.api_ms for d in ds]
    ph = results.pyhanko_ms
    rows = [
        ("end to end (sign -> worker has PDF)", e2e),
        ("  API answer (sign -> HTTP 200)", api),
        ("  m.file decrypted by worker's sync", [d.event_ms for d in ds]),
        ("  worker download + decrypt", [d.download_ms + d.decrypt_ms for d in ds]),
        ("pyHanko alone (sign_decision)", ph),
    ]
    recorded = [d.bot_recorded_ms for d in ds if d.bot_recorded_ms is not None]
    if recorded:
        rows.insert(4, ("  bot: sealed + stored (its log, +-1 ms)", recorded))
    mode = "PAdES B-T, dev TSA on loopback" if args.tsa else "PAdES B-B, no TSA"
    lines = [
        "",
        f"Signing latency, {len(ds)} decisions one at a time ({mode}); "
        f"decision PDF {results.document_bytes / 1024:.0f} KiB unsigned, "
        f"{(ds[0].pdf_bytes / 1024) if ds else 0:.0f} KiB signed",
        f"{'':42} {'n':>3} {'p50':>7} {'p99':>7} {'max':>7} {'first':>7}  (ms)",
    ]
    for name, values in rows:
        lines.append(
            f"{name:42} {len(values):>3} {_f(percentile(values, 50))} "
            f"{_f(percentile(values, 99))} {_f(max(values) if values else math.nan)} "
            f"{_f(values[0] if values else math.nan)}"
        )
    if args.tsa and ds:
        counts = sorted({d.tsa_requests for d in ds})
        in_decisions = [x for d in ds for x in d.tsa_server_ms]
        lines.append(
            f"TSA requests per decision: {counts}; per pyHanko-alone signature: "
            f"{len(results.pyhanko_tsa_ms) / max(len(ph), 1):.1f}; the dev TSA's answer "
            f"(server side) p50 {percentile(in_decisions, 50):.0f} ms in the decisions, "
            f"{percentile(results.pyhanko_tsa_ms, 50):.0f} ms in pyHanko alone"
        )
    if results.cpu_s and ds:
        cpu = ", ".join(f"{k} {v * 1000 / len(ds):.0f}" for k, v in results.cpu_s.items())
        lines.append(f"CPU ms per decision: {cpu}")
    lb, la = results.load_before, results.load_after
    lines.append(
        f"Load average (1/5/15 min) before {lb[0]:.2f}/{lb[1]:.2f}/{lb[2]:.2f}, "
        f"after {la[0]:.2f}/{la[1]:.2f}/{la[2]:.2f}; {cpus()} CPUs"
    )
    p99 = percentile(e2e, 99)
    verdict = "met" if p99 < GOAL_P99_MS else "NOT met"
    lines.append(f"Goal end-to-end p99 < {GOAL_P99_MS:.0f} ms: {p99:.0f} ms, {verdict}")
    return "\n".join(lines)


def as_json(
    results: Results, args: argparse.Namespace, total_s: float, code: dict[str, str]
) -> dict[str, Any]:
    ds = results.decisions
    e2e = [d.e2e_ms for d in ds]
    return {
        "what": "ms from just before POST /decision {action: sign} to the worker's client "
        "having downloaded and decrypted the signed PDF; beside it sign_decision alone",
        "machine": machine(results.load_before, code),
        "settings": {
            "decisions": args.decisions,
            "tsa": args.tsa,
            "bot_log_level": args.bot_log_level,
            "document_bytes": results.document_bytes,
            "signature": "PAdES B-T" if args.tsa else "PAdES B-B",
        },
        "load_average_before": [round(x, 2) for x in results.load_before],
        "load_average_after": [round(x, 2) for x in results.load_after],
        "end_to_end": summary(e2e),
        "api_answer": summary([d.api_ms for d in ds]),
        "worker_event": summary([d.event_ms for d in ds]),
        "worker_download_decrypt": summary([d.download_ms + d.decrypt_ms for d in ds]),
        "pyhanko_alone": summary(results.pyhanko_ms),
        "goal": {
            "p99_max_ms": GOAL_P99_MS,
            "p99_ms": round(percentile(e2e, 99), 1),
            "met": percentile(e2e, 99) < GOAL_P99_MS,
        },
        "cpu_s_during_decisions": results.cpu_s,
        "tsa_server_decisions": summary([x for d in ds for x in d.tsa_server_ms]),
        "tsa_server_pyhanko_alone": summary(results.pyhanko_tsa_ms),
        "pyhanko_tsa_server_ms": [round(x, 2) for x in results.pyhanko_tsa_ms],
        "decisions": [asdict(d) for d in ds],
        "pyhanko_ms": [round(x, 2) for x in results.pyhanko_ms],
        "setup_s": round(results.setup_s, 1),
        "total_s": round(total_s, 1),
    }


# -- main ----------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.signing_latency",
        description="Time from 'sign' on the signing page to the worker's client having "
        "the signed PDF, beside pyHanko's signing alone.",
    )
    parser.add_argument(
        "--decisions", type=int, default=20, help="decisions to measure (default 20)"
    )
    parser.add_argument(
        "--tsa",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="RFC 3161 timestamps from the dev TSA on loopback, PAdES B-T (default: on)",
    )
    parser.add_argument(
        "--bot-log-level",
        default="INFO",
        choices=("INFO", "DEBUG"),
        help="the bot's log level; DEBUG adds when it sent the file and the text "
        "(default INFO, as operators run it)",
    )
    parser.add_argument(
        "--parallel",
        type=int,
        default=5,
        help="reports filled in at once while preparing (not measured; default 5)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=1200,
        help="give up (and clean up) after this many seconds of measuring (default 1200)",
    )
    parser.add_argument(
        "--out", type=Path, help="the JSON (default bench/results/signing-latency-<time>.json)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs, databases)")
    args = parser.parse_args(argv)
    if args.decisions < 1 or args.parallel < 1:
        parser.error("--decisions and --parallel must be positive")
    if args.out is None:
        args.out = RESULTS / f"signing-latency-{time.strftime('%Y%m%d-%H%M%S')}.json"
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    # Devices of the worker and decision-maker see room history from before they existed.
    logging.getLogger("nio").setLevel(logging.CRITICAL)
    interrupt_on_signals()
    stack = Stack("socialjour-signbench-", keep=args.keep)
    started = time.perf_counter()
    code = versions(*DISTS, "aiohttp")
    try:
        log(f"Synapse in {stack.base}")
        stack.start_synapse()
        accounts = stack.register(["bot", "anna", "dag"])
        make_signing_bot(
            stack,
            accounts,
            members=[accounts["anna"].user_id],
            tsa=args.tsa,
            log_level=args.bot_log_level,
        )
        log("starting Socialjour")
        stack.start_bot(timeout=120)
        results = run_async(measure(args, stack, accounts), timeout=args.timeout)
        print(report(results, args))
        total = time.perf_counter() - started
        write_json(args.out, as_json(results, args, total, code))
        log(f"total {total:.0f} s")
        return 0
    except KeyboardInterrupt:
        log("interrupted; cleaning up")
        logging.getLogger("asyncio").setLevel(logging.CRITICAL)  # tasks left behind
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
