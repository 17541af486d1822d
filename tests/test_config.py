"""What an admin sees when loading a config: the values that come out, and every mistake."""

from __future__ import annotations

import dataclasses
import textwrap
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from bot.cli import main
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
    skovde = settings.municipality("skovde")
    assert skovde is not None and skovde.body == "Socialnämnden"
    dag, eva = skovde.decision_makers
    assert (dag.role, dag.mandate, dag.label) == ("ordförande", "ordförande", "ordförande")
    assert (eva.role, eva.title, eva.label) == (
        "förordnad ledamot",
        "vice ordförande",
        "vice ordförande",
    )
    assert eva.appointment is not None and eva.appointment.appointed_by == "Socialnämnden"
    assert eva.appointment.minutes_ref == "§ 12"
    assert eva.appointment.appointed_on == date(2023, 1, 26)
    assert all(m.appointment is not None for m in settings.municipalities[1].decision_makers)
    assert settings.warnings == ()  # the example says everything the way it should


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


# -- who may decide: role, title and appointment ---------------------------------------

TODAY = datetime.now(ZoneInfo("Europe/Stockholm")).date()


#: A delegate, so the delegate form (sol_placering) warns about nothing here.
DELEGATE = """
[[municipalities.delegates]]
user_id = "@jonna:example.org"
name = "Jonna Jonsson"
title = "jourchef"
delegation_ref = "Delegationsordning 2026 p. 4.2"
"""


def with_makers(*makers: str, body_name: str | None = None) -> str:
    """MINIMAL with one municipality whose decision-makers are these TOML blocks (and a
    delegate)."""
    body = "" if body_name is None else f'body_name = "{body_name}"\n'
    blocks = "".join(
        f"\n[[municipalities.decision_makers]]\n{textwrap.dedent(maker).strip()}\n"
        for maker in makers
    )
    return (
        MINIMAL
        + '\n[[municipalities]]\nid = "skovde"\nname = "Skövde kommun"\n'
        + 'intake_room_alias = "#mottagning-skovde:example.org"\n'
        + body
        + blocks
        + DELEGATE
    )


def maker(
    user: str = "dag",
    role: str = "förordnad ledamot",
    *,
    by: str = "Socialnämnden",
    on: date = date(2023, 1, 26),
    until: date = date(2030, 12, 31),
    extra: str = "",
) -> str:
    return f"""
        user_id = "@{user}:example.org"
        name = "{user.title()} Testsson"
        role = "{role}"
        appointed_by = "{by}"
        appointed_on = {on.isoformat()}
        minutes_ref = "§ 12"
        valid_until = {until.isoformat()}
        {extra}
    """


def warnings_at(settings: Settings, key: str) -> list[str]:
    return [w.message for w in settings.warnings if w.place == key]


def test_roles_are_the_chair_and_appointed_members_with_a_title_as_a_label(
    tmp_path: Path,
) -> None:
    text = with_makers(
        maker("dag", "ordförande", by="Kommunfullmäktige"),
        maker("eva", extra='title = "vice ordförande"'),
        body_name="Individ- och familjenämnden",
    ).replace('appointed_by = "Socialnämnden"', 'appointed_by = "Individ- och familjenämnden"')
    settings = load_settings(write(tmp_path, text), environ={})

    skovde = settings.municipality("skovde")
    assert skovde is not None and skovde.body == "Individ- och familjenämnden"
    dag, eva = skovde.decision_makers
    assert (dag.mandate, dag.label) == ("ordförande", "ordförande")
    assert (eva.role, eva.mandate, eva.label) == (
        "förordnad ledamot",
        "förordnad ledamot",
        "vice ordförande",
    )
    assert dag.appointment is not None and dag.appointment.appointed_by == "Kommunfullmäktige"
    assert settings.warnings == ()


@pytest.mark.parametrize(
    ("old", "instead"),
    [
        ("vice ordförande", 'write role = "förordnad ledamot" and title = "vice ordförande"'),
        ("ledamot", 'write role = "förordnad ledamot"'),
    ],
)
def test_the_old_roles_are_read_with_a_warning_that_says_what_to_write(
    tmp_path: Path, old: str, instead: str
) -> None:
    path = write(tmp_path, with_makers(maker("dag", old)))
    settings = load_settings(path, environ={})

    (found,) = settings.municipalities[0].decision_makers
    assert (found.role, found.mandate, found.label) == (old, "förordnad ledamot", old)
    (message,) = warnings_at(settings, "municipalities[0].decision_makers[0].role")
    assert instead in message and "LVU 6 § andra stycket" in message
    assert check_config(path, environ={}) == []  # a warning is not a problem


def test_an_unknown_role_is_a_problem_listing_the_two_roles(tmp_path: Path) -> None:
    path = write(tmp_path, with_makers(maker("dag", "kung")))
    problems = check_config(path, environ={})
    assert messages_at(problems, path, "municipalities[0].decision_makers[0].role") == [
        "expected one of 'ordförande', 'förordnad ledamot', got 'kung'"
    ]


def test_a_missing_appointment_is_a_warning_the_person_is_never_asked(tmp_path: Path) -> None:
    text = with_makers(
        'user_id = "@dag:example.org"\nname = "Dag Dagsson"\nrole = "ordförande"',
        maker("eva"),
    )
    settings = load_settings(write(tmp_path, text), environ={})

    dag, eva = settings.municipalities[0].decision_makers
    assert dag.appointment is None and not dag.may_decide_on(TODAY)
    assert eva.may_decide_on(TODAY)
    (message,) = warnings_at(settings, "municipalities[0].decision_makers[0]")
    assert "no appointment recorded: Dag Dagsson will not be asked to decide" in message
    for key in ("appointed_by", "appointed_on", "minutes_ref", "valid_until"):
        assert key in message


def test_an_appointment_is_all_four_keys_with_real_days(tmp_path: Path) -> None:
    broken = with_makers(
        """
        user_id = "@dag:example.org"
        name = "Dag Dagsson"
        role = "ordförande"
        appointed_by = "Kommunfullmäktige"
        appointed_on = 2023-01-12T18:00:00
        """,
        maker("eva", on=date(2026, 5, 1), until=date(2026, 4, 30)),
        maker("olle").replace("valid_until = 2030-12-31", 'valid_until = "snart"'),
    )
    path = write(tmp_path, broken)
    problems = check_config(path, environ={})

    dag = "municipalities[0].decision_makers[0]"
    assert sorted(places(problems, path)) == sorted(
        [
            f"{dag}.minutes_ref",
            f"{dag}.valid_until",
            f"{dag}.appointed_on",
            "municipalities[0].decision_makers[1].valid_until",
            "municipalities[0].decision_makers[2].valid_until",
        ]
    )
    assert (
        "appointed_by, appointed_on, minutes_ref and valid_until together"
        in (messages_at(problems, path, f"{dag}.minutes_ref")[0])
    )
    assert messages_at(problems, path, f"{dag}.appointed_on")[0].startswith(
        "expected a date like 2026-01-15 (a day, without a time)"
    )
    assert messages_at(problems, path, "municipalities[0].decision_makers[1].valid_until") == [
        "the appointment ends (2026-04-30) before it was made (2026-05-01)"
    ]
    assert messages_at(problems, path, "municipalities[0].decision_makers[2].valid_until") == [
        "expected a date like 2026-01-15, got a string ('snart')"
    ]


def test_a_date_may_also_be_written_as_a_string(tmp_path: Path) -> None:
    text = with_makers(
        maker("dag").replace("valid_until = 2030-12-31", 'valid_until = "2030-12-31"')
    )
    settings = load_settings(write(tmp_path, text), environ={})
    appointment = settings.municipalities[0].decision_makers[0].appointment
    assert appointment is not None and appointment.valid_until == date(2030, 12, 31)


def test_an_appointment_that_ran_out_or_has_not_begun_is_a_warning(tmp_path: Path) -> None:
    text = with_makers(
        maker("dag", until=TODAY - timedelta(days=1)),
        maker("eva", on=TODAY + timedelta(days=3), until=TODAY + timedelta(days=400)),
        maker("olle", until=TODAY + timedelta(days=10)),
        maker("tove", until=TODAY + timedelta(days=30)),
    )
    path = write(tmp_path, text)
    settings = load_settings(path, environ={})

    at = "municipalities[0].decision_makers"
    (ran_out,) = warnings_at(settings, f"{at}[0].valid_until")
    assert ran_out.startswith(f"the appointment ran out on {TODAY - timedelta(days=1)}")
    assert "Dag Testsson will not be asked to decide" in ran_out
    (not_yet,) = warnings_at(settings, f"{at}[1].appointed_on")
    assert f"holds from {TODAY + timedelta(days=3)}" in not_yet
    (soon,) = warnings_at(settings, f"{at}[2].valid_until")
    assert f"runs out on {TODAY + timedelta(days=10)} (in 10 days)" in soon
    assert warnings_at(settings, f"{at}[3].valid_until") == []  # 30 days: not yet worth it
    assert check_config(path, environ={}) == []


def test_an_appointed_member_must_be_appointed_by_the_deciding_body(tmp_path: Path) -> None:
    text = with_makers(
        maker("dag", "ordförande", by="Kommunfullmäktige"),  # the chair is elected: fine
        maker("eva", by="Sociala utskottet"),
        maker("olle", by="socialnämnden"),  # the same body, in other letters
    )
    settings = load_settings(write(tmp_path, text), environ={})

    assert [w.place for w in settings.warnings] == [
        "municipalities[0].decision_makers[1].appointed_by"
    ]
    message = settings.warnings[0].message
    assert "'Sociala utskottet'" in message and "'Socialnämnden'" in message
    assert "body_name" in message


def test_a_municipality_where_nobody_can_decide_today_is_a_warning(tmp_path: Path) -> None:
    gone = TODAY - timedelta(days=1)
    text = with_makers(
        maker("dag", "ordförande", by="Kommunfullmäktige", until=gone), maker("eva", until=gone)
    )
    settings = load_settings(write(tmp_path, text), environ={})

    (message,) = warnings_at(settings, "municipalities[0].decision_makers")
    assert message.startswith("nobody in Skövde kommun can be asked to decide today")


def test_check_config_prints_warnings_and_still_exits_0(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, with_makers(maker("dag", "vice ordförande")))

    assert main(["check-config", "--config", str(path)]) == 0

    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(
        f"{path}: municipalities[0].decision_makers[0].role: warning: "
        '"vice ordförande" is a title, not a power to decide'
    )
    assert out[-1] == f"{path}: OK (1 warning(s))"
