"""TimescaleDB compression and retention policies, kept in step with the settings."""

from __future__ import annotations

from typing import Any

import psycopg

from ioc.settings import Settings


async def apply_timescale_policies(conn: psycopg.AsyncConnection[Any], settings: Settings) -> None:
    """(Re)apply policies; each add is preceded by a remove so changed settings take effect."""
    async with conn.transaction():
        await conn.execute(
            "ALTER TABLE traffic_readings SET (timescaledb.compress,"
            " timescaledb.compress_segmentby = 'sensor_id')"
        )
        await conn.execute(
            "SELECT remove_compression_policy('traffic_readings', if_exists => true)"
        )
        await conn.execute(
            "SELECT add_compression_policy('traffic_readings', make_interval(days => %s))",
            (settings.compress_after_days,),
        )
        await conn.execute("SELECT remove_retention_policy('traffic_readings', if_exists => true)")
        if settings.traffic_retention_days > 0:
            await conn.execute(
                "SELECT add_retention_policy('traffic_readings', make_interval(days => %s))",
                (settings.traffic_retention_days,),
            )
