"""A throw-away Synapse on loopback, for `socialjour demo` and the test suite.

Real end-to-end encryption is only worth testing against a real homeserver, so
this starts one as a subprocess with SQLite, no federation, no TLS and every
rate limit lifted (stock limits make nio sleep silently on 429: a 22 ms
message then takes seconds). Everything it talks to is 127.0.0.1.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import random
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import yaml

CONFIG_NAME = "homeserver.yaml"
LOG_NAME = "synapse.log"

# Every rate limiter Synapse 1.163 reads (synapse/config/ratelimiting.py),
# nested the way its `RatelimitSettings.parse` looks them up.
_FLAT_LIMITERS = (
    "rc_message",
    "rc_registration",
    "rc_registration_token_validity",
    "rc_admin_redaction",
    "rc_joins_per_room",
    "rc_key_requests",
    "rc_3pid_validation",
    "rc_third_party_invite",
    "rc_media_create",
    "rc_delayed_event_mgmt",
    "rc_room_creation",
    "rc_reports",
    "rc_user_directory",
    "rc_profile",
)
_NESTED_LIMITERS = {
    "rc_login": ("address", "account", "failed_attempts"),
    "rc_joins": ("local", "remote"),
    "rc_invites": ("per_room", "per_user", "per_issuer"),
    "rc_presence": ("per_user",),
}


def ratelimit_overrides() -> dict[str, Any]:
    """Config keys that lift every limiter (fresh dicts, so the YAML has no anchors)."""

    def unlimited() -> dict[str, int]:
        return {"per_second": 10000, "burst_count": 100000}

    overrides: dict[str, Any] = {key: unlimited() for key in _FLAT_LIMITERS}
    for key, parts in _NESTED_LIMITERS.items():
        overrides[key] = {part: unlimited() for part in parts}
    # Federation is off (empty whitelist), but keep its limiter out of the way too.
    overrides["rc_federation"] = {
        "window_size": 1000,
        "sleep_limit": 100000,
        "sleep_delay": 1,
        "reject_limit": 100000,
        "concurrent": 1000,
    }
    return overrides


class SynapseError(RuntimeError):
    """Synapse did not start, or answered a request with an error."""

    def __init__(self, message: str, *, status: int | None = None, body: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = body


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago, chosen at random *below* the
    kernel's ephemeral range: a port from that range (what binding port 0 gives) can be
    taken meanwhile as the local end of any outgoing connection, so a server restarted
    on it (a bot after a kill) could find it in use."""
    low = _ephemeral_low()
    for _ in range(200):
        port = random.randrange(10_000, low)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _ephemeral_low() -> int:
    """The lowest port the kernel hands out for outgoing connections (Linux), or 32768."""
    try:
        text = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text()
        low = int(text.split()[0])
    except (OSError, ValueError, IndexError):
        return 32768
    return low if low > 11_000 else 32768


class LocalSynapse:
    """One Synapse process with its config and data under `base_dir`.

    The config is generated once and kept, so `restart()` (or a new instance
    on the same directory) finds the same users, rooms and keys.
    """

    def __init__(
        self, base_dir: Path, *, server_name: str = "localhost", port: int | None = None
    ) -> None:
        self.base_dir = Path(base_dir).resolve()
        self.server_name = server_name
        self.config_path = self.base_dir / CONFIG_NAME
        self.log_path = self.base_dir / LOG_NAME
        existing = self._read_config() if self.config_path.exists() else {}
        if existing:
            self.server_name = str(existing.get("server_name", server_name))
        self.port = port or _listener_port(existing) or free_port()
        secret = existing.get("registration_shared_secret")
        self.registration_shared_secret: str = str(secret) if secret else secrets.token_hex(32)
        self._process: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None
        self.last_start_seconds: float | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    # -- lifecycle -------------------------------------------------------

    def start(self, timeout: float = 60) -> None:
        """Start Synapse (generating the config the first time) and wait until it answers."""
        if self.running:
            return
        began = time.monotonic()
        self.base_dir.mkdir(parents=True, exist_ok=True)
        if not self.config_path.exists():
            self._generate_config()
        self._write_config()
        if self._answers():
            raise SynapseError(f"something already answers on {self.base_url}: an old Synapse?")
        self._log_file = self.log_path.open("ab")
        self._process = subprocess.Popen(  # noqa: S603 - fixed argv, our own interpreter
            [sys.executable, "-m", "synapse.app.homeserver", "-c", str(self.config_path)],
            cwd=self.base_dir,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a Ctrl-C in the terminal must not reach it half-way
        )
        deadline = began + timeout
        while True:
            if self._process.poll() is not None:
                code = self._process.returncode
                self.stop()
                raise SynapseError(f"Synapse exited with {code} during start:\n{self.log_tail()}")
            if self._answers():
                break
            if time.monotonic() > deadline:
                self.stop()
                raise SynapseError(f"Synapse did not answer within {timeout} s:\n{self.log_tail()}")
            time.sleep(0.05)
        self.last_start_seconds = time.monotonic() - began

    def stop(self, timeout: float = 20) -> None:
        """SIGTERM, then SIGKILL after `timeout`; calling it twice is harmless."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            os.kill(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(process.pid, signal.SIGKILL)
                process.wait(timeout)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def restart(self) -> None:
        """Stop and start again on the same port and data."""
        self.stop()
        self.start()

    def __enter__(self) -> LocalSynapse:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def log_tail(self, lines: int = 30) -> str:
        """The end of synapse.log, for error messages."""
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    # -- users -----------------------------------------------------------

    def register_user(self, localpart: str, password: str, *, admin: bool = False) -> str:
        """Create a user with shared-secret registration and return the full user id."""
        nonce = self.request("GET", "/_synapse/admin/v1/register")["nonce"]
        mac = hmac.new(self.registration_shared_secret.encode(), digestmod=hashlib.sha1)
        mac.update(b"\x00".join([nonce.encode(), localpart.encode(), password.encode()]))
        mac.update(b"\x00admin" if admin else b"\x00notadmin")
        answer = self.request(
            "POST",
            "/_synapse/admin/v1/register",
            {
                "nonce": nonce,
                "username": localpart,
                "password": password,
                "admin": admin,
                "mac": mac.hexdigest(),
            },
        )
        return str(answer["user_id"])

    def login(self, localpart: str, password: str) -> dict[str, Any]:
        """Password login; the answer carries `user_id`, `access_token` and `device_id`."""
        return self.request(
            "POST",
            "/_matrix/client/v3/login",
            {
                "type": "m.login.password",
                "identifier": {"type": "m.id.user", "user": localpart},
                "password": password,
            },
        )

    def override_ratelimit(self, admin_token: str, user_id: str) -> None:
        """Exempt one user from message rate limits, as production does for the bot."""
        quoted = urllib.parse.quote(user_id, safe="")
        self.request(
            "POST",
            f"/_synapse/admin/v1/users/{quoted}/override_ratelimit",
            {"messages_per_second": 0, "burst_count": 0},
            token=admin_token,
        )

    def request(
        self, method: str, path: str, body: Any = None, *, token: str | None = None
    ) -> dict[str, Any]:
        """One JSON request to this Synapse (sync, so it works without an event loop)."""
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        req = urllib.request.Request(  # noqa: S310 - base_url is always http://127.0.0.1
            self.base_url + path, data=data, headers=headers, method=method
        )
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310
                raw = resp.read()
        except urllib.error.HTTPError as err:
            raw = err.read()
            try:
                parsed: Any = json.loads(raw)
            except ValueError:
                parsed = raw.decode(errors="replace")
            raise SynapseError(
                f"{method} {path} -> {err.code}: {parsed}", status=err.code, body=parsed
            ) from None
        result = json.loads(raw) if raw else {}
        if not isinstance(result, dict):
            raise SynapseError(f"{method} {path}: expected a JSON object, got {result!r}")
        return result

    # -- config ----------------------------------------------------------

    def _answers(self) -> bool:
        try:
            self.request("GET", "/_matrix/client/versions")
        except (OSError, SynapseError):
            return False
        return True

    def _read_config(self) -> dict[str, Any]:
        loaded = yaml.safe_load(self.config_path.read_text())
        return loaded if isinstance(loaded, dict) else {}

    def _generate_config(self) -> None:
        subprocess.run(  # noqa: S603 - fixed argv, our own interpreter
            [
                sys.executable,
                "-m",
                "synapse.app.homeserver",
                "--server-name",
                self.server_name,
                "--config-path",
                str(self.config_path),
                "--generate-config",
                "--report-stats=no",
                "--data-directory",
                str(self.base_dir / "data"),
                "--config-directory",
                str(self.base_dir),
            ],
            cwd=self.base_dir,
            check=True,
            capture_output=True,
        )

    def _write_config(self) -> None:
        """Apply our settings over the generated config; safe to run on every start."""
        config = self._read_config()
        config.pop("pid_file", None)  # only used when daemonizing, and stale after a kill
        config.update(
            {
                "server_name": self.server_name,
                "public_baseurl": self.base_url + "/",
                "listeners": [
                    {
                        "port": self.port,
                        "bind_addresses": ["127.0.0.1"],
                        "type": "http",
                        "tls": False,
                        "x_forwarded": False,
                        "resources": [{"names": ["client"], "compress": False}],
                    }
                ],
                "database": {
                    "name": "sqlite3",
                    "args": {"database": str(self.base_dir / "data" / "homeserver.db")},
                },
                "registration_shared_secret": self.registration_shared_secret,
                "enable_registration": False,
                "report_stats": False,
                "trusted_key_servers": [],
                "suppress_key_server_warning": True,
                "federation_domain_whitelist": [],
                "bcrypt_rounds": 4,
                "presence": {"enabled": False},
                "url_preview_enabled": False,
                "enable_metrics": False,
                "user_directory": {"enabled": False},
                "enable_media_repo": True,
                "max_upload_size": "50M",
                **ratelimit_overrides(),
            }
        )
        log_config = Path(str(config.get("log_config", self.base_dir / "log.config")))
        config["log_config"] = str(log_config)
        self._write_log_config(log_config)
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))

    def _write_log_config(self, path: Path) -> None:
        """WARNING and above to stderr, which start() sends to synapse.log."""
        log: dict[str, Any] = {}
        if path.exists():
            loaded = yaml.safe_load(path.read_text())
            log = loaded if isinstance(loaded, dict) else {}
        log.setdefault("version", 1)
        log["formatters"] = {
            "precise": {"format": "%(asctime)s - %(name)s - %(levelname)s - %(message)s"}
        }
        log["handlers"] = {
            "console": {"class": "logging.StreamHandler", "formatter": "precise"},
        }
        log["loggers"] = {"synapse.storage.SQL": {"level": "WARNING"}}
        log["root"] = {"level": "WARNING", "handlers": ["console"]}
        log["disable_existing_loggers"] = False
        path.write_text(yaml.safe_dump(log, sort_keys=False))


def _listener_port(config: dict[str, Any]) -> int | None:
    """The port of the first listener in an existing config, to keep it across runs."""
    for listener in config.get("listeners") or []:
        if isinstance(listener, dict) and isinstance(listener.get("port"), int):
            return int(listener["port"])
    return None
