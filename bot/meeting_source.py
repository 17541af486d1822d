"""The committees' meeting calendars (``meetings_ics``), from a file or a URL.

The real :class:`handlers.deadline_jobs.MeetingSource`, read the way the on-call
calendars are (:mod:`bot.roster_source`): a file when its modification time or size
changes, a URL at :meth:`MeetingCalendars.start` and every hour after. A copy
replaces the last good one only when it is a readable calendar; a warning names the
municipality and what went wrong, never the calendar or the URL.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import aiohttp

from bot.roster_source import _read_if_changed, _read_limited, _TooLarge
from config import Settings
from handlers.roster import MalformedRoster, parse_calendar

__all__ = ["MeetingCalendars"]

log = logging.getLogger(__name__)

#: Meeting dates are set months ahead; an hour is soon enough to see a change.
REFRESH_EVERY = timedelta(hours=1)


@dataclass
class _Copy:
    data: bytes | None = None
    file_state: tuple[int, int] | None = None
    failing: bool = False


class MeetingCalendars:
    """Meeting calendars by municipality id, from ``Municipality.meetings_ics``."""

    def __init__(
        self,
        settings: Settings,
        *,
        refresh_every: timedelta = REFRESH_EVERY,
        timeout: float = 20.0,
    ) -> None:
        self._locations = {
            m.id: m.meetings_ics for m in settings.municipalities if m.meetings_ics is not None
        }
        self._copies = {municipality_id: _Copy() for municipality_id in self._locations}
        self._refresh_every = refresh_every
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None
        self._task: asyncio.Task[None] | None = None

    async def calendar(self, municipality_id: str) -> bytes | None:
        """The last good copy of the municipality's meeting calendar (None: none yet)."""
        location = self._locations.get(municipality_id)
        if location is None:
            return None
        if not _is_url(location):
            await self._read_file(municipality_id, Path(location))
        return self._copies[municipality_id].data

    async def refresh(self) -> None:
        urls = {mid: loc for mid, loc in self._locations.items() if _is_url(loc)}
        await asyncio.gather(*(self._fetch(mid, url) for mid, url in urls.items()))

    async def start(self) -> None:
        if self._task is None and any(_is_url(loc) for loc in self._locations.values()):
            self._task = asyncio.create_task(self._refresh_loop(), name="meetings-refresh")

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()

    async def _refresh_loop(self) -> None:
        while True:
            try:
                await self.refresh()
            except Exception:
                log.exception("refreshing the meeting calendars failed")
            await asyncio.sleep(self._refresh_every.total_seconds())

    async def _fetch(self, municipality_id: str, url: str) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        try:
            async with self._session.get(
                url, headers={"Accept": "text/calendar, */*;q=0.5"}
            ) as response:
                if response.status != 200:
                    log.warning(
                        "meeting calendar of %s: HTTP %s; keeping the last good copy",
                        municipality_id,
                        response.status,
                    )
                    return
                data = await _read_limited(response)
        except (aiohttp.ClientError, TimeoutError, _TooLarge) as exc:
            log.warning(
                "meeting calendar of %s could not be fetched (%s); keeping the last good copy",
                municipality_id,
                type(exc).__name__,
            )
            return
        await self._accept(municipality_id, data)

    async def _read_file(self, municipality_id: str, path: Path) -> None:
        copy = self._copies[municipality_id]
        try:
            state, data = await asyncio.to_thread(_read_if_changed, path, copy.file_state)
        except OSError as exc:
            if not copy.failing:
                log.warning(
                    "meeting calendar file of %s cannot be read (%s); keeping the last good copy",
                    municipality_id,
                    type(exc).__name__,
                )
            copy.failing, copy.file_state = True, None
            return
        copy.failing, copy.file_state = False, state
        if data is not None:
            await self._accept(municipality_id, data)

    async def _accept(self, municipality_id: str, data: bytes) -> None:
        try:
            await asyncio.to_thread(parse_calendar, data)
        except MalformedRoster:
            log.warning(
                "meeting calendar of %s is malformed; keeping the last good copy", municipality_id
            )
            return
        self._copies[municipality_id].data = data


def _is_url(location: str) -> bool:
    return location.startswith(("http://", "https://"))
