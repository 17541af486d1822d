"""Read each section of the parsed config file into its settings dataclass.

One function per section, in file order, each reporting to the shared ``Reader``
and returning placeholders after a problem (the loader discards the result then).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from datetime import date, timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import pkcs12

from config import personnummer
from config._appointments import (
    APPOINTMENT_KEYS,
    check_appointments,
    read_appointment,
    read_role,
)
from config._notify import read_notify, read_rule
from config._reader import (
    HTTP_URL,
    ROOM_ALIAS,
    USER_ID,
    Reader,
    absolute,
    describe,
    is_email,
    is_http_url,
    is_phone,
    is_room_alias,
    is_user_id,
    item_place,
    key_place,
    split_host_port,
)
from config.deadlines import read_deadline_settings, read_meetings
from config.durations import format_duration
from config.forms import FormTemplate
from config.settings import (
    ACTIONS,
    AUTH_METHODS,
    DEFAULT_NOTIFY,
    LANGUAGES,
    LOG_FORMATS,
    LOG_LEVELS,
    STANDARD_POLICY,
    TRUST_LEVELS,
    BackupSettings,
    BankIdSettings,
    DecisionMaker,
    Delegate,
    DutySettings,
    EscalationPolicy,
    EscalationStep,
    LoggingSettings,
    MatrixSettings,
    Municipality,
    NotifySettings,
    OidcSettings,
    Pkcs11Settings,
    Problem,
    RetentionSettings,
    Settings,
    SigningSettings,
    StorageSettings,
    WebSettings,
    default_seal_processes,
)

__all__ = ["delegate_warnings", "read_settings"]

SQLITE_PREFIX = "sqlite+aiosqlite://"
POSTGRES_PREFIX = "postgresql+asyncpg://"
MAX_LINK_TTL = timedelta(days=7)

_TOP_KEYS = (
    "matrix",
    "storage",
    "web",
    "duty",
    "municipalities",
    "escalation_policies",
    "signing",
    "notify",
    "logging",
    "log",
    "backup",
    "forms",
    "deadlines",
    "retention",
)
_MATRIX_KEYS = (
    "homeserver",
    "user_id",
    "password",
    "device_name",
    "trust",
    "store_key",
    "sync_timeline_limit",
)
_DUTY_KEYS = ("room_alias", "members", "leads", "language", "case_prefix")
_MUNICIPALITY_KEYS = (
    "id",
    "name",
    "intake_room_alias",
    "intake_members",
    "escalation_policy",
    "decision_makers",
    "notify",
    "roster_ics",
    "body_name",
    "delegates",
    "meetings_ics",
    "meetings",
)
_DECISION_MAKER_KEYS = (
    "user_id",
    "name",
    "role",
    "title",
    "email",
    "phone",
    "personal_number",
    "notify",
    *APPOINTMENT_KEYS,
)
_DELEGATE_KEYS = (
    "user_id",
    "name",
    "title",
    "delegation_ref",
    "email",
    "phone",
    "personal_number",
    "notify",
)
_SIGNING_KEYS = (
    "auth_methods",
    "link_ttl",
    "seal_pkcs12",
    "seal_pkcs12_password",
    "pkcs11",
    "tsa_url",
    "trust_roots",
    "seal_processes",
    "bankid",
    "oidc",
)
_PKCS11_KEYS = ("module", "token_label", "key_label", "pin", "cert_label")
_BANKID_KEYS = ("url", "client_cert", "client_key", "ca_cert", "client_key_password")
_OIDC_KEYS = (
    "issuer",
    "client_id",
    "client_secret",
    "scopes",
    "personal_number_claim",
    "ca_cert",
)
PERSONAL_NUMBER = "a personal number YYYYMMDD-NNNN"
_MUNICIPALITY_ID = re.compile(r"[a-z0-9_-]+")
_CASE_PREFIX = re.compile(r"[A-Z]{1,8}")
_WILDCARD_HOSTS = {"0.0.0.0": "127.0.0.1", "::": "::1"}  # noqa: S104 - only mapped away


def read_settings(r: Reader, root: dict[str, Any], config_path: Path) -> Settings:
    """Build ``Settings`` from the parsed TOML, reporting every problem to ``r``."""
    r.table("", root, _TOP_KEYS)
    raw_policies = root.get("escalation_policies")
    policy_names = {STANDARD_POLICY.name}
    if isinstance(raw_policies, dict):
        policy_names.update(raw_policies)
    notify = read_notify(r, root)
    policies = _policies(r, root)
    municipalities = _municipalities(r, root, policy_names, notify)
    _check_next_signer(r, municipalities, policies, written=set(raw_policies or ()))
    return Settings(
        config_path=config_path,
        matrix=_matrix(r, root),
        storage=_storage(r, root),
        web=_web(r, root),
        duty=_duty(r, root),
        municipalities=municipalities,
        escalation_policies=policies,
        signing=_signing(r, root),
        notify=notify,
        logging=_logging(r, root),
        backup=_backup(r, root),
        deadlines=read_deadline_settings(r, root),
        retention=_retention(r, root),
        form_dirs=_form_dirs(r, root),
        warnings=tuple(Problem(place, message) for place, message in r.warnings),
    )


def _matrix(r: Reader, root: dict[str, Any]) -> MatrixSettings:
    table = r.section(root, "matrix", _MATRIX_KEYS, required=True)
    if table is None:
        return MatrixSettings(homeserver="", user_id="")
    return MatrixSettings(
        homeserver=r.required(table, "matrix", "homeserver", is_http_url, HTTP_URL).rstrip("/"),
        user_id=r.required(table, "matrix", "user_id", is_user_id, USER_ID),
        password=r.optional(table, "matrix", "password", secret=True),
        device_name=r.optional(table, "matrix", "device_name") or "Socialjour",
        trust=r.choice(table, "matrix", "trust", TRUST_LEVELS, "cross-signed"),
        store_key=r.optional(table, "matrix", "store_key", secret=True),
        sync_timeline_limit=r.integer(
            table, "matrix", "sync_timeline_limit", 100, minimum=1, maximum=1000
        ),
    )


def _storage(r: Reader, root: dict[str, Any]) -> StorageSettings:
    table = r.section(root, "storage", ("data_dir", "database_url"), required=True)
    if table is None:
        return StorageSettings(data_dir=Path(), database_url="")
    data_dir = absolute(r.base_dir, r.required(table, "storage", "data_dir") or ".")
    if "database_url" not in table:
        default_url = f"{SQLITE_PREFIX}/{data_dir / 'socialjour.db'}"
        return StorageSettings(data_dir=data_dir, database_url=default_url)
    url = r.required(table, "storage", "database_url", secret=True)
    return StorageSettings(data_dir=data_dir, database_url=_database_url(r, url))


def _database_url(r: Reader, url: str) -> str:
    """Accept the two async drivers and anchor a relative SQLite file at the config folder.

    The URL is never echoed: a PostgreSQL URL may carry a password.
    """
    place = "storage.database_url"
    if url == "":
        return url
    if url.startswith(POSTGRES_PREFIX):
        if url == POSTGRES_PREFIX:
            r.report(place, "expected postgresql+asyncpg://user@host/database")
        return url
    if not url.startswith(SQLITE_PREFIX):
        scheme = url.partition("://")[0] if "://" in url else "none"
        r.report(
            place,
            f"expected a {SQLITE_PREFIX}/ or {POSTGRES_PREFIX} URL, got scheme {scheme!r}",
        )
        return url
    rest = url.removeprefix(SQLITE_PREFIX)
    if rest == "":
        return url
    if not rest.startswith("/"):
        r.report(place, f"a SQLite URL looks like {SQLITE_PREFIX}/data/socialjour.db")
        return url
    file_part, question, query = rest[1:].partition("?")
    if file_part in ("", ":memory:"):
        return url
    return f"{SQLITE_PREFIX}/{absolute(r.base_dir, file_part)}{question}{query}"


def _web(r: Reader, root: dict[str, Any]) -> WebSettings:
    table = r.section(
        root,
        "web",
        ("listen", "public_base_url", "admin_listen", "trusted_proxies"),
        required=False,
    )
    if table is None:
        return WebSettings()
    listen = r.optional(
        table,
        "web",
        "listen",
        lambda text: split_host_port(text) is not None,
        "host:port like 127.0.0.1:8080 or [::1]:8080",
    )
    host, port = split_host_port(listen or "") or ("127.0.0.1", 8080)
    public_base_url = r.optional(table, "web", "public_base_url", is_http_url, HTTP_URL)
    if public_base_url is None:
        shown_host = _WILDCARD_HOSTS.get(host, host)
        if ":" in shown_host:
            shown_host = f"[{shown_host}]"
        public_base_url = f"http://{shown_host}:{port}"
    admin_host, admin_port = _admin_listen(r, table, (host, port))
    return WebSettings(
        listen_host=host,
        listen_port=port,
        public_base_url=public_base_url.rstrip("/"),
        admin_host=admin_host,
        admin_port=admin_port,
        trusted_proxies=r.strings(table, "web", "trusted_proxies", _is_ip_network, IP_NETWORK),
    )


IP_NETWORK = "an IP address or network like 127.0.0.1, ::1 or 10.0.0.0/8"


def _is_ip_network(text: str) -> bool:
    """An address or a CIDR network without host bits (``10.0.0.1/8`` is a typo)."""
    try:
        ipaddress.ip_network(text)
    except ValueError:
        return False
    return True


def _admin_listen(r: Reader, table: dict[str, Any], public: tuple[str, int]) -> tuple[str, int]:
    """``web.admin_listen``: where ``/healthz`` and ``/metrics`` are served, never on the
    public listener (port 0: any free port, logged at start-up)."""
    admin_listen = r.optional(
        table,
        "web",
        "admin_listen",
        lambda text: split_host_port(text) is not None,
        "host:port like 127.0.0.1:9090 or [::1]:9090",
    )
    admin = split_host_port(admin_listen or "") or ("127.0.0.1", 9090)
    if admin[1] != 0 and admin[1] == public[1]:
        r.report(
            key_place("web", "admin_listen"),
            f"port {admin[1]} is web.listen's too: health and metrics need a port of their own",
        )
    return admin


def _duty(r: Reader, root: dict[str, Any]) -> DutySettings:
    table = r.section(root, "duty", _DUTY_KEYS, required=True)
    if table is None:
        return DutySettings(room_alias="", members=())
    room_alias = r.required(table, "duty", "room_alias", is_room_alias, ROOM_ALIAS)
    if "members" not in table:
        r.report("duty.members", "missing required key")
    elif table["members"] == []:
        r.report("duty.members", "list at least one person who may open and work cases")
    members = r.strings(table, "duty", "members", is_user_id, USER_ID)
    leads = r.strings(table, "duty", "leads", is_user_id, USER_ID)
    language = r.choice(table, "duty", "language", LANGUAGES, "sv")
    case_prefix = r.optional(
        table,
        "duty",
        "case_prefix",
        lambda text: _CASE_PREFIX.fullmatch(text) is not None,
        "1 to 8 uppercase letters A-Z like SJ",
    )
    return DutySettings(
        room_alias=room_alias,
        members=members,
        leads=leads,
        language=language,
        case_prefix=case_prefix or "SJ",
    )


def _check_next_signer(
    r: Reader,
    municipalities: tuple[Municipality, ...],
    policies: Mapping[str, EscalationPolicy],
    written: set[str],
) -> None:
    """A ``next_signer`` step of a policy the file defines needs a second decision-maker.

    The built-in ``standard`` policy is left alone: there a lone decision-maker's
    ``next_signer`` step alerts the duty leads instead.
    """
    for index, m in enumerate(municipalities):
        policy = policies.get(m.escalation_policy)
        if policy is None or len(m.decision_makers) != 1 or policy.name not in written:
            continue
        if any(step.action == "next_signer" for step in policy.steps):
            r.report(
                key_place(item_place("municipalities", index), "escalation_policy"),
                f"policy {policy.name!r} has a next_signer step, but {m.name} has one "
                "decision-maker; add a deputy or use a policy without next_signer",
            )


def _municipalities(
    r: Reader, root: dict[str, Any], policy_names: set[str], notify: NotifySettings
) -> tuple[Municipality, ...]:
    if "municipalities" not in root:
        return ()
    municipalities: list[Municipality] = []
    first_place_of_id: dict[str, str] = {}
    for place, raw in r.tables("municipalities", root["municipalities"], "[[municipalities]]"):
        table = r.table(place, raw, _MUNICIPALITY_KEYS)
        if table is None:
            continue
        municipality_id = r.required(
            table,
            place,
            "id",
            lambda text: _MUNICIPALITY_ID.fullmatch(text) is not None,
            "lowercase letters a-z, digits, _ or - like 'skovde'",
        )
        if municipality_id in first_place_of_id:
            r.report(
                key_place(place, "id"),
                f"duplicate id {municipality_id!r} (also used by "
                f"{first_place_of_id[municipality_id]})",
            )
        elif municipality_id:
            first_place_of_id[municipality_id] = place
        policy = r.optional(table, place, "escalation_policy") or STANDARD_POLICY.name
        if policy not in policy_names:
            r.report(
                key_place(place, "escalation_policy"),
                f"no escalation policy named {policy!r}; "
                f"defined: {', '.join(sorted(policy_names))}",
            )
        municipality = Municipality(
            id=municipality_id,
            name=r.required(table, place, "name"),
            intake_room_alias=r.required(
                table, place, "intake_room_alias", is_room_alias, ROOM_ALIAS
            ),
            intake_members=r.strings(table, place, "intake_members", is_user_id, USER_ID),
            escalation_policy=policy,
            decision_makers=_decision_makers(r, table, place, notify),
            notify=read_rule(r, table, place, notify=notify) or DEFAULT_NOTIFY,
            roster_ics=_roster_ics(r, table, place),
            meetings_ics=_roster_ics(r, table, place, "meetings_ics"),
            meetings=read_meetings(r, table, place),
            body_name=r.optional(table, place, "body_name"),
            delegates=_delegates(r, table, place, notify),
        )
        check_appointments(r, municipality, place)
        municipalities.append(municipality)
    return tuple(municipalities)


def delegate_warnings(
    municipalities: Sequence[Municipality], forms: Mapping[str, FormTemplate]
) -> list[Problem]:
    """A warning for each municipality without delegates while a form needs one.

    A warning, not a problem: the built-in ``sol_placering`` form is a delegate form in
    every installation, and a municipality that lists no delegate may never use it; the
    bot loads, and ``!skicka`` on such a form tells the worker and the duty leads that
    nobody can be asked (as when no decision-maker is on call).
    """
    needing = sorted(form.id for form in forms.values() if form.signer == "delegate")
    if not needing:
        return []
    shown = ", ".join(needing)
    verb = "is" if len(needing) == 1 else "are"
    return [
        Problem(
            key_place(item_place("municipalities", index), "delegates"),
            f"{m.name or m.id} lists no delegate, but {shown} {verb} decided by a delegate "
            'under the delegation order (signer = "delegate"), never by a decision-maker: '
            "!skicka cannot send it there; add [[municipalities.delegates]] with user_id, "
            "name, title and delegation_ref",
        )
        for index, m in enumerate(municipalities)
        if not m.delegates
    ]


def _roster_ics(
    r: Reader, table: dict[str, Any], place: str, key: str = "roster_ics"
) -> str | None:
    """A calendar (``roster_ics``, ``meetings_ics``): a path (relative to the config
    file) or an https URL."""
    value = r.optional(table, place, key)
    if value is None:
        return None
    if value.startswith(("http://", "https://")):
        if not is_http_url(value):
            r.report(key_place(place, key), f"expected {HTTP_URL}")
        return value
    path = absolute(r.base_dir, value)
    if not path.is_file():
        r.report(key_place(place, key), f"no such file: {path}")
    return str(path)


def _decision_makers(
    r: Reader, municipality: dict[str, Any], parent: str, notify: NotifySettings
) -> tuple[DecisionMaker, ...]:
    if "decision_makers" not in municipality:
        return ()
    makers: list[DecisionMaker] = []
    first_place_of_user: dict[str, str] = {}
    hint = "[[municipalities.decision_makers]]"
    array_place = key_place(parent, "decision_makers")
    for place, raw in r.tables(array_place, municipality["decision_makers"], hint):
        table = r.table(place, raw, _DECISION_MAKER_KEYS)
        if table is None:
            continue
        user_id = r.required(table, place, "user_id", is_user_id, USER_ID)
        if user_id in first_place_of_user:
            r.report(
                key_place(place, "user_id"),
                f"{user_id} is listed twice in this municipality "
                f"(also at {first_place_of_user[user_id]})",
            )
        elif user_id:
            first_place_of_user[user_id] = place
        email = r.optional(table, place, "email", is_email, "an email address like dag@example.org")
        phone = r.optional(table, place, "phone", is_phone, "a phone number like +46701234567")
        name = r.required(table, place, "name")
        makers.append(
            DecisionMaker(
                user_id=user_id,
                name=name,
                role=read_role(r, table, place),
                title=r.optional(table, place, "title"),
                appointment=read_appointment(r, table, place, name=name),
                email=email,
                phone=phone,
                personal_number=_personal_number(r, table, place),
                notify=read_rule(
                    r, table, place, notify=notify, email=email, phone=phone, person=True
                ),
            )
        )
    return tuple(makers)


def _delegates(
    r: Reader, municipality: dict[str, Any], parent: str, notify: NotifySettings
) -> tuple[Delegate, ...]:
    """``[[municipalities.delegates]]``: who decides the forms whose ``signer`` is
    ``delegate``, in the order they are asked; read like the decision-makers."""
    if "delegates" not in municipality:
        return ()
    delegates: list[Delegate] = []
    first_place_of_user: dict[str, str] = {}
    array_place = key_place(parent, "delegates")
    hint = "[[municipalities.delegates]]"
    for place, raw in r.tables(array_place, municipality["delegates"], hint):
        table = r.table(place, raw, _DELEGATE_KEYS)
        if table is None:
            continue
        user_id = r.required(table, place, "user_id", is_user_id, USER_ID)
        if user_id in first_place_of_user:
            r.report(
                key_place(place, "user_id"),
                f"{user_id} is listed twice among the delegates "
                f"(also at {first_place_of_user[user_id]})",
            )
        elif user_id:
            first_place_of_user[user_id] = place
        email = r.optional(table, place, "email", is_email, "an email address like dag@example.org")
        phone = r.optional(table, place, "phone", is_phone, "a phone number like +46701234567")
        delegates.append(
            Delegate(
                user_id=user_id,
                name=r.required(table, place, "name"),
                delegation_ref=r.required(table, place, "delegation_ref"),
                title=r.optional(table, place, "title"),
                email=email,
                phone=phone,
                personal_number=_personal_number(r, table, place),
                notify=read_rule(
                    r, table, place, notify=notify, email=email, phone=phone, person=True
                ),
            )
        )
    return tuple(delegates)


def _personal_number(r: Reader, table: dict[str, Any], parent: str) -> str | None:
    """``YYYYMMDD-NNNN`` (the hyphen may be left out), a real date and a valid check digit.

    The same rule as a report's personnummer answer (``config.personnummer``).
    A samordningsnummer (day + 60) is accepted.
    """
    text = r.optional(table, parent, "personal_number", secret=True)
    if text is None:
        return None
    place = key_place(parent, "personal_number")
    if not _TWELVE.fullmatch(text.strip()):
        r.report(place, f"expected {PERSONAL_NUMBER} (twelve digits)")
        return None
    try:
        return personnummer.parse(text.strip(), today=date.today())
    except personnummer.PersonnummerError as exc:
        r.report(place, _PERSONAL_NUMBER_PROBLEMS[exc.reason])
        return None


_TWELVE = re.compile(r"[0-9]{8}-?[0-9]{4}")
_PERSONAL_NUMBER_PROBLEMS = {
    "format": f"expected {PERSONAL_NUMBER} (twelve digits)",
    "date": f"expected {PERSONAL_NUMBER}; its first eight digits are not a date",
    "checksum": "the check digit (the last digit) does not match; a typing mistake?",
    "future": f"expected {PERSONAL_NUMBER}; the date lies in the future",
}


def _policies(r: Reader, root: dict[str, Any]) -> Mapping[str, EscalationPolicy]:
    """The file's policies over the built-in ``standard`` one."""
    policies = {STANDARD_POLICY.name: STANDARD_POLICY}
    raw = root.get("escalation_policies", {})
    if not isinstance(raw, dict):
        r.report(
            "escalation_policies",
            f"expected tables like [escalation_policies.standard], got {describe(raw)}",
        )
        raw = {}
    for name, spec in raw.items():
        place = key_place("escalation_policies", name)
        table = r.table(place, spec, ("steps", "repeat_every", "ack_window"))
        if table is None:
            continue
        policies[name] = EscalationPolicy(
            name=name,
            steps=_steps(r, table, place),
            repeat_every=r.duration(table, place, "repeat_every"),
            ack_window=r.duration(table, place, "ack_window") or STANDARD_POLICY.ack_window,
        )
    return MappingProxyType(policies)


def _steps(r: Reader, policy: dict[str, Any], parent: str) -> tuple[EscalationStep, ...]:
    place = key_place(parent, "steps")
    if "steps" not in policy:
        r.report(place, "missing required key")
        return ()
    if policy["steps"] == []:
        r.report(place, "list at least one step, or the decision is never escalated")
    steps: list[EscalationStep] = []
    hint = '[{ after = "5m", action = "remind" }, ...]'
    for step_place, raw in r.tables(place, policy["steps"], hint):
        table = r.table(step_place, raw, ("after", "action"))
        if table is None:
            continue
        after = r.duration(table, step_place, "after", required=True)
        action = r.choice(table, step_place, "action", ACTIONS, "remind", required=True)
        if after is None:
            continue
        if steps and after <= steps[-1].after:
            r.report(
                key_place(step_place, "after"),
                f"steps must come in increasing order of after; {format_duration(after)} "
                f"is not later than the step before ({format_duration(steps[-1].after)})",
            )
        steps.append(EscalationStep(after=after, action=action))
    return tuple(steps)


def _signing(r: Reader, root: dict[str, Any]) -> SigningSettings:
    table = r.section(root, "signing", _SIGNING_KEYS, required=False)
    defaults = SigningSettings()
    if table is None:
        return defaults
    auth_methods = defaults.auth_methods
    if "auth_methods" in table:
        auth_methods = r.strings(
            table,
            "signing",
            "auth_methods",
            lambda method: method in AUTH_METHODS,
            f"one of {', '.join(AUTH_METHODS)}",
        )
        if table["auth_methods"] == []:
            r.report(
                "signing.auth_methods",
                f"list at least one way for signers to identify: {', '.join(AUTH_METHODS)}",
            )
    link_ttl = r.duration(table, "signing", "link_ttl") or defaults.link_ttl
    if link_ttl > MAX_LINK_TTL:
        r.report(
            "signing.link_ttl",
            f"a signing link may stay valid at most {format_duration(MAX_LINK_TTL)}, "
            f"got {format_duration(link_ttl)}",
        )
    seal_pkcs12 = _existing_file(r, table, "signing", "seal_pkcs12")
    seal_password = r.optional(table, "signing", "seal_pkcs12_password", secret=True)
    if "seal_pkcs12_password" in table and "seal_pkcs12" not in table:
        r.report("signing.seal_pkcs12_password", "given without signing.seal_pkcs12")
    password_unresolved = "seal_pkcs12_password" in table and seal_password is None
    if seal_pkcs12 is not None and not password_unresolved:
        _check_pkcs12(r, seal_pkcs12, seal_password)
    pkcs11 = _pkcs11(r, table)
    if "seal_pkcs12" in table and "pkcs11" in table:
        r.report(
            "signing.pkcs11",
            "give one seal key: either signing.seal_pkcs12 (a file) or [signing.pkcs11] "
            "(a token), not both",
        )
    bankid = _bankid(r, table)
    oidc = _oidc(r, table)
    for method in ("bankid", "oidc"):
        if method in auth_methods and method not in table:
            r.report(
                f"signing.{method}",
                f"missing required section [signing.{method}]: signing.auth_methods lists {method}",
            )
    return SigningSettings(
        auth_methods=auth_methods,
        link_ttl=link_ttl,
        seal_pkcs12=seal_pkcs12,
        seal_pkcs12_password=seal_password,
        pkcs11=pkcs11,
        tsa_url=r.optional(
            table,
            "signing",
            "tsa_url",
            is_http_url,
            "an http:// or https:// URL like https://timestamp.example.org/tsa",
        ),
        trust_roots=_trust_roots(r, table),
        seal_processes=r.integer(
            table, "signing", "seal_processes", default_seal_processes(), minimum=0, maximum=32
        ),
        bankid=bankid,
        oidc=oidc,
    )


def _existing_file(
    r: Reader, table: dict[str, Any], parent: str, key: str, *, required: bool = False
) -> Path | None:
    """A path relative to the config file that must name an existing file."""
    text = r.required(table, parent, key) if required else r.optional(table, parent, key)
    if not text:
        return None
    path = absolute(r.base_dir, text)
    if not path.is_file():
        what = "a folder, not a file" if path.is_dir() else "no such file"
        r.report(key_place(parent, key), f"{what}: {str(path)!r}")
        return None
    return path


def _check_pkcs12(r: Reader, path: Path, password: str | None) -> None:
    """Open the seal key now, so check-config finds a wrong password before a signer does."""
    try:
        key, certificate, _ = pkcs12.load_key_and_certificates(
            path.read_bytes(), password.encode("utf-8") if password is not None else None
        )
    except OSError as error:
        r.report("signing.seal_pkcs12", f"cannot read {str(path)!r}: {error.strerror or error}")
        return
    except ValueError:
        r.report(
            "signing.seal_pkcs12",
            f"{str(path)!r} cannot be opened: not a PKCS#12 file, or "
            "signing.seal_pkcs12_password is wrong or missing",
        )
        return
    if key is None or certificate is None:
        r.report(
            "signing.seal_pkcs12",
            f"{str(path)!r} must hold the seal's private key and its certificate",
        )


def _pkcs11(r: Reader, signing: dict[str, Any]) -> Pkcs11Settings | None:
    if "pkcs11" not in signing:
        return None
    place = "signing.pkcs11"
    table = r.table(place, signing["pkcs11"], _PKCS11_KEYS)
    if table is None:
        return None
    module = _existing_file(r, table, place, "module", required=True)
    settings = Pkcs11Settings(
        module=module or Path(),
        token_label=r.required(table, place, "token_label"),
        key_label=r.required(table, place, "key_label"),
        pin=r.optional(table, place, "pin", secret=True),
        cert_label=r.optional(table, place, "cert_label"),
    )
    return settings if module is not None else None


def _trust_roots(r: Reader, signing: dict[str, Any]) -> tuple[Path, ...]:
    """Certificate files (PEM or DER), each relative to the config file and readable."""
    place = key_place("signing", "trust_roots")
    roots: list[Path] = []
    for index, text in enumerate(r.strings(signing, "signing", "trust_roots")):
        path = absolute(r.base_dir, text)
        at = item_place(place, index)
        if not path.is_file():
            r.report(at, f"no such file: {str(path)!r}")
            continue
        data = path.read_bytes()
        try:
            if b"-----BEGIN CERTIFICATE-----" in data:
                x509.load_pem_x509_certificates(data)
            else:
                x509.load_der_x509_certificate(data)
        except ValueError:
            r.report(at, f"{str(path)!r} is not an X.509 certificate (PEM or DER)")
            continue
        roots.append(path)
    return tuple(roots)


def _bankid(r: Reader, signing: dict[str, Any]) -> BankIdSettings | None:
    if "bankid" not in signing:
        return None
    place = "signing.bankid"
    table = r.table(place, signing["bankid"], _BANKID_KEYS)
    if table is None:
        return None
    url = r.required(
        table,
        place,
        "url",
        is_http_url,
        "an https:// URL like https://appapi2.test.bankid.com/rp/v6.0",
    )
    client_cert = _existing_file(r, table, place, "client_cert", required=True)
    ca_cert = _existing_file(r, table, place, "ca_cert", required=True)
    settings = BankIdSettings(
        url=url.rstrip("/"),
        client_cert=client_cert or Path(),
        client_key=_existing_file(r, table, place, "client_key"),
        ca_cert=ca_cert or Path(),
        client_key_password=r.optional(table, place, "client_key_password", secret=True),
    )
    return settings if url and client_cert and ca_cert else None


def _oidc(r: Reader, signing: dict[str, Any]) -> OidcSettings | None:
    if "oidc" not in signing:
        return None
    place = "signing.oidc"
    table = r.table(place, signing["oidc"], _OIDC_KEYS)
    if table is None:
        return None
    defaults = OidcSettings(issuer="", client_id="")
    issuer = r.required(
        table, place, "issuer", is_http_url, "an https:// URL like https://idp.example.org"
    )
    client_id = r.required(table, place, "client_id")
    scopes = defaults.scopes
    if "scopes" in table:
        scopes = r.strings(table, place, "scopes")
        if isinstance(table["scopes"], list) and "openid" not in scopes:
            r.report(key_place(place, "scopes"), 'must include "openid"')
    settings = OidcSettings(
        issuer=issuer.rstrip("/"),
        client_id=client_id,
        client_secret=r.optional(table, place, "client_secret", secret=True),
        scopes=scopes,
        personal_number_claim=(
            r.optional(table, place, "personal_number_claim") or defaults.personal_number_claim
        ),
        ca_cert=_existing_file(r, table, place, "ca_cert"),
    )
    return settings if issuer and client_id else None


def _logging(r: Reader, root: dict[str, Any]) -> LoggingSettings:
    """``[log] level, format``; ``[logging] level`` is the old name, still read."""
    if "log" in root and "logging" in root:
        r.report("logging", "write [log] only: [logging] is its old name")
        return LoggingSettings()
    name = "log" if "log" in root else "logging"
    keys = ("level", "format") if name == "log" else ("level",)
    table = r.section(root, name, keys, required=False)
    if table is None:
        return LoggingSettings()
    level = r.optional(
        table,
        name,
        "level",
        lambda text: text.upper() in LOG_LEVELS,
        f"a log level: {', '.join(LOG_LEVELS)}",
    )
    fmt = r.choice(table, name, "format", LOG_FORMATS, "text") if name == "log" else "text"
    return LoggingSettings(level=(level or "INFO").upper(), format=fmt)


def _backup(r: Reader, root: dict[str, Any]) -> BackupSettings:
    """``[backup] passphrase = { env = "..." }``: what backups are encrypted with."""
    table = r.section(root, "backup", ("passphrase",), required=False)
    if table is None:
        return BackupSettings()
    return BackupSettings(passphrase=r.optional(table, "backup", "passphrase", secret=True))


def _retention(r: Reader, root: dict[str, Any]) -> RetentionSettings:
    """``[retention] after_close = "90d"``: how long an ended case's personal data is kept."""
    table = r.section(root, "retention", ("after_close",), required=False)
    if not table:
        return RetentionSettings()
    after_close = r.duration(table, "retention", "after_close")
    return RetentionSettings(after_close=after_close) if after_close else RetentionSettings()


def _form_dirs(r: Reader, root: dict[str, Any]) -> tuple[Path, ...]:
    """Extra template folders, relative to the config file; each must exist."""
    table = r.section(root, "forms", ("extra_dirs",), required=False)
    if table is None:
        return ()
    raw = table.get("extra_dirs")
    folders: list[Path] = []
    for index, text in enumerate(r.strings(table, "forms", "extra_dirs")):
        folder = absolute(r.base_dir, text)
        if folder.is_dir():
            folders.append(folder)
        else:
            # strings() drops repeats, so find where this one stands in the file
            at = raw.index(text) if isinstance(raw, list) and text in raw else index
            r.report(
                item_place(key_place("forms", "extra_dirs"), at),
                f"no folder {str(folder)!r}; name a folder of form templates (*.toml)",
            )
    return tuple(folders)
