"""The promise, checked: every waiting case has a live link that was delivered or is
being escalated; and what ``!status`` says about a waiting decision.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from handlers import i18n
from handlers.case_state import CaseStatus
from handlers.context import local_time
from handlers.escalation_actions import StepContext, alert_leads
from storage import escalation as steps
from storage import repo
from storage.models import Case

if TYPE_CHECKING:
    from handlers.escalation import Escalator

log = logging.getLogger(__name__)

STUCK_AFTER = timedelta(minutes=10)
CATCH_UP_PARALLEL = 8


async def check(esc: Escalator) -> None:
    """Every waiting case has a live link that was delivered or is being escalated.

    At start-up and every minute: runs rows whose wake-up was lost, cancels rows
    of cases that moved on, and repairs a case that breaks the promise, telling
    its room and the duty leads (once per state of the case: what a repair says
    is keyed by the requests it is about, so the next minute's check, finding the
    same, posts nothing new).
    """
    now = esc.clock()
    async with esc.sessions() as session, session.begin():
        # A step "running" this long was cut off (a step takes seconds): run it again.
        for step in await steps.release_running(session, started_before=now - STUCK_AFTER):
            log.warning("escalation step %d was stuck; running it again", step.id)
    async with esc.sessions() as session:
        waiting = await repo.list_cases(session, statuses=[CaseStatus.AWAITING_SIGNATURE.value])
        stale = [
            s for s in await steps.list_pending(session) if s.case_id not in {c.id for c in waiting}
        ]
    if stale:
        async with esc.sessions() as session, session.begin():
            for case_id in {s.case_id for s in stale}:
                esc.wakeups.cancel(await steps.cancel(session, case_id=case_id))
    # A few cases at a time: after an outage many are due at once, and one slow case
    # (a homeserver retry) must not hold the others back.
    limit = asyncio.Semaphore(CATCH_UP_PARALLEL)

    async def one(case: Case) -> None:
        async with limit:
            try:
                await esc.run_due(case.id)
                await repair(esc, case.id, now)
            except Exception:
                log.exception("case %s: the escalation check failed", case.number)

    await asyncio.gather(*(one(case) for case in waiting))


async def repair(esc: Escalator, case_id: int, now: datetime) -> None:
    ctx = await esc.context(case_id)
    if ctx.case.status != CaseStatus.AWAITING_SIGNATURE.value:
        return
    async with esc.sessions() as session:
        pending = await steps.list_pending(session, case_id=case_id)
    live = [r for r in ctx.open if r.expires_at > now]
    if not live:
        targets = [esc.maker_of(ctx, r.signer_user_id) for r in ctx.requests[-1:]]
        maker = next((m for m in targets if m), None)
        if maker is None and ctx.municipality is not None:
            maker = next(iter(await esc.signers(ctx, now)), None)
        log.warning("case %s waits without a live signing link; repairing", ctx.case.number)
        request = None if maker is None else await esc.issue(case_id, maker, now)
        if maker is None or request is None:
            last = ctx.requests[-1].id if ctx.requests else 0
            await esc.alerter.tell_case_and_leads(
                ctx.case,
                "escalation.no_next_signer",
                once=f"repair:{case_id}:after:{last}:no_next_signer",
                number=ctx.case.number,
            )
            return
        if not any(s.kind == steps.POLICY for s in pending) and ctx.municipality:
            await restart_policy(esc, ctx, now)
        await esc.alerter.tell_case_and_leads(
            ctx.case,
            "escalation.repaired",
            once=f"request:{request.id}:repaired",
            name=maker.name,
        )
        await esc.run_due(case_id)
        return
    delivered = any(r.delivered_at is not None for r in live)
    if not delivered and not pending:
        log.warning("case %s: nothing delivered and nothing planned; repairing", ctx.case.number)
        await restart_policy(esc, ctx, now)
        await esc.remind_now(case_id)
        undelivered = ",".join(str(r.id) for r in live)
        await alert_leads(esc, ctx, once=f"repair:{case_id}:undelivered:{undelivered}:leads")


async def restart_policy(esc: Escalator, ctx: StepContext, now: datetime) -> None:
    """A repeat of ``alert_leads`` and reminders on the policy's cadence."""
    policy = esc.policy_of(ctx)
    every = policy.repeat_every or (policy.steps[-1].after if policy.steps else None)
    if every is None:
        return
    async with esc.sessions() as session, session.begin():
        seq = await steps.last_policy_seq(session, case_id=ctx.case.id) + 1
        await steps.add_step(
            session,
            case_id=ctx.case.id,
            kind=steps.POLICY,
            action="repeat",
            seq=seq,
            due_at=now + every,
            now=now,
        )
    await esc.schedule_case(ctx.case.id)


# -- what !status says --------------------------------------------------------------


async def status_lines(esc: Escalator, case_id: int) -> list[i18n.Message]:
    ctx = await esc.context(case_id)
    async with esc.sessions() as session:
        pending = await steps.list_pending(session, case_id=case_id, kinds=[steps.POLICY])
    lines = []
    for r in ctx.requests:
        if r.status not in ("pending", "expired"):
            continue
        state = (
            i18n.text(esc.lang, "escalation.status.acked", time=local_time(r.acknowledged_at))
            if r.acknowledged_at
            else i18n.text(esc.lang, "escalation.status.delivered")
            if r.delivered_at
            else i18n.text(esc.lang, "escalation.status.not_delivered")
        )
        if r.status == "expired":
            state = i18n.text(esc.lang, "escalation.status.expired")
        lines.append(
            i18n.render(
                esc.lang,
                "escalation.status.asked",
                name=r.signer_name,
                role=r.signer_role,
                time=local_time(r.created_at),
                state=state,
            )
        )
    if pending:
        nxt = pending[0]
        lines.append(
            i18n.render(
                esc.lang,
                "escalation.status.next",
                action=i18n.text(esc.lang, f"escalation.action.{nxt.action}"),
                time=local_time(nxt.due_at),
            )
        )
    return lines
