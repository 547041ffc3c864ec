"""Monthly range partitions for plain PostgreSQL (TimescaleDB makes its own chunks).

Partitions are created before rows need them: ahead of time by a background job, and for any
month a batch touches (a replay of old data, say) just before the batch is written.
"""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime
from typing import Any

import psycopg
from psycopg import sql

log = logging.getLogger(__name__)

PARTITIONED = ("traffic_readings", "dossier_events")
_LOCK_BASE = 0x10C_1000


def month_start(moment: datetime) -> date:
    utc = moment.astimezone(UTC)
    return date(utc.year, utc.month, 1)


def next_month(day: date) -> date:
    return date(day.year + day.month // 12, day.month % 12 + 1, 1)


def months_between(first: datetime, last: datetime) -> list[date]:
    months, current, end = [], month_start(first), month_start(last)
    while current <= end:
        months.append(current)
        current = next_month(current)
    return months


def partition_name(table: str, month: date) -> str:
    return f"{table}_p{month:%Y%m}"


class PartitionManager:
    """Knows which monthly partitions exist and creates missing ones, once, across processes."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._known: dict[str, set[date]] = {table: set() for table in PARTITIONED}

    async def load(self, conn: psycopg.AsyncConnection[Any]) -> None:
        if not self.enabled:
            return
        cur = await conn.execute(
            """SELECT parent.relname, child.relname
               FROM pg_inherits
               JOIN pg_class parent ON parent.oid = pg_inherits.inhparent
               JOIN pg_class child ON child.oid = pg_inherits.inhrelid
               WHERE parent.relname = ANY(%s)""",
            (list(PARTITIONED),),
        )
        rows: list[tuple[Any, ...]] = await cur.fetchall()
        for parent, child in rows:
            suffix = str(child).rsplit("_p", 1)[-1]
            if len(suffix) == 6 and suffix.isdigit():
                self._known[str(parent)].add(date(int(suffix[:4]), int(suffix[4:]), 1))

    def missing(self, table: str, first: datetime, last: datetime) -> list[date]:
        if not self.enabled:
            return []
        return [m for m in months_between(first, last) if m not in self._known[table]]

    async def ensure(
        self, conn: psycopg.AsyncConnection[Any], table: str, first: datetime, last: datetime
    ) -> None:
        """Create the partitions covering [first, last]. Call outside any open transaction."""
        for month in self.missing(table, first, last):
            await self._create(conn, table, month)

    async def _create(self, conn: psycopg.AsyncConnection[Any], table: str, month: date) -> None:
        name = partition_name(table, month)
        async with conn.transaction():
            # Serialise creators of the same table; IF NOT EXISTS then makes the loser a no-op.
            await conn.execute(
                "SELECT pg_advisory_xact_lock(%s)", (_LOCK_BASE + PARTITIONED.index(table),)
            )
            await conn.execute(
                sql.SQL(
                    "CREATE TABLE IF NOT EXISTS {} PARTITION OF {} FOR VALUES FROM ({}) TO ({})"
                ).format(
                    sql.Identifier(name),
                    sql.Identifier(table),
                    sql.Literal(f"{month.isoformat()} 00:00+00"),
                    sql.Literal(f"{next_month(month).isoformat()} 00:00+00"),
                )
            )
        self._known[table].add(month)
        log.info("created partition %s", name)

    async def drop_older_than(
        self, conn: psycopg.AsyncConnection[Any], table: str, cutoff: datetime
    ) -> list[str]:
        """Drop partitions whose whole month ends before ``cutoff`` (retention)."""
        dropped = []
        for month in sorted(self._known[table]):
            if datetime(next_month(month).year, next_month(month).month, 1, tzinfo=UTC) > cutoff:
                break
            name = partition_name(table, month)
            async with conn.transaction():
                await conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(name)))
            self._known[table].discard(month)
            dropped.append(name)
            log.info("dropped partition %s (retention)", name)
        return dropped
