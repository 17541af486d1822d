"""The [signing] section and the form-template keys the decision document needs."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from config import (
    EXAMPLE_CONFIG,
    FormTemplate,
    Problem,
    builtin_forms,
    check_config,
    load_forms,
    load_settings,
)
from config._sections import (
    _BANKID_KEYS,
    _OIDC_KEYS,
    _PKCS11_KEYS,
    _SIGNING_KEYS,
)
from signing.devpki import DevPki, create_dev_pki

BASE = """
[matrix]
homeserver = "https://matrix.example.org"
user_id = "@socialjour:example.org"

[storage]
data_dir = "data"

[duty]
room_alias = "#socialjour:example.org"
members = ["@anna:example.org"]
"""

MUNICIPALITY = """
[[municipalities]]
id = "skovde"
name = "Skövde kommun"
intake_room_alias = "#mottagning-skovde:example.org"

  [[municipalities.decision_makers]]
  user_id = "@dag:example.org"
  name = "Dag Dagsson"
  role = "ordförande"
  personal_number = {number}
"""
MAKER = "municipalities[0].decision_makers[0].personal_number"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> DevPki:
    return create_dev_pki(tmp_path_factory.mktemp("pki"))


def write(folder: Path, extra: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "config.toml"
    path.write_text(textwrap.dedent(BASE) + textwrap.dedent(extra), encoding="utf-8")
    return path


def problems_by_key(problems: list[Problem], path: Path) -> dict[str, str]:
    prefix = f"{path}: "
    found: dict[str, str] = {}
    for problem in problems:
        assert problem.place.startswith(prefix), problem
        found.setdefault(problem.place.removeprefix(prefix), problem.message)
    return found


def luhn_complete(nine_digits: str) -> str:
    """The check digit that makes YYMMDDNNN + it valid."""
    total = 0
    for position, character in enumerate(nine_digits):
        product = int(character) * (2 if position % 2 == 0 else 1)
        total += product - 9 if product > 9 else product
    return str((10 - total % 10) % 10)


# -- a complete [signing] section ----------------------------------------------------


def test_every_signing_key_is_read_into_the_settings(tmp_path: Path, pki: DevPki) -> None:
    keys = tmp_path / "keys"
    keys.mkdir()
    for name in ("rp.pem", "rp.key", "bankid-ca.pem", "idp-ca.pem", "libtoken.so"):
        (keys / name).write_text("x")
    (keys / "seal.p12").write_bytes(pki.seal_pkcs12.read_bytes())
    (keys / "ca.pem").write_bytes(pki.ca_cert.read_bytes())
    path = write(
        tmp_path,
        """
        [signing]
        auth_methods = ["matrix-code", "bankid", "oidc"]
        link_ttl = "2h"
        seal_pkcs12 = "keys/seal.p12"
        seal_pkcs12_password = { env = "SEAL_PASSWORD" }
        tsa_url = "http://127.0.0.1:8318/"
        trust_roots = ["keys/ca.pem"]

        [signing.bankid]
        url = "https://appapi2.test.bankid.com/rp/v6.0/"
        client_cert = "keys/rp.pem"
        client_key = "keys/rp.key"
        client_key_password = { env = "RP_KEY_PASSWORD" }
        ca_cert = "keys/bankid-ca.pem"

        [signing.oidc]
        issuer = "https://idp.example.org/"
        client_id = "socialjour"
        client_secret = { env = "OIDC_SECRET" }
        scopes = ["openid", "profile", "https://id.oidc.se/scope/naturalPersonNumber"]
        personal_number_claim = "https://id.oidc.se/claim/personalIdentityNumber"
        ca_cert = "keys/idp-ca.pem"
        """,
    )
    environ = {"SEAL_PASSWORD": pki.seal_password(), "RP_KEY_PASSWORD": "rp", "OIDC_SECRET": "s"}
    signing = load_settings(path, environ=environ).signing

    assert signing.auth_methods == ("matrix-code", "bankid", "oidc")
    assert signing.seal_pkcs12 == keys / "seal.p12"
    assert signing.seal_pkcs12_password == pki.seal_password()
    assert signing.pkcs11 is None
    assert signing.tsa_url == "http://127.0.0.1:8318/"
    assert signing.trust_roots == (keys / "ca.pem",)
    assert signing.bankid is not None
    assert signing.bankid.url == "https://appapi2.test.bankid.com/rp/v6.0"
    assert signing.bankid.client_cert == keys / "rp.pem"
    assert signing.bankid.client_key == keys / "rp.key"
    assert signing.bankid.client_key_password == "rp"
    assert signing.bankid.ca_cert == keys / "bankid-ca.pem"
    assert signing.oidc is not None
    assert signing.oidc.issuer == "https://idp.example.org"
    assert signing.oidc.client_secret == "s"
    assert signing.oidc.scopes[0] == "openid" and len(signing.oidc.scopes) == 3
    assert signing.oidc.personal_number_claim.endswith("personalIdentityNumber")
    assert signing.oidc.ca_cert == keys / "idp-ca.pem"
    shown = repr(signing)
    assert pki.seal_password() not in shown and "'rp'" not in shown


def test_a_pkcs11_token_is_read_with_cert_label_defaulting_to_none(tmp_path: Path) -> None:
    (tmp_path / "libtoken.so").write_text("x")
    path = write(
        tmp_path,
        """
        [signing.pkcs11]
        module = "libtoken.so"
        token_label = "socialjour"
        key_label = "seal"
        pin = "1234"
        """,
    )
    pkcs11 = load_settings(path, environ={}).signing.pkcs11
    assert pkcs11 is not None
    assert pkcs11.module == tmp_path / "libtoken.so"
    assert (pkcs11.token_label, pkcs11.key_label, pkcs11.cert_label) == ("socialjour", "seal", None)
    assert pkcs11.pin == "1234" and "1234" not in repr(pkcs11)


def test_the_defaults_hold_without_the_optional_keys(tmp_path: Path) -> None:
    signing = load_settings(write(tmp_path, "[signing]\n"), environ={}).signing
    assert signing.seal_pkcs12 is None and signing.pkcs11 is None
    assert signing.tsa_url is None and signing.trust_roots == ()
    assert signing.bankid is None and signing.oidc is None


def test_oidc_defaults_scopes_and_claim(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [signing]
        auth_methods = ["oidc"]
        [signing.oidc]
        issuer = "http://127.0.0.1:9000"
        client_id = "socialjour"
        """,
    )
    oidc = load_settings(path, environ={}).signing.oidc
    assert oidc is not None
    assert oidc.scopes == ("openid", "profile")
    assert oidc.personal_number_claim == "personal_number"
    assert oidc.client_secret is None and oidc.ca_cert is None


# -- problems ------------------------------------------------------------------------


def test_both_seal_keys_is_a_problem(tmp_path: Path, pki: DevPki) -> None:
    (tmp_path / "libtoken.so").write_text("x")
    path = write(
        tmp_path,
        f"""
        [signing]
        seal_pkcs12 = "{pki.seal_pkcs12}"
        seal_pkcs12_password = "{pki.seal_password()}"
        [signing.pkcs11]
        module = "libtoken.so"
        token_label = "t"
        key_label = "k"
        """,
    )
    found = problems_by_key(check_config(path, environ={}), path)
    assert list(found) == ["signing.pkcs11"]
    assert "not both" in found["signing.pkcs11"]


@pytest.mark.parametrize("method", ["bankid", "oidc"])
def test_a_method_without_its_section_is_a_problem(tmp_path: Path, method: str) -> None:
    path = write(tmp_path, f'[signing]\nauth_methods = ["matrix-code", "{method}"]\n')
    found = problems_by_key(check_config(path, environ={}), path)
    assert list(found) == [f"signing.{method}"]
    assert f"[signing.{method}]" in found[f"signing.{method}"]


def test_missing_files_are_reported_with_their_keys(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [signing]
        auth_methods = ["bankid", "oidc"]
        seal_pkcs12 = "keys/saknas.p12"
        trust_roots = ["keys/ca.pem", "keys"]

        [signing.bankid]
        url = "https://appapi2.test.bankid.com/rp/v6.0"
        client_cert = "keys/rp.pem"
        client_key = "keys/rp.key"
        ca_cert = "keys/bankid-ca.pem"

        [signing.oidc]
        issuer = "https://idp.example.org"
        client_id = "socialjour"
        ca_cert = "keys/idp-ca.pem"
        """,
    )
    (tmp_path / "keys").mkdir()
    found = problems_by_key(check_config(path, environ={}), path)
    assert set(found) == {
        "signing.seal_pkcs12",
        "signing.trust_roots[0]",
        "signing.trust_roots[1]",
        "signing.bankid.client_cert",
        "signing.bankid.client_key",
        "signing.bankid.ca_cert",
        "signing.oidc.ca_cert",
    }
    assert str(tmp_path / "keys" / "saknas.p12") in found["signing.seal_pkcs12"]
    assert found["signing.trust_roots[1]"].startswith("no such file")
    # the methods have their sections: no "missing section" on top of the file problems
    assert "signing.bankid" not in found


def test_a_missing_pkcs11_module_and_labels_are_reported(tmp_path: Path) -> None:
    path = write(tmp_path, '[signing.pkcs11]\nmodule = "/nonexistent/libtoken.so"\n')
    found = problems_by_key(check_config(path, environ={}), path)
    assert set(found) == {
        "signing.pkcs11.module",
        "signing.pkcs11.token_label",
        "signing.pkcs11.key_label",
    }
    assert "/nonexistent/libtoken.so" in found["signing.pkcs11.module"]


def test_a_wrong_pkcs12_password_is_caught_without_echoing_it(tmp_path: Path, pki: DevPki) -> None:
    path = write(
        tmp_path,
        f"""
        [signing]
        seal_pkcs12 = "{pki.seal_pkcs12}"
        seal_pkcs12_password = {{ env = "SEAL_PASSWORD" }}
        """,
    )
    found = problems_by_key(check_config(path, environ={"SEAL_PASSWORD": "fel-lösenord"}), path)
    assert list(found) == ["signing.seal_pkcs12"]
    assert "password" in found["signing.seal_pkcs12"]
    assert "fel-lösenord" not in found["signing.seal_pkcs12"]


def test_an_unset_password_variable_is_reported_once(tmp_path: Path, pki: DevPki) -> None:
    path = write(
        tmp_path,
        f"""
        [signing]
        seal_pkcs12 = "{pki.seal_pkcs12}"
        seal_pkcs12_password = {{ env = "SEAL_PASSWORD" }}
        """,
    )
    found = problems_by_key(check_config(path, environ={}), path)
    assert found == {
        "signing.seal_pkcs12_password": "environment variable SEAL_PASSWORD is not set"
    }


def test_a_file_that_is_no_certificate_is_not_a_trust_root(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("inte ett certifikat")
    path = write(tmp_path, '[signing]\ntrust_roots = ["ca.pem"]\n')
    found = problems_by_key(check_config(path, environ={}), path)
    assert list(found) == ["signing.trust_roots[0]"]
    assert "X.509" in found["signing.trust_roots[0]"]


@pytest.mark.parametrize(
    ("extra", "key", "fragment"),
    [
        ('[signing]\ntsa_url = "ftp://tsa.example.org"\n', "signing.tsa_url", "http"),
        ('[signing]\nseal_pkcs12_password = "x"\n', "signing.seal_pkcs12_password", "without"),
        ('[signing]\nsealpkcs12 = "x"\n', "signing.sealpkcs12", "seal_pkcs12"),
        ('[signing]\ntrust_roots = "ca.pem"\n', "signing.trust_roots", "list"),
        ("[signing]\npkcs11 = 3\n", "signing.pkcs11", "table"),
        (
            '[signing.oidc]\nissuer = "https://idp.example.org"\nclient_id = "x"\n'
            'scopes = ["profile"]\n',
            "signing.oidc.scopes",
            "openid",
        ),
        (
            '[signing.oidc]\nissuer = "idp.example.org"\nclient_id = "x"\n',
            "signing.oidc.issuer",
            "URL",
        ),
        (
            '[signing.oidc]\nissuer = "https://idp.example.org"\n',
            "signing.oidc.client_id",
            "missing",
        ),
        (
            '[signing.bankid]\nurl = "https://x"\nclientcert = "a"\n',
            "signing.bankid.clientcert",
            "client_cert",
        ),
    ],
)
def test_signing_mistakes_are_reported_by_key(
    tmp_path: Path, extra: str, key: str, fragment: str
) -> None:
    path = write(tmp_path, extra)
    found = problems_by_key(check_config(path, environ={}), path)
    assert key in found, found
    assert fragment in found[key]


# -- the decision-maker's personal number -----------------------------------------------


def test_a_personal_number_is_normalised(tmp_path: Path) -> None:
    path = write(tmp_path, MUNICIPALITY.format(number='"191212121212"'))
    maker = load_settings(path, environ={}).municipalities[0].decision_makers[0]
    assert maker.personal_number == "19121212-1212"
    assert "1212" not in repr(maker)


def test_a_personal_number_may_come_from_the_environment(tmp_path: Path) -> None:
    path = write(tmp_path, MUNICIPALITY.format(number='{ env = "PNR" }'))
    maker = (
        load_settings(path, environ={"PNR": "19121212-1212"}).municipalities[0].decision_makers[0]
    )
    assert maker.personal_number == "19121212-1212"


def test_a_coordination_number_is_accepted(tmp_path: Path) -> None:
    number = "19900173-123"  # born 1990-01-13, day + 60
    number += luhn_complete(number[2:8] + number[9:])
    path = write(tmp_path, MUNICIPALITY.format(number=f'"{number}"'))
    maker = load_settings(path, environ={}).municipalities[0].decision_makers[0]
    assert maker.personal_number == number


@pytest.mark.parametrize(
    ("number", "fragment"),
    [
        ('"121212-1212"', "twelve digits"),
        ('"19121212+1212"', "twelve digits"),
        ('"19121232-1212"', "not a date"),
        ('"19121212-1213"', "check digit"),
        ("191212121212", "string"),
    ],
)
def test_a_bad_personal_number_is_reported_without_echoing_it(
    tmp_path: Path, number: str, fragment: str
) -> None:
    path = write(tmp_path, MUNICIPALITY.format(number=number))
    found = problems_by_key(check_config(path, environ={}), path)
    assert list(found) == [MAKER]
    assert fragment in found[MAKER]
    assert not re.search(r"\d{6}", found[MAKER].replace("YYYYMMDD", "")), found[MAKER]


# -- the example documents every key -------------------------------------------------


@pytest.mark.parametrize(
    ("table", "keys"),
    [
        ("[signing]", _SIGNING_KEYS),
        ("[signing.pkcs11]", _PKCS11_KEYS),
        ("[signing.bankid]", _BANKID_KEYS),
        ("[signing.oidc]", _OIDC_KEYS),
    ],
)
def test_the_example_documents_every_signing_key(table: str, keys: tuple[str, ...]) -> None:
    text = EXAMPLE_CONFIG.read_text(encoding="utf-8")
    assert table in text
    for key in keys:
        if key in ("pkcs11", "bankid", "oidc"):
            assert f"[signing.{key}]" in text
        else:
            assert re.search(rf"^#? ?{key} = ", text, re.MULTILINE), key
    assert re.search(r"^ *# personal_number = ", text, re.MULTILINE)


def test_the_example_still_loads() -> None:
    settings = load_settings(EXAMPLE_CONFIG, environ={"SOCIALJOUR_MATRIX_PASSWORD": "x"})
    assert settings.signing.seal_pkcs12 is None and settings.signing.bankid is None


# -- form templates: appeal and the decision field -------------------------------------

HEADER = """
id = "prov"
version = 1
title = "Prov"
decision_type = "Provbeslut"
legal_reference = "1 § provlagen"
next_step = "Inget."
description = "Ett prov."
"""


def load_one(tmp_path: Path, body: str) -> tuple[dict[str, FormTemplate], dict[str, str]]:
    folder = tmp_path / "forms"
    folder.mkdir(exist_ok=True)
    path = folder / "prov.toml"
    path.write_text(textwrap.dedent(HEADER) + textwrap.dedent(body), encoding="utf-8")
    forms, problems = load_forms([folder])
    found = {problem.place.split(": ", 1)[1]: problem.message for problem in problems}
    return dict(forms), found


def test_shipped_templates_name_their_decision_field_and_how_to_appeal() -> None:
    expected = {
        "lvu6": "forslag",
        "lvm13": "forslag",
        "sol_placering": "forslag",
        "skyddsbedomning": "bedomning",
    }
    forms = builtin_forms()
    for form_id, field_id in expected.items():
        form = forms[form_id]
        assert form.decision_field is not None and form.decision_field.id == field_id
        assert form.decision_field.type == "long_text" and form.decision_field.required
        assert form.appeal
    assert "förvaltningsrätten" in forms["lvu6"].appeal
    assert "tre veckor" in forms["lvm13"].appeal


def test_appeal_and_decision_are_read(tmp_path: Path) -> None:
    forms, found = load_one(
        tmp_path,
        """
        appeal = "Överklaga till förvaltningsrätten inom tre veckor."

        [[fields]]
        id = "namn"
        type = "text"
        label = "Namn"

        [[fields]]
        id = "beslut"
        type = "long_text"
        label = "Beslut"
        decision = true
        """,
    )
    assert found == {}
    form = forms["prov"]
    assert form.appeal.startswith("Överklaga")
    assert form.decision_field is not None and form.decision_field.id == "beslut"


def test_a_form_without_appeal_or_decision_field_still_loads(tmp_path: Path) -> None:
    forms, found = load_one(tmp_path, '[[fields]]\nid = "namn"\ntype = "text"\nlabel = "Namn"\n')
    assert found == {}
    assert forms["prov"].appeal == ""
    assert forms["prov"].decision_field is None


@pytest.mark.parametrize(
    ("fields", "place", "fragment"),
    [
        (
            '[[fields]]\nid = "a"\ntype = "text"\nlabel = "A"\ndecision = true\n'
            '[[fields]]\nid = "b"\ntype = "long_text"\nlabel = "B"\ndecision = true\n',
            "fields[1] (b).decision",
            "only one",
        ),
        (
            '[[fields]]\nid = "a"\ntype = "yes_no"\nlabel = "A"\ndecision = true\n',
            "fields[0] (a).decision",
            "text or long_text",
        ),
        (
            '[[fields]]\nid = "a"\ntype = "text"\nlabel = "A"\ndecision = "ja"\n',
            "fields[0] (a).decision",
            "true or false",
        ),
        (
            '[[fields]]\nid = "a"\ntype = "text"\nlabel = "A"\nrequired = false\ndecision = true\n',
            "fields[0] (a).decision",
            "always be asked",
        ),
    ],
)
def test_decision_field_mistakes(tmp_path: Path, fields: str, place: str, fragment: str) -> None:
    _, found = load_one(tmp_path, fields)
    assert place in found, found
    assert fragment in found[place]


def test_appeal_must_be_text(tmp_path: Path) -> None:
    _, found = load_one(tmp_path, 'appeal = 3\n[[fields]]\nid = "a"\ntype = "text"\nlabel = "A"\n')
    assert found == {"appeal": "expected a string, got an integer (3)"}
