"""Making signing requests: the decision rendered for one signer, and its link.

Rendering (reportlab) runs in a worker thread, before any status change, so a
failing render leaves the case as it was. The request itself is written by the
caller's transaction, together with the status change and the escalation plan.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from config import DecisionMaker, Municipality, Settings
from handlers.links import LinkSealer, new_token, token_hash
from storage import decisions
from storage.models import SigningRequest


class RenderFailed(Exception):
    """The decision document could not be made (the case stays as it was)."""


@dataclass(frozen=True, slots=True)
class Prepared:
    """A rendered decision for one signer, not yet stored."""

    maker: DecisionMaker
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
        self, report: Mapping[str, Any], municipality: Municipality, maker: DecisionMaker
    ) -> Prepared:
        """Render the decision naming ``maker`` (off the event loop)."""
        from signing.document import render_decision

        form = self.settings.forms.get(str(report.get("form", {}).get("id", "")))
        if form is None:
            raise RenderFailed("unknown form")
        try:
            pdf = await asyncio.to_thread(
                render_decision,
                report,
                form,
                municipality_name=municipality.name,
                signer_name=maker.name,
                signer_role=maker.role,
                language=self.lang,
            )
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
            signer_role=prepared.maker.role,
            municipality_id=prepared.municipality.id,
            document=prepared.pdf,
            document_sha256=prepared.sha256,
            now=now,
            expires_at=now + self.settings.signing.link_ttl,
        )
        request.token_sealed = self.sealer.seal(token, token_hash=hashed)
        await session.flush()
        return request
