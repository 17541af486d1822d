"""The legal deadline clocks of a case (issue 9 §3), on the database.

The interface other parts call, each in the caller's transaction:

- :func:`start_clocks` where what starts them is recorded (the signature, the
  execution, the court's decision);
- :func:`open_deadlines` to know whether a case still has a clock (a case closes
  only when none is open).

The templates declare the deadlines (``[[deadlines]]``, see :mod:`config.deadlines`);
the first clock writes every deadline of the case's form, ``waiting`` until its own
trigger, with the template's rule copied so a later edit moves no running clock. The
counting is :mod:`handlers.deadline_rules`; the commands that mark acts are
:mod:`handlers.deadline_commands`, the reminders :mod:`handlers.deadline_jobs`.
Nothing here or in the audit rows names the person a case is about.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncSession

from config.deadlines import DeadlineSpec, Trigger, parse_rule
from config.forms import FormTemplate, builtin_forms
from handlers import i18n
from handlers.context import local_time
from handlers.deadline_rules import count_due
from storage import audit, repo
from storage import deadlines as store
from storage.models import Case, CourtDecision, Deadline

if TYPE_CHECKING:
    from config import Settings

__all__ = [
    "CourtResult",
    "Trigger",
    "court_decision",
    "day_text",
    "label_of",
    "mark_act",
    "open_deadlines",
    "spec_of",
    "start_clocks",
    "status_lines",
]

log = logging.getLogger(__name__)

BOT = audit.BOT_ACTOR


def _forms(settings: Settings | None) -> Mapping[str, FormTemplate]:
    return settings.forms if settings is not None and settings.forms else builtin_forms()


def _meetings(settings: Settings | None, case: Case) -> tuple[date, ...]:
    if settings is None or case.municipality_id is None:
        return ()
    municipality = settings.municipality(case.municipality_id)
    return municipality.meetings if municipality is not None else ()


def spec_of(settings: Settings | None, case: Case, name: str) -> DeadlineSpec | None:
    """The template's declaration of the case's deadline ``name`` (None: not found)."""
    form = _forms(settings).get(case.form_id or "")
    return next((spec for spec in form.deadlines if spec.name == name), None) if form else None


def label_of(settings: Settings | None, case: Case, deadline: Deadline, lang: str) -> str:
    """How a deadline is named in messages: its label and statute from the template."""
    spec = spec_of(settings, case, deadline.name)
    if spec is None:
        return deadline.name
    return f"{spec.label_in(lang)} ({spec.legal_basis})"


def day_text(day: date, lang: str) -> str:
    """A day as shown: ``fre 2026-03-06``."""
    weekday = i18n.text(lang, "deadline.weekdays").split()[day.weekday()]
    return f"{weekday} {day.isoformat()}"


async def start_clocks(
    session: AsyncSession,
    *,
    case_id: int,
    trigger: Trigger,
    at: datetime,
    now: datetime,
    settings: Settings | None = None,
) -> list[Deadline]:
    """Start the case's deadlines that ``trigger`` (happening ``at``) starts, in the
    caller's transaction; returns those started now. Idempotent: a clock already
    started (or ended) is left alone, so a repeated call starts nothing.

    ``settings`` gives the templates (else the built-in ones) and the meeting days
    written in the config; without them a next-meeting deadline waits for the sweep,
    which also reads the meeting calendar.
    """
    case = await repo.get_case(session, case_id=case_id)
    if case is None:
        return []
    rows = await store.for_case(session, case_id=case_id)
    if not rows:
        form = _forms(settings).get(case.form_id or "")
        for spec in form.deadlines if form is not None else ():
            await store.add(
                session,
                case_id=case_id,
                name=spec.name,
                trigger=spec.trigger,
                rule=spec.rule,
                actor=spec.actor,
                act=spec.act,
                ends_if_revoked=spec.ends_if_revoked,
                now=now,
            )
        rows = await store.for_case(session, case_id=case_id)
    started: list[Deadline] = []
    for row in rows:
        if row.trigger != trigger or row.status != store.WAITING:
            continue
        due = count_due(parse_rule(row.rule), at, _meetings(settings, case))
        due_on = due.due_on if due is not None else None
        outer = due.outer_limit if due is not None else None
        if not await store.start(
            session, deadline_id=row.id, started_at=at, due_on=due_on, outer_limit=outer
        ):
            continue
        await repo.add_audit(
            session,
            case_id=case_id,
            actor=BOT,
            action=audit.DEADLINE_STARTED,
            now=now,
            detail={
                "deadline": row.name,
                "trigger": trigger,
                # The days, once known (a next meeting may not be, yet).
                **({"due": due_on.isoformat()} if due_on else {}),
                **({"outer_limit": outer.isoformat()} if outer and outer != due_on else {}),
            },
        )
        started.append(row)
    if started:
        log.info("case %s: %d deadline clock(s) started by %s", case.number, len(started), trigger)
    return await _reloaded(session, started)


async def _reloaded(session: AsyncSession, rows: Iterable[Deadline]) -> list[Deadline]:
    fresh = [await store.get(session, deadline_id=row.id) for row in rows]
    return [row for row in fresh if row is not None]


async def open_deadlines(session: AsyncSession, *, case_id: int) -> list[Deadline]:
    """The case's deadlines neither done nor void: running, or waiting for their
    trigger (a case awaiting the court's decision still has a clock to come)."""
    return await store.for_case(session, case_id=case_id, statuses=store.OPEN)


# -- marking acts -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Marked:
    """What marking an act did: the deadline ended now, or the one that had ended."""

    done: Deadline | None = None
    already: Deadline | None = None


async def mark_act(
    session: AsyncSession, *, case: Case, act: str, by: str, via: str, now: datetime
) -> Marked:
    """Mark the case's open deadline ended by ``act`` done (the first declared, if several),
    with its audit row. ``Marked()`` when the case has no deadline for that act."""
    rows = [row for row in await store.for_case(session, case_id=case.id) if row.act == act]
    for row in rows:
        if row.status not in store.OPEN:
            continue
        if await store.finish(
            session, deadline_id=row.id, status=store.DONE, by=by, via=via, now=now
        ):
            await repo.add_audit(
                session,
                case_id=case.id,
                actor=by,
                action=audit.DEADLINE_MARKED,
                now=now,
                detail={"deadline": row.name, "via": via},
            )
            return Marked(done=await store.get(session, deadline_id=row.id))
    # Re-read: someone may have marked it between the read above and the update.
    fresh = await store.for_case(session, case_id=case.id, statuses=(store.DONE,))
    ended = [row for row in fresh if row.act == act]
    return Marked(already=ended[0]) if ended else Marked()


# -- the court's decision -----------------------------------------------------------------


@dataclass(slots=True)
class CourtResult:
    """What recording the court's decision did (``existing``: one was recorded before)."""

    existing: CourtDecision | None = None
    submitted: list[Deadline] = field(default_factory=list)
    started: list[Deadline] = field(default_factory=list)
    stopped: list[Deadline] = field(default_factory=list)


async def court_decision(
    session: AsyncSession,
    *,
    case: Case,
    decided_on: date,
    upheld: bool,
    at: datetime,
    by: str,
    now: datetime,
    settings: Settings | None = None,
) -> CourtResult:
    """Record the court's decision on the custody, in the caller's transaction.

    The court has the case, so the underställning is done. Upheld: the clocks counted
    from the court's decision start at ``at`` (its day). Revoked: they never start,
    and the clocks that end with the custody (``ends_if_revoked``) stop.
    """
    outcome = "upheld" if upheld else "revoked"
    if not await store.record_court_decision(
        session, case_id=case.id, decided_on=decided_on, outcome=outcome, by=by, now=now
    ):
        return CourtResult(existing=await store.court_decision(session, case_id=case.id))
    result = CourtResult()
    for row in await store.for_case(session, case_id=case.id, statuses=store.OPEN):
        if row.act == "underställt":
            await _end(session, case, row, store.DONE, "court", by, now, result.submitted)
        elif not upheld and (row.trigger == "court_decision" or row.ends_if_revoked):
            await _end(session, case, row, store.VOID, "revoked", by, now, result.stopped)
    await repo.add_audit(
        session,
        case_id=case.id,
        actor=by,
        action=audit.COURT_DECISION,
        now=now,
        detail={
            "outcome": outcome,
            "date": decided_on.isoformat(),
            # The clocks that will not start, or stop, because the court revoked.
            "stopped": [row.name for row in result.stopped],
        },
    )
    if upheld:
        result.started = await start_clocks(
            session, case_id=case.id, trigger="court_decision", at=at, now=now, settings=settings
        )
    return result


async def _end(
    session: AsyncSession,
    case: Case,
    row: Deadline,
    status: str,
    via: str,
    by: str,
    now: datetime,
    into: list[Deadline],
) -> None:
    if await store.finish(session, deadline_id=row.id, status=status, by=by, via=via, now=now):
        if status == store.DONE:  # a stopped clock is in the court decision's row
            await repo.add_audit(
                session,
                case_id=case.id,
                actor=by,
                action=audit.DEADLINE_MARKED,
                now=now,
                detail={"deadline": row.name, "via": via},
            )
        fresh = await store.get(session, deadline_id=row.id)
        if fresh is not None:
            into.append(fresh)


# -- !status ------------------------------------------------------------------------------


async def status_lines(
    session: AsyncSession, *, case: Case, settings: Settings | None, lang: str
) -> list[i18n.Message]:
    """``!status`` in the case room: every deadline with its day (and the outer limit
    where the law moves it), what a waiting one waits for, and the court's decision."""
    rows = await store.for_case(session, case_id=case.id)
    if not rows:
        return []
    lines = [i18n.render(lang, "deadline.status.header")]
    lines += [_status_line(settings, case, row, lang) for row in rows]
    court = await store.court_decision(session, case_id=case.id)
    if court is not None:
        lines.append(
            i18n.render(
                lang,
                "deadline.status.court",
                day=day_text(court.decided_on, lang),
                outcome=i18n.text(lang, f"court.outcome.{court.outcome}"),
            )
        )
    return lines


def _status_line(settings: Settings | None, case: Case, row: Deadline, lang: str) -> i18n.Message:
    label = label_of(settings, case, row, lang)
    if row.status == store.DONE:
        when = local_time(row.done_at) if row.done_at else ""
        return i18n.render(lang, "deadline.status.done", label=label, when=when, who=row.done_by)
    if row.status == store.VOID:
        return i18n.render(lang, "deadline.status.void", label=label)
    if row.status == store.WAITING:
        return i18n.render(
            lang,
            "deadline.status.waiting",
            label=label,
            when=i18n.text(lang, f"deadline.trigger.{row.trigger}"),
        )
    if row.due_on is None:
        return i18n.render(lang, "deadline.status.no_meeting", label=label)
    return due_message(lang, "deadline.status.running", row, label=label)


def due_message(lang: str, key: str, row: Deadline, **params: Any) -> i18n.Message:
    """A message naming a running deadline's last day, with ``{outer}`` saying the outer
    limit where lag (1930:173) moves it (empty otherwise). ``params`` go to
    :func:`handlers.i18n.render` (``mentions``, ``notice`` and the placeholders)."""
    assert row.due_on is not None
    due, outer = day_text(row.due_on, lang), outer_text(row, lang)
    return i18n.render(lang, key, due=due, outer=outer, **params)


def outer_text(row: Deadline, lang: str) -> str:
    if row.outer_limit is None or row.due_on is None or row.outer_limit == row.due_on:
        return ""
    return i18n.text(lang, "deadline.outer", outer=day_text(row.outer_limit, lang))


def labels(settings: Settings | None, case: Case, rows: Sequence[Deadline], lang: str) -> str:
    return ", ".join(label_of(settings, case, row, lang) for row in rows)
