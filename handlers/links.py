"""Signing-link tokens: made once, stored as a hash (to look up) and sealed (to repeat).

The hash finds the request when a link is opened. The sealed copy, AES-GCM under the
installation's link key (``data_dir/keys/links.key``), lets a reminder, an SMS or an
e-mail repeat the same link later, also after a restart; a database dump without
the key opens nothing.
"""

from __future__ import annotations

import base64
import hashlib
import secrets

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEY_BYTES = 32


def new_token() -> str:
    return secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class LinkSealer:
    """Seals and opens link tokens with one key; the request id is bound as AAD."""

    def __init__(self, key: bytes | None = None) -> None:
        self._aead = AESGCM(key if key is not None else AESGCM.generate_key(bit_length=256))

    def seal(self, token: str, *, token_hash: str) -> str:
        nonce = secrets.token_bytes(12)
        sealed = self._aead.encrypt(nonce, token.encode(), token_hash.encode())
        return base64.urlsafe_b64encode(nonce + sealed).decode()

    def open(self, sealed: str | None, *, token_hash: str) -> str | None:
        """The token, or None when it cannot be recovered (another key, no copy)."""
        if not sealed:
            return None
        try:
            raw = base64.urlsafe_b64decode(sealed.encode())
            token = self._aead.decrypt(raw[:12], raw[12:], token_hash.encode()).decode()
        except Exception:
            return None
        return token if hashlib.sha256(token.encode()).hexdigest() == token_hash else None
