"""The ``socialjour`` command line as an operator uses it: exit codes and what it prints."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from bot.cli import main
from config import EXAMPLE_CONFIG
from tests.bot_cli import run_bot

PASSWORD_VAR = "SOCIALJOUR_MATRIX_PASSWORD"

VALID = """
[matrix]
homeserver = "http://127.0.0.1:8008"
user_id = "@socialjour:example.org"
password = { env = "SOCIALJOUR_MATRIX_PASSWORD" }

[storage]
data_dir = "data"
database_url = "sqlite+aiosqlite:///db/socialjour.db"

[web]
listen = "127.0.0.1:1"

[duty]
room_alias = "#socialjour:example.org"
members = ["@anna:example.org", "@bo:example.org"]
leads = ["@anna:example.org"]
"""

#: Two independent mistakes, far apart in the file.
TWO_MISTAKES = VALID.replace(
    'members = ["@anna:example.org", "@bo:example.org"]',
    'members = ["@anna:example.org", "@bo:example.org"]\nlanguage = "fi"',
) + textwrap.dedent(
    """
    [signing]
    link_ttl = "soon"
    """
)


def write(folder: Path, text: str, name: str = "config.toml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def run_cli(
    *args: str, env_extra: dict[str, str] | None = None, drop: tuple[str, ...] = (PASSWORD_VAR,)
) -> subprocess.CompletedProcess[str]:
    """``python -m bot ARGS`` in a child process, as a shell would run it."""
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(env_extra or {})
    return run_bot(*args, env=env)


def problem_lines(output: str, config: Path) -> list[str]:
    return [line for line in output.splitlines() if line.startswith(str(config))]


# -- check-config -----------------------------------------------------------------------


def test_check_config_accepts_the_shipped_example_when_the_password_is_set(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PASSWORD_VAR, "hunter2")
    assert main(["check-config", "--config", str(EXAMPLE_CONFIG)]) == 0
    out, err = capsys.readouterr()
    assert "OK" in out
    assert "hunter2" not in out + err


def test_check_config_without_the_password_names_the_key_and_the_variable(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(PASSWORD_VAR, raising=False)
    assert main(["check-config", "--config", str(EXAMPLE_CONFIG)]) == 1
    out, _ = capsys.readouterr()
    [line] = problem_lines(out, EXAMPLE_CONFIG)
    assert "matrix.password" in line
    assert PASSWORD_VAR in line
    assert "OK" not in out


def test_check_config_in_a_child_process_exits_with_the_right_code() -> None:
    ok = run_cli("check-config", "--config", str(EXAMPLE_CONFIG), env_extra={PASSWORD_VAR: "x"})
    assert ok.returncode == 0, ok.stderr
    missing = run_cli("check-config", "--config", str(EXAMPLE_CONFIG))
    assert missing.returncode == 1
    assert PASSWORD_VAR in missing.stdout + missing.stderr
    assert "Traceback" not in missing.stderr


def test_check_config_reports_every_mistake_with_its_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PASSWORD_VAR, "secret")
    config = write(tmp_path, TWO_MISTAKES)

    assert main(["check-config", "--config", str(config)]) == 1

    out, err = capsys.readouterr()
    lines = problem_lines(out, config)
    assert len(lines) == 2, out
    assert any("duty.language" in line and "fi" in line for line in lines), lines
    assert any("signing.link_ttl" in line and "soon" in line for line in lines), lines
    assert "2 problem" in err


def test_check_config_accepts_the_small_valid_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PASSWORD_VAR, "secret")
    config = write(tmp_path, VALID)
    assert main(["check-config", "--config", str(config)]) == 0
    # Checking does not create the database or the data folder.
    assert not (tmp_path / "db").exists()
    assert not (tmp_path / "data").exists()


def test_check_config_on_a_missing_file_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nowhere.toml"
    assert main(["check-config", "--config", str(missing)]) == 1
    out, _ = capsys.readouterr()
    assert str(missing) in out and "not found" in out


def test_check_config_on_broken_toml_gives_the_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write(tmp_path, VALID.replace("[duty]", "[duty"))
    assert main(["check-config", "--config", str(config)]) == 1
    out, _ = capsys.readouterr()
    assert "line " in out and "TOML" in out


# -- run --------------------------------------------------------------------------------


def test_run_with_a_bad_config_exits_1_with_the_same_messages_and_does_not_start(
    tmp_path: Path,
) -> None:
    config = write(tmp_path, TWO_MISTAKES)
    env = {PASSWORD_VAR: "secret"}

    checked = run_cli("check-config", "--config", str(config), env_extra=env)
    ran = run_cli("run", "--config", str(config), env_extra=env)

    assert ran.returncode == 1
    assert "Traceback" not in ran.stderr
    expected = problem_lines(checked.stdout, config)
    assert len(expected) == 2
    assert problem_lines(ran.stdout + ran.stderr, config) == expected
    # Nothing was started: no database, no data folder, no E2EE store.
    assert not (tmp_path / "db").exists()
    assert not (tmp_path / "data").exists()


def test_run_without_the_password_exits_1_and_names_the_variable(tmp_path: Path) -> None:
    config = write(tmp_path, VALID)
    ran = run_cli("run", "--config", str(config))
    assert ran.returncode == 1
    assert PASSWORD_VAR in ran.stderr
    assert "matrix.password" in ran.stderr
    assert not (tmp_path / "db").exists()


def test_run_and_check_config_require_a_config(capsys: pytest.CaptureFixture[str]) -> None:
    for command in ("run", "check-config"):
        with pytest.raises(SystemExit) as exited:
            main([command])
        assert exited.value.code == 2
        assert "--config" in capsys.readouterr().err


# -- db upgrade -------------------------------------------------------------------------


def _tables(path: Path) -> set[str]:
    with sqlite3.connect(path) as connection:
        rows = connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        return {name for (name,) in rows}


def test_db_upgrade_creates_the_sqlite_database_next_to_the_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PASSWORD_VAR, "secret")
    config = write(tmp_path / "etc", VALID)
    # From another working directory: the relative path belongs to the config's folder.
    monkeypatch.chdir(tmp_path)
    database = tmp_path / "etc" / "db" / "socialjour.db"

    assert main(["db", "upgrade", "--config", str(config)]) == 0
    assert database.is_file()
    tables = _tables(database)
    assert {"cases", "case_participants", "case_sequences", "audit_entries"} <= tables
    assert "alembic_version" in tables
    assert not (tmp_path / "db").exists()

    # Twice is fine and changes nothing.
    assert main(["db", "upgrade", "--config", str(config)]) == 0
    assert _tables(database) == tables
    out, _ = capsys.readouterr()
    assert out.count("up to date") == 2


def test_db_upgrade_in_a_child_process(tmp_path: Path) -> None:
    config = write(tmp_path, VALID)
    for _ in range(2):
        done = run_cli("db", "upgrade", "--config", str(config), env_extra={PASSWORD_VAR: "x"})
        assert done.returncode == 0, done.stderr
    assert "cases" in _tables(tmp_path / "db" / "socialjour.db")


def test_db_upgrade_with_a_bad_config_touches_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(PASSWORD_VAR, raising=False)
    config = write(tmp_path, VALID)
    with pytest.raises(SystemExit) as exited:
        main(["db", "upgrade", "--config", str(config)])
    assert exited.value.code == 1
    assert PASSWORD_VAR in capsys.readouterr().err
    assert not (tmp_path / "db").exists()


# -- verify -----------------------------------------------------------------------------


def _unsigned_pdf(path: Path) -> Path:
    from reportlab.lib.pagesizes import A4
    from reportlab.pdfgen import canvas

    pdf = canvas.Canvas(str(path), pagesize=A4)
    pdf.drawString(72, 770, "Beslut SJ-2026-0001 (osignerat)")
    pdf.showPage()
    pdf.save()
    return path


def test_verify_an_unsigned_pdf_says_no_signatures_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pdf = _unsigned_pdf(tmp_path / "beslut.pdf")
    assert main(["verify", str(pdf)]) == 1
    out, _ = capsys.readouterr()
    assert "no signatures" in out
    assert str(pdf) in out
    assert "VALID" not in out


def test_verify_in_a_child_process(tmp_path: Path) -> None:
    pdf = _unsigned_pdf(tmp_path / "beslut.pdf")
    done = run_cli("verify", str(pdf))
    assert done.returncode == 1
    assert "no signatures" in done.stdout
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    "content", [b"Det h\xc3\xa4r \xc3\xa4r ingen PDF.\n", b"%PDF-1.7\n garbage", b""]
)
def test_verify_a_file_that_is_not_a_pdf_exits_1_with_a_readable_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes
) -> None:
    fake = tmp_path / "beslut.pdf"
    fake.write_bytes(content)
    assert main(["verify", str(fake)]) == 1
    out, err = capsys.readouterr()
    assert str(fake) in out
    assert "cannot be read" in out
    assert "Traceback" not in out + err


def test_verify_a_missing_file_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "saknas.pdf"
    assert main(["verify", str(missing)]) == 1
    out, _ = capsys.readouterr()
    assert str(missing) in out and "cannot be read" in out


# -- help -------------------------------------------------------------------------------


@pytest.mark.parametrize("entry", ["module", "console-script"])
def test_help_lists_the_subcommands_of_the_contract(entry: str) -> None:
    if entry == "module":
        done = run_cli("--help")
    else:
        script = Path(sys.executable).with_name("socialjour")
        if not script.exists():
            pytest.skip("console script not installed in this environment")
        done = subprocess.run(
            [str(script), "--help"], capture_output=True, text=True, timeout=60, check=False
        )
    assert done.returncode == 0, done.stderr
    listed = re.search(r"\{([a-z,-]+)\}", done.stdout)
    assert listed is not None, done.stdout
    assert {"run", "check-config", "demo", "db", "verify"} <= set(listed.group(1).split(","))
    assert "socialjour" in done.stdout


def test_db_help_lists_upgrade(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["db", "--help"])
    assert exited.value.code == 0
    assert "upgrade" in capsys.readouterr().out


def test_no_subcommand_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main([])
    assert exited.value.code == 2
    assert "usage" in capsys.readouterr().err
