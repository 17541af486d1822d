"""What the admin listener reports: the bot's health state and its Prometheus metrics.

One :class:`Metrics` per running bot owns its own ``CollectorRegistry`` (never
prometheus_client's global one), so two bots in one process, or the tests, never
share a sample. Handlers do not import this module: the composition root hands each
one the ``observe`` method of the histogram it feeds (a plain ``float -> None``).

Scraping never loads cases: the counts come from one aggregate query
(``count_open`` below), whatever the number of open cases.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

#: Seconds from a message's arrival at the bot to its reply being sent.
DIALOGUE_TURN_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0)
#: Seconds from the signature to the signed PDF in the case room (seal, TSA, upload).
SIGN_TO_PDF_BUCKETS = (0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0)
#: Seconds an escalation step started after its due time.
LATENESS_BUCKETS = (0.1, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)

#: Open cases per status, from one ``GROUP BY`` query.
CountOpen = Callable[[], Awaitable[Mapping[str, int]]]


class Phase(StrEnum):
    """What ``/healthz`` says the process is doing (CONTRACT: ``status``)."""

    #: Migrating, logging in, setting up rooms, resuming: not serving yet.
    STARTING = "starting"
    #: Synced and handling events.
    OK = "ok"
    #: Healthy but not the leader (issue 11): does not sync, send or schedule.
    STANDBY = "standby"


@dataclass
class HealthState:
    """The process's phase, set by the composition root as it starts (and, with a hot
    standby, as it gains or loses the lead); ``/healthz`` reports it."""

    phase: Phase = Phase.STARTING
    #: ``time.monotonic()`` of the last change of phase.
    since: float = field(default_factory=time.monotonic)

    def set(self, phase: Phase) -> None:
        if phase is not self.phase:
            self.phase = phase
            self.since = time.monotonic()


class _Sampled(Collector):
    """Counters the Matrix connection keeps itself, read at scrape time."""

    def __init__(self, syncs: Callable[[], int]) -> None:
        self._syncs = syncs

    def collect(self) -> Iterator[Metric]:
        yield CounterMetricFamily(
            "socialjour_syncs", "Sync responses handled from the homeserver.", self._syncs()
        )


class Metrics:
    """The bot's metrics in a registry of their own."""

    def __init__(self, *, open_statuses: tuple[str, ...], syncs: Callable[[], int]) -> None:
        self.registry = CollectorRegistry()
        self.open_statuses = open_statuses
        registry = self.registry
        self.up = Gauge("socialjour_up", "1 while the bot runs.", registry=registry)
        self.up.set(1)
        registry.register(_Sampled(syncs))
        self.events_handled = Counter(
            "socialjour_events_handled",
            "Inbox events (messages, reactions, votes) given to the handlers.",
            registry=registry,
        )
        self.open_cases = Gauge(
            "socialjour_open_cases", "Cases not closed or archived.", registry=registry
        )
        self.open_cases_by_status = Gauge(
            "socialjour_open_cases_by_status",
            "Open cases per status.",
            ["status"],
            registry=registry,
        )
        self.dialogue_turn = Histogram(
            "socialjour_dialogue_turn_seconds",
            "From a message's arrival at the bot to its answer being sent.",
            buckets=DIALOGUE_TURN_BUCKETS,
            registry=registry,
        )
        self.sign_to_pdf = Histogram(
            "socialjour_sign_to_pdf_seconds",
            "From the signature to the signed PDF posted in the case room.",
            buckets=SIGN_TO_PDF_BUCKETS,
            registry=registry,
        )
        self.escalation_lateness = Histogram(
            "socialjour_escalation_lateness_seconds",
            "How long after its due time an escalation step started.",
            buckets=LATENESS_BUCKETS,
            registry=registry,
        )

    def set_open_cases(self, counts: Mapping[str, int]) -> None:
        """The open cases per status (a status without cases reads 0, not absent)."""
        for status in self.open_statuses:
            self.open_cases_by_status.labels(status=status).set(counts.get(status, 0))
        self.open_cases.set(sum(counts.get(status, 0) for status in self.open_statuses))

    async def scrape(self, count_open: CountOpen) -> str:
        """The text exposition, with the case counts read now (one query)."""
        self.set_open_cases(await count_open())
        return generate_latest(self.registry).decode()


def observe_seconds(observe: Callable[[float], None]) -> Callable[[float], None]:
    """``observe``, never below zero (clocks of two machines, a due time in the future)."""

    def observe_clamped(seconds: float) -> None:
        observe(max(0.0, seconds))

    return observe_clamped
