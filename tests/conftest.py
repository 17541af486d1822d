"""Fixtures shared by the whole suite: one Synapse per session, fresh users per test."""

from __future__ import annotations

import itertools
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bot.synapse_local import LocalSynapse, free_port
from tests.matrix_helpers import BotProcess, MatrixUser, bot_env, write_bot_config

pytest_plugins = ("tests.conftest_storage",)

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
_counter = itertools.count(1)


def unique(prefix: str) -> str:
    return f"{prefix}{next(_counter)}{secrets.token_hex(2)}"


@pytest.fixture(scope="session")
def synapse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalSynapse]:
    server = LocalSynapse(tmp_path_factory.mktemp("synapse"))
    server.start()
    try:
        yield server
    finally:
        server.stop()
        ARTIFACTS.mkdir(exist_ok=True)
        (ARTIFACTS / "synapse.log").write_text(server.log_tail(400))


UserFactory = Callable[..., Awaitable[MatrixUser]]


@pytest.fixture
async def make_user(synapse: LocalSynapse, tmp_path: Path) -> AsyncIterator[UserFactory]:
    users: list[MatrixUser] = []

    async def make(name: str = "user", *, cross_sign: bool = True) -> MatrixUser:
        localpart = unique(name)
        user = MatrixUser.register(
            synapse, localpart, tmp_path / "clients" / localpart, cross_sign=cross_sign
        )
        users.append(user)
        return await user.start()

    yield make
    for user in users:
        await user.close()


@dataclass
class BotSetup:
    process: BotProcess
    user_id: str
    duty_alias: str
    config_path: Path
    folder: Path


BotFactory = Callable[..., BotSetup]


@pytest.fixture
def make_bot(
    synapse: LocalSynapse, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[BotFactory]:
    started: list[BotSetup] = []

    def make(
        *,
        members: list[str],
        leads: list[str] | None = None,
        database_url: str | None = None,
        extra: str = "",
        start: bool = True,
    ) -> BotSetup:
        password = secrets.token_urlsafe(12)
        bot_user = synapse.register_user(unique("socialjour"), password)
        duty_alias = f"#{unique('duty')}:{synapse.server_name}"
        folder = tmp_path / unique("bot")
        port = free_port()
        config_path = write_bot_config(
            folder,
            synapse=synapse,
            bot_user=bot_user,
            duty_alias=duty_alias,
            members=members,
            leads=leads or members[:1],
            web_port=port,
            database_url=database_url,
            extra=extra,
        )
        process = BotProcess(config_path, bot_env(password), port, folder / "bot.log")
        setup = BotSetup(process, bot_user, duty_alias, config_path, folder)
        started.append(setup)
        if start:
            process.start()
        return setup

    yield make
    for setup in started:
        if setup.process.proc is not None:
            setup.process.stop()
        ARTIFACTS.mkdir(exist_ok=True)
        name = request.node.name.replace("/", "_")
        (ARTIFACTS / f"{name}-bot.log").write_text(setup.process.log_tail(400))
