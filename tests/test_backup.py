"""``socialjour backup`` / ``restore``: an encrypted snapshot of a running installation
that a fresh machine continues from, and that refuses a wrong passphrase or a change."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import sqlite3
import subprocess
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.synapse_local import LocalSynapse
from storage import current_revision, head_revision, upgrade
from tests.bot_cli import OFFLINE_CONFIG, run_bot
from tests.conftest import BotFactory, UserFactory
from tests.matrix_helpers import BotProcess, free_port, write_bot_config
from tests.storage_fixtures import postgres_database
from tests.test_bot_matrix import join_duty_room
from tests.test_inbox_matrix import start_lvu6
from tests.test_report_matrix import MUNICIPALITIES

PASSPHRASE_VAR = "SJ_TEST_BACKUP_PASSPHRASE"


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m bot ARGS`` as an operator's shell runs it, with ``env`` added."""
    return run_bot(*args, env={**os.environ, **(env or {})}, timeout=180)


# -- a small installation, no Synapse ----------------------------------------------------

CONFIG = OFFLINE_CONFIG + 'database_url = "sqlite+aiosqlite:///data/socialjour.db"\n'


def installation(folder: Path, *, revision: str = "head") -> tuple[Path, str]:
    """A config, a migrated database, a key file with a marker and a live crypto store."""
    folder.mkdir(parents=True)
    config = folder / "socialjour.toml"
    config.write_text(textwrap.dedent(CONFIG))
    asyncio.run(
        upgrade(f"sqlite+aiosqlite:///{folder / 'data' / 'socialjour.db'}", revision=revision)
    )
    marker = "marker-" + secrets.token_hex(8)
    (folder / "data" / "keys").mkdir()
    (folder / "data" / "keys" / "links.key").write_text(marker + "\n")
    (folder / "data" / "crypto").mkdir()
    store = sqlite3.connect(folder / "data" / "crypto" / "bot_DEVICE.db")
    store.execute("PRAGMA journal_mode=WAL")
    store.execute("CREATE TABLE olm (pickle TEXT)")
    store.execute("INSERT INTO olm VALUES (?)", (marker,))
    store.commit()
    store.close()
    return config, marker


def fresh_config(folder: Path) -> Path:
    folder.mkdir(parents=True)
    config = folder / "socialjour.toml"
    config.write_text(textwrap.dedent(CONFIG))
    return config


PASS = {PASSPHRASE_VAR: "correct horse battery staple"}


def test_a_backup_is_encrypted_and_restores_every_file_with_the_passphrase(tmp_path: Path) -> None:
    config, marker = installation(tmp_path / "live")
    backup = tmp_path / "backup"

    made = cli("backup", "--config", str(config), "--to", str(backup),
               "--passphrase-env", PASSPHRASE_VAR, env=PASS)  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert "encrypted" in made.stdout
    # Nothing readable in the folder: not the key's marker, not a SQLite file.
    for path in backup.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert marker.encode() not in data and b"SQLite format 3" not in data, path.name

    target = fresh_config(tmp_path / "new")
    restored = cli("restore", "--config", str(target), "--from", str(backup),
                   "--passphrase-env", PASSPHRASE_VAR, env=PASS)  # fmt: skip
    assert restored.returncode == 0, restored.stderr
    data = tmp_path / "new" / "data"
    assert (data / "keys" / "links.key").read_text().strip() == marker
    with contextlib.closing(sqlite3.connect(data / "crypto" / "bot_DEVICE.db")) as store:
        assert store.execute("SELECT pickle FROM olm").fetchall() == [(marker,)]
    url = f"sqlite+aiosqlite:///{data / 'socialjour.db'}"
    assert asyncio.run(current_revision(url)) == head_revision()


def test_a_wrong_passphrase_and_a_changed_byte_are_refused_and_nothing_is_restored(
    tmp_path: Path,
) -> None:
    config, _ = installation(tmp_path / "live")
    backup = tmp_path / "backup"
    made = cli("backup", "--config", str(config), "--to", str(backup),
               "--passphrase-env", PASSPHRASE_VAR, env=PASS)  # fmt: skip
    assert made.returncode == 0, made.stderr
    target = fresh_config(tmp_path / "new")

    def restore(source: Path, passphrase: str) -> subprocess.CompletedProcess[str]:
        return cli("restore", "--config", str(target), "--from", str(source),
                   "--passphrase-env", PASSPHRASE_VAR,
                   env={PASSPHRASE_VAR: passphrase})  # fmt: skip

    wrong = restore(backup, "correct horse battery stapler")
    assert wrong.returncode == 1
    assert "wrong passphrase" in wrong.stderr
    assert not (tmp_path / "new" / "data").exists()

    # One byte changed in the middle of the archive: the checksum names it.
    tampered = tmp_path / "tampered"
    shutil.copytree(backup, tampered)
    archive = tampered / "backup.tar.enc"
    data = bytearray(archive.read_bytes())
    data[len(data) // 2] ^= 0x01
    archive.write_bytes(bytes(data))
    changed = restore(tampered, PASS[PASSPHRASE_VAR])
    assert changed.returncode == 1
    assert "checksum mismatch" in changed.stderr
    assert not (tmp_path / "new" / "data").exists()

    # Whoever changes the archive and its checksum too is stopped by the encryption.
    header = json.loads((tampered / "socialjour-backup.json").read_text())
    import hashlib

    header["archive"]["sha256"] = hashlib.sha256(bytes(data)).hexdigest()
    (tampered / "socialjour-backup.json").write_text(json.dumps(header))
    forged = restore(tampered, PASS[PASSPHRASE_VAR])
    assert forged.returncode == 1
    assert "altered" in forged.stderr
    assert not (tmp_path / "new" / "data" / "keys").exists()


def test_no_unencrypted_backup_without_no_encrypt(tmp_path: Path) -> None:
    config, marker = installation(tmp_path / "live")
    refused = cli("backup", "--config", str(config), "--to", str(tmp_path / "b1"))
    assert refused.returncode == 1
    assert "--no-encrypt" in refused.stderr
    assert not (tmp_path / "b1").exists()

    plain = cli("backup", "--config", str(config), "--to", str(tmp_path / "b2"), "--no-encrypt")
    assert plain.returncode == 0, plain.stderr
    assert "NOT encrypted" in plain.stdout
    target = fresh_config(tmp_path / "new")
    restored = cli("restore", "--config", str(target), "--from", str(tmp_path / "b2"))
    assert restored.returncode == 0, restored.stderr
    assert (tmp_path / "new" / "data" / "keys" / "links.key").read_text().strip() == marker


def test_restore_refuses_a_used_installation_unless_forced(tmp_path: Path) -> None:
    config, marker = installation(tmp_path / "live")
    backup = tmp_path / "backup"
    assert cli("backup", "--config", str(config), "--to", str(backup),
               "--passphrase-env", PASSPHRASE_VAR, env=PASS).returncode == 0  # fmt: skip
    keys = tmp_path / "live" / "data" / "keys" / "links.key"
    keys.write_text("changed since the backup\n")

    refused = cli("restore", "--config", str(config), "--from", str(backup),
                  "--passphrase-env", PASSPHRASE_VAR, env=PASS)  # fmt: skip
    assert refused.returncode == 1
    assert "not empty" in refused.stderr and "--force" in refused.stderr
    assert keys.read_text() == "changed since the backup\n"

    forced = cli("restore", "--config", str(config), "--from", str(backup),
                 "--passphrase-env", PASSPHRASE_VAR, "--force", env=PASS)  # fmt: skip
    assert forced.returncode == 0, forced.stderr
    assert keys.read_text().strip() == marker
    # What was there is kept aside, not deleted.
    (aside,) = (tmp_path / "live").glob("data.replaced-*")
    assert (aside / "keys" / "links.key").read_text() == "changed since the backup\n"


def test_a_backup_of_an_older_schema_is_migrated_after_restore(tmp_path: Path) -> None:
    config, _ = installation(tmp_path / "live", revision="0009")
    backup = tmp_path / "backup"
    assert cli("backup", "--config", str(config), "--to", str(backup),
               "--passphrase-env", PASSPHRASE_VAR, env=PASS).returncode == 0  # fmt: skip
    target = fresh_config(tmp_path / "new")
    restored = cli("restore", "--config", str(target), "--from", str(backup),
                   "--passphrase-env", PASSPHRASE_VAR, env=PASS)  # fmt: skip
    assert restored.returncode == 0, restored.stderr
    assert "schema 0009" in restored.stdout and "migrated" in restored.stdout
    url = f"sqlite+aiosqlite:///{tmp_path / 'new' / 'data' / 'socialjour.db'}"
    assert asyncio.run(current_revision(url)) == head_revision()


# -- a running bot over the real Synapse ---------------------------------------------------


@contextlib.asynccontextmanager
async def databases(backend: str) -> AsyncIterator[tuple[str | None, str | None]]:
    """(the live installation's URL, the fresh one's): None for SQLite in data_dir."""
    if backend == "sqlite":
        yield None, None
        return
    async with postgres_database() as live, postgres_database() as fresh:
        yield live, fresh


@pytest.mark.integration
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_backup_while_running_restores_into_a_fresh_installation_that_continues_the_case(
    backend: str,
    synapse: LocalSynapse,
    make_user: UserFactory,
    make_bot: BotFactory,
    tmp_path: Path,
) -> None:
    anna = await make_user("anna")
    extra = MUNICIPALITIES.format(tag=anna.localpart)
    async with databases(backend) as (live_url, fresh_url):
        bot = make_bot(members=[anna.user_id], extra=extra, database_url=live_url)
        _, _, worker = await start_lvu6(anna, await join_duty_room(anna, bot.duty_alias))
        await worker.say("Tolvan Tolvansson", "Fråga 2 av 27")

        backup = tmp_path / "backup"
        made = await asyncio.to_thread(
            cli, "backup", "--config", str(bot.config_path), "--to", str(backup),
            "--passphrase-env", PASSPHRASE_VAR, env={**bot.process.env, **PASS},
        )  # fmt: skip
        assert made.returncode == 0, made.stderr
        assert bot.process.proc is not None and bot.process.proc.poll() is None, "bot stopped"
        device = json.loads((bot.folder / "data" / "session.json").read_text())["device_id"]
        bot.process.stop()

        # A new machine: an empty folder, a new database, the same account and rooms.
        folder = tmp_path / "restored"
        port = free_port()
        config = write_bot_config(
            folder,
            synapse=synapse,
            bot_user=bot.user_id,
            duty_alias=bot.duty_alias,
            members=[anna.user_id],
            leads=[anna.user_id],
            web_port=port,
            database_url=fresh_url,
            extra=extra,
        )
        restored = await asyncio.to_thread(
            cli, "restore", "--config", str(config), "--from", str(backup),
            "--passphrase-env", PASSPHRASE_VAR, env={**bot.process.env, **PASS},
        )  # fmt: skip
        assert restored.returncode == 0, restored.stderr

        process = BotProcess(config, bot.process.env, port, folder / "bot.log")
        await asyncio.to_thread(process.start)
        try:
            # The worker's next answer is taken (the crypto store came back: the bot
            # still reads her messages) and the next question is asked.
            await worker.say("20160412-2380", "Fråga 3 av 27", timeout=60)
            session = json.loads((folder / "data" / "session.json").read_text())
            assert session["device_id"] == device
            assert "is missing; a new device is created" not in process.log_text()
        finally:
            process.stop()
