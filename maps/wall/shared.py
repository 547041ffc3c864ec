"""Board reads shared by every wall page of a process: one query per change, not one per page.

A dossier notice reaches every open wall at once, and each page's feed then needs the same
figures. Each asks for a result read *after* the moment it took the notice in hand (so the read
sees the change that was committed before the notice was sent); a read already running that
began after that moment, or the last one finished, serves every page that asks, so a wall of
many screens costs one query per burst. A page that leaves while waiting does not cancel the
read the others wait for.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import psycopg
from psycopg_pool import AsyncConnectionPool

from ioc.platform import Platform
from maps.wall import traffic
from maps.wall.dossiers import DossierBoard, board, places

T = TypeVar("T")
Conn = psycopg.AsyncConnection[Any]


class SharedRead(Generic[T]):
    """Reads ``read`` on a connection of ``pool()`` (the platform's, once started), sharing
    each result with every caller it fits."""

    def __init__(
        self, pool: Callable[[], AsyncConnectionPool[Any]], read: Callable[[Conn], Awaitable[T]]
    ) -> None:
        self._pool = pool
        self._read = read
        self._running: tuple[float, asyncio.Task[T]] | None = None
        self._last: tuple[float, T] | None = None

    async def after(self, moment: float) -> T:
        """A result whose read began at or after ``moment`` (a ``time.monotonic()`` value)."""
        if self._last is not None and self._last[0] >= moment:
            return self._last[1]
        if self._running is None or self._running[0] < moment:
            started = time.monotonic()
            task = asyncio.create_task(self._run(started))
            self._running = (started, task)
        return await asyncio.shield(self._running[1])

    async def _run(self, started: float) -> T:
        try:
            async with self._pool().connection() as conn:
                found = await self._read(conn)
            if self._last is None or self._last[0] < started:
                self._last = (started, found)
            return found
        finally:
            if self._running is not None and self._running[0] == started:
                self._running = None


@dataclass(frozen=True)
class WallReads:
    """The boards the wall's feeds read again when the hub says they changed."""

    dossiers: SharedRead[DossierBoard]
    sensors: SharedRead[traffic.TrafficBoard]
    places: SharedRead[list[tuple[Any, ...]]]  # the whole dossier layer

    @classmethod
    def of(cls, platform: Platform) -> WallReads:
        settings = platform.settings
        return cls(
            SharedRead(
                lambda: platform.pool,
                lambda conn: board(conn, platform.clock.now(), settings.zone),
            ),
            SharedRead(lambda: platform.pool, traffic.sensors_board),
            SharedRead(lambda: platform.pool, places),
        )
