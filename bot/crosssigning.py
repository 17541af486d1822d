"""Cross-signing for a matrix-nio client, which has none of its own.

Element is making verification mandatory (MSC4153): a device its owner has not
cross-signed is left out of encrypted rooms, the bot's included. So the bot
keeps its own master, self-signing and user-signing keys (sealed on disk),
uploads them once, signs its device with them, and checks other users'
devices the same way before it trusts them with room keys.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import copy
import hashlib
import json
import os
import tempfile
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import nacl.exceptions
import nacl.pwhash
import nacl.secret
import nacl.signing
import nacl.utils
import nio
from signedjson.key import decode_signing_key_base64, decode_verify_key_bytes
from signedjson.sign import SignatureVerifyException, sign_json, verify_signed_json
from signedjson.types import SigningKey

KEYS_QUERY = "/_matrix/client/v3/keys/query"
DEVICE_SIGNING_UPLOAD = "/_matrix/client/v3/keys/device_signing/upload"
SIGNATURES_UPLOAD = "/_matrix/client/v3/keys/signatures/upload"

SALT_BYTES = nacl.pwhash.argon2id.SALTBYTES  # 16
# About 0.2 s on a 2-core machine: enough to slow guessing, short enough for every start.
_KDF_OPSLIMIT = 3
_KDF_MEMLIMIT = 128 * 1024 * 1024
_FILE_MAGIC = b"socialjour-cross-signing-v1\n"

JsonDict = dict[str, Any]


class CrossSigningError(Exception):
    """Cross-signing cannot be set up or the sealed keys cannot be read; the text says why."""


@dataclass(frozen=True)
class CrossSigningKeys:
    """The three private Ed25519 seeds (32 bytes each); never shown in repr."""

    master: bytes = field(repr=False)
    self_signing: bytes = field(repr=False)
    user_signing: bytes = field(repr=False)

    def __post_init__(self) -> None:
        for name in ("master", "self_signing", "user_signing"):
            if len(getattr(self, name)) != 32:
                raise ValueError(f"{name} seed must be 32 bytes")

    @classmethod
    def generate(cls) -> CrossSigningKeys:
        return cls(nacl.utils.random(32), nacl.utils.random(32), nacl.utils.random(32))

    @property
    def master_public(self) -> str:
        return _public(self.master)

    @property
    def self_signing_public(self) -> str:
        return _public(self.self_signing)

    @property
    def user_signing_public(self) -> str:
        return _public(self.user_signing)

    def to_json(self) -> dict[str, str]:
        return {
            "master": encode_base64(self.master),
            "self_signing": encode_base64(self.self_signing),
            "user_signing": encode_base64(self.user_signing),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CrossSigningKeys:
        try:
            return cls(
                decode_base64(data["master"]),
                decode_base64(data["self_signing"]),
                decode_base64(data["user_signing"]),
            )
        except (KeyError, TypeError, ValueError) as err:
            raise CrossSigningError(f"malformed cross-signing keys: {err}") from None


def encode_base64(data: bytes) -> str:
    """Unpadded standard base64, as Matrix writes keys and signatures."""
    return base64.b64encode(data).decode().rstrip("=")


def decode_base64(text: str) -> bytes:
    """Read unpadded (or padded) standard base64; raises ValueError on garbage."""
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except binascii.Error as err:
        raise ValueError(f"invalid base64: {err}") from None


def _public(seed: bytes) -> str:
    return encode_base64(nacl.signing.SigningKey(seed).verify_key.encode())


def _signing_key(seed: bytes) -> SigningKey:
    """A signedjson signing key whose key id is `ed25519:<public key>`, as Matrix wants."""
    return decode_signing_key_base64("ed25519", _public(seed), encode_base64(seed))


# -- sealing the keys at rest ---------------------------------------------


def seal(data: bytes, key: bytes) -> bytes:
    """Encrypt and authenticate with XSalsa20-Poly1305 (a random nonce is prepended)."""
    return bytes(nacl.secret.SecretBox(key).encrypt(data))


def unseal(blob: bytes, key: bytes) -> bytes:
    """Reverse `seal`; a wrong key or a changed byte raises `CrossSigningError`."""
    try:
        return nacl.secret.SecretBox(key).decrypt(blob)
    except nacl.exceptions.CryptoError:
        raise CrossSigningError("cannot decrypt: wrong key or corrupted data") from None


def derive_key(secret: str | bytes, *, salt: bytes) -> bytes:
    """A 32-byte sealing key from a passphrase (Argon2id), about 0.2 s.

    `salt` needs at least SALT_BYTES random bytes; a longer one is hashed down to
    the size Argon2id takes, so a stored random token can serve as it is.
    """
    if isinstance(secret, str):
        secret = secret.encode()
    if len(salt) < SALT_BYTES:
        raise ValueError(f"salt must be at least {SALT_BYTES} bytes")
    if len(salt) > SALT_BYTES:
        salt = hashlib.blake2b(salt, digest_size=SALT_BYTES).digest()
    kdf = nacl.pwhash.argon2id.kdf
    return kdf(32, secret, salt, opslimit=_KDF_OPSLIMIT, memlimit=_KDF_MEMLIMIT)


def save_keys(path: Path, keys: CrossSigningKeys, key: bytes) -> None:
    """Write the sealed keys atomically (temp file, fsync, rename) with mode 0600."""
    blob = _FILE_MAGIC + seal(json.dumps(keys.to_json()).encode(), key)
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(blob)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_keys(path: Path, key: bytes) -> CrossSigningKeys:
    """Read keys written by `save_keys`; a wrong key raises a `CrossSigningError` saying so."""
    blob = Path(path).read_bytes()
    if not blob.startswith(_FILE_MAGIC):
        raise CrossSigningError(f"{path} is not a sealed cross-signing key file")
    try:
        plain = unseal(blob[len(_FILE_MAGIC) :], key)
    except CrossSigningError:
        raise CrossSigningError(
            f"cannot decrypt {path}: wrong key (passphrase or salt changed?) or a damaged file"
        ) from None
    return CrossSigningKeys.from_json(json.loads(plain))


# -- checking signatures in a /keys/query answer ----------------------------


@dataclass(frozen=True)
class UserCrossSigning:
    """What a /keys/query answer proves about one user's devices."""

    user_id: str
    master_key: str | None
    cross_signed_devices: frozenset[str]
    device_ed25519: Mapping[str, str]
    self_signing_key: str | None = None  # only when validly signed by the master key


def _verifies(obj: Any, signer: str, key_version: str, public_key: str) -> bool:
    """Whether `obj` carries a valid signature by `signer`'s `ed25519:<key_version>`."""
    if not isinstance(obj, dict):
        return False
    try:
        verify_key = decode_verify_key_bytes(f"ed25519:{key_version}", decode_base64(public_key))
        verify_signed_json(obj, signer, verify_key)
    except (SignatureVerifyException, ValueError, TypeError):
        return False
    return True


def _cross_signing_key(obj: Any, user_id: str, usage: str) -> tuple[str, str] | None:
    """(key version, public key) of a well-formed cross-signing key object, else None."""
    if not isinstance(obj, dict) or obj.get("user_id") != user_id:
        return None
    usages, keys = obj.get("usage"), obj.get("keys")
    if not isinstance(usages, list) or usage not in usages:
        return None
    if not isinstance(keys, dict) or len(keys) != 1:
        return None
    ((key_id, public),) = keys.items()
    if not key_id.startswith("ed25519:") or not isinstance(public, str):
        return None
    return key_id.removeprefix("ed25519:"), public


def _entry(answer: Mapping[str, Any], section: str, user_id: str) -> dict[str, Any]:
    """answer[section][user_id] when both are JSON objects, else {} (answers are untrusted)."""
    part = answer.get(section)
    entry = part.get(user_id) if isinstance(part, dict) else None
    return entry if isinstance(entry, dict) else {}


def evaluate_keys_query(answer: Mapping[str, Any], user_id: str) -> UserCrossSigning:
    """Which of `user_id`'s devices chain device <- self-signing <- master in `answer`.

    Pure, over the raw /keys/query JSON, because nio's KeysQueryResponse drops
    the master and self-signing keys.
    """
    devices = _entry(answer, "device_keys", user_id)
    device_ed25519: dict[str, str] = {}
    for device_id, device in devices.items():
        keys = device.get("keys") if isinstance(device, dict) else None
        ed25519 = keys.get(f"ed25519:{device_id}") if isinstance(keys, dict) else None
        if isinstance(ed25519, str):
            device_ed25519[device_id] = ed25519

    master = _cross_signing_key(_entry(answer, "master_keys", user_id), user_id, "master")
    if master is None:
        return UserCrossSigning(user_id, None, frozenset(), device_ed25519)
    ssk_obj = _entry(answer, "self_signing_keys", user_id)
    ssk = _cross_signing_key(ssk_obj, user_id, "self_signing")
    if ssk is None or not _verifies(ssk_obj, user_id, *master):
        return UserCrossSigning(user_id, master[1], frozenset(), device_ed25519)

    signed = frozenset(
        device_id
        for device_id, ed25519 in device_ed25519.items()
        if devices[device_id].get("user_id") == user_id
        and devices[device_id].get("device_id") == device_id
        and _verifies(devices[device_id], user_id, device_id, ed25519)
        and _verifies(devices[device_id], user_id, *ssk)
    )
    return UserCrossSigning(user_id, master[1], signed, device_ed25519, ssk[1])


#: Attempts for a raw request while the homeserver is restarting (about 30 s in all).
RETRIES = 7

# -- talking to the homeserver through nio ----------------------------------


async def _call(client: nio.AsyncClient, method: str, path: str, body: JsonDict) -> tuple[int, Any]:
    """One raw JSON request through nio's own HTTP session (nio has no endpoint for these)."""
    if not client.access_token:
        raise CrossSigningError("the client is not logged in")
    headers = {"Authorization": f"Bearer {client.access_token}", "Content-Type": "application/json"}
    response = await _send_with_retry(client, method, path, json.dumps(body), headers)
    try:
        try:
            return response.status, await response.json(content_type=None)
        except ValueError:  # not JSON: a proxy's error page, say
            return response.status, (await response.text())[:200]
    finally:
        response.release()


async def _send_with_retry(
    client: nio.AsyncClient, method: str, path: str, data: str, headers: dict[str, str]
) -> aiohttp.ClientResponse:
    """nio's ``send`` does not retry; a homeserver restart must not lose a request."""
    delay = 0.5
    for attempt in range(RETRIES):
        try:
            response = await client.send(method, path, data, headers)
        except (aiohttp.ClientConnectionError, TimeoutError):
            if attempt == RETRIES - 1:
                raise
        else:
            if response.status != 429 and response.status < 502:
                return response
            response.release()
            if attempt == RETRIES - 1:
                raise CrossSigningError(f"{path}: HTTP {response.status} after {RETRIES} tries")
        await asyncio.sleep(delay)
        delay = min(delay * 2, 8.0)
    raise AssertionError("unreachable")


def _fail(what: str, status: int, answer: Any) -> CrossSigningError:
    if isinstance(answer, dict):
        answer = f"{answer.get('errcode', '')} {answer.get('error', '')}".strip()
    return CrossSigningError(f"{what} failed: HTTP {status} {answer}")


async def _keys_query(client: nio.AsyncClient, user_ids: Collection[str]) -> JsonDict:
    body: JsonDict = {"device_keys": {user_id: [] for user_id in user_ids}}
    status, answer = await _call(client, "POST", KEYS_QUERY, body)
    if status != 200 or not isinstance(answer, dict):
        raise _fail("keys/query", status, answer)
    return answer


async def query_cross_signing(
    client: nio.AsyncClient, user_ids: Collection[str]
) -> dict[str, UserCrossSigning]:
    """Ask the homeserver for `user_ids`' keys and check each user's chain."""
    if not user_ids:
        return {}
    answer = await _keys_query(client, user_ids)
    return {user_id: evaluate_keys_query(answer, user_id) for user_id in user_ids}


def _signed_key_objects(keys: CrossSigningKeys, user_id: str) -> JsonDict:
    """The device_signing/upload body: the master key, and the other two signed by it."""

    def key_object(seed: bytes, usage: str) -> JsonDict:
        public = _public(seed)
        return {"user_id": user_id, "usage": [usage], "keys": {f"ed25519:{public}": public}}

    master = _signing_key(keys.master)
    return {
        "master_key": key_object(keys.master, "master"),
        "self_signing_key": sign_json(
            key_object(keys.self_signing, "self_signing"), user_id, master
        ),
        "user_signing_key": sign_json(
            key_object(keys.user_signing, "user_signing"), user_id, master
        ),
    }


async def _upload_keys(
    client: nio.AsyncClient, keys: CrossSigningKeys, password: str | None
) -> None:
    """Upload our three keys, answering Synapse's password prompt when it asks."""
    user_id = client.user_id
    body = _signed_key_objects(keys, user_id)
    status, answer = await _call(client, "POST", DEVICE_SIGNING_UPLOAD, body)
    if status == 401 and isinstance(answer, dict) and "flows" in answer:
        if password is None:
            raise CrossSigningError(
                f"the homeserver wants {user_id}'s password to upload cross-signing keys"
            )
        stages = {stage for flow in answer["flows"] for stage in flow.get("stages", [])}
        if "m.login.password" not in stages:
            raise CrossSigningError(f"the homeserver offers no password step: {sorted(stages)}")
        body["auth"] = {
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": user_id},
            "password": password,
            "session": answer.get("session"),
        }
        status, answer = await _call(client, "POST", DEVICE_SIGNING_UPLOAD, body)
    if status != 200:
        raise _fail("keys/device_signing/upload", status, answer)


def _without_unsigned(obj: JsonDict) -> JsonDict:
    clean = copy.deepcopy(obj)
    clean.pop("unsigned", None)
    return clean


async def setup_cross_signing(
    client: nio.AsyncClient, *, keys: CrossSigningKeys, password: str | None
) -> None:
    """Make sure the server holds our keys and our device is signed; a no-op when it is.

    Call after login/restore and after nio has uploaded the device keys (first sync).
    Keys found on the server that are not ours are replaced only with the password.
    """
    user_id, device_id = client.user_id, client.device_id
    if not device_id:
        raise CrossSigningError("the client has no device id: log in or restore_login first")
    answer = await _keys_query(client, [user_id])
    state = evaluate_keys_query(answer, user_id)

    ours = (keys.master_public, keys.self_signing_public)
    if (state.master_key, state.self_signing_key) != ours:
        if state.master_key is not None and password is None:
            raise CrossSigningError(
                f"{user_id} has other cross-signing keys on the server (master {state.master_key},"
                f" ours {keys.master_public}): replaced elsewhere, or not our first key file. "
                "Restore the matching key file, or give the password to replace them with ours."
            )
        await _upload_keys(client, keys, password)
        answer = await _keys_query(client, [user_id])
        state = evaluate_keys_query(answer, user_id)
        if (state.master_key, state.self_signing_key) != ours:
            raise CrossSigningError("the homeserver did not keep our cross-signing keys")

    device = _entry(answer, "device_keys", user_id).get(device_id)
    if not isinstance(device, dict):
        raise CrossSigningError(
            f"device {device_id} has no keys on the server yet: sync or keys_upload() first"
        )
    if device_id in state.cross_signed_devices:
        return
    own_key = client.olm.account.identity_keys["ed25519"] if client.olm else None
    if own_key is not None and state.device_ed25519.get(device_id) != own_key:
        # Never vouch for keys this client does not hold (a lost store, a rogue upload).
        raise CrossSigningError(
            f"the server's keys for device {device_id} are not this client's: use a new device"
        )

    signed_device = sign_json(_without_unsigned(device), user_id, _signing_key(keys.self_signing))
    uploads: JsonDict = {device_id: signed_device}
    master_obj = answer["master_keys"][user_id]
    if client.olm is not None and not _verifies(master_obj, user_id, device_id, own_key or ""):
        # The device vouches for the master key too, as Element's devices do.
        master = _without_unsigned(master_obj)
        signatures = master.pop("signatures", {})
        signatures.setdefault(user_id, {})[f"ed25519:{device_id}"] = client.olm.sign_json(master)
        master["signatures"] = signatures
        uploads[keys.master_public] = master

    status, result = await _call(client, "POST", SIGNATURES_UPLOAD, {user_id: uploads})
    if status != 200:
        raise _fail("keys/signatures/upload", status, result)
    failures = result.get("failures") if isinstance(result, dict) else None
    if failures:
        raise CrossSigningError(f"the homeserver refused our signatures: {failures}")
