"""Time series on each back end the server offers: repeats, late data, upkeep policies."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import msgspec
import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from ioc.clock import SystemClock
from ioc.jobs import Maintenance
from ioc.settings import Settings
from ioc.store.aggregates import merge
from ioc.store.database import drop_database, make_pool
from ioc.store.partitions import PartitionManager
from tests.backends import BACKENDS, backend_database
from tests.conftest import RunningServer, auth, make_key, start_server, stop_server

NDJSON = {"Content-Type": "application/x-ndjson"}
SENSORS = ("TS-A", "TS-B", "TS-C")
STEP = timedelta(minutes=5)


@pytest.fixture(params=BACKENDS)
def backend_url(request: pytest.FixtureRequest, admin_url: str) -> Iterator[str]:
    url = backend_database(admin_url, request.param)
    yield url
    drop_database(admin_url, str(conninfo_to_dict(url)["dbname"]))


def _settings(url: str, tmp_path: Path, **extra: Any) -> Settings:
    return Settings(
        database_url=url,
        data_dir=tmp_path,
        max_batch_events=10_000,
        aggregate_refresh_s=3600,
        key_cache_s=0,
        sla_engine=False,
        **extra,
    )


@pytest.fixture
def ts_server(backend_url: str, tmp_path: Path) -> Iterator[RunningServer]:
    thread, running = start_server(_settings(backend_url, tmp_path))
    try:
        yield running
    finally:
        stop_server(thread)


@pytest.fixture
def ts_client(ts_server: RunningServer) -> Iterator[httpx.Client]:
    admin = make_key(ts_server, "admin")
    with httpx.Client(base_url=ts_server.url, timeout=60) as c:
        body = [{"sensor_id": s, "lon": 107.58, "lat": 16.46} for s in SENSORS]
        assert c.post("/v1/sensors", json=body, headers=auth(admin)).status_code == 200
        c.headers.update(auth(make_key(ts_server, "source", source="ts")))
        yield c


def readings(first: datetime, last: datetime, offset: timedelta = timedelta()) -> list[bytes]:
    """One reading per sensor every 5 minutes; whole numbers, so averages compare exactly."""
    out, at, n = [], first + offset, 0
    while at <= last:
        for sensor in SENSORS:
            n += 1
            event = {
                "kind": "traffic_count",
                "sensor_id": sensor,
                "observed_at": at.isoformat(),
                "interval_s": 300,
                "vehicle_count": n % 37,
                "avg_speed_kmh": float(20 + n % 41),
                "occupancy": float(n % 5),
            }
            out.append(msgspec.json.encode(event))
        at += STEP
    return out


def post(client: httpx.Client, lines: list[bytes], batch: int = 5000) -> tuple[int, list[int]]:
    """Send lines in batches; (accepted, duplicate lines numbered across all batches)."""
    accepted, duplicates = 0, []
    for first in range(0, len(lines), batch):
        answer = client.post(
            "/v1/events/batch", content=b"\n".join(lines[first : first + batch]), headers=NDJSON
        )
        assert answer.status_code == 200, answer.text
        accepted += answer.json()["accepted"]
        duplicates += [first + line for line in answer.json()["duplicate_lines"]]
    return accepted, duplicates


def sql_rows(url: str, query: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(query).fetchall()


def compress_all(server: RunningServer) -> int:
    """TimescaleDB: compress every chunk of the readings, as the policy would; how many."""
    if server.platform.backend != "timescale":
        return 0
    rows = sql_rows(
        server.db_url,
        "SELECT compress_chunk(c, if_not_compressed => true)"
        " FROM show_chunks('traffic_readings') c",
    )
    return len(rows)


def test_repeats_are_named_on_compressed_chunks(
    ts_server: RunningServer, ts_client: httpx.Client
) -> None:
    first = datetime.now(UTC).replace(microsecond=0) - timedelta(days=20)
    stored = readings(first, first + timedelta(hours=30))
    assert post(ts_client, stored) == (len(stored), [])
    chunks = compress_all(ts_server)
    if ts_server.platform.backend == "timescale":
        assert chunks >= 2
    fresh = readings(first, first + timedelta(hours=30), offset=timedelta(minutes=1))
    # Repeats of stored rows, new rows among them (lines 11 and 22, counted from 1), and a line
    # repeated within the batch.
    again = [*stored[:10], fresh[0], *stored[10:20], fresh[1], fresh[0], *stored[20:]]
    answer = ts_client.post("/v1/events/batch", content=b"\n".join(again), headers=NDJSON)
    assert answer.status_code == 200, answer.text
    assert answer.json()["accepted"] == 2
    assert answer.json()["duplicate_lines"] == [
        line for line in range(1, len(again) + 1) if line not in (11, 22)
    ]
    assert sql_rows(ts_server.db_url, "SELECT count(*) FROM traffic_readings") == [
        (len(stored) + 2,)
    ]


DIRECT_5MIN = """
SELECT sensor_id, to_timestamp(floor(extract(epoch FROM observed_at) / 300) * 300) AS bucket,
       count(*)::integer, sum(vehicle_count)::bigint, avg(avg_speed_kmh)::real, avg(occupancy)::real
FROM traffic_readings GROUP BY 1, 2 ORDER BY 1, 2"""
DIRECT_HOURLY = DIRECT_5MIN.replace("300", "3600")
VIEW = (
    "SELECT sensor_id, bucket, readings, vehicles, avg_speed_kmh, occupancy FROM {} ORDER BY 1, 2"
)


def upkeep(server: RunningServer) -> None:
    """One round of the platform's upkeep, as its background job runs it (on its own pool:
    refreshing a month of TimescaleDB's 5-minute buckets may outlast ``server.run``)."""
    settings = server.platform.settings

    async def tick() -> None:
        pool = make_pool(server.db_url, settings)
        await pool.open()
        try:
            partitions = PartitionManager(enabled=server.platform.backend == "plain")
            async with pool.connection() as conn:
                await partitions.load(conn)
            job = Maintenance(pool, partitions, settings, SystemClock())
            # The server's own job leads the upkeep: it steps down (it tries again a second
            # later) so that this job leads this round.
            own = server.platform.maintenance
            for _ in range(600):
                server.run(own.resign())
                if await job.tick():
                    return
                await asyncio.sleep(0.1)
            raise AssertionError("upkeep leadership never came free")
        finally:
            await pool.close()

    asyncio.run(tick())


def assert_aggregates_match(url: str) -> int:
    direct = sql_rows(url, DIRECT_5MIN)
    assert sql_rows(url, VIEW.format("traffic_5min")) == direct
    assert sql_rows(url, VIEW.format("traffic_hourly")) == sql_rows(url, DIRECT_HOURLY)
    return len(direct)


def test_replayed_month_reaches_the_aggregates(
    ts_server: RunningServer, ts_client: httpx.Client
) -> None:
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    month = readings(today - timedelta(days=31), today - timedelta(days=1))
    assert post(ts_client, month)[0] == len(month)
    upkeep(ts_server)
    assert assert_aggregates_match(ts_server.db_url) == len(month)
    # Later still: readings for days already aggregated (a sensor's late upload), some repeated.
    late_first = today - timedelta(days=20)
    late = readings(late_first, late_first + timedelta(days=2), offset=timedelta(minutes=2))
    assert post(ts_client, [*late, *month[:50]])[0] == len(late)
    compress_all(ts_server)
    upkeep(ts_server)
    assert assert_aggregates_match(ts_server.db_url) == len(month)
    assert sql_rows(ts_server.db_url, "SELECT count(*) FROM traffic_backlog") == [(0,)]


def test_windows_are_whole_hours_and_joined() -> None:
    def at(day: int, hour: int, minute: int = 0) -> datetime:
        return datetime(2025, 3, day, hour, minute, tzinfo=UTC)

    windows = merge(
        [
            (at(2, 10, 7), at(2, 10, 9), [3]),
            (at(1, 8, 55), at(1, 9, 0), [1]),
            (at(1, 9, 30), at(1, 11, 2), [2]),
            (at(2, 11, 0), at(2, 11, 0), [4]),
        ]
    )
    assert [(w.start, w.end, w.ids) for w in windows] == [
        (at(1, 8), at(1, 12), (1, 2)),
        (at(2, 10), at(2, 12), (3, 4)),
    ]


def backend_of(url: str) -> str:
    return str(sql_rows(url, "SELECT value FROM ioc_meta WHERE key = 'backend'")[0][0])


def scheduled_policies(url: str) -> list[tuple[Any, ...]]:
    """TimescaleDB's jobs for the readings (id, kind, interval); none on plain PostgreSQL."""
    if backend_of(url) != "timescale":
        return []
    return sql_rows(
        url,
        "SELECT job_id, proc_name, coalesce(config->>'compress_after', config->>'drop_after')"
        " FROM timescaledb_information.jobs WHERE hypertable_name = 'traffic_readings'"
        " ORDER BY proc_name",
    )


def test_restarts_keep_policies_and_changed_settings_replace_them(
    backend_url: str, tmp_path: Path
) -> None:
    def start(**settings: Any) -> list[tuple[Any, ...]]:
        thread, _ = start_server(_settings(backend_url, tmp_path, **settings))
        stop_server(thread)
        return scheduled_policies(backend_url)

    first = start()
    assert start() == first
    changed = start(compress_after_days=3, traffic_retention_days=400)
    assert start(compress_after_days=3, traffic_retention_days=400) == changed
    back = start()
    kinds = [[(p[1], p[2]) for p in jobs] for jobs in (first, changed, back)]
    if backend_of(backend_url) == "timescale":
        assert kinds == [
            [("policy_compression", "7 days")],
            [("policy_compression", "3 days"), ("policy_retention", "400 days")],
            [("policy_compression", "7 days")],
        ]
    else:
        assert kinds == [[], [], []]
