"""Injectable time: production uses the wall clock, tests jump a manual one."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, tzinfo
from typing import Protocol
from zoneinfo import ZoneInfo


class Clock(Protocol):
    def now(self) -> datetime: ...

    async def sleep(self, seconds: float) -> None: ...


def stop_if_cancelled() -> None:
    """Raise ``CancelledError`` when the running task has been asked to stop.

    A retry loop catches a library's errors and goes round again. When a cancellation lands
    inside a library that answers it with an error of its own (a transaction's rollback that
    fails on a connection whose query was just cancelled), the loop would take it for a failed
    round and never stop: a worker deaf to Ctrl-C. The task still counts the request
    (``Task.cancelling``), so each loop's pause asks first.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


class SystemClock:
    """The wall clock, in a given zone."""

    def __init__(self, zone: tzinfo | None = None) -> None:
        self._zone = zone or ZoneInfo("Asia/Ho_Chi_Minh")

    def now(self) -> datetime:
        return datetime.now(self._zone)

    async def sleep(self, seconds: float) -> None:
        stop_if_cancelled()
        await asyncio.sleep(seconds)


class ManualClock:
    """A clock that only moves when told to; sleeping advances it instantly."""

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("ManualClock needs a timezone-aware start time")
        self._now = start

    def now(self) -> datetime:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += timedelta(seconds=seconds)

    async def sleep(self, seconds: float) -> None:
        stop_if_cancelled()
        self.advance(seconds)
        await asyncio.sleep(0)
