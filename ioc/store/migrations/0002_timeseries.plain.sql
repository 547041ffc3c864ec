-- Time series on plain PostgreSQL: monthly range partitions (created ahead by the platform),
-- BRIN on time, materialised views in place of continuous aggregates.

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
) PARTITION BY RANGE (observed_at);
CREATE INDEX traffic_readings_time_brin ON traffic_readings USING brin (observed_at);

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
) PARTITION BY RANGE (at);
CREATE INDEX dossier_events_time_brin ON dossier_events USING brin (at);
CREATE INDEX dossier_events_dossier ON dossier_events (dossier_id, at);

CREATE MATERIALIZED VIEW traffic_5min AS
SELECT sensor_id,
       date_bin('5 minutes', observed_at, TIMESTAMPTZ '2000-01-01 00:00+00') AS bucket,
       count(*)::integer AS readings,
       sum(vehicle_count)::bigint AS vehicles,
       avg(avg_speed_kmh)::real AS avg_speed_kmh,
       avg(occupancy)::real AS occupancy
FROM traffic_readings
GROUP BY 1, 2
WITH NO DATA;
CREATE UNIQUE INDEX traffic_5min_key ON traffic_5min (sensor_id, bucket);

CREATE MATERIALIZED VIEW traffic_hourly AS
SELECT sensor_id,
       date_trunc('hour', observed_at) AS bucket,
       count(*)::integer AS readings,
       sum(vehicle_count)::bigint AS vehicles,
       avg(avg_speed_kmh)::real AS avg_speed_kmh,
       avg(occupancy)::real AS occupancy
FROM traffic_readings
GROUP BY 1, 2
WITH NO DATA;
CREATE UNIQUE INDEX traffic_hourly_key ON traffic_hourly (sensor_id, bucket);
