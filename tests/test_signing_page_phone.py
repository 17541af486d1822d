"""The decision on a phone: its pages on the signing page, readable, accessible.

On Android a PDF link downloads a file instead of showing it, so after
identification the signing page shows the decision's pages as images of the very
PDF that will be sealed (``signing/preview.py``), and "I have read the decision"
can only be ticked once the end of the last page has been on screen.

The API is driven with aiohttp; the page with Debian's Chromium through Playwright
(phone-sized, touch) on the signing service of :mod:`tests.signing_fixtures`, with
axe-core (``npm ci --prefix tests/a11y``) injected for the accessibility check.
The phone screenshot goes to ``$SOCIALJOUR_ARTEFACTS/signing-page-phone.png``
(default ``tests/artefacts/``), and the test prints its path.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import re
import shutil
import struct
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest

pytest.register_assert_rewrite("tests.signing_fixtures")

from tests.chromium import CHROMIUM, CHROMIUM_ARGS, require_browser  # noqa: E402
from tests.components import unavailable  # noqa: E402
from tests.signing_fixtures import SigningServer  # noqa: E402

if TYPE_CHECKING:
    from playwright.async_api import Browser, ConsoleMessage, Page

pytest_plugins = ("tests.signing_fixtures",)

ROOT = Path(__file__).resolve().parents[1]
AXE = ROOT / "tests" / "a11y" / "node_modules" / "axe-core" / "axe.min.js"
TIMEOUT_MS = 20_000
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

HINT_SV = "Rutan går att kryssa i när du har bläddrat till slutet av beslutet."


# -- helpers: the API -------------------------------------------------------------------


async def identified_client(server: SigningServer, token: str) -> aiohttp.ClientSession:
    """A client that identified with the code from Element (it holds the session cookie)."""
    client = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))  # 127.0.0.1
    try:
        url = server.api_url(token, "/auth")
        async with client.post(url, json={"method": "matrix-code"}) as response:
            assert response.status == 200, await response.text()
        code = await server.last_code()
        async with client.post(server.api_url(token, "/auth/verify"), json={"code": code}) as r:
            assert r.status == 200, await r.text()
    except BaseException:
        await client.close()
        raise
    return client


async def pdf_pages(pdf: bytes, folder: Path) -> list[tuple[float, float]]:
    """The page sizes (points) of ``pdf`` by poppler's ``pdfinfo``, independent of pdfium."""
    pdfinfo = shutil.which("pdfinfo")
    if pdfinfo is None:
        unavailable("poppler not installed: apt-get install poppler-utils")
    path = folder / "decision.pdf"
    path.write_bytes(pdf)
    process = await asyncio.create_subprocess_exec(
        pdfinfo, "-f", "1", "-l", "9999", str(path), stdout=asyncio.subprocess.PIPE
    )
    out, _ = await process.communicate()
    assert process.returncode == 0
    text = out.decode()
    found = re.search(r"^Pages:\s+(\d+)", text, re.M)
    assert found is not None, text
    count = int(found.group(1))
    sizes = [
        (float(w), float(h))
        for w, h in re.findall(r"^Page\s+\d+ size:\s+([\d.]+) x ([\d.]+) pts", text, re.M)
    ]
    assert len(sizes) == count
    return sizes


def png_size(data: bytes) -> tuple[int, int]:
    assert data.startswith(PNG_SIGNATURE) and data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def ink(data: bytes) -> float:
    """The share of clearly dark pixels: text on the page, not a blank sheet."""
    from PIL import Image

    image = Image.open(io.BytesIO(data)).convert("L")
    histogram = image.histogram()
    return sum(histogram[:128]) / (image.width * image.height)


# -- the API: pages of the document, only for the identified signer ----------------------


async def test_the_pages_need_identification(signing_server: SigningServer) -> None:
    token = await signing_server.new_request()
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as client:
        for path in ("/pages", "/pages/1.png"):
            async with client.get(signing_server.api_url(token, path)) as response:
                assert response.status == 401, path
                assert response.content_type == "application/json"
                assert (await response.json())["error"] == "not_identified"
            forged = {"sj_session": "x" * 43}
            async with client.get(signing_server.api_url(token, path), cookies=forged) as response:
                assert response.status == 401, path
                assert response.content_type == "application/json"


async def test_the_pages_are_the_documents_pages_as_readable_pngs(
    signing_server: SigningServer, tmp_path: Path
) -> None:
    server = signing_server
    token = await server.new_request()
    client = await identified_client(server, token)
    async with client:
        async with client.get(server.api_url(token, "/document.pdf")) as response:
            assert response.status == 200
            pdf = await response.read()
        assert hashlib.sha256(pdf).hexdigest() == (await server.request(token)).document_sha256
        sizes = await pdf_pages(pdf, tmp_path)

        async with client.get(server.api_url(token, "/pages")) as response:
            assert response.status == 200
            assert response.headers["Cache-Control"] == "no-store"
            listing = await response.json()
        assert listing["count"] == len(sizes) == len(listing["pages"])
        for number, (entry, (width_pt, height_pt)) in enumerate(
            zip(listing["pages"], sizes, strict=True), start=1
        ):
            assert entry["number"] == number
            assert entry["url"] == f"/api/v1/signing/{token}/pages/{number}.png"
            assert entry["alt"] == f"Sida {number} av {len(sizes)} av beslutet"
            async with client.get(server.base_url + entry["url"]) as response:
                assert response.status == 200
                assert response.content_type == "image/png"
                assert response.headers["Cache-Control"] == "no-store"
                png = await response.read()
            width, height = png_size(png)
            assert (width, height) == (entry["width"], entry["height"])
            # Readable on a phone: an A4 page is 1000-1240 px wide, in the page's proportions.
            assert 1000 <= width <= 1240, width
            assert abs(height / width - height_pt / width_pt) < 0.01
            assert 0.002 < ink(png) < 0.5  # text on white

        last = len(sizes)
        for path in (f"/pages/{last + 1}.png", "/pages/0.png"):
            async with client.get(server.api_url(token, path)) as response:
                assert response.status == 404, path
        async with client.get(server.api_url(token, "/pages?lang=en")) as response:
            english = await response.json()
        assert english["pages"][-1]["alt"] == f"Page {last} of {last} of the decision"


# -- helpers: the browser ---------------------------------------------------------------


def _require_axe() -> str:
    if not AXE.exists():
        unavailable("axe-core not installed: npm ci --prefix tests/a11y")
    return AXE.read_text(encoding="utf-8")


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    """Debian's Chromium, headless, fresh for the test."""
    require_browser()
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield chromium
        finally:
            await chromium.close()


async def phone(
    browser: Browser,
    *,
    width: int = 360,
    height: int = 740,
    locale: str = "sv-SE",
    init_script: str | None = None,
) -> tuple[Page, list[str]]:
    """A touch phone of ``width`` x ``height`` CSS pixels; its page and its complaints."""
    context = await browser.new_context(
        viewport={"width": width, "height": height},
        device_scale_factor=2,
        is_mobile=True,
        has_touch=True,
        locale=locale,
        timezone_id="Europe/Stockholm",
    )
    context.set_default_timeout(TIMEOUT_MS)
    if init_script:
        await context.add_init_script(init_script)
    page = await context.new_page()
    problems: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if message.type in ("error", "warning"):
            problems.append(f"{message.type}: {message.text}")

    page.on("console", on_console)
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    return page, problems


async def open_and_identify(
    page: Page,
    server: SigningServer,
    token: str,
    *,
    lang: str | None = None,
    pages: int | None = None,
) -> None:
    """Open the link, identify with the code from Element: the decision section shows
    (and, given their number, the decision's ``pages`` are loaded)."""
    from playwright.async_api import expect

    english = lang == "en"
    await page.goto(server.page_url(token, lang=lang))
    await page.get_by_role("button", name="Code in Element" if english else "Kod i Element").tap()
    await expect(page.locator("#code-form")).to_be_visible()
    await page.locator("#code").fill(await server.last_code())
    await page.get_by_role("button", name="Continue" if english else "Fortsätt").tap()
    await expect(page.locator("#decide")).to_be_visible()
    if pages is not None:
        await pages_shown(page, pages)


async def pages_shown(page: Page, count: int) -> None:
    """Wait until the decision's ``count`` pages are on the page and loaded."""
    from playwright.async_api import expect

    await expect(page.locator("#pages img")).to_have_count(count)
    await page.wait_for_function(
        "() => [...document.querySelectorAll('#pages img')]"
        ".every(img => img.complete && img.naturalWidth > 0)"
    )


async def settled(page: Page) -> None:
    """Let the browser render twice and run what that queued (intersection callbacks)."""
    await page.evaluate(
        "() => new Promise(done => requestAnimationFrame(() => requestAnimationFrame("
        "() => setTimeout(done, 0))))"
    )


async def new_request_and_its_page_count(server: SigningServer, folder: Path) -> tuple[str, int]:
    """A new request for signing, and how many pages its document has (by poppler)."""
    token = await server.new_request()
    request = await server.request(token)
    return token, len(await pdf_pages(request.document, folder))


async def read_to_the_end_and_sign(
    page: Page, server: SigningServer, token: str, count: int
) -> None:
    """The box waits for the end of the last page; then tick it, sign, and it is signed."""
    from playwright.async_api import expect

    confirm = page.locator("#confirm")
    sign = page.get_by_role("button", name="Underteckna")
    hint = page.locator("#confirm-hint")
    await pages_shown(page, count)
    # The box is disabled, and the page says why in words.
    await expect(confirm).to_be_disabled()
    await expect(hint).to_be_visible()
    await expect(hint).to_have_text(HINT_SV)
    assert await confirm.get_attribute("aria-describedby") == "confirm-hint"
    assert await sign.is_disabled()
    end = await page.locator("#pages-end").bounding_box()
    viewport = page.viewport_size
    assert end is not None and viewport is not None
    assert end["y"] > viewport["height"], "the end of the decision is on the first screen"

    # The first page read, not the last: still disabled. (The box itself is under the
    # last page, so going to it shows the end: no tap on it here.)
    await page.locator("#pages img").first.evaluate("img => img.scrollIntoView({block: 'end'})")
    await settled(page)
    if count > 1:
        await expect(confirm).to_be_disabled()
        assert await sign.is_disabled()

    # Scrolled to the end of the last page: the box can be ticked and the decision signed.
    await page.evaluate("() => window.scrollTo(0, document.scrollingElement.scrollHeight)")
    await expect(confirm).to_be_enabled()
    await expect(hint).to_be_hidden()
    await page.get_by_text("Jag har läst beslutet").tap()
    await expect(confirm).to_be_checked()
    await expect(sign).to_be_enabled()
    await sign.tap()
    await expect(page.locator("#done")).to_be_visible()
    assert (await server.request(token)).status == "signed"


# -- reading the decision on the page -------------------------------------------------


async def test_the_page_shows_the_decision_and_the_box_waits_for_its_last_page(
    signing_server: SigningServer, browser: Browser, tmp_path: Path
) -> None:
    server = signing_server
    token, count = await new_request_and_its_page_count(server, tmp_path)
    page, problems = await phone(browser)
    await open_and_identify(page, server, token, pages=count)
    alts = await page.locator("#pages img").evaluate_all("imgs => imgs.map(i => i.alt)")
    assert alts == [f"Sida {n} av {count} av beslutet" for n in range(1, count + 1)]
    # The PDF is still there to download.
    link = page.locator("#document-link")
    assert await link.get_attribute("href") == f"/api/v1/signing/{token}/document.pdf"
    assert "PDF" in await link.inner_text()

    await read_to_the_end_and_sign(page, server, token, count)
    assert [p for p in problems if "favicon.ico" not in p] == []


async def test_without_intersection_observer_the_box_still_waits_for_the_last_page(
    signing_server: SigningServer, browser: Browser, tmp_path: Path
) -> None:
    token, count = await new_request_and_its_page_count(signing_server, tmp_path)
    page, _ = await phone(
        browser,
        init_script="delete window.IntersectionObserver; delete window.IntersectionObserverEntry;",
    )
    await open_and_identify(page, signing_server, token)
    assert await page.evaluate("() => !('IntersectionObserver' in window)")
    await read_to_the_end_and_sign(page, signing_server, token, count)


async def test_when_the_pages_cannot_be_shown_the_pdf_is_the_way_to_read_it(
    signing_server: SigningServer, browser: Browser
) -> None:
    from playwright.async_api import Route, expect

    token = await signing_server.new_request()
    page, _ = await phone(browser)

    async def broken(route: Route) -> None:
        await route.fulfill(status=500, content_type="application/json", body="{}")

    await page.route(f"**/api/v1/signing/{token}/pages?*", broken)
    await open_and_identify(page, signing_server, token)
    await expect(page.locator("#pages .error")).to_have_text(
        "Beslutets sidor kunde inte visas här. Öppna PDF-filen för att läsa det."
    )
    confirm = page.locator("#confirm")
    await expect(page.locator("#confirm-hint")).to_have_text(
        "Rutan går att kryssa i när du har öppnat PDF-filen."
    )
    await expect(confirm).to_be_disabled()
    async with page.context.expect_page() as opened:
        await page.locator("#document-link").tap()
    assert (await opened.value).url.endswith(f"/api/v1/signing/{token}/document.pdf")
    await expect(confirm).to_be_enabled()


# -- accessibility: axe-core, 320 px, 200 % text ----------------------------------------


async def serious_violations(page: Page, axe: str) -> list[dict[str, Any]]:
    """axe-core's violations of serious or critical impact on the page as it is now."""
    if not await page.evaluate("() => typeof window.axe !== 'undefined'"):
        await page.evaluate(axe)  # through DevTools: the page's CSP does not apply
    violations: list[dict[str, Any]] = await page.evaluate(
        """async () => {
            const result = await axe.run(document, {resultTypes: ["violations"]});
            return result.violations.map(v => ({
                id: v.id, impact: v.impact, help: v.help,
                nodes: v.nodes.slice(0, 5).map(n => n.target.join(" ")),
            }));
        }"""
    )
    return [v for v in violations if v["impact"] in ("serious", "critical")]


async def test_axe_core_finds_nothing_serious_before_and_after_identification(
    signing_server: SigningServer, browser: Browser, tmp_path: Path
) -> None:
    axe = _require_axe()
    from playwright.async_api import expect

    server = signing_server
    for lang in (None, "en"):
        token, count = await new_request_and_its_page_count(server, tmp_path)
        page, _ = await phone(browser, locale="en-GB" if lang else "sv-SE")
        await page.goto(server.page_url(token, lang=lang))
        await expect(page.locator("#identify")).to_be_visible()
        assert await serious_violations(page, axe) == [], lang

        await open_and_identify(page, server, token, lang=lang, pages=count)
        assert await serious_violations(page, axe) == [], lang
        await page.context.close()


#: Layout problems a reader would see: a horizontally scrolling page, text or controls
#: outside the screen or cut off, blocks drawn over each other.
LAYOUT_PROBLEMS = """() => {
    const problems = [];
    const root = document.scrollingElement;
    if (root.scrollWidth > root.clientWidth) {
        problems.push(`page scrolls sideways: ${root.scrollWidth} > ${root.clientWidth}`);
    }
    const visible = (el) => el.getClientRects().length > 0
        && getComputedStyle(el).visibility !== "hidden";
    const name = (el) => el.id ? "#" + el.id : el.tagName.toLowerCase()
        + (el.textContent ? ` "${el.textContent.trim().slice(0, 30)}"` : "");
    const width = root.clientWidth;
    const items = "h1, h2, dt, dd, p, label, button, a, img, input, textarea";
    for (const el of document.querySelectorAll(items)) {
        if (!visible(el)) continue;
        const box = el.getBoundingClientRect();
        if (box.left < -1 || box.right > width + 1) {
            problems.push(`${name(el)} outside the screen: ${box.left}..${box.right}`);
        }
        if (!["IMG", "INPUT", "TEXTAREA"].includes(el.tagName)
                && el.scrollWidth > el.clientWidth + 1) {
            problems.push(`${name(el)} cut off: ${el.scrollWidth} > ${el.clientWidth}`);
        }
    }
    const blocks = [];
    const containers = ["SECTION", "DL", "DIV"];
    for (const parent of document.querySelectorAll("main, main section, main dl, main div")) {
        if (!visible(parent)) continue;
        for (const el of parent.children) {
            if (visible(el) && !containers.includes(el.tagName)) blocks.push(el);
        }
    }
    for (let i = 0; i < blocks.length; i++) {
        for (let j = i + 1; j < blocks.length; j++) {
            const a = blocks[i].getBoundingClientRect(), b = blocks[j].getBoundingClientRect();
            const x = Math.min(a.right, b.right) - Math.max(a.left, b.left);
            const y = Math.min(a.bottom, b.bottom) - Math.max(a.top, b.top);
            if (x > 1 && y > 1) problems.push(`${name(blocks[i])} overlaps ${name(blocks[j])}`);
        }
    }
    return problems;
}"""


async def test_usable_at_320_px_and_with_text_at_200_percent(
    signing_server: SigningServer, browser: Browser, tmp_path: Path
) -> None:
    from playwright.async_api import expect

    server = signing_server
    token, count = await new_request_and_its_page_count(server, tmp_path)
    page, _ = await phone(browser, width=320, height=640)
    await page.goto(server.page_url(token))
    await expect(page.locator("#identify")).to_be_visible()
    assert await page.evaluate(LAYOUT_PROBLEMS) == []

    await open_and_identify(page, server, token, pages=count)
    assert await page.evaluate(LAYOUT_PROBLEMS) == []

    # Text at 200 %: the text really is twice as large, and still nothing is cut off.
    size = "() => parseFloat(getComputedStyle(document.getElementById('confirm-hint')).fontSize)"
    before = await page.evaluate(size)
    await page.evaluate("() => { document.documentElement.style.fontSize = '200%'; }")
    assert await page.evaluate(size) >= 2 * before - 0.5
    assert await page.evaluate(LAYOUT_PROBLEMS) == []
    for name in ("Underteckna", "Avslå"):
        button = page.get_by_role("button", name=name)
        await button.scroll_into_view_if_needed()
        await expect(button).to_be_visible()
        await expect(button).to_be_in_viewport()
    await page.evaluate("() => window.scrollTo(0, document.scrollingElement.scrollHeight)")
    await expect(page.locator("#confirm")).to_be_enabled()
    await page.get_by_text("Jag har läst beslutet").tap()
    await expect(page.get_by_role("button", name="Underteckna")).to_be_enabled()


# -- the artefact: the decision on a phone ----------------------------------------------


def artefact(name: str) -> Path:
    """Where a test artefact goes: ``$SOCIALJOUR_ARTEFACTS`` or ``tests/artefacts/``."""
    folder = Path(os.environ.get("SOCIALJOUR_ARTEFACTS") or ROOT / "tests" / "artefacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder / name


async def test_a_phone_screenshot_shows_the_first_page_of_the_decision(
    signing_server: SigningServer, browser: Browser, tmp_path: Path
) -> None:
    server = signing_server
    token, count = await new_request_and_its_page_count(server, tmp_path)
    page, _ = await phone(browser, width=360, height=740)
    await open_and_identify(page, server, token, pages=count)
    # From the heading "Beslutet" down: the PDF link and the whole first page under it.
    await page.locator("#decide h2").evaluate("h => h.scrollIntoView({block: 'start'})")
    await settled(page)
    first = page.locator("#pages img").first
    box = await first.bounding_box()
    assert box is not None
    assert box["y"] >= -1 and box["y"] + box["height"] <= 740 + 1  # the whole first page
    assert box["width"] >= 300  # as wide as the phone allows

    path = artefact("signing-page-phone.png")
    await page.screenshot(path=str(path))
    assert png_size(path.read_bytes()) == (720, 1480)  # 360 x 740 at device scale 2
    print(f"\nphone screenshot of the signing page: {path}")
