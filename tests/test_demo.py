"""`socialjour demo` brings up a homeserver and a bot that answers a demo user."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.matrix_helpers import ROOT, MatrixUser
from tests.test_bot_matrix import join_duty_room, open_case

pytestmark = pytest.mark.integration


def _wait_for(path: Path, text: str, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"demo exited early:\n{path.read_text(errors='replace')[-3000:]}")
        if path.exists() and text in path.read_text(errors="replace"):
            return
        time.sleep(0.3)
    raise TimeoutError(f"no {text!r} in {timeout} s:\n{path.read_text(errors='replace')[-3000:]}")


async def test_demo_answers_new_case_from_demo_user(tmp_path: Path) -> None:
    folder = tmp_path / "demo"
    out = tmp_path / "demo.out"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with out.open("wb") as sink:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bot",
                "demo",
                "--dir",
                str(folder),
                "--synapse-port",
                "0",
                "--web-port",
                "0",
            ],
            stdout=sink,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env=env,
        )
    try:
        _wait_for(out, "INFO bot.app: ready", proc, timeout=120)
        printed = out.read_text()
        passwords = json.loads((folder / "users.json").read_text())
        assert passwords["anna"] in printed, "the demo prints the demo users' passwords"
        homeserver = next(
            line.split()[-1] for line in printed.splitlines() if "Homeserver:" in line
        )
        # Health and metrics: on the admin address the banner prints.
        admin = next(line.split()[1] for line in printed.splitlines() if "Admin:" in line)
        with urllib.request.urlopen(f"{admin}/healthz", timeout=10) as response:
            assert json.load(response)["status"] == "ok"
        anna = MatrixUser(homeserver, "@anna:localhost", passwords["anna"], tmp_path / "anna")
        await anna.start()
        try:
            duty = await join_duty_room(anna, "#socialjour:localhost")
            number, case_room = await open_case(anna, duty)
            assert number.startswith("SJ-")
            await anna.wait_message(case_room, contains=number)
        finally:
            await anna.close()
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, out.read_text()[-2000:]
    # The demo's Synapse stopped with it: nothing answers on its port any more.
    with pytest.raises(OSError):
        urllib.request.urlopen(f"{homeserver}/_matrix/client/versions", timeout=2)
