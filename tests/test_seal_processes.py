"""Sealing in seal processes (``signing.seal_processes``): the key lives beside the bot.

A decision sealed through the pool validates with pyHanko and poppler, with the
seal key in a PKCS#12 file and on a PKCS#11 token (SoftHSM); the PIN or password
never shows on a seal process's command line or in its environment; a killed seal
process does not cost a signature; stopping the seal leaves no process behind.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer
from cryptography.hazmat.primitives.serialization import (
    Encoding,
)

import signing.document
from config import check_config, load_settings
from config.settings import Pkcs11Settings, SigningSettings, default_seal_processes
from signing.devpki import SEAL_NAME, DevPki, create_dev_pki
from signing.seal import Seal, SealError
from signing.verify import async_verify_bytes
from tests.components import unavailable
from tests.test_signing_api import MakeEnv, Sessions, dev_pki, make_env, sqlite_sessions  # noqa: F401
from tests.test_signing_config import BASE, problems_by_key
from tests.test_signing_document import pdf_text, render
from tests.test_signing_pki import (
    KEY_LABEL,
    PIN,
    TOKEN,
    _softhsm_module,
    import_seal_key,
    tsa,  # noqa: F401 (a fixture)
)
from tests.test_signing_seal import EVIDENCE, pdfsig, stamp_info, validate


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> DevPki:
    return create_dev_pki(tmp_path_factory.mktemp("pki"))


#: Puts the seal certificate on the token beside its key, in a process of its own.
CERTIFICATE_ONTO_TOKEN = """
import sys, pkcs11
module, token_label, label, certificate = sys.argv[1:5]
from cryptography import x509
cert = x509.load_der_x509_certificate(open(certificate, "rb").read())
token = pkcs11.lib(module).get_token(token_label=token_label)
with token.open(rw=True, user_pin=sys.stdin.readline().strip()) as session:
    session.create_object({
        pkcs11.Attribute.CLASS: pkcs11.ObjectClass.CERTIFICATE,
        pkcs11.Attribute.CERTIFICATE_TYPE: pkcs11.CertificateType.X_509,
        pkcs11.Attribute.TOKEN: True,
        pkcs11.Attribute.LABEL: label,
        pkcs11.Attribute.ID: b"\\x01",
        pkcs11.Attribute.SUBJECT: cert.subject.public_bytes(),
        pkcs11.Attribute.VALUE: open(certificate, "rb").read(),
    })
"""


@dataclasses.dataclass(frozen=True)
class Token:
    conf: Path  # SOFTHSM2_CONF for this token
    settings: SigningSettings


@pytest.fixture(scope="module")
def token(pki: DevPki, tmp_path_factory: pytest.TempPathFactory) -> Token:
    """A SoftHSM token with the development seal key and certificate, made without
    loading SoftHSM into this process.

    SoftHSM reads SOFTHSM2_CONF once per process, and tests/test_signing_pki.py's
    token lives in this test process; only the seal processes (and the helpers
    here) load it, each reading this token's configuration (:func:`on_token`).
    """
    module = _softhsm_module()
    if module is None or shutil.which("softhsm2-util") is None:
        unavailable("SoftHSM not installed: apt-get install softhsm2")
    pytest.importorskip("pkcs11", reason="python-pkcs11 not installed: pip install python-pkcs11")
    folder = tmp_path_factory.mktemp("softhsm-processes")
    (folder / "tokens").mkdir()
    conf = folder / "softhsm2.conf"
    conf.write_text(
        f"directories.tokendir = {folder / 'tokens'}\nobjectstore.backend = file\n"
        "log.level = ERROR\n"
    )
    env = {**os.environ, "SOFTHSM2_CONF": str(conf)}

    certificate = import_seal_key(pki, folder, env)
    cert_file = folder / "seal.der"
    cert_file.write_bytes(certificate.public_bytes(Encoding.DER))
    subprocess.run(
        [
            sys.executable,
            "-c",
            CERTIFICATE_ONTO_TOKEN,
            str(module),
            TOKEN,
            KEY_LABEL,
            str(cert_file),
        ],
        input=PIN + "\n",
        text=True,
        check=True,
        capture_output=True,
        timeout=60,
        env=env,
    )
    settings = SigningSettings(
        pkcs11=Pkcs11Settings(module=module, token_label=TOKEN, key_label=KEY_LABEL, pin=PIN),
        trust_roots=(pki.ca_cert,),
    )
    return Token(conf=conf, settings=settings)


def on_token(token: Token, monkeypatch: pytest.MonkeyPatch) -> None:
    """Seal processes started from now on read this token's configuration."""
    monkeypatch.setenv("SOFTHSM2_CONF", str(token.conf))


def in_processes(settings: SigningSettings, count: int = 1) -> Seal:
    return Seal.from_settings(dataclasses.replace(settings, seal_processes=count))


def gone(pid: int) -> bool:
    """The process has ended and been reaped (no zombie left either)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def command_line(pid: int) -> bytes:
    return Path(f"/proc/{pid}/cmdline").read_bytes()


def shown_to_others(pid: int) -> bytes:
    """What ``ps`` and ``/proc`` show anyone about a process: its command line and
    environment."""
    return Path(f"/proc/{pid}/cmdline").read_bytes() + Path(f"/proc/{pid}/environ").read_bytes()


async def test_a_decision_sealed_in_a_seal_process_validates(
    pki: DevPki,
    tsa: TestServer,  # noqa: F811
    tmp_path: Path,
) -> None:
    seal = in_processes(pki.signing_settings(tsa_url=str(tsa.make_url("/"))))
    try:
        (worker,) = seal.process_ids
        assert worker != os.getpid()
        assert seal.signer is None  # the key is not in the bot's process at all
        password = pki.seal_password().encode()
        assert password not in shown_to_others(worker)
        sealed = await seal.sign(render(), stamp=stamp_info(), evidence=EVIDENCE)
    finally:
        await seal.close()

    status = await validate(sealed, pki)
    assert status.bottom_line and status.trusted and status.intact
    assert status.timestamp_validity is not None and status.timestamp_validity.trusted
    assert "Signature Validation: Signature is Valid." in pdfsig(sealed, tmp_path)
    report = await async_verify_bytes(sealed, settings=pki.signing_settings())
    assert report.ok, report
    assert report.evidence is not None and report.evidence["method"] == "bankid"


async def test_a_decision_sealed_on_a_pkcs11_token_in_a_seal_process_validates(
    token: Token,
    tsa: TestServer,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    on_token(token, monkeypatch)
    settings = dataclasses.replace(token.settings, tsa_url=str(tsa.make_url("/")))
    seal = in_processes(settings)
    try:
        (worker,) = seal.process_ids
        assert f"PIN={PIN}".encode() not in shown_to_others(worker)
        assert b"pin" not in command_line(worker).lower()
        sealed = await seal.sign(render(), stamp=stamp_info(), evidence={"method": "bankid"})
    finally:
        await seal.close()

    report = await async_verify_bytes(sealed, settings=token.settings)
    assert report.ok, report
    (signature,) = report.signatures
    assert SEAL_NAME in signature.signer and signature.trusted and signature.timestamp_ok
    assert "Signature Validation: Signature is Valid." in pdfsig(sealed, tmp_path)


async def test_the_decided_document_is_rendered_and_sealed_in_the_seal_process(
    sqlite_sessions: Sessions,  # noqa: F811
    make_env: MakeEnv,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Signed through the signing API: the decision is rendered again with the moment
    of the signature and sealed, both in the seal process (reportlab is made to fail
    in this one, where it would hold the event loop's GIL)."""
    env = await make_env(sqlite_sessions)
    env.clock.now = datetime(2026, 11, 24, 22, 50, tzinfo=UTC)
    sub = await env.submit()
    env.service.signer = in_processes(env.settings.signing)
    env.clock.now = datetime(2026, 11, 24, 23, 10, tzinfo=UTC)  # 00:10 on the 25th
    cookie = await env.identify(sub.token)

    def not_here(*args: Any, **kwargs: Any) -> bytes:
        raise AssertionError("rendered in the bot's process")

    monkeypatch.setattr(signing.document, "render_decision", not_here)
    answer = await env.call("POST", sub.token, "/decision", body={"action": "sign"}, cookie=cookie)

    assert answer.status == 200, answer.body
    request = await env.request(sub.token)
    assert request.status == "signed" and request.signed_document is not None
    assert "Beslutat 2026-11-25 kl. 00:10" in pdf_text(request.signed_document, tmp_path)
    report = await env.verify(request.signed_document)
    assert report.ok, report
    assert report.evidence is not None
    assert report.evidence["decision"]["rendered_at_signing"] is True


async def test_a_refusal_is_rendered_and_sealed_in_the_seal_process(
    sqlite_sessions: Sessions,  # noqa: F811
    make_env: MakeEnv,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Declined through the signing API: the refusal, a decision of its own, is
    rendered in the seal process too (reportlab is made to fail in this one)."""
    env = await make_env(sqlite_sessions)
    sub = await env.submit()
    env.service.signer = in_processes(env.settings.signing)
    cookie = await env.identify(sub.token)

    def not_here(*args: Any, **kwargs: Any) -> bytes:
        raise AssertionError("rendered in the bot's process")

    monkeypatch.setattr(signing.document, "render_refusal", not_here)
    answer = await env.decline(sub.token, "Fel paragraf, se LVU 2 §.", cookie)

    assert answer.status == 200, answer.body
    request = await env.request(sub.token)
    assert request.status == "declined" and request.signed_document is not None
    assert "Fel paragraf, se LVU 2 §." in pdf_text(request.signed_document, tmp_path)
    assert (await env.verify(request.signed_document)).ok


def test_a_wrong_pin_stops_the_start_as_it_did_in_process(
    token: Token, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    on_token(token, monkeypatch)
    assert token.settings.pkcs11 is not None
    wrong = dataclasses.replace(
        token.settings, pkcs11=dataclasses.replace(token.settings.pkcs11, pin="0000")
    )
    # Several processes, several times: the pool's manager thread and the stop both
    # waited for the processes that ended, and whichever lost took an ended process
    # for a live one (logged "did not end in time", and left in active_children).
    for _ in range(5):
        with pytest.raises(SealError, match="cannot open PKCS#11 token"):
            in_processes(wrong, count=2)
        assert multiprocessing.active_children() == []
    assert "did not end in time" not in caplog.text


async def test_a_killed_seal_process_does_not_cost_a_signature(pki: DevPki) -> None:
    seal = in_processes(pki.signing_settings(), count=2)
    try:
        first = seal.process_ids
        assert len(first) == 2
        os.kill(first[0], signal.SIGKILL)
        sealed = await seal.sign(render(), stamp=stamp_info(), evidence=EVIDENCE)
        status = await validate(sealed, pki)
        assert status.bottom_line and status.trusted
        # The pool started again: new processes, and the next signatures work too.
        assert seal.process_ids and not set(seal.process_ids) & set(first)
        again = await seal.sign(render(), stamp=stamp_info(), evidence=None)
        assert (await validate(again, pki)).bottom_line
    finally:
        await seal.close()
    assert all(gone(pid) for pid in first)


async def test_closing_the_seal_leaves_no_process_behind(pki: DevPki) -> None:
    seal = in_processes(pki.signing_settings(), count=2)
    workers = seal.process_ids
    assert len(workers) == 2 and not any(gone(pid) for pid in workers)
    await seal.sign(render(), stamp=stamp_info(), evidence=EVIDENCE)
    await seal.close()

    assert all(gone(pid) for pid in workers)
    assert multiprocessing.active_children() == []
    with pytest.raises(RuntimeError):  # closed: nothing signs any more
        await seal.sign(render(), stamp=stamp_info(), evidence=None)


BOT = """
import dataclasses, sys, time
from signing.devpki import DevPki
from signing.seal import Seal
from config.settings import SigningSettings
if __name__ == "__main__":
    settings = SigningSettings(
        seal_pkcs12=__import__("pathlib").Path(sys.argv[1]),
        seal_pkcs12_password=sys.stdin.readline().strip(),
        seal_processes=2,
    )
    seal = Seal.from_settings(settings)
    print(" ".join(map(str, seal.process_ids)), flush=True)
    time.sleep(600)
"""


def ended(pid: int) -> bool:
    """Gone, or a zombie waiting for whoever adopted it: nothing runs any more."""
    try:
        return "State:\tZ" in Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True


def test_a_bot_killed_with_sigkill_leaves_no_seal_process_holding_the_key(
    pki: DevPki, tmp_path: Path
) -> None:
    script = tmp_path / "bot.py"
    script.write_text(BOT, encoding="utf-8")
    bot = subprocess.Popen(
        [sys.executable, str(script), str(pki.seal_pkcs12)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    try:
        assert bot.stdin is not None and bot.stdout is not None
        bot.stdin.write(pki.seal_password() + "\n")
        bot.stdin.flush()
        workers = [int(pid) for pid in bot.stdout.readline().split()]
        assert len(workers) == 2 and not any(ended(pid) for pid in workers)
    finally:
        bot.kill()
        bot.wait(timeout=60)
    deadline = time.monotonic() + 60  # a bound on the wait, not a timed assertion
    while not all(ended(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = [pid for pid in workers if not ended(pid)]
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert left == []


def test_the_setting_is_a_non_negative_whole_number(tmp_path: Path, pki: DevPki) -> None:
    def config(line: str) -> Path:
        path = tmp_path / "config.toml"
        path.write_text(
            textwrap.dedent(BASE)
            + f'\n[signing]\nseal_pkcs12 = "{pki.seal_pkcs12}"\n'
            + f'seal_pkcs12_password = {{ file = "{pki.seal_password_file}" }}\n{line}\n',
            encoding="utf-8",
        )
        return path

    environ = {"SOCIALJOUR_MATRIX_PASSWORD": "x"}
    assert load_settings(config(""), environ=environ).signing.seal_processes == (
        default_seal_processes()
    )
    assert load_settings(config("seal_processes = 0"), environ=environ).signing.seal_processes == 0
    assert load_settings(config("seal_processes = 3"), environ=environ).signing.seal_processes == 3
    for wrong in ("-1", '"2"', "1.5", "true"):
        path = config(f"seal_processes = {wrong}")
        problems = problems_by_key(check_config(path, environ=environ), path)
        assert "signing.seal_processes" in problems, wrong
    assert [default_seal_processes(cpus) for cpus in (1, 2, 3, 4, 16)] == [0, 1, 2, 2, 2]
