"""The running platform's resources, opened and closed together (by the app's lifespan)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from psycopg_pool import AsyncConnectionPool
from starlette.requests import HTTPConnection

from ioc.api.security import token_of
from ioc.auth import Principal
from ioc.clock import Clock, SystemClock
from ioc.intake import Intake
from ioc.jobs import Maintenance
from ioc.metrics import Metrics, pool_stats
from ioc.settings import Settings
from ioc.store import migrate
from ioc.store.database import DatabaseLocation, make_pool
from ioc.store.keys import KeyVerifier
from ioc.store.partitions import PartitionManager
from ioc.store.policies import apply_timescale_policies
from ioc.store.reference import ReferenceData
from ioc.store.writer import EventWriter
from ioc.validation import EventRules

log = logging.getLogger(__name__)


class Platform:
    """Holds the pool and the services built on it; routers read them at request time."""

    def __init__(self, settings: Settings, clock: Clock | None = None) -> None:
        self.settings = settings
        self.clock = clock or SystemClock(settings.zone)
        self.metrics = Metrics()
        self.reference = ReferenceData()
        self.location = DatabaseLocation(settings)
        self.verifier = KeyVerifier(settings.key_cache_s)
        self.backend: str = "unknown"
        self._pool: AsyncConnectionPool[Any] | None = None
        self._intake: Intake | None = None
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def pool(self) -> AsyncConnectionPool[Any]:
        if self._pool is None:
            raise RuntimeError("the platform is not started")
        return self._pool

    @property
    def intake(self) -> Intake:
        if self._intake is None:
            raise RuntimeError("the platform is not started")
        return self._intake

    async def authenticate(self, conn: HTTPConnection) -> Principal:
        return await self.verifier.verify(self.pool.connection, token_of(conn))

    async def start(self) -> None:
        url = await asyncio.to_thread(self.location.open)
        if self.settings.migrate_on_start:
            applied = await asyncio.to_thread(migrate.upgrade, url, self.settings.timescale)
            for migration in applied:
                log.info("migrated: %04d_%s", migration.version, migration.name)
        self._pool = make_pool(url, self.settings)
        await self._pool.open(wait=True, timeout=30)
        self.metrics.watch_pool(pool_stats(self._pool))
        async with self._pool.connection() as conn:
            state = await migrate.status(conn)
            if not state.current:
                raise RuntimeError(
                    f"database migrations are not current (pending: {state.pending}); "
                    "run `ioc db upgrade`"
                )
            self.backend = state.backend or "plain"
            partitions = PartitionManager(enabled=self.backend == "plain")
            await partitions.load(conn)
            await self.reference.load(conn)
            if self.backend == "timescale":
                await apply_timescale_policies(conn, self.settings)
        self._intake = Intake(
            self._pool,
            EventWriter(partitions),
            self.reference,
            EventRules(
                zone=self.settings.zone,
                clock=self.clock,
                categories=self.reference.categories,
                earliest_year=self.settings.earliest_event_year,
                max_future_s=self.settings.max_future_skew_s,
            ),
            self.settings.max_batch_events,
            observe=self.metrics.observe_events,
        )
        maintenance = Maintenance(self._pool, partitions, self.settings, self.clock)
        self._tasks.append(asyncio.create_task(maintenance.run(), name="maintenance"))
        log.info("platform started (%s back end)", self.backend)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
        await asyncio.to_thread(self.location.close)
        log.info("platform stopped")
