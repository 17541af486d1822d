"""The decision's pages as images, so a phone shows the decision instead of downloading it.

On Android a PDF link downloads a file, and the decision-maker should read what
they sign where they sign it. So the page shows the pages of the very PDF the
backend's ``document()`` returns (the one that will be sealed), rendered here,
server-side, to PNG with pdfium:

- ``GET /api/v1/signing/{token}/pages``: the page count and, per page, its image
  URL, size in pixels and alt text (in the page's language);
- ``GET /api/v1/signing/{token}/pages/{n}.png``: page ``n`` (from 1).

Both go through ``backend.document()``, so they need the same identified session
cookie as ``document.pdf`` and say nothing before identification. pdfium is not
thread-safe and a render takes a while, so rendering happens in a worker thread,
one document at a time, never on the event loop; the result is kept in memory
per document SHA-256 (a few documents), so the page list and the images that
follow it render once.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from aiohttp import web

from signing.errors import NotFound
from signing.messages import message
from signing.web import BACKEND_KEY, SESSION_COOKIE, _token
from signing.web_common import language

if TYPE_CHECKING:
    from PIL import Image

#: 144 dpi: an A4 page becomes 1191 px wide, sharp on a phone's high-density screen
#: when zoomed in, and small enough to load quickly (a text page is ~60 kB).
SCALE = 2.0
#: No page image wider than this (an A3 or landscape page is scaled down to it).
MAX_WIDTH_PX = 1240
#: Documents kept rendered (by SHA-256): the ones being read right now.
CACHE_SIZE = 8
#: pdfium is not thread-safe: one render at a time in the whole process, even when the
#: request that started one has gone (its worker thread still runs).
_PDFIUM = threading.Lock()


@dataclass(frozen=True)
class PageImage:
    png: bytes
    width: int
    height: int


def render_pages(pdf: bytes) -> tuple[PageImage, ...]:
    """Every page of ``pdf`` as a PNG (blocking: call it in a worker thread)."""
    with _PDFIUM:
        return _render(pdf)


def _render(pdf: bytes) -> tuple[PageImage, ...]:
    import pypdfium2

    document = pypdfium2.PdfDocument(pdf)
    try:
        pages = []
        for index in range(len(document)):
            page = document[index]
            try:
                width_pt = page.get_width()
                scale = min(SCALE, MAX_WIDTH_PX / width_pt) if width_pt > 0 else SCALE
                bitmap = page.render(scale=scale)
                try:
                    image = bitmap.to_pil()
                finally:
                    bitmap.close()
            finally:
                page.close()
            out = io.BytesIO()
            compact(image).save(out, format="PNG")
            pages.append(PageImage(out.getvalue(), image.width, image.height))
        return tuple(pages)
    finally:
        document.close()


def compact(image: Image.Image) -> Image.Image:
    """The page in the fewest bytes a phone on mobile data need load, looking the same:
    grey levels for a black-and-white page (lossless, a tenth of RGB), otherwise a
    palette of 256 colours (a logo, a coloured stamp)."""
    saturation = image.convert("HSV").getextrema()[1]
    if isinstance(saturation, tuple) and saturation[1] <= 8:
        return image.convert("L")
    return image.quantize(256)


@dataclass
class PageImages:
    """Rendered documents by SHA-256, least recently used first, and the one render lock."""

    size: int = CACHE_SIZE
    _cache: OrderedDict[str, tuple[PageImage, ...]] = field(default_factory=OrderedDict)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def pages(self, pdf: bytes) -> tuple[PageImage, ...]:
        key = hashlib.sha256(pdf).hexdigest()
        found = self._cache.get(key)
        if found is None:
            async with self._lock:  # one render per document, not one per request
                found = self._cache.get(key)  # rendered while this request waited
                if found is None:
                    found = await asyncio.to_thread(render_pages, pdf)
                    self._cache[key] = found
                    while len(self._cache) > self.size:
                        self._cache.popitem(last=False)
        self._cache.move_to_end(key)
        return found


PAGE_IMAGES_KEY = web.AppKey[PageImages]("page_images")


async def _document_pages(request: web.Request) -> tuple[PageImage, ...]:
    """The pages of what ``document.pdf`` would give this browser (identification needed)."""
    pdf = await request.app[BACKEND_KEY].document(
        _token(request), request.cookies.get(SESSION_COOKIE)
    )
    return await request.app[PAGE_IMAGES_KEY].pages(pdf)


async def api_pages(request: web.Request) -> web.Response:
    token = _token(request)
    pages = await _document_pages(request)
    lang = language(request)
    count = len(pages)
    return web.json_response(
        {
            "count": count,
            "pages": [
                {
                    "number": number,
                    "url": f"/api/v1/signing/{token}/pages/{number}.png",
                    "width": page.width,
                    "height": page.height,
                    "alt": message(lang, "preview.page_alt", page=number, count=count),
                }
                for number, page in enumerate(pages, start=1)
            ],
        }
    )


async def api_page_image(request: web.Request) -> web.Response:
    pages = await _document_pages(request)
    number = int(request.match_info["number"])
    if not 1 <= number <= len(pages):
        raise NotFound("error.not_found")
    return web.Response(body=pages[number - 1].png, content_type="image/png")


def add_preview_routes(app: web.Application) -> None:
    app[PAGE_IMAGES_KEY] = PageImages()
    base = "/api/v1/signing/{token}/pages"
    app.router.add_get(base, api_pages)
    app.router.add_get(base + r"/{number:\d{1,4}}.png", api_page_image)
