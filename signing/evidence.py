"""What of a signer's identification goes into the sealed PDF, and what stays behind.

The sealed decision travels: to the case room, to the home municipality, into
their files. The full identification record does not need to: BankID's completion
data carries the signer's personal identity number and their device's IP address,
and an OpenID Connect ID token carries whatever claims the provider puts in it.
So the PDF embeds what proves the identification (the method, when, the signer's
name, the provider's reference for the transaction) and a SHA-256 digest of the
full record; the record itself stays in the installation's database with the
signing request and is exported, byte for byte as digested, by
``socialjour audit export`` (``evidence/decision-N-identification.json``), so the
two can be matched for as long as the case is kept.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

#: How the digest is made, written next to it so a reader can recompute it.
DIGEST_FORMAT = (
    "SHA-256 of the identification record as JSON, UTF-8, keys sorted, no spaces "
    "(the file evidence/decision-N-identification.json of `socialjour audit export`)"
)

#: Per method, the provider's references that identify the transaction without
#: identifying the person; anything else stays out of the PDF.
_REFERENCES: dict[str, tuple[str, ...]] = {
    "bankid": ("orderRef",),
    "oidc": ("iss", "acr", "auth_time"),
    "matrix-code": ("matrix_user_id", "channel"),
}


def canonical(record: Mapping[str, Any]) -> bytes:
    """The record as the bytes its digest is taken of (and that the export holds)."""
    return json.dumps(
        record, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str
    ).encode("utf-8")


def digest(record: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical(record)).hexdigest()


def embedded(record: Mapping[str, Any]) -> dict[str, Any]:
    """The part of identification record ``record`` (as stored with the signing
    request: method, subject, name, at, evidence) that goes into the sealed PDF.

    The subject is kept only for the matrix-code method, where it is the signer's
    Matrix ID (known to the case room anyway); for BankID it is the personal
    identity number and for OpenID Connect the provider's ``sub``, so it stays out.
    """
    method = str(record.get("method", ""))
    full = record.get("evidence")
    full = full if isinstance(full, Mapping) else {}
    shown: dict[str, Any] = {
        "method": method,
        "name": record.get("name"),
        "at": record.get("at"),
        "reference": {key: full[key] for key in _REFERENCES.get(method, ()) if key in full},
        "evidence_sha256": digest(record),
        "evidence_digest_format": DIGEST_FORMAT,
    }
    if method == "matrix-code":
        shown["subject"] = record.get("subject")
    return shown


def decision_evidence(
    identification: Mapping[str, Any], decided_at: str, reviewed_sha256: str, rendered: bool
) -> dict[str, Any]:
    """What goes under a decision's signature: the identification (:func:`embedded`),
    the moment of the decision, the SHA-256 of the document the signer reviewed, and
    whether the sealed document is that one rendered again with the moment (True) or
    the reviewed one as it is (False). Here, light to import, because a seal process
    calls it (``functools.partial`` of it crosses there)."""
    return {
        **identification,
        "decision": {
            "decided_at": decided_at,
            "reviewed_sha256": reviewed_sha256,
            "rendered_at_signing": rendered,
        },
    }
