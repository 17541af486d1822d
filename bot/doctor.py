"""``socialjour doctor``: check a live installation end to end and say what to fix.

Each check prints one line, ``OK``, ``WARN`` or ``FAIL``, and for the last two a
``fix:`` line an operator can act on. Nothing is changed: the doctor only reads (the
database, ``data_dir``, the homeserver with the bot's stored session, the seal key) and
asks the outside services whether they accept the configured credentials. It may run
beside the running bot; it uses the bot's access token, never logs in itself.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from urllib.parse import quote

import aiohttp
import aiosmtplib

from bot import crosssigning
from config import ConfigError, Settings, load_settings

__all__ = ["Check", "Doctor", "run_doctor"]

Status = Literal["OK", "WARN", "FAIL"]
#: A seal certificate that runs out sooner than this is a warning.
EXPIRY_WARNING = timedelta(days=30)
HTTP_TIMEOUT = 10.0
SMTP_TIMEOUT = 10.0


@dataclass(frozen=True)
class Check:
    """One finding: what was checked, how it went, and (unless OK) what to do."""

    name: str
    status: Status
    detail: str
    fix: str = ""

    def lines(self) -> list[str]:
        out = [f"{self.status:<4} {self.name}: {self.detail}"]
        if self.fix and self.status != "OK":
            out.append(f"     fix: {self.fix}")
        return out


def _ok(name: str, detail: str) -> Check:
    return Check(name, "OK", detail)


def _warn(name: str, detail: str, fix: str) -> Check:
    return Check(name, "WARN", detail, fix)


def _fail(name: str, detail: str, fix: str) -> Check:
    return Check(name, "FAIL", detail, fix)


class Doctor:
    """The checks over one loaded configuration; :meth:`run` returns every finding."""

    def __init__(
        self, settings: Settings, *, config_label: str, admin_token: str | None = None
    ) -> None:
        self.settings = settings
        self.config_label = config_label
        self.admin_token = admin_token
        self.homeserver = settings.matrix.homeserver
        self.user_id = settings.matrix.user_id
        self.token: str | None = None
        self.device_id: str | None = None
        self._http: aiohttp.ClientSession | None = None

    async def run(self) -> list[Check]:
        checks: list[Check] = []
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=HTTP_TIMEOUT))
        try:
            checks.append(await self.database())
            homeserver = await self.homeserver_reachable()
            checks.append(homeserver)
            if homeserver.status == "OK":
                session = await self.session()
                checks.append(session)
                if session.status == "OK":
                    checks.append(await self.rate_limit())
                    checks.append(await self.cross_signing())
                    checks.extend(await self.rooms())
            checks.extend(await self.seal())
            checks.extend(await self.email())
            checks.extend(await self.phone())
        finally:
            await self._http.close()
        return checks

    # -- helpers -------------------------------------------------------------------

    async def _json(
        self, method: str, url: str, *, token: str | None = None, body: Any = None
    ) -> tuple[int, Any]:
        assert self._http is not None
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with self._http.request(method, url, headers=headers, json=body) as resp:
            try:
                return resp.status, await resp.json(content_type=None)
            except ValueError:
                return resp.status, None

    def _client(self, path: str) -> str:
        return f"{self.homeserver}/_matrix/client/v3{path}"

    # -- the database --------------------------------------------------------------

    async def database(self) -> Check:
        from storage import current_revision, head_revision
        from storage.migrate import alembic_config

        name = "database"
        upgrade = f"socialjour db upgrade --config {self.config_label}"
        try:
            found = await current_revision(self.settings.storage.database_url)
        except Exception as exc:
            return _fail(
                name,
                f"cannot reach it ({type(exc).__name__})",
                "check storage.database_url, that the server runs and accepts this user",
            )
        head = head_revision()
        if found == head:
            return _ok(name, f"reachable, migrated to the newest schema ({head})")
        if found is None:
            return _fail(name, f"not migrated (this version needs {head})", f"run `{upgrade}`")
        from alembic.script import ScriptDirectory
        from alembic.util import CommandError

        try:
            known = ScriptDirectory.from_config(alembic_config()).get_revision(found)
        except CommandError:
            known = None
        if known is None:
            return _fail(
                name,
                f"at migration {found}, newer than this version knows (newest {head})",
                "install the Socialjour version that migrated it",
            )
        return _fail(name, f"at migration {found}, this version needs {head}", f"run `{upgrade}`")

    # -- Matrix --------------------------------------------------------------------

    async def homeserver_reachable(self) -> Check:
        name = "homeserver"
        try:
            status, answer = await self._json("GET", f"{self.homeserver}/_matrix/client/versions")
        except (aiohttp.ClientError, TimeoutError) as exc:
            return _fail(
                name,
                f"{self.homeserver} does not answer ({type(exc).__name__})",
                "check matrix.homeserver, DNS, the firewall and that Synapse runs",
            )
        if status != 200 or not isinstance(answer, dict) or "versions" not in answer:
            return _fail(
                name,
                f"{self.homeserver}/_matrix/client/versions answered {status}",
                "matrix.homeserver must be the client API's base URL (no path)",
            )
        return _ok(name, f"{self.homeserver} answers (Matrix {answer['versions'][-1]})")

    async def session(self) -> Check:
        name = "bot session"
        data_dir = self.settings.storage.data_dir
        try:
            stored = json.loads((data_dir / "session.json").read_text())
            self.token, self.device_id = stored["access_token"], stored["device_id"]
        except (OSError, ValueError, KeyError):
            return _fail(
                name,
                f"no stored session in {data_dir / 'session.json'}",
                "start the bot once (socialjour run): it logs in with matrix.password; "
                "or restore data_dir from a backup",
            )
        status, answer = await self._json("GET", self._client("/account/whoami"), token=self.token)
        if status != 200 or not isinstance(answer, dict):
            return _fail(
                name,
                f"the stored access token is refused ({status})",
                "the bot logs in again on the same device at its next start: make sure "
                "matrix.password is set, then restart it",
            )
        if answer.get("user_id") != self.user_id:
            return _fail(
                name,
                f"the stored session is {answer.get('user_id')}, not {self.user_id}",
                "data_dir belongs to another bot account: point storage.data_dir at this one's",
            )
        store = data_dir / "crypto" / f"{self.user_id}_{self.device_id}.db"
        if not store.is_file():
            return _fail(
                name,
                f"the E2EE store of device {self.device_id} is missing ({store})",
                "restore data_dir from a backup (socialjour restore); otherwise the bot "
                "makes a new device and cannot read older encrypted messages",
            )
        return _ok(name, f"logged in as {self.user_id}, device {self.device_id}")

    async def rate_limit(self) -> Check:
        name = "rate limit"
        quoted = quote(self.user_id, safe="")
        url = f"{self.homeserver}/_synapse/admin/v1/users/{quoted}/override_ratelimit"
        command = (
            f'curl -X POST -H "Authorization: Bearer $ADMIN_TOKEN" '
            f"-d '{{\"messages_per_second\": 0, \"burst_count\": 0}}' '{url}'"
        )
        why = "a room per case hits Synapse's stock limits and slows the bot to seconds a message"
        token = self.admin_token or self.token
        status, answer = await self._json("GET", url, token=token)
        if status == 200 and isinstance(answer, dict):
            if answer.get("messages_per_second") == 0 and answer.get("burst_count") == 0:
                return _ok(name, f"{self.user_id} has no rate limit (admin override)")
            if not answer:
                return _warn(name, f"no override for {self.user_id}: {why}", command)
            return _warn(name, f"{self.user_id} is still limited ({answer})", command)
        how = (
            "the bot is not a Synapse admin"
            if self.admin_token is None
            else f"the admin token was refused ({status})"
        )
        return _warn(
            name,
            f"cannot check the override: {how}",
            f"with a Synapse admin's token: {command} "
            "(then check with `socialjour doctor --admin-token-env ADMIN_TOKEN`)",
        )

    async def cross_signing(self) -> Check:
        name = "cross-signing"
        body: dict[str, Any] = {"device_keys": {self.user_id: []}}
        status, answer = await self._json(
            "POST", self._client("/keys/query"), token=self.token, body=body
        )
        if status != 200 or not isinstance(answer, dict):
            return _fail(name, f"keys/query answered {status}", "check the homeserver's log")
        found = crosssigning.evaluate_keys_query(answer, self.user_id)
        restart = "restart the bot: it uploads its keys and signs its device at every start"
        if found.master_key is None:
            return _fail(name, "the bot has no cross-signing identity on the server", restart)
        local = await asyncio.to_thread(self._local_master_key)
        if local is not None and local != found.master_key:
            return _fail(
                name,
                "the server's master key is not the one sealed in data_dir/keys",
                "data_dir is not this account's, or its keys were replaced: restore "
                "data_dir from a backup; as a last resort reset the identity (Element users "
                "then see a changed identity and must accept it)",
            )
        if self.device_id not in found.cross_signed_devices:
            return _fail(
                name,
                f"device {self.device_id} is not signed by the bot's self-signing key "
                "(Element leaves unverified devices out of encrypted rooms)",
                restart,
            )
        return _ok(name, f"device {self.device_id} is signed by the bot's self-signing key")

    def _local_master_key(self) -> str | None:
        """The master key sealed in ``data_dir/keys`` (as the bot derives its key), if any."""
        keys_dir = self.settings.storage.data_dir / "keys"
        sealed, salt_file = keys_dir / "cross_signing.sealed", keys_dir / "cross_signing.salt"
        try:
            secret = self.settings.matrix.store_key or (keys_dir / "store.key").read_text().strip()
            salt = salt_file.read_text().strip().encode()
            key = crosssigning.derive_key(secret, salt=salt)
            return crosssigning.load_keys(sealed, key).master_public
        except (OSError, crosssigning.CrossSigningError):
            return None

    async def rooms(self) -> list[Check]:
        aliases = [("duty room", self.settings.duty.room_alias)] + [
            (f"intake room {m.id}", m.intake_room_alias) for m in self.settings.municipalities
        ]
        return [await self._room(name, alias) for name, alias in aliases]

    async def _room(self, name: str, alias: str) -> Check:
        start = "start the bot: it creates the room and invites the configured members"
        status, answer = await self._json(
            "GET", self._client(f"/directory/room/{quote(alias, safe='')}"), token=self.token
        )
        if status != 200 or not isinstance(answer, dict) or "room_id" not in answer:
            return _fail(name, f"{alias} does not resolve ({status})", start)
        room_id = answer["room_id"]
        base = f"/rooms/{quote(room_id, safe='')}/state"
        enc_status, encryption = await self._json(
            "GET", self._client(f"{base}/m.room.encryption/"), token=self.token
        )
        if enc_status == 403:
            return _fail(
                name,
                f"{alias}: the bot is not in the room",
                "invite the bot (as a room admin in Element), or remove the alias so the "
                "bot creates a new room",
            )
        if enc_status != 200 or not (encryption or {}).get("algorithm"):
            return _fail(
                name,
                f"{alias} is not encrypted",
                "encryption cannot be turned on for what was already said: remove the "
                "alias and restart the bot, which creates an encrypted room",
            )
        _, rules = await self._json(
            "GET", self._client(f"{base}/m.room.join_rules/"), token=self.token
        )
        rule = (rules or {}).get("join_rule") if isinstance(rules, dict) else None
        if rule != "invite":
            return _fail(
                name,
                f"{alias} lets people in without an invitation (join rule {rule})",
                "in Element: Room settings > Security & Privacy > Access: Private (invite only)",
            )
        return _ok(name, f"{alias}: encrypted, invite only")

    # -- signing -------------------------------------------------------------------

    async def seal(self) -> list[Check]:
        signing = self.settings.signing
        if signing.seal_pkcs12 is None and signing.pkcs11 is None:
            return [
                _warn(
                    "seal key",
                    "no seal key configured: decisions cannot be signed",
                    "set signing.seal_pkcs12 (and seal_pkcs12_password) or [signing.pkcs11]",
                )
            ]
        checks = [await asyncio.to_thread(self._seal_key)]
        if signing.tsa_url:
            checks.append(await self._tsa(signing.tsa_url))
        return checks

    def _seal_key(self) -> Check:
        from signing.seal import SealError, close_signer, load_signer

        name = "seal key"
        try:
            signer = load_signer(self.settings.signing)
        except SealError as exc:
            return _fail(
                name,
                str(exc),
                "check signing.seal_pkcs12 / [signing.pkcs11] and its password or PIN",
            )
        try:
            cert = signer.signing_cert
            assert cert is not None
            until: datetime = cert.not_valid_after
            subject = cert.subject.human_friendly
        finally:
            close_signer(signer)
        left = until - datetime.now(UTC)
        renew = "order a new seal certificate and replace the key (signing.seal_pkcs12)"
        if left <= timedelta(0):
            return _fail(name, f"the certificate of {subject} expired on {until:%Y-%m-%d}", renew)
        if left < EXPIRY_WARNING:
            return _warn(
                name,
                f"the certificate of {subject} expires on {until:%Y-%m-%d} (in {left.days} days)",
                renew,
            )
        return _ok(name, f"{subject}, valid until {until:%Y-%m-%d}")

    async def _tsa(self, url: str) -> Check:
        from pyhanko.sign.timestamps import HTTPTimeStamper

        name = "time-stamping authority"
        digest = hashlib.sha256(b"socialjour doctor").digest()
        try:
            await HTTPTimeStamper(url, timeout=int(HTTP_TIMEOUT)).async_timestamp(digest, "sha256")
        except Exception as exc:
            return _fail(
                name,
                f"{url} gives no time-stamp ({type(exc).__name__})",
                "check signing.tsa_url and that this host may reach it; without it, "
                "signing fails (or remove tsa_url for PAdES B-B)",
            )
        return _ok(name, f"{url} answers")

    # -- notification channels -----------------------------------------------------

    async def email(self) -> list[Check]:
        s = self.settings.notify.email
        if s is None:
            return []
        from bot.notifiers import EmailNotifier

        name = "SMTP"
        where = f"{s.host}:{s.port}"
        context: ssl.SSLContext = EmailNotifier(s).tls_context()
        smtp = aiosmtplib.SMTP(
            hostname=s.host,
            port=s.port,
            use_tls=s.tls,
            start_tls=False,
            tls_context=context,
            timeout=SMTP_TIMEOUT,
        )
        try:
            await smtp.connect()
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            return [
                _fail(
                    name,
                    f"cannot connect to {where} ({type(exc).__name__})",
                    "check notify.email.host/port and the firewall",
                )
            ]
        try:
            await smtp.ehlo()
            if s.starttls and not s.tls:
                if not smtp.supports_extension("starttls"):
                    return [
                        _fail(
                            name,
                            f"{where} offers no STARTTLS",
                            "set the right port, or tls = true for 465",
                        )
                    ]
                await smtp.starttls()
                await smtp.ehlo()
            if s.username:
                await smtp.login(s.username, s.password or "")
        except aiosmtplib.SMTPAuthenticationError as exc:
            return [
                _fail(
                    name,
                    f"{where} refused the login ({exc.code})",
                    "fix notify.email.username / notify.email.password",
                )
            ]
        except (aiosmtplib.SMTPException, OSError, TimeoutError, ssl.SSLError) as exc:
            return [
                _fail(
                    name,
                    f"{where}: {type(exc).__name__}",
                    "check notify.email (starttls, tls, ca_cert for a private CA)",
                )
            ]
        finally:
            try:
                await smtp.quit()
            except (aiosmtplib.SMTPException, OSError, TimeoutError):
                smtp.close()
        login = "login accepted" if s.username else "no login configured"
        return [_ok(name, f"{where}: {login}")]

    async def phone(self) -> list[Check]:
        s = self.settings.notify.phone
        if s is None:
            return []
        assert self._http is not None
        name = "SMS provider"
        auth = base64.b64encode(f"{s.username}:{s.password}".encode()).decode()
        try:
            async with self._http.get(
                f"{s.url.rstrip('/')}/me", headers={"Authorization": f"Basic {auth}"}
            ) as resp:
                status = resp.status
                answer = await resp.json(content_type=None) if status == 200 else None
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            return [
                _fail(
                    name,
                    f"{s.url} does not answer ({type(exc).__name__})",
                    "check notify.phone.url",
                )
            ]
        if status in (401, 403):
            return [
                _fail(
                    name,
                    f"{s.provider} refused the API credentials ({status})",
                    "fix notify.phone.username / notify.phone.password (the API "
                    "username and password from the provider's dashboard)",
                )
            ]
        if status != 200:
            return [_fail(name, f"{s.url}/me answered {status}", "check notify.phone.url")]
        balance = answer.get("balance") if isinstance(answer, dict) else None
        if isinstance(balance, int | float) and balance <= 0:
            return [
                _warn(
                    name,
                    f"{s.provider} accepts the credentials, but the account has no credit",
                    "top up the account: SMS and calls fail without credit",
                )
            ]
        return [_ok(name, f"{s.provider} accepts the credentials")]


def _load(path: str) -> tuple[Settings | None, list[Check]]:
    try:
        settings = load_settings(path)
    except ConfigError as exc:
        return None, [
            _fail("config", str(problem), "fix the file (socialjour check-config lists it all)")
            for problem in exc.problems
        ]
    checks = [_ok("config", f"{path} is valid")]
    if settings.warnings:
        checks.append(
            _warn(
                "config",
                f"{len(settings.warnings)} warning(s)",
                f"see `socialjour check-config --config {path}`",
            )
        )
    return settings, checks


def run_doctor(
    config_path: str,
    *,
    admin_token_env: str | None = None,
    out: Callable[[str], None] = print,
    environ: dict[str, str] | None = None,
) -> int:
    """Print every finding; 1 if any FAILed, else 0."""
    import os

    env = os.environ if environ is None else environ
    settings, checks = _load(config_path)
    if settings is not None:
        token = env.get(admin_token_env) if admin_token_env else None
        doctor = Doctor(settings, config_label=config_path, admin_token=token)
        checks += asyncio.run(doctor.run())
    for check in checks:
        for line in check.lines():
            out(line)
    failed = sum(check.status == "FAIL" for check in checks)
    warned = sum(check.status == "WARN" for check in checks)
    out(f"{len(checks)} checks: {failed} failed, {warned} warning(s)")
    return 1 if failed else 0
