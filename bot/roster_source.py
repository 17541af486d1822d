"""The municipalities' on-call calendars, from a file or a URL.

The real :class:`handlers.roster.RosterSource`. A file is read when its modification
time (or size) changes; a URL is fetched at :meth:`CalendarRosterSource.start` and
every 15 minutes after. Either way a copy replaces the last good one only when it is a
readable calendar: a failed fetch, an HTML error page or a half-written file leave the
roster as it was, with a warning that names the municipality and what went wrong,
never the calendar's content or the URL (published calendar URLs carry a secret).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import aiohttp

from config import Settings
from handlers.roster import MalformedRoster, parse_calendar

__all__ = ["CalendarRosterSource"]

log = logging.getLogger(__name__)

REFRESH_EVERY = timedelta(minutes=15)
#: A roster calendar is a few hundred kilobytes at most; anything larger is a mistake.
MAX_BYTES = 5 * 1024 * 1024


class _TooLarge(Exception):
    """The calendar is larger than MAX_BYTES (kept out: the last good copy stays)."""


@dataclass
class _Copy:
    """The last good calendar of one municipality, and the file state it was read at."""

    data: bytes | None = None
    file_state: tuple[int, int] | None = None
    file_failing: bool = False


def _is_url(location: str) -> bool:
    return location.startswith(("http://", "https://"))


class CalendarRosterSource:
    """On-call calendars by municipality id, from ``Municipality.roster_ics``.

    Pass ``session`` to share an aiohttp session (it is then not closed here).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        session: aiohttp.ClientSession | None = None,
        refresh_every: timedelta = REFRESH_EVERY,
        timeout: float = 20.0,
    ) -> None:
        self._locations = {
            m.id: m.roster_ics for m in settings.municipalities if m.roster_ics is not None
        }
        self._copies = {municipality_id: _Copy() for municipality_id in self._locations}
        self._session = session
        self._owns_session = session is None
        self._refresh_every = refresh_every
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._task: asyncio.Task[None] | None = None
        self._file_lock = asyncio.Lock()

    async def calendar(self, municipality_id: str) -> bytes | None:
        """The last good copy of the municipality's calendar (None: none, or none yet)."""
        location = self._locations.get(municipality_id)
        if location is None:
            return None
        if not _is_url(location):
            async with self._file_lock:
                await self._read_file(municipality_id, Path(location))
        return self._copies[municipality_id].data

    async def refresh(self) -> None:
        """Fetch every URL calendar once, side by side."""
        urls = {mid: loc for mid, loc in self._locations.items() if _is_url(loc)}
        await asyncio.gather(*(self._fetch(mid, url) for mid, url in urls.items()))

    async def start(self) -> None:
        """Fetch the URL calendars now and every ``refresh_every`` in the background."""
        if self._task is None and any(_is_url(loc) for loc in self._locations.values()):
            self._task = asyncio.create_task(self._refresh_loop(), name="roster-refresh")

    async def stop(self) -> None:
        """Stop refreshing and let go of the HTTP session; the copies stay usable.

        Nothing fetches without the refresh task, so an own session is closed here too
        (a later :meth:`refresh` or :meth:`start` opens a new one).
        """
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._owns_session and self._session is not None:
            session, self._session = self._session, None
            await session.close()

    async def close(self) -> None:
        """Everything :meth:`stop` does; the name other closable collaborators use."""
        await self.stop()

    async def _refresh_loop(self) -> None:
        while True:
            try:
                await self.refresh()
            except Exception:  # never let one bad round end the refreshing
                log.exception("refreshing the on-call calendars failed")
            await asyncio.sleep(self._refresh_every.total_seconds())

    async def _fetch(self, municipality_id: str, url: str) -> None:
        session = self._http()
        try:
            async with session.get(
                url, timeout=self._timeout, headers={"Accept": "text/calendar, */*;q=0.5"}
            ) as response:
                if response.status != 200:
                    log.warning(
                        "on-call calendar of %s: HTTP %s; keeping the last good copy",
                        municipality_id,
                        response.status,
                    )
                    return
                data = await _read_limited(response)
        except (aiohttp.ClientError, TimeoutError, _TooLarge) as exc:
            log.warning(
                "on-call calendar of %s could not be fetched (%s); keeping the last good copy",
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
            if not copy.file_failing:  # once per failure, not at every look-up
                log.warning(
                    "on-call calendar file of %s cannot be read (%s); keeping the last good copy",
                    municipality_id,
                    type(exc).__name__,
                )
            copy.file_failing = True
            copy.file_state = None
            return
        copy.file_failing = False
        copy.file_state = state
        if data is not None:
            await self._accept(municipality_id, data)

    async def _accept(self, municipality_id: str, data: bytes) -> None:
        """Keep ``data`` if it is a calendar that can be read."""
        try:
            await asyncio.to_thread(parse_calendar, data)
        except MalformedRoster:
            log.warning(
                "on-call calendar of %s is malformed; keeping the last good copy", municipality_id
            )
            return
        self._copies[municipality_id].data = data

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self._session


def _read_if_changed(
    path: Path, known: tuple[int, int] | None
) -> tuple[tuple[int, int], bytes | None]:
    """The file's (mtime, size) and its bytes, or None for the bytes if it is unchanged."""
    with path.open("rb") as handle:
        status = os.fstat(handle.fileno())
        state = (status.st_mtime_ns, status.st_size)
        if state == known:
            return state, None
        if status.st_size > MAX_BYTES:
            raise OSError(f"larger than {MAX_BYTES} bytes")
        return state, handle.read(MAX_BYTES + 1)


async def _read_limited(response: aiohttp.ClientResponse) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > MAX_BYTES:
            raise _TooLarge()
        chunks.append(chunk)
    return b"".join(chunks)
