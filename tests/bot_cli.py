"""The bot's command line in a child process, as an operator's shell runs it, and the
smallest configuration it accepts that never reaches a homeserver.

Shared by the tests of the CLI's subcommands (``check-config``, ``doctor``,
``trust``, ``backup``/``restore``) and of its logging, so that each runs the same
interpreter, from the repository's root, the same way.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: A whole configuration whose homeserver and web listener are never contacted; the
#: database is the default SQLite one in ``data/`` unless a ``database_url`` line is
#: added (the ``[storage]`` table comes last for that), other tables after it.
OFFLINE_CONFIG = """
[matrix]
homeserver = "http://127.0.0.1:1"
user_id = "@socialjour:example.org"
password = "unused"

[web]
listen = "127.0.0.1:1"

[duty]
room_alias = "#socialjour:example.org"
members = ["@anna:example.org"]

[storage]
data_dir = "data"
"""


def run_python(
    args: Sequence[str], *, env: Mapping[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """``python ARGS`` from the repository's root with ``env`` (this one's if None);
    its output as text, whatever its exit code."""
    return subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        env=None if env is None else dict(env),
        timeout=timeout,
        check=False,
        cwd=ROOT,
    )


def run_bot(
    *args: str, env: Mapping[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """``python -m bot ARGS`` in a child process, as a shell would run it."""
    return run_python(["-m", "bot", *args], env=env, timeout=timeout)
