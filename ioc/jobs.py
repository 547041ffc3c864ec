"""Background upkeep, run by one process at a time (an advisory lock elects the leader)."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from psycopg_pool import AsyncConnectionPool

from ioc.clock import Clock
from ioc.settings import Settings
from ioc.store.partitions import PARTITIONED, PartitionManager

log = logging.getLogger(__name__)

_LEADER_LOCK = 0x10C_2000
_VIEWS = ("traffic_5min", "traffic_hourly")


class Maintenance:
    """Partitions ahead, aggregate refresh and retention for plain PostgreSQL."""

    def __init__(
        self,
        pool: AsyncConnectionPool[Any],
        partitions: PartitionManager,
        settings: Settings,
        clock: Clock,
    ) -> None:
        self._pool = pool
        self._partitions = partitions
        self._settings = settings
        self._clock = clock

    async def run(self) -> None:
        while True:
            try:
                await self.tick()
            except Exception:
                # Upkeep must never take the server down; the next tick tries again.
                log.exception("maintenance tick failed")
            await self._clock.sleep(self._settings.aggregate_refresh_s)

    async def tick(self) -> bool:
        """One round of upkeep; False when another process holds the leadership."""
        if not self._partitions.enabled:
            return True
        async with self._pool.connection() as conn:
            cur = await conn.execute("SELECT pg_try_advisory_lock(%s)", (_LEADER_LOCK,))
            row = await cur.fetchone()
            if not row or not row[0]:
                return False
            try:
                now = self._clock.now()
                ahead = now + timedelta(days=31 * self._settings.partition_months_ahead)
                for table in PARTITIONED:
                    await self._partitions.ensure(conn, table, now, ahead)
                if self._settings.traffic_retention_days > 0:
                    cutoff = now - timedelta(days=self._settings.traffic_retention_days)
                    await self._partitions.drop_older_than(conn, "traffic_readings", cutoff)
                await self.refresh_aggregates(conn)
            finally:
                await conn.execute("SELECT pg_advisory_unlock(%s)", (_LEADER_LOCK,))
        return True

    @staticmethod
    async def refresh_aggregates(conn: Any) -> None:
        for view in _VIEWS:
            cur = await conn.execute(
                "SELECT ispopulated FROM pg_matviews WHERE matviewname = %s", (view,)
            )
            row = await cur.fetchone()
            # CONCURRENTLY keeps readers unblocked, but needs a populated view to start from.
            mode = "CONCURRENTLY " if row and row[0] else ""
            await conn.execute(f"REFRESH MATERIALIZED VIEW {mode}{view}")
