"""What each escalation step does: alert, remind, ask the next signer, alert the leads,
repeat, expire a link, and the channels outside Matrix.

Functions over the :class:`~handlers.escalation.Escalator` that runs them; each is
called once per claimed row, and again if a crash cut the run short or it failed
and is retried (at least once). So every message a step sends is keyed by what it
is (:func:`once`): the row, the purpose, the request. Running the step again posts
nothing new; a repeating policy plans each occurrence as a row of its own
(:func:`plan_repeat`), so each one rings again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from config import Municipality
from handlers import audit
from handlers.alerts import LinkLost, Undeliverable
from handlers.context import local_time
from handlers.notify import Alert
from storage import escalation as steps
from storage.models import Case, EscalationStep, SigningRequest

if TYPE_CHECKING:
    from handlers.escalation import Escalator

log = logging.getLogger(__name__)


def once(step: EscalationStep, purpose: str, *about: object) -> str:
    """What a message of ``step`` is, e.g. ``step:41:remind:7`` (its idempotency key)."""
    return ":".join(["step", str(step.id), purpose, *map(str, about)])


@dataclass
class StepContext:
    """A case as a step sees it: its requests and what its decision is about."""

    case: Case
    decision_type: str
    municipality: Municipality | None
    requests: list[SigningRequest]
    #: Whom the case asks: "committee_member" or "delegate" (the form's ``signer``).
    signer_kind: str = "committee_member"

    @property
    def open(self) -> list[SigningRequest]:
        return [r for r in self.requests if r.status == "pending"]


async def alert(esc: Escalator, step: EscalationStep, ctx: StepContext, now: datetime) -> None:
    request = esc.request_of(ctx, step.request_id)
    if request is None or request.status != "pending":
        return
    try:
        event_id = await esc.alerter.alert_signer(
            request,
            number=ctx.case.number,
            decision_type=ctx.decision_type,
            reminder=False,
            once=once(step, "alert", request.id),
        )
    except Undeliverable:
        await undeliverable(esc, step, ctx, request, now)
        return
    except LinkLost:
        await replace_lost_link(esc, ctx, request, now)
        return
    async with esc.sessions() as session, session.begin():
        await steps.mark_delivered(session, request_id=request.id, now=now, event_id=event_id)
        await audit.link_sent(session, request, "matrix", now)
        # The first alert of the request is this one (also when this is a run again
        # after a crash: the keyed send answered with the first run's event).
        first = (await steps.alert_events(session, request_id=request.id))[:1] == [event_id]
    if first:
        await esc.alerter.tell_case(
            ctx.case,
            "decision.requested",
            once=f"request:{request.id}:requested",
            name=request.signer_name,
            role=request.signer_role,
            time=local_time(now),
        )
    log.info("case %s: signing request %d delivered", ctx.case.number, request.id)


async def undeliverable(
    esc: Escalator, step: EscalationStep, ctx: StepContext, request: SigningRequest, now: datetime
) -> None:
    """Nobody can read it on that person's phone: say so, and move on at once."""
    log.warning(
        "case %s: signing request %d cannot be delivered (no trusted device)",
        ctx.case.number,
        request.id,
    )
    await esc.alerter.tell_case_and_leads(
        ctx.case,
        "escalation.undeliverable",
        once=once(step, "undeliverable", request.id),
        name=request.signer_name,
    )
    async with esc.sessions() as session, session.begin():
        pending = await steps.list_pending(
            session, case_id=ctx.case.id, kinds=[steps.CHANNEL, steps.POLICY]
        )
        others = [s for s in pending if s.kind == steps.CHANNEL and s.request_id == request.id]
        # Run again after a crash: the next signer asked for the first time still waits.
        asked = any(s.action == "next_signer" and s.due_at <= now for s in pending)
        if others:
            # Their next channel (SMS, call, e-mail) now rather than later.
            await steps.shift(session, step_ids=[others[0].id], by=now - others[0].due_at)
        elif not asked:
            seq = await steps.last_policy_seq(session, case_id=ctx.case.id) + 1
            await steps.add_step(
                session,
                case_id=ctx.case.id,
                kind=steps.POLICY,
                action="next_signer",
                seq=seq,
                due_at=now,
                now=now,
            )


async def other_channel(
    esc: Escalator, step: EscalationStep, ctx: StepContext, channel: str
) -> None:
    request = esc.request_of(ctx, step.request_id)
    if request is None or request.status != "pending" or request.acknowledged_at:
        return
    maker = esc.maker_of(ctx, request.signer_user_id)
    to = (maker.email if channel == "email" else maker.phone) if maker else None
    if esc.notifier is None or channel not in esc.notifier.channels() or not to:
        log.warning("escalation step %d: channel %s is not configured", step.id, channel)
        return
    alert = Alert(
        case_number=ctx.case.number,
        decision_type=ctx.decision_type,
        link=esc.alerter.link(request),
        language=esc.lang,
        reference=str(step.id),
    )
    await esc.notifier.send(channel, to, alert)
    await audit.link_sent(esc.sessions, request, channel, esc.clock())
    log.info("case %s: %s alert sent (step %d)", ctx.case.number, channel, step.id)


async def remind(esc: Escalator, step: EscalationStep, ctx: StepContext, now: datetime) -> None:
    reminded: list[str] = []
    for request in ctx.open:
        if request.expires_at <= now:
            continue
        try:
            event_id = await esc.alerter.alert_signer(
                request,
                number=ctx.case.number,
                decision_type=ctx.decision_type,
                reminder=True,
                once=once(step, "remind", request.id),
            )
        except Undeliverable:
            await esc.alerter.tell_case_and_leads(
                ctx.case,
                "escalation.undeliverable_reminder",
                once=once(step, "undeliverable", request.id),
                name=request.signer_name,
            )
            continue
        except LinkLost:
            await replace_lost_link(esc, ctx, request, now)
            continue
        async with esc.sessions() as session, session.begin():
            await steps.mark_delivered(session, request_id=request.id, now=now, event_id=event_id)
        reminded.append(request.signer_name)
    if reminded:
        await esc.alerter.tell_case(
            ctx.case,
            "escalation.reminded",
            once=once(step, "reminded"),
            names=", ".join(reminded),
            time=local_time(now),
        )


async def next_signer(
    esc: Escalator, step: EscalationStep, ctx: StepContext, now: datetime
) -> None:
    if ctx.municipality is None:
        await alert_leads(esc, ctx, once=once(step, "leads"))
        return
    asked = {r.signer_user_id for r in ctx.open}
    people = await esc.signers(ctx, now)  # a delegate form walks its delegates
    maker = next((d for d in people if d.user_id not in asked), None)
    if maker is None:
        await esc.alerter.tell_case_and_leads(
            ctx.case,
            "escalation.no_next_signer",
            once=once(step, "no_next_signer"),
            number=ctx.case.number,
        )
        return
    request = await esc.issue(ctx.case.id, maker, now)
    if request is None:
        return
    await esc.alerter.tell_case(
        ctx.case,
        "escalation.next_signer",
        once=f"request:{request.id}:next_signer",
        name=maker.name,
        role=maker.role,
    )


async def alert_leads(esc: Escalator, ctx: StepContext, *, once: str | None) -> None:
    """The leads' alert, in the duty room and the case room; ``once`` says what it is."""
    asked = ", ".join(r.signer_name for r in ctx.open) or "–"
    # The case's last status change is when it was sent for signing (fresh links
    # after an expiry or !skicka om do not restart the wait).
    since = ctx.case.updated_at
    await esc.alerter.tell_case_and_leads(
        ctx.case,
        "escalation.leads",
        once=once,
        number=ctx.case.number,
        since=local_time(since),
        asked=asked,
    )


async def plan_repeat(
    esc: Escalator, step: EscalationStep, ctx: StepContext, now: datetime
) -> None:
    every = esc.policy_of(ctx).repeat_every if ctx.municipality else None
    if every is None:
        return
    due = step.due_at + every
    while due <= now:  # after a long outage: one catch-up run, then the cadence
        due += every
    async with esc.sessions() as session, session.begin():
        planned = [
            s
            for s in await steps.list_pending(session, case_id=ctx.case.id, kinds=[steps.POLICY])
            if s.action == "repeat" and s.seq == step.seq + 1
        ]
        if planned:  # run again after a crash: the next occurrence is already there
            esc.wakeups.schedule(planned[0].id, planned[0].due_at)
            return
        added = await steps.add_step(
            session,
            case_id=ctx.case.id,
            kind=steps.POLICY,
            action="repeat",
            seq=step.seq + 1,
            due_at=due,
            now=now,
        )
    esc.wakeups.schedule(added.id, added.due_at)


async def expire(esc: Escalator, step: EscalationStep, ctx: StepContext, now: datetime) -> None:
    """A link that ran out unsigned is an escalation event: say so, send a new one."""
    request = esc.request_of(ctx, step.request_id)
    if request is None or request.status != "pending":
        return
    async with esc.sessions() as session, session.begin():
        expired = await steps.expire(session, request_id=request.id)
        await steps.cancel(session, case_id=ctx.case.id, request_ids=[request.id])
    if not expired:
        return
    await esc.alerter.tell_case_and_leads(
        ctx.case, "escalation.expired", once=once(step, "expired"), name=request.signer_name
    )
    maker = esc.maker_of(ctx, request.signer_user_id)
    if maker is not None:
        await esc.issue(ctx.case.id, maker, now)


async def replace_lost_link(
    esc: Escalator, ctx: StepContext, request: SigningRequest, now: datetime
) -> None:
    """The link key was lost (restored from an old backup): the same person gets a new
    link; the old one closes as replaced."""
    log.warning(
        "case %s: link of request %d cannot be repeated; replacing it", ctx.case.number, request.id
    )
    async with esc.sessions() as session, session.begin():
        await steps.close(session, request_ids=[request.id], status="replaced")
        esc.stopped(await steps.cancel(session, case_id=ctx.case.id, request_ids=[request.id]))
    maker = esc.maker_of(ctx, request.signer_user_id)
    if maker is not None:
        await esc.issue(ctx.case.id, maker, now)
