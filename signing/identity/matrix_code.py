"""Identification by a one-time code sent to the decision-maker's direct Matrix room.

Possession of the Matrix account (on a cross-signed device: the bot encrypts for
nothing else) is the factor. Only a salted hash of the code is kept; codes expire
after ten minutes, and the web layer limits the number of tries.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from signing.identity.base import CheckResult, Done, Failed, Identity, SigningContext, Started

SendCode = Callable[[SigningContext, str], Awaitable[None]]
CODE_DIGITS = 6
CODE_TTL_SECONDS = 600


def _hash(salt: str, code: str) -> str:
    return hashlib.sha256(f"{salt}:{code}".encode()).hexdigest()


class MatrixCodeProvider:
    method = "matrix-code"

    def __init__(self, send_code: SendCode) -> None:
        self._send_code = send_code

    async def start(self, ctx: SigningContext) -> Started:
        code = f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"
        salt = secrets.token_hex(16)
        await self._send_code(ctx, code)
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
