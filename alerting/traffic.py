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

from alerting.traffic_alerts import CONGESTION, SILENT, congestion_alert, silent_alert
from alerting.traffic_queries import CONGESTION_SQL, LAST_EVER_SQL, SILENT_SQL
from ioc.alerts.records import NewAlert, active_subjects, raise_alerts, resolve_alerts
from ioc.clock import Clock
from ioc.routing.router import Decision, Router
from ioc.settings import Settings

log = logging.getLogger(__name__)

Conn = psycopg.AsyncConnection[Any]

# Held for the length of one check's transaction; other engine processes skip while it is taken.
LOCK: Final = 0x10C_5000
# Interval assumed for a sensor that has never reported.
DEFAULT_INTERVAL_S: Final = 300
BUCKET_S: Final = 300  # traffic_5min


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
            raised_s, cleared_s = await self._settle(conn, now, SILENT, silent, silent_alert)
            congested: list[dict[str, Any]] = []
            raised_c: tuple[int, ...] = ()
            cleared_c: tuple[int, ...] = ()
            if await _baseline_ready(conn):
                congested = await self._congested(conn, now)
                raised_c, cleared_c = await self._settle(
                    conn, now, CONGESTION, congested, congestion_alert
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
                SILENT_SQL,
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
                await cur.execute(LAST_EVER_SQL, {"sensors": unknown, "now": now})
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
                CONGESTION_SQL,
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


async def _baseline_ready(conn: Conn) -> bool:
    """Whether the 5-minute aggregate can be read (a materialised view starts unpopulated)."""
    cur = await conn.execute(
        "SELECT relkind <> 'm' OR relispopulated FROM pg_class WHERE oid = 'traffic_5min'::regclass"
    )
    row = await cur.fetchone()
    return bool(row and row[0])
