"""A local stand-in for 46elks's HTTP API (``/a1/sms``, ``/a1/calls``, ``/a1/me``) on 127.0.0.1.

Like the provider: HTTP basic auth with the API username and password (401 without
them), form-encoded requests, ``to`` in E.164, a missing or invalid parameter answered
400 with a short plain-text reason, JSON objects for created SMS and calls. A call
then plays out as 46elks does once the callee answers: POST the ``voice_start``
webhook, GET the ``ivr`` audio it answers with, POST the pressed digit (``result``)
to its ``next``, and GET whatever that answer plays. ``fail_next`` makes the next
requests answer an error status instead (a 503, a 429, ...).

Every request, webhook answer and fetched file is recorded for the tests to inspect.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
import secrets
import socket
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp
from aiohttp import web

API_PREFIX = "/a1"
_E164 = re.compile(r"\+[1-9][0-9]{6,14}")
_TEXT_SENDER = re.compile(r"[A-Za-z][A-Za-z0-9]{1,10}")


@dataclass
class Fetched:
    """One GET of an audio URL the bot handed out."""

    url: str
    status: int
    content_type: str
    body: bytes


@dataclass
class Webhook:
    """One POST the provider made to the bot during a call, and the bot's answer."""

    url: str
    form: dict[str, str]
    status: int
    answer: dict[str, Any] | None
    raw: bytes


@dataclass
class Call:
    id: str
    form: dict[str, str]
    webhooks: list[Webhook] = field(default_factory=list)
    fetched: list[Fetched] = field(default_factory=list)
    done: asyncio.Event = field(default_factory=asyncio.Event)
    error: str | None = None


@dataclass
class Request:
    method: str
    path: str
    authorised: bool
    content_type: str
    form: dict[str, str]
    status: int = 0


class ElksTestServer:
    """``async with ElksTestServer(username, password) as elks:`` then ``elks.url``."""

    def __init__(self, username: str, password: str, *, digit: str | None = "1") -> None:
        self.username = username
        self.password = password
        #: What the callee presses; None: nothing, the ``ivr`` ends with ``failed``.
        self.digit = digit
        #: The account's credit as ``/me`` reports it (1/10000 SEK).
        self.balance = 9_670_500
        self.port = 0
        self.requests: list[Request] = []
        self.sms: list[dict[str, str]] = []
        self.calls: list[Call] = []
        self._errors: deque[tuple[int, str]] = deque()
        self._runner: web.AppRunner | None = None
        self._client: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{API_PREFIX}"

    def fail_next(self, status: int, reason: str = "Service unavailable", times: int = 1) -> None:
        self._errors.extend([(status, reason)] * times)

    async def call_done(self, timeout: float = 5.0) -> Call:
        """The latest call, once its webhooks have played out."""
        call = self.calls[-1]
        await asyncio.wait_for(call.done.wait(), timeout)
        return call

    # --- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post(f"{API_PREFIX}/sms", self._sms)
        app.router.add_post(f"{API_PREFIX}/calls", self._calls)
        app.router.add_get(f"{API_PREFIX}/me", self._me)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock).start()
        self._client = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5))

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._client is not None:
            await self._client.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> ElksTestServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # --- the API ---------------------------------------------------------------------

    async def _checked(
        self, request: web.Request, required: tuple[str, ...], *, text_sender: bool
    ) -> tuple[dict[str, str], web.Response | None]:
        """Record the request; the error answer the provider would give, if any."""
        form = {k: str(v) for k, v in (await request.post()).items()}
        record = Request(
            request.method, request.path, self._authorised(request), request.content_type, form
        )
        self.requests.append(record)
        error: web.Response | None = None
        if not record.authorised:
            error = web.Response(status=401, text="Unauthorized", headers=_BASIC_CHALLENGE)
        elif self._errors:
            status, reason = self._errors.popleft()
            error = web.Response(status=status, text=reason)
        elif request.content_type != "application/x-www-form-urlencoded":
            error = web.Response(status=400, text="Expected form-encoded parameters")
        else:
            missing = [key for key in required if not form.get(key)]
            if missing:
                error = web.Response(status=400, text=f"Missing key {missing[0]}")
            elif not _E164.fullmatch(form["to"]):
                error = web.Response(status=400, text="Invalid to number")
            elif not (
                _E164.fullmatch(form["from"])
                or (text_sender and _TEXT_SENDER.fullmatch(form["from"]))
            ):
                error = web.Response(status=400, text="Invalid from")
        record.status = error.status if error is not None else 200
        return form, error

    def _authorised(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except ValueError:
            return False
        return secrets.compare_digest(user, self.username) and secrets.compare_digest(
            password, self.password
        )

    async def _me(self, request: web.Request) -> web.Response:
        """``GET /a1/me``: the account (46elks: id, displayname, currency, balance in
        1/10000 of the currency unit); 401 without the right credentials."""
        record = Request(
            request.method, request.path, self._authorised(request), request.content_type, {}
        )
        self.requests.append(record)
        if not record.authorised:
            record.status = 401
            return web.Response(status=401, text="Unauthorized", headers=_BASIC_CHALLENGE)
        record.status = 200
        return web.json_response(
            {
                "id": "u" + hashlib.sha256(self.username.encode()).hexdigest()[:32],
                "displayname": "Socialjour test",
                "mobilenumber": "+46700000000",
                "currency": "SEK",
                "balance": self.balance,
                "email": "test@example.org",
            }
        )

    async def _sms(self, request: web.Request) -> web.Response:
        # The sender of an SMS may be a text ("Socialjour"); a call's must be a number.
        form, error = await self._checked(request, ("from", "to", "message"), text_sender=True)
        if error is not None:
            return error
        sender = form["from"]
        self.sms.append(form)
        return web.json_response(
            {
                "status": "created",
                "direction": "outgoing",
                "from": sender,
                "to": form["to"],
                "created": _now(),
                "parts": 1,
                "message": form["message"],
                "cost": 3500,
                "id": "s" + secrets.token_hex(16),
            }
        )

    async def _calls(self, request: web.Request) -> web.Response:
        form, error = await self._checked(request, ("from", "to", "voice_start"), text_sender=False)
        if error is not None:
            return error
        voice_start = form["voice_start"]
        if not (voice_start.startswith(("http://", "https://", "{"))):
            return web.Response(status=400, text="Invalid voice_start")
        call = Call(id="c" + secrets.token_hex(16), form=form)
        self.calls.append(call)
        task = asyncio.create_task(self._play(call))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return web.json_response(
            {
                "direction": "outgoing",
                "from": form["from"],
                "to": form["to"],
                "state": "ongoing",
                "created": _now(),
                "id": call.id,
            }
        )

    # --- a call, as the provider plays it ----------------------------------------------

    async def _play(self, call: Call) -> None:
        """The callee answers at once; follow the bot's actions to the end of the call."""
        try:
            base = {"callid": call.id, "from": call.form["from"], "to": call.form["to"]}
            start = call.form["voice_start"]
            action: dict[str, Any] | None
            if start.startswith("{"):
                action = json.loads(start)
            else:
                form = {**base, "direction": "outgoing", "created": _now()}
                action = await self._webhook(call, start, form)
            while action:
                if "ivr" in action:
                    await self._fetch(call, action["ivr"])
                    result = self.digit if self.digit is not None else "failed"
                    next_url = action.get("next")
                    action = (
                        await self._webhook(call, next_url, {**base, "result": result})
                        if isinstance(next_url, str)
                        else None
                    )
                elif "play" in action:
                    await self._fetch(call, action["play"])
                    next_url = action.get("next")
                    action = (
                        await self._webhook(call, next_url, {**base, "result": "success"})
                        if isinstance(next_url, str)
                        else None
                    )
                else:  # hangup, or anything this stand-in does not play: the call ends
                    action = None
        except Exception as exc:
            call.error = f"{type(exc).__name__}: {exc}"
        finally:
            call.done.set()

    async def _webhook(self, call: Call, url: str, form: dict[str, str]) -> dict[str, Any] | None:
        assert self._client is not None
        async with self._client.post(url, data=form) as response:
            raw = await response.read()
            answer: dict[str, Any] | None = None
            if 200 <= response.status <= 204 and raw:
                answer = json.loads(raw)
            call.webhooks.append(Webhook(url, form, response.status, answer, raw))
        return answer

    async def _fetch(self, call: Call, url: str) -> None:
        assert self._client is not None
        async with self._client.get(url) as response:
            body = await response.read()
            call.fetched.append(Fetched(url, response.status, response.content_type, body))


_BASIC_CHALLENGE = {"WWW-Authenticate": 'Basic realm="46elks"'}


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")
