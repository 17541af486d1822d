"""Making signing requests: the decision rendered for one signer, and its link.

Rendering (reportlab) runs in a worker thread, before any status change, so a
failing render leaves the case as it was. The request itself is written by the
caller's transaction, together with the status change and the escalation plan.

The document rendered here is the version the signer reviews: it says the decision
date is the day of signing, because the decision is made by the signature. At
signing, :func:`decided_version` renders it again with the moment of the decision
(the signing page's backend does, in a worker thread), and that version is sealed.

Who signs is the form's ``signer`` (:func:`signer_kind_of`): the on-call chair or
appointed member (``committee_member``), or the municipality's delegates in their
configured order (``delegate``), never a politician for a delegate form and never a
delegate for a committee form (:func:`candidates`). A ``none`` form has no signer:
it is sealed as the worker's record (:mod:`handlers.records`).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, cast

from sqlalchemy.ext.asyncio import AsyncSession

from config import Municipality, Settings
from config.settings import DecisionMaker, Delegate, Signer, SignerKind
from handlers import audit
from handlers.links import LinkSealer, new_token, token_hash
from storage import decisions
from storage.models import SigningRequest

if TYPE_CHECKING:
    from signing.seal import Seal


def settings_for_render(settings: Settings, report: Mapping[str, Any], seal: Seal) -> Settings:
    """The settings to give :func:`decided_version`, :func:`refusal_for` or
    :func:`record_for` when they run where ``seal`` works (:meth:`Seal.run`,
    :meth:`Seal.sign_version`): ``settings`` in the bot's process; in a seal process
    only what rendering ``report`` reads (its form and the duty settings:
    :class:`signing.document.RenderSettings`), since the whole ``Settings`` does not
    pickle and its secrets have no business there."""
    if not seal.process_ids:
        return settings
    from signing.document import RenderSettings

    form_id = str(report.get("form", {}).get("id", ""))
    form = settings.forms.get(form_id)
    forms = {form_id: form} if form is not None else {}
    return cast(Settings, RenderSettings(forms=forms, duty=settings.duty))


class RenderFailed(Exception):
    """The decision document could not be made (the case stays as it was)."""


#: Who is on call to decide committee decisions for a municipality at a moment.
OnCall = Callable[[str, datetime], Awaitable[list[DecisionMaker]]]


def signer_kind_of(settings: Settings, report: Mapping[str, Any]) -> SignerKind:
    """Who signs this report's document: its form's ``signer`` (committee_member when
    the form is no longer configured: the decision stays with the committee)."""
    form = settings.forms.get(str(report.get("form", {}).get("id", "")))
    return form.signer if form is not None else "committee_member"


def request_kind(maker: Signer) -> Literal["committee_member", "delegate"]:
    """The ``signer_kind`` a signing request for ``maker`` records."""
    return "delegate" if isinstance(maker, Delegate) else "committee_member"


async def candidates(
    kind: SignerKind, municipality: Municipality, on_call: OnCall, at: datetime
) -> list[Signer]:
    """Whom to ask, first one first: the delegates in their order for a delegate form,
    the committee members on call (valid appointment) otherwise; nobody for ``none``."""
    if kind == "delegate":
        return list(municipality.delegates)
    if kind == "none":
        return []
    return list(await on_call(municipality.id, at))


def signer_in(municipality: Municipality, kind: str, user_id: str) -> Signer | None:
    """The configured person a request of ``kind`` for ``user_id`` asks, or None."""
    if kind == "delegate":
        return municipality.delegate(user_id)
    return next((d for d in municipality.decision_makers if d.user_id == user_id), None)


@dataclass(frozen=True, slots=True)
class Prepared:
    """A rendered decision for one signer, not yet stored."""

    maker: Signer
    municipality: Municipality
    pdf: bytes
    sha256: str


@dataclass
class Issuer:
    settings: Settings
    sealer: LinkSealer

    @property
    def lang(self) -> str:
        return self.settings.duty.language

    async def prepare(
        self, report: Mapping[str, Any], municipality: Municipality, maker: Signer
    ) -> Prepared:
        """Render the decision naming ``maker`` for review (off the event loop)."""
        try:
            pdf = await asyncio.to_thread(render_for, self.settings, report, municipality, maker)
        except RenderFailed:
            raise
        except Exception as exc:
            raise RenderFailed(type(exc).__name__) from exc
        return Prepared(maker, municipality, pdf, hashlib.sha256(pdf).hexdigest())

    async def create(
        self, session: AsyncSession, *, case_id: int, prepared: Prepared, now: datetime
    ) -> SigningRequest:
        """Store the request with a fresh single-use link (hashed and sealed)."""
        token = new_token()
        hashed = token_hash(token)
        request = await decisions.create_signing_request(
            session,
            case_id=case_id,
            token_hash=hashed,
            signer_user_id=prepared.maker.user_id,
            signer_name=prepared.maker.name,
            signer_role=prepared.maker.label,
            municipality_id=prepared.municipality.id,
            document=prepared.pdf,
            document_sha256=prepared.sha256,
            now=now,
            expires_at=now + self.settings.signing.link_ttl,
        )
        request.token_sealed = self.sealer.seal(token, token_hash=hashed)
        request.signer_kind = request_kind(prepared.maker)
        await session.flush()
        await audit.document_rendered(session, request, now)
        return request


def render_for(
    settings: Settings,
    report: Mapping[str, Any],
    municipality: Municipality,
    maker: Signer,
    *,
    decided_at: datetime | None = None,
) -> bytes:
    """The decision naming ``maker``, their role and mandate, and the deciding body.

    ``decided_at`` None: the version to review (the decision date is the day of
    signing); else the version decided at that moment. Blocking (reportlab): call
    it in a worker thread.
    """
    from signing.document import mandate_of, render_decision  # at call time: tests replace it

    form = settings.forms.get(str(report.get("form", {}).get("id", "")))
    if form is None:
        raise RenderFailed("unknown form")
    return render_decision(
        report,
        form,
        municipality_name=municipality.name,
        signer_name=maker.name,
        signer_role=maker.label,
        language=settings.duty.language,
        body_name=municipality.body_name,
        mandate=mandate_of(maker),
        decided_at=decided_at,
    )


def decided_version(
    settings: Settings,
    report: Mapping[str, Any],
    municipality: Municipality,
    maker: Signer,
    *,
    reviewed_sha256: str,
    decided_at: datetime,
) -> bytes | None:
    """The reviewed decision with the moment of the decision filled in, to be sealed.

    Only if rendering the review version again gives exactly the document the
    signer was shown (``reviewed_sha256``): then the two differ in the decision
    date and time and nothing else. None when it does not (the configuration or
    the form template changed since): the caller seals the reviewed document as it
    is, which says the decision date is the day of signing. Blocking: run it where
    the seal works (:meth:`Seal.sign_version`).
    """
    again = render_for(settings, report, municipality, maker)
    if hashlib.sha256(again).hexdigest() != reviewed_sha256:
        return None
    return render_for(settings, report, municipality, maker, decided_at=decided_at)


def refusal_for(
    settings: Settings,
    report: Mapping[str, Any],
    municipality: Municipality,
    maker: Signer,
    *,
    reason: str,
    decided_at: datetime,
) -> bytes:
    """The refusal ``maker`` decided at ``decided_at``, with ``reason`` as its grounds:
    "{body} beslutade att inte ..." in the form's words, to be sealed. Blocking
    (reportlab): run it where the seal works (:meth:`Seal.run`)."""
    from signing.document import mandate_of, render_refusal

    form = settings.forms.get(str(report.get("form", {}).get("id", "")))
    if form is None:
        raise RenderFailed("unknown form")
    return render_refusal(
        report,
        form,
        municipality_name=municipality.name,
        signer_name=maker.name,
        signer_role=maker.label,
        reason=reason,
        decided_at=decided_at,
        language=settings.duty.language,
        body_name=municipality.body_name,
        mandate=mandate_of(maker),
    )


def record_for(
    settings: Settings,
    report: Mapping[str, Any],
    municipality: Municipality | None,
    *,
    worker: str,
    recorded_at: datetime,
) -> bytes:
    """The report of a ``signer = "none"`` form as ``worker``'s record, to be sealed.
    Blocking (reportlab): run it where the seal works (:meth:`Seal.run`)."""
    from signing.document import render_record

    form = settings.forms.get(str(report.get("form", {}).get("id", "")))
    if form is None:
        raise RenderFailed("unknown form")
    return render_record(
        report,
        form,
        municipality_name=municipality.name if municipality else "",
        worker=worker,
        recorded_at=recorded_at,
        language=settings.duty.language,
        body_name=municipality.body_name if municipality else None,
    )
