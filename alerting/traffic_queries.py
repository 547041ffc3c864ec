"""The traffic rules as SQL: silent sensors, recent figures, and the congestion baseline and test."""

from __future__ import annotations

# What was known at %(now)s: readings observed by then, sensors registered by then or with a
# reading by then (history replayed for a sensor registered later still counts from its data).
# With no reading in the look-back, a sensor registered after %(now)s is silent only if it has
# an older reading; its silence then started before the look-back, past any threshold.
SILENT_SQL = """
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
LAST_EVER_SQL = """
SELECT k.sensor_id, r.observed_at, r.interval_s
FROM unnest(%(sensors)s::text[]) AS k(sensor_id)
CROSS JOIN LATERAL (
    SELECT t.observed_at, t.interval_s FROM traffic_readings t
    WHERE t.sensor_id = k.sensor_id AND t.observed_at <= %(now)s
    ORDER BY t.observed_at DESC LIMIT 1
) r
"""


# One baseline's figures over the buckets ``b`` of the days ``p`` (a fragment of CONGESTION_SQL).
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


CONGESTION_SQL = (
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
