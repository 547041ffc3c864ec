"""Background upkeep, run by one elected process: the leader.

Every server process (and every ``--workers`` process) runs this loop; the one that holds a
session-level advisory lock on its own connection is the leader and does the upkeep. The lock
goes with the session: when the leader dies, even by kill -9, its database session ends and
the lock is free; the others try for it every ``LEADER_CHECK_S`` seconds, so one of them takes
over within about that time.
"""

from __future__ import annotations

import contextlib
import logging
import time
from datetime import timedelta
from typing import Any, Final

import psycopg
from psycopg_pool import AsyncConnectionPool

from ioc.clock import Clock
from ioc.settings import Settings
from ioc.store import aggregates, livelog
from ioc.store.partitions import PARTITIONED, PartitionManager

log = logging.getLogger(__name__)

_LEADER_LOCK = 0x10C_2000
# How often a follower tries for the leadership, and the leader checks it still holds it.
LEADER_CHECK_S: Final = 1.0


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
        # Its own connection (not the pool's): the lock lives and dies with this session.
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._leading = False

    @property
    def is_leader(self) -> bool:
        """This process holds the upkeep leadership (as of its last check)."""
        return self._leading and self._conn is not None and not self._conn.closed

    async def run(self) -> None:
        due = 0.0
        try:
            while True:
                try:
                    if await self.lead() and time.monotonic() >= due:
                        due = time.monotonic() + self._settings.aggregate_refresh_s
                        async with self._pool.connection() as conn:
                            await self._upkeep(conn)
                except Exception:
                    # Upkeep must never take the server down; the next round tries again.
                    log.exception("maintenance round failed")
                await self._clock.sleep(LEADER_CHECK_S)
        finally:
            await self.resign()

    async def lead(self) -> bool:
        """Hold on to the leadership, or try to take it; whether this process leads now."""
        try:
            if self._conn is None or self._conn.closed:
                self._leading = False
                conninfo = self._pool.conninfo
                assert isinstance(conninfo, str), "the platform's pool has a fixed conninfo"
                self._conn = await psycopg.AsyncConnection.connect(
                    conninfo, autocommit=True, application_name="ioc-upkeep"
                )
            if self._leading:
                await self._conn.execute("SELECT 1")
                return True
            cur = await self._conn.execute("SELECT pg_try_advisory_lock(%s)", (_LEADER_LOCK,))
            row = await cur.fetchone()
        except psycopg.Error:
            if self._leading:
                log.warning("upkeep: lost the leader's connection; the leadership is open")
            await self.resign()
            raise
        self._leading = bool(row and row[0])
        if self._leading:
            log.info("upkeep: this process is the leader")
        return self._leading

    async def resign(self) -> None:
        """Give the leadership up (closing the session frees the lock)."""
        conn, self._conn, self._leading = self._conn, None, False
        if conn is not None:
            with contextlib.suppress(psycopg.Error):
                await conn.close()

    async def tick(self) -> bool:
        """One round of upkeep now; False when another process holds the leadership."""
        async with self._pool.connection() as conn:
            if self.is_leader:
                await self._upkeep(conn)
                return True
            cur = await conn.execute("SELECT pg_try_advisory_lock(%s)", (_LEADER_LOCK,))
            row = await cur.fetchone()
            if not row or not row[0]:
                return False
            try:
                await self._upkeep(conn)
            finally:
                await conn.execute("SELECT pg_advisory_unlock(%s)", (_LEADER_LOCK,))
        return True

    async def _upkeep(self, conn: Any) -> None:
        dropped: list[str] = []
        now = self._clock.now()
        if self._backend == "plain":
            ahead = now + timedelta(days=31 * self._settings.partition_months_ahead)
            for table in PARTITIONED:
                await self._partitions.ensure(conn, table, now, ahead)
            if self._settings.traffic_retention_days > 0:
                cutoff = now - timedelta(days=self._settings.traffic_retention_days)
                dropped = await self._partitions.drop_older_than(conn, "traffic_readings", cutoff)
        await aggregates.catch_up(conn, self._backend, force=bool(dropped))
        await livelog.prune(conn)

    @staticmethod
    async def refresh_aggregates(conn: Any) -> None:
        """Plain PostgreSQL: refresh both aggregate views whole, now."""
        await aggregates.refresh_views(conn)
