"""Every alert rule set outside the server: one pass at a chosen instant, or all until stopped.

The server runs the SLA engine, the traffic watch and the webhook dispatcher as background
loops. A deployment may run them instead in a worker process (``ioc alerts run``), and an
operator may run one pass of all three as of any instant (``ioc alerts tick --at``): for a
drill, an audit, or to check stored history at the times it covers. A pass checks the traffic
first, then the deadlines, then delivers: alerts raised and due at that instant go out in the
same pass.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg_pool import AsyncConnectionPool

from alerting.engine import SlaEngine, TickResult
from alerting.setup import load_book
from alerting.traffic import TrafficCheck, TrafficWatch
from alerting.webhooks import WebhookDispatcher
from ioc.clock import Clock, ManualClock
from ioc.deadlines import DeadlineBook
from ioc.routing.router import Router
from ioc.settings import Settings
from ioc.store.routing_data import fingerprint, load_router

log = logging.getLogger(__name__)

RELOAD_S = 15.0  # how often a running worker looks for changed routing rules and policies


class RuleData:
    """The router and the deadline book, as configured in the database (reloaded on change)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._router: Router | None = None
        self._book: DeadlineBook | None = None
        self._print = ""

    @property
    def router(self) -> Router:
        if self._router is None:
            raise RuntimeError("routing is not loaded")
        return self._router

    @property
    def book(self) -> DeadlineBook:
        if self._book is None:
            raise RuntimeError("deadline policies are not loaded")
        return self._book

    async def load(self, pool: AsyncConnectionPool[Any], force: bool = False) -> bool:
        """Load boundaries, rules and policies if they changed since the last load."""
        async with pool.connection() as conn:
            current = await fingerprint(conn)
            if not force and current == self._print:
                return False
            router = await load_router(conn, self._settings)
            book = await load_book(conn, self._settings)
        # Building the grid indexes takes a moment per boundary set: off the event loop.
        await asyncio.to_thread(lambda: [b.index() for b in router.sets])
        self._router, self._book, self._print = router, book, current
        return True

    async def watch(self, pool: AsyncConnectionPool[Any], clock: Clock) -> None:
        while True:
            await clock.sleep(RELOAD_S)
            try:
                if await self.load(pool):
                    log.info("routing rules and deadline policies reloaded")
            except Exception:
                log.exception("reloading routing rules failed; keeping the previous ones")


@dataclass(frozen=True)
class Pass:
    """What one pass of every rule set found and did."""

    at: datetime
    sla: TickResult
    traffic: TrafficCheck
    attempted: int  # webhook messages sent (or tried)


async def one_pass(
    pool: AsyncConnectionPool[Any], settings: Settings, rules: RuleData, at: datetime
) -> Pass:
    """Check traffic and deadlines and deliver what is due, all as of ``at``."""
    clock = ManualClock(at)
    async with pool.connection() as conn:
        traffic = await TrafficWatch(settings, lambda: rules.router).check(conn, at)
    sla = await SlaEngine(pool, clock, settings, lambda: rules.book).tick(at)
    dispatcher = WebhookDispatcher(pool, clock, settings)
    attempted = 0
    try:
        # A failed attempt is due again after a backoff, later than ``at``: this ends.
        while (sent := await dispatcher.tick()) > 0:
            attempted += sent
    finally:
        await dispatcher.aclose()
    return Pass(at, sla, traffic, attempted)


async def run_all(pool: AsyncConnectionPool[Any], settings: Settings, clock: Clock) -> None:
    """Run the SLA engine, the traffic watch and the webhook dispatcher until cancelled."""
    rules = RuleData(settings)
    await rules.load(pool, force=True)
    workers = [
        SlaEngine(pool, clock, settings, lambda: rules.book).run(),
        TrafficWatch(settings, lambda: rules.router).run(pool, clock),
        WebhookDispatcher(pool, clock, settings).run(),
        rules.watch(pool, clock),
    ]
    tasks = [asyncio.create_task(work) for work in workers]
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
