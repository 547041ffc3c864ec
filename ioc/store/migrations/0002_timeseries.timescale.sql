-- Time series on TimescaleDB: hypertables and continuous aggregates. Compression and retention
-- policies follow the settings and are applied at start-up (ioc.store.policies).

CREATE TABLE traffic_readings (
    sensor_id     text NOT NULL,
    observed_at   timestamptz NOT NULL,
    interval_s    integer NOT NULL,
    vehicle_count integer NOT NULL,
    avg_speed_kmh real,
    occupancy     real,
    lane          smallint,
    received_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (sensor_id, observed_at)
);
SELECT create_hypertable('traffic_readings', 'observed_at', chunk_time_interval => INTERVAL '1 day');

CREATE TABLE dossier_events (
    source         text NOT NULL,
    external_id    text NOT NULL,
    dossier_id     text NOT NULL,
    procedure_code text NOT NULL,
    agency         text NOT NULL,
    event          text NOT NULL,
    at             timestamptz NOT NULL,
    channel        text NOT NULL,
    online_level   text,
    appointment_at timestamptz,
    paid_online    boolean NOT NULL,
    digitised      boolean NOT NULL,
    lon            double precision,
    lat            double precision,
    received_at    timestamptz NOT NULL DEFAULT now()
);
SELECT create_hypertable('dossier_events', 'at', chunk_time_interval => INTERVAL '30 days');
CREATE INDEX dossier_events_dossier ON dossier_events (dossier_id, at);

CREATE MATERIALIZED VIEW traffic_5min WITH (timescaledb.continuous) AS
SELECT sensor_id,
       time_bucket(INTERVAL '5 minutes', observed_at) AS bucket,
       count(*)::integer AS readings,
       sum(vehicle_count)::bigint AS vehicles,
       avg(avg_speed_kmh)::real AS avg_speed_kmh,
       avg(occupancy)::real AS occupancy
FROM traffic_readings
GROUP BY 1, 2
WITH NO DATA;

CREATE MATERIALIZED VIEW traffic_hourly WITH (timescaledb.continuous) AS
SELECT sensor_id,
       time_bucket(INTERVAL '1 hour', observed_at) AS bucket,
       count(*)::integer AS readings,
       sum(vehicle_count)::bigint AS vehicles,
       avg(avg_speed_kmh)::real AS avg_speed_kmh,
       avg(occupancy)::real AS occupancy
FROM traffic_readings
GROUP BY 1, 2
WITH NO DATA;

SELECT add_continuous_aggregate_policy('traffic_5min',
    start_offset => INTERVAL '1 day', end_offset => INTERVAL '5 minutes',
    schedule_interval => INTERVAL '1 minute');
SELECT add_continuous_aggregate_policy('traffic_hourly',
    start_offset => INTERVAL '3 days', end_offset => INTERVAL '1 hour',
    schedule_interval => INTERVAL '10 minutes');
