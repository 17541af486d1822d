"""The web service: health and metrics now, the signing pages later.

An app factory with typed keys, so tests run the real app with aiohttp's test
client and the composition root wires in what the pages need.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

HealthProbe = Callable[[], Awaitable[dict[str, Any]]]
MetricsSource = Callable[[], Awaitable[str]]

HEALTH_KEY = web.AppKey[HealthProbe]("health")
METRICS_KEY = web.AppKey[MetricsSource]("metrics")

SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


@web.middleware
async def security_headers(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    response = await handler(request)
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


async def healthz(request: web.Request) -> web.Response:
    state = await request.app[HEALTH_KEY]()
    return web.json_response(state, status=200 if state.get("status") == "ok" else 503)


async def metrics(request: web.Request) -> web.Response:
    body = await request.app[METRICS_KEY]()
    return web.Response(text=body, content_type="text/plain", charset="utf-8")


def create_app(*, health: HealthProbe, metrics_source: MetricsSource) -> web.Application:
    app = web.Application(middlewares=[security_headers])
    app[HEALTH_KEY] = health
    app[METRICS_KEY] = metrics_source
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    return app
