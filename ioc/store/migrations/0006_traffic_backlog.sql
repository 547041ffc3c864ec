-- Time windows of traffic readings written since the aggregates (traffic_5min, traffic_hourly)
-- last caught up with them. The writer notes each batch's window in the batch's own transaction;
-- upkeep refreshes the aggregates over the noted windows and then deletes them
-- (ioc.store.aggregates), so late and replayed readings reach the aggregates too.
CREATE TABLE traffic_backlog (
    id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    first_at timestamptz NOT NULL,
    last_at  timestamptz NOT NULL,
    CHECK (first_at <= last_at)
);

-- Readings stored before this migration may never have been aggregated: one window over them all.
INSERT INTO traffic_backlog (first_at, last_at)
SELECT min(observed_at), max(observed_at) FROM traffic_readings HAVING count(*) > 0;
