"""Alerts outside Matrix (e-mail, SMS, a phone call): what they say and who sends them.

These texts leave the encrypted rooms, so they carry the case number, the decision
type and the signing link (or "open Element") and nothing else: never a name, a
personal number or an answer from the report. The escalation engine calls a
:class:`Notifier`; ``bot/notifiers.py`` has the real one, :class:`MemoryNotifier`
stands in for it in unit tests.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

__all__ = [
    "NOTIFY_CHANNELS",
    "REFERENCE_PATTERN",
    "Acknowledge",
    "Alert",
    "MemoryNotifier",
    "Notifier",
    "NotifyError",
    "alert_texts",
]

#: The channels a :class:`Notifier` may offer (Matrix is not one: it has its own path).
NOTIFY_CHANNELS: frozenset[str] = frozenset({"email", "sms", "call"})
#: What a reference may look like: it travels in URLs to and from the phone provider.
REFERENCE_PATTERN = r"[A-Za-z0-9._:-]{1,128}"
_REFERENCE = re.compile(REFERENCE_PATTERN)


@dataclass(frozen=True, slots=True)
class Alert:
    """One alert to one person: only what may leave the encrypted rooms."""

    case_number: str
    """E.g. ``SJ-2026-0042``."""
    decision_type: str
    """E.g. ``Omedelbart omhändertagande (6 § LVU)``."""
    link: str | None
    """The signing link; None makes the text say "open Element" instead."""
    language: str
    """``"en"`` for English; anything else is Swedish."""
    reference: str
    """An opaque id with no personal data; pressing 1 in a call acknowledges it."""

    def __post_init__(self) -> None:
        if not _REFERENCE.fullmatch(self.reference):
            raise ValueError(f"an alert reference must match {REFERENCE_PATTERN}")


class NotifyError(Exception):
    """A channel failed. ``code`` is short and carries no content; ``retryable`` says
    whether trying again later can help (network trouble, the provider busy or down)
    or not (refused credentials, a refused address: someone must fix the config)."""

    def __init__(self, code: str, *, retryable: bool) -> None:
        super().__init__(code)
        self.code = code
        self.retryable = retryable

    def __repr__(self) -> str:
        return f"NotifyError({self.code!r}, retryable={self.retryable})"


class Notifier(Protocol):
    async def send(self, channel: str, to: str, alert: Alert) -> None:
        """Send ``alert`` over ``channel`` ("email", "sms" or "call") to ``to`` (an e-mail
        address or an E.164 number); raises :class:`NotifyError` when it fails."""
        ...

    def channels(self) -> frozenset[str]:
        """The channels that are configured and can be used."""
        ...


#: Acknowledge the alert with this reference (a "1" pressed in a call); True when it
#: acknowledged something, False when there was nothing (left) to acknowledge.
Acknowledge = Callable[[str], Awaitable[bool]]


def _one_line(text: str) -> str:
    return " ".join(text.split())


_TEXTS = {
    "sv": {
        "subject": "Socialjour: ett beslut väntar på din underskrift ({number})",
        "body": (
            "Hej!\n\n"
            "Ett beslut i ärende {number} väntar på din underskrift:\n{kind}\n\n"
            "{action}\n\n"
            "Meddelandet innehåller medvetet inga personuppgifter.\n\n"
            "Socialjour (automatiskt meddelande, går inte att svara på)\n"
        ),
        "link": "Läs och underteckna beslutet här:\n{link}",
        "element": "Öppna Element för att läsa och underteckna beslutet.",
        "sms": (
            "Socialjour: Ett beslut väntar på din underskrift. Ärende {number}: {kind}. {action}"
        ),
        "sms_element": "Öppna Element.",
    },
    "en": {
        "subject": "Socialjour: a decision awaits your signature ({number})",
        "body": (
            "Hello,\n\n"
            "A decision in case {number} is waiting for your signature:\n{kind}\n\n"
            "{action}\n\n"
            "This message deliberately contains no personal data.\n\n"
            "Socialjour (automatic message, please do not reply)\n"
        ),
        "link": "Read and sign it here:\n{link}",
        "element": "Open Element to read and sign the decision.",
        "sms": "Socialjour: A decision awaits your signature. Case {number}: {kind}. {action}",
        "sms_element": "Open Element.",
    },
}


def alert_texts(alert: Alert) -> tuple[str, str, str]:
    """``(email subject, email body, sms text)`` in the alert's language (Swedish unless
    it is ``"en"``), from the case number, the decision type and the link alone."""
    texts = _TEXTS["en" if alert.language == "en" else "sv"]
    number = _one_line(alert.case_number)
    kind = _one_line(alert.decision_type)
    link = _one_line(alert.link) if alert.link else ""
    subject = texts["subject"].format(number=number)
    action = texts["link"].format(link=link) if link else texts["element"]
    body = texts["body"].format(number=number, kind=kind, action=action)
    sms = texts["sms"].format(number=number, kind=kind, action=link or texts["sms_element"])
    return subject, body, sms


@dataclass
class MemoryNotifier:
    """A :class:`Notifier` that only records: for unit tests of the code that alerts.

    ``fail("sms")`` makes that channel raise until ``recover("sms")``; a channel not in
    ``configured`` raises ``channel_unavailable`` like the real one.
    """

    configured: frozenset[str] = NOTIFY_CHANNELS
    sent: list[tuple[str, str, Alert]] = field(default_factory=list)
    failures: dict[str, NotifyError] = field(default_factory=dict)

    def fail(self, channel: str, *, retryable: bool = True, code: str = "test_failure") -> None:
        self.failures[channel] = NotifyError(code, retryable=retryable)

    def recover(self, channel: str) -> None:
        self.failures.pop(channel, None)

    def channels(self) -> frozenset[str]:
        return self.configured

    async def send(self, channel: str, to: str, alert: Alert) -> None:
        if channel not in self.configured:
            raise NotifyError("channel_unavailable", retryable=False)
        failure = self.failures.get(channel)
        if failure is not None:
            raise NotifyError(failure.code, retryable=failure.retryable)
        self.sent.append((channel, to, alert))

    def to(self, channel: str) -> list[str]:
        """Who got something over ``channel``, in order."""
        return [to for sent_channel, to, _ in self.sent if sent_channel == channel]
