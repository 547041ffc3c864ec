"""The wall's traffic board: congested and silent sensors, and today's province count vs baseline.

The sensors come from the active traffic alerts (alerting/traffic*.py raise and clear them), so
the board says what the alerting judged: the congested ones ranked by how far they are from
their own baseline (the alert's z), the silent ones by how long they have been quiet (since their
last reading, else since registration). The chart sums ``traffic_hourly`` over every sensor per
local hour: today, and the mean of the same weekday in the previous weeks (the congestion
baseline's idea, summed over the province). Hourly rather than 5-minute buckets: a line across
a wall needs 24 points, and reading a twelfth of the rows keeps the snapshot cheap with
thousands of sensors. Each (sensor, day) is one index range on the aggregate's key.
"""

from __future__ import annotations

from datetime import datetime, tzinfo
from typing import Any, Final

import msgspec
import psycopg

from maps.wall.dossiers import local_bounds

Conn = psycopg.AsyncConnection[Any]

SHOWN: Final = 8
CONGESTED_COLUMNS: Final = (
    "id",
    "name",
    "since",
    "z",
    "speed_kmh",
    "usual_speed_kmh",
    "vehicles",
    "usual_vehicles",
)
SILENT_COLUMNS: Final = ("id", "name", "since")

_CONGESTED_SQL: Final = """
WITH active AS (
    SELECT a.subject_id, a.raised_at, a.details,
           greatest((a.details->>'z_speed')::float8, (a.details->>'z_vehicles')::float8) AS z
    FROM alerts a
    WHERE a.resolved_at IS NULL AND a.subject_kind = 'sensor' AND a.rule = 'congestion'
)
SELECT a.subject_id, coalesce(s.name, a.details->>'sensor'), a.raised_at, a.z,
       (a.details->'recent'->>'speed_kmh')::float8,
       (a.details->'baseline'->>'speed_kmh_mean')::float8,
       (a.details->'recent'->>'vehicles_per_5min')::float8,
       (a.details->'baseline'->>'vehicles_per_5min_mean')::float8,
       count(*) OVER ()
FROM active a LEFT JOIN sensors s ON s.sensor_id = a.subject_id
ORDER BY a.z DESC NULLS LAST, a.raised_at, a.subject_id
LIMIT %(shown)s"""

_SILENT_SQL: Final = """
WITH active AS (
    SELECT a.subject_id, a.details,
           coalesce((a.details->>'last_reading_at')::timestamptz,
                    (a.details->>'registered_at')::timestamptz, a.raised_at) AS since
    FROM alerts a
    WHERE a.resolved_at IS NULL AND a.subject_kind = 'sensor' AND a.rule = 'silent'
)
SELECT a.subject_id, coalesce(s.name, a.details->>'sensor'), a.since, count(*) OVER ()
FROM active a LEFT JOIN sensors s ON s.sensor_id = a.subject_id
ORDER BY a.since, a.subject_id
LIMIT %(shown)s"""

# Hour of the local day (0–23) and vehicles, for today (k = 0) and k weeks before.
_CHART_SQL: Final = """
WITH days AS (
    SELECT k, %(day)s::timestamptz - make_interval(days => 7 * k) AS start
    FROM generate_series(0, %(weeks)s) AS k
)
SELECT d.k, floor(extract(epoch FROM h.bucket - d.start) / 3600)::int AS hour,
       sum(h.vehicles)::float8
FROM sensors s CROSS JOIN days d
CROSS JOIN LATERAL (
    SELECT t.bucket, t.vehicles FROM traffic_hourly t
    WHERE t.sensor_id = s.sensor_id
      AND t.bucket >= d.start AND t.bucket < d.start + interval '1 day'
    OFFSET 0
) h
GROUP BY 1, 2"""


class Chart(msgspec.Struct, kw_only=True):
    """Vehicles per local hour, today and the weekday baseline (None: no data for that hour)."""

    weeks: int
    today: list[float | None]
    baseline: list[float | None]


class TrafficBoard(msgspec.Struct, kw_only=True):
    """The most congested and the longest silent sensors (compact rows), with their totals."""

    congested_columns: tuple[str, ...] = CONGESTED_COLUMNS
    congested: list[tuple[Any, ...]]
    congested_total: int
    silent_columns: tuple[str, ...] = SILENT_COLUMNS
    silent: list[tuple[Any, ...]]
    silent_total: int
    chart: Chart | None = None


def _millis(moment: datetime | None) -> int | None:
    return None if moment is None else round(moment.timestamp() * 1000)


def _one(value: Any, digits: int = 1) -> float | None:
    return None if value is None else round(float(value), digits)


async def sensors_board(conn: Conn) -> TrafficBoard:
    """The congested and silent sensors of the active alerts (no chart)."""
    cur = await conn.execute(_CONGESTED_SQL, {"shown": SHOWN})
    found = await cur.fetchall()
    congested = [
        (r[0], r[1], _millis(r[2]), _one(r[3], 2), *(_one(v) for v in r[4:8])) for r in found
    ]
    congested_total = int(found[0][8]) if found else 0
    cur = await conn.execute(_SILENT_SQL, {"shown": SHOWN})
    found = await cur.fetchall()
    silent = [(r[0], r[1], _millis(r[2])) for r in found]
    return TrafficBoard(
        congested=congested,
        congested_total=congested_total,
        silent=silent,
        silent_total=int(found[0][3]) if found else 0,
    )


async def _readable(conn: Conn) -> bool:
    """Whether the hourly aggregate can be read (a materialised view starts unpopulated)."""
    cur = await conn.execute(
        "SELECT relkind <> 'm' OR relispopulated FROM pg_class"
        " WHERE oid = 'traffic_hourly'::regclass"
    )
    row = await cur.fetchone()
    return bool(row and row[0])


async def chart(conn: Conn, now: datetime, zone: tzinfo, weeks: int) -> Chart:
    """Today's province count per local hour against the same weekday of ``weeks`` weeks."""
    day, _, _ = local_bounds(now, zone)
    totals: dict[tuple[int, int], float] = {}
    if await _readable(conn):
        cur = await conn.execute(_CHART_SQL, {"day": day, "weeks": weeks})
        totals = {
            (int(k), int(hour)): float(v) for k, hour, v in await cur.fetchall() if 0 <= hour < 24
        }
    current = int((now - day).total_seconds() // 3600)
    # An hour without data (the aggregate not yet refreshed) is a gap, not a drop to zero.
    today = [totals.get((0, h)) if h <= current else None for h in range(24)]
    baseline: list[float | None] = []
    for hour in range(24):
        seen = [totals[(k, hour)] for k in range(1, weeks + 1) if (k, hour) in totals]
        baseline.append(round(sum(seen) / len(seen), 1) if seen else None)
    return Chart(weeks=weeks, today=today, baseline=baseline)


async def board(conn: Conn, now: datetime, zone: tzinfo, weeks: int) -> TrafficBoard:
    """The sensors and the chart, for a snapshot or a catch-up."""
    found = await sensors_board(conn)
    found.chart = await chart(conn, now, zone, weeks)
    return found
