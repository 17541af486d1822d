"""Logging setup for every command: plain text lines, or one JSON object per line.

JSON is for a log shipper (journald → Loki, Elastic, Graylog): each line parses on its
own, so a multi-line traceback never splits into several records. The message is
formatted exactly as in text mode (``record.getMessage()``), and nothing else of the
record is copied: no ``args``, no ``extra`` fields, no exception message. The log lines
themselves are written without personal data; a formatter that serialised arguments or
exception texts could bring some back.
"""

from __future__ import annotations

import json
import logging
import sys
import traceback
from datetime import UTC, datetime
from typing import Literal

__all__ = ["LOG_FORMATS", "JsonFormatter", "setup_logging"]

LogFormat = Literal["text", "json"]
LOG_FORMATS: tuple[LogFormat, ...] = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
#: nio logs event contents at DEBUG and key details at INFO: keep these quiet.
NOISY = ("nio", "peewee", "aiohttp.access", "alembic", "aiosqlite", "asyncio")
_HANDLER_NAME = "socialjour"


class JsonFormatter(logging.Formatter):
    """``{"time", "level", "logger", "message"}``, plus ``exception`` (the type's name)
    and ``traceback`` (the frames, without the exception's message) when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info and record.exc_info[0] is not None:
            kind, _, tb = record.exc_info
            line["exception"] = f"{kind.__module__}.{kind.__qualname__}".removeprefix("builtins.")
            # The frames say where; the message (str(exc)) may quote what a person typed.
            line["traceback"] = "".join(traceback.format_tb(tb)).rstrip()
        return json.dumps(line, ensure_ascii=False)


def setup_logging(level: str = "INFO", fmt: str = "text") -> None:
    """Send every log line to stderr (journald keeps it) as text or JSON.

    Calling it again replaces the handler it installed, and leaves others alone
    (a test runner's capture handler).
    """
    handler = logging.StreamHandler(sys.stderr)
    handler.set_name(_HANDLER_NAME)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
    for noisy in NOISY:
        logging.getLogger(noisy).setLevel(logging.WARNING)
