"""A development PKI for ``socialjour demo`` and the tests: a CA, a seal and a TSA.

Everything here is named DEVELOPMENT so a document sealed with it can never be
mistaken for a real decision: the CA is "Socialjour DEVELOPMENT CA – not for
production" and nobody's verifier trusts it unless told to. Keys are written
with mode 0600; the seal's PKCS#12 file gets a random password kept beside it in
a 0600 file, the way an operator would keep a real one (``{ file = ... }``).

``create_dev_pki`` is idempotent: it reuses every file that is there and still
valid, and only makes what is missing or about to expire.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from config.settings import SigningSettings

__all__ = ["CA_NAME", "SEAL_NAME", "TSA_NAME", "DevPki", "create_dev_pki"]

CA_NAME = "Socialjour DEVELOPMENT CA – not for production"
SEAL_NAME = "Socialjour (utveckling)"
TSA_NAME = "Socialjour DEVELOPMENT TSA"
_ORGANISATION = "Socialjour DEVELOPMENT – not for production"

_CA_LIFETIME = timedelta(days=3650)
_LEAF_LIFETIME = timedelta(days=730)
_RENEW_BEFORE = timedelta(days=30)
_CLOCK_SKEW = timedelta(hours=1)
_KEY_BITS = 2048  # RSA: pyHanko's development timestamper signs with RSA only


@dataclass(frozen=True)
class DevPki:
    """Paths of the development PKI's files (all PEM except the PKCS#12 seal)."""

    folder: Path

    @property
    def ca_cert(self) -> Path:
        return self.folder / "dev-ca.pem"

    @property
    def ca_key(self) -> Path:
        return self.folder / "dev-ca.key"

    @property
    def seal_cert(self) -> Path:
        return self.folder / "seal.pem"

    @property
    def seal_pkcs12(self) -> Path:
        return self.folder / "seal.p12"

    @property
    def seal_password_file(self) -> Path:
        return self.folder / "seal.p12.password"

    @property
    def tsa_cert(self) -> Path:
        return self.folder / "tsa.pem"

    @property
    def tsa_key(self) -> Path:
        return self.folder / "tsa.key"

    def seal_password(self) -> str:
        return self.seal_password_file.read_text(encoding="utf-8").strip()

    def signing_settings(self, *, tsa_url: str | None = None) -> SigningSettings:
        """Settings that seal with this PKI and trust its CA (for the demo and tests)."""
        return SigningSettings(
            seal_pkcs12=self.seal_pkcs12,
            seal_pkcs12_password=self.seal_password(),
            tsa_url=tsa_url,
            trust_roots=(self.ca_cert,),
        )


def create_dev_pki(folder: Path) -> DevPki:
    """Make (or reuse) the development CA, seal and TSA in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    pki = DevPki(folder)
    ca_key, ca_cert, ca_reused = _ca(pki)
    if not (ca_reused and _seal_is_current(pki, ca_cert)):
        _issue_seal(pki, ca_key, ca_cert)
    if not (ca_reused and _leaf_is_current(pki.tsa_cert, pki.tsa_key, ca_cert)):
        _issue_tsa(pki, ca_key, ca_cert)
    return pki


# -- the CA ----------------------------------------------------------------------------


def _ca(pki: DevPki) -> tuple[rsa.RSAPrivateKey, x509.Certificate, bool]:
    """The CA's key and certificate, and whether they were reused."""
    if pki.ca_cert.is_file() and pki.ca_key.is_file():
        try:
            certificate = x509.load_pem_x509_certificate(pki.ca_cert.read_bytes())
            key = serialization.load_pem_private_key(pki.ca_key.read_bytes(), password=None)
        except ValueError:
            pass
        else:
            if isinstance(key, rsa.RSAPrivateKey) and _valid_for_a_while(certificate):
                return key, certificate, True
    key = _new_key()
    now = _now()
    name = _name(CA_NAME)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _CLOCK_SKEW)
        .not_valid_after(now + _CA_LIFETIME)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(key_cert_sign=True, crl_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_secret(pki.ca_key, _pem_key(key))
    _write(pki.ca_cert, certificate.public_bytes(serialization.Encoding.PEM))
    return key, certificate, False


# -- the seal and the TSA --------------------------------------------------------------


def _issue_seal(pki: DevPki, ca_key: rsa.RSAPrivateKey, ca_cert: x509.Certificate) -> None:
    key = _new_key()
    certificate = _leaf(
        SEAL_NAME,
        key,
        ca_key,
        ca_cert,
        _key_usage(digital_signature=True, content_commitment=True),
        extended=None,
    )
    password = secrets.token_urlsafe(24)
    bundle = pkcs12.serialize_key_and_certificates(
        name=SEAL_NAME.encode("utf-8"),
        key=key,
        cert=certificate,
        cas=[ca_cert],
        encryption_algorithm=serialization.BestAvailableEncryption(password.encode("utf-8")),
    )
    _write_secret(pki.seal_password_file, (password + "\n").encode("utf-8"))
    _write_secret(pki.seal_pkcs12, bundle)
    _write(pki.seal_cert, certificate.public_bytes(serialization.Encoding.PEM))


def _issue_tsa(pki: DevPki, ca_key: rsa.RSAPrivateKey, ca_cert: x509.Certificate) -> None:
    key = _new_key()
    certificate = _leaf(
        TSA_NAME,
        key,
        ca_key,
        ca_cert,
        _key_usage(digital_signature=True, content_commitment=True),
        extended=x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]),
    )
    _write_secret(pki.tsa_key, _pem_key(key))
    _write(pki.tsa_cert, certificate.public_bytes(serialization.Encoding.PEM))


def _leaf(
    common_name: str,
    key: rsa.RSAPrivateKey,
    ca_key: rsa.RSAPrivateKey,
    ca_cert: x509.Certificate,
    usage: x509.KeyUsage,
    *,
    extended: x509.ExtendedKeyUsage | None,
) -> x509.Certificate:
    now = _now()
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _CLOCK_SKEW)
        .not_valid_after(min(now + _LEAF_LIFETIME, ca_cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(usage, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
    )
    if extended is not None:
        # RFC 3161 2.3: a TSA certificate has exactly this one EKU, marked critical.
        builder = builder.add_extension(extended, critical=True)
    return builder.sign(ca_key, hashes.SHA256())


def _seal_is_current(pki: DevPki, ca_cert: x509.Certificate) -> bool:
    if not (pki.seal_pkcs12.is_file() and pki.seal_password_file.is_file()):
        return False
    if not pki.seal_cert.is_file():
        return False
    try:
        key, certificate, _ = pkcs12.load_key_and_certificates(
            pki.seal_pkcs12.read_bytes(), pki.seal_password().encode("utf-8")
        )
    except ValueError:
        return False
    return key is not None and certificate is not None and _issued_by(certificate, ca_cert)


def _leaf_is_current(cert_path: Path, key_path: Path, ca_cert: x509.Certificate) -> bool:
    if not (cert_path.is_file() and key_path.is_file()):
        return False
    try:
        certificate = x509.load_pem_x509_certificate(cert_path.read_bytes())
        serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except ValueError:
        return False
    return _issued_by(certificate, ca_cert)


def _issued_by(certificate: x509.Certificate, ca_cert: x509.Certificate) -> bool:
    if certificate.issuer != ca_cert.subject or not _valid_for_a_while(certificate):
        return False
    try:
        certificate.verify_directly_issued_by(ca_cert)
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


# -- small helpers ---------------------------------------------------------------------


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def _valid_for_a_while(certificate: x509.Certificate) -> bool:
    now = _now()
    return (
        certificate.not_valid_before_utc <= now
        and certificate.not_valid_after_utc > now + _RENEW_BEFORE
    )


def _new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=_KEY_BITS)


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "SE"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, _ORGANISATION),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _key_usage(
    *,
    digital_signature: bool = False,
    content_commitment: bool = False,
    key_cert_sign: bool = False,
    crl_sign: bool = False,
) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=content_commitment,  # a.k.a. nonRepudiation
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=key_cert_sign,
        crl_sign=crl_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _pem_key(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _write(path: Path, data: bytes) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_bytes(data)
    temporary.replace(path)


def _write_secret(path: Path, data: bytes) -> None:
    """Write ``data`` readable by the owner only, replacing any older file atomically."""
    temporary = path.with_name(path.name + ".tmp")
    temporary.unlink(missing_ok=True)
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(data)
    temporary.replace(path)
