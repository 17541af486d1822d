"""The webhooks 46elks calls during an alert call, and the audio it plays.

A call goes: the bot asks 46elks to call (``voice_start`` points here); when the
person answers, 46elks POSTs ``/elks/{secret}/voice/{reference}`` and gets an ``ivr``
action: play the fixed message, collect one digit, post it to
``/elks/{secret}/digit/{reference}``. A "1" acknowledges the alert and plays a
"thank you"; anything else (or nothing) plays a short goodbye, and the call ends.

The secret in the path is what tells 46elks's callbacks from anyone else's, so it is
compared in constant time and never logged. The audio holds no case data and needs
no secret. Webhooks always answer 2xx when the secret is right: 46elks retries or
ends the call otherwise.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
from pathlib import Path
from urllib.parse import quote

from aiohttp import web

from handlers.notify import REFERENCE_PATTERN, Acknowledge

__all__ = ["AUDIO_DIR", "add_elks_routes", "voice_start_url"]

log = logging.getLogger(__name__)

AUDIO_DIR = Path(__file__).resolve().parent / "static"
AUDIO_NAMES = tuple(
    f"{kind}-{language}.mp3" for kind in ("alert", "thanks", "goodbye") for language in ("sv", "en")
)
#: Seconds to wait for a digit, and how many more times the message plays before giving up.
DIGIT_TIMEOUT = 10
REPEAT = 2
#: An acknowledgement slower than this is given up (the caller hears "not confirmed").
ACK_TIMEOUT = 8.0


def voice_start_url(public_base_url: str, secret: str, reference: str, language: str) -> str:
    """The webhook 46elks loads when the callee answers (``voice_start`` of the call)."""
    base = public_base_url.rstrip("/")
    lang = "en" if language == "en" else "sv"
    return f"{base}/elks/{quote(secret, safe='')}/voice/{quote(reference, safe='')}?lang={lang}"


class _ElksWebhooks:
    def __init__(self, *, secret: str, acknowledge: Acknowledge, public_base_url: str) -> None:
        if not secret:
            raise ValueError("the 46elks webhook secret is empty")
        self._secret = secret.encode()
        self._secret_text = secret
        self._acknowledge = acknowledge
        self._base = public_base_url.rstrip("/")
        self._audio: dict[str, bytes] = {}
        self._versions: dict[str, str] = {}
        for name in AUDIO_NAMES:
            data = (AUDIO_DIR / name).read_bytes()  # missing audio is a packaging bug: fail now
            self._audio[name] = data
            self._versions[name] = hashlib.sha256(data).hexdigest()[:12]

    def _check_secret(self, request: web.Request) -> None:
        given = request.match_info.get("secret", "").encode()
        if not hmac.compare_digest(given, self._secret):
            log.warning("refused a 46elks webhook: wrong secret")
            raise web.HTTPNotFound()

    def _audio_url(self, kind: str, language: str) -> str:
        name = f"{kind}-{language}.mp3"
        # 46elks caches audio by URL: the content hash makes a regenerated file a new URL.
        return f"{self._base}/elks/audio/{name}?v={self._versions[name]}"

    def _digit_url(self, reference: str, language: str) -> str:
        secret = quote(self._secret_text, safe="")
        return f"{self._base}/elks/{secret}/digit/{quote(reference, safe='')}?lang={language}"

    async def voice(self, request: web.Request) -> web.Response:
        """The callee answered: play the message and collect one digit."""
        self._check_secret(request)
        language = _language(request)
        return web.json_response(
            {
                "ivr": self._audio_url("alert", language),
                "digits": 1,
                "timeout": DIGIT_TIMEOUT,
                "repeat": REPEAT,
                "next": self._digit_url(request.match_info["reference"], language),
            }
        )

    async def digit(self, request: web.Request) -> web.Response:
        """The result of the ``ivr``: "1" acknowledges; anything else says goodbye."""
        self._check_secret(request)
        language = _language(request)
        form = await request.post()
        result = form.get("result")
        if result != "1":
            return web.json_response({"play": self._audio_url("goodbye", language)})
        reference = request.match_info["reference"]
        try:
            acknowledged = await asyncio.wait_for(self._acknowledge(reference), ACK_TIMEOUT)
        except Exception:
            # 46elks must still get its 2xx; the caller hears that nothing was confirmed.
            log.exception("acknowledging an alert from a call failed")
            acknowledged = False
        kind = "thanks" if acknowledged else "goodbye"
        return web.json_response({"play": self._audio_url(kind, language)})

    async def audio(self, request: web.Request) -> web.Response:
        data = self._audio.get(request.match_info["name"])
        if data is None:
            raise web.HTTPNotFound()
        return web.Response(
            body=data,
            content_type="audio/mpeg",
            headers={"Cache-Control": "public, max-age=86400"},
        )


def _language(request: web.Request) -> str:
    return "en" if request.query.get("lang") == "en" else "sv"


def add_elks_routes(
    app: web.Application, *, secret: str, acknowledge: Acknowledge, public_base_url: str
) -> None:
    """Add the 46elks call webhooks and the call audio to ``app`` (the signing web app)."""
    hooks = _ElksWebhooks(secret=secret, acknowledge=acknowledge, public_base_url=public_base_url)
    reference = "{reference:" + REFERENCE_PATTERN + "}"
    app.router.add_post(f"/elks/{{secret}}/voice/{reference}", hooks.voice)
    app.router.add_post(f"/elks/{{secret}}/digit/{reference}", hooks.digit)
    app.router.add_get("/elks/audio/{name}", hooks.audio)
