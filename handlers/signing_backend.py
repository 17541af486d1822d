"""The signing page's backend: links, identification, the one decision per case.

The web app (``signing/web.py``) calls this object and nothing else, so every rule
about links, identification and "exactly one decision" lives here. The case side
(sending for signature, reminders, escalation) is :mod:`handlers.decisions`.

The decision is made by the signature, so its moment is the decision's: the
document the signer reviewed says the decision date is the day of signing; at
"sign" it is rendered again with that moment (where the seal works: in a seal
process or a worker thread; and only if rendering the reviewed version again
gives the very document they were shown), that version is sealed, and the same
moment is recorded as the decision time from which every deadline counts. A
decision-maker whose appointment does not hold on that day cannot decide (LVU 6 §
andra stycket, LVM 13 §).

Nothing here keeps a signer's page waiting on Matrix for long: sealing runs in
a seal process (or the seal's worker thread), the decision goes into the case
room in a background task (:class:`handlers.outcomes.OutcomePoster`), and what
must still be sent while the page waits (the "on it" notice when the page
opens) has a time limit.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import hmac
import logging
import secrets
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from config import Municipality, Settings
from config.settings import Signer
from handlers import audit
from handlers.case_state import CaseStatus, Effects, transition
from handlers.context import LOCAL_TZ, Clock
from handlers.deadlines import start_clocks
from handlers.errors import ConcurrentChange
from handlers.escalation import Escalator
from handlers.fields import strip_invisible
from handlers.issuing import decided_version, refusal_for, settings_for_render, signer_in
from handlers.links import token_hash
from handlers.messenger import Messenger
from handlers.outcomes import OutcomePoster
from handlers.records import Recorder
from signing.errors import (
    AlreadyDecided,
    BadRequest,
    DocumentChanged,
    Expired,
    Forbidden,
    NotFound,
    TooManyAttempts,
    Unauthorized,
    Unavailable,
    WrongBrowser,
)
from signing.evidence import decision_evidence
from signing.evidence import embedded as embedded_evidence
from signing.identity import Done, Failed, IdentityProvider, Pending, SigningContext
from signing.identity.oidc import FLOW_TTL
from storage import decisions, repo
from storage.models import Case, Report, SigningRequest

if TYPE_CHECKING:
    from signing.seal import Seal, StampInfo

log = logging.getLogger(__name__)

SESSION_TTL = timedelta(minutes=30)
#: Starts and failed checks together, per link: one start and five wrong tries. A
#: code's check is counted before the code is compared (so a right code counts too).
MAX_AUTH_ATTEMPTS = 6
#: Methods whose check compares something a person could guess: the one-time code.
GUESSABLE_METHODS = frozenset({"matrix-code"})
METHOD_LABELS = {"matrix-code": "Matrix-kod", "bankid": "BankID", "oidc": "e-legitimation"}
#: Seconds a Matrix send may keep a web request waiting (nio retries until the
#: homeserver answers); past it the page answers without it.
WEB_SEND_TIME_LIMIT = 10.0


@dataclass
class SigningBackend:
    settings: Settings
    sessions: async_sessionmaker[AsyncSession]
    messenger: Messenger
    clock: Clock
    #: Opening the page acknowledges the alert; a decision stops the escalation.
    escalator: Escalator | None = None
    providers: Mapping[str, IdentityProvider] = field(default_factory=dict)
    #: The seal: a pyHanko signer (wrapped once in a :class:`signing.seal.Seal` with
    #: the configured trust roots and TSA) or a ready Seal; None: signing is not configured.
    signer: Any = None
    #: Puts each decision into its case room, once.
    outcomes: OutcomePoster = field(init=False)
    #: Seals the reports of forms nobody signs (``signer = "none"``) with this seal.
    records: Recorder = field(init=False)
    #: How long a Matrix send may hold up a web request (seconds).
    send_time_limit: float = WEB_SEND_TIME_LIMIT
    #: Told the seconds from a signature to its PDF in the case room (the bot's metrics).
    observe_sign_to_pdf: Callable[[float], None] | None = None
    #: Sessions for work that only reads (no write lock on SQLite, so a link's page
    #: and a signature never wait for the dialogues' writes to read); None: ``sessions``.
    readers: async_sessionmaker[AsyncSession] | None = None
    _reads: async_sessionmaker[AsyncSession] = field(init=False, repr=False)
    _seal: Seal | None = field(default=None, init=False, repr=False)
    #: Messages a web request started and did not wait for (telling the case room).
    _background: set[asyncio.Task[None]] = field(default_factory=set, init=False, repr=False)

    def __post_init__(self) -> None:
        self._reads = self.readers or self.sessions
        self.outcomes = OutcomePoster(
            self.settings,
            self.sessions,
            self.messenger,
            self.clock,
            observe_sign_to_pdf=self.observe_sign_to_pdf,
        )
        self.records = Recorder(
            self.settings, self.sessions, self.messenger, self.clock, seal=self._seal_if_any
        )
        if self.signer is not None:
            self.seal()  # the trust roots are read now, at start-up, not per signature

    def seal(self) -> Seal:
        """The seal to sign with, built once per signer (tests swap ``signer``)."""
        from signing.seal import Seal

        if isinstance(self.signer, Seal):
            return self.signer
        if self._seal is None or self._seal.signer is not self.signer:
            self._seal = Seal(
                self.signer,
                trust_roots=self.settings.signing.trust_roots,
                tsa_url=self.settings.signing.tsa_url,
            )
        return self._seal

    def _seal_if_any(self) -> Seal | None:
        return self.seal() if self.signer is not None else None

    def _in_background(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` (a message to a room) beside the web request that started it."""

        async def guarded() -> None:
            try:
                await work
            except Exception as exc:
                log.warning("a message from the signing page failed (%s)", type(exc).__name__)

        task = asyncio.create_task(guarded(), name="signing-page message")
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def close(self) -> None:
        """At shutdown: give the page's messages a moment, stop the background posts
        (recover() finishes them at the next start) and the seal's worker thread."""
        from signing.seal import Seal

        if self._background:
            _, late = await asyncio.wait(self._background, timeout=self.send_time_limit)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        await self.outcomes.close()
        seal = self.signer if isinstance(self.signer, Seal) else self._seal
        if seal is not None:
            await seal.close()

    @property
    def lang(self) -> str:
        return self.settings.duty.language

    async def _load(self, token: str) -> SigningRequest:
        async with self._reads() as session:
            request = await decisions.get_by_token_hash(session, token_hash=token_hash(token))
        if request is None:
            raise NotFound("error.link_unknown")
        return request

    async def _open(self, request: SigningRequest) -> None:
        """Refuse a link whose case is decided (saying by whom) or that has expired."""
        if request.status in decisions.DECIDED or request.status == "superseded":
            raise await self._already_decided(request.case_id)
        if request.status == "cancelled":
            raise Expired("error.case_cancelled")
        if request.status == "replaced":  # ``!skicka om`` sent a fresh link
            raise Expired("error.link_replaced")
        if request.status == "expired" or self.clock() >= request.expires_at:
            raise Expired("error.link_expired")

    async def _already_decided(self, case_id: int) -> AlreadyDecided:
        async with self._reads() as session:
            decided = await decisions.list_signing_requests(
                session, case_id=case_id, statuses=decisions.DECIDED
            )
        if not decided:
            return AlreadyDecided("error.already_decided")
        winner = decided[0]
        key = (
            "error.already_signed_by" if winner.status == "signed" else "error.already_declined_by"
        )
        return AlreadyDecided(key, name=winner.signer_name)

    async def _case_and_report(self, case_id: int) -> tuple[Case, Report | None]:
        async with self._reads() as session:
            case = await repo.get_case(session, case_id=case_id)
            report = await repo.get_report(session, case_id=case_id)
        assert case is not None
        return case, report

    async def _context(self, request: SigningRequest, ip: str) -> SigningContext:
        case, report = await self._case_and_report(request.case_id)
        submitted = (report.submitted or {}) if report else {}
        _, maker = self._maker(request)
        return SigningContext(
            request_id=str(request.id),
            case_number=case.number,
            decision_type=str(submitted.get("form", {}).get("decision_type", "")),
            document_sha256=request.document_sha256,
            signer_user_id=request.signer_user_id,
            signer_name=request.signer_name,
            signer_personal_number=maker.personal_number if maker else None,
            language=self.lang,
            end_user_ip=ip,
            public_base_url=self.settings.web.public_base_url,
        )

    def _maker(self, request: SigningRequest) -> tuple[Municipality | None, Signer | None]:
        """The request's municipality and decision-maker in the configuration: a
        committee member, or for a delegate form's request a delegate (never the other)."""
        municipality = self.settings.municipality(request.municipality_id or "")
        if municipality is None:
            return None, None
        return municipality, signer_in(municipality, request.signer_kind, request.signer_user_id)

    async def view(self, token: str, cookie: str | None = None) -> dict[str, Any]:
        """What the page may show before identification: nothing about the person."""
        request = await self._load(token)
        identified = self._has_session(request, cookie)
        await audit.link_opened(self.sessions, request, identified=identified, now=self.clock())
        if request.status == "expired" or (
            request.status == "pending" and self.clock() >= request.expires_at
        ):
            raise Expired("error.link_expired")
        if request.status == "replaced":
            raise Expired("error.link_replaced")
        if request.status == "superseded":  # someone else decided: say who
            raise await self._already_decided(request.case_id)
        ctx = await self._context(request, "")
        if request.status == "pending" and self.escalator is not None:
            try:  # opening the page is an acknowledgement: the person is on it. It is
                # stored before the page answers; the case room is told in the background.
                await self.escalator.acknowledge(
                    request.signer_user_id,
                    "page",
                    request_ids=[request.id],
                    tell_later=self._in_background,
                )
            except Exception:
                log.exception("signing request %d: acknowledging failed", request.id)
        return {
            "case_number": ctx.case_number,
            "decision_type": ctx.decision_type,
            "status": request.status,
            "signer": request.signer_name,
            "expires_at": request.expires_at.isoformat(),
            "auth_methods": list(self.settings.signing.auth_methods),
            "identified": identified,
            "document_sha256": request.signed_sha256 or request.document_sha256,
        }

    async def start_auth(
        self, token: str, method: str, ip: str, *, binding: str | None = None
    ) -> dict[str, Any]:
        """Start identification; ``binding`` is the pre-auth cookie the web layer sets in
        the starting browser (its hash is kept: only that browser can finish)."""
        request = await self._load(token)
        await self._open(request)
        provider = self.providers.get(method)
        if provider is None or method not in self.settings.signing.auth_methods:
            raise BadRequest("error.unknown_method")
        # Every start counts (a start sends a code or opens an order): per link, never reset.
        async with self.sessions() as session, session.begin():
            tries = await decisions.count_attempt(session, request_id=request.id)
        if tries > MAX_AUTH_ATTEMPTS:
            raise TooManyAttempts("error.too_many_attempts")
        try:
            started = await provider.start(await self._context(request, ip))
        except Exception as exc:
            failed = getattr(exc, "failed", None)  # BankIdError, OidcError: a clear Failed
            if isinstance(failed, Failed):
                raise Unavailable(failed.message_key, code=failed.code, retry=failed.retry) from exc
            raise
        binding_hash = token_hash(binding) if binding is not None else None
        async with self.sessions() as session, session.begin():
            await decisions.set_auth(
                session,
                request_id=request.id,
                method=method,
                state=dict(started.state),
                binding_hash=binding_hash,
            )
            flow_state = started.state.get("state")
            if binding_hash is not None and "redirect" in started.page and flow_state:
                # The browser comes back with the state only: which link it belongs to
                # is kept in the database (a restart mid-login loses nothing).
                now = self.clock()
                await decisions.add_oidc_state(
                    session,
                    state_hash=token_hash(str(flow_state)),
                    request_id=request.id,
                    binding_hash=binding_hash,
                    link_sealed=seal_for_state(token, str(flow_state)),
                    now=now,
                    expires_at=now + FLOW_TTL,
                )
            await audit.identification_started(session, request, method, self.clock())
        return {"method": method, **started.page}

    async def check_auth(
        self, token: str, params: Mapping[str, Any], ip: str, *, binding: str | None = None
    ) -> tuple[dict[str, Any], str | None]:
        """Advance identification; returns (page data, new session cookie or None).

        ``binding`` is the pre-auth cookie the browser sent: an identification started
        with one is answered only with it (another browser learns nothing, not even a
        BankID hint, and uses up no attempt).
        """
        request = await self._load(token)
        await self._open(request)
        if request.auth_method is None or request.auth_state is None:
            raise BadRequest("error.auth_not_started")
        if not same_browser(request.auth_binding, binding):
            raise WrongBrowser()
        if request.auth_attempts >= MAX_AUTH_ATTEMPTS:
            raise TooManyAttempts("error.too_many_attempts")
        provider = self.providers[request.auth_method]
        ctx = await self._context(request, ip)
        # A code can be guessed: the attempt is taken (atomically, in the database)
        # before the code is compared, so parallel guesses cannot outrun the count.
        tries: int | None = None
        if request.auth_method in GUESSABLE_METHODS:
            async with self.sessions() as session, session.begin():
                tries = await decisions.take_attempt(
                    session, request_id=request.id, limit=MAX_AUTH_ATTEMPTS
                )
            if tries is None:
                raise TooManyAttempts("error.too_many_attempts")
        result = await provider.check(ctx, request.auth_state, params)
        if isinstance(result, Pending):
            if result.state is not None:
                async with self.sessions() as session, session.begin():
                    await decisions.update_auth_state(
                        session, request_id=request.id, state=dict(result.state)
                    )
            return {"status": "pending", "hint": result.hint, **result.page}, None
        # (the web layer turns ``hint`` into a message in the page's language)
        if isinstance(result, Failed):
            if tries is None:  # not guessable: the failure itself counts
                async with self.sessions() as session, session.begin():
                    tries = await decisions.count_attempt(session, request_id=request.id)
            if tries >= MAX_AUTH_ATTEMPTS:
                raise TooManyAttempts("error.too_many_attempts")
            raise Unauthorized(result.message_key, code=result.code, retry=result.retry)
        assert isinstance(result, Done)
        if not result.identity.matches(ctx):
            log.warning("case %s: identified person is not the requested signer", ctx.case_number)
            raise Forbidden("error.wrong_person")
        cookie = secrets.token_urlsafe(32)
        identity = {
            "method": result.identity.method,
            "subject": result.identity.subject,
            "name": result.identity.name,
            "at": result.identity.at.isoformat(),
            "evidence": dict(result.identity.evidence),
        }
        async with self.sessions() as session, session.begin():
            await decisions.open_session(
                session,
                request_id=request.id,
                session_hash=token_hash(cookie),
                expires_at=self.clock() + SESSION_TTL,
                identity=identity,
            )
            await repo.add_audit(
                session,
                case_id=request.case_id,
                actor=request.signer_user_id,
                action="signer.identified",
                now=self.clock(),
                detail={"request": request.id, "method": request.auth_method},
            )
        return {"status": "done"}, cookie

    async def claim_oidc_state(self, state: str, binding: str | None) -> str:
        """The link token of the OIDC sign-in the callback's ``state`` belongs to, once.

        Refused when the state is unknown, used or expired (NotFound), or when the
        callback did not come to the browser that started the sign-in (WrongBrowser;
        the sign-in stays usable there). Otherwise the sign-in is used up in the same
        transaction, so a replayed callback finds nothing.
        """
        if not state or len(state) > 200:
            raise NotFound("error.oidc_login_unknown")
        digest = token_hash(state)
        async with self.sessions() as session, session.begin():
            login = await decisions.get_oidc_state(session, state_hash=digest, now=self.clock())
            if login is None:
                raise NotFound("error.oidc_login_unknown")
            if not same_browser(login.binding_hash, binding):
                raise WrongBrowser()
            if not await decisions.consume_oidc_state(session, state_hash=digest):
                raise NotFound("error.oidc_login_unknown")  # a concurrent callback won
            sealed = login.link_sealed
        token = open_for_state(sealed, state)
        if token is None:
            raise NotFound("error.oidc_login_unknown")
        return token

    def _has_session(self, request: SigningRequest, cookie: str | None) -> bool:
        return not (
            not cookie
            or request.session_hash is None
            or request.session_expires_at is None
            or not hmac.compare_digest(token_hash(cookie), request.session_hash)
            or self.clock() >= request.session_expires_at
        )

    async def document(self, token: str, cookie: str | None) -> bytes:
        """The decision for the identified signer (signed, once it is)."""
        request = await self._load(token)
        if request.status not in decisions.DECIDED:
            await self._open(request)  # an expired or cancelled link shows nothing
        if not self._has_session(request, cookie):
            raise Unauthorized("error.not_identified")
        await audit.document_downloaded(self.sessions, request, self.clock())
        return request.signed_document or request.document

    async def decide(
        self, token: str, cookie: str | None, action: str, reason: str
    ) -> dict[str, Any]:
        request = await self._load(token)
        await self._open(request)  # decided or expired says so, with or without a session
        if not self._has_session(request, cookie):
            raise Unauthorized("error.not_identified")
        if action not in ("sign", "decline"):
            raise BadRequest("error.unknown_action")
        reason = strip_invisible(reason)  # printed, sealed and shown: no disguised text
        if action == "decline" and not reason.strip():
            raise BadRequest("error.reason_required")
        decided_at = self.clock()  # the decision is this moment: printed, sealed, recorded
        municipality, maker = self._maker(request)
        if maker is None or not maker.may_decide_on(decided_at.astimezone(LOCAL_TZ).date()):
            # A refusal is a decision too: neither without a mandate on the day.
            log.warning("signing request %d: no appointment that holds today", request.id)
            raise Forbidden("error.no_mandate")
        if action == "decline":
            grounds = reason.strip()[:2000]
            assert municipality is not None
            refusal = await self._refusal(request, municipality, maker, grounds, decided_at)
            return await self._settle(
                request, "declined", reason=grounds, signed=refusal, now=decided_at
            )
        if self.signer is None:
            raise Unavailable("error.no_seal")
        await self._check_reviewed(request, decided_at)
        assert municipality is not None
        signed = await self._seal_decided(request, municipality, maker, decided_at)
        return await self._settle(request, "signed", signed=signed, now=decided_at)

    async def _check_reviewed(self, request: SigningRequest, now: datetime) -> None:
        """Refuse to seal when the stored document is no longer the one the signer was
        shown: its SHA-256 (the one on the page, and in BankID's text) is computed again
        from the stored bytes. The decision stays open; the audit trail keeps the event."""
        if hashlib.sha256(request.document).hexdigest() == request.document_sha256:
            return
        log.error("signing request %d: the stored document has changed; not sealed", request.id)
        async with self.sessions() as session, session.begin():
            await repo.add_audit(
                session,
                case_id=request.case_id,
                actor=request.signer_user_id,
                action="decision.document_changed",
                now=now,
                detail={"request": request.id, "expected_sha256": request.document_sha256},
            )
        raise DocumentChanged("error.document_changed")

    async def _refusal(
        self,
        request: SigningRequest,
        municipality: Municipality,
        maker: Signer,
        reason: str,
        decided_at: datetime,
    ) -> bytes | None:
        """The refusal as a decision of its own, sealed like a signed one: "{body}
        beslutade att inte ...", the grounds, who decided under which mandate, with the
        identification inside. None when it cannot be made (no seal, no report, a
        failure): the refusal still stands, with its grounds, and the case room is
        told it without a document rather than not at all."""
        if self.signer is None:
            log.warning("signing request %d: no seal; the refusal has no document", request.id)
            return None
        case, report = await self._case_and_report(request.case_id)
        submitted = report.submitted if report is not None else None
        if not submitted:
            return None
        identity = request.identity or {}
        seal = self.seal()
        try:
            # reportlab: where the seal works (its process when it has any), so that
            # it holds neither the event loop nor its GIL.
            pdf = await seal.run(
                refusal_for,
                settings_for_render(self.settings, submitted, seal),
                submitted,
                municipality,
                maker,
                reason=reason,
                decided_at=decided_at,
            )
            return await seal.sign(
                pdf,
                stamp=self._stamp(request, decided_at, case.number),
                evidence={
                    **embedded_evidence(identity),
                    "decision": {
                        "decided_at": decided_at.isoformat(),
                        "outcome": "declined",
                        "reviewed_sha256": request.document_sha256,
                    },
                },
            )
        except Exception as exc:
            log.warning(
                "signing request %d: the refusal document failed (%s)",
                request.id,
                type(exc).__name__,
            )
            return None

    def _stamp(self, request: SigningRequest, decided_at: datetime, case_number: str) -> StampInfo:
        """The visible signature's text: who decided, in which role, identified how, when."""
        from signing.seal import StampInfo

        method = str((request.identity or {}).get("method"))
        return StampInfo(
            signer_name=request.signer_name,
            signer_role=request.signer_role,
            method_label=METHOD_LABELS.get(method, "?"),
            signed_at=decided_at,
            case_number=case_number,
            language=self.lang,
        )

    async def _seal_decided(
        self,
        request: SigningRequest,
        municipality: Municipality,
        maker: Signer,
        decided_at: datetime,
    ) -> bytes:
        """The decision sealed: the reviewed decision rendered again with the moment of
        the decision, or, when that cannot be the same document, the reviewed one as it
        is, which says the decision date is the day of signing (the embedded evidence
        says which). Rendering and sealing are one job where the seal works (a seal
        process when it has any: reportlab and pyHanko never hold the event loop)."""

        case, report = await self._case_and_report(request.case_id)
        submitted = report.submitted if report is not None else None
        seal = self.seal()
        render: Callable[[], bytes | None] | None = None  # nothing to render: as it is
        if submitted:
            render = functools.partial(
                decided_version,
                settings_for_render(self.settings, submitted, seal),
                submitted,
                municipality,
                maker,
                reviewed_sha256=request.document_sha256,
                decided_at=decided_at,
            )
        identity = request.identity or {}
        sealed = await seal.sign_version(
            render,
            request.document,
            stamp=self._stamp(request, decided_at, case.number),
            # Under the signature with the identification: the document the signer was
            # shown (its SHA-256 is what BankID showed) and how the sealed one came from it.
            evidence=functools.partial(
                decision_evidence,
                embedded_evidence(identity),
                decided_at.isoformat(),
                request.document_sha256,
            ),
        )
        if sealed.failure is not None:
            log.warning(
                "signing request %d: the decided version failed (%s)", request.id, sealed.failure
            )
        if not sealed.rendered:
            log.warning("signing request %d: sealing the reviewed document as it is", request.id)
        return sealed.pdf

    async def _settle(
        self,
        request: SigningRequest,
        outcome: str,
        *,
        reason: str | None = None,
        signed: bytes | None = None,
        now: datetime | None = None,
    ) -> dict[str, Any]:
        """Record exactly one decision per case; the loser learns who decided.

        ``now`` is the moment of the decision (the one the document states). The
        answer goes back as soon as the decision is stored: posting it to the case
        room is a background task (recover() finishes it after a crash).
        """
        now = now if now is not None else self.clock()
        sha = hashlib.sha256(signed).hexdigest() if signed else None
        try:
            effects = await self._record(request, outcome, now, reason, signed, sha)
        except _Lost:
            raise await self._already_decided(request.case_id) from None
        if self.escalator is not None:  # nothing more is sent about this decision
            self.escalator.stopped(effects.cancelled_steps)
        log.info("signing request %d: %s", request.id, outcome)
        self.outcomes.post_soon(request.id)
        return {"status": outcome, "document_sha256": sha or request.document_sha256}

    async def _record(
        self,
        request: SigningRequest,
        outcome: str,
        now: datetime,
        reason: str | None,
        signed: bytes | None,
        sha: str | None,
    ) -> Effects:
        async with self.sessions() as session, session.begin():
            try:
                effects = await transition(
                    session,
                    case_id=request.case_id,
                    old=CaseStatus.AWAITING_SIGNATURE,
                    new=outcome,
                    actor=request.signer_user_id,
                    now=now,
                )
            except ConcurrentChange:
                raise _Lost() from None
            won = await decisions.decide(
                session,
                request_id=request.id,
                status=outcome,
                now=now,
                reason=reason,
                signed_document=signed,
                signed_sha256=sha,
            )
            if not won:  # raising rolls the transaction back
                raise _Lost()
            await decisions.close_pending(
                session, case_id=request.case_id, status="superseded", except_id=request.id
            )
            await repo.add_audit(
                session,
                case_id=request.case_id,
                actor=request.signer_user_id,
                action=f"decision.{outcome}",
                now=now,
                detail={"request": request.id, **({"sha256": sha} if sha else {})},
            )
            if outcome == "signed":
                # The decision's moment starts its legal clocks (7 § LVU, 15 § LVM ...).
                await start_clocks(
                    session,
                    case_id=request.case_id,
                    trigger="decision",
                    at=now,
                    now=now,
                    settings=self.settings,
                )
        return effects

    async def recover(self) -> None:
        """At start-up and every minute: post decisions (and sealed records) a crash
        kept from the room."""
        await self.outcomes.recover()
        await self.records.recover()


class _Lost(Exception):
    """Another decision-maker decided first (inside the transaction)."""


def same_browser(expected_hash: str | None, cookie: str | None) -> bool:
    """Does the pre-auth cookie match the hash kept at the start (constant time)?

    An identification started without one (only code that calls the backend directly
    does that; the web app always sets one) is bound to no browser."""
    if expected_hash is None:
        return True
    if not cookie:
        return False
    return hmac.compare_digest(token_hash(cookie), expected_hash)


def _state_key(state: str) -> bytes:
    """An AES key from the OIDC state; not its stored hash (a different input)."""
    return hashlib.sha256(b"socialjour oidc link\0" + state.encode()).digest()


def seal_for_state(token: str, state: str) -> str:
    """The link token sealed so that only the holder of ``state`` (the browser coming
    back from the provider) can open it: the database keeps no working link."""
    nonce = secrets.token_bytes(12)
    sealed = AESGCM(_state_key(state)).encrypt(nonce, token.encode(), None)
    return base64.urlsafe_b64encode(nonce + sealed).decode()


def open_for_state(sealed: str, state: str) -> str | None:
    try:
        raw = base64.urlsafe_b64decode(sealed.encode())
        return AESGCM(_state_key(state)).decrypt(raw[:12], raw[12:], None).decode()
    except Exception:
        return None
