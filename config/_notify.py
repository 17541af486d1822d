"""The alert channels outside Matrix: ``[notify.email]``, ``[notify.phone]`` and the
``notify = [...]`` rules of municipalities and decision-makers."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from config._reader import Reader, absolute, describe, is_email, is_http_url, is_phone, key_place
from config.durations import format_duration
from config.settings import (
    CHANNELS,
    DEFAULT_NOTIFY,
    EmailSettings,
    NotifyRule,
    NotifySettings,
    PhoneSettings,
)

__all__ = ["NOTIFY_KEY", "read_notify", "read_rule"]

NOTIFY_KEY = "notify"
_EMAIL_KEYS = ("host", "port", "starttls", "tls", "username", "password", "from", "ca_cert")
_PHONE_KEYS = ("provider", "url", "username", "password", "from", "webhook_secret")
PROVIDERS = ("46elks",)


def read_notify(r: Reader, root: dict[str, Any]) -> NotifySettings:
    raw = root.get(NOTIFY_KEY)
    if raw is None:
        return NotifySettings()
    table = r.table(NOTIFY_KEY, raw, ("email", "phone"))
    if table is None:
        return NotifySettings()
    return NotifySettings(email=_email(r, table), phone=_phone(r, table))


def _email(r: Reader, notify: dict[str, Any]) -> EmailSettings | None:
    place = key_place(NOTIFY_KEY, "email")
    if "email" not in notify:
        return None
    table = r.table(place, notify["email"], _EMAIL_KEYS)
    if table is None:
        return None
    port = table.get("port", 587)
    if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
        r.report(key_place(place, "port"), f"expected a port number, got {describe(port)}")
        port = 587
    flags = {}
    for key, default in (("starttls", port != 465), ("tls", port == 465)):
        value = table.get(key, default)
        if not isinstance(value, bool):
            r.report(key_place(place, key), f"expected true or false, got {describe(value)}")
            value = default
        flags[key] = value
    if flags["starttls"] and flags["tls"]:
        r.report(
            key_place(place, "tls"),
            "choose one: tls = true (implicit TLS, port 465) or starttls = true (port 587)",
        )
    ca = r.optional(table, place, "ca_cert")
    return EmailSettings(
        host=r.required(table, place, "host"),
        port=port,
        starttls=flags["starttls"],
        tls=flags["tls"],
        username=r.optional(table, place, "username", secret=True),
        password=r.optional(table, place, "password", secret=True),
        from_addr=r.required(
            table, place, "from", is_email, "an email address like socialjour@example.org"
        ),
        ca_cert=absolute(r.base_dir, ca) if ca else None,
    )


def _phone(r: Reader, notify: dict[str, Any]) -> PhoneSettings | None:
    place = key_place(NOTIFY_KEY, "phone")
    if "phone" not in notify:
        return None
    table = r.table(place, notify["phone"], _PHONE_KEYS)
    if table is None:
        return None
    provider = r.choice(table, place, "provider", PROVIDERS, "46elks")
    url = r.optional(table, place, "url", is_http_url, "an http(s) URL") or (
        "https://api.46elks.com/a1"
    )
    return PhoneSettings(
        url=url.rstrip("/"),
        username=r.required(table, place, "username", secret=True),
        password=r.required(table, place, "password", secret=True),
        from_number=r.required(table, place, "from", is_phone, "a phone number like +46701234567"),
        provider=provider,
        webhook_secret=r.optional(table, place, "webhook_secret", secret=True),
    )


def read_rule(
    r: Reader,
    table: dict[str, Any],
    parent: str,
    *,
    notify: NotifySettings | None,
    email: str | None = None,
    phone: str | None = None,
    person: bool = False,
) -> tuple[NotifyRule, ...] | None:
    """A ``notify = [{ after = "2m", via = "sms" }, ...]`` rule; None when absent.

    For a person (``person=True``) a channel they have no address for is a problem;
    a municipality's default rule simply skips it for such a person.
    """
    if NOTIFY_KEY not in table:
        return None
    place = key_place(parent, NOTIFY_KEY)
    rules: list[NotifyRule] = []
    hint = '[{ after = "0m", via = "matrix" }, { after = "2m", via = "sms" }]'
    for item_place, raw in r.tables(place, table[NOTIFY_KEY], hint):
        item = r.table(item_place, raw, ("after", "via"))
        if item is None:
            continue
        after = _after(r, item, item_place)
        via = r.choice(item, item_place, "via", CHANNELS, "matrix", required=True)
        if after is None:
            continue
        via_place = key_place(item_place, "via")
        if via in ("sms", "call") and notify is not None and notify.phone is None:
            r.report(via_place, f"{via} needs a [notify.phone] section")
        if via == "email" and notify is not None and notify.email is None:
            r.report(via_place, "email needs a [notify.email] section")
        if person and via in ("sms", "call") and not phone:
            r.report(via_place, f"{via} needs this person's phone")
        if person and via == "email" and not email:
            r.report(via_place, "email needs this person's email")
        if via == "matrix" and after.total_seconds() != 0:
            r.report(
                key_place(item_place, "after"),
                f"Matrix always comes first, at once; {format_duration(after)} is not allowed",
            )
            after = DEFAULT_NOTIFY[0].after
        rules.append(NotifyRule(after=after, via=via))
    return tuple(rules)


_ZERO = re.compile(r"0+[smhd]?")


def _after(r: Reader, item: dict[str, Any], place: str) -> timedelta | None:
    """Like any duration, but ``"0m"`` (at once) is allowed here."""
    raw = item.get("after")
    if isinstance(raw, str) and _ZERO.fullmatch(raw.strip()):
        return timedelta(0)
    return r.duration(item, place, "after", required=True)
