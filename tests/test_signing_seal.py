"""Sealing a decision: sign, re-read, validate with pyHanko and poppler, tamper, fail.

The seal is the development PKI's; B-T timestamps come from the development TSA
over real HTTP on loopback, the way production reaches its TSA.
"""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer
from cryptography.hazmat.primitives import serialization
from pyhanko.keys import load_cert_from_pemder
from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.fields import enumerate_sig_fields
from pyhanko.sign.signers import SimpleSigner
from pyhanko.sign.validation import async_validate_pdf_signature
from pyhanko.sign.validation.status import PdfSignatureStatus, SignatureCoverageLevel
from pyhanko_certvalidator import ValidationContext
from reportlab.pdfgen.canvas import Canvas

from config.settings import SigningSettings
from signing.devpki import SEAL_NAME, TSA_NAME, DevPki, create_dev_pki
from signing.devtsa import create_tsa_app
from signing.document import SignatureBox, layout_decision
from signing.seal import Seal, SealError, StampInfo, load_signer, sign_decision
from signing.verify import EVIDENCE_FILE, async_verify_bytes, print_report
from tests.components import unavailable
from tests.test_signing_document import ARTIFACTS, LVU, make_report, pdf_text, render, screenshot

SIGNED_AT = datetime(2026, 11, 24, 2, 31, tzinfo=UTC)  # 03:31 in Sweden
EVIDENCE: dict[str, Any] = {
    "method": "bankid",
    "orderRef": "131daac9-16c6-4618-beb0-365768f37288",
    "completionData": {
        "user": {"personalNumber": "19121212-1212", "name": "Dag Dagsson"},
        "device": {"ipAddress": "192.0.2.10"},
        "signature": "PD94bWwgdmVyc2lvbj0iMS4wIj8+",
    },
    "userVisibleData": "Beslut SJ-2026-0042 (sha256 7f3a…)",
}


def stamp_info(language: str = "sv") -> StampInfo:
    return StampInfo(
        signer_name="Dag Dagsson",
        signer_role="ordförande",
        method_label="BankID",
        signed_at=SIGNED_AT,
        case_number="SJ-2026-0042",
        language=language,
    )


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> DevPki:
    return create_dev_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def settings(pki: DevPki) -> SigningSettings:
    return pki.signing_settings()


@pytest.fixture
async def tsa_url(pki: DevPki) -> AsyncIterator[str]:
    server = TestServer(create_tsa_app(pki.tsa_cert, pki.tsa_key), host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("/"))
    finally:
        await server.close()


@pytest.fixture
async def sealed(settings: SigningSettings, tsa_url: str) -> bytes:
    """The lvu6 decision sealed B-T, with the BankID evidence embedded."""
    return await sign_decision(
        render(),
        signer=load_signer(settings),
        stamp=stamp_info(),
        evidence=EVIDENCE,
        timestamper_url=tsa_url,
        trust_roots=settings.trust_roots,
    )


async def validate(pdf: bytes, pki: DevPki) -> PdfSignatureStatus:
    reader = PdfFileReader(BytesIO(pdf))
    (signature,) = reader.embedded_signatures
    context = ValidationContext(trust_roots=[load_cert_from_pemder(str(pki.ca_cert))])
    return await async_validate_pdf_signature(signature, context)


def pdfsig(pdf: bytes, tmp_path: Path) -> str:
    tool = shutil.which("pdfsig")
    if tool is None:
        unavailable("pdfsig not installed: apt-get install poppler-utils")
    path = tmp_path / "sealed.pdf"
    path.write_bytes(pdf)
    done = subprocess.run([tool, str(path)], capture_output=True, text=True, timeout=60)
    return done.stdout + done.stderr


# -- a sound seal -------------------------------------------------------------------------


async def test_a_b_t_seal_is_intact_trusted_timestamped_and_covers_the_file(
    sealed: bytes, pki: DevPki
) -> None:
    status = await validate(sealed, pki)
    assert status.intact and status.valid and status.trusted
    assert status.coverage == SignatureCoverageLevel.ENTIRE_FILE
    assert status.bottom_line
    assert status.signing_cert.subject.native["common_name"] == SEAL_NAME
    stamp = status.timestamp_validity
    assert stamp is not None
    assert stamp.intact and stamp.valid and stamp.trusted
    assert stamp.signing_cert.subject.native["common_name"] == TSA_NAME
    assert abs((stamp.timestamp - datetime.now(UTC)).total_seconds()) < 300

    reader = PdfFileReader(BytesIO(sealed))
    (signature,) = reader.embedded_signatures
    assert signature.sig_object["/SubFilter"] == "/ETSI.CAdES.detached"  # PAdES
    assert signature.sig_object["/Name"] == "Dag Dagsson"
    assert "/Perms" not in reader.root  # an approval signature, no certification


async def test_poppler_agrees_that_the_seal_is_valid(sealed: bytes, tmp_path: Path) -> None:
    report = pdfsig(sealed, tmp_path)
    assert "Signature Field Name: Beslutsfattare" in report
    assert f"Signer Certificate Common Name: {SEAL_NAME}" in report
    assert "Signature Type: ETSI.CAdES.detached" in report
    assert "Signature Validation: Signature is Valid." in report
    assert "Total document signed" in report
    # the development CA is in no NSS store: poppler says so, and that is all it may say
    assert "Certificate issuer isn't Trusted" in report or "Certificate is Trusted" in report


async def test_verify_reports_the_seal_and_the_embedded_evidence(
    sealed: bytes, settings: SigningSettings, capsys: pytest.CaptureFixture[str]
) -> None:
    report = await async_verify_bytes(sealed, settings=settings)
    assert report.ok, report
    (signature,) = report.signatures
    assert signature.trusted is True and signature.timestamped and signature.timestamp_ok
    assert signature.on_behalf_of == "Dag Dagsson"
    assert signature.reason is not None and "BankID" in signature.reason
    assert report.evidence_present
    assert report.evidence == EVIDENCE
    print_report(report)
    out = capsys.readouterr().out
    assert out.startswith("VALID: Beslutsfattare: signed by")
    assert "for Dag Dagsson" in out and "(timestamped)" in out and "trusted" in out
    assert f"identification evidence: {EVIDENCE_FILE} embedded (bankid)" in out


async def test_the_stamp_is_visible_in_the_reserved_box(sealed: bytes, tmp_path: Path) -> None:
    text = pdf_text(sealed, tmp_path)
    for line in (
        "Undertecknat av: Dag Dagsson",
        "Roll: ordförande",
        "Tid: 2026-11-24 03:31 CET",
        "Identifierad med: BankID",
        "Ärende: SJ-2026-0042",
        f"Sigill: {SEAL_NAME}",
    ):
        assert line in text, line
    box = layout_decision(
        make_report(),
        LVU,
        municipality_name="Skövde kommun",
        signer_name="Dag Dagsson",
        signer_role="ordförande",
    ).signature_box
    reader = PdfFileReader(BytesIO(sealed))
    ((name, value, ref),) = enumerate_sig_fields(reader, filled_status=True)
    assert name == "Beslutsfattare" and value is not None
    assert [float(v) for v in ref.get_object()["/Rect"]] == list(box.rect)
    target = screenshot(sealed, ARTIFACTS / "decision-signed.png", page=box.page + 1)
    assert target.stat().st_size > 10_000


async def test_an_english_stamp(settings: SigningSettings, tmp_path: Path) -> None:
    sealed = await sign_decision(
        render(language="en"),
        signer=load_signer(settings),
        stamp=stamp_info("en"),
        evidence=None,
    )
    text = pdf_text(sealed, tmp_path)
    assert "Signed by: Dag Dagsson" in text and "Identified with: BankID" in text
    assert "Case: SJ-2026-0042" in text and "Time: 2026-11-24 03:31 CET" in text


async def test_b_b_without_a_tsa_also_validates(
    settings: SigningSettings, pki: DevPki, tmp_path: Path
) -> None:
    sealed = await sign_decision(
        render(), signer=load_signer(settings), stamp=stamp_info(), evidence=EVIDENCE
    )
    status = await validate(sealed, pki)
    assert status.bottom_line and status.trusted
    assert status.timestamp_validity is None
    assert "Signature Validation: Signature is Valid." in pdfsig(sealed, tmp_path)
    report = await async_verify_bytes(sealed, settings=settings)
    assert report.ok and not report.signatures[0].timestamped
    assert report.evidence == EVIDENCE


async def test_without_evidence_nothing_is_embedded(
    settings: SigningSettings, capsys: pytest.CaptureFixture[str]
) -> None:
    sealed = await sign_decision(
        render(), signer=load_signer(settings), stamp=stamp_info(), evidence=None
    )
    report = await async_verify_bytes(sealed, settings=settings)
    assert report.ok and not report.evidence_present and report.evidence is None
    print_report(report)
    assert "identification evidence: none embedded" in capsys.readouterr().out


async def test_evidence_values_json_lacks_are_written_plainly(settings: SigningSettings) -> None:
    sealed = await sign_decision(
        render(),
        signer=load_signer(settings),
        stamp=stamp_info(),
        evidence={"at": SIGNED_AT, "nonce": b"\x01\xff", "hints": {"b", "a"}, "order": ("b", "a")},
    )
    report = await async_verify_bytes(sealed, settings=settings)
    assert report.evidence == {
        "at": "2026-11-24T02:31:00+00:00",
        "nonce": "01ff",
        "hints": ["a", "b"],
        "order": ["b", "a"],
    }
    with pytest.raises(SealError, match="not JSON"):
        await sign_decision(
            render(), signer=load_signer(settings), stamp=stamp_info(), evidence={"x": object()}
        )


# -- tampering ----------------------------------------------------------------------------


async def test_a_changed_byte_inside_the_signed_range_fails_everywhere(
    sealed: bytes, pki: DevPki, settings: SigningSettings, tmp_path: Path
) -> None:
    at = sealed.index(b"(Beslut SJ-2026-0042)")  # the document title, well inside the range
    tampered = sealed[: at + 19] + b"3" + sealed[at + 20 :]
    assert len(tampered) == len(sealed) and tampered != sealed
    status = await validate(tampered, pki)
    assert not status.intact and not status.bottom_line
    report = await async_verify_bytes(tampered, settings=settings)
    assert not report.ok
    poppler = pdfsig(tampered, tmp_path)
    assert "Signature is Valid" not in poppler
    assert "Digest Mismatch" in poppler or "Signature is Invalid" in poppler


async def test_an_update_that_changes_the_text_after_signing_fails_everywhere(
    sealed: bytes, pki: DevPki, settings: SigningSettings, tmp_path: Path
) -> None:
    writer = IncrementalPdfFileWriter(BytesIO(sealed))
    overlay = generic.StreamObject(stream_data=b"BT /F1 28 Tf 70 420 Td (BESLUTET UPPHAVT) Tj ET")
    writer.add_stream_to_page(0, writer.add_object(overlay))
    out = BytesIO()
    writer.write(out)
    tampered = out.getvalue()
    assert "BESLUTET UPPHAVT" in pdf_text(tampered, tmp_path)

    status = await validate(tampered, pki)
    assert status.intact  # the signed revision itself is untouched ...
    assert status.coverage != SignatureCoverageLevel.ENTIRE_FILE  # ... but it is not all
    assert not status.bottom_line
    report = await async_verify_bytes(tampered, settings=settings)
    assert not report.ok and not report.signatures[0].whole_document
    poppler = pdfsig(tampered, tmp_path)
    assert "Total document signed" not in poppler
    assert "Not total document signed" in poppler


# -- refusals -----------------------------------------------------------------------------


async def test_a_sealed_document_is_not_sealed_twice(
    sealed: bytes, settings: SigningSettings
) -> None:
    with pytest.raises(SealError, match="already signed"):
        await sign_decision(sealed, signer=load_signer(settings), stamp=stamp_info(), evidence=None)


async def test_a_pdf_without_a_reserved_field_needs_a_box(
    settings: SigningSettings, pki: DevPki, tmp_path: Path
) -> None:
    buffer = BytesIO()
    canvas = Canvas(buffer)
    canvas.drawString(72, 770, "Ett annat dokument")
    canvas.save()
    plain = buffer.getvalue()
    with pytest.raises(SealError, match="no reserved signature field"):
        await sign_decision(plain, signer=load_signer(settings), stamp=stamp_info(), evidence=None)
    sealed = await sign_decision(
        plain,
        signer=load_signer(settings),
        stamp=stamp_info(),
        evidence=None,
        box=SignatureBox(page=0, x1=72, y1=600, x2=332, y2=696),
    )
    assert (await validate(sealed, pki)).bottom_line
    assert "Undertecknat av: Dag Dagsson" in pdf_text(sealed, tmp_path)


async def test_a_seal_the_trust_roots_do_not_cover_is_refused_before_signing(
    settings: SigningSettings, tmp_path: Path
) -> None:
    other = create_dev_pki(tmp_path / "other")
    with pytest.raises(SealError):
        await sign_decision(
            render(),
            signer=load_signer(settings),
            stamp=stamp_info(),
            evidence=None,
            trust_roots=[other.ca_cert],
        )


def test_load_signer_explains_what_is_wrong(pki: DevPki, tmp_path: Path) -> None:
    with pytest.raises(SealError, match="no seal key configured"):
        load_signer(SigningSettings())
    with pytest.raises(SealError, match="wrong password"):
        load_signer(SigningSettings(seal_pkcs12=pki.seal_pkcs12, seal_pkcs12_password="fel"))
    with pytest.raises(SealError, match="cannot read"):
        load_signer(SigningSettings(seal_pkcs12=tmp_path / "saknas.p12"))
    signer = load_signer(pki.signing_settings())
    assert signer.signing_cert is not None
    assert signer.signing_cert.subject.native["common_name"] == SEAL_NAME


# -- the seal the bot keeps ----------------------------------------------------------------


async def test_a_seal_reads_its_key_and_trust_roots_once(
    pki: DevPki, tsa_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    roots = tmp_path / "roots.pem"
    shutil.copy(pki.ca_cert, roots)
    settings = dataclasses.replace(pki.signing_settings(tsa_url=tsa_url), trust_roots=(roots,))
    seal = Seal.from_settings(settings)
    roots.unlink()  # read at start-up: a signature needs nothing from disk
    parsed: list[bytes] = []
    load_key = serialization.load_der_private_key

    def counted(data: bytes, *args: Any, **kwargs: Any) -> Any:
        parsed.append(data)
        return load_key(data, *args, **kwargs)

    # pyHanko's own SimpleSigner parses the key for each raw signature (twice a PDF).
    monkeypatch.setattr(serialization, "load_der_private_key", counted)
    try:
        first, second = [
            await seal.sign(render(), stamp=stamp_info(), evidence=EVIDENCE) for _ in range(2)
        ]
    finally:
        await seal.close()

    assert isinstance(seal.signer, SimpleSigner)
    key = seal.signer.signing_key.dump()  # (the development TSA parses its own, per stamp)
    assert key not in parsed
    for sealed in (first, second):
        status = await validate(sealed, pki)
        assert status.bottom_line and status.trusted
        assert status.timestamp_validity is not None and status.timestamp_validity.trusted
    with pytest.raises(RuntimeError):  # closed: its worker thread is gone
        await seal.sign(render(), stamp=stamp_info(), evidence=None)


def test_a_seal_with_an_unreadable_trust_root_is_refused_at_start_up(
    pki: DevPki, tmp_path: Path
) -> None:
    settings = dataclasses.replace(pki.signing_settings(), trust_roots=(tmp_path / "saknas.pem",))
    with pytest.raises(SealError, match="cannot read the trust root"):
        Seal.from_settings(settings)
