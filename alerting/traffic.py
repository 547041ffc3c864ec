"""Traffic alerts: congested and silent sensors, raised and cleared by one periodic check.

A check at instant ``now`` sees only what was known then: readings observed by ``now``, and
sensors registered by ``now`` or with a reading by then (a sensor registered later, whose
history was replayed, counts from its data). So checking stored history at past instants
raises what checking it while it streamed in did.

**Silent.** A sensor is silent when its latest reading is older than ``silent_intervals`` of
its own reporting interval (the ``interval_s`` of that reading). A sensor that has never
reported counts from its registration, with a 5-minute interval.

**Congested.** The sensor's last ``congestion_window_s`` of readings (read from
``traffic_readings``, so it is fresh) is compared with its baseline: the 5-minute buckets of
``traffic_5min`` in the same stretch of the same weekday and time of day (local time) in each
week of the last ``congestion_baseline_days``. With fewer than ``congestion_min_samples`` such
buckets (a short history: one week of data gives none), the baseline is the same time of day
on every earlier day of the same type (working days Monday–Friday, or the weekend) within
those days; the alert names the baseline it used. Both sides are put in the same units: mean
speed, and vehicles per 5 minutes (a bucket's count per reading, scaled by the sensor's
current interval, so a bucket with missing readings does not look like a quiet one). A speed
counts only from a reading or bucket with at least ``congestion_min_vehicles`` vehicles per
5 minutes: counters report a speed with no vehicles at all, which says nothing about the road.
With ``z`` = ``congestion_z``, a sensor is congested when

    speed ≤ mean speed − z·σ_speed    or    vehicles ≥ mean vehicles + z·σ_vehicles

where each σ is the baseline's sample standard deviation, floored so a very steady baseline
does not turn every small wobble into an alert: σ_speed ≥ max(1 km/h, 5% of the mean speed),
σ_vehicles ≥ max(1, √mean) (counts vary at least as much as a Poisson count does). A side is
judged only with ``congestion_min_samples`` baseline buckets. An active congestion alert clears
once the sensor is back within z/2 σ on both sides (so it does not flap at the threshold), or
once it can no longer be judged (no recent readings: the silent rule takes over).

Each check is one transaction under a transaction-level advisory lock: a second engine
process finds the lock taken and skips that tick, and the one-active-alert index makes a
repeat after a restart add nothing. Every query is one statement over all sensors.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from ioc.alerts.records import NewAlert, active_subjects, raise_alerts, resolve_alerts
from ioc.clock import Clock
from ioc.routing.router import Decision, Router
from ioc.settings import Settings

log = logging.getLogger(__name__)

Conn = psycopg.AsyncConnection[Any]

# Held for the length of one check's transaction; other engine processes skip while it is taken.
LOCK: Final = 0x10C_5000
SILENT: Final = "silent"
CONGESTION: Final = "congestion"
# Interval assumed for a sensor that has never reported.
DEFAULT_INTERVAL_S: Final = 300
BUCKET_S: Final = 300  # traffic_5min

# What was known at %(now)s: readings observed by then, sensors registered by then or with a
# reading by then (history replayed for a sensor registered later still counts from its data).
# With no reading in the look-back, a sensor registered after %(now)s is silent only if it has
# an older reading; its silence then started before the look-back, past any threshold.
_SILENT = """
SELECT s.sensor_id, s.name, s.lon, s.lat, s.registered_at,
       r.observed_at AS last_at, r.interval_s
FROM sensors s
LEFT JOIN LATERAL (
    SELECT t.observed_at, t.interval_s FROM traffic_readings t
    WHERE t.sensor_id = s.sensor_id
      AND t.observed_at > %(lookback)s AND t.observed_at <= %(now)s
    ORDER BY t.observed_at DESC LIMIT 1
) r ON true
WHERE (r.observed_at IS NOT NULL OR s.registered_at <= %(now)s OR EXISTS (
          SELECT 1 FROM traffic_readings t
          WHERE t.sensor_id = s.sensor_id AND t.observed_at <= %(lookback)s))
  AND coalesce(r.observed_at, CASE WHEN s.registered_at <= %(now)s THEN s.registered_at
                                   ELSE %(lookback)s END)
      <= %(now)s - make_interval(secs => %(intervals)s * coalesce(r.interval_s, %(default_s)s))
"""

# The latest reading by %(now)s of sensors with none within the look-back (for an alert's text).
_LAST_EVER = """
SELECT k.sensor_id, r.observed_at, r.interval_s
FROM unnest(%(sensors)s::text[]) AS k(sensor_id)
CROSS JOIN LATERAL (
    SELECT t.observed_at, t.interval_s FROM traffic_readings t
    WHERE t.sensor_id = k.sensor_id AND t.observed_at <= %(now)s
    ORDER BY t.observed_at DESC LIMIT 1
) r
"""

# One baseline's figures over the buckets ``b`` of the days ``p`` (a fragment of _CONGESTION).
_FIGURES = """
           count(*) AS samples,
           count(DISTINCT p.k) AS days,
           count(b.avg_speed_kmh) FILTER (WHERE b.volume >= %(min_vehicles)s) AS speed_samples,
           avg(b.avg_speed_kmh) FILTER (WHERE b.volume >= %(min_vehicles)s)::float8 AS speed_mean,
           stddev_samp(b.avg_speed_kmh) FILTER (WHERE b.volume >= %(min_vehicles)s)::float8
               AS speed_sd,
           avg(b.volume) AS vehicles_mean,
           stddev_samp(b.volume) AS vehicles_sd
"""

# The buckets of sensor ``r`` in the window that ended at ``p.end_at``. OFFSET 0 keeps this one
# index probe per sensor and day; flattened, the planner may range-scan the buckets of every
# sensor instead (cheap only with PostgreSQL 18's skip scan).
_BUCKETS = """
    CROSS JOIN LATERAL (
        SELECT a.avg_speed_kmh,
               a.vehicles::float8 / a.readings * %(bucket_s)s / r.interval_s AS volume
        FROM traffic_5min a
        WHERE a.sensor_id = r.sensor_id
          AND a.bucket > p.end_at - %(window)s AND a.bucket <= p.end_at
        OFFSET 0
    ) b
"""

_CONGESTION = (
    """
WITH recent AS (
    SELECT t.sensor_id,
           count(*) AS readings,
           avg(t.avg_speed_kmh) FILTER (
               WHERE t.vehicle_count * %(bucket_s)s >= %(min_vehicles)s * t.interval_s
           )::float8 AS speed,
           sum(t.vehicle_count)::float8 * %(bucket_s)s / sum(t.interval_s) AS vehicles,
           avg(t.interval_s)::float8 AS interval_s
    FROM traffic_readings t
    WHERE t.observed_at > %(now)s - %(window)s AND t.observed_at <= %(now)s
    GROUP BY t.sensor_id
),
local_now AS (SELECT %(now)s AT TIME ZONE %(tz)s AS at),
past AS (  -- where the window ended 1, 2, … days ago, by the local clock, on days of today's type
    SELECT k, k %% 7 = 0 AS same_weekday, (n.at - make_interval(days => k)) AT TIME ZONE %(tz)s
           AS end_at
    FROM local_now n CROSS JOIN generate_series(1, %(days)s) AS k
    WHERE (extract(isodow FROM n.at - make_interval(days => k)) >= 6)
          = (extract(isodow FROM n.at) >= 6)
),
weekly AS (
    SELECT r.sensor_id, 'same_weekday' AS kind,"""
    + _FIGURES
    + """
    FROM recent r
    CROSS JOIN past p"""
    + _BUCKETS
    + """
    WHERE p.same_weekday
    GROUP BY r.sensor_id
),
short AS (  -- too few weeks of history: the same time on earlier days of the same type
    SELECT r.* FROM recent r LEFT JOIN weekly w USING (sensor_id)
    WHERE coalesce(w.samples, 0) < %(min_samples)s
),
daily AS (
    SELECT r.sensor_id, 'same_day_type' AS kind,"""
    + _FIGURES
    + """
    FROM short r
    CROSS JOIN past p"""
    + _BUCKETS
    + """
    GROUP BY r.sensor_id
),
baseline AS (
    SELECT * FROM weekly WHERE samples >= %(min_samples)s
    UNION ALL
    SELECT * FROM daily
),
judged AS (
    SELECT r.sensor_id, r.readings, r.speed, r.vehicles, b.kind, b.days, b.samples,
           b.speed_samples, b.speed_mean, b.speed_sd, b.vehicles_mean, b.vehicles_sd,
           CASE WHEN r.speed IS NOT NULL AND b.speed_samples >= %(min_samples)s
                THEN (b.speed_mean - r.speed)
                     / greatest(b.speed_sd, 0.05 * b.speed_mean, 1.0) END AS z_speed,
           CASE WHEN b.samples >= %(min_samples)s
                THEN (r.vehicles - b.vehicles_mean)
                     / greatest(b.vehicles_sd, sqrt(b.vehicles_mean), 1.0) END AS z_vehicles
    FROM recent r JOIN baseline b USING (sensor_id)
)
SELECT j.*, s.name, s.lon, s.lat, extract(isodow FROM n.at)::int AS weekday
FROM judged j JOIN sensors s USING (sensor_id) CROSS JOIN local_now n
WHERE greatest(j.z_speed, j.z_vehicles)
      >= CASE WHEN j.sensor_id = ANY(%(active)s) THEN %(clear_z)s ELSE %(z)s END
"""
)


@dataclass(frozen=True)
class TrafficCheck:
    """What one check found and changed."""

    skipped: bool  # another process held the lock: it does this tick
    sensors: int = 0
    silent: int = 0  # sensors silent now (alerts raised earlier included)
    congested: int = 0
    raised: tuple[int, ...] = ()
    cleared: tuple[int, ...] = ()


class TrafficWatch:
    """Raises and clears congestion and silent-sensor alerts."""

    def __init__(self, settings: Settings, router: Callable[[], Router]) -> None:
        self._settings = settings
        self._router = router

    async def run(self, pool: AsyncConnectionPool[Any], clock: Clock) -> None:
        """Check every ``traffic_check_s`` until cancelled; a failed check is logged and retried."""
        every = self._settings.traffic_check_s
        while True:
            try:
                async with pool.connection() as conn:
                    result = await self.check(conn, clock.now())
                if result.raised or result.cleared:
                    log.info(
                        "traffic check: %d sensors, %d silent, %d congested; raised %d, cleared %d",
                        result.sensors,
                        result.silent,
                        result.congested,
                        len(result.raised),
                        len(result.cleared),
                    )
            except Exception:
                # The engine must outlive a database restart or a broken query; next tick retries.
                log.exception("traffic check failed; trying again in %.0f s", every)
            await clock.sleep(every)

    async def check(self, conn: Conn, now: datetime) -> TrafficCheck:
        """One check of every sensor, in one transaction (skipped if another process is at it)."""
        async with conn.transaction():
            cur = await conn.execute("SELECT pg_try_advisory_xact_lock(%s)", (LOCK,))
            row = await cur.fetchone()
            if not row or not row[0]:
                log.debug("traffic check skipped: another process holds the lock")
                return TrafficCheck(skipped=True)
            cur = await conn.execute("SELECT count(*) FROM sensors")
            counted = await cur.fetchone()
            silent = await self._silent(conn, now)
            raised_s, cleared_s = await self._settle(conn, now, SILENT, silent, _silent_alert)
            congested: list[dict[str, Any]] = []
            raised_c: tuple[int, ...] = ()
            cleared_c: tuple[int, ...] = ()
            if await _baseline_ready(conn):
                congested = await self._congested(conn, now)
                raised_c, cleared_c = await self._settle(
                    conn, now, CONGESTION, congested, _congestion_alert
                )
            else:  # a new database: the aggregate fills at its first refresh
                log.info("traffic check: no congestion baseline yet (traffic_5min not refreshed)")
        return TrafficCheck(
            skipped=False,
            sensors=int(counted[0]) if counted else 0,
            silent=len(silent),
            congested=len(congested),
            raised=raised_s + raised_c,
            cleared=cleared_s + cleared_c,
        )

    async def _silent(self, conn: Conn, now: datetime) -> list[dict[str, Any]]:
        intervals = self._settings.silent_intervals
        # Any threshold is at most `intervals` days (interval_s ≤ 1 day), so older readings
        # cannot change the verdict: the look-back keeps the lookup to the newest partitions.
        lookback = now - timedelta(days=intervals)
        async with conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(
                _SILENT,
                {
                    "now": now,
                    "lookback": lookback,
                    "intervals": intervals,
                    "default_s": DEFAULT_INTERVAL_S,
                },
            )
            rows = await cur.fetchall()
            # Only for alerts about to be raised: a long-dead sensor is not looked up every tick.
            active = await active_subjects(conn, "sensor", SILENT)
            unknown = [
                r["sensor_id"]
                for r in rows
                if r["last_at"] is None and r["sensor_id"] not in active
            ]
            if unknown:
                await cur.execute(_LAST_EVER, {"sensors": unknown, "now": now})
                older = {r["sensor_id"]: r for r in await cur.fetchall()}
                for r in rows:
                    if r["sensor_id"] in older:
                        r["last_at"] = older[r["sensor_id"]]["observed_at"]
                        r["interval_s"] = older[r["sensor_id"]]["interval_s"]
        for r in rows:
            r["threshold_s"] = intervals * (r["interval_s"] or DEFAULT_INTERVAL_S)
        return rows

    async def _congested(self, conn: Conn, now: datetime) -> list[dict[str, Any]]:
        s = self._settings
        active = await active_subjects(conn, "sensor", CONGESTION)
        async with conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(
                _CONGESTION,
                {
                    "now": now,
                    "window": timedelta(seconds=s.congestion_window_s),
                    "tz": s.timezone,
                    "days": s.congestion_baseline_days,
                    "bucket_s": BUCKET_S,
                    "min_samples": s.congestion_min_samples,
                    "min_vehicles": s.congestion_min_vehicles,
                    "z": s.congestion_z,
                    "clear_z": s.congestion_z / 2,
                    "active": list(active),
                },
            )
            rows = await cur.fetchall()
        for r in rows:
            r["weeks"] = s.congestion_baseline_days // 7
            r["min_vehicles"] = s.congestion_min_vehicles
            r["window_s"] = s.congestion_window_s
            r["z"] = s.congestion_z
        return rows

    async def _settle(
        self,
        conn: Conn,
        now: datetime,
        rule: str,
        rows: Sequence[dict[str, Any]],
        build: Callable[[dict[str, Any], Settings, Decision], NewAlert],
    ) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """Raise alerts for the sensors newly found, resolve those no longer found."""
        active = await active_subjects(conn, "sensor", rule)
        found = {r["sensor_id"] for r in rows}
        cleared = await resolve_alerts(
            conn, "sensor", sorted(set(active) - found), now, "cleared", rule=rule
        )
        new = [r for r in rows if r["sensor_id"] not in active]
        if not new:
            return (), tuple(cleared)
        decisions = self._router().route(
            [r["lon"] for r in new],
            [r["lat"] for r in new],
            [self._settings.traffic_category] * len(new),
            [now] * len(new),
        )
        alerts = [build(r, self._settings, d) for r, d in zip(new, decisions, strict=True)]
        raised = await raise_alerts(conn, alerts, now, self._settings.alert_digest_s)
        return tuple(raised), tuple(cleared)


def _where(row: dict[str, Any]) -> str:
    name = str(row["name"] or "").strip()
    return f"{name} ({row['sensor_id']})" if name else str(row["sensor_id"])


def _local(moment: datetime, settings: Settings) -> str:
    return moment.astimezone(settings.zone).strftime("%H:%M %d/%m/%Y")


def _round(value: Any, digits: int = 1) -> float | None:
    return None if value is None else round(float(value), digits)


def _silent_alert(row: dict[str, Any], settings: Settings, routed: Decision) -> NewAlert:
    last: datetime | None = row["last_at"]
    if last is None:
        title = (
            f"Cảm biến {_where(row)} chưa gửi số liệu nào từ khi đăng ký"
            f" ({_local(row['registered_at'], settings)})"
        )
    else:
        title = f"Cảm biến {_where(row)} mất tín hiệu: không có số liệu từ {_local(last, settings)}"
    details = {
        "sensor": row["name"] or row["sensor_id"],
        "last_reading_at": None if last is None else last.astimezone(settings.zone).isoformat(),
        "registered_at": row["registered_at"].astimezone(settings.zone).isoformat(),
        "interval_s": row["interval_s"],
        "intervals": settings.silent_intervals,
        "threshold_s": row["threshold_s"],
        "routing": routed.why(),
    }
    return NewAlert(
        subject_kind="sensor",
        subject_id=str(row["sensor_id"]),
        rule=SILENT,
        level="warning",
        severity="warning",
        agency=routed.agency,
        title=title,
        category=settings.traffic_category,
        details=details,
        lon=row["lon"],
        lat=row["lat"],
    )


_WEEKDAYS: Final = ("", "thứ Hai", "thứ Ba", "thứ Tư", "thứ Năm", "thứ Sáu", "thứ Bảy", "Chủ nhật")


def _baseline_text(row: dict[str, Any]) -> str:
    """Which baseline judged the sensor, in the words of the alert."""
    weekday = int(row["weekday"])
    if row["kind"] == "same_weekday":
        return f"cùng giờ {_WEEKDAYS[weekday]} của {row['days']} tuần trước"
    kind = "cuối tuần" if weekday >= 6 else "làm việc (thứ Hai–thứ Sáu)"
    return f"cùng giờ {row['days']} ngày {kind} trước đó (chưa đủ số liệu cùng thứ)"


def _congestion_alert(row: dict[str, Any], settings: Settings, routed: Decision) -> NewAlert:
    z = float(row["z"])
    slow = row["z_speed"] is not None and row["z_speed"] >= z
    busy = row["z_vehicles"] is not None and row["z_vehicles"] >= z
    speed = (
        f"tốc độ {row['speed']:.0f} km/h (thường {row['speed_mean']:.0f} km/h)"
        if row["speed"] is not None and row["speed_mean"] is not None
        else ""
    )
    volume = f"{row['vehicles']:.0f} xe/5 phút (thường {row['vehicles_mean']:.0f})"
    against = _baseline_text(row)
    if slow and busy:
        title = f"Ùn tắc tại {_where(row)}: {speed}, {volume}; so với {against}"
    elif slow:
        title = f"Ùn tắc tại {_where(row)}: {speed}; so với {against}"
    else:
        title = f"Lưu lượng tăng bất thường tại {_where(row)}: {volume}; so với {against}"
    details = {
        "sensor": row["name"] or row["sensor_id"],
        "trigger": [side for side, hit in (("speed", slow), ("vehicles", busy)) if hit],
        "window_s": row["window_s"],
        "recent": {
            "readings": row["readings"],
            "speed_kmh": _round(row["speed"]),
            "vehicles_per_5min": _round(row["vehicles"]),
        },
        "baseline": {
            "kind": row["kind"],
            "description": against,
            "weeks": row["weeks"],
            "days": row["days"],
            "samples": row["samples"],
            "speed_samples": row["speed_samples"],
            "min_vehicles_per_5min": row["min_vehicles"],
            "speed_kmh_mean": _round(row["speed_mean"]),
            "speed_kmh_sd": _round(row["speed_sd"]),
            "vehicles_per_5min_mean": _round(row["vehicles_mean"]),
            "vehicles_per_5min_sd": _round(row["vehicles_sd"]),
        },
        "z_speed": _round(row["z_speed"], 2),
        "z_vehicles": _round(row["z_vehicles"], 2),
        "z_threshold": z,
        "routing": routed.why(),
    }
    return NewAlert(
        subject_kind="sensor",
        subject_id=str(row["sensor_id"]),
        rule=CONGESTION,
        level="warning",
        severity="warning",
        agency=routed.agency,
        title=title,
        category=settings.traffic_category,
        details=details,
        lon=row["lon"],
        lat=row["lat"],
    )


async def _baseline_ready(conn: Conn) -> bool:
    """Whether the 5-minute aggregate can be read (a materialised view starts unpopulated)."""
    cur = await conn.execute(
        "SELECT relkind <> 'm' OR relispopulated FROM pg_class WHERE oid = 'traffic_5min'::regclass"
    )
    row = await cur.fetchone()
    return bool(row and row[0])
