"""The signing page (``GET /s/{token}``): mobile first, Swedish or English, no external assets.

The HTML is rendered here with its texts; ``static/signing.js`` drives the API.
The OpenID Connect callback lands here too and sends the browser back to the page.
"""

from __future__ import annotations

import html
import json
from importlib import resources

from aiohttp import web

from signing.errors import NotFound, SigningError
from signing.messages import message
from signing.web_common import language

PAGE_TEXT: dict[str, dict[str, str]] = {
    "sv": {
        "title": "Underteckna beslut",
        "case": "Ärende",
        "decision_type": "Beslut",
        "signer": "Beslutsfattare",
        "expires": "Länken gäller till",
        "identify": "Identifiera dig",
        "method.matrix-code": "Kod i Element",
        "method.bankid": "BankID",
        "method.oidc": "E-legitimation",
        "code.sent": "En kod har skickats till dig i Element. Skriv in den här.",
        "code.label": "Engångskod",
        "code.submit": "Fortsätt",
        "bankid.open": "Öppna BankID på den här enheten",
        "bankid.scan": "Eller skanna QR-koden med BankID-appen på en annan enhet.",
        "decision": "Beslutet",
        "read": "Ladda ner beslutet (PDF)",
        "pages.loading": "Beslutet hämtas …",
        "pages.end": "Slut på beslutet.",
        "pages.failed": "Beslutets sidor kunde inte visas här. Öppna PDF-filen för att läsa det.",
        "confirm.wait": "Rutan går att kryssa i när du har bläddrat till slutet av beslutet.",
        "confirm.wait_pdf": "Rutan går att kryssa i när du har öppnat PDF-filen.",
        "confirm": "Jag har läst beslutet.",
        "sign": "Underteckna",
        "decline": "Avslå",
        "reason": "Motivering (krävs vid avslag)",
        "signed": "Klart. Beslutet är undertecknat och har skickats till jouren.",
        "declined": "Klart. Avslaget och motiveringen har skickats till jouren.",
        "decided": "Beslutet är redan fattat. Inget mer behöver göras här.",
        "working": "Vänta …",
        "checksum": "Dokumentets kontrollsumma (SHA-256)",
        "noscript": "Sidan behöver JavaScript för att fungera.",
    },
    "en": {
        "title": "Sign decision",
        "case": "Case",
        "decision_type": "Decision",
        "signer": "Decision-maker",
        "expires": "The link is valid until",
        "identify": "Identify yourself",
        "method.matrix-code": "Code in Element",
        "method.bankid": "BankID",
        "method.oidc": "e-ID",
        "code.sent": "A code has been sent to you in Element. Enter it here.",
        "code.label": "One-time code",
        "code.submit": "Continue",
        "bankid.open": "Open BankID on this device",
        "bankid.scan": "Or scan the QR code with the BankID app on another device.",
        "decision": "The decision",
        "read": "Download the decision (PDF)",
        "pages.loading": "Loading the decision …",
        "pages.end": "End of the decision.",
        "pages.failed": (
            "The pages of the decision could not be shown here. Open the PDF file to read it."
        ),
        "confirm.wait": "You can tick the box once you have scrolled to the end of the decision.",
        "confirm.wait_pdf": "You can tick the box once you have opened the PDF file.",
        "confirm": "I have read the decision.",
        "sign": "Sign",
        "decline": "Decline",
        "reason": "Reason (required when declining)",
        "signed": "Done. The decision is signed and has been sent to the duty service.",
        "declined": "Done. The refusal and its reason have been sent to the duty service.",
        "decided": "The decision has already been made. Nothing more is needed here.",
        "working": "Please wait …",
        "checksum": "Document checksum (SHA-256)",
        "noscript": "This page needs JavaScript to work.",
    },
}


def render_page(token: str, lang: str) -> str:
    texts = PAGE_TEXT[lang]
    t = {k: html.escape(v) for k, v in texts.items()}
    data = html.escape(json.dumps({"token": token, "lang": lang, "text": texts}), quote=False)
    return f"""<!doctype html>
<html lang="{lang}">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>{t["title"]} – Socialjour</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/static/signing.css">
</head>
<body>
<main>
<h1>{t["title"]}</h1>
<noscript><p class="error">{t["noscript"]}</p></noscript>
<dl id="summary" hidden>
  <dt>{t["case"]}</dt><dd id="case-number"></dd>
  <dt>{t["decision_type"]}</dt><dd id="decision-type"></dd>
  <dt>{t["signer"]}</dt><dd id="signer"></dd>
  <dt>{t["expires"]}</dt><dd id="expires"></dd>
</dl>
<p id="status" role="status" aria-live="polite"></p>
<section id="identify" hidden>
  <h2>{t["identify"]}</h2>
  <div id="methods"></div>
  <form id="code-form" hidden>
    <p>{t["code.sent"]}</p>
    <label for="code">{t["code.label"]}</label>
    <input id="code" name="code" inputmode="numeric" autocomplete="one-time-code" maxlength="7">
    <button type="submit">{t["code.submit"]}</button>
  </form>
  <div id="bankid" hidden>
    <a id="bankid-open" class="button" href="#">{t["bankid.open"]}</a>
    <p>{t["bankid.scan"]}</p>
    <img id="bankid-qr" alt="QR">
  </div>
</section>
<section id="decide" hidden aria-labelledby="decision-heading">
  <h2 id="decision-heading">{t["decision"]}</h2>
  <p><a id="document-link" href="#" target="_blank" rel="noopener">{t["read"]}</a></p>
  <div id="pages" aria-busy="true"><p>{t["pages.loading"]}</p></div>
  <div id="after-pages">
  <p id="pages-end" hidden>{t["pages.end"]}</p>
  <p id="confirm-hint" class="hint">{t["confirm.wait"]}</p>
  <label class="check"><input type="checkbox" id="confirm" disabled
    aria-describedby="confirm-hint"> {t["confirm"]}</label>
  <button id="sign" type="button" disabled>{t["sign"]}</button>
  <label for="reason">{t["reason"]}</label>
  <textarea id="reason" rows="3" maxlength="2000"></textarea>
  <button id="decline" type="button" class="secondary">{t["decline"]}</button>
  </div>
</section>
<section id="done" hidden><p id="done-text"></p><p id="checksum"></p></section>
</main>
<script type="application/json" id="page-data">{data}</script>
<script src="/static/signing.js"></script>
</body>
</html>
"""


async def page(request: web.Request) -> web.Response:
    """Always the page, even for a cut-off link: its first API call says what is wrong."""
    token = request.match_info["token"]
    if len(token) > 200:
        raise NotFound("error.link_unknown")
    return web.Response(text=render_page(token, language(request)), content_type="text/html")


def _static(name: str, content_type: str) -> web.Response:
    body = resources.files("signing").joinpath("static", name).read_bytes()
    return web.Response(
        body=body, content_type=content_type, headers={"Cache-Control": "public, max-age=300"}
    )


async def script(request: web.Request) -> web.Response:
    return _static("signing.js", "application/javascript")


async def stylesheet(request: web.Request) -> web.Response:
    return _static("signing.css", "text/css")


async def oidc_callback(request: web.Request) -> web.StreamResponse:
    """The provider sends the browser back here with ``state`` (and a code or an error).

    Which link the sign-in belongs to is in the database (a restart mid-login loses
    nothing), and the sign-in is used up here: a replayed callback is refused. Only the
    browser that started it gets on (its pre-auth cookie); elsewhere the sign-in stays
    untouched, for its own browser.
    """
    from signing.web import BACKEND_KEY, PREAUTH_COOKIE, set_session_cookie

    backend = request.app[BACKEND_KEY]
    binding = request.cookies.get(PREAUTH_COOKIE)
    lang = language(request)
    try:
        token = await backend.claim_oidc_state(request.query.get("state", ""), binding)
        _, cookie = await backend.check_auth(
            token, dict(request.query), request.remote or "127.0.0.1", binding=binding
        )
    except NotFound:
        raise  # no such sign-in (or used up): the API's answer, as for an unknown link
    except SigningError as exc:
        return web.Response(
            status=exc.status,
            content_type="text/plain",
            text=message(lang, exc.message_key, **exc.params),
        )
    response = web.HTTPSeeOther(f"/s/{token}")
    if cookie:
        set_session_cookie(response, request.app, token, cookie)
    raise response


def add_page_routes(app: web.Application) -> None:
    app.router.add_get("/s/{token}", page)
    app.router.add_get("/static/signing.js", script)
    app.router.add_get("/static/signing.css", stylesheet)
    app.router.add_get("/oidc/callback", oidc_callback)
    from signing.preview import add_preview_routes  # (it needs signing.web, loaded by now)

    add_preview_routes(app)  # the decision's pages as images
