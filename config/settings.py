"""The validated settings every other package reads.

Frozen, slotted dataclasses with tuples and read-only mappings: once loaded, nothing
in the running bot can change the configuration behind another component's back.
Validation lives in ``config.loader``; these classes only hold the result.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Literal

from config.deadlines import DeadlineSettings

if TYPE_CHECKING:
    from config.forms import FormTemplate

__all__ = [
    "ACTIONS",
    "AUTH_METHODS",
    "CHANNELS",
    "DEFAULT_BODY_NAME",
    "DEFAULT_NOTIFY",
    "DELEGATE_LABEL",
    "LANGUAGES",
    "LEGACY_ROLES",
    "LOG_FORMATS",
    "LOG_LEVELS",
    "ROLES",
    "SIGNER_KINDS",
    "STANDARD_POLICY",
    "TRUST_LEVELS",
    "Action",
    "Appointment",
    "BackupSettings",
    "Channel",
    "DecisionMaker",
    "Delegate",
    "DutySettings",
    "EmailSettings",
    "EscalationPolicy",
    "EscalationStep",
    "Language",
    "LoggingSettings",
    "MatrixSettings",
    "Municipality",
    "NotifyRule",
    "NotifySettings",
    "PhoneSettings",
    "Problem",
    "RetentionSettings",
    "Role",
    "Settings",
    "Signer",
    "SignerKind",
    "SigningSettings",
    "StorageSettings",
    "Trust",
    "WebSettings",
]

Trust = Literal["cross-signed", "all"]
Language = Literal["sv", "en"]
#: Who may decide when the committee's decision cannot be awaited: the chair, or another
#: member the committee has appointed (LVU 6 § andra stycket; LVM 13 §). The last two
#: are the old values, still read (check-config says what to write instead): a "vice
#: ordförande" title gives no mandate of its own, the appointment does.
Role = Literal["ordförande", "förordnad ledamot", "vice ordförande", "ledamot"]
Action = Literal["remind", "next_signer", "alert_leads"]
#: Who signs a form's document (the template's ``signer``): the on-call chair or appointed
#: member (LVU 6 § andra stycket, LVM 13 §), a delegate under the committee's delegation
#: order (kommunallagen 6 kap. 37 §), or nobody: the worker's own record, sealed.
SignerKind = Literal["committee_member", "delegate", "none"]
Channel = Literal["matrix", "sms", "call", "email"]

TRUST_LEVELS: tuple[Trust, ...] = ("cross-signed", "all")
LANGUAGES: tuple[Language, ...] = ("sv", "en")
ROLES: tuple[Role, ...] = ("ordförande", "förordnad ledamot")
#: The old role values, each with what to write instead.
LEGACY_ROLES: Mapping[str, str] = MappingProxyType(
    {
        "vice ordförande": 'role = "förordnad ledamot" and title = "vice ordförande"',
        "ledamot": 'role = "förordnad ledamot"',
    }
)
ACTIONS: tuple[Action, ...] = ("remind", "next_signer", "alert_leads")
SIGNER_KINDS: tuple[SignerKind, ...] = ("committee_member", "delegate", "none")
#: How a delegate's role is shown when the config gives no ``title``.
DELEGATE_LABEL = "delegat"
CHANNELS: tuple[Channel, ...] = ("matrix", "sms", "call", "email")
AUTH_METHODS = ("matrix-code", "bankid", "oidc")
#: The deciding body when ``body_name`` is not given.
DEFAULT_BODY_NAME = "Socialnämnden"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LogFormat = Literal["text", "json"]
LOG_FORMATS: tuple[LogFormat, ...] = ("text", "json")


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the config, and where: ``file.toml: duty.members[1]``.

    Defined here, below both the loader and the form templates, so that each can
    report problems without importing the other.
    """

    place: str
    message: str

    def __str__(self) -> str:
        return f"{self.place}: {self.message}"


@dataclass(frozen=True, slots=True)
class MatrixSettings:
    """How the bot logs in and whose devices it trusts with encrypted messages."""

    homeserver: str
    user_id: str
    password: str | None = field(default=None, repr=False)
    device_name: str = "Socialjour"
    trust: Trust = "cross-signed"
    store_key: str | None = field(default=None, repr=False)
    """Optional passphrase protecting the E2EE store and the cross-signing keys."""
    sync_timeline_limit: int = 100
    """Events per room per sync; more in one sync are back-filled through /messages."""


@dataclass(frozen=True, slots=True)
class StorageSettings:
    """Where state lives; both paths are absolute so the working directory never matters."""

    data_dir: Path
    database_url: str


@dataclass(frozen=True, slots=True)
class WebSettings:
    """The signing web service: where it listens and the address people's phones open."""

    listen_host: str = "127.0.0.1"
    listen_port: int = 8080
    public_base_url: str = "http://127.0.0.1:8080"
    #: ``admin_listen``: ``/healthz`` and ``/metrics``, apart from the public listener
    #: (they answer anyone who reaches them, so loopback or a monitoring network only).
    admin_host: str = "127.0.0.1"
    admin_port: int = 9090
    #: ``trusted_proxies``: reverse proxies (addresses or CIDR networks) whose
    #: ``X-Forwarded-For`` names the client; empty: the header is never believed.
    trusted_proxies: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class DutySettings:
    """The duty room and the people allowed to work cases in it."""

    room_alias: str
    members: tuple[str, ...]
    leads: tuple[str, ...] = ()
    language: Language = "sv"
    case_prefix: str = "SJ"

    @property
    def allowed(self) -> frozenset[str]:
        """Everyone who may use the duty room: leads need not repeat themselves in members."""
        return frozenset(self.members) | frozenset(self.leads)


@dataclass(frozen=True, slots=True)
class NotifyRule:
    """One channel of a person's alert rule: ``via`` this channel ``after`` the alert,
    unless the person has acknowledged (or someone has decided) by then."""

    after: timedelta
    via: Channel


#: Matrix at once; every other channel is opt-in per municipality or person.
DEFAULT_NOTIFY: tuple[NotifyRule, ...] = (NotifyRule(timedelta(0), "matrix"),)


@dataclass(frozen=True, slots=True)
class Appointment:
    """The appointment (förordnande) a decision-maker's power to decide comes from.

    LVU 6 § andra stycket and LVM 13 §: when the committee's decision cannot be
    awaited, the chair or another member *the committee has appointed* may decide.
    The record says which body appointed (or, for the chair, elected) the person,
    when, under which paragraph of its minutes, and until when it holds; the decision
    document prints it. Days are Swedish calendar days, both ends included.
    """

    appointed_by: str
    appointed_on: date
    minutes_ref: str
    valid_until: date

    def covers(self, day: date) -> bool:
        """Whether the appointment holds on ``day`` (a local Swedish date)."""
        return self.appointed_on <= day <= self.valid_until


@dataclass(frozen=True, slots=True)
class DecisionMaker:
    """A committee member who can sign urgent decisions for one municipality."""

    user_id: str
    name: str
    role: Role
    email: str | None = None
    phone: str | None = None
    #: YYYYMMDD-NNNN; needed for BankID and OIDC, where the identity is a personal number.
    personal_number: str | None = field(default=None, repr=False)
    #: The person's own alert rule; None means the municipality's default rule.
    notify: tuple[NotifyRule, ...] | None = None
    #: A title shown with the name ("vice ordförande"); it gives no power to decide.
    title: str | None = None
    #: The appointment the power to decide comes from; None: never asked to decide.
    appointment: Appointment | None = None

    @property
    def mandate(self) -> Literal["ordförande", "förordnad ledamot"]:
        """The legal role: the chair, or (every other value) an appointed member."""
        return "ordförande" if self.role == "ordförande" else "förordnad ledamot"

    @property
    def label(self) -> str:
        """How the person's role is shown: their title if they have one."""
        return self.title or self.role

    def may_decide_on(self, day: date) -> bool:
        """Whether an appointment covers ``day`` (a local Swedish date): without one
        the person is never asked to decide and cannot sign."""
        return self.appointment is not None and self.appointment.covers(day)


@dataclass(frozen=True, slots=True)
class Delegate:
    """An official who decides a ``delegate`` form under the committee's delegation order.

    Not a politician: the duty lead (jourchef) or another officer the delegation order
    names for urgent decisions (kommunallagen (2017:725) 6 kap. 37 §). The decision
    document prints ``delegation_ref``, the point of the order the power comes from.
    """

    user_id: str
    name: str
    #: The point of the delegation order, e.g. "Delegationsordning 2026 p. 4.2".
    delegation_ref: str
    #: The person's title ("jourchef"); shown with the name.
    title: str | None = None
    email: str | None = None
    phone: str | None = None
    #: YYYYMMDD-NNNN; needed for BankID and OIDC, where the identity is a personal number.
    personal_number: str | None = field(default=None, repr=False)
    #: The person's own alert rule; None means the municipality's default rule.
    notify: tuple[NotifyRule, ...] | None = None

    @property
    def label(self) -> str:
        """How the person's role is shown: their title, or "delegat"."""
        return self.title or DELEGATE_LABEL

    @property
    def role(self) -> str:
        """The role as messages name it (the same as :attr:`label`)."""
        return self.label

    def may_decide_on(self, day: date) -> bool:
        """A delegate decides under the delegation order the config names: any day."""
        return True


#: Anyone a signing link can go to: a committee member or a delegate.
Signer = DecisionMaker | Delegate


@dataclass(frozen=True, slots=True)
class Municipality:
    """A home municipality: its intake room and its decision-makers in on-call order."""

    id: str
    name: str
    intake_room_alias: str
    intake_members: tuple[str, ...] = ()
    escalation_policy: str = "standard"
    decision_makers: tuple[DecisionMaker, ...] = ()
    #: The default alert rule of its decision-makers (channels they have no address
    #: for are left out).
    notify: tuple[NotifyRule, ...] = DEFAULT_NOTIFY
    #: On-call order from an iCalendar file: an absolute path, or an https URL.
    roster_ics: str | None = None
    #: The deciding body as printed on decisions ("Individ- och familjenämnden",
    #: "Kommunstyrelsen", ...); None: "Socialnämnden" (in English, the committee).
    body_name: str | None = None
    #: The officials who decide ``delegate`` forms, in the order they are asked.
    delegates: tuple[Delegate, ...] = ()
    #: The committee's meeting dates from an iCalendar file (absolute path or https URL),
    #: for deadlines counted to its next meeting; with ``meetings``, both count.
    meetings_ics: str | None = None
    #: The committee's meeting days written in the config (``meetings = [2026-12-10]``).
    meetings: tuple[date, ...] = ()

    @property
    def body(self) -> str:
        """The deciding body's name in Swedish (``body_name`` or Socialnämnden)."""
        return self.body_name or DEFAULT_BODY_NAME

    def delegate(self, user_id: str) -> Delegate | None:
        """The delegate with this Matrix id, or None."""
        return next((d for d in self.delegates if d.user_id == user_id), None)

    def rule_for(self, maker: Signer) -> tuple[NotifyRule, ...]:
        """The channels to use for ``maker``: Matrix first, always, then their rule."""
        rule = maker.notify if maker.notify is not None else self.notify
        reachable = [
            r
            for r in rule
            if r.via == "matrix"
            or (r.via in ("sms", "call") and maker.phone)
            or (r.via == "email" and maker.email)
        ]
        if not any(r.via == "matrix" for r in reachable):
            reachable.insert(0, DEFAULT_NOTIFY[0])
        return tuple(sorted(reachable, key=lambda r: (r.after, r.via != "matrix")))


@dataclass(frozen=True, slots=True)
class EscalationStep:
    """What to do when a decision is still unsigned ``after`` this long."""

    after: timedelta
    action: Action


@dataclass(frozen=True, slots=True)
class EscalationPolicy:
    """Steps in increasing ``after`` order; ``repeat_every`` repeats alert_leads afterwards."""

    name: str
    steps: tuple[EscalationStep, ...]
    repeat_every: timedelta | None = None
    #: An acknowledgement ("I am on it") pauses the policy this long.
    ack_window: timedelta = timedelta(minutes=15)


STANDARD_POLICY = EscalationPolicy(
    name="standard",
    steps=(
        EscalationStep(after=timedelta(minutes=5), action="remind"),
        EscalationStep(after=timedelta(minutes=10), action="next_signer"),
        EscalationStep(after=timedelta(minutes=15), action="alert_leads"),
    ),
    repeat_every=timedelta(minutes=10),
)
"""Used when the config file defines no policy named ``standard``."""


@dataclass(frozen=True, slots=True)
class Pkcs11Settings:
    """A seal key on a hardware token or HSM (PKCS#11)."""

    module: Path
    token_label: str
    key_label: str
    pin: str | None = field(default=None, repr=False)
    cert_label: str | None = None  # defaults to key_label


@dataclass(frozen=True, slots=True)
class BankIdSettings:
    """BankID Relying Party API v6 over mutual TLS."""

    url: str  # e.g. https://appapi2.test.bankid.com/rp/v6.0
    client_cert: Path  # PEM: the RP certificate (may also hold the key)
    client_key: Path | None  # PEM key, if not in client_cert
    ca_cert: Path  # PEM: the CA that issued the BankID server certificate
    client_key_password: str | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class OidcSettings:
    """An OpenID Connect provider (Freja eID, a SITHS IdP, ...), code flow with PKCE."""

    issuer: str
    client_id: str
    client_secret: str | None = field(default=None, repr=False)
    scopes: tuple[str, ...] = ("openid", "profile")
    #: The ID-token/userinfo claim that holds the Swedish personal number.
    personal_number_claim: str = "personal_number"
    #: Extra CA bundle for the provider's TLS (a private IdP); system roots otherwise.
    ca_cert: Path | None = None


@dataclass(frozen=True, slots=True)
class SigningSettings:
    """How signers identify, how long a signing link stays valid, and the seal key."""

    auth_methods: tuple[str, ...] = ("matrix-code",)
    link_ttl: timedelta = timedelta(hours=12)
    #: The seal key that makes the PAdES signature: a PKCS#12 file ...
    seal_pkcs12: Path | None = None
    seal_pkcs12_password: str | None = field(default=None, repr=False)
    #: ... or a PKCS#11 token.
    pkcs11: Pkcs11Settings | None = None
    #: RFC 3161 time-stamping authority; with it signatures are PAdES B-T, else B-B.
    tsa_url: str | None = None
    #: Certificates that `socialjour verify` and the bot trust as roots.
    trust_roots: tuple[Path, ...] = ()
    #: Processes that seal (and render) decisions beside the bot's, so that pyHanko's
    #: CPU does not hold the GIL the event loop needs; 0: one thread in the bot's own
    #: process. The config file's default is :func:`default_seal_processes`; 0 here
    #: keeps a Seal built from these settings in code (tests) in-process.
    seal_processes: int = 0
    bankid: BankIdSettings | None = None
    oidc: OidcSettings | None = None


def default_seal_processes(cpus: int | None = None) -> int:
    """``signing.seal_processes`` when the config file does not say: one process per
    spare core, at most two (five decisions at once are rare), so 1 on two cores and
    0 (a thread) on one, where another process would only compete for the core."""
    count = cpus if cpus is not None else (os.cpu_count() or 1)
    return max(0, min(2, count - 1))


@dataclass(frozen=True, slots=True)
class EmailSettings:
    """SMTP for alert e-mails: STARTTLS on ``port`` (587) or implicit TLS (465)."""

    host: str
    port: int = 587
    starttls: bool = True
    tls: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    from_addr: str = "socialjour@localhost"
    #: Extra CA bundle for a private mail server's TLS; system roots otherwise.
    ca_cert: Path | None = None


@dataclass(frozen=True, slots=True)
class PhoneSettings:
    """SMS and voice calls through a provider's HTTP API (46elks)."""

    url: str
    username: str
    password: str = field(repr=False)
    from_number: str
    provider: str = "46elks"
    #: The secret in the webhook's URL path that proves a callback is the provider's;
    #: generated and kept in ``data_dir/keys`` when not configured.
    webhook_secret: str | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class NotifySettings:
    """The channels outside Matrix; each is off unless configured."""

    email: EmailSettings | None = None
    phone: PhoneSettings | None = None


@dataclass(frozen=True, slots=True)
class LoggingSettings:
    """``[log]`` (formerly ``[logging]``): verbosity, a standard ``logging`` level name in
    upper case, and the line format: ``text`` for people, ``json`` for a log shipper."""

    level: str = "INFO"
    format: LogFormat = "text"


@dataclass(frozen=True, slots=True)
class BackupSettings:
    """``[backup]``: the passphrase ``socialjour backup`` encrypts with and ``restore``
    decrypts with (``--passphrase-env NAME`` overrides it)."""

    passphrase: str | None = field(default=None, repr=False)


#: How long the bot keeps a case's personal data after the case ended (closed or
#: cancelled), when ``[retention] after_close`` is not set.
DEFAULT_RETENTION = timedelta(days=90)


@dataclass(frozen=True, slots=True)
class RetentionSettings:
    """``[retention]``: when the personal data the bot holds for an ended case (answers,
    documents, signing evidence) is deleted. The audit trail, without personal data,
    stays."""

    #: Counted from the moment the case was closed (or cancelled).
    after_close: timedelta = DEFAULT_RETENTION


def _standard_policies() -> Mapping[str, EscalationPolicy]:
    return MappingProxyType({STANDARD_POLICY.name: STANDARD_POLICY})


def _no_forms() -> Mapping[str, FormTemplate]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the bot needs, validated, with paths made absolute."""

    config_path: Path
    matrix: MatrixSettings
    storage: StorageSettings
    web: WebSettings
    duty: DutySettings
    municipalities: tuple[Municipality, ...] = ()
    escalation_policies: Mapping[str, EscalationPolicy] = field(
        default_factory=_standard_policies, hash=False
    )
    signing: SigningSettings = SigningSettings()
    notify: NotifySettings = NotifySettings()
    logging: LoggingSettings = LoggingSettings()
    #: ``[backup]``: how backups are encrypted.
    backup: BackupSettings = BackupSettings()
    #: ``[deadlines]``: when running deadline clocks are reminded.
    deadlines: DeadlineSettings = field(default_factory=DeadlineSettings)
    #: ``[retention]``: when an ended case's personal data is deleted.
    retention: RetentionSettings = RetentionSettings()
    form_dirs: tuple[Path, ...] = ()
    """Folders from ``[forms] extra_dirs`` whose templates add to or replace the built-in ones."""
    forms: Mapping[str, FormTemplate] = field(default_factory=_no_forms, hash=False)
    """Form templates by id: the built-in ones, then those in ``form_dirs`` (``load_settings``)."""
    warnings: tuple[Problem, ...] = ()
    """What the config allows but should change (an old role, an appointment that is
    missing or runs out); ``check-config`` prints them, ``run`` logs them. The place
    is the key's, without the file name."""

    def municipality(self, id: str) -> Municipality | None:
        """The municipality with this id, or None when the config does not list it."""
        for municipality in self.municipalities:
            if municipality.id == id:
                return municipality
        return None
