"""The web service: the signing API and page, health and metrics.

An app factory with typed keys; the composition root passes in the backend (the
decision service) so this module never touches the database or Matrix.
Errors become ``{"error": CODE, "message": ...}`` here, in one place.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol
from urllib.parse import urlsplit

from aiohttp import web

from signing.errors import BadRequest, Forbidden, NotFound, SigningError
from signing.messages import message
from signing.web_common import language

log = logging.getLogger(__name__)

HealthProbe = Callable[[], Awaitable[dict[str, Any]]]
MetricsSource = Callable[[], Awaitable[str]]
SESSION_COOKIE = "sj_session"


class SigningBackend(Protocol):
    async def view(self, token: str, cookie: str | None) -> dict[str, Any]: ...

    async def start_auth(self, token: str, method: str, ip: str) -> dict[str, Any]: ...

    async def check_auth(
        self, token: str, params: Mapping[str, Any], ip: str
    ) -> tuple[dict[str, Any], str | None]: ...

    async def document(self, token: str, cookie: str | None) -> bytes: ...

    async def decide(
        self, token: str, cookie: str | None, action: str, reason: str
    ) -> dict[str, Any]: ...


HEALTH_KEY = web.AppKey[HealthProbe]("health")
METRICS_KEY = web.AppKey[MetricsSource]("metrics")
BACKEND_KEY = web.AppKey[SigningBackend]("backend")
BASE_URL_KEY = web.AppKey[str]("public_base_url")

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
    return response


def _client_ip(request: web.Request) -> str:
    return request.remote or "127.0.0.1"


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
    page = await request.app[BACKEND_KEY].start_auth(
        _token(request), str(body.get("method", "")), _client_ip(request)
    )
    if isinstance(page.get("redirect"), str):
        from signing.page import remember_oidc_state

        remember_oidc_state(request.app, _token(request), page["redirect"])
    return web.json_response(page)


async def _finish_auth(request: web.Request, params: Mapping[str, Any]) -> web.Response:
    page, cookie = await request.app[BACKEND_KEY].check_auth(
        _token(request), params, _client_ip(request)
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


async def api_auth_verify(request: web.Request) -> web.Response:
    body = await _json(request)
    return await _finish_auth(request, {"code": str(body.get("code", ""))})


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
    state = await request.app[HEALTH_KEY]()
    return web.json_response(state, status=200 if state.get("status") == "ok" else 503)


async def metrics(request: web.Request) -> web.Response:
    body = await request.app[METRICS_KEY]()
    return web.Response(text=body, content_type="text/plain", charset="utf-8")


def create_app(
    *,
    health: HealthProbe,
    metrics_source: MetricsSource,
    backend: SigningBackend | None = None,
    public_base_url: str = "http://127.0.0.1:8080",
) -> web.Application:
    app = web.Application(middlewares=[middleware], client_max_size=64 * 1024)
    app[HEALTH_KEY] = health
    app[METRICS_KEY] = metrics_source
    app[BASE_URL_KEY] = public_base_url.rstrip("/")
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
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
