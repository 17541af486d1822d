"""Validating the signatures of a decision PDF (``socialjour verify``).

Intact and covering the whole document is the minimum for "valid"; with trust
roots given, the signer's certificate must also chain to one of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from asn1crypto import pem, x509
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.validation import validate_pdf_signature
from pyhanko.sign.validation.status import SignatureCoverageLevel
from pyhanko_certvalidator import ValidationContext


@dataclass(frozen=True)
class SignatureReport:
    field: str
    signer: str
    signed_at: datetime | None
    timestamped: bool
    intact: bool
    whole_document: bool
    trusted: bool | None  # None when no trust roots were given

    @property
    def ok(self) -> bool:
        return self.intact and self.whole_document and self.trusted is not False


@dataclass(frozen=True)
class FileReport:
    path: Path
    signatures: tuple[SignatureReport, ...]
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and bool(self.signatures) and all(s.ok for s in self.signatures)


def _load_roots(paths: list[Path]) -> list[x509.Certificate]:
    roots = []
    for path in paths:
        data = path.read_bytes()
        if pem.detect(data):
            for _, _, der in pem.unarmor(data, multiple=True):
                roots.append(x509.Certificate.load(der))
        else:
            roots.append(x509.Certificate.load(data))
    return roots


def verify_file(path: Path, *, trust_roots: list[Path] | None = None) -> FileReport:
    roots = _load_roots(trust_roots or [])
    try:
        with path.open("rb") as fh:
            reader = PdfFileReader(fh)
            results = []
            for sig in reader.embedded_signatures:
                context = ValidationContext(trust_roots=roots) if roots else ValidationContext()
                status = validate_pdf_signature(sig, context)
                results.append(
                    SignatureReport(
                        field=sig.field_name,
                        signer=status.signing_cert.subject.human_friendly,
                        signed_at=(
                            status.timestamp_validity.timestamp
                            if status.timestamp_validity
                            else status.signer_reported_dt
                        ),
                        timestamped=status.timestamp_validity is not None,
                        intact=bool(status.intact and status.valid),
                        whole_document=status.coverage == SignatureCoverageLevel.ENTIRE_FILE,
                        trusted=bool(status.trusted) if roots else None,
                    )
                )
    except Exception as exc:  # a damaged or non-PDF file is a finding, not a crash
        return FileReport(path, (), error=f"{type(exc).__name__}: {exc}")
    return FileReport(path, tuple(results))


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
        print(
            f"{verdict}: {s.field}: signed by {s.signer} at {when}"
            f"{' (timestamped)' if s.timestamped else ''}; "
            f"{'intact' if s.intact else 'MODIFIED OR BROKEN'}; "
            f"{'covers the whole file' if s.whole_document else 'does NOT cover the whole file'}; "
            f"{trust}"
        )
