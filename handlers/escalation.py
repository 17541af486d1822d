"""The escalation policy of a waiting decision, run from due rows in the database.

Entering ``awaiting_signature`` writes the whole plan as rows (policy steps, each
signer's channels, each link's expiry) in the same transaction as the status
change; leaving it cancels every pending row (see :func:`handlers.case_state.transition`).
Scheduler jobs only wake :meth:`Escalator.run_due`, which claims each due row with
compare-and-set before acting: a job that runs twice, or a job and the periodic
check together, act once. A row stays ``running`` until its work is done, so a
crash in the middle runs it again at start-up instead of losing it. Rows missed
while the bot was down run once, late, in order, and say how late.

Running a row again sends nothing twice: each message is keyed by the row and what
it says (:func:`handlers.escalation_actions.once`), so the homeserver answers a
repeat with the first event instead of posting it again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from config import DecisionMaker, EscalationPolicy, Municipality, Settings
from config.settings import Signer, SignerKind
from handlers import audit, escalation_requests, escalation_watch, i18n
from handlers import escalation_actions as actions
from handlers.alerts import Alerter
from handlers.case_state import CaseStatus
from handlers.context import LOCAL_TZ, Clock, local_time
from handlers.escalation_actions import StepContext
from handlers.escalation_requests import Claim
from handlers.issuing import Issuer, Prepared, candidates, signer_in, signer_kind_of
from handlers.notify import Notifier, NotifyError
from storage import decisions, repo
from storage import escalation as steps
from storage.models import EscalationStep, SigningRequest

log = logging.getLogger(__name__)

OnCall = Callable[[str, datetime], Awaitable[list[DecisionMaker]]]
#: A step that fails (a channel, a homeserver away) is tried again after 5 s, 10 s,
#: 20 s ... up to this many times; then the case room and the leads are told.
MAX_ATTEMPTS = 6
BACKOFF_BASE = timedelta(seconds=5)
BACKOFF_CAP = timedelta(minutes=5)
#: A step missed while the bot was down, and this late, says so when it runs.
LATE_NOTICE = timedelta(seconds=5)
#: A step delayed while the bot ran (a lost wake-up caught by the check) says so too.
LATE_DELAYED = timedelta(seconds=30)


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
class Escalator:
    settings: Settings
    sessions: async_sessionmaker[AsyncSession]
    clock: Clock
    alerter: Alerter
    issuer: Issuer
    on_call: OnCall
    wakeups: Wakeups = field(default_factory=NoWakeups)
    notifier: Notifier | None = None
    #: Told how many seconds after its due time each claimed step started (the bot's
    #: metrics).
    observe_lateness: Callable[[float], None] | None = None
    _locks: dict[int, asyncio.Lock] = field(default_factory=dict, init=False, repr=False)
    #: Steps due before this moment were missed while the bot was down.
    started_at: datetime = field(init=False)

    def __post_init__(self) -> None:
        self.started_at = self.clock()

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
        maker: Signer,
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
        maker: Signer,
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
        await self.schedule_case(case_id)
        await self.run_due(case_id)

    def stopped(self, step_ids: Iterable[int]) -> None:
        self.wakeups.cancel(step_ids)

    async def schedule_case(self, case_id: int) -> None:
        async with self.sessions() as session:
            pending = await steps.list_pending(session, case_id=case_id)
        for step in pending:
            self.wakeups.schedule(step.id, step.due_at)

    async def resume(self) -> None:
        """At start-up: steps a crash interrupted run again; a wake-up for every pending
        row; then the invariant check (which runs what is overdue, in order)."""
        async with self.sessions() as session, session.begin():
            interrupted = await steps.release_running(session)
        for step in interrupted:
            log.warning("escalation step %d was interrupted by a crash; running it again", step.id)
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
                    claimed_at = self.clock()  # when it really starts, after the ones before
                    async with self.sessions() as session, session.begin():
                        claimed = await steps.claim(session, step_id=step.id, now=claimed_at)
                    if not claimed:
                        continue
                    progressed = True
                    ran += 1
                    self._observe_lateness(step, claimed_at)
                    await self._run_one(step, claimed_at)
                if not progressed:
                    return ran

    def _observe_lateness(self, step: EscalationStep, claimed_at: datetime) -> None:
        if self.observe_lateness is None:
            return
        try:
            self.observe_lateness((claimed_at - step.due_at).total_seconds())
        except Exception:
            log.exception("could not record an escalation step's lateness")

    async def _run_one(self, step: EscalationStep, now: datetime) -> None:
        try:
            ctx = await self.context(step.case_id)
            if ctx.case.status == CaseStatus.AWAITING_SIGNATURE.value:
                await self._act(step, ctx, now)
            # (otherwise decided meanwhile; the transition cancelled the rest)
        except Exception as exc:
            await self._failed(step, now, exc)
            return
        async with self.sessions() as session, session.begin():
            await steps.mark(session, step_id=step.id, status=steps.DONE)
            await audit.escalation_step(session, step, now)

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
            ctx = await self.context(step.case_id)
            request = self.request_of(ctx, step.request_id)
            name = request.signer_name if request else "?"
            await self.alerter.tell_case_and_leads(
                ctx.case,
                "decision.alert_failed",
                once=actions.once(step, "alert_failed"),
                name=name,
            )
        if retryable and attempts < MAX_ATTEMPTS:
            delay = min(BACKOFF_BASE * (2 ** (attempts - 1)), BACKOFF_CAP)
            async with self.sessions() as session, session.begin():
                await steps.retry_at(session, step_id=step.id, due_at=now + delay)
            self.wakeups.schedule(step.id, now + delay)
            return
        async with self.sessions() as session, session.begin():
            await steps.mark(session, step_id=step.id, status=steps.FAILED)
        if step.kind == steps.CHANNEL and step.action != "matrix":
            # Given up on this channel: people who can call must know it did not ring.
            ctx = await self.context(step.case_id)
            request = self.request_of(ctx, step.request_id)
            await self.alerter.tell_case_and_leads(
                ctx.case,
                "escalation.channel_failed",
                once=actions.once(step, "given_up"),
                channel=i18n.text(self.lang, f"escalation.channel.{step.action}"),
                name=request.signer_name if request else "?",
            )
        elif step.kind != steps.CHANNEL:
            # A policy step or an expiry that could not be carried out: say so.
            ctx = await self.context(step.case_id)
            action = "expire" if step.kind == steps.EXPIRE else step.action
            await self.alerter.tell_case_and_leads(
                ctx.case,
                "escalation.step_failed",
                once=actions.once(step, "given_up"),
                action=i18n.text(self.lang, f"escalation.action.{action}"),
                number=ctx.case.number,
            )

    async def context(self, case_id: int) -> StepContext:
        async with self.sessions() as session:
            case = await repo.get_case(session, case_id=case_id)
            assert case is not None
            report = await repo.get_report(session, case_id=case_id)
            requests = await _requests(session, case_id)
        submitted = (report.submitted or {}) if report else {}
        decision_type = str(submitted.get("form", {}).get("decision_type", ""))
        municipality = self.settings.municipality(case.municipality_id or "")
        # Whom the case asks: as its requests say once there are any, else its form.
        kind = requests[0].signer_kind if requests else signer_kind_of(self.settings, submitted)
        return StepContext(case, decision_type, municipality, requests, signer_kind=kind)

    @staticmethod
    def request_of(ctx: StepContext, request_id: int | None) -> SigningRequest | None:
        return next((r for r in ctx.requests if r.id == request_id), None)

    async def _act(self, step: EscalationStep, ctx: StepContext, now: datetime) -> None:
        # How late the step *started*: run again after a crash, it measures its first
        # start (``step`` is the row as it was before this claim), so it repeats at
        # most what the first run said, and that is keyed.
        started = step.fired_at if step.attempts and step.fired_at else now
        late = started - step.due_at
        match (step.kind, step.action):
            case (steps.CHANNEL, "matrix"):
                await actions.alert(self, step, ctx, now)
            case (steps.CHANNEL, channel):
                await actions.other_channel(self, step, ctx, channel)
            case (steps.EXPIRE, _):
                await actions.expire(self, step, ctx, now)
            case (steps.POLICY, "remind"):
                await actions.remind(self, step, ctx, now)
            case (steps.POLICY, "next_signer"):
                await actions.next_signer(self, step, ctx, now)
            case (steps.POLICY, "alert_leads"):
                await actions.alert_leads(self, ctx, once=actions.once(step, "leads"))
            case (steps.POLICY, "repeat"):
                await actions.alert_leads(self, ctx, once=actions.once(step, "leads"))
                await actions.remind(self, step, ctx, now)
                await actions.plan_repeat(self, step, ctx, now)
            case _:
                log.warning("unknown escalation step %s/%s", step.kind, step.action)
        missed = step.due_at < self.started_at  # due while the bot was down
        if step.kind == steps.POLICY and late > (LATE_NOTICE if missed else LATE_DELAYED):
            await self.alerter.tell_case(
                ctx.case,
                "escalation.late" if missed else "escalation.late_delayed",
                once=actions.once(step, "late"),  # a run again keeps the first "N min late"
                due=local_time(step.due_at),
                late=_how_late(late),
            )

    # -- the actions --------------------------------------------------------------------

    def maker_of(self, ctx: StepContext, user_id: str) -> Signer | None:
        """The decision-maker ``user_id`` if they may still decide today: a repair or a
        resend never gives a new link to someone whose appointment has lapsed (LVU 6 §
        second paragraph, LVM 13 §); the callers then ask whoever is on call. For a
        delegate form, a delegate of the municipality (never a committee member)."""
        if ctx.municipality is None:
            return None
        maker = signer_in(ctx.municipality, ctx.signer_kind, user_id)
        today = self.clock().astimezone(LOCAL_TZ).date()
        return maker if maker is not None and maker.may_decide_on(today) else None

    async def signers(self, ctx: StepContext, now: datetime) -> list[Signer]:
        """Whom the case may ask now, first one first: the committee members on call,
        or for a delegate form the municipality's delegates in order."""
        if ctx.municipality is None:
            return []
        kind: SignerKind = "delegate" if ctx.signer_kind == "delegate" else "committee_member"
        return await candidates(kind, ctx.municipality, self.on_call, now)

    async def issue(self, case_id: int, maker: Signer, now: datetime) -> SigningRequest | None:
        """A new request (its own link) for ``maker``; None if the case moved on."""
        prepared = await self.prepare(case_id, maker)
        if prepared is None:
            return None
        async with self.sessions() as session, session.begin():
            request = await self.create(session, case_id=case_id, prepared=prepared, now=now)
        if request is not None:
            await self.schedule_case(case_id)
        return request

    async def prepare(self, case_id: int, maker: Signer) -> Prepared | None:
        """The decision rendered for ``maker`` (before any transaction); None if the
        case has no municipality or no submitted report."""
        ctx = await self.context(case_id)
        if ctx.municipality is None:
            return None
        async with self.sessions() as session:
            report = await repo.get_report(session, case_id=case_id)
        if report is None or report.submitted is None:
            return None
        return await self.issuer.prepare(report.submitted, ctx.municipality, maker)

    async def create(
        self, session: AsyncSession, *, case_id: int, prepared: Prepared, now: datetime
    ) -> SigningRequest | None:
        """In the caller's transaction: the request, its rows and its audit entry; None
        if the case no longer waits. The caller schedules the case after the commit."""
        case = await repo.get_case(session, case_id=case_id)
        if case is None or case.status != CaseStatus.AWAITING_SIGNATURE.value:
            return None
        request = await self.issuer.create(session, case_id=case_id, prepared=prepared, now=now)
        await self.plan_signer(
            session,
            case_id=case_id,
            request=request,
            municipality=prepared.municipality,
            maker=prepared.maker,
        )
        await repo.add_audit(
            session,
            case_id=case_id,
            actor="socialjour",
            action="signature.requested",
            now=now,
            detail={"request": request.id, "signer": prepared.maker.user_id},
        )
        return request

    def policy_of(self, ctx: StepContext) -> EscalationPolicy:
        assert ctx.municipality is not None
        return self.settings.escalation_policies[ctx.municipality.escalation_policy]

    # -- acknowledgement and the worker's requests (handlers.escalation_requests) --------

    async def acknowledge(
        self,
        user_id: str,
        via: str,
        *,
        request_ids: Iterable[int] | None = None,
        tell_later: Callable[[Coroutine[Any, Any, None]], None] | None = None,
    ) -> int:
        """ "I am on it": their other channels stop, the policy pauses for ``ack_window``.

        Returns how many waiting cases were acknowledged (0: nothing to acknowledge).
        ``tell_later``: run the telling of the case rooms in the background.
        """
        return await escalation_requests.acknowledge(
            self, user_id, via, request_ids=request_ids, tell_later=tell_later
        )

    async def acknowledge_step(self, reference: str, via: str) -> bool:
        """An acknowledgement through a channel whose reference is its step id."""
        return await escalation_requests.acknowledge_step(self, reference, via)

    async def remind_now(self, case_id: int, *, claim: Claim | None = None) -> int:
        """``!påminn``: the alert again, now, to everyone asked. Returns how many.

        ``claim`` marks the command handled in the transaction that plans the alerts."""
        return await escalation_requests.remind_now(self, case_id, claim=claim)

    async def resend(self, case_id: int, actor: str, *, claim: Claim | None = None) -> list[str]:
        """``!skicka om``: fresh links for everyone asked; the old links close.

        ``claim`` marks the command handled in the transaction that swaps the links."""
        return await escalation_requests.resend(self, case_id, actor, claim=claim)

    # -- the invariant and !status (handlers.escalation_watch) ------------------------

    async def check(self) -> None:
        """Every waiting case has a live link that was delivered or is being escalated."""
        await escalation_watch.check(self)

    async def status_lines(self, case_id: int) -> list[i18n.Message]:
        return await escalation_watch.status_lines(self, case_id)


async def _requests(session: AsyncSession, case_id: int) -> list[SigningRequest]:
    return await decisions.list_signing_requests(session, case_id=case_id)


def _how_late(late: timedelta) -> str:
    seconds = late.total_seconds()
    return f"{round(seconds)} s" if seconds < 90 else f"{round(seconds / 60)} min"
