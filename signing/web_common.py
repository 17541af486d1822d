"""Small things the API and the page share."""

from __future__ import annotations

import ipaddress
import math
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from aiohttp import web


def language(request: web.Request) -> str:
    """``?lang=en`` or the browser's language; Swedish unless English is asked for."""
    wanted = request.query.get("lang") or request.headers.get("Accept-Language") or "sv"
    return "en" if wanted.lower().startswith("en") else "sv"


# -- the client's address behind trusted reverse proxies --------------------------------------

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def trusted_networks(entries: Iterable[str]) -> tuple[IPNetwork, ...]:
    """``web.trusted_proxies`` (addresses or CIDR networks, checked by the config
    loader) as networks."""
    return tuple(ipaddress.ip_network(entry.strip(), strict=False) for entry in entries)


def _address(text: str) -> IPAddress | None:
    """An address as a proxy writes it: bare, ``[v6]``, with or without a port;
    IPv4-mapped IPv6 as IPv4. None for anything else (``unknown``, obfuscated ids)."""
    text = text.strip().strip('"')
    if text.startswith("["):
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:  # IPv4 with a port
        text = text.partition(":")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def client_address(
    peer: str | None, forwarded_for: Sequence[str], trusted: Sequence[IPNetwork]
) -> str | None:
    """The client's address: the TCP peer, unless that is a trusted proxy; then the
    right-most ``X-Forwarded-For`` entry that is not itself a trusted proxy.

    Only entries appended by trusted proxies are believed: everything left of the
    first untrusted one may have been written by the client, so a client cannot
    choose its address (for BankID's ``endUserIp`` and the per-address limit).
    """
    current = _address(peer or "")
    if current is None or not _is_trusted(current, trusted):
        return peer
    entries = [part for header in forwarded_for for part in header.split(",") if part.strip()]
    for entry in reversed(entries):
        address = _address(entry)
        if address is None:  # garbled by someone: the last trusted hop is all we know
            break
        current = address
        if not _is_trusted(address, trusted):
            break
    return str(current)


def _is_trusted(address: IPAddress, trusted: Sequence[IPNetwork]) -> bool:
    return any(address in network for network in trusted)


# -- failed identification per client address ------------------------------------------------

#: Identification starts and failed code checks one client address may make, across
#: all links, within :data:`ADDRESS_WINDOW_SECONDS`. A decision-maker needs one start
#: and seldom more than a couple of tries; twenty leaves room for a few people behind
#: one office's address, and stops a script long before a six-digit code falls.
ADDRESS_LIMIT = 20
#: The sliding window of :data:`ADDRESS_LIMIT`, in seconds (ten minutes).
ADDRESS_WINDOW_SECONDS = 600.0
#: Addresses remembered at most (old ones are dropped first): memory stays bounded
#: whatever a flood of addresses does.
ADDRESS_MEMORY = 100_000


def address_key(address: str) -> str:
    """Whose attempts count together: an IPv4 address, or an IPv6 /64 (one household
    or phone gets a whole /64, so single IPv6 addresses would be free to change)."""
    parsed = _address(address)
    if isinstance(parsed, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((parsed, 64), strict=False))
    return str(parsed) if parsed is not None else address


@dataclass
class SlidingWindow:
    """At most ``limit`` events per key in the last ``window`` seconds, in memory.

    :meth:`take` checks and records in one step (no ``await`` in between), so
    requests in parallel cannot all pass the check before one of them is counted.
    Kept per process: a restart forgets it, and the per-link limit in the database
    still holds.
    """

    limit: int = ADDRESS_LIMIT
    window: float = ADDRESS_WINDOW_SECONDS
    clock: Callable[[], float] = time.monotonic
    memory: int = ADDRESS_MEMORY
    _events: dict[str, deque[float]] = field(default_factory=dict, init=False, repr=False)

    def take(self, key: str) -> int | None:
        """Count one event for ``key``; None when allowed, else the whole seconds to
        wait before the next one is (nothing is counted then)."""
        now = self.clock()
        events = self._events.pop(key, None) or deque()
        while events and events[0] <= now - self.window:
            events.popleft()
        self._events[key] = events  # (re-inserted: the dict's order is least recent first)
        if len(events) >= self.limit:
            return max(1, math.ceil(events[0] + self.window - now))
        events.append(now)
        while len(self._events) > self.memory:
            del self._events[next(iter(self._events))]
        return None

    def give_back(self, key: str) -> None:
        """Uncount the latest event for ``key`` (it turned out not to be a failure)."""
        events = self._events.get(key)
        if events:
            events.pop()
