"""A decision from `!skicka` to a validated, signed PDF in the case room, over real E2EE."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import re
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from bot.synapse_local import free_port
from tests.conftest import BotFactory, BotSetup, UserFactory
from tests.matrix_helpers import MatrixUser
from tests.test_bot_matrix import join_duty_room, open_case
from tests.test_report_matrix import Worker

pytestmark = pytest.mark.integration

LINK = re.compile(r"https?://[^\s]+/s/([A-Za-z0-9_-]{20,})")

#: (expected question, answer) through lvu6 with "not informed" and no police.
LVU6_ANSWERS = [
    (1, "Test Testsson"),
    (2, "20160412-2380"),
    (3, "Skövde"),
    (4, "Hemma"),
    (5, "1"),
    (7, "Polisen larmade."),
    (8, "Akut fara i natt."),
    (9, "Jourhem"),
    (10, "Mamma Maria"),
    (11, "nej"),
    (13, "Mamma nås inte."),
    (14, "!hoppa"),
    (15, "Omedelbart omhändertagande."),
    (16, "nej"),
    (18, "nu"),
    (19, "Vården inleds i jourhem."),
    (21, "nej"),
    (23, "nej"),
    (25, "nej"),
]


def signing_config(
    folder: Path, methods: str = '["matrix-code"]', tsa_url: str | None = None
) -> str:
    from signing.devpki import create_dev_pki

    pki = create_dev_pki(folder / "pki")
    tsa = f'tsa_url = "{tsa_url}"' if tsa_url else ""
    return f"""
[signing]
auth_methods = {methods}
link_ttl = "1h"
{tsa}
seal_pkcs12 = "{pki.seal_pkcs12}"
seal_pkcs12_password = {{ file = "{pki.seal_password_file}" }}
trust_roots = ["{pki.ca_cert}"]
"""


def municipality(dag: MatrixUser, tag: str) -> str:
    return f"""
[[municipalities]]
id = "skovde"
name = "Skövde kommun"
intake_room_alias = "#mottagning-skovde-{tag}:localhost"

  [[municipalities.decision_makers]]
  user_id = "{dag.user_id}"
  name = "Dag Dagsson"
  role = "ordförande"
  appointed_by = "Kommunfullmäktige"
  appointed_on = 2023-01-12
  minutes_ref = "§ 4"
  valid_until = 2099-12-31
"""


class Http:
    """The signing API as the page's script uses it: JSON in, JSON out, one cookie jar."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.cookie: str | None = None

    async def acall(
        self, method: str, path: str, body: dict[str, Any] | None = None
    ) -> tuple[int, Any]:
        """Off the event loop: servers in this process (the TSA) must keep answering."""
        return await asyncio.to_thread(self.call, method, path, body)

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base + path, data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if self.cookie:
            request.add_header("Cookie", self.cookie)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                status, raw, headers = response.status, response.read(), response.headers
        except urllib.error.HTTPError as error:
            status, raw, headers = error.code, error.read(), error.headers
        cookie = headers.get("Set-Cookie")
        if cookie:
            self.cookie = cookie.split(";", 1)[0]
        if headers.get("Content-Type", "").startswith("application/json"):
            return status, json.loads(raw)
        return status, raw


async def submit_lvu6(anna: MatrixUser, bot_alias: str) -> tuple[str, str]:
    duty = await join_duty_room(anna, bot_alias)
    number, room = await open_case(anna, duty)
    await anna.wait_message(room, contains="Vilket beslut")
    w = Worker(anna, room)
    await w.say("lvu6", "Fråga 1 av 27")
    for i, (question, answer) in enumerate(LVU6_ANSWERS):
        await w.question(question)
        following = (
            f"Fråga {LVU6_ANSWERS[i + 1][0]} av"
            if i + 1 < len(LVU6_ANSWERS)
            else "Alla frågor är besvarade"
        )
        await w.say(answer, following)
    await w.say("!skicka", "skickad och låst")
    return number, room


@contextlib.asynccontextmanager
async def dag_signs_with_a_tsa(dag: MatrixUser, tag: str, folder: Path) -> AsyncIterator[str]:
    """The bot's extra configuration: Skövde with Dag on call, signing with a seal from
    a development PKI in ``folder`` and time stamps from a real TSA on loopback, which
    serves while the block runs."""
    tsa_port = free_port()
    extra = municipality(dag, tag) + signing_config(folder, tsa_url=f"http://127.0.0.1:{tsa_port}/")
    tsa = await serve_tsa(folder / "pki", tsa_port)
    try:
        yield extra
    finally:
        await tsa.cleanup()


async def test_decision_signed_with_matrix_code_arrives_as_validated_pdf(
    make_user: UserFactory, make_bot: BotFactory, tmp_path: Path
) -> None:
    anna = await make_user("anna")
    dag = await make_user("dag")
    async with dag_signs_with_a_tsa(dag, anna.localpart, tmp_path) as extra:
        await _sign_through_the_api(
            anna, dag, make_bot(members=[anna.user_id], extra=extra), tmp_path
        )


async def serve_tsa(pki_folder: Path, port: int) -> web.AppRunner:
    """A real RFC 3161 time-stamping authority on loopback (the demo's own)."""
    from signing.devpki import DevPki
    from signing.devtsa import create_tsa_app

    pki = DevPki(pki_folder)
    runner = web.AppRunner(create_tsa_app(pki.tsa_cert, pki.tsa_key))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner


async def _sign_through_the_api(
    anna: MatrixUser, dag: MatrixUser, bot: BotSetup, tmp_path: Path
) -> None:
    number, case_room = await submit_lvu6(anna, bot.duty_alias)

    # The case room is told who was asked; the decision-maker's phone gets a mention.
    await anna.wait_message(case_room, contains="Dag Dagsson")
    direct = await dag.wait(lambda: dag.invites[-1] if dag.invites else None)
    await dag.join(direct)
    alert = await dag.wait_message(direct, contains="/s/")
    assert number in alert.body and "LVU" in alert.body
    assert "Test Testsson" not in alert.body and "20160412" not in alert.body
    assert dag.user_id in alert.event.source["content"]["m.mentions"]["user_ids"]
    token = LINK.search(alert.body).group(1)  # type: ignore[union-attr]

    api = Http(f"http://127.0.0.1:{bot.process.web_port}/api/v1/signing/{token}")
    status, view = await api.acall("GET", "")
    assert status == 200 and view["case_number"] == number and view["status"] == "pending"
    assert "Testsson" not in json.dumps(view)
    assert (await api.acall("GET", "/document.pdf"))[0] == 401  # not before identification

    mark = len(dag.received)
    assert (await api.acall("POST", "/auth", {"method": "matrix-code"}))[0] == 200
    code_message = await dag.wait_message(direct, contains="engångskod", after=mark)
    code = re.search(r"\b(\d{6})\b", code_message.body).group(1)  # type: ignore[union-attr]
    wrong = "000000" if code != "000000" else "111111"
    assert (await api.acall("POST", "/auth/verify", {"code": wrong}))[0] == 401
    status, _ = await api.acall("POST", "/auth/verify", {"code": code})
    assert status == 200 and api.cookie

    status, unsigned = await api.acall("GET", "/document.pdf")
    assert status == 200 and unsigned.startswith(b"%PDF")
    status, result = await api.acall("POST", "/decision", {"action": "sign"})
    assert status == 200 and result["status"] == "signed", result
    assert (await api.acall("POST", "/decision", {"action": "sign"}))[0] == 409

    # The worker's client receives and decrypts the signed PDF, which validates.
    await anna.wait(lambda: any(r == case_room for r, _ in anna.files), timeout=60)
    (_, file_event) = next((r, e) for r, e in anna.files if r == case_room)
    signed = await anna.download_file(file_event)
    assert hashlib.sha256(signed).hexdigest() == result["document_sha256"]
    from signing.verify import verify_bytes

    report = await asyncio.to_thread(
        verify_bytes, signed, trust_roots=[tmp_path / "pki" / "dev-ca.pem"]
    )
    assert report.ok, report
    (signature,) = report.signatures
    assert signature.timestamped, "with a TSA configured the signature is PAdES B-T"
    await anna.wait_message(case_room, contains="undertecknat")
