"""Cross-signing: the signature chain on hand-built answers, sealed key files, and a real
Synapse with real nio E2EE clients."""

from __future__ import annotations

import copy
import json
import secrets
import stat
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import nacl.signing
import nacl.utils
import nio
import pytest
from signedjson.key import decode_signing_key_base64, decode_verify_key_bytes
from signedjson.sign import sign_json, verify_signed_json

from bot.crosssigning import (
    SALT_BYTES,
    CrossSigningError,
    CrossSigningKeys,
    decode_base64,
    derive_key,
    encode_base64,
    evaluate_keys_query,
    load_keys,
    query_cross_signing,
    save_keys,
    seal,
    setup_cross_signing,
    unseal,
)
from bot.synapse_local import LocalSynapse, SynapseError

ALICE = "@alice:example.org"

#: Fresh users per run: the Synapse is shared by the whole test session.
U = "u" + secrets.token_hex(3)


# -- hand-built /keys/query answers -------------------------------------------


def _key_object(user_id: str, usage: str, public: str) -> dict[str, Any]:
    return {"user_id": user_id, "usage": [usage], "keys": {f"ed25519:{public}": public}}


def _signer(seed: bytes, version: str) -> Any:
    return decode_signing_key_base64("ed25519", version, encode_base64(seed))


def build_answer(
    keys: CrossSigningKeys, user_id: str = ALICE, device_id: str = "DEVICE1"
) -> dict[str, Any]:
    """A /keys/query answer with one device, signed the way a real client signs."""
    device_seed = nacl.utils.random(32)
    device_public = encode_base64(nacl.signing.SigningKey(device_seed).verify_key.encode())
    device = {
        "user_id": user_id,
        "device_id": device_id,
        "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
        "keys": {f"ed25519:{device_id}": device_public, f"curve25519:{device_id}": "Y3VydmU"},
    }
    sign_json(device, user_id, _signer(device_seed, device_id))
    sign_json(device, user_id, _signer(keys.self_signing, keys.self_signing_public))
    device["unsigned"] = {"device_display_name": "phone"}
    master_signer = _signer(keys.master, keys.master_public)
    return {
        "device_keys": {user_id: {device_id: device}},
        "master_keys": {user_id: _key_object(user_id, "master", keys.master_public)},
        "self_signing_keys": {
            user_id: sign_json(
                _key_object(user_id, "self_signing", keys.self_signing_public),
                user_id,
                master_signer,
            )
        },
        "failures": {},
    }


def test_valid_chain_is_cross_signed() -> None:
    keys = CrossSigningKeys.generate()
    answer = build_answer(keys)
    result = evaluate_keys_query(answer, ALICE)
    assert result.master_key == keys.master_public
    assert result.self_signing_key == keys.self_signing_public
    assert result.cross_signed_devices == {"DEVICE1"}
    assert (
        result.device_ed25519["DEVICE1"]
        == answer["device_keys"][ALICE]["DEVICE1"]["keys"]["ed25519:DEVICE1"]
    )


def test_tampered_device_is_not_cross_signed() -> None:
    answer = build_answer(CrossSigningKeys.generate())
    answer["device_keys"][ALICE]["DEVICE1"]["keys"]["curve25519:DEVICE1"] = "b3RoZXI"
    assert evaluate_keys_query(answer, ALICE).cross_signed_devices == frozenset()


def test_device_without_its_own_signature_is_not_cross_signed() -> None:
    answer = build_answer(CrossSigningKeys.generate())
    del answer["device_keys"][ALICE]["DEVICE1"]["signatures"][ALICE]["ed25519:DEVICE1"]
    assert evaluate_keys_query(answer, ALICE).cross_signed_devices == frozenset()


def test_self_signing_key_not_signed_by_master() -> None:
    keys = CrossSigningKeys.generate()
    answer = build_answer(keys)
    impostor = CrossSigningKeys.generate()
    ssk = _key_object(ALICE, "self_signing", keys.self_signing_public)
    answer["self_signing_keys"][ALICE] = sign_json(
        ssk, ALICE, _signer(impostor.master, keys.master_public)
    )
    result = evaluate_keys_query(answer, ALICE)
    assert result.master_key == keys.master_public
    assert result.self_signing_key is None
    assert result.cross_signed_devices == frozenset()


def test_master_key_with_two_keys_is_refused() -> None:
    answer = build_answer(CrossSigningKeys.generate())
    answer["master_keys"][ALICE]["keys"]["ed25519:extra"] = "ZXh0cmE"
    result = evaluate_keys_query(answer, ALICE)
    assert result.master_key is None
    assert result.cross_signed_devices == frozenset()


def test_wrong_user_id() -> None:
    keys = CrossSigningKeys.generate()
    answer = build_answer(keys)
    # Another user is simply absent from the answer.
    other = evaluate_keys_query(answer, "@mallory:example.org")
    assert other.master_key is None
    assert other.cross_signed_devices == frozenset()
    # Keys labelled with somebody else's user id do not count for Alice.
    relabelled = copy.deepcopy(answer)
    relabelled["self_signing_keys"][ALICE]["user_id"] = "@mallory:example.org"
    assert evaluate_keys_query(relabelled, ALICE).cross_signed_devices == frozenset()
    relabelled = copy.deepcopy(answer)
    relabelled["master_keys"][ALICE]["user_id"] = "@mallory:example.org"
    assert evaluate_keys_query(relabelled, ALICE).master_key is None


def test_empty_answer() -> None:
    result = evaluate_keys_query({}, ALICE)
    assert (result.master_key, result.cross_signed_devices) == (None, frozenset())


# -- keys at rest ---------------------------------------------------------------


def test_keys_json_round_trip_and_repr_hides_seeds() -> None:
    keys = CrossSigningKeys.generate()
    assert CrossSigningKeys.from_json(keys.to_json()) == keys
    assert keys.to_json()["master"] not in repr(keys)
    assert len({keys.master_public, keys.self_signing_public, keys.user_signing_public}) == 3
    assert "=" not in keys.master_public


def test_seal_round_trip_and_wrong_key() -> None:
    key = nacl.utils.random(32)
    blob = seal(b"secret seeds", key)
    assert unseal(blob, key) == b"secret seeds"
    with pytest.raises(CrossSigningError, match="wrong key"):
        unseal(blob, nacl.utils.random(32))
    tampered = blob[:-1] + bytes([blob[-1] ^ 1])
    with pytest.raises(CrossSigningError):
        unseal(tampered, key)


def test_derive_key() -> None:
    salt = b"s" * SALT_BYTES
    key = derive_key("correct horse", salt=salt)
    assert len(key) == 32
    assert derive_key(b"correct horse", salt=salt) == key
    assert derive_key("correct horse", salt=b"t" * SALT_BYTES) != key
    with pytest.raises(ValueError, match="salt"):
        derive_key("correct horse", salt=b"short")
    long_salt = b"a-stored-random-token-of-43-characters-long"
    assert derive_key("correct horse", salt=long_salt) == derive_key(
        "correct horse", salt=long_salt
    )
    assert derive_key("correct horse", salt=long_salt) != key


def test_save_and_load_keys(tmp_path: Path) -> None:
    keys = CrossSigningKeys.generate()
    key = nacl.utils.random(32)
    path = tmp_path / "cross-signing.keys"
    save_keys(path, keys, key)
    save_keys(path, keys, key)  # overwriting is fine
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["cross-signing.keys"]
    assert load_keys(path, key) == keys
    with pytest.raises(CrossSigningError, match="wrong key"):
        load_keys(path, nacl.utils.random(32))
    path.write_bytes(b"something else")
    with pytest.raises(CrossSigningError, match="not a sealed"):
        load_keys(path, key)


# -- a real Synapse and real nio clients ------------------------------------------

pytest_integration = pytest.mark.integration
Login = Callable[[str], Awaitable[nio.AsyncClient]]


@pytest.fixture
async def login(synapse: LocalSynapse, tmp_path: Path) -> AsyncIterator[Login]:
    """Log a user in as a new E2EE device (registering it first) and upload its keys."""
    clients: list[nio.AsyncClient] = []

    async def _login(localpart: str) -> nio.AsyncClient:
        user_id = f"@{localpart}:{synapse.server_name}"
        try:
            synapse.register_user(localpart, f"{localpart.removeprefix(U)}-password")
        except SynapseError as err:  # a second device of a user registered earlier
            if not isinstance(err.body, dict) or err.body.get("errcode") != "M_USER_IN_USE":
                raise
        store = tmp_path / f"store-{len(clients)}"
        store.mkdir()
        client = nio.AsyncClient(
            synapse.base_url,
            user_id,
            store_path=str(store),
            config=nio.AsyncClientConfig(encryption_enabled=True, store_sync_tokens=True),
        )
        clients.append(client)
        password = f"{localpart.removeprefix(U)}-password"
        assert isinstance(await client.login(password), nio.LoginResponse)
        assert isinstance(await client.sync(timeout=0, full_state=True), nio.SyncResponse)
        if client.should_upload_keys:
            assert isinstance(await client.keys_upload(), nio.KeysUploadResponse)
        return client

    yield _login
    for client in clients:
        await client.close()


@pytest_integration
async def test_setup_cross_signs_the_device(login: Login) -> None:
    alice = await login(U + "alice")
    bob = await login(U + "bob")
    keys = CrossSigningKeys.generate()
    await setup_cross_signing(alice, keys=keys, password="alice-password")

    seen = (await query_cross_signing(bob, [alice.user_id]))[alice.user_id]
    assert seen.master_key == keys.master_public
    assert alice.device_id in seen.cross_signed_devices
    assert seen.device_ed25519[alice.device_id] == alice.olm.account.identity_keys["ed25519"]

    # Alice's device also vouches for her master key, as Element's devices do (Synapse
    # shows signatures on cross-signing keys only to the user who made them).
    response = await alice.send(
        "POST",
        "/_matrix/client/v3/keys/query",
        json.dumps({"device_keys": {alice.user_id: []}}),
        {"Authorization": f"Bearer {alice.access_token}"},
    )
    master = (await response.json())["master_keys"][alice.user_id]
    device_key = decode_verify_key_bytes(
        f"ed25519:{alice.device_id}", decode_base64(seen.device_ed25519[alice.device_id])
    )
    verify_signed_json(master, alice.user_id, device_key)

    # Bob has no cross-signing keys, so none of his devices count.
    assert (await query_cross_signing(alice, [bob.user_id]))[bob.user_id].master_key is None


@pytest_integration
async def test_setup_twice_is_a_no_op(login: Login) -> None:
    carol = await login(U + "carol")
    keys = CrossSigningKeys.generate()
    # The first upload needs no password (MSC3967).
    await setup_cross_signing(carol, keys=keys, password=None)
    # No password now: any upload that needed one would raise.
    await setup_cross_signing(carol, keys=keys, password=None)
    seen = (await query_cross_signing(carol, [carol.user_id]))[carol.user_id]
    assert seen.master_key == keys.master_public
    assert seen.cross_signed_devices == {carol.device_id}


@pytest_integration
async def test_new_device_is_not_cross_signed_until_it_runs_setup(login: Login) -> None:
    first = await login(U + "dave")
    keys = CrossSigningKeys.generate()
    await setup_cross_signing(first, keys=keys, password="dave-password")
    second = await login(U + "dave")
    assert second.device_id != first.device_id

    seen = (await query_cross_signing(first, [first.user_id]))[first.user_id]
    assert second.device_id in seen.device_ed25519
    assert seen.cross_signed_devices == {first.device_id}

    # The same keys on the new device need no password: the server already has them.
    await setup_cross_signing(second, keys=keys, password=None)
    seen = (await query_cross_signing(first, [first.user_id]))[first.user_id]
    assert seen.cross_signed_devices == {first.device_id, second.device_id}


@pytest_integration
async def test_other_keys_on_server_need_the_password(login: Login) -> None:
    erin = await login(U + "erin")
    original = CrossSigningKeys.generate()
    await setup_cross_signing(erin, keys=original, password="erin-password")

    replacement = CrossSigningKeys.generate()
    with pytest.raises(CrossSigningError, match="replaced elsewhere"):
        await setup_cross_signing(erin, keys=replacement, password=None)
    with pytest.raises(CrossSigningError, match="device_signing/upload"):
        await setup_cross_signing(erin, keys=replacement, password="wrong-password")

    await setup_cross_signing(erin, keys=replacement, password="erin-password")
    seen = (await query_cross_signing(erin, [erin.user_id]))[erin.user_id]
    assert seen.master_key == replacement.master_public
    assert seen.cross_signed_devices == {erin.device_id}


@pytest_integration
async def test_refuses_to_sign_device_keys_it_does_not_hold(login: Login, tmp_path: Path) -> None:
    """A lost crypto store with the device kept: the server's keys are not this client's."""
    frank = await login(U + "frank")
    store = tmp_path / "fresh-store"
    store.mkdir()
    stranger = nio.AsyncClient(
        frank.homeserver,
        frank.user_id,
        store_path=str(store),
        config=nio.AsyncClientConfig(encryption_enabled=True, store_sync_tokens=True),
    )
    try:
        stranger.restore_login(frank.user_id, frank.device_id, frank.access_token)
        with pytest.raises(CrossSigningError, match="not this client's"):
            await setup_cross_signing(
                stranger, keys=CrossSigningKeys.generate(), password="frank-password"
            )
    finally:
        await stranger.close()
    seen = (await query_cross_signing(frank, [frank.user_id]))[frank.user_id]
    assert frank.device_id not in seen.cross_signed_devices
