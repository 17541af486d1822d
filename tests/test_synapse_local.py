"""The throw-away Synapse: users, restarts and lifted rate limits, against the real thing."""

from __future__ import annotations

import secrets
import stat
import urllib.parse
from pathlib import Path

import pytest
import yaml

from bot.synapse_local import LocalSynapse, SynapseError, ratelimit_overrides

pytestmark = pytest.mark.integration

#: Fresh users per run: the Synapse is shared by the whole test session.
U = "u" + secrets.token_hex(3)


def test_register_and_login(synapse: LocalSynapse) -> None:
    user_id = synapse.register_user(U + "alice", "alice-password")
    assert user_id == f"@{U}alice:localhost"
    answer = synapse.login(U + "alice", "alice-password")
    assert answer["user_id"] == user_id
    assert answer["access_token"]
    assert answer["device_id"]


def test_wrong_password_is_refused(synapse: LocalSynapse) -> None:
    synapse.register_user(U + "carol", "right")
    with pytest.raises(SynapseError) as err:
        synapse.login(U + "carol", "wrong")
    assert err.value.status == 403


def test_registering_twice_is_an_error(synapse: LocalSynapse) -> None:
    synapse.register_user(U + "dave", "pw")
    with pytest.raises(SynapseError) as err:
        synapse.register_user(U + "dave", "pw")
    assert err.value.status == 400


def test_admin_can_override_ratelimit(synapse: LocalSynapse) -> None:
    admin = synapse.register_user(U + "root", "root-pw", admin=True)
    bot = synapse.register_user(U + "bot", "bot-pw")
    token = synapse.login(U + "root", "root-pw")["access_token"]
    synapse.override_ratelimit(token, bot)
    quoted = urllib.parse.quote(bot, safe="")
    answer = synapse.request(
        "GET", f"/_synapse/admin/v1/users/{quoted}/override_ratelimit", token=token
    )
    assert answer == {"messages_per_second": 0, "burst_count": 0}
    assert admin.startswith(f"@{U}root:")


def test_no_rate_limits(synapse: LocalSynapse) -> None:
    """Stock limits allow 5 logins, 10 rooms and 10 messages in a burst; go well past each."""
    synapse.register_user(U + "busy", "busy-pw")
    tokens = [synapse.login(U + "busy", "busy-pw")["access_token"] for _ in range(12)]
    token = tokens[-1]
    rooms = [
        synapse.request("POST", "/_matrix/client/v3/createRoom", {}, token=token)["room_id"]
        for _ in range(15)
    ]
    room = urllib.parse.quote(rooms[0], safe="")
    for n in range(50):
        # urlopen raises SynapseError(status=429) on a rate limit, failing the test.
        answer = synapse.request(
            "PUT",
            f"/_matrix/client/v3/rooms/{room}/send/m.room.message/txn{n}",
            {"msgtype": "m.text", "body": f"message {n}"},
            token=token,
        )
        assert answer["event_id"].startswith("$")


def test_config_lifts_every_limiter(synapse: LocalSynapse) -> None:
    config = yaml.safe_load(synapse.config_path.read_text())
    for key, value in ratelimit_overrides().items():
        assert config[key] == value
    listener = config["listeners"][0]
    assert listener["bind_addresses"] == ["127.0.0.1"]
    assert listener["port"] == synapse.port
    assert config["trusted_key_servers"] == []
    assert config["federation_domain_whitelist"] == []


def test_restart_keeps_users_and_port(synapse: LocalSynapse) -> None:
    user_id = synapse.register_user(U + "erin", "erin-pw")
    port = synapse.port
    synapse.restart()
    assert synapse.port == port
    assert synapse.running
    assert synapse.login(U + "erin", "erin-pw")["user_id"] == user_id


def test_new_instance_reuses_directory(tmp_path: Path) -> None:
    """A second LocalSynapse on the same directory finds the same port, secret and users."""
    first = LocalSynapse(tmp_path)
    with first:
        user_id = first.register_user(U + "frank", "frank-pw")
    assert not first.running
    first.stop()  # idempotent
    second = LocalSynapse(tmp_path)
    assert second.port == first.port
    assert second.registration_shared_secret == first.registration_shared_secret
    with second:
        assert second.login(U + "frank", "frank-pw")["user_id"] == user_id
        assert second.last_start_seconds is not None
    assert stat.S_ISREG((tmp_path / "synapse.log").stat().st_mode)
