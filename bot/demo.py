"""``socialjour demo``: a whole installation on this machine, for trying it with Element.

A Synapse on loopback with SQLite, demo users with generated passwords, a
configuration with two municipalities and the bot itself. State is kept in one
folder, so a second run finds the same users, rooms and encryption keys.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import socket
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from aiohttp import web

from bot.synapse_local import LocalSynapse, free_port
from config import Settings, load_settings
from signing.devpki import DevPki, create_dev_pki
from signing.devtsa import create_tsa_app

BOT = "socialjour"


@dataclass(frozen=True)
class DemoUser:
    localpart: str
    role: str


DEMO_USERS = (
    DemoUser("anna", "socialsekreterare i jouren, jourens samordnare (lead)"),
    DemoUser("bo", "socialsekreterare i jouren"),
    DemoUser("dag", "ordförande, socialnämnden i Skövde"),
    DemoUser("disa", "vice ordförande (förordnad ledamot), socialnämnden i Skövde"),
    DemoUser("erik", "ordförande, socialnämnden i Mariestad"),
    DemoUser("cecilia", "mottagningen i Skövde"),
    DemoUser("maja", "mottagningen i Mariestad"),
)


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _pick(port: int) -> int:
    return port if port and _port_free(port) else free_port()


def prepare(
    folder: Path, *, synapse_port: int = 8008, web_port: int = 8080, admin_port: int = 9090
) -> tuple[LocalSynapse, Path, dict[str, str]]:
    """Start Synapse, create users (first run only) and write the bot's config."""
    folder = folder.resolve()
    folder.mkdir(parents=True, exist_ok=True)
    synapse_dir = folder / "synapse"
    first_run = not (synapse_dir / "homeserver.yaml").exists()
    synapse = LocalSynapse(synapse_dir, port=_pick(synapse_port) if first_run else None)
    synapse.start()
    users_file = folder / "users.json"
    passwords: dict[str, str] = json.loads(users_file.read_text()) if users_file.exists() else {}
    for localpart in [BOT, *(u.localpart for u in DEMO_USERS)]:
        if localpart not in passwords:
            passwords[localpart] = secrets.token_urlsafe(9)
            synapse.register_user(localpart, passwords[localpart])
            users_file.write_text(json.dumps(passwords, indent=2))
            users_file.chmod(0o600)
    (folder / "bot.password").write_text(passwords[BOT])
    (folder / "bot.password").chmod(0o600)
    pki = create_dev_pki(folder / "pki")
    tsa_port = free_port()
    config = folder / "socialjour.toml"
    web = _pick(web_port)
    admin = _pick(admin_port)
    while admin == web:  # both asked for "any free port" and got the same
        admin = free_port()
    config.write_text(_config_text(synapse, web, pki, tsa_port, admin))
    return synapse, config, passwords


def _term(today: date) -> tuple[date, date]:
    """The committee's current term of office: four years from the January after an
    election year (2023-2026, 2027-2030, ...), when the demo's appointments hold."""
    start = today.year - (today.year - 2023) % 4
    return date(start, 1, 1), date(start + 3, 12, 31)


def _config_text(
    synapse: LocalSynapse, web_port: int, pki: DevPki, tsa_port: int, admin_port: int
) -> str:
    s = synapse.server_name
    term_start, term_end = _term(datetime.now(ZoneInfo("Europe/Stockholm")).date())
    # The appointments (LVU 6 § andra stycket, LVM 13 §): without one nobody is asked.
    elected = f"""appointed_by = "Kommunfullmäktige"
  appointed_on = {term_start.isoformat()}
  minutes_ref = "§ 4"
  valid_until = {term_end.isoformat()}"""
    appointed = f"""appointed_by = "Socialnämnden"
  appointed_on = {term_start.isoformat()}
  minutes_ref = "§ 12"
  valid_until = {term_end.isoformat()}"""

    def uid(localpart: str) -> str:
        return f"@{localpart}:{s}"

    return f"""# Written by `socialjour demo`; regenerated on every demo start.
[matrix]
homeserver = "{synapse.base_url}"
user_id = "{uid(BOT)}"
password = {{ file = "bot.password" }}
device_name = "Socialjour (demo)"

[storage]
data_dir = "data"
database_url = "sqlite+aiosqlite:///data/socialjour.db"

[web]
listen = "127.0.0.1:{web_port}"
public_base_url = "http://127.0.0.1:{web_port}"
admin_listen = "127.0.0.1:{admin_port}"

[signing]
# A development CA, seal key and time-stamping authority made by the demo.
auth_methods = ["matrix-code"]
link_ttl = "12h"
seal_pkcs12 = "{pki.seal_pkcs12}"
seal_pkcs12_password = {{ file = "{pki.seal_password_file}" }}
tsa_url = "http://127.0.0.1:{tsa_port}/"
trust_roots = ["{pki.ca_cert}"]

[duty]
room_alias = "#socialjour:{s}"
members = ["{uid("anna")}", "{uid("bo")}"]
leads = ["{uid("anna")}"]
language = "sv"

[[municipalities]]
id = "skovde"
name = "Skövde kommun"
intake_room_alias = "#mottagning-skovde:{s}"
intake_members = ["{uid("cecilia")}"]

  [[municipalities.decision_makers]]
  user_id = "{uid("dag")}"
  name = "Dag Demo"
  role = "ordförande"
  {elected}

  [[municipalities.decision_makers]]
  user_id = "{uid("disa")}"
  name = "Disa Demo"
  role = "förordnad ledamot"
  title = "vice ordförande"
  {appointed}

[[municipalities]]
id = "mariestad"
name = "Mariestads kommun"
intake_room_alias = "#mottagning-mariestad:{s}"
intake_members = ["{uid("maja")}"]

  [[municipalities.decision_makers]]
  user_id = "{uid("erik")}"
  name = "Erik Demo"
  role = "ordförande"
  {elected}
"""


def banner(
    synapse: LocalSynapse, passwords: dict[str, str], config: Path, settings: Settings
) -> str:
    width = max(len(u.localpart) for u in DEMO_USERS)
    admin = f"http://127.0.0.1:{settings.web.admin_port}"
    lines = [
        "",
        "Socialjour demo is running.",
        "",
        f"  Homeserver:  {synapse.base_url}",
        f"  Config:      {config}",
        f"  Admin:       {admin}  ({admin}/healthz, {admin}/metrics)",
        "",
        "  Log in with Element Web or Element Desktop: choose 'Edit' under the",
        f"  homeserver, enter {synapse.base_url}, then one of these users:",
        "",
    ]
    for user in DEMO_USERS:
        lines.append(f"    {user.localpart:<{width}}  {passwords[user.localpart]:<14}  {user.role}")
    lines += [
        "",
        "  As anna or bo: accept the invitation to the room 'Socialjour' and type !ny.",
        "  Fill in the report and type !skicka: dag (on call for Skövde) gets a link in",
        "  a direct room; open it in a browser on this machine, ask for the code in",
        "  Element, and sign. The signed PDF arrives in the case room.",
        "  Element asks you to set up secure backup for the new login: do it, so that",
        "  your device is cross-signed and Socialjour sends it its messages.",
        "",
        "  Stop with Ctrl-C. State is kept in the demo folder for the next run.",
        "",
    ]
    return "\n".join(lines)


async def _serve_tsa(pki: DevPki, url: str) -> web.AppRunner:
    """The demo's own RFC 3161 time-stamping authority, on loopback."""
    parts = urlsplit(url)
    runner = web.AppRunner(create_tsa_app(pki.tsa_cert, pki.tsa_key), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, parts.hostname, parts.port).start()
    return runner


async def _demo_main(settings: Settings, pki: DevPki) -> None:
    from bot.app import run

    assert settings.signing.tsa_url is not None
    tsa = await _serve_tsa(pki, settings.signing.tsa_url)
    try:
        await run(settings)
    finally:
        await tsa.cleanup()


def run_demo(folder: Path, *, synapse_port: int = 8008, web_port: int = 8080) -> int:
    synapse, config, passwords = prepare(folder, synapse_port=synapse_port, web_port=web_port)
    try:
        settings = load_settings(config)
        print(banner(synapse, passwords, config, settings), flush=True)
        asyncio.run(_demo_main(settings, DevPki(folder.resolve() / "pki")))
    except KeyboardInterrupt:
        pass
    finally:
        synapse.stop()
    return 0
