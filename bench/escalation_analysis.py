"""The analysis of ``bench.escalation_latency``: rows and messages in, figures out.

Every claimed step is matched with the messages it sent (see :func:`assign`), and
its lateness noted from its due time and, for a step due while the bot was down,
from the restarted bot's "ready". See bench/README.md for what the numbers mean.
"""

from __future__ import annotations

import argparse
import bisect
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.harness import Arrival, percentile, read_log, summary

CASE_NUMBER = re.compile(r"[A-Z]{1,8}-\d{4}-\d{4,}")
#: What each client sees, how to recognise it, and which steps send it.
#: (kind, room, text, producers); room "direct": the decision-maker's direct room,
#: "duty": the lead's duty room, "case": the worker's case room.
MESSAGES: list[tuple[str, str, str, frozenset[tuple[str, str]]]] = [
    ("alert", "direct", "Brådskande beslut att underteckna", frozenset({("channel", "matrix")})),
    (
        "reminder",
        "direct",
        "Påminnelse: ett brådskande beslut",
        frozenset({("policy", "remind"), ("policy", "repeat")}),
    ),
    (
        "leads",
        "duty",
        "fortfarande inte undertecknat",
        frozenset({("policy", "alert_leads"), ("policy", "repeat")}),
    ),
    ("case_requested", "case", "Beslutet skickades till", frozenset({("channel", "matrix")})),
    (
        "case_reminded",
        "case",
        "Påminnelse skickad till",
        frozenset({("policy", "remind"), ("policy", "repeat")}),
    ),
    (
        "case_leads",
        "case",
        "fortfarande inte undertecknat",
        frozenset({("policy", "alert_leads"), ("policy", "repeat")}),
    ),
]
#: The messages whose arrival times are reported (the case-room ones only count).
TIMED = ("alert", "reminder", "leads")
GOAL_P99_S = 1.0
GOAL_RESTART_S = 5.0


@dataclass
class Timeline:
    """Wall-clock moments (epoch seconds) of the run."""

    t0: float = 0.0
    end: float = 0.0  # steps due after this are not counted
    first_spawn: float = 0.0
    first_ready: float = 0.0
    kill: float | None = None
    second_spawn: float | None = None
    second_ready: float | None = None
    drained: float = 0.0  # nothing due in the window was pending any more (or timed out)
    stop: float = 0.0


@dataclass
class Run:
    timeline: Timeline
    seed: dict[str, Any]
    steps: list[dict[str, Any]]
    arrivals: dict[str, list[Arrival]]  # "direct" / "duty" / "case"
    undecryptable: dict[str, int]
    #: Syncs per client whose timeline was cut short (events skipped): should be 0.
    sync_gaps: dict[str, int] = field(default_factory=dict)
    cpu_s: dict[str, float] = field(default_factory=dict)
    join_failures: list[str] = field(default_factory=list)


# -- analysis ----------------------------------------------------------------------------------


def category(step: dict[str, Any], tl: Timeline) -> str:
    """``normal``; ``restart``: due between the SIGKILL and the new "ready", or due before
    the kill and claimed after it; ``startup``: due before the first "ready" (the start
    allowance was too short)."""
    if step["due"] < tl.first_ready:
        return "startup"
    if tl.kill is not None and tl.second_ready is not None:
        if tl.kill <= step["due"] <= tl.second_ready:
            return "restart"
        if step["due"] < tl.kill and (step["fired"] or tl.stop) >= tl.kill:
            return "restart"
    return "normal"


def ready_of(step: dict[str, Any], tl: Timeline) -> float | None:
    """The "ready" a step that was due while the bot was not up is measured from."""
    if step["category"] == "restart":
        return tl.second_ready
    if step["category"] == "startup":
        return tl.first_ready
    return None


def assign(
    steps: list[dict[str, Any]], arrivals: list[Arrival]
) -> tuple[dict[int, list[Arrival]], list[Arrival]]:
    """The messages of one kind in one case, to the step that sent each.

    A case's steps run one after the other (``Escalator.run_due`` holds the case's
    lock), so a message reached the homeserver (``origin_server_ts``) after its
    step's ``fired_at`` and before the next step's. Steps claimed in one pass of
    ``run_due`` share a ``fired_at`` (the pass's start) and run in due order: their
    messages go to them in that order, one each, any extra to the last. A message
    before the first claim belongs to no step.
    """
    ordered = sorted(steps, key=lambda s: (s["fired"], s["due"], s["id"]))
    groups: list[list[dict[str, Any]]] = []
    for step in ordered:
        if groups and abs(groups[-1][0]["fired"] - step["fired"]) < 1e-6:
            groups[-1].append(step)
        else:
            groups.append([step])
    starts = [g[0]["fired"] for g in groups]
    buckets: list[list[Arrival]] = [[] for _ in groups]
    orphans: list[Arrival] = []
    for arrival in sorted(arrivals, key=lambda a: a.server_at):
        # fired_at has microseconds, origin_server_ts milliseconds.
        at = bisect.bisect_right(starts, arrival.server_at + 0.001) - 1
        if at < 0:
            orphans.append(arrival)
        else:
            buckets[at].append(arrival)
    sent: dict[int, list[Arrival]] = defaultdict(list)
    for group, bucket in zip(groups, buckets, strict=True):
        for i, arrival in enumerate(bucket):
            sent[group[min(i, len(group) - 1)]["id"]].append(arrival)
    return sent, orphans


def classify(run: Run) -> dict[tuple[str, int], list[Arrival]]:
    """The bot's messages by (kind, case id); anything else under ("other", 0)."""
    number_to_id = {c["number"]: c["case_id"] for c in run.seed["cases"]}
    room_to_id = {c["room_id"]: c["case_id"] for c in run.seed["cases"]}
    got: dict[tuple[str, int], list[Arrival]] = defaultdict(list)
    for room_kind, arrivals in run.arrivals.items():
        for a in arrivals:
            kinds = [k for k, where, text, _ in MESSAGES if where == room_kind and text in a.body]
            case_id = room_to_id.get(a.room_id) if room_kind == "case" else None
            if case_id is None and (m := CASE_NUMBER.search(a.body)):
                case_id = number_to_id.get(m.group(0))
            if kinds and case_id is not None:
                got[kinds[0], case_id].append(a)
            else:
                got["other", 0].append(a)
    return got


STEP_LOG = re.compile(
    r"escalation step (\d+) (?:was (interrupted|stuck)|\(\w+ \w+\) failed, attempt)"
)


def step_log(path: Path) -> dict[str, set[int]]:
    """Step ids the bot's log names: run again after a crash or when stuck, or failed."""
    found: dict[str, set[int]] = defaultdict(set)
    for line in read_log(path):
        if m := STEP_LOG.search(line.message):
            found[m.group(2) or "failed"].add(int(m.group(1)))
    return found


def analyse(run: Run, bot_log: Path) -> dict[str, Any]:
    tl = run.timeline
    cases = {c["case_id"] for c in run.seed["cases"]}
    steps = [s for s in run.steps if s["case_id"] in cases and s["kind"] != "expire"]
    for s in steps:
        s["category"] = category(s, tl)
    counted = [s for s in steps if s["due"] <= tl.end]
    # Claimed at least once: running, done or failed, or pending again for a retry
    # after a failed attempt (a step a crash interrupted goes back to pending and is
    # claimed again, with a new fired_at).
    claimed = [s for s in steps if s["fired"] is not None and s["status"] != "cancelled"]
    named = step_log(bot_log)

    # Lateness in ms, by "<category> <what> <from>".
    late: dict[str, list[float]] = defaultdict(list)
    by_due: dict[int, list[float]] = defaultdict(list)

    def note(step: dict[str, Any], what: str, at: float) -> None:
        late[f"{step['category']} {what} due"].append((at - step["due"]) * 1000)
        if (ready := ready_of(step, tl)) is not None:
            late[f"{step['category']} {what} ready"].append((at - ready) * 1000)

    for s in claimed:
        if s["due"] <= tl.end:
            note(s, "claimed", s["fired"])

    got = classify(run)
    twice: Counter[str] = Counter()
    twice_rerun: Counter[str] = Counter()
    reruns = named["interrupted"] | named["stuck"]
    missing: dict[int, dict[str, Any]] = {}
    cut_at_stop = 0
    for kind, _, _, producers in MESSAGES:
        if kind == "case_requested":
            continue  # sent on a request's first delivery only, not by every alert step
        for case_id in cases:
            mine = [
                s
                for s in claimed
                if s["case_id"] == case_id and (s["kind"], s["action"]) in producers
            ]
            sent, orphans = assign(mine, got.get((kind, case_id), []))
            extra = len(orphans) + sum(len(v) - 1 for v in sent.values() if len(v) > 1)
            twice[kind] += extra
            # A step run again after the crash repeats what it had sent before the kill.
            rerun = any(step["id"] in reruns for step in mine)
            early = [a for v in sent.values() if len(v) > 1 for a in v] + orphans
            if extra and rerun and any(tl.kill and a.server_at < tl.kill for a in early):
                twice_rerun[kind] += extra
            for step in mine:
                first = min(sent.get(step["id"], []), key=lambda a: a.at, default=None)
                if first is None and step["due"] <= tl.end:
                    missing.setdefault(step["id"], {**step, "missing": []})["missing"].append(kind)
                elif first is None:
                    cut_at_stop += 1
                elif kind in TIMED and step["due"] <= tl.end:
                    note(step, "received", first.at)
                    note(step, "on_server", first.server_at)
                    if step["category"] == "normal":
                        by_due[int((step["due"] - tl.t0) // 10) * 10].append(
                            (first.server_at - step["due"]) * 1000
                        )

    never = [s for s in counted if s["status"] == "pending"]
    # Claimed, and some message never came: cut off by the SIGKILL and not run again;
    # or not (all) sent yet when the bot was stopped at the end (--drain seconds after
    # every step due in the window had been claimed).
    killed = [s for s in missing.values() if tl.kill is not None and s["fired"] < tl.kill]
    unsent = [s for s in missing.values() if s not in killed]
    claimed_twice = [
        s
        for s in steps
        if s["kind"] == "policy" and s["attempts"] > 1 and s["id"] not in reruns | named["failed"]
    ]
    normal = late.get("normal claimed due", [])
    restart = late.get("restart claimed ready", [])
    arrived = late.get("restart received ready", [])
    goals = {
        "p99_outside_restart_ms": round(percentile(normal, 99), 1),
        "p99_met": bool(normal) and percentile(normal, 99) < GOAL_P99_S * 1000,
        "twice": sum(twice.values()) + len(claimed_twice),
        "never": len(never) + len(killed),
        "unsent_at_stop": len(unsent),
        "restart_max_after_ready_ms": round(max(restart), 1) if restart else None,
        "restart_met": (max(restart) < GOAL_RESTART_S * 1000) if restart else None,
        # The same goal by what the people's phones got (the claim is only the start).
        "restart_received_max_after_ready_ms": round(max(arrived), 1) if arrived else None,
        "restart_received_met": (max(arrived) < GOAL_RESTART_S * 1000) if arrived else None,
    }
    other = Counter(a.body.split("\n")[0][:70] for a in got.get(("other", 0), []))
    return {
        "steps_counted": len(counted),
        "steps_by_action": dict(Counter(f"{s['kind']}/{s['action']}" for s in counted)),
        "steps_by_category": dict(Counter(s["category"] for s in counted)),
        "steps_by_status_at_stop": dict(Counter(s["status"] for s in steps)),
        "late": {k: summary(v) for k, v in sorted(late.items())},
        "normal_on_server_by_due_10s": {f"t0+{k}": summary(v) for k, v in sorted(by_due.items())},
        "messages_received": {
            k: sum(len(v) for (kk, _), v in got.items() if kk == k) for k, *_ in MESSAGES
        },
        "twice_messages": {k: v for k, v in twice.items() if v},
        "twice_messages_in_cases_with_a_rerun": {k: v for k, v in twice_rerun.items() if v},
        "claimed_twice": [s["id"] for s in claimed_twice],
        "run_again_after_crash": sorted(named["interrupted"]),
        "run_again_when_stuck": sorted(named["stuck"]),
        "failed_attempts": sorted(named["failed"]),
        "never_fired": never,
        "killed_mid_step": killed,
        "unsent_at_stop": unsent,
        "cut_at_final_stop": cut_at_stop,
        "other_messages": dict(other.most_common(20)),
        "goals": goals,
        "late_samples_ms": {k: [round(x, 1) for x in v] for k, v in late.items()},
        "steps": [
            {k: (round(v - tl.t0, 3) if k in ("due", "fired") and v else v) for k, v in s.items()}
            for s in steps
        ],
        "arrivals": [
            {
                "kind": kind,
                "case_id": case_id,
                "at": round(a.at - tl.t0, 3),
                "server_at": round(a.server_at - tl.t0, 3),
            }
            for (kind, case_id), arrivals in sorted(got.items())
            for a in arrivals
        ],
    }


# -- output ------------------------------------------------------------------------------------

ROWS = [
    ("normal claimed due", "outside the restart: claimed, from due"),
    ("normal on_server due", "  message on the server, from due"),
    ("normal received due", "  message decrypted by a client, from due"),
    ("restart claimed ready", "due while down: claimed, from 'ready'"),
    ("restart claimed due", "  claimed, from due"),
    ("restart received ready", "  message decrypted by a client, from 'ready'"),
    ("restart received due", "  message decrypted by a client, from due"),
    ("startup claimed ready", "due before the first 'ready': claimed, from it"),
]


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:8.0f}"


def report(result: dict[str, Any], run: Run, args: argparse.Namespace) -> str:
    tl = run.timeline
    lines = [
        "",
        f"Escalation latency: {args.cases} cases, {args.municipalities} policies, "
        f"{result['steps_counted']} steps due in t0..t0+{args.spread + args.tail:.0f} s "
        f"({result['steps_by_action']}; {result['steps_by_category']})",
    ]
    if tl.kill is not None and tl.second_ready is not None and tl.second_spawn is not None:
        lines.append(
            f"SIGKILL at t0+{tl.kill - tl.t0:.1f} s, started again {args.down:.0f} s later, "
            f"'ready' at t0+{tl.second_ready - tl.t0:.1f} s "
            f"({tl.second_ready - tl.second_spawn:.1f} s after the start)"
        )
    lines.append(f"{'ms late':48} {'n':>5} {'p50':>8} {'p99':>8} {'max':>8}")
    late = result["late"]
    for key, label in ROWS:
        row = late.get(key)
        if row and row.get("samples"):
            lines.append(
                f"{label:48} {row['samples']:>5} {_ms(row.get('p50_ms'))} "
                f"{_ms(row.get('p99_ms'))} {_ms(row.get('max_ms'))}"
            )
    killed, unsent = result["killed_mid_step"], result["unsent_at_stop"]
    reruns = result["run_again_after_crash"]
    lines.append(
        f"fired twice: {sum(result['twice_messages'].values())} messages more than claimed "
        f"steps {result['twice_messages'] or ''}, of which "
        f"{sum(result['twice_messages_in_cases_with_a_rerun'].values())} in cases with a step "
        f"run again after the crash (as designed: {len(reruns)} such steps); "
        f"{len(result['claimed_twice'])} steps claimed twice otherwise"
    )
    lines.append(
        f"never: {len(result['never_fired'])} steps pending past due, {len(killed)} claimed "
        f"before the SIGKILL whose messages never came; "
        f"{len(result['failed_attempts'])} steps with a failed attempt"
    )
    if killed and tl.kill is not None:
        before = [tl.kill - s["fired"] for s in killed]
        lines.append(
            f"  cut off: claimed {min(before):.1f}-{max(before):.1f} s before the SIGKILL, "
            f"missing {dict(Counter(k for s in killed for k in s['missing']))}"
        )
    if unsent:
        ago = [tl.stop - s["fired"] for s in unsent]
        lines.append(
            f"  not (all) sent yet when the bot was stopped: {len(unsent)} steps claimed "
            f"{min(ago):.0f}-{max(ago):.0f} s before, "
            f"{dict(Counter(s['status'] for s in unsent))}"
        )
    if run.sync_gaps or any(run.undecryptable.values()):
        lines.append(
            f"clients: syncs with skipped events {run.sync_gaps or 0}, undecryptable "
            f"{ {k: v for k, v in run.undecryptable.items() if v} }"
        )
    if result["other_messages"]:
        lines.append(f"other bot messages: {result['other_messages']}")
    g = result["goals"]
    verdict = {True: "met", False: "NOT met", None: "not measured"}
    worst, got = g["restart_max_after_ready_ms"], g["restart_received_max_after_ready_ms"]
    lines.append(
        f"Goals: p99 < {GOAL_P99_S * 1000:.0f} ms outside the restart: "
        f"{g['p99_outside_restart_ms']:.0f} ms, {verdict[g['p99_met']]}; "
        f"0 twice: {g['twice']}; 0 never: {g['never']}; restart's steps within "
        f"{GOAL_RESTART_S:.0f} s of 'ready': claimed by "
        f"{'-' if worst is None else f'{worst:.0f} ms'}, {verdict[g['restart_met']]}; "
        f"their messages decrypted by {'-' if got is None else f'{got:.0f} ms'}, "
        f"{verdict[g['restart_received_met']]}"
    )
    return "\n".join(lines)


def problem_counts(lines: list[str]) -> dict[str, int]:
    """Warnings and errors of the bot's log, counted by what they say (ids and numbers
    blanked)."""
    counts: Counter[str] = Counter()
    for line in lines:
        text = line.split(" ", 2)[-1]
        text = re.sub(r"![\w-]+:\S+|@\S+|\b[A-Z]{10}\b|\d+", "#", text)
        counts[text[:120]] += 1
    return dict(counts.most_common(25))
