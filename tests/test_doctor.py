"""``socialjour doctor`` over a running installation, and the systemd unit it runs under."""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import shutil
import subprocess
import sys
import textwrap
from datetime import timedelta
from pathlib import Path

import pytest

from bot.synapse_local import LocalSynapse
from signing import devpki
from tests.bot_cli import ROOT, run_bot
from tests.components import unavailable
from tests.conftest import BotFactory, UserFactory, unique
from tests.elks_server import ElksTestServer
from tests.test_notifiers import (  # noqa: F401 - mailbox, starttls_smtp and tls are fixtures
    SMTP_PASSWORD,
    SMTP_USER,
    mailbox,
    starttls_smtp,
    tls,
)
from tests.test_notifiers import Tls as SmtpTls

UNIT = ROOT / "deploy" / "socialjour.service"
ELKS_USER, ELKS_PASSWORD = "u0123456789abcdef", "elks-secret"

#: Loaded first by the bot's Python: refuse writable-and-executable memory from here on,
#: as systemd's MemoryDenyWriteExecute=yes does, and say it did.
MDWE = """
import ctypes, os
if ctypes.CDLL(None, use_errno=True).prctl(65, 1, 0, 0, 0) == 0:  # PR_SET_MDWE
    open(os.environ["SJ_MDWE_MARK"], "a").write(f"{os.getpid()}\\n")
"""


def doctor(config: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return run_bot("doctor", "--config", str(config), *args, env=env)


def line(output: str, status: str, name: str) -> str:
    """The finding ``STATUS name: ...`` with its fix line, or fail showing all output."""
    found = re.search(rf"^{status}\s+{re.escape(name)}: .*(\n     fix: .*)?", output, re.M)
    assert found, f"no {status} {name} in:\n{output}"
    return found.group(0)


def extra_config(
    tag: str,
    *,
    pki: devpki.DevPki,
    smtp_port: int,
    cert: Path,
    elks: str,
    smtp_pw: str,
    elks_pw: str,
) -> str:
    return textwrap.dedent(f"""
        [[municipalities]]
        id = "skovde"
        name = "Skövde kommun"
        intake_room_alias = "#mottagning-skovde-{tag}:localhost"

        [signing]
        seal_pkcs12 = "{pki.seal_pkcs12}"
        seal_pkcs12_password = "{pki.seal_password()}"

        [notify.email]
        host = "127.0.0.1"
        port = {smtp_port}
        starttls = true
        username = "{SMTP_USER}"
        password = "{smtp_pw}"
        from = "jour@example.org"
        ca_cert = "{cert}"

        [notify.phone]
        url = "{elks}"
        username = "{ELKS_USER}"
        password = "{elks_pw}"
        from = "+46700000000"
    """)


@pytest.mark.integration
async def test_doctor_passes_a_healthy_installation_and_names_the_fix_for_each_break(
    synapse: LocalSynapse,
    make_user: UserFactory,
    make_bot: BotFactory,
    starttls_smtp: int,  # noqa: F811 - STARTTLS required, then a login (only over TLS)
    tls: SmtpTls,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    anna = await make_user("anna")
    pki = devpki.create_dev_pki(tmp_path / "pki")
    async with ElksTestServer(ELKS_USER, ELKS_PASSWORD) as elks:
        settings = dict(pki=pki, smtp_port=starttls_smtp, cert=tls.cert, elks=elks.url)
        extra = extra_config(
            anna.localpart, smtp_pw=SMTP_PASSWORD, elks_pw=ELKS_PASSWORD, **settings
        )
        bot = make_bot(members=[anna.user_id], extra=extra, start=False)
        # The bot runs under the kernel's write-xor-execute rule, as the unit asks.
        wrapper = tmp_path / "mdwe"
        wrapper.mkdir()
        (wrapper / "sitecustomize.py").write_text(MDWE)
        mark = tmp_path / "mdwe.pids"
        bot.process.env.update(PYTHONPATH=str(wrapper), SJ_MDWE_MARK=str(mark))
        await asyncio.to_thread(bot.process.start)
        assert bot.process.proc is not None
        assert str(bot.process.proc.pid) in mark.read_text().split()
        env = {k: v for k, v in bot.process.env.items() if k not in ("PYTHONPATH",)}

        healthy = await asyncio.to_thread(doctor, bot.config_path, env)
        out = healthy.stdout
        assert healthy.returncode == 0, out + healthy.stderr
        for name in (
            "config",
            "database",
            "homeserver",
            "bot session",
            "cross-signing",
            "duty room",
            "intake room skovde",
            "seal key",
            "SMTP",
            "SMS provider",
        ):
            line(out, "OK", name)
        assert "encrypted, invite only" in line(out, "OK", "duty room")
        # The bot is no Synapse admin: the doctor says what an admin must run.
        assert "override_ratelimit" in line(out, "WARN", "rate limit")
        assert any(r.path.endswith("/me") and r.status == 200 for r in elks.requests)

        # With an admin's token it sees the override, once it is set.
        admin_pw = secrets.token_urlsafe(12)
        admin_local = unique("admin")
        synapse.register_user(admin_local, admin_pw, admin=True)
        admin_token = synapse.login(admin_local, admin_pw)["access_token"]
        synapse.override_ratelimit(admin_token, bot.user_id)
        with_admin = await asyncio.to_thread(
            doctor,
            bot.config_path,
            {**env, "SJ_ADMIN": admin_token},
            "--admin-token-env",
            "SJ_ADMIN",
        )
        assert with_admin.returncode == 0, with_admin.stdout
        line(with_admin.stdout, "OK", "rate limit")

        # Broken: a wrong SMTP password, a wrong SMS password, an expired seal
        # certificate and a database nobody migrated.
        real_now = devpki._now()
        monkeypatch.setattr(devpki, "_now", lambda: real_now - timedelta(days=800))
        expired = devpki.create_dev_pki(tmp_path / "pki-expired")
        monkeypatch.undo()
        broken = extra_config(
            anna.localpart,
            smtp_pw="wrong",
            elks_pw="wrong",
            **{**settings, "pki": expired},
        )
        broken_config = bot.folder / "broken.toml"
        text = bot.config_path.read_text().split("\n[[municipalities]]")[0]
        text = text.replace(
            "sqlite+aiosqlite:///data/socialjour.db", "sqlite+aiosqlite:///fresh/empty.db"
        )
        broken_config.write_text(text.replace(extra, "") + broken)
        sick = await asyncio.to_thread(doctor, broken_config, env)
        out = sick.stdout
        assert sick.returncode == 1, out + sick.stderr
        assert "notify.email.password" in line(out, "FAIL", "SMTP")
        assert "notify.phone.password" in line(out, "FAIL", "SMS provider")
        assert "expired" in line(out, "FAIL", "seal key")
        assert "socialjour db upgrade --config" in line(out, "FAIL", "database")
        line(out, "OK", "cross-signing")  # the rest is still checked

        # A seal certificate that runs out in ten days: a warning, not a failure.
        monkeypatch.setattr(devpki, "_LEAF_LIFETIME", timedelta(days=10))
        soon = devpki.create_dev_pki(tmp_path / "pki-soon")
        monkeypatch.undo()
        soon_config = bot.folder / "soon.toml"
        soon_config.write_text(
            bot.config_path.read_text()
            .replace(str(pki.seal_pkcs12), str(soon.seal_pkcs12))
            .replace(pki.seal_password(), soon.seal_password())
        )
        warned = await asyncio.to_thread(doctor, soon_config, env)
        assert warned.returncode == 0, warned.stdout
        assert "in 9 days" in line(warned.stdout, "WARN", "seal key") or "in 10 days" in line(
            warned.stdout, "WARN", "seal key"
        )
        assert "order a new seal certificate" in line(warned.stdout, "WARN", "seal key")


def test_doctor_on_an_invalid_config_fails_with_the_problem(tmp_path: Path) -> None:
    config = tmp_path / "socialjour.toml"
    config.write_text('[matrix]\nhomeserver = "nope"\n')
    done = doctor(config, dict(os.environ))
    assert done.returncode == 1
    assert "FAIL config" in done.stdout and "matrix.homeserver" in done.stdout


# -- the systemd unit ----------------------------------------------------------------------


def unit_keys(text: str) -> dict[str, list[str]]:
    """``Section.Key`` -> every value it is given (systemd allows repeats)."""
    keys: dict[str, list[str]] = {}
    section = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if not stripped or stripped.startswith(("#", ";")):
            continue
        if stripped.startswith("["):
            section = stripped.strip("[]")
            continue
        key, _, value = stripped.partition("=")
        keys.setdefault(f"{section}.{key.strip()}", []).append(value.strip())
    return keys


def test_the_systemd_unit_is_hardened_and_systemd_accepts_it(tmp_path: Path) -> None:
    text = UNIT.read_text()
    keys = unit_keys(text)
    expected = {
        "Service.User": "socialjour",
        "Service.ExecStart": (
            "/opt/socialjour/.venv/bin/socialjour run --config /etc/socialjour/config.toml"
        ),
        "Service.Restart": "on-failure",
        "Service.KillSignal": "SIGTERM",
        "Service.ProtectSystem": "strict",
        "Service.ProtectHome": "yes",
        "Service.PrivateTmp": "yes",
        "Service.NoNewPrivileges": "yes",
        "Service.ReadWritePaths": "/var/lib/socialjour",
        "Service.ProtectKernelTunables": "yes",
        "Service.RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
        "Service.CapabilityBoundingSet": "",
        "Service.LockPersonality": "yes",
        "Service.MemoryDenyWriteExecute": "yes",
    }
    for key, value in expected.items():
        assert keys.get(key) == [value], key
    assert int(keys["Service.TimeoutStopSec"][0]) >= 30
    assert keys["Service.Type"][0] in ("simple", "notify")

    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        unavailable("systemd-analyze is not installed (apt install systemd)")
    # verify wants ExecStart's program to exist: point it at this checkout's script.
    script = Path(sys.executable).with_name("socialjour")
    copy = tmp_path / "socialjour.service"
    copy.write_text(text.replace("/opt/socialjour/.venv/bin/socialjour", str(script)))
    done = subprocess.run(
        [analyze, "verify", str(copy)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "socialjour.service" not in done.stderr, done.stderr  # no warning about the unit
