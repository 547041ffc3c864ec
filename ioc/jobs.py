"""Background upkeep, run by one process at a time (an advisory lock elects the leader)."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from psycopg_pool import AsyncConnectionPool

from ioc.clock import Clock
from ioc.settings import Settings
from ioc.store import aggregates
from ioc.store.partitions import PARTITIONED, PartitionManager

log = logging.getLogger(__name__)

_LEADER_LOCK = 0x10C_2000


class Maintenance:
    """Aggregates over newly written windows (both back ends); on plain PostgreSQL also
    partitions ahead and retention (TimescaleDB has its own policies for those)."""

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
        # Partitions are ours to manage exactly on plain PostgreSQL.
        self._backend = "plain" if partitions.enabled else "timescale"

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
        async with self._pool.connection() as conn:
            cur = await conn.execute("SELECT pg_try_advisory_lock(%s)", (_LEADER_LOCK,))
            row = await cur.fetchone()
            if not row or not row[0]:
                return False
            try:
                dropped: list[str] = []
                if self._backend == "plain":
                    now = self._clock.now()
                    ahead = now + timedelta(days=31 * self._settings.partition_months_ahead)
                    for table in PARTITIONED:
                        await self._partitions.ensure(conn, table, now, ahead)
                    if self._settings.traffic_retention_days > 0:
                        cutoff = now - timedelta(days=self._settings.traffic_retention_days)
                        dropped = await self._partitions.drop_older_than(
                            conn, "traffic_readings", cutoff
                        )
                await aggregates.catch_up(conn, self._backend, force=bool(dropped))
            finally:
                await conn.execute("SELECT pg_advisory_unlock(%s)", (_LEADER_LOCK,))
        return True

    @staticmethod
    async def refresh_aggregates(conn: Any) -> None:
        """Plain PostgreSQL: refresh both aggregate views whole, now."""
        await aggregates.refresh_views(conn)
