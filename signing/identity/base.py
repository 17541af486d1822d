"""The interface every identification method implements.

A method is a small state machine the signing page drives: :meth:`start` begins
it (sends a code, opens a BankID order, builds an OpenID Connect redirect) and
returns data for the page plus private state the server keeps; :meth:`check`
is called with that state and whatever the page sends (a code, nothing for a
BankID poll, the OIDC callback parameters) until it answers :class:`Done` with
an :class:`Identity` or :class:`Failed`.

The web app, not the provider, checks that the identity is the decision-maker
the link was made for (:meth:`Identity.matches`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol


@dataclass(frozen=True)
class SigningContext:
    """What a provider may know about the signing it identifies for."""

    request_id: str  # opaque id of the signing request (never the link token)
    case_number: str
    decision_type: str
    document_sha256: str  # hex; shown in BankID's userVisibleData to bind text and PDF
    signer_user_id: str  # the Matrix user the link was made for
    signer_name: str
    signer_personal_number: str | None  # YYYYMMDD-NNNN if configured
    language: str  # "sv" or "en"
    end_user_ip: str  # the browser's address as the web app saw it
    public_base_url: str  # for redirect URIs


@dataclass(frozen=True)
class Identity:
    method: str  # "matrix-code" | "bankid" | "oidc"
    subject: str  # Matrix user id, personal number, or OIDC "sub"
    name: str | None
    personal_number: str | None  # normalised YYYYMMDD-NNNN when the method gives one
    at: datetime
    #: JSON-serialisable proof kept with the signed document (e.g. BankID completionData).
    evidence: Mapping[str, Any] = field(default_factory=dict)

    def matches(self, ctx: SigningContext) -> bool:
        """Is this the decision-maker the link was made for?"""
        if self.method == "matrix-code":
            return self.subject == ctx.signer_user_id
        if ctx.signer_personal_number is None or self.personal_number is None:
            return False
        return self.personal_number == ctx.signer_personal_number


@dataclass(frozen=True)
class Started:
    page: Mapping[str, Any]  # sent to the browser (e.g. autoStartToken, a redirect URL)
    state: Mapping[str, Any]  # kept on the server only (orderRef, PKCE verifier, code hash)


@dataclass(frozen=True)
class Pending:
    """Not done yet; ``hint`` is a message key for the page, ``page`` fresh data (a QR code)."""

    hint: str
    page: Mapping[str, Any] = field(default_factory=dict)
    state: Mapping[str, Any] | None = None  # replaces the stored state when given


@dataclass(frozen=True)
class Failed:
    """Identification ended without an identity; ``code`` is a stable error code."""

    code: str
    message_key: str
    retry: bool = True


@dataclass(frozen=True)
class Done:
    identity: Identity


CheckResult = Pending | Failed | Done


class IdentityProvider(Protocol):
    method: str

    async def start(self, ctx: SigningContext) -> Started: ...

    async def check(
        self, ctx: SigningContext, state: Mapping[str, Any], params: Mapping[str, Any]
    ) -> CheckResult: ...

    async def cancel(self, ctx: SigningContext, state: Mapping[str, Any]) -> None: ...
