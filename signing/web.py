"""The web service: the signing API and page; health and metrics on the admin listener.

An app factory with typed keys; the composition root passes in the backend (the
decision service) so this module never touches the database or Matrix.
Errors become ``{"error": CODE, "message": ...}`` here, in one place.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol
from urllib.parse import urlsplit

from aiohttp import web

from signing.errors import BadRequest, Forbidden, NotFound, SigningError, TooManyAttempts
from signing.messages import message
from signing.web_common import (
    IPNetwork,
    SlidingWindow,
    address_key,
    client_address,
    language,
    trusted_networks,
)

log = logging.getLogger(__name__)

HealthProbe = Callable[[], Awaitable[dict[str, Any]]]
#: The Prometheus text exposition.
MetricsSource = Callable[[], Awaitable[str]]
METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
SESSION_COOKIE = "sj_session"
#: Set in the browser that starts identification; status, verify and the OIDC callback
#: answer only to it (its hash is kept with the attempt, in the database).
PREAUTH_COOKIE = "sj_preauth"
#: As long as the longest attempt may take (an OpenID Connect sign-in, 15 minutes).
PREAUTH_MAX_AGE = 900


class SigningBackend(Protocol):
    async def view(self, token: str, cookie: str | None) -> dict[str, Any]: ...

    async def start_auth(
        self, token: str, method: str, ip: str, *, binding: str | None = None
    ) -> dict[str, Any]: ...

    async def check_auth(
        self, token: str, params: Mapping[str, Any], ip: str, *, binding: str | None = None
    ) -> tuple[dict[str, Any], str | None]: ...

    async def claim_oidc_state(self, state: str, binding: str | None) -> str: ...

    async def document(self, token: str, cookie: str | None) -> bytes: ...

    async def decide(
        self, token: str, cookie: str | None, action: str, reason: str
    ) -> dict[str, Any]: ...


HEALTH_KEY = web.AppKey[HealthProbe]("health")
METRICS_KEY = web.AppKey[MetricsSource]("metrics")
BACKEND_KEY = web.AppKey[SigningBackend]("backend")
BASE_URL_KEY = web.AppKey[str]("public_base_url")
TRUSTED_PROXIES_KEY = web.AppKey[tuple[IPNetwork, ...]]("trusted_proxies")
ADDRESS_LIMIT_KEY = web.AppKey[SlidingWindow]("address_limit")

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
}
#: Sent on every response when the public address is https: browsers then never try
#: plain http for this host for a year. Without ``includeSubDomains`` (other hosts of
#: the municipality's domain may still need http) and without ``preload`` (a browser
#: list that is slow to leave, for a host the operator may move).
HSTS = "max-age=31536000"


@web.middleware
async def client_address_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Behind a trusted reverse proxy, ``request.remote`` becomes the client's own
    address (from ``X-Forwarded-For``); from anyone else the header is ignored."""
    trusted = request.app[TRUSTED_PROXIES_KEY]
    if trusted:
        client = client_address(
            request.remote, request.headers.getall("X-Forwarded-For", []), trusted
        )
        if client is not None and client != request.remote:
            request = request.clone(remote=client)
    return await handler(request)


@web.middleware
async def middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    try:
        response = await handler(request)
    except SigningError as exc:
        body: dict[str, Any] = {
            "error": exc.code,
            "message": message(language(request), exc.message_key, **exc.params),
        }
        body.update({k: v for k, v in exc.params.items() if k in ("code", "retry")})
        response = web.json_response(body, status=exc.status)
        if "retry_after" in exc.params:
            response.headers["Retry-After"] = str(exc.params["retry_after"])
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        response = web.json_response(
            {
                "error": "not_found" if exc.status == 404 else "bad_request",
                "message": message(
                    language(request),
                    "error.not_found" if exc.status == 404 else "error.bad_request",
                ),
            },
            status=exc.status,
        )
    except Exception:
        log.exception("signing request failed")
        response = web.json_response(
            {"error": "internal", "message": message(language(request), "error.internal")},
            status=500,
        )
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if request.app[BASE_URL_KEY].startswith("https://"):
        response.headers.setdefault("Strict-Transport-Security", HSTS)
    return response


def _client_ip(request: web.Request) -> str:
    """The client's address (the proxy's word for it only when the proxy is trusted:
    :func:`client_address_middleware`)."""
    return request.remote or "127.0.0.1"


def _take_address_attempt(request: web.Request) -> str:
    """Count an identification start or code check against the client's address;
    refuse with 429 and ``Retry-After`` when it has had too many. The key it counted on."""
    key = address_key(_client_ip(request))
    wait = request.app[ADDRESS_LIMIT_KEY].take(key)
    if wait is not None:
        log.warning("identification attempts from one address are being slowed down")
        raise TooManyAttempts(
            "error.slow_down",
            code="slow_down",
            retry=True,
            retry_after=wait,
            minutes=max(1, -(-wait // 60)),
        )
    return key


async def _json(request: web.Request) -> dict[str, Any]:
    """POST bodies must be JSON from our own origin (with SameSite=Strict: CSRF-safe)."""
    if request.content_type != "application/json":
        raise BadRequest("error.bad_request")
    origin = request.headers.get("Origin")
    expected = urlsplit(request.app[BASE_URL_KEY])
    if origin is not None and origin != f"{expected.scheme}://{expected.netloc}":
        raise Forbidden("error.cross_site")
    try:
        body = await request.json()
    except ValueError as exc:
        raise BadRequest("error.bad_request") from exc
    if not isinstance(body, dict):
        raise BadRequest("error.bad_request")
    return body


def _token(request: web.Request) -> str:
    token = request.match_info["token"]
    if not 20 <= len(token) <= 100:
        raise NotFound("error.link_unknown")
    return token


async def api_view(request: web.Request) -> web.Response:
    view = await request.app[BACKEND_KEY].view(_token(request), request.cookies.get(SESSION_COOKIE))
    return web.json_response(view)


async def api_auth(request: web.Request) -> web.Response:
    body = await _json(request)
    _take_address_attempt(request)  # every start counts: it sends a code or opens an order
    binding = secrets.token_urlsafe(32)  # 256 bits; only its hash is kept
    page = await request.app[BACKEND_KEY].start_auth(
        _token(request), str(body.get("method", "")), _client_ip(request), binding=binding
    )
    response = web.json_response(page)
    set_preauth_cookie(
        response,
        request.app,
        _token(request),
        binding,
        redirect=isinstance(page.get("redirect"), str),
    )
    return response


async def _finish_auth(request: web.Request, params: Mapping[str, Any]) -> web.Response:
    page, cookie = await request.app[BACKEND_KEY].check_auth(
        _token(request), params, _client_ip(request), binding=request.cookies.get(PREAUTH_COOKIE)
    )
    if isinstance(page.get("hint"), str):
        page = {**page, "message": message(language(request), page["hint"])}
    response = web.json_response(page)
    if cookie:
        set_session_cookie(response, request.app, _token(request), cookie)
    return response


def set_session_cookie(
    response: web.StreamResponse, app: web.Application, token: str, cookie: str
) -> None:
    """The identified signer's session: this link's API only, never readable by scripts,
    never sent cross-site, and only over TLS when the service is public over https."""
    response.set_cookie(
        SESSION_COOKIE,
        cookie,
        httponly=True,
        samesite="Strict",
        secure=app[BASE_URL_KEY].startswith("https://"),
        path=f"/api/v1/signing/{token}",
        max_age=1800,
    )


def set_preauth_cookie(
    response: web.StreamResponse, app: web.Application, token: str, value: str, *, redirect: bool
) -> None:
    """Bind the identification just started to this browser.

    Where it is checked: this link's ``auth/status`` and ``auth/verify`` (same-site
    calls from the page: SameSite=Strict), or, for a sign-in at an OpenID Connect
    provider, the callback the provider sends the browser back to (a top-level
    navigation from another site: SameSite=Lax, the strictest that still carries it).
    """
    response.set_cookie(
        PREAUTH_COOKIE,
        value,
        httponly=True,
        samesite="Lax" if redirect else "Strict",
        secure=app[BASE_URL_KEY].startswith("https://"),
        path="/oidc/callback" if redirect else f"/api/v1/signing/{token}/auth",
        max_age=PREAUTH_MAX_AGE,
    )


async def api_auth_verify(request: web.Request) -> web.Response:
    body = await _json(request)
    key = _take_address_attempt(request)  # counted before the code is compared
    response = await _finish_auth(request, {"code": str(body.get("code", ""))})
    request.app[ADDRESS_LIMIT_KEY].give_back(key)  # the right code is no failure
    return response


async def api_auth_status(request: web.Request) -> web.Response:
    return await _finish_auth(request, {})


async def api_document(request: web.Request) -> web.Response:
    pdf = await request.app[BACKEND_KEY].document(
        _token(request), request.cookies.get(SESSION_COOKIE)
    )
    return web.Response(
        body=pdf,
        content_type="application/pdf",
        headers={"Content-Disposition": 'inline; filename="beslut.pdf"'},
    )


async def api_decision(request: web.Request) -> web.Response:
    body = await _json(request)
    result = await request.app[BACKEND_KEY].decide(
        _token(request),
        request.cookies.get(SESSION_COOKIE),
        str(body.get("action", "")),
        str(body.get("reason", "")),
    )
    return web.json_response(result)


async def healthz(request: web.Request) -> web.Response:
    """``{"status": "ok"|"starting"|"standby"|..., ...}``; 503 unless ok, so a load
    balancer or an orchestrator sends nothing to a node that is not serving."""
    state = await request.app[HEALTH_KEY]()
    return web.json_response(state, status=200 if state.get("status") == "ok" else 503)


async def metrics(request: web.Request) -> web.Response:
    body = await request.app[METRICS_KEY]()
    return web.Response(body=body.encode(), headers={"Content-Type": METRICS_CONTENT_TYPE})


def create_admin_app(*, health: HealthProbe, metrics_source: MetricsSource) -> web.Application:
    """The admin listener (``web.admin_listen``): health and metrics, apart from the
    public signing service, so neither is reachable through the public address."""
    app = web.Application(client_max_size=1024)
    app[HEALTH_KEY] = health
    app[METRICS_KEY] = metrics_source
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    return app


def create_app(
    *,
    backend: SigningBackend | None = None,
    public_base_url: str = "http://127.0.0.1:8080",
    trusted_proxies: Sequence[str] = (),
    address_limit: SlidingWindow | None = None,
) -> web.Application:
    """The web app. ``trusted_proxies`` (``web.trusted_proxies``): the reverse proxies
    whose ``X-Forwarded-For`` is believed; ``address_limit``: identification attempts
    per client address (default :class:`SlidingWindow`'s limits)."""
    app = web.Application(
        middlewares=[client_address_middleware, middleware], client_max_size=64 * 1024
    )
    app[TRUSTED_PROXIES_KEY] = trusted_networks(trusted_proxies)
    app[ADDRESS_LIMIT_KEY] = address_limit if address_limit is not None else SlidingWindow()
    app[BASE_URL_KEY] = public_base_url.rstrip("/")
    if backend is not None:
        app[BACKEND_KEY] = backend
        base = "/api/v1/signing/{token}"
        app.router.add_get(base, api_view)
        app.router.add_post(f"{base}/auth", api_auth)
        app.router.add_post(f"{base}/auth/verify", api_auth_verify)
        app.router.add_get(f"{base}/auth/status", api_auth_status)
        app.router.add_get(f"{base}/document.pdf", api_document)
        app.router.add_post(f"{base}/decision", api_decision)
        from signing.page import add_page_routes

        add_page_routes(app)
    return app
