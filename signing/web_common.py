"""Small things the API and the page share."""

from __future__ import annotations

from aiohttp import web


def language(request: web.Request) -> str:
    """``?lang=en`` or the browser's language; Swedish unless English is asked for."""
    wanted = request.query.get("lang") or request.headers.get("Accept-Language") or "sv"
    return "en" if wanted.lower().startswith("en") else "sv"
