"""TimescaleDB compression and retention policies, kept in step with the settings.

A policy is replaced only when its setting changed: an unchanged one keeps its job, and with
it the job's id, schedule and run history, across restarts.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import psycopg

from ioc.settings import Settings

_POLICY_LOCK = 0x10C_3000


async def _job_interval(conn: psycopg.AsyncConnection[Any], proc: str, key: str) -> list[Any]:
    """The ``key`` interval of each ``proc`` job on traffic_readings (normally none or one)."""
    cur = await conn.execute(
        "SELECT (config->>%s)::interval FROM timescaledb_information.jobs"
        " WHERE proc_name = %s AND hypertable_schema = current_schema()"
        " AND hypertable_name = 'traffic_readings'",
        (key, proc),
    )
    return [row[0] for row in await cur.fetchall()]


async def apply_timescale_policies(conn: psycopg.AsyncConnection[Any], settings: Settings) -> None:
    """Add, replace or remove the policies whose settings differ from what is scheduled."""
    async with conn.transaction():
        # Processes starting together take turns, so none removes a policy another just added.
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_POLICY_LOCK,))
        cur = await conn.execute(
            "SELECT compression_enabled FROM timescaledb_information.hypertables"
            " WHERE hypertable_schema = current_schema() AND hypertable_name = 'traffic_readings'"
        )
        enabled = await cur.fetchone()
        if not (enabled and enabled[0]):
            await conn.execute(
                "ALTER TABLE traffic_readings SET (timescaledb.compress,"
                " timescaledb.compress_segmentby = 'sensor_id')"
            )
        compress_after = timedelta(days=settings.compress_after_days)
        if await _job_interval(conn, "policy_compression", "compress_after") != [compress_after]:
            await conn.execute(
                "SELECT remove_compression_policy('traffic_readings', if_exists => true)"
            )
            await conn.execute(
                "SELECT add_compression_policy('traffic_readings', %s::interval)",
                (compress_after,),
            )
        days = settings.traffic_retention_days
        wanted = [timedelta(days=days)] if days > 0 else []
        if await _job_interval(conn, "policy_retention", "drop_after") != wanted:
            await conn.execute(
                "SELECT remove_retention_policy('traffic_readings', if_exists => true)"
            )
            if wanted:
                await conn.execute(
                    "SELECT add_retention_policy('traffic_readings', %s::interval)", (wanted[0],)
                )
