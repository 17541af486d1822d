"""The escalation policy of a waiting decision, run from due rows in the database.

Entering ``awaiting_signature`` writes the whole plan as rows (policy steps, each
signer's channels, each link's expiry) in the same transaction as the status
change; leaving it cancels every pending row (see :func:`handlers.case_state.transition`).
Scheduler jobs only wake :meth:`Escalator.run_due`, which claims each due row with
compare-and-set before acting: a job that runs twice, a job and the periodic check
together, or a restart in between act once. Missed rows run once, late, in order,
and say how late.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from config import DecisionMaker, Municipality, Settings
from handlers import i18n
from handlers.alerts import Alerter, Undeliverable
from handlers.case_state import CaseStatus
from handlers.context import Clock, local_time
from handlers.issuing import Issuer
from handlers.notify import Alert, Notifier, NotifyError
from storage import decisions, repo
from storage import escalation as steps
from storage.models import Case, EscalationStep, SigningRequest

log = logging.getLogger(__name__)

OnCall = Callable[[str, datetime], Awaitable[list[DecisionMaker]]]
#: A channel that fails is tried again after 5 s, 10 s, 20 s ... up to this many times.
MAX_ATTEMPTS = 6
BACKOFF_BASE = timedelta(seconds=5)
BACKOFF_CAP = timedelta(minutes=5)
#: A step this late (the bot was down) says so when it runs.
LATE_NOTICE = timedelta(seconds=30)


class Wakeups(Protocol):
    """Thin wake-ups at a row's due time (the bot implements it with APScheduler)."""

    def schedule(self, step_id: int, at: datetime) -> None: ...

    def cancel(self, step_ids: Iterable[int]) -> None: ...


@dataclass
class NoWakeups:
    """For unit tests: remembers what would have been scheduled."""

    scheduled: dict[int, datetime] = field(default_factory=dict)

    def schedule(self, step_id: int, at: datetime) -> None:
        self.scheduled[step_id] = at

    def cancel(self, step_ids: Iterable[int]) -> None:
        for step_id in step_ids:
            self.scheduled.pop(step_id, None)


@dataclass
class _Context:
    case: Case
    decision_type: str
    municipality: Municipality | None
    requests: list[SigningRequest]

    @property
    def open(self) -> list[SigningRequest]:
        return [r for r in self.requests if r.status == "pending"]


@dataclass
class Escalator:
    settings: Settings
    sessions: async_sessionmaker[AsyncSession]
    clock: Clock
    alerter: Alerter
    issuer: Issuer
    on_call: OnCall
    wakeups: Wakeups = field(default_factory=NoWakeups)
    notifier: Notifier | None = None
    _locks: dict[int, asyncio.Lock] = field(default_factory=dict, init=False, repr=False)

    @property
    def lang(self) -> str:
        return self.settings.duty.language

    # -- planning (inside the caller's transaction) ---------------------------------

    async def plan(
        self,
        session: AsyncSession,
        *,
        case_id: int,
        request: SigningRequest,
        municipality: Municipality,
        maker: DecisionMaker,
        now: datetime,
    ) -> None:
        """The policy's steps from this first request, and the signer's channels."""
        policy = self.settings.escalation_policies[municipality.escalation_policy]
        base = request.created_at
        for seq, step in enumerate(policy.steps):
            await steps.add_step(
                session,
                case_id=case_id,
                kind=steps.POLICY,
                action=step.action,
                seq=seq,
                due_at=base + step.after,
                now=now,
            )
        if policy.repeat_every is not None:
            last = policy.steps[-1].after if policy.steps else timedelta(0)
            await steps.add_step(
                session,
                case_id=case_id,
                kind=steps.POLICY,
                action="repeat",
                seq=len(policy.steps),
                due_at=base + last + policy.repeat_every,
                now=now,
            )
        await self.plan_signer(
            session, case_id=case_id, request=request, municipality=municipality, maker=maker
        )

    async def plan_signer(
        self,
        session: AsyncSession,
        *,
        case_id: int,
        request: SigningRequest,
        municipality: Municipality,
        maker: DecisionMaker,
    ) -> None:
        """Matrix at once, the person's other channels as their rule says, the expiry."""
        for rule in municipality.rule_for(maker):
            await steps.add_step(
                session,
                case_id=case_id,
                kind=steps.CHANNEL,
                action=rule.via,
                request_id=request.id,
                user_id=maker.user_id,
                due_at=request.created_at + rule.after,
                now=request.created_at,
            )
        await steps.add_step(
            session,
            case_id=case_id,
            kind=steps.EXPIRE,
            action="expire",
            request_id=request.id,
            user_id=maker.user_id,
            due_at=request.expires_at,
            now=request.created_at,
        )

    # -- after commit ------------------------------------------------------------------

    async def started(self, case_id: int) -> None:
        """Wake-ups for the case's pending rows; what is due now runs now."""
        await self._schedule_case(case_id)
        await self.run_due(case_id)

    def stopped(self, step_ids: Iterable[int]) -> None:
        self.wakeups.cancel(step_ids)

    async def _schedule_case(self, case_id: int) -> None:
        async with self.sessions() as session:
            pending = await steps.list_pending(session, case_id=case_id)
        for step in pending:
            self.wakeups.schedule(step.id, step.due_at)

    async def resume(self) -> None:
        """At start-up: a wake-up for every pending row, then the invariant check."""
        async with self.sessions() as session:
            pending = await steps.list_pending(session)
        for step in pending:
            self.wakeups.schedule(step.id, step.due_at)
        await self.check()

    async def wake(self, step_id: int) -> None:
        """A scheduler job's whole work: run whatever is due in the step's case."""
        async with self.sessions() as session:
            step = await steps.get_step(session, step_id=step_id)
        if step is not None and step.status == steps.PENDING:
            await self.run_due(step.case_id)

    # -- running due rows ----------------------------------------------------------------

    async def run_due(self, case_id: int) -> int:
        """Claim and run every due row of the case, earliest first. Returns how many."""
        ran = 0
        async with self._locks.setdefault(case_id, asyncio.Lock()):
            while True:
                now = self.clock()
                async with self.sessions() as session:
                    due = await steps.list_pending(session, case_id=case_id, due_before=now)
                progressed = False
                for step in due:
                    async with self.sessions() as session, session.begin():
                        claimed = await steps.claim(session, step_id=step.id, now=now)
                    if not claimed:
                        continue
                    progressed = True
                    ran += 1
                    await self._run_one(step, now)
                if not progressed:
                    return ran

    async def _run_one(self, step: EscalationStep, now: datetime) -> None:
        try:
            ctx = await self._context(step.case_id)
            if ctx.case.status != CaseStatus.AWAITING_SIGNATURE.value:
                return  # decided meanwhile; the transition cancelled the rest
            await self._act(step, ctx, now)
        except Exception as exc:
            await self._failed(step, now, exc)

    async def _failed(self, step: EscalationStep, now: datetime, exc: Exception) -> None:
        retryable = not isinstance(exc, NotifyError) or exc.retryable
        attempts = step.attempts + 1
        # Who, what and how; never content (logs hold no personal data).
        log.warning(
            "escalation step %d (%s %s) failed, attempt %d: %s",
            step.id,
            step.kind,
            step.action,
            attempts,
            getattr(exc, "code", type(exc).__name__),
        )
        alert_failed = step.kind == steps.CHANNEL and step.action == "matrix"
        if alert_failed and attempts == 1:
            # The phone did not ring: the worker and the leads know at once, not after
            # the retries (which go on meanwhile).
            ctx = await self._context(step.case_id)
            request = self._request(ctx, step.request_id)
            name = request.signer_name if request else "?"
            await self.alerter.tell_case_and_leads(ctx.case, "decision.alert_failed", name=name)
        if step.kind == steps.CHANNEL and retryable and attempts < MAX_ATTEMPTS:
            delay = min(BACKOFF_BASE * (2 ** (attempts - 1)), BACKOFF_CAP)
            async with self.sessions() as session, session.begin():
                await steps.retry_at(session, step_id=step.id, due_at=now + delay)
            self.wakeups.schedule(step.id, now + delay)
            return
        async with self.sessions() as session, session.begin():
            await steps.mark(session, step_id=step.id, status=steps.FAILED)

    async def _context(self, case_id: int) -> _Context:
        async with self.sessions() as session:
            case = await repo.get_case(session, case_id=case_id)
            assert case is not None
            report = await repo.get_report(session, case_id=case_id)
            requests = await _requests(session, case_id)
        submitted = (report.submitted or {}) if report else {}
        decision_type = str(submitted.get("form", {}).get("decision_type", ""))
        municipality = self.settings.municipality(case.municipality_id or "")
        return _Context(case, decision_type, municipality, requests)

    @staticmethod
    def _request(ctx: _Context, request_id: int | None) -> SigningRequest | None:
        return next((r for r in ctx.requests if r.id == request_id), None)

    async def _act(self, step: EscalationStep, ctx: _Context, now: datetime) -> None:
        late = now - step.due_at
        match (step.kind, step.action):
            case (steps.CHANNEL, "matrix"):
                await self._alert(step, ctx, now)
            case (steps.CHANNEL, channel):
                await self._other_channel(step, ctx, channel)
            case (steps.EXPIRE, _):
                await self._expire(step, ctx, now)
            case (steps.POLICY, "remind"):
                await self._remind(ctx, now)
            case (steps.POLICY, "next_signer"):
                await self._next_signer(ctx, now)
            case (steps.POLICY, "alert_leads"):
                await self._alert_leads(ctx)
            case (steps.POLICY, "repeat"):
                await self._alert_leads(ctx)
                await self._remind(ctx, now)
                await self._plan_repeat(step, ctx, now)
            case _:
                log.warning("unknown escalation step %s/%s", step.kind, step.action)
        if step.kind == steps.POLICY and late > LATE_NOTICE:
            await self.alerter.tell_case(
                ctx.case,
                "escalation.late",
                due=local_time(step.due_at),
                minutes=max(1, round(late.total_seconds() / 60)),
            )

    # -- the actions --------------------------------------------------------------------

    async def _alert(self, step: EscalationStep, ctx: _Context, now: datetime) -> None:
        request = self._request(ctx, step.request_id)
        if request is None or request.status != "pending":
            return
        try:
            event_id = await self.alerter.alert_signer(
                request, number=ctx.case.number, decision_type=ctx.decision_type, reminder=False
            )
        except Undeliverable:
            await self._undeliverable(ctx, request, now)
            return
        first = request.delivered_at is None
        async with self.sessions() as session, session.begin():
            await steps.mark_delivered(session, request_id=request.id, now=now, event_id=event_id)
        if first:
            await self.alerter.tell_case(
                ctx.case,
                "decision.requested",
                name=request.signer_name,
                role=request.signer_role,
                time=local_time(now),
            )
        log.info("case %s: signing request %d delivered", ctx.case.number, request.id)

    async def _undeliverable(self, ctx: _Context, request: SigningRequest, now: datetime) -> None:
        """Nobody can read it on that person's phone: say so, and move on at once."""
        log.warning(
            "case %s: signing request %d cannot be delivered (no trusted device)",
            ctx.case.number,
            request.id,
        )
        await self.alerter.tell_case_and_leads(
            ctx.case, "escalation.undeliverable", name=request.signer_name
        )
        async with self.sessions() as session, session.begin():
            others = [
                s
                for s in await steps.list_pending(
                    session, case_id=ctx.case.id, kinds=[steps.CHANNEL]
                )
                if s.request_id == request.id
            ]
            if others:
                # Their next channel (SMS, call, e-mail) now rather than later.
                await steps.shift(session, step_ids=[others[0].id], by=now - others[0].due_at)
            else:
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

    async def _other_channel(self, step: EscalationStep, ctx: _Context, channel: str) -> None:
        request = self._request(ctx, step.request_id)
        if request is None or request.status != "pending" or request.acknowledged_at:
            return
        maker = self._maker(ctx, request.signer_user_id)
        to = (maker.email if channel == "email" else maker.phone) if maker else None
        if self.notifier is None or channel not in self.notifier.channels() or not to:
            log.warning("escalation step %d: channel %s is not configured", step.id, channel)
            return
        alert = Alert(
            case_number=ctx.case.number,
            decision_type=ctx.decision_type,
            link=self.alerter.link(request),
            language=self.lang,
            reference=str(step.id),
        )
        await self.notifier.send(channel, to, alert)
        log.info("case %s: %s alert sent (step %d)", ctx.case.number, channel, step.id)

    def _maker(self, ctx: _Context, user_id: str) -> DecisionMaker | None:
        if ctx.municipality is None:
            return None
        return next((d for d in ctx.municipality.decision_makers if d.user_id == user_id), None)

    async def _remind(self, ctx: _Context, now: datetime) -> None:
        reminded: list[str] = []
        for request in ctx.open:
            if request.expires_at <= now:
                continue
            try:
                event_id = await self.alerter.alert_signer(
                    request, number=ctx.case.number, decision_type=ctx.decision_type, reminder=True
                )
            except Undeliverable:
                await self.alerter.tell_case_and_leads(
                    ctx.case, "escalation.undeliverable", name=request.signer_name
                )
                continue
            async with self.sessions() as session, session.begin():
                await steps.mark_delivered(
                    session, request_id=request.id, now=now, event_id=event_id
                )
            reminded.append(request.signer_name)
        if reminded:
            await self.alerter.tell_case(
                ctx.case, "escalation.reminded", names=", ".join(reminded), time=local_time(now)
            )

    async def _next_signer(self, ctx: _Context, now: datetime) -> None:
        if ctx.municipality is None:
            await self._alert_leads(ctx)
            return
        asked = {r.signer_user_id for r in ctx.open}
        people = await self.on_call(ctx.municipality.id, now)
        maker = next((d for d in people if d.user_id not in asked), None)
        if maker is None:
            await self.alerter.tell_case_and_leads(ctx.case, "escalation.no_next_signer")
            return
        if not await self.issue(ctx.case.id, maker, now):
            return
        await self.alerter.tell_case(
            ctx.case, "escalation.next_signer", name=maker.name, role=maker.role
        )

    async def issue(self, case_id: int, maker: DecisionMaker, now: datetime) -> bool:
        """A new request (its own link) for ``maker``; False if the case moved on."""
        ctx = await self._context(case_id)
        if ctx.municipality is None:
            return False
        async with self.sessions() as session:
            report = await repo.get_report(session, case_id=case_id)
        if report is None or report.submitted is None:
            return False
        prepared = await self.issuer.prepare(report.submitted, ctx.municipality, maker)
        async with self.sessions() as session, session.begin():
            case = await repo.get_case(session, case_id=case_id)
            if case is None or case.status != CaseStatus.AWAITING_SIGNATURE.value:
                return False
            request = await self.issuer.create(session, case_id=case_id, prepared=prepared, now=now)
            await self.plan_signer(
                session,
                case_id=case_id,
                request=request,
                municipality=ctx.municipality,
                maker=maker,
            )
            await repo.add_audit(
                session,
                case_id=case_id,
                actor="socialjour",
                action="signature.requested",
                now=now,
                detail={"request": request.id, "signer": maker.user_id},
            )
        await self._schedule_case(case_id)
        return True

    async def _alert_leads(self, ctx: _Context) -> None:
        asked = ", ".join(r.signer_name for r in ctx.open) or "–"
        since = min((r.created_at for r in ctx.open), default=ctx.case.updated_at)
        await self.alerter.tell_case_and_leads(
            ctx.case,
            "escalation.leads",
            number=ctx.case.number,
            since=local_time(since),
            asked=asked,
        )

    async def _plan_repeat(self, step: EscalationStep, ctx: _Context, now: datetime) -> None:
        every = self._policy(ctx).repeat_every if ctx.municipality else None
        if every is None:
            return
        due = step.due_at + every
        while due <= now:  # after a long outage: one catch-up run, then the cadence
            due += every
        async with self.sessions() as session, session.begin():
            added = await steps.add_step(
                session,
                case_id=ctx.case.id,
                kind=steps.POLICY,
                action="repeat",
                seq=step.seq + 1,
                due_at=due,
                now=now,
            )
        self.wakeups.schedule(added.id, added.due_at)

    def _policy(self, ctx: _Context) -> Any:
        assert ctx.municipality is not None
        return self.settings.escalation_policies[ctx.municipality.escalation_policy]

    async def _expire(self, step: EscalationStep, ctx: _Context, now: datetime) -> None:
        """A link that ran out unsigned is an escalation event: say so, send a new one."""
        request = self._request(ctx, step.request_id)
        if request is None or request.status != "pending":
            return
        async with self.sessions() as session, session.begin():
            expired = await steps.expire(session, request_id=request.id)
            await steps.cancel(session, case_id=ctx.case.id, request_ids=[request.id])
        if not expired:
            return
        await self.alerter.tell_case_and_leads(
            ctx.case, "escalation.expired", name=request.signer_name
        )
        maker = self._maker(ctx, request.signer_user_id)
        if maker is not None:
            await self.issue(ctx.case.id, maker, now)

    # -- acknowledgement ----------------------------------------------------------------

    async def acknowledge(
        self, user_id: str, via: str, *, request_ids: Iterable[int] | None = None
    ) -> int:
        """ "I am on it": their other channels stop, the policy pauses for ``ack_window``.

        Returns how many waiting decisions were acknowledged (0: nothing to acknowledge).
        """
        now = self.clock()
        wanted = set(request_ids) if request_ids is not None else None
        cancelled: list[int] = []
        told: list[tuple[int, str, timedelta]] = []
        async with self.sessions() as session, session.begin():
            open_ = [
                r
                for r in await steps.open_requests(session, user_id=user_id)
                if wanted is None or r.id in wanted
            ]
            acked = set(
                await steps.acknowledge(
                    session, request_ids=[r.id for r in open_], now=now, via=via
                )
            )
            for request in (r for r in open_ if r.id in acked):
                cancelled += await steps.cancel(
                    session,
                    case_id=request.case_id,
                    kinds=[steps.CHANNEL],
                    user_id=user_id,
                )
                window = self._window(request.municipality_id)
                policy = await steps.list_pending(
                    session, case_id=request.case_id, kinds=[steps.POLICY]
                )
                if policy and policy[0].due_at < now + window:
                    await steps.shift(
                        session,
                        step_ids=[s.id for s in policy],
                        by=now + window - policy[0].due_at,
                    )
                told.append((request.case_id, request.signer_name, window))
        self.wakeups.cancel(cancelled)
        for case_id, name, window in told:
            await self._schedule_case(case_id)
            ctx = await self._context(case_id)
            await self.alerter.tell_case(
                ctx.case,
                "escalation.acknowledged",
                name=name,
                via=i18n.text(self.lang, f"escalation.via.{via}"),
                until=local_time(now + window),
            )
        return len(told)

    async def acknowledge_step(self, reference: str, via: str) -> bool:
        """An acknowledgement through a channel whose reference is its step id."""
        if not reference.isdigit():
            return False
        async with self.sessions() as session:
            step = await steps.get_step(session, step_id=int(reference))
        if step is None or step.user_id is None or step.request_id is None:
            return False
        return bool(await self.acknowledge(step.user_id, via, request_ids=[step.request_id]))

    def _window(self, municipality_id: str) -> timedelta:
        municipality = self.settings.municipality(municipality_id)
        name = municipality.escalation_policy if municipality else "standard"
        return self.settings.escalation_policies[name].ack_window

    # -- on request of the worker ----------------------------------------------------------

    async def remind_now(self, case_id: int) -> int:
        """``!påminn``: the alert again, now, to everyone asked. Returns how many."""
        ctx = await self._context(case_id)
        now = self.clock()
        live = [r for r in ctx.open if r.expires_at > now]
        async with self.sessions() as session, session.begin():
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
        await self.run_due(case_id)
        return len(live)

    async def resend(self, case_id: int, actor: str) -> list[str]:
        """``!skicka om``: fresh links for everyone asked; the old links close."""
        ctx = await self._context(case_id)
        now = self.clock()
        wanted = [m for r in ctx.open if (m := self._maker(ctx, r.signer_user_id))]
        if not wanted and ctx.requests:  # every link ran out: the latest signer again
            wanted = [m for m in [self._maker(ctx, ctx.requests[-1].signer_user_id)] if m]
        if not wanted and ctx.municipality is not None:
            wanted = (await self.on_call(ctx.municipality.id, now))[:1]
        async with self.sessions() as session, session.begin():
            old = [r.id for r in ctx.open]
            await steps.close(session, request_ids=old, status="superseded")
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
        self.wakeups.cancel(cancelled)
        issued = [m.name for m in wanted if await self.issue(case_id, m, now)]
        await self.run_due(case_id)
        return issued

    # -- the invariant -----------------------------------------------------------------------

    async def check(self) -> None:
        """Every waiting case has a live link that was delivered or is being escalated.

        At start-up and every minute: runs rows whose wake-up was lost, cancels rows
        of cases that moved on, and repairs a case that breaks the promise, telling
        its room and the duty leads.
        """
        now = self.clock()
        async with self.sessions() as session:
            waiting = await repo.list_cases(session, statuses=[CaseStatus.AWAITING_SIGNATURE.value])
            stale = [
                s
                for s in await steps.list_pending(session)
                if s.case_id not in {c.id for c in waiting}
            ]
        if stale:
            async with self.sessions() as session, session.begin():
                for case_id in {s.case_id for s in stale}:
                    self.wakeups.cancel(await steps.cancel(session, case_id=case_id))
        for case in waiting:
            try:
                await self.run_due(case.id)
                await self._repair(case.id, now)
            except Exception:
                log.exception("case %s: the escalation check failed", case.number)

    async def _repair(self, case_id: int, now: datetime) -> None:
        ctx = await self._context(case_id)
        if ctx.case.status != CaseStatus.AWAITING_SIGNATURE.value:
            return
        async with self.sessions() as session:
            pending = await steps.list_pending(session, case_id=case_id)
        live = [r for r in ctx.open if r.expires_at > now]
        if not live:
            targets = [self._maker(ctx, r.signer_user_id) for r in ctx.requests[-1:]]
            maker = next((m for m in targets if m), None)
            if maker is None and ctx.municipality is not None:
                maker = next(iter(await self.on_call(ctx.municipality.id, now)), None)
            log.warning("case %s waits without a live signing link; repairing", ctx.case.number)
            if maker is None or not await self.issue(case_id, maker, now):
                await self.alerter.tell_case_and_leads(ctx.case, "escalation.no_next_signer")
                return
            if not any(s.kind == steps.POLICY for s in pending) and ctx.municipality:
                await self._restart_policy(ctx, now)
            await self.alerter.tell_case_and_leads(ctx.case, "escalation.repaired", name=maker.name)
            await self.run_due(case_id)
            return
        delivered = any(r.delivered_at is not None for r in live)
        if not delivered and not pending:
            log.warning(
                "case %s: nothing delivered and nothing planned; repairing", ctx.case.number
            )
            await self._restart_policy(ctx, now)
            await self.remind_now(case_id)
            await self._alert_leads(ctx)

    async def _restart_policy(self, ctx: _Context, now: datetime) -> None:
        """A repeat of ``alert_leads`` and reminders on the policy's cadence."""
        policy = self._policy(ctx)
        every = policy.repeat_every or (policy.steps[-1].after if policy.steps else None)
        if every is None:
            return
        async with self.sessions() as session, session.begin():
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
        await self._schedule_case(ctx.case.id)

    # -- what !status says --------------------------------------------------------------

    async def status_lines(self, case_id: int) -> list[i18n.Message]:
        ctx = await self._context(case_id)
        async with self.sessions() as session:
            pending = await steps.list_pending(session, case_id=case_id, kinds=[steps.POLICY])
        lines = []
        for r in ctx.requests:
            if r.status not in ("pending", "expired"):
                continue
            state = (
                i18n.text(self.lang, "escalation.status.acked", time=local_time(r.acknowledged_at))
                if r.acknowledged_at
                else i18n.text(self.lang, "escalation.status.delivered")
                if r.delivered_at
                else i18n.text(self.lang, "escalation.status.not_delivered")
            )
            if r.status == "expired":
                state = i18n.text(self.lang, "escalation.status.expired")
            lines.append(
                i18n.render(
                    self.lang,
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
                    self.lang,
                    "escalation.status.next",
                    action=i18n.text(self.lang, f"escalation.action.{nxt.action}"),
                    time=local_time(nxt.due_at),
                )
            )
        return lines


async def _requests(session: AsyncSession, case_id: int) -> list[SigningRequest]:
    return await decisions.list_signing_requests(session, case_id=case_id)
