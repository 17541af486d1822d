"""Validating the signatures of a decision PDF (``socialjour verify``).

Intact and covering the whole document is the minimum for "valid"; with trust
roots given (``--trust`` or ``signing.trust_roots``), the signer's certificate
must also chain to one of them, and so must a timestamp's. The report also says
whether the identification evidence (``identifiering.json``) is embedded, and
what it holds: a seal signature is only as good as the identification behind it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from io import BytesIO
from pathlib import Path
from typing import Any

from asn1crypto import pem, x509
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.validation import async_validate_pdf_signature
from pyhanko.sign.validation.status import SignatureCoverageLevel
from pyhanko_certvalidator import ValidationContext

from config.settings import SigningSettings

__all__ = [
    "EVIDENCE_FILE",
    "FileReport",
    "SignatureReport",
    "async_verify_bytes",
    "print_report",
    "verify_bytes",
    "verify_file",
]

EVIDENCE_FILE = "identifiering.json"
"""The embedded file with the identification evidence (written by ``signing.seal``)."""


@dataclass(frozen=True)
class SignatureReport:
    field: str
    signer: str
    signed_at: datetime | None
    timestamped: bool
    intact: bool
    whole_document: bool
    trusted: bool | None  # None when no trust roots were given
    #: The person the seal signed for (the signature's /Name), when recorded.
    on_behalf_of: str | None = None
    reason: str | None = None
    #: The RFC 3161 timestamp is intact and valid (and trusted, with trust roots).
    timestamp_ok: bool | None = None  # None when there is no timestamp

    @property
    def ok(self) -> bool:
        return (
            self.intact
            and self.whole_document
            and self.trusted is not False
            and self.timestamp_ok is not False
        )


@dataclass(frozen=True)
class FileReport:
    path: Path
    signatures: tuple[SignatureReport, ...]
    error: str | None = None
    #: The parsed ``identifiering.json``, or None when the file embeds none.
    evidence: Mapping[str, Any] | None = None
    evidence_error: str | None = None

    @property
    def evidence_present(self) -> bool:
        return self.evidence is not None or self.evidence_error is not None

    @property
    def ok(self) -> bool:
        return self.error is None and bool(self.signatures) and all(s.ok for s in self.signatures)


def _load_roots(paths: Iterable[Path]) -> list[x509.Certificate]:
    roots = []
    for path in paths:
        data = path.read_bytes()
        if pem.detect(data):
            for _, _, der in pem.unarmor(data, multiple=True):
                roots.append(x509.Certificate.load(der))
        else:
            roots.append(x509.Certificate.load(data))
    return roots


def _roots_from(trust_roots: Iterable[Path] | None, settings: SigningSettings | None) -> list[Path]:
    paths = list(trust_roots or [])
    if settings is not None:
        paths += [path for path in settings.trust_roots if path not in paths]
    return paths


def verify_file(
    path: Path,
    *,
    trust_roots: Iterable[Path] | None = None,
    settings: SigningSettings | None = None,
) -> FileReport:
    """Validate every signature in ``path`` (trust roots: ``trust_roots`` + ``settings``)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        return FileReport(path, (), error=f"{type(exc).__name__}: {exc.strerror or exc}")
    return verify_bytes(data, trust_roots=trust_roots, settings=settings, path=path)


def verify_bytes(
    data: bytes,
    *,
    trust_roots: Iterable[Path] | None = None,
    settings: SigningSettings | None = None,
    path: Path = Path("<bytes>"),
) -> FileReport:
    """:func:`async_verify_bytes` for callers without an event loop (the CLI)."""
    return asyncio.run(
        async_verify_bytes(data, trust_roots=trust_roots, settings=settings, path=path)
    )


async def async_verify_bytes(
    data: bytes,
    *,
    trust_roots: Iterable[Path] | None = None,
    settings: SigningSettings | None = None,
    path: Path = Path("<bytes>"),
) -> FileReport:
    roots = _load_roots(_roots_from(trust_roots, settings))
    try:
        reader = PdfFileReader(BytesIO(data))
        results = []
        for sig in reader.embedded_signatures:
            context = ValidationContext(trust_roots=roots) if roots else ValidationContext()
            status = await async_validate_pdf_signature(sig, context)
            stamp = status.timestamp_validity
            sig_object = sig.sig_object
            results.append(
                SignatureReport(
                    field=sig.field_name,
                    signer=status.signing_cert.subject.human_friendly,
                    signed_at=stamp.timestamp if stamp else status.signer_reported_dt,
                    timestamped=stamp is not None,
                    intact=bool(status.intact and status.valid),
                    whole_document=status.coverage == SignatureCoverageLevel.ENTIRE_FILE,
                    trusted=bool(status.trusted) if roots else None,
                    on_behalf_of=_text(sig_object.get("/Name")),
                    reason=_text(sig_object.get("/Reason")),
                    timestamp_ok=(
                        bool(stamp.intact and stamp.valid and (stamp.trusted or not roots))
                        if stamp
                        else None
                    ),
                )
            )
        evidence, evidence_error = _evidence(reader)
    except Exception as exc:  # a damaged or non-PDF file is a finding, not a crash
        return FileReport(path, (), error=f"{type(exc).__name__}: {exc}")
    return FileReport(path, tuple(results), evidence=evidence, evidence_error=evidence_error)


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _evidence(reader: PdfFileReader) -> tuple[Mapping[str, Any] | None, str | None]:
    """The embedded identification evidence, parsed; or why it could not be read."""
    names = reader.root.get("/Names")
    if names is None:
        return None, None
    tree = names.get_object().get("/EmbeddedFiles")
    if tree is None:
        return None, None
    entries = tree.get_object().get("/Names")
    if entries is None:
        return None, None
    entries = entries.get_object()
    for index in range(0, len(entries) - 1, 2):
        if str(entries[index]) != EVIDENCE_FILE:
            continue
        spec = entries[index + 1].get_object()
        try:
            stream = spec["/EF"]["/F"].get_object()
            parsed = json.loads(stream.data.decode("utf-8"))
        except (KeyError, ValueError) as exc:
            return None, f"{EVIDENCE_FILE} is unreadable: {type(exc).__name__}"
        if not isinstance(parsed, dict):
            return None, f"{EVIDENCE_FILE} is not a JSON object"
        return parsed, None
    return None, None


def print_report(report: FileReport) -> None:
    if report.error:
        print(f"{report.path}: cannot be read as a signed PDF ({report.error})")
        return
    if not report.signatures:
        print(f"{report.path}: no signatures")
        return
    for s in report.signatures:
        when = s.signed_at.isoformat() if s.signed_at else "unknown time"
        verdict = "VALID" if s.ok else "INVALID"
        trust = {None: "trust not checked", True: "trusted", False: "NOT trusted"}[s.trusted]
        behalf = f" for {s.on_behalf_of}" if s.on_behalf_of else ""
        stamp = {None: "", True: " (timestamped)", False: " (timestamp INVALID)"}[s.timestamp_ok]
        print(
            f"{verdict}: {s.field}: signed by {s.signer}{behalf} at {when}{stamp}; "
            f"{'intact' if s.intact else 'MODIFIED OR BROKEN'}; "
            f"{'covers the whole file' if s.whole_document else 'does NOT cover the whole file'}; "
            f"{trust}"
        )
        if s.reason:
            print(f"  reason: {s.reason}")
    if report.evidence_error:
        print(f"  identification evidence: {report.evidence_error}")
    elif report.evidence is not None:
        method = report.evidence.get("method", "unknown method")
        print(f"  identification evidence: {EVIDENCE_FILE} embedded ({method})")
    else:
        print("  identification evidence: none embedded")
