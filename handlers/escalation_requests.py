"""Acknowledgements ("I am on it") and what the worker asks for while a decision
waits: the alert again now (``!påminn``), fresh links (``!skicka om``).

A command is marked handled (``claim``) in the transaction that plans its work, so
the same command delivered again after a crash plans nothing a second time; the
alerts themselves go out as rows, keyed by row (see :mod:`handlers.escalation`).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncSession

from handlers import i18n
from handlers.context import local_time
from storage import escalation as steps
from storage import repo

if TYPE_CHECKING:
    from handlers.escalation import Escalator

log = logging.getLogger(__name__)

#: Marks the incoming command handled inside the session's transaction (``Ctx.claim``);
#: raises if it was handled before, rolling the transaction back.
Claim = Callable[[AsyncSession], Awaitable[None]]


async def acknowledge(
    esc: Escalator,
    user_id: str,
    via: str,
    *,
    request_ids: Iterable[int] | None = None,
    tell_later: Callable[[Coroutine[Any, Any, None]], None] | None = None,
) -> int:
    """ "I am on it": their other channels stop, the policy pauses for ``ack_window``.

    Returns how many waiting decisions were acknowledged (0: nothing to acknowledge).
    ``tell_later`` takes the telling of the case rooms, to run it in the background (a
    web request must not wait for Matrix); without it the rooms are told before this
    returns. The acknowledgement itself is stored either way.
    """
    now = esc.clock()
    wanted = set(request_ids) if request_ids is not None else None
    cancelled: list[int] = []
    told: list[tuple[int, str, timedelta]] = []
    paused: set[int] = set()
    async with esc.sessions() as session, session.begin():
        open_ = [
            r
            for r in await steps.open_requests(session, user_id=user_id)
            if wanted is None or r.id in wanted
        ]
        # Said once per window: reloading the signing page is no news.
        fresh = {
            r.id
            for r in open_
            if r.acknowledged_at is None
            or now - r.acknowledged_at >= window_of(esc, r.municipality_id)
        }
        acked = set(
            await steps.acknowledge(session, request_ids=[r.id for r in open_], now=now, via=via)
        )
        for request in (r for r in open_ if r.id in acked):
            cancelled += await steps.cancel(
                session,
                case_id=request.case_id,
                kinds=[steps.CHANNEL],
                user_id=user_id,
            )
            window = window_of(esc, request.municipality_id)
            policy = await steps.list_pending(
                session, case_id=request.case_id, kinds=[steps.POLICY]
            )
            if policy and policy[0].due_at < now + window:
                await steps.shift(
                    session,
                    step_ids=[s.id for s in policy],
                    by=now + window - policy[0].due_at,
                )
            paused.add(request.case_id)
            if request.id in fresh:
                told.append((request.case_id, request.signer_name, window))
    esc.wakeups.cancel(cancelled)
    for case_id in paused:
        await esc.schedule_case(case_id)

    async def tell() -> None:
        for case_id, name, window in told:
            ctx = await esc.context(case_id)
            log.info("case %s: a decision-maker acknowledged (%s)", ctx.case.number, via)
            await esc.alerter.tell_case(
                ctx.case,
                "escalation.acknowledged",
                name=name,
                via=i18n.text(esc.lang, f"escalation.via.{via}"),
                until=local_time(now + window),
            )

    if tell_later is not None and told:
        tell_later(tell())
    elif told:
        await tell()
    return len(paused)


async def acknowledge_step(esc: Escalator, reference: str, via: str) -> bool:
    """An acknowledgement through a channel whose reference is its step id."""
    if not reference.isdigit():
        return False
    async with esc.sessions() as session:
        step = await steps.get_step(session, step_id=int(reference))
    if step is None or step.user_id is None or step.request_id is None:
        return False
    return bool(await acknowledge(esc, step.user_id, via, request_ids=[step.request_id]))


def window_of(esc: Escalator, municipality_id: str) -> timedelta:
    municipality = esc.settings.municipality(municipality_id)
    name = municipality.escalation_policy if municipality else "standard"
    return esc.settings.escalation_policies[name].ack_window


# -- on request of the worker


async def remind_now(esc: Escalator, case_id: int, *, claim: Claim | None = None) -> int:
    """``!påminn``: the alert again, now, to everyone asked. Returns how many."""
    ctx = await esc.context(case_id)
    now = esc.clock()
    live = [r for r in ctx.open if r.expires_at > now]
    async with esc.sessions() as session, session.begin():
        if claim is not None:
            await claim(session)
        for request in live:
            await steps.add_step(
                session,
                case_id=case_id,
                kind=steps.CHANNEL,
                action="matrix",
                request_id=request.id,
                user_id=request.signer_user_id,
                due_at=now,
                now=now,
            )
    await esc.run_due(case_id)
    return len(live)


async def resend(
    esc: Escalator, case_id: int, actor: str, *, claim: Claim | None = None
) -> list[str]:
    """``!skicka om``: fresh links for everyone asked; the old links close.

    The documents are rendered first; then closing the old links, the new requests
    and their rows are one transaction: a crash leaves either the old links or the
    new ones, and the command handled only with the new ones."""
    ctx = await esc.context(case_id)
    now = esc.clock()
    wanted = [m for r in ctx.open if (m := esc.maker_of(ctx, r.signer_user_id))]
    if not wanted and ctx.requests:  # every link ran out: the latest signer again
        wanted = [m for m in [esc.maker_of(ctx, ctx.requests[-1].signer_user_id)] if m]
    if not wanted and ctx.municipality is not None:
        wanted = (await esc.signers(ctx, now))[:1]
    prepared = [p for maker in wanted if (p := await esc.prepare(case_id, maker))]
    async with esc.sessions() as session, session.begin():
        if claim is not None:
            await claim(session)
        old = [r.id for r in ctx.open]
        await steps.close(session, request_ids=old, status="replaced")
        cancelled = await steps.cancel(
            session, case_id=case_id, kinds=[steps.CHANNEL, steps.EXPIRE], request_ids=old
        )
        await repo.add_audit(
            session,
            case_id=case_id,
            actor=actor,
            action="signature.resent",
            now=now,
            detail={"closed": old},
        )
        issued = [
            request.signer_name
            for p in prepared
            if (request := await esc.create(session, case_id=case_id, prepared=p, now=now))
        ]
    esc.wakeups.cancel(cancelled)
    await esc.schedule_case(case_id)
    await esc.run_due(case_id)
    return issued
