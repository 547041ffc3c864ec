"""Migrations, partitions and upkeep against a real database."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from ioc.clock import ManualClock
from ioc.jobs import Maintenance
from ioc.settings import Settings
from ioc.store import migrate
from ioc.store.database import create_database, drop_database, make_pool
from ioc.store.partitions import PartitionManager, months_between
from tests.backends import backend_database
from tests.conftest import TEMPLATE

HCM = ZoneInfo("Asia/Ho_Chi_Minh")
ALL = [m.version for m in migrate.available("plain")]


@pytest.fixture
def empty_db(admin_url: str) -> Iterator[str]:
    yield create_database(admin_url, "ioc_test_empty")
    drop_database(admin_url, "ioc_test_empty")


def test_upgrade_twice_is_a_no_op(empty_db: str) -> None:
    first = migrate.upgrade(empty_db)
    assert [m.version for m in first] == ALL
    assert migrate.upgrade(empty_db) == []


def test_two_processes_upgrading_at_once_apply_each_migration_once(empty_db: str) -> None:
    applied: list[int] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            applied.extend(m.version for m in migrate.upgrade(empty_db))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(applied) == ALL
    with psycopg.connect(empty_db) as conn:
        assert conn.execute("SELECT count(*) FROM schema_migrations").fetchone() == (len(ALL),)


def test_timescale_off_records_plain_backend(empty_db: str) -> None:
    migrate.upgrade(empty_db, "off")
    with psycopg.connect(empty_db) as conn:
        assert conn.execute("SELECT value FROM ioc_meta WHERE key = 'backend'").fetchone() == (
            "plain",
        )


def test_months_between_spans_year_end() -> None:
    months = months_between(datetime(2025, 11, 30, tzinfo=HCM), datetime(2026, 2, 1, 8, tzinfo=HCM))
    assert [m.isoformat() for m in months] == [
        "2025-11-01",
        "2025-12-01",
        "2026-01-01",
        "2026-02-01",
    ]


def _partitions(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
            " JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = 'traffic_readings'"
        ).fetchall()
    return {r[0] for r in rows}


@pytest.fixture
def plain_db(admin_url: str) -> Iterator[str]:
    """A database set up for plain PostgreSQL, whatever the server offers."""
    url = backend_database(admin_url, "plain")
    yield url
    drop_database(admin_url, str(conninfo_to_dict(url)["dbname"]))


def test_maintenance_creates_ahead_refreshes_and_drops(plain_db: str) -> None:
    db_url = plain_db
    settings = Settings(database_url=db_url, partition_months_ahead=2, traffic_retention_days=200)
    clock = ManualClock(datetime(2025, 5, 15, 9, 0, tzinfo=HCM))

    async def scenario() -> tuple[set[str], list[tuple[object, ...]], set[str]]:
        pool = make_pool(db_url, settings)
        await pool.open()
        try:
            partitions = PartitionManager(enabled=True)
            async with pool.connection() as conn:
                await partitions.load(conn)
                old = datetime(2025, 1, 10, 8, 0, tzinfo=HCM)
                await partitions.ensure(conn, "traffic_readings", old, old)
                await conn.execute(
                    "INSERT INTO sensors (sensor_id, lon, lat) VALUES ('S1', 107.6, 16.4)"
                )
                for minute in (0, 1, 2, 7):
                    await conn.execute(
                        "INSERT INTO traffic_readings (sensor_id, observed_at, interval_s, vehicle_count,"
                        " avg_speed_kmh) VALUES ('S1', %s, 60, 10, 30)",
                        (old + timedelta(minutes=minute),),
                    )
            job = Maintenance(pool, partitions, settings, clock)
            assert await job.tick()
            async with pool.connection() as conn:
                cur = await conn.execute(
                    "SELECT bucket, readings, vehicles FROM traffic_5min ORDER BY bucket"
                )
                buckets = await cur.fetchall()
            before = _partitions(db_url)
            clock.advance(300 * 86400)
            await job.tick()
            return before, buckets, _partitions(db_url)
        finally:
            await pool.close()

    before, buckets, after = asyncio.run(scenario())
    assert {
        "traffic_readings_p202501",
        "traffic_readings_p202505",
        "traffic_readings_p202506",
        "traffic_readings_p202507",
    } <= before
    assert [(b[1], b[2]) for b in buckets] == [(3, 30), (1, 10)]
    # 300 days on, the cut-off is 23 Aug 2025: every month that ended before it is gone.
    assert not {"traffic_readings_p202501", "traffic_readings_p202507"} & after
    assert {"traffic_readings_p202603", "traffic_readings_p202605"} <= after


def test_the_test_template_is_sealed_before_it_is_copied(admin_url: str, template_url: str) -> None:
    # TimescaleDB's scheduler connects to every database that allows it; a copy fails while
    # anyone is connected to its template.
    with psycopg.connect(admin_url) as conn:
        assert conn.execute(
            "SELECT datallowconn, datistemplate FROM pg_database WHERE datname = %s", (TEMPLATE,)
        ).fetchone() == (False, True)
    with pytest.raises(psycopg.OperationalError, match="not currently accepting connections"):
        psycopg.connect(template_url).close()
