"""Identification through an OpenID Connect provider (Freja eID via a broker, a SITHS IdP).

Authorization code flow with PKCE (S256), ``state`` and ``nonce``. The browser is
sent to the provider by :meth:`OidcProvider.start`; the provider sends it back to
``{public_base_url}/oidc/callback``, whose query the web app hands to
:meth:`OidcProvider.check`. The code is exchanged on the back channel, the ID
token verified against the provider's published keys, and the personal number
read from a configured claim (ID token first, then userinfo).

Nothing personal goes into URLs (no ``login_hint``), and tokens and personal
numbers are never logged. The raw ID token is kept as evidence with the signature.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import re
import secrets
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import quote

import aiohttp
import jwt
from yarl import URL

from config import personnummer
from config.settings import OidcSettings
from signing.identity.base import CheckResult, Done, Failed, Identity, SigningContext, Started

log = logging.getLogger(__name__)

OIDC_MESSAGES: dict[str, dict[str, str]] = {
    "sv": {
        "oidc.cancelled": "Inloggningen avbröts. Du kan försöka igen.",
        "oidc.state_mismatch": (
            "Svaret från inloggningen hörde inte till den här underskriften. Börja om från länken."
        ),
        "oidc.expired": "Inloggningen tog för lång tid. Börja om från länken.",
        "oidc.token_exchange_failed": "Inloggningen kunde inte slutföras. Försök igen.",
        "oidc.invalid_token": "Svaret från inloggningstjänsten gick inte att lita på. Försök igen.",
        "oidc.missing_personal_number": (
            "Inloggningstjänsten lämnade inget personnummer. "
            "Välj ett annat sätt att legitimera dig."
        ),
        "oidc.unreachable": "Inloggningstjänsten svarar inte just nu. Försök igen om en stund.",
        "oidc.failed": "Inloggningen misslyckades. Försök igen.",
    },
    "en": {
        "oidc.cancelled": "Sign-in was cancelled. You can try again.",
        "oidc.state_mismatch": (
            "The sign-in response did not belong to this signing. Start again from the link."
        ),
        "oidc.expired": "Sign-in took too long. Start again from the link.",
        "oidc.token_exchange_failed": "Sign-in could not be completed. Please try again.",
        "oidc.invalid_token": "The sign-in service's answer was not trusted. Please try again.",
        "oidc.missing_personal_number": (
            "The sign-in service gave no personal identity number. Choose another way to identify."
        ),
        "oidc.unreachable": "The sign-in service is not answering. Please try again shortly.",
        "oidc.failed": "Sign-in failed. Please try again.",
    },
}

#: Signature algorithms accepted for ID tokens. ``none`` never; HMAC only as below.
ASYMMETRIC_ALGORITHMS = ("RS256", "ES256", "PS256")
HMAC_ALGORITHMS = ("HS256", "HS384", "HS512")
LEEWAY = timedelta(seconds=60)
#: How long a started sign-in may take before its callback is refused.
FLOW_TTL = timedelta(minutes=15)
CACHE_TTL = timedelta(hours=1)
MAX_RESPONSE_BYTES = 1024 * 1024
_KEY_TYPES = {"RS256": ("RSA", None), "PS256": ("RSA", None), "ES256": ("EC", "P-256")}
_LOOPBACK = {"127.0.0.1", "::1", "localhost"}


class OidcError(Exception):
    """An identification that cannot go on; :attr:`failed` is what the page shows."""

    def __init__(self, code: str, message_key: str, *, retry: bool = True) -> None:
        super().__init__(code)
        self.code = code
        self.message_key = message_key
        self.retry = retry

    @property
    def failed(self) -> Failed:
        return Failed(code=self.code, message_key=self.message_key, retry=self.retry)


def _invalid(code: str) -> OidcError:
    return OidcError(code, "oidc.invalid_token")


def _unreachable(code: str = "unreachable") -> OidcError:
    return OidcError(code, "oidc.unreachable")


# -- personal numbers -------------------------------------------------------------------------


def normalise_personal_number(value: object, *, today: date | None = None) -> str | None:
    """``YYYYMMDD-NNNN`` from the common spellings, or ``None`` if it is not a valid one."""
    if not isinstance(value, str):
        return None
    try:
        return personnummer.parse(value, today=today or datetime.now(UTC).date())
    except personnummer.PersonnummerError:
        return None


# -- the provider -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Discovery:
    """The parts of the provider's metadata this client uses."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    userinfo_endpoint: str | None
    id_token_signing_alg_values_supported: tuple[str, ...]
    token_endpoint_auth_methods_supported: tuple[str, ...]
    iss_parameter_supported: bool


def _require_secure(url: object, what: str) -> str:
    """HTTPS, or HTTP only on loopback (a local test provider)."""
    if not isinstance(url, str) or not url:
        raise _unreachable(f"discovery_missing_{what}")
    parsed = URL(url)
    if parsed.scheme == "https" or (parsed.scheme == "http" and parsed.host in _LOOPBACK):
        return url
    raise _unreachable(f"discovery_insecure_{what}")


class OidcProvider:
    """An :class:`~signing.identity.base.IdentityProvider` for one OpenID Connect provider.

    Pass ``session`` to share an aiohttp session (it is then not closed here);
    otherwise one is made on first use, trusting ``settings.ca_cert`` if set.
    ``require_fresh_login`` asks for ``prompt=login`` and ``max_age=0`` and refuses an
    ID token whose ``auth_time`` is missing or predates the flow: a signature needs the
    signer present now, not a single sign-on session left open on the phone.
    """

    method = "oidc"

    def __init__(
        self,
        settings: OidcSettings,
        *,
        session: aiohttp.ClientSession | None = None,
        timeout: float = 10.0,
        require_fresh_login: bool = True,
    ) -> None:
        self.settings = settings
        self._session = session
        self._owns_session = session is None
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._require_fresh_login = require_fresh_login
        self._lock = asyncio.Lock()
        self._discovery: tuple[float, Discovery] | None = None
        self._jwks: tuple[float, list[dict[str, Any]]] | None = None

    async def close(self) -> None:
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None

    # -- the IdentityProvider interface --

    async def start(self, ctx: SigningContext) -> Started:
        """The authorization URL for the browser; raises :class:`OidcError` if unreachable."""
        meta = await self.discovery()
        state = secrets.token_urlsafe(32)
        nonce = secrets.token_urlsafe(32)
        verifier = secrets.token_urlsafe(48)  # 64 characters, within RFC 7636's 43-128
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
        redirect_uri = f"{ctx.public_base_url.rstrip('/')}/oidc/callback"
        query = {
            "response_type": "code",
            "client_id": self.settings.client_id,
            "redirect_uri": redirect_uri,
            "scope": " ".join(self._scopes()),
            "state": state,
            "nonce": nonce,
            "code_challenge": challenge.rstrip(b"=").decode(),
            "code_challenge_method": "S256",
            "ui_locales": ctx.language,
        }
        if self._require_fresh_login:
            query |= {"prompt": "login", "max_age": "0"}  # max_age makes auth_time mandatory
        url = URL(meta.authorization_endpoint).update_query(query)
        return Started(
            page={"redirect": str(url)},
            state={
                "state": state,
                "nonce": nonce,
                "code_verifier": verifier,
                "redirect_uri": redirect_uri,
                "started_at": datetime.now(UTC).isoformat(),
            },
        )

    async def check(
        self, ctx: SigningContext, state: Mapping[str, Any], params: Mapping[str, Any]
    ) -> CheckResult:
        try:
            return Done(await self._complete(state, params))
        except OidcError as error:
            log.info("oidc identification failed for request %s: %s", ctx.request_id, error.code)
            return error.failed

    async def cancel(self, ctx: SigningContext, state: Mapping[str, Any]) -> None:
        """Nothing to cancel at the provider: an unused code simply expires there."""

    # -- the flow --

    async def _complete(self, state: Mapping[str, Any], params: Mapping[str, Any]) -> Identity:
        meta = await self.discovery()
        expected = state.get("state")
        received = params.get("state")
        if not (
            isinstance(expected, str)
            and isinstance(received, str)
            and hmac.compare_digest(expected.encode(), received.encode())
        ):
            raise OidcError("state_mismatch", "oidc.state_mismatch")
        issuer_param = params.get("iss")
        if (issuer_param is not None or meta.iss_parameter_supported) and issuer_param != (
            meta.issuer
        ):
            raise OidcError("issuer_mismatch", "oidc.state_mismatch")  # RFC 9207 mix-up defence
        error = params.get("error")
        if error is not None:
            raise _callback_error(str(error))
        started_at = _parse_time(state.get("started_at"))
        if started_at is None or datetime.now(UTC) - started_at > FLOW_TTL:
            raise OidcError("expired", "oidc.expired")
        code = params.get("code")
        if not isinstance(code, str) or not code:
            raise OidcError("missing_code", "oidc.state_mismatch")
        tokens = await self._exchange(meta, code, state)
        claims = await self.validate_id_token(
            tokens["id_token"], nonce=str(state.get("nonce", "")), not_before=started_at
        )
        profile: Mapping[str, Any] = claims
        source = "id_token"
        claim = self.settings.personal_number_claim
        if claims.get(claim) is None and meta.userinfo_endpoint:
            userinfo = await self._userinfo(meta, tokens["access_token"], claims["sub"])
            profile = userinfo | {key: value for key, value in claims.items() if value is not None}
            source = "userinfo"
        raw_number = profile.get(claim)
        if raw_number is None:
            raise OidcError("missing_personal_number", "oidc.missing_personal_number", retry=False)
        personal_number = normalise_personal_number(raw_number)
        if personal_number is None:
            raise OidcError("invalid_personal_number", "oidc.missing_personal_number", retry=False)
        evidence = {key: claims.get(key) for key in ("iss", "sub", "aud", "iat", "auth_time")}
        evidence |= {"acr": claims.get("acr"), "amr": claims.get("amr")}
        evidence |= {"id_token": tokens["id_token"], "personal_number_from": source}
        return Identity(
            method=self.method,
            subject=claims["sub"],
            name=_display_name(profile),
            personal_number=personal_number,
            at=datetime.now(UTC),
            evidence=evidence,
        )

    async def _exchange(
        self, meta: Discovery, code: str, state: Mapping[str, Any]
    ) -> dict[str, str]:
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": str(state.get("redirect_uri", "")),
            "code_verifier": str(state.get("code_verifier", "")),
        }
        headers = {"Accept": "application/json"}
        secret = self.settings.client_secret
        methods = meta.token_endpoint_auth_methods_supported
        if secret is None:
            form["client_id"] = self.settings.client_id
        elif "client_secret_basic" in methods or "client_secret_post" not in methods:
            pair = f"{quote(self.settings.client_id, safe='')}:{quote(secret, safe='')}"
            headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
        else:
            form |= {"client_id": self.settings.client_id, "client_secret": secret}
        session = await self._http()
        try:
            async with session.post(
                meta.token_endpoint, data=form, headers=headers, allow_redirects=False
            ) as response:
                body = await _read_json(response)
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as error:
            raise _unreachable() from error
        if status != 200 or not isinstance(body, dict):
            error_code = body.get("error") if isinstance(body, dict) else None
            log.info("oidc token endpoint replied %s (%s)", status, str(error_code)[:40])
            if status >= 500:
                raise _unreachable("token_endpoint_error")
            raise OidcError("token_exchange_failed", "oidc.token_exchange_failed")
        id_token, access_token = body.get("id_token"), body.get("access_token")
        if not isinstance(id_token, str) or not isinstance(access_token, str):
            raise OidcError("token_exchange_failed", "oidc.token_exchange_failed")
        if str(body.get("token_type", "")).lower() != "bearer":
            raise OidcError("token_exchange_failed", "oidc.token_exchange_failed")
        return {"id_token": id_token, "access_token": access_token}

    async def _userinfo(self, meta: Discovery, access_token: str, sub: str) -> dict[str, Any]:
        assert meta.userinfo_endpoint is not None
        session = await self._http()
        headers = {"Authorization": f"Bearer {access_token}", "Accept": "application/json"}
        try:
            async with session.get(
                meta.userinfo_endpoint, headers=headers, allow_redirects=False
            ) as response:
                body = await _read_json(response)
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as error:
            raise _unreachable() from error
        if status != 200 or not isinstance(body, dict):
            raise _invalid("userinfo_failed")
        if body.get("sub") != sub:  # OIDC Core 5.3.4: userinfo must be about the same subject
            raise _invalid("userinfo_subject_mismatch")
        return body

    # -- ID token validation --

    async def validate_id_token(
        self, id_token: str, *, nonce: str, not_before: datetime | None = None
    ) -> dict[str, Any]:
        """The verified claims of ``id_token``; raises :class:`OidcError` (invalid_token).

        ``not_before`` is when the flow started: with ``require_fresh_login`` an
        ``auth_time`` older than that (less the leeway) is refused.
        """
        meta = await self.discovery()
        try:
            header = jwt.get_unverified_header(id_token)
        except jwt.PyJWTError as error:
            raise _invalid("malformed_token") from error
        algorithm = header.get("alg")
        secret = self.settings.client_secret
        if algorithm in ASYMMETRIC_ALGORITHMS:
            key: Any = (await self._signing_key(header)).key
        elif (
            algorithm in HMAC_ALGORITHMS
            and secret
            and algorithm in meta.id_token_signing_alg_values_supported
        ):
            key = secret.encode()
        else:
            raise _invalid("algorithm_refused")
        try:
            claims: dict[str, Any] = jwt.decode(
                id_token,
                key,
                algorithms=[algorithm],
                audience=self.settings.client_id,
                issuer=meta.issuer,
                leeway=LEEWAY,
                options={"require": ["iss", "sub", "aud", "exp", "iat"]},
            )
        except jwt.PyJWTError as error:
            raise _invalid(f"token_{type(error).__name__}") from error
        self._check_claims(claims, meta, nonce, not_before)
        return claims

    def _check_claims(
        self, claims: Mapping[str, Any], meta: Discovery, nonce: str, not_before: datetime | None
    ) -> None:
        """What PyJWT does not check: exact issuer, ``azp``, ``nonce``, ``iat``, ``auth_time``."""
        if claims.get("iss") != meta.issuer:
            raise _invalid("issuer_mismatch")
        if not isinstance(claims.get("sub"), str) or not claims["sub"]:
            raise _invalid("missing_subject")
        audience = claims.get("aud")
        azp = claims.get("azp")
        if isinstance(audience, list) and len(audience) > 1 and azp is None:
            raise _invalid("missing_azp")
        if azp is not None and azp != self.settings.client_id:
            raise _invalid("azp_mismatch")
        token_nonce = claims.get("nonce")
        if not (
            nonce
            and isinstance(token_nonce, str)
            and hmac.compare_digest(token_nonce.encode(), nonce.encode())
        ):
            raise _invalid("nonce_mismatch")
        now = time.time()
        leeway = LEEWAY.total_seconds()
        iat = claims.get("iat")
        if not isinstance(iat, int | float) or iat > now + leeway:
            raise _invalid("issued_in_future")
        auth_time = claims.get("auth_time")
        if auth_time is not None and not isinstance(auth_time, int | float):
            raise _invalid("bad_auth_time")
        if self._require_fresh_login and not_before is not None:
            if auth_time is None or auth_time < not_before.timestamp() - leeway:
                raise _invalid("stale_authentication")

    async def _signing_key(self, header: Mapping[str, Any]) -> jwt.PyJWK:
        """The provider's key for this header; the key set is refetched once if none fits."""
        for refresh in (False, True):
            keys = await self._key_set(refresh=refresh)
            candidates = [jwk for jwk in keys if _key_fits(jwk, header)]
            if len(candidates) == 1 or (candidates and header.get("kid") is not None):
                try:
                    return jwt.PyJWK(candidates[0], algorithm=str(header["alg"]))
                except jwt.PyJWTError as error:
                    raise _invalid("bad_signing_key") from error
        raise _invalid("unknown_signing_key")

    # -- metadata and keys --

    async def discovery(self) -> Discovery:
        """The provider's metadata, cached for an hour; its issuer must be the configured one."""
        async with self._lock:
            cached = self._discovery
            if cached is not None and time.monotonic() - cached[0] < CACHE_TTL.total_seconds():
                return cached[1]
            url = f"{self.settings.issuer.rstrip('/')}/.well-known/openid-configuration"
            try:
                meta = _parse_discovery(await self._get_json(url), self.settings.issuer)
            except OidcError:
                if cached is None:
                    raise
                log.warning("oidc discovery refresh failed; using the cached metadata")
                return cached[1]
            self._discovery = (time.monotonic(), meta)
            return meta

    async def _key_set(self, *, refresh: bool = False) -> list[dict[str, Any]]:
        meta = await self.discovery()
        async with self._lock:
            cached = self._jwks
            fresh = cached is not None and time.monotonic() - cached[0] < CACHE_TTL.total_seconds()
            if cached is not None and fresh and not refresh:
                return cached[1]
            body = await self._get_json(meta.jwks_uri)
            keys = body.get("keys") if isinstance(body, dict) else None
            if not isinstance(keys, list):
                raise _unreachable("bad_jwks")
            self._jwks = (time.monotonic(), [key for key in keys if isinstance(key, dict)])
            return self._jwks[1]

    async def _get_json(self, url: str) -> Any:
        session = await self._http()
        try:
            async with session.get(url, headers={"Accept": "application/json"}) as response:
                if response.status != 200:
                    raise _unreachable(f"http_{response.status}")
                return await _read_json(response)
        except (aiohttp.ClientError, TimeoutError) as error:
            raise _unreachable() from error

    async def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            ssl_context: ssl.SSLContext | bool = True
            if self.settings.ca_cert is not None:
                ssl_context = ssl.create_default_context(cafile=str(self.settings.ca_cert))
            self._session = aiohttp.ClientSession(
                timeout=self._timeout, connector=aiohttp.TCPConnector(ssl=ssl_context)
            )
        return self._session

    def _scopes(self) -> list[str]:
        scopes = list(dict.fromkeys(self.settings.scopes))
        return scopes if "openid" in scopes else ["openid", *scopes]


def _parse_discovery(body: Any, issuer: str) -> Discovery:
    if not isinstance(body, dict):
        raise _unreachable("bad_discovery")
    if body.get("issuer") != issuer:
        raise _unreachable("discovery_issuer_mismatch")
    userinfo = body.get("userinfo_endpoint")
    return Discovery(
        issuer=issuer,
        authorization_endpoint=_require_secure(body.get("authorization_endpoint"), "authorize"),
        token_endpoint=_require_secure(body.get("token_endpoint"), "token"),
        jwks_uri=_require_secure(body.get("jwks_uri"), "jwks"),
        userinfo_endpoint=_require_secure(userinfo, "userinfo") if userinfo else None,
        id_token_signing_alg_values_supported=_strings(
            body.get("id_token_signing_alg_values_supported")
        ),
        token_endpoint_auth_methods_supported=_strings(
            body.get("token_endpoint_auth_methods_supported", ["client_secret_basic"])
        ),
        iss_parameter_supported=body.get("authorization_response_iss_parameter_supported") is True,
    )


def _key_fits(jwk: Mapping[str, Any], header: Mapping[str, Any]) -> bool:
    kty, curve = _KEY_TYPES[str(header["alg"])]
    kid = header.get("kid")
    return (
        jwk.get("kty") == kty
        and (curve is None or jwk.get("crv") == curve)
        and jwk.get("use", "sig") == "sig"
        and jwk.get("alg", header["alg"]) == header["alg"]
        and (kid is None or jwk.get("kid") == kid)
    )


def _callback_error(error: str) -> OidcError:
    if error == "access_denied":
        return OidcError("cancelled", "oidc.cancelled")
    if error in ("temporarily_unavailable", "server_error"):
        return _unreachable(f"provider_{error}")
    safe = re.sub(r"[^a-z_]", "", error.lower())[:40] or "unknown"
    return OidcError(f"provider_{safe}", "oidc.failed")


def _display_name(claims: Mapping[str, Any]) -> str | None:
    name = claims.get("name")
    if isinstance(name, str) and name.strip():
        return name.strip()
    parts = [claims.get("given_name"), claims.get("family_name")]
    joined = " ".join(part.strip() for part in parts if isinstance(part, str) and part.strip())
    return joined or None


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _strings(value: Any) -> tuple[str, ...]:
    return tuple(item for item in value if isinstance(item, str)) if isinstance(value, list) else ()


async def _read_json(response: aiohttp.ClientResponse) -> Any:
    """The body as JSON, refusing anything over :data:`MAX_RESPONSE_BYTES`."""
    raw = await response.content.read(MAX_RESPONSE_BYTES + 1)
    if len(raw) > MAX_RESPONSE_BYTES:
        raise _unreachable("response_too_large")
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return None
