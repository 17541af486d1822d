"""The development PKI and TSA, and a seal key on a PKCS#11 token (SoftHSM)."""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from asn1crypto import algos, core, tsp
from cryptography import x509
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    pkcs12,
)
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from config.settings import Pkcs11Settings, SigningSettings
from signing.devpki import CA_NAME, SEAL_NAME, DevPki, create_dev_pki
from signing.devtsa import QUERY_TYPE, REPLY_TYPE, create_tsa_app
from signing.seal import SealError, StampInfo, close_signer, load_signer, sign_decision
from signing.verify import async_verify_bytes
from tests.components import unavailable
from tests.test_signing_document import render

SOFTHSM_MODULES = (
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
)
TOKEN, KEY_LABEL, PIN, SO_PIN = "socialjour", "seal", "1234", "5678"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> DevPki:
    return create_dev_pki(tmp_path_factory.mktemp("pki"))


def cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


# -- the development PKI -------------------------------------------------------------


def test_the_dev_pki_is_named_for_what_it_is_and_keeps_keys_private(pki: DevPki) -> None:
    ca = cert(pki.ca_cert)
    assert ca.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == CA_NAME
    assert "not for production" in CA_NAME
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca

    seal = cert(pki.seal_cert)
    assert seal.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == SEAL_NAME
    seal.verify_directly_issued_by(ca)
    usage = seal.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical and usage.value.digital_signature and usage.value.content_commitment

    tsa = cert(pki.tsa_cert)
    tsa.verify_directly_issued_by(ca)
    extended = tsa.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    assert extended.critical and list(extended.value) == [ExtendedKeyUsageOID.TIME_STAMPING]

    key, certificate, chain = pkcs12.load_key_and_certificates(
        pki.seal_pkcs12.read_bytes(), pki.seal_password().encode()
    )
    assert key is not None and certificate == seal and chain == [ca]
    assert len(pki.seal_password()) >= 24
    for secret in (pki.ca_key, pki.tsa_key, pki.seal_pkcs12, pki.seal_password_file):
        assert stat.S_IMODE(secret.stat().st_mode) == 0o600, secret


def test_creating_it_again_reuses_what_is_there(tmp_path: Path) -> None:
    first = create_dev_pki(tmp_path)
    files = sorted(p for p in tmp_path.iterdir())
    before = {p.name: p.read_bytes() for p in files}
    create_dev_pki(tmp_path)
    assert {p.name: p.read_bytes() for p in sorted(tmp_path.iterdir())} == before

    first.tsa_cert.unlink()
    create_dev_pki(tmp_path)
    assert first.tsa_cert.read_bytes() != before["tsa.pem"]
    assert first.seal_pkcs12.read_bytes() == before["seal.p12"]
    assert first.ca_cert.read_bytes() == before["dev-ca.pem"]

    first.ca_key.unlink()  # without the CA key nothing can be issued: start over
    create_dev_pki(tmp_path)
    assert first.ca_cert.read_bytes() != before["dev-ca.pem"]
    cert(first.seal_cert).verify_directly_issued_by(cert(first.ca_cert))
    assert not list(tmp_path.glob("*.tmp"))


# -- the development TSA -------------------------------------------------------------


@pytest.fixture
async def tsa(pki: DevPki) -> AsyncIterator[TestServer]:
    server = TestServer(create_tsa_app(pki.tsa_cert, pki.tsa_key), host="127.0.0.1")
    await server.start_server()
    try:
        yield server
    finally:
        await server.close()


async def test_the_tsa_answers_an_rfc_3161_query(tsa: TestServer, pki: DevPki) -> None:
    digest = hashlib.sha256(b"beslut").digest()
    query = tsp.TimeStampReq(
        {
            "version": "v1",
            "message_imprint": {
                "hash_algorithm": algos.DigestAlgorithm({"algorithm": "sha256"}),
                "hashed_message": digest,
            },
            "nonce": 4711,
            "cert_req": True,
        }
    )
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            tsa.make_url("/"), data=query.dump(), headers={"Content-Type": QUERY_TYPE}
        ) as response,
    ):
        assert response.status == 200
        assert response.content_type == REPLY_TYPE
        reply = tsp.TimeStampResp.load(await response.read())
    assert reply["status"]["status"].native == "granted"
    signed = reply["time_stamp_token"]["content"]
    info = signed["encap_content_info"]["content"].parsed
    assert info["message_imprint"]["hashed_message"].native == digest
    assert info["nonce"].native == 4711
    assert abs((info["gen_time"].native - datetime.now(UTC)).total_seconds()) < 60
    (signer_cert,) = [c.chosen for c in signed["certificates"]]
    assert signer_cert.dump() == cert(pki.tsa_cert).public_bytes(Encoding.DER)


class Rejection(core.Sequence):
    """A TimeStampResp without its optional token, which asn1crypto's own cannot parse."""

    _fields = [("status", tsp.PKIStatusInfo)]  # noqa: RUF012


async def test_the_tsa_refuses_what_is_not_a_query(tsa: TestServer) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.post(
            tsa.make_url("/"), data=b"{}", headers={"Content-Type": "application/json"}
        ) as response:
            assert response.status == 415
        async with session.post(
            tsa.make_url("/"), data=b"\x30\x03\x02\x01", headers={"Content-Type": QUERY_TYPE}
        ) as response:
            assert response.status == 400
            assert response.content_type == REPLY_TYPE
            reply = Rejection.load(await response.read())
            assert reply["status"]["status"].native == "rejection"
            assert reply["status"]["fail_info"].native == {"bad_data_format"}
        async with session.get(tsa.make_url("/")) as response:
            assert response.status == 405


# -- a seal key on a PKCS#11 token -----------------------------------------------------


@dataclass(frozen=True)
class SoftHsm:
    module: Path
    settings: SigningSettings


def _softhsm_module() -> Path | None:
    for candidate in SOFTHSM_MODULES:
        if Path(candidate).is_file():
            return Path(candidate)
    return None


@pytest.fixture(scope="module")
def softhsm(pki: DevPki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SoftHsm]:
    """A SoftHSM token holding the development seal key and certificate.

    SoftHSM reads SOFTHSM2_CONF once, when the module is first loaded into the
    process, so this sets it for the rest of the test session's process.
    """
    module = _softhsm_module()
    if module is None or shutil.which("softhsm2-util") is None:
        unavailable("SoftHSM not installed: apt-get install softhsm2")
    pkcs11 = pytest.importorskip(
        "pkcs11", reason="python-pkcs11 not installed: pip install python-pkcs11"
    )

    folder = tmp_path_factory.mktemp("softhsm")
    (folder / "tokens").mkdir()
    conf = folder / "softhsm2.conf"
    conf.write_text(
        f"directories.tokendir = {folder / 'tokens'}\n"
        "objectstore.backend = file\n"
        "log.level = ERROR\n"
    )
    previous = os.environ.get("SOFTHSM2_CONF")
    os.environ["SOFTHSM2_CONF"] = str(conf)

    certificate = import_seal_key(pki, folder)

    token = pkcs11.lib(str(module)).get_token(token_label=TOKEN)
    with token.open(rw=True, user_pin=PIN) as session:
        session.create_object(
            {
                pkcs11.Attribute.CLASS: pkcs11.ObjectClass.CERTIFICATE,
                pkcs11.Attribute.CERTIFICATE_TYPE: pkcs11.CertificateType.X_509,
                pkcs11.Attribute.TOKEN: True,
                pkcs11.Attribute.LABEL: KEY_LABEL,
                pkcs11.Attribute.ID: b"\x01",
                pkcs11.Attribute.SUBJECT: certificate.subject.public_bytes(),
                pkcs11.Attribute.VALUE: certificate.public_bytes(Encoding.DER),
            }
        )
    settings = SigningSettings(
        pkcs11=Pkcs11Settings(module=module, token_label=TOKEN, key_label=KEY_LABEL, pin=PIN),
        trust_roots=(pki.ca_cert,),
    )
    try:
        yield SoftHsm(module=module, settings=settings)
    finally:
        if previous is None:
            os.environ.pop("SOFTHSM2_CONF", None)
        else:
            os.environ["SOFTHSM2_CONF"] = previous


async def test_a_seal_on_a_pkcs11_token_validates(softhsm: SoftHsm, tsa: TestServer) -> None:
    signer = load_signer(softhsm.settings)
    try:
        sealed = await sign_decision(
            render(),
            signer=signer,
            stamp=StampInfo(
                "Dag Dagsson", "ordförande", "BankID", datetime.now(UTC), "SJ-2026-0042"
            ),
            evidence={"method": "bankid"},
            timestamper_url=str(tsa.make_url("/")),
            trust_roots=softhsm.settings.trust_roots,
        )
    finally:
        close_signer(signer)
    report = await async_verify_bytes(sealed, settings=softhsm.settings)
    assert report.ok, report
    (signature,) = report.signatures
    assert SEAL_NAME in signature.signer and signature.trusted and signature.timestamp_ok
    assert report.evidence == {"method": "bankid"}


def test_a_wrong_pin_or_token_is_a_seal_error(softhsm: SoftHsm) -> None:
    for wrong in (
        Pkcs11Settings(module=softhsm.module, token_label=TOKEN, key_label=KEY_LABEL, pin="0000"),
        Pkcs11Settings(module=softhsm.module, token_label="saknas", key_label=KEY_LABEL, pin=PIN),
    ):
        with pytest.raises(SealError, match="cannot open PKCS#11 token"):
            load_signer(SigningSettings(pkcs11=wrong))


def import_seal_key(
    pki: DevPki, folder: Path, env: Mapping[str, str] | None = None
) -> x509.Certificate:
    """A new SoftHSM token (the one ``SOFTHSM2_CONF`` in ``env``, or in this process's
    environment, names) holding the development seal key; returns its certificate,
    which the caller puts on the token."""

    def util(*args: str) -> None:
        subprocess.run(
            ["softhsm2-util", *args], check=True, capture_output=True, timeout=60, env=env
        )

    util("--init-token", "--free", "--label", TOKEN, "--so-pin", SO_PIN, "--pin", PIN)
    key, certificate, _ = pkcs12.load_key_and_certificates(
        pki.seal_pkcs12.read_bytes(), pki.seal_password().encode()
    )
    assert key is not None and certificate is not None
    key_file = folder / "seal.key"
    key_file.write_bytes(key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    util("--import", str(key_file), "--token", TOKEN, "--label", KEY_LABEL, "--id", "01",
         "--pin", PIN)  # fmt: skip
    key_file.unlink()
    return certificate
