"""Identification by a one-time code sent to the decision-maker's direct Matrix room.

Possession of the Matrix account (on a cross-signed device: the bot encrypts for
nothing else) is the factor. Only a salted hash of the code is kept; codes expire
after ten minutes, and the web layer limits the number of tries.

The code is sent while the signing page waits for the answer, so sending has a
time limit: a homeserver that is slow or away gives the page a clear "could not
send the code, try again" instead of a page that hangs.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from signing.identity.base import CheckResult, Done, Failed, Identity, SigningContext, Started

log = logging.getLogger(__name__)

SendCode = Callable[[SigningContext, str], Awaitable[None]]
CODE_DIGITS = 6
CODE_TTL_SECONDS = 600
#: Seconds the page may wait for the code to be sent in Matrix.
SEND_TIME_LIMIT = 10.0


class CodeNotSent(Exception):
    """The code could not be sent (in time); :attr:`failed` is what the page shows."""

    failed = Failed("code_not_sent", "auth.code_not_sent", retry=True)


def _hash(salt: str, code: str) -> str:
    return hashlib.sha256(f"{salt}:{code}".encode()).hexdigest()


class MatrixCodeProvider:
    method = "matrix-code"

    def __init__(self, send_code: SendCode, *, send_time_limit: float = SEND_TIME_LIMIT) -> None:
        self._send_code = send_code
        self._send_time_limit = send_time_limit

    async def start(self, ctx: SigningContext) -> Started:
        code = f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"
        salt = secrets.token_hex(16)
        try:
            async with asyncio.timeout(self._send_time_limit):
                await self._send_code(ctx, code)
        except Exception as exc:  # TimeoutError among them
            log.warning(
                "case %s: the one-time code was not sent (%s)", ctx.case_number, type(exc).__name__
            )
            raise CodeNotSent() from exc
        return Started(
            page={"digits": CODE_DIGITS, "expires_in": CODE_TTL_SECONDS},
            state={
                "salt": salt,
                "code_hash": _hash(salt, code),
                "expires": time.time() + CODE_TTL_SECONDS,
            },
        )

    async def check(
        self, ctx: SigningContext, state: Mapping[str, Any], params: Mapping[str, Any]
    ) -> CheckResult:
        if time.time() > float(state.get("expires", 0)):
            return Failed("code_expired", "auth.code_expired")
        entered = "".join(ch for ch in str(params.get("code", "")) if ch.isdigit())
        if len(entered) != CODE_DIGITS:
            return Failed("wrong_code", "auth.wrong_code")
        if not hmac.compare_digest(_hash(str(state["salt"]), entered), str(state["code_hash"])):
            return Failed("wrong_code", "auth.wrong_code")
        return Done(
            Identity(
                method=self.method,
                subject=ctx.signer_user_id,
                name=ctx.signer_name,
                personal_number=None,
                at=datetime.now(UTC),
                evidence={
                    "method": self.method,
                    "matrix_user_id": ctx.signer_user_id,
                    "channel": "encrypted direct room",
                },
            )
        )

    async def cancel(self, ctx: SigningContext, state: Mapping[str, Any]) -> None:
        return None
