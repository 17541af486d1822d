"""The decision side wired as the bot's composition root wires it, for tests.

One object with the case side (:class:`DecisionService`), the signing page's
backend (:class:`SigningBackend`) and the escalation engine, built over a test's
settings, database, messenger and clock (the real classes, no fakes inside).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from config import DecisionMaker, Settings
from handlers.alerts import Alerter, DirectRooms
from handlers.context import Clock
from handlers.decisions import DecisionService, Sent
from handlers.escalation import Escalator, NoWakeups
from handlers.issuing import Issuer
from handlers.links import LinkSealer
from handlers.messenger import Messenger
from handlers.notify import Notifier
from handlers.oncall import on_call
from handlers.signing_backend import SigningBackend
from signing.identity import IdentityProvider
from storage.models import Case


class Services:
    def __init__(
        self,
        settings: Settings,
        sessions: async_sessionmaker[AsyncSession],
        messenger: Messenger,
        clock: Clock,
        *,
        signer: Any = None,
        providers: Mapping[str, IdentityProvider] | None = None,
        notifier: Notifier | None = None,
        duty_room: str | None = "!duty:test",
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.messenger = messenger
        self.clock = clock
        self.sealer = LinkSealer()
        self.rooms = DirectRooms(sessions, messenger, clock)
        self.duty_room_id = duty_room
        self.alerter = Alerter(
            settings, messenger, self.rooms, self.sealer, duty_room=lambda: self.duty_room_id
        )

        async def who(municipality_id: str, at: datetime) -> list[DecisionMaker]:
            return await on_call(settings, sessions, municipality_id, at)

        self.wakeups = NoWakeups()
        self.escalator = Escalator(
            settings,
            sessions,
            clock,
            self.alerter,
            Issuer(settings, self.sealer),
            who,
            wakeups=self.wakeups,
            notifier=notifier,
        )
        self.decisions = DecisionService(
            settings,
            sessions,
            messenger,
            clock,
            issuer=self.escalator.issuer,
            escalator=self.escalator,
            alerter=self.alerter,
            on_call=who,
        )
        self.backend = SigningBackend(
            settings,
            sessions,
            messenger,
            clock,
            escalator=self.escalator,
            providers=dict(providers or {}),
            signer=signer,
        )
        self.decisions.records = self.backend.records  # as bot/app.py wires it

    # The signing page's side, as the tests drive it.
    @property
    def providers(self) -> Mapping[str, IdentityProvider]:
        return self.backend.providers

    @providers.setter
    def providers(self, value: Mapping[str, IdentityProvider]) -> None:
        self.backend.providers = value

    @property
    def signer(self) -> Any:
        return self.backend.signer

    @signer.setter
    def signer(self, value: Any) -> None:
        self.backend.signer = value

    def __getattr__(self, name: str) -> Any:
        return getattr(self.backend, name)

    async def request_signature(self, case: Case, report: Mapping[str, Any]) -> Sent:
        return await self.decisions.request_signature(case, report)

    async def direct_room(self, user_id: str) -> str:
        return await self.rooms.get(user_id)
