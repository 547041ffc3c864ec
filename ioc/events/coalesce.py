"""Group commit for single events: concurrent requests share one transaction.

Each single-event request would otherwise pay for its own commit (a WAL flush). Events that
arrive while a write is in flight wait for the next one, so batching adds no timer delay: under
light load a write holds one event; under heavy load, many.

One caller's bad item must not fail the others: when a group's write fails for a reason that
lies in the items themselves (``isolable``), the group is split in halves and each half is
written again, down to the single item at fault, which alone gets the error.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


def _never(exc: BaseException) -> bool:
    return False


async def isolate(
    items: Sequence[T],
    attempt: Callable[[Sequence[T]], Awaitable[Sequence[R]]],
    isolable: Callable[[BaseException], bool],
) -> list[R | Exception]:
    """Each item's result of ``attempt``, or the error that item alone is at fault for.

    When an attempt on several items fails with an isolable error, each half is attempted
    again (so k bad items among n cost about 2·k·log2(n) attempts). Any other error is the
    result of every item of that attempt.
    """
    try:
        return list(await attempt(items))
    except Exception as exc:
        if len(items) == 1 or not isolable(exc):
            return [exc] * len(items)
    middle = len(items) // 2
    left = await isolate(items[:middle], attempt, isolable)
    return left + await isolate(items[middle:], attempt, isolable)


class Coalescer(Generic[T, R]):
    """Hands items to ``flush`` in groups; each caller gets its own item's result."""

    def __init__(
        self,
        flush: Callable[[Sequence[T]], Awaitable[Sequence[R]]],
        max_group: int = 1000,
        isolable: Callable[[BaseException], bool] = _never,
    ) -> None:
        self._flush = flush
        self._max_group = max_group
        self._isolable = isolable
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._running: asyncio.Task[None] | None = None

    async def submit(self, item: T) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if self._running is None or self._running.done():
            self._running = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        while self._pending:
            group = self._pending[: self._max_group]
            del self._pending[: self._max_group]
            try:
                results = await isolate([item for item, _ in group], self._flush, self._isolable)
            except BaseException as exc:  # cancelled: nobody may wait forever
                for _, future in group:
                    if not future.done():
                        future.set_exception(exc)
                raise
            for (_, future), result in zip(group, results, strict=True):
                if future.done():
                    continue
                if isinstance(result, Exception):
                    future.set_exception(result)
                else:
                    future.set_result(result)
