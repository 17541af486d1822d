"""``[log] format = "json"``: one JSON object per line, for a log shipper, and still
nothing personal in it."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.bot_cli import OFFLINE_CONFIG, run_bot, run_python
from tests.conftest import BotFactory, UserFactory
from tests.test_bot_matrix import join_duty_room
from tests.test_inbox_matrix import start_lvu6
from tests.test_report_matrix import MUNICIPALITIES

#: Logs as the CLI sets logging up from the config: a formatted line, a noisy library
#: at DEBUG, and an exception whose message carries what a worker typed.
SCRIPT = """
import logging, sys
from bot.cli import _load, _setup_logging
settings = _load(sys.argv[1])
_setup_logging(settings.logging.level, settings.logging.format)
log = logging.getLogger("handlers.reports")
log.info("case %s: question %d asked", "SJ-2026-0001", 2)
logging.getLogger("nio.rooms").warning("nio says %s", "hello")
logging.getLogger("nio.crypto").info("a room key for %s", "secret")
log.debug("a detail")
try:
    raise ValueError("Tolvan Tolvansson 20160412-2380")
except ValueError:
    log.exception("the answer could not be parsed")
"""


def config_with(tmp_path: Path, log_section: str) -> Path:
    """The offline configuration with ``log_section`` as its ``[log]`` table."""
    config = tmp_path / "socialjour.toml"
    config.write_text(OFFLINE_CONFIG + f"\n[log]\n{log_section}\n")
    return config


def logged(tmp_path: Path, log_section: str) -> subprocess.CompletedProcess[str]:
    return run_python(["-c", SCRIPT, str(config_with(tmp_path, log_section))], timeout=60)


def parse(stderr: str) -> list[dict[str, Any]]:
    lines = [line for line in stderr.splitlines() if line.strip()]
    return [json.loads(line) for line in lines]  # every line on its own


def test_json_logs_are_one_object_per_line_without_personal_data(tmp_path: Path) -> None:
    done = logged(tmp_path, 'format = "json"\nlevel = "INFO"')
    assert done.returncode == 0, done.stderr

    records = parse(done.stderr)

    assert [r["message"] for r in records] == [
        "case SJ-2026-0001: question 2 asked",
        "nio says hello",
        "the answer could not be parsed",
    ]
    first, _, failure = records
    assert set(first) == {"time", "level", "logger", "message"}
    assert (first["level"], first["logger"]) == ("INFO", "handlers.reports")
    assert first["time"].endswith("+00:00")
    assert failure["level"] == "ERROR"
    assert failure["exception"] == "ValueError"
    assert "test_json_logs" not in failure["traceback"] and "<string>" in failure["traceback"]
    # The exception's message (what the worker typed) is not in the log.
    assert "Tolvan" not in done.stderr and "20160412" not in done.stderr


def test_text_stays_the_default_and_the_level_is_read_from_log(tmp_path: Path) -> None:
    done = logged(tmp_path, 'level = "WARNING"')
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert lines[0].endswith("WARNING nio.rooms: nio says hello")
    assert "question 2 asked" not in done.stderr  # INFO is below the level
    assert "ERROR handlers.reports: the answer could not be parsed" in lines[1]


def test_an_unknown_log_format_is_a_config_problem(tmp_path: Path) -> None:
    config = config_with(tmp_path, 'format = "xml"')
    done = run_bot("check-config", "--config", str(config), timeout=60)
    assert done.returncode == 1
    assert "log.format: expected one of 'text', 'json', got 'xml'" in done.stdout


@pytest.mark.integration
async def test_a_running_bot_logs_json_lines_only(
    make_user: UserFactory, make_bot: BotFactory
) -> None:
    anna = await make_user("anna")
    extra = MUNICIPALITIES.format(tag=anna.localpart) + '\n[log]\nformat = "json"\n'
    bot = make_bot(members=[anna.user_id], extra=extra)
    _, _, worker = await start_lvu6(anna, await join_duty_room(anna, bot.duty_alias))
    await worker.say("Tolvan Tolvansson", "Fråga 2 av 27")
    bot.process.stop()

    records = parse(bot.process.log_text())
    assert any(r["message"] == "ready" for r in records)
    assert all({"time", "level", "logger", "message"} <= set(r) for r in records)
    assert "Tolvan" not in bot.process.log_text()
