"""Health and metrics on their own listener (issue 10): ``web.admin_listen``.

What an operator and an attacker notice: ``/healthz`` and ``/metrics`` answer on
the admin port only (404 through the public address), ``/healthz`` says
"starting" until the bot serves, the metrics are Prometheus text with histograms of
a real dialogue turn and a real signature, and a scrape costs the same few queries
whether one case is open or twenty (it never loads the cases).
"""

from __future__ import annotations

import asyncio
import json
import textwrap
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import event

from bot.app import Socialjour
from config import ConfigError, load_settings
from storage import repo, session_factory
from storage.models import Case
from tests.conftest import BotFactory, UserFactory
from tests.test_bot_matrix import join_duty_room, open_case
from tests.test_decision_matrix import _sign_through_the_api, dag_signs_with_a_tsa

PASSWORD_VAR = "SOCIALJOUR_MATRIX_PASSWORD"
HISTOGRAMS = (
    "socialjour_dialogue_turn_seconds",
    "socialjour_sign_to_pdf_seconds",
    "socialjour_escalation_lateness_seconds",
)


def config_text(database_url: str, web: str = "") -> str:
    """A whole config; the homeserver is never contacted by these tests."""
    return textwrap.dedent(f"""
        [matrix]
        homeserver = "http://127.0.0.1:9"
        user_id = "@socialjour:example.org"
        password = {{ env = "{PASSWORD_VAR}" }}

        [storage]
        data_dir = "data"
        database_url = "{database_url}"

        [web]
        {web}

        [duty]
        room_alias = "#socialjour:example.org"
        members = ["@anna:example.org"]
        leads = ["@anna:example.org"]
        """)


def load(folder: Path, text: str) -> Any:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "socialjour.toml"
    path.write_text(text)
    return load_settings(path, environ={PASSWORD_VAR: "not-used"})


def get(url: str) -> tuple[int, str, str]:
    """(status, content type, body), off the event loop (the servers run on it)."""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("Content-Type", ""), error.read().decode()


async def aget(url: str) -> tuple[int, str, str]:
    return await asyncio.to_thread(get, url)


def samples(text: str) -> dict[str, float]:
    """Every sample of a scrape by name (labels joined in), parsed as Prometheus does."""
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            found[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return found


# -- the configuration ---------------------------------------------------------------------


def test_admin_listen_defaults_to_loopback_9090_and_is_checked(tmp_path: Path) -> None:
    db = "sqlite+aiosqlite:///data/socialjour.db"
    settings = load(tmp_path / "default", config_text(db))
    assert (settings.web.admin_host, settings.web.admin_port) == ("127.0.0.1", 9090)
    settings = load(tmp_path / "v6", config_text(db, 'admin_listen = "[::1]:9100"'))
    assert (settings.web.admin_host, settings.web.admin_port) == ("::1", 9100)

    with pytest.raises(ConfigError) as bad:
        load(tmp_path / "bad", config_text(db, 'admin_listen = "9090"'))
    assert [p.place.rsplit(": ", 1)[-1] for p in bad.value.problems] == ["web.admin_listen"]

    # Health and metrics on the public port is what this key exists to prevent.
    with pytest.raises(ConfigError) as same:
        load(
            tmp_path / "same",
            config_text(db, 'listen = "0.0.0.0:8080"\nadmin_listen = "127.0.0.1:8080"'),
        )
    assert "web.admin_listen" in str(same.value)


# -- in one process, on each database ------------------------------------------------------


@pytest.fixture
async def bot(migrated_url: str, tmp_path: Path) -> AsyncIterator[Socialjour]:
    """The composition root on a migrated database, its two listeners on free ports,
    not logged in to any homeserver (so it never becomes ready)."""
    settings = load(
        tmp_path / "bot",
        config_text(migrated_url, 'listen = "127.0.0.1:0"\nadmin_listen = "127.0.0.1:0"'),
    )
    app = Socialjour(settings)
    try:
        yield app
    finally:
        await app.stop()


async def start_listeners(app: Socialjour) -> tuple[str, str]:
    """Start the admin and the public listener; their base URLs (ports chosen by the OS)."""
    await app._start_admin()
    await app._start_web()
    assert app.admin_address is not None and app._runner is not None
    host, port = app.admin_address
    public_host, public_port = app._runner.addresses[0][:2]
    assert port != 0 and public_port != port
    return f"http://{host}:{port}", f"http://{public_host}:{public_port}"


async def test_health_and_metrics_answer_on_the_admin_port_only(bot: Socialjour) -> None:
    admin, public = await start_listeners(bot)

    # Not through the public address, where phones and the internet come in.
    for path in ("/healthz", "/metrics"):
        status, _, _ = await aget(public + path)
        assert status == 404, path

    # Starting (not synced, not handling events): not ok, and says so.
    status, kind, body = await aget(admin + "/healthz")
    assert status == 503 and kind.startswith("application/json")
    health = json.loads(body)
    assert health["status"] == "starting" and health["version"]

    status, kind, body = await aget(admin + "/metrics")
    assert status == 200 and kind.startswith("text/plain")
    found = samples(body)
    assert found["socialjour_up"] == 1
    assert found["socialjour_open_cases"] == 0
    assert found["socialjour_syncs_total"] == 0
    for name in HISTOGRAMS:
        assert found[f"{name}_count"] == 0, name


async def test_a_scrape_counts_open_cases_without_loading_them(bot: Socialjour) -> None:
    admin, _ = await start_listeners(bot)
    statements: list[str] = []
    loaded: list[Case] = []

    def on_statement(*args: Any) -> None:
        statements.append(str(args[2]))

    def on_load(target: Case, _context: Any) -> None:
        loaded.append(target)

    # Not bot.sessions: on PostgreSQL those commit only while this process holds the
    # lease (bot.instance_lock), and this bot never started far enough to take it.
    writer = session_factory(bot.engine)

    async def open_cases(count: int, status: str = "drafting") -> None:
        async with writer() as session, session.begin():
            for _ in range(count):
                await repo.create_case(
                    session,
                    prefix="SJ",
                    year=2026,
                    created_by="@anna:example.org",
                    status=status,
                    now=datetime.now(UTC),
                )

    async def scrape() -> tuple[int, dict[str, float]]:
        statements.clear()
        status, _, body = await aget(admin + "/metrics")
        assert status == 200
        return len(statements), samples(body)

    engine = bot.engine.sync_engine
    event.listen(engine, "before_cursor_execute", on_statement)
    event.listen(Case, "load", on_load)
    try:
        await open_cases(1)
        await open_cases(2, status="closed")
        one_case, found = await scrape()
        assert found["socialjour_open_cases"] == 1
        assert found["socialjour_open_cases_by_status{status=drafting}"] == 1

        await open_cases(10)
        await open_cases(9, status="awaiting_signature")
        twenty_cases, found = await scrape()
        assert found["socialjour_open_cases"] == 20
        assert found["socialjour_open_cases_by_status{status=awaiting_signature}"] == 9
    finally:
        event.remove(engine, "before_cursor_execute", on_statement)
        event.remove(Case, "load", on_load)
    assert twenty_cases == one_case <= 3, statements
    assert loaded == [], "a scrape must not load the cases"


# -- the real bot over the real Synapse ----------------------------------------------------


async def scrape_until(
    url: str, condition: Callable[[dict[str, float]], bool], timeout: float = 60
) -> dict[str, float]:
    """Scrape until ``condition`` holds (the bot records a turn just after replying)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        status, _, body = await aget(url)
        assert status == 200
        found = samples(body)
        if condition(found):
            return found
        assert asyncio.get_running_loop().time() < deadline, found
        await asyncio.sleep(0.2)


@pytest.mark.integration
async def test_a_real_dialogue_turn_and_signature_show_in_the_histograms(
    make_user: UserFactory, make_bot: BotFactory, tmp_path: Path
) -> None:
    anna = await make_user("anna")
    dag = await make_user("dag")
    async with dag_signs_with_a_tsa(dag, anna.localpart, tmp_path) as extra:
        bot = make_bot(members=[anna.user_id], extra=extra)
        process = bot.process
        admin, public = process.admin_url, f"http://127.0.0.1:{process.web_port}"
        metrics = admin + "/metrics"

        # Started (BotProcess waited for "ok"): what an orchestrator's probe reads.
        status, _, body = await aget(admin + "/healthz")
        health = json.loads(body)
        assert status == 200 and health["status"] == "ok", health
        assert health["database"] == "ok" and health["last_sync_age_s"] is not None
        assert "@" not in body, "nothing personal in the health answer"
        for path in ("/healthz", "/metrics"):
            assert (await aget(public + path))[0] == 404, path

        before = samples((await aget(metrics))[2])
        assert before["socialjour_dialogue_turn_seconds_count"] == 0
        assert before["socialjour_sign_to_pdf_seconds_count"] == 0

        # One turn: !ny in the duty room, answered with the new case's number.
        duty = await join_duty_room(anna, bot.duty_alias)
        await open_case(anna, duty)
        await scrape_until(metrics, lambda s: s["socialjour_dialogue_turn_seconds_count"] >= 1)

        # A whole report, a signature, and the signed PDF in the case room.
        await _sign_through_the_api(anna, dag, bot, tmp_path)
        after = await scrape_until(
            metrics, lambda s: s["socialjour_sign_to_pdf_seconds_count"] >= 1
        )
        assert after["socialjour_sign_to_pdf_seconds_count"] == 1
        assert after["socialjour_dialogue_turn_seconds_count"] > 20  # the report's answers
        assert after["socialjour_open_cases"] >= 1
        assert after["socialjour_syncs_total"] > before["socialjour_syncs_total"]
