"""The running platform's resources, opened and closed together (by the app's lifespan).

Wiring, like ``ioc.api`` and ``ioc.cli``: it puts the store, the intake, the live hub and the
upkeep together for the server; domain modules never import it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from psycopg_pool import AsyncConnectionPool
from starlette.requests import HTTPConnection

from ioc.api.security import Authenticator
from ioc.auth import Principal
from ioc.clock import Clock, SystemClock
from ioc.deadlines import DeadlineBook, OfficeTime, load_policies
from ioc.events.intake import Intake
from ioc.events.rules import EventRules
from ioc.jobs import Maintenance
from ioc.live import LiveHub
from ioc.media.stores import open_media_store
from ioc.media.uploads import Limits, MediaDesk
from ioc.metrics import Metrics, pool_stats
from ioc.settings import Settings
from ioc.store import migrate
from ioc.store.database import DatabaseLocation, GatedPool, make_pool, with_timezone
from ioc.store.health import DatabaseGate, DatabaseWatch, probe, wait_for_database
from ioc.store.partitions import PartitionManager
from ioc.store.policies import apply_timescale_policies
from ioc.store.reference import ReferenceData
from ioc.store.routing_data import fingerprint, load_deadlines, load_router
from ioc.store.writer import EventWriter
from ioc.tickets.opening import TicketDesk

log = logging.getLogger(__name__)

# How long start-up waits for a configured database that does not accept connections yet.
DATABASE_WAIT_S = 60.0
# How often this process's gauges are written (they matter with several workers).
METRICS_REFRESH_S = 5.0


class Platform:
    """Holds the pool and the services built on it; routers read them at request time."""

    def __init__(self, settings: Settings, office: OfficeTime, clock: Clock | None = None) -> None:
        self.settings = settings
        self.office = office
        self.clock = clock or SystemClock(settings.zone)
        self.book = DeadlineBook(office, settings.sla_due_soon_fraction)
        self.metrics = Metrics()
        self.reference = ReferenceData()
        self.location = DatabaseLocation(settings)
        self.auth = Authenticator(settings, lambda: self.pool.connection(), self.clock)
        self.verifier = self.auth.keys
        self.backend: str = "unknown"
        self.gate = DatabaseGate()
        self._pool: AsyncConnectionPool[Any] | None = None
        self._read_pool: GatedPool | None = None
        self._intake: Intake | None = None
        self._hub: LiveHub | None = None
        self._media: MediaDesk | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.desk: TicketDesk | None = None
        self._workers: list[tuple[str, Callable[[], Coroutine[Any, Any, None]]]] = []
        self._routing_print = ""
        self.maintenance: Maintenance | None = None

    @property
    def pool(self) -> AsyncConnectionPool[Any]:
        if self._pool is None:
            raise RuntimeError("the platform is not started")
        return self._pool

    @property
    def read_pool(self) -> AsyncConnectionPool[Any]:
        """For read-only work: the replica (IOC_READ_DATABASE_URL) while it answers, else the
        primary's pool."""
        replica = self._read_pool
        return replica if replica is not None and replica.gate.up else self.pool

    @property
    def intake(self) -> Intake:
        if self._intake is None:
            raise RuntimeError("the platform is not started")
        return self._intake

    @property
    def media(self) -> MediaDesk:
        if self._media is None:
            raise RuntimeError("the platform is not started")
        return self._media

    @property
    def hub(self) -> LiveHub:
        if self._hub is None:
            raise RuntimeError("the platform is not started")
        return self._hub

    async def authenticate(self, conn: HTTPConnection) -> Principal:
        return await self.auth.authenticate(conn)

    async def start(self) -> None:
        url = await asyncio.to_thread(self.location.open)
        if not self.location.embedded:
            await wait_for_database(url, DATABASE_WAIT_S)
        if self.settings.migrate_on_start:
            applied = await asyncio.to_thread(migrate.upgrade, url, self.settings.timescale)
            for migration in applied:
                log.info("migrated: %04d_%s", migration.version, migration.name)
        self._pool = make_pool(url, self.settings, self.gate)
        await self._pool.open(wait=True, timeout=30)
        # Shuts the gate while the database is away (requests get 503 at once), restarts the
        # embedded server if it died, and opens the gate again when connections work.
        watch = DatabaseWatch(self._pool, self.location.server)
        self._tasks.append(asyncio.create_task(watch.run(), name="database-watch"))
        self.metrics.watch_pool(pool_stats(self._pool))
        if self.settings.read_database_url:
            await self._open_read_pool(self.settings.read_database_url)
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
            await self._load_routing(conn)
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
            desk=self.desk,
            book=lambda: self.book,
            clock=self.clock,
        )
        self._media = MediaDesk(
            self._pool,
            open_media_store(self.settings),
            Limits(
                self.settings.media_max_bytes,
                self.settings.media_max_pixels,
                self.settings.media_per_report,
                self.settings.media_preview_px,
            ),
            self.clock,
        )
        self._hub = LiveHub(
            with_timezone(url, self.settings.timezone),
            pace_s=self.settings.live_frame_interval_ms / 1000,
        )
        await self._hub.start()
        maintenance = Maintenance(self._pool, partitions, self.settings, self.clock)
        self.maintenance = maintenance
        self.metrics.watch_leadership(lambda: maintenance.is_leader)
        self._tasks.append(asyncio.create_task(maintenance.run(), name="maintenance"))
        self._tasks.append(asyncio.create_task(self._refresh_metrics(), name="metrics"))
        self._tasks.append(asyncio.create_task(self._watch_routing(), name="routing-watch"))
        for name, work in self._workers:
            self._tasks.append(asyncio.create_task(work(), name=name))
        log.info("platform started (%s back end)", self.backend)

    async def _open_read_pool(self, url: str) -> None:
        self._read_pool = make_pool(url, self.settings, DatabaseGate())
        # A replica that is down at start-up leaves reads on the primary until it is back.
        await self._read_pool.open(wait=False)
        if (problem := await probe(url)) is not None:
            self._read_pool.gate.shut(f"the read-only database: {problem}")
        watch = DatabaseWatch(self._read_pool)
        self._tasks.append(asyncio.create_task(watch.run(), name="read-database-watch"))

    async def _refresh_metrics(self) -> None:
        # With several workers, a scrape reads every worker's last gauges: keep them fresh.
        while True:
            await asyncio.sleep(METRICS_REFRESH_S)
            self.metrics.refresh()

    def add_worker(self, name: str, work: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """A background loop started with the platform (after the pool) and cancelled at stop."""
        self._workers.append((name, work))

    async def _load_routing(self, conn: Any) -> None:
        router = await load_router(conn, self.settings)
        # Building the grid indexes takes a moment per boundary set: off the event loop.
        await asyncio.to_thread(lambda: [b.index() for b in router.sets])
        tickets, dossiers = await load_policies(conn)
        self.book = DeadlineBook(
            self.office,
            self.settings.sla_due_soon_fraction,
            tickets,
            dossiers,
            await load_deadlines(conn),
        )
        if self.desk is None:
            self.desk = TicketDesk(
                router, self.book, self.settings.dedupe_distance_m, self.settings.dedupe_window_s
            )
        else:
            self.desk.router, self.desk.book = router, self.book
        self._routing_print = await fingerprint(conn)

    async def reload_routing(self, force: bool = False) -> bool:
        """Reload boundaries, rules and categories if they changed (in any process)."""
        async with self.pool.connection() as conn:
            if not force and await fingerprint(conn) == self._routing_print:
                return False
            await self.reference.load(conn)
            await self._load_routing(conn)
        log.info("routing data reloaded")
        return True

    async def _watch_routing(self) -> None:
        while True:
            await self.clock.sleep(15)
            try:
                await self.reload_routing()
            except Exception:
                log.exception("reloading routing data failed; keeping the previous rules")

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        if self._hub is not None:
            await self._hub.stop()
            self._hub = None
        if self._read_pool is not None:
            await self._read_pool.close()
            self._read_pool = None
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
        await asyncio.to_thread(self.location.close)
        self.metrics.close()
        log.info("platform stopped")
