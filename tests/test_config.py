"""What an admin sees when loading a config: the values that come out, and every mistake."""

from __future__ import annotations

import dataclasses
import textwrap
from datetime import timedelta
from pathlib import Path

import pytest

from config import (
    EXAMPLE_CONFIG,
    ConfigError,
    Problem,
    Settings,
    check_config,
    format_duration,
    load_settings,
    parse_duration,
)

MINIMAL = """
[matrix]
homeserver = "https://matrix.example.org/"
user_id = "@socialjour:example.org"

[storage]
data_dir = "data"

[duty]
room_alias = "#socialjour:example.org"
members = ["@anna:example.org"]
"""


def write(folder: Path, text: str, name: str = "config.toml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def places(problems: list[Problem], path: Path) -> list[str]:
    """The key part of each problem's place, after the file name every place starts with."""
    prefix = f"{path}: "
    assert all(problem.place.startswith(prefix) for problem in problems), problems
    return [problem.place.removeprefix(prefix) for problem in problems]


def messages_at(problems: list[Problem], path: Path, key: str) -> list[str]:
    return [problem.message for problem in problems if problem.place == f"{path}: {key}"]


# -- the shipped example ------------------------------------------------------------


def test_example_config_loads_when_the_password_variable_is_set() -> None:
    settings = load_settings(EXAMPLE_CONFIG, environ={"SOCIALJOUR_MATRIX_PASSWORD": "hunter2"})

    assert settings.matrix.password == "hunter2"
    assert "hunter2" not in repr(settings)
    assert settings.matrix.trust == "cross-signed"
    assert settings.storage.data_dir == EXAMPLE_CONFIG.parent / "data"
    assert [m.id for m in settings.municipalities] == ["skovde", "mariestad"]
    mariestad = settings.municipality("mariestad")
    assert mariestad is not None and mariestad.escalation_policy == "tight"
    assert settings.municipality("tidaholm") is None
    tight = settings.escalation_policies["tight"]
    standard = settings.escalation_policies["standard"]
    assert tight.steps[-1].after < standard.steps[-1].after
    assert [step.action for step in standard.steps] == ["remind", "next_signer", "alert_leads"]
    assert standard.repeat_every == timedelta(minutes=10)
    assert settings.signing.link_ttl == timedelta(hours=12)
    assert settings.duty.allowed == {"@anna:example.org", "@bo:example.org"}


def test_example_config_without_the_variable_reports_only_that_variable() -> None:
    problems = check_config(EXAMPLE_CONFIG, environ={})

    assert len(problems) == 1
    assert problems[0].place == f"{EXAMPLE_CONFIG}: matrix.password"
    assert "SOCIALJOUR_MATRIX_PASSWORD" in problems[0].message
    with pytest.raises(ConfigError) as raised:
        load_settings(EXAMPLE_CONFIG, environ={})
    assert raised.value.problems == tuple(problems)
    assert str(raised.value) == str(problems[0])


# -- defaults and paths -------------------------------------------------------------


def test_minimal_config_gets_documented_defaults(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, MINIMAL), environ={})

    assert settings.matrix.homeserver == "https://matrix.example.org"
    assert settings.matrix.password is None
    assert (settings.web.listen_host, settings.web.listen_port) == ("127.0.0.1", 8080)
    assert settings.web.public_base_url == "http://127.0.0.1:8080"
    assert settings.duty.language == "sv"
    assert settings.duty.case_prefix == "SJ"
    assert settings.signing.auth_methods == ("matrix-code",)
    assert settings.logging.level == "INFO"
    assert settings.escalation_policies["standard"].steps[0].after == timedelta(minutes=5)
    assert settings.storage.database_url == f"sqlite+aiosqlite:///{tmp_path}/data/socialjour.db"


def test_relative_paths_are_resolved_against_the_config_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = MINIMAL.replace(
        'data_dir = "data"',
        'data_dir = "../var/data"\ndatabase_url = "sqlite+aiosqlite:///db/socialjour.db?timeout=5"',
    )
    write(tmp_path / "etc", text)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)

    settings = load_settings(Path("..") / "etc" / "config.toml", environ={})

    assert settings.config_path == tmp_path / "etc" / "config.toml"
    assert settings.storage.data_dir == tmp_path / "var" / "data"
    assert settings.storage.database_url == (
        f"sqlite+aiosqlite:///{tmp_path}/etc/db/socialjour.db?timeout=5"
    )


@pytest.mark.parametrize(
    "url",
    [
        "sqlite+aiosqlite:///:memory:",
        "sqlite+aiosqlite:////srv/socialjour/socialjour.db",
        "postgresql+asyncpg://socialjour@db.example.org/socialjour",
    ],
)
def test_absolute_memory_and_postgres_urls_are_kept(tmp_path: Path, url: str) -> None:
    text = MINIMAL.replace('data_dir = "data"', f'data_dir = "/srv/sj"\ndatabase_url = "{url}"')
    settings = load_settings(write(tmp_path, text), environ={})

    assert settings.storage.database_url == url
    assert settings.storage.data_dir == Path("/srv/sj")


def test_ipv6_listen_address_gives_a_bracketed_default_public_url(tmp_path: Path) -> None:
    text = MINIMAL + '\n[web]\nlisten = "[::1]:9000"\n'
    settings = load_settings(write(tmp_path, text), environ={})

    assert (settings.web.listen_host, settings.web.listen_port) == ("::1", 9000)
    assert settings.web.public_base_url == "http://[::1]:9000"


# -- secrets ------------------------------------------------------------------------


def test_file_secrets_are_read_relative_to_the_config_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config_dir = tmp_path / "etc"
    write(config_dir / "secrets", "s3cret pass\n", name="matrix-password")
    text = MINIMAL.replace(
        'user_id = "@socialjour:example.org"',
        'user_id = "@socialjour:example.org"\n'
        'password = { file = "secrets/matrix-password" }\n'
        'store_key = { env = "SJ_STORE_KEY" }',
    )
    path = write(config_dir, text)
    monkeypatch.chdir(tmp_path)

    settings = load_settings(path, environ={"SJ_STORE_KEY": "store passphrase"})

    assert settings.matrix.password == "s3cret pass"
    assert settings.matrix.store_key == "store passphrase"
    assert "s3cret" not in repr(settings.matrix)
    assert "passphrase" not in repr(settings.matrix)


def test_bad_secret_references_are_reported_with_key_and_source(tmp_path: Path) -> None:
    text = MINIMAL.replace(
        'user_id = "@socialjour:example.org"',
        'user_id = { env = "SJ_USER" }\n'
        'password = { file = "missing-password" }\n'
        'store_key = { env = "A", file = "b" }\n'
        'device_name = { env = "SJ_DEVICE", default = "Socialjour" }',
    )
    path = write(tmp_path, text)

    problems = check_config(path, environ={"SJ_USER": "not-a-user-id topsecret"})

    assert sorted(places(problems, path)) == [
        "matrix.device_name.default",
        "matrix.password",
        "matrix.store_key",
        "matrix.user_id",
    ]
    user_id = messages_at(problems, path, "matrix.user_id")[0]
    password = messages_at(problems, path, "matrix.password")[0]
    assert "environment variable SJ_USER" in user_id
    assert "topsecret" not in user_id
    assert str(tmp_path / "missing-password") in password


def test_unset_variable_names_the_variable_and_the_key(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL.replace('"data"', '{ env = "SJ_DATA_DIR" }'))

    problems = check_config(path, environ={"OTHER": "x"})

    assert [str(problem) for problem in problems] == [
        f"{path}: storage.data_dir: environment variable SJ_DATA_DIR is not set"
    ]
    assert load_settings(path, environ={"SJ_DATA_DIR": "/srv/sj"}).storage.data_dir == Path(
        "/srv/sj"
    )


# -- problems -----------------------------------------------------------------------

MANY_MISTAKES = """
[matrix]
homeserver = "matrix.example.org"
user_id = "@Socialjour:example.org"
password = { env = "SJ_UNSET_PASSWORD" }
trust = "everyone"
passwd = "oops"

[storage]
data_dir = 42
database_url = "mysql://socialjour:topsecret@db/socialjour"

[web]
listen = "8080"
public_base_url = "ftp://example.org"

[duty]
room_alias = "socialjour:example.org"
members = []
leads = ["anna"]
language = "de"
case_prefix = "sj-"

[[municipalities]]
id = "Skövde"
name = "Skövde kommun"
intake_room_alias = "#mottagning-skovde:example.org"
escalation_policy = "relaxed"

  [[municipalities.decision_makers]]
  user_id = "@dag:example.org"
  name = "Dag Dagsson"
  role = "ordförande"

  [[municipalities.decision_makers]]
  user_id = "@dag:example.org"
  name = "Dag igen"
  role = "kung"
  fax = "0500-1234"

[[municipalities]]
id = "mariestad"
name = "Mariestads kommun"
intake_room_alias = "#mottagning-mariestad:example.org"

[[municipalities]]
id = "mariestad"
intake_room_alias = "#mottagning-mariestad2:example.org"

[escalation_policies.standard]
steps = [
  { after = "10m", action = "remind" },
  { after = "5 minutes", action = "next_signer" },
  { after = "5m", action = "alert_leads", note = "too early" },
  { after = "20m", action = "panic" },
]
repeat_every = "often"

[signing]
auth_methods = ["matrix-code", "smoke-signals"]
link_ttl = "8d"

[logging]
level = "LOUD"

[extras]
"""


def test_every_mistake_is_reported_with_its_key(tmp_path: Path) -> None:
    path = write(tmp_path, MANY_MISTAKES)

    problems = check_config(path, environ={})

    assert sorted(places(problems, path)) == sorted(
        [
            "extras",
            "matrix.homeserver",
            "matrix.user_id",
            "matrix.password",
            "matrix.trust",
            "matrix.passwd",
            "storage.data_dir",
            "storage.database_url",
            "web.listen",
            "web.public_base_url",
            "duty.room_alias",
            "duty.members",
            "duty.leads[0]",
            "duty.language",
            "duty.case_prefix",
            "municipalities[0].id",
            "municipalities[0].escalation_policy",
            "municipalities[0].decision_makers[1].user_id",
            "municipalities[0].decision_makers[1].role",
            "municipalities[0].decision_makers[1].fax",
            "municipalities[2].id",
            "municipalities[2].name",
            "escalation_policies.standard.steps[1].after",
            "escalation_policies.standard.steps[2].after",
            "escalation_policies.standard.steps[2].note",
            "escalation_policies.standard.steps[3].action",
            "escalation_policies.standard.repeat_every",
            "signing.auth_methods[1]",
            "signing.link_ttl",
            "logging.level",
        ]
    )
    assert messages_at(problems, path, "escalation_policies.standard.steps[1].after") == [
        "expected a duration like 30s, 5m, 12h or 2d, got '5 minutes'"
    ]
    assert "SJ_UNSET_PASSWORD" in messages_at(problems, path, "matrix.password")[0]
    assert "'password'" in messages_at(problems, path, "matrix.passwd")[0]
    assert "missing" in messages_at(problems, path, "municipalities[2].name")[0]
    assert "relaxed" in messages_at(problems, path, "municipalities[0].escalation_policy")[0]
    assert all("topsecret" not in problem.message for problem in problems)
    with pytest.raises(ConfigError) as raised:
        load_settings(path, environ={})
    assert str(raised.value).splitlines() == [str(problem) for problem in problems]


def test_missing_sections_are_reported_once_each(tmp_path: Path) -> None:
    path = write(tmp_path, '[web]\nlisten = "127.0.0.1:8080"\n')

    problems = check_config(path, environ={})

    assert places(problems, path) == ["matrix", "storage", "duty"]


def test_leads_need_not_be_members_and_decision_makers_may_be_empty(tmp_path: Path) -> None:
    text = (
        MINIMAL.replace('members = ["@anna:example.org"]', "")
        + """
members = ["@anna:example.org"]
leads = ["@lena:example.org"]

[[municipalities]]
id = "skovde"
name = "Skövde kommun"
intake_room_alias = "#mottagning-skovde:example.org"
"""
    )
    settings = load_settings(write(tmp_path, text), environ={})

    assert settings.duty.allowed == {"@anna:example.org", "@lena:example.org"}
    skovde = settings.municipality("skovde")
    assert skovde is not None and skovde.decision_makers == ()


def test_toml_syntax_error_names_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, '[matrix]\nhomeserver = "http://x"\nuser_id = \n')

    problems = check_config(path, environ={})

    assert len(problems) == 1
    assert problems[0].place == f"{path}: line 3, column 11"
    assert problems[0].message.startswith("TOML syntax error")


def test_missing_file_is_a_problem(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"

    assert [str(problem) for problem in check_config(path)] == [f"{path}: config file not found"]


# -- durations ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30s", timedelta(seconds=30)),
        ("5m", timedelta(minutes=5)),
        ("12h", timedelta(hours=12)),
        ("2d", timedelta(days=2)),
        ("1h30m", timedelta(minutes=90)),
        ("1d2h3m4s", timedelta(days=1, hours=2, minutes=3, seconds=4)),
        ("0h15m", timedelta(minutes=15)),
        (" 5m ", timedelta(minutes=5)),
    ],
)
def test_parse_duration_accepts(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("0m", "longer than zero"),
        ("-5m", "negative"),
        ("5w", "unknown unit 'w'"),
        ("5minutes", "unknown unit 'minutes'"),
        ("5 minutes", "expected a duration like 30s, 5m, 12h or 2d, got '5 minutes'"),
        ("30", "missing a unit"),
        ("1.5h", "expected a duration"),
        ("30m1h", "largest to smallest"),
        ("1h1h", "largest to smallest"),
        ("h", "expected a duration"),
        ("5M", "unknown unit 'M'"),
    ],
)
def test_parse_duration_rejects(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace(".", r"\.")):
        parse_duration(text)


@pytest.mark.parametrize(
    ("duration", "text"),
    [
        (timedelta(seconds=30), "30s"),
        (timedelta(hours=12), "12h"),
        (timedelta(days=2), "2d"),
        (timedelta(minutes=90), "90m"),
        (timedelta(hours=36), "36h"),
        (timedelta(days=1, seconds=1), "1d1s"),
        (timedelta(hours=1, minutes=30, seconds=1), "90m1s"),
    ],
)
def test_format_duration_gives_the_shortest_form(duration: timedelta, text: str) -> None:
    assert format_duration(duration) == text
    assert parse_duration(text) == duration


def test_format_duration_refuses_what_cannot_be_written() -> None:
    with pytest.raises(ValueError, match="negative"):
        format_duration(timedelta(seconds=-1))
    with pytest.raises(ValueError, match="fractions"):
        format_duration(timedelta(milliseconds=1500))


# -- immutability -------------------------------------------------------------------


def test_settings_cannot_be_changed_after_loading(tmp_path: Path) -> None:
    settings: Settings = load_settings(write(tmp_path, MINIMAL), environ={})

    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.matrix.homeserver = "https://evil.example.org"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.duty = settings.duty  # type: ignore[misc]
    with pytest.raises(TypeError):
        settings.escalation_policies["lax"] = settings.escalation_policies["standard"]  # type: ignore[index]
    with pytest.raises(AttributeError):
        settings.duty.members.append("@mallory:example.org")  # type: ignore[attr-defined]
