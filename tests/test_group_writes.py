"""Few-row writes in one statement (ioc.store.inserts) store, skip and announce exactly what
the COPY path does: the same rows, the same repeats, the same notices and aggregates' notes."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import psycopg

from ioc.events import readings
from ioc.events.kinds import DossierEvent, Event, FieldReport, TrafficCount
from ioc.store.inserts import MOST
from ioc.store.partitions import PartitionManager
from ioc.store.writer import EventWriter, Written
from tests.conftest import RunningServer
from tests.test_ingest_api import count, reading
from tests.test_ingest_poison import _post_concurrently

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


def _reading(sensor: str, minute: int, count: int = 7, **extra: Any) -> TrafficCount:
    return TrafficCount(
        sensor_id=sensor,
        observed_at=T0 + timedelta(minutes=minute),
        interval_s=300,
        vehicle_count=count,
        avg_speed_kmh=extra.get("speed", 41.3),
        occupancy=extra.get("occupancy"),
        lane=extra.get("lane"),
    )


async def _writer(conn: psycopg.AsyncConnection[Any]) -> EventWriter:
    cur = await conn.execute("SELECT count(*) FROM pg_extension WHERE extname = 'timescaledb'")
    row = await cur.fetchone()
    partitions = PartitionManager(enabled=row is not None and row[0] == 0)
    await partitions.load(conn)
    return EventWriter(partitions)


async def _general(
    conn: psycopg.AsyncConnection[Any], writer: EventWriter, events: list[TrafficCount]
) -> set[int]:
    """The path every batch takes: write_batch (COPY for this many), notices, one transaction."""
    lines = range(len(events))
    async with conn.transaction():
        written = await writer.write_batch(conn, TrafficCount, events, lines)
        await readings.announce(conn, TrafficCount, events, lines, written)
    return set(written.duplicate_lines)


async def _state(conn: psycopg.AsyncConnection[Any]) -> tuple[list[Any], list[Any], list[Any]]:
    rows = await (
        await conn.execute(
            "SELECT sensor_id, observed_at, interval_s, vehicle_count, avg_speed_kmh, occupancy,"
            " lane FROM traffic_readings ORDER BY sensor_id, observed_at"
        )
    ).fetchall()
    notices = await (
        await conn.execute("SELECT channel, payload, items FROM live_log ORDER BY xact, ord")
    ).fetchall()
    notes = await (
        await conn.execute("SELECT first_at, last_at FROM traffic_backlog ORDER BY id")
    ).fetchall()
    return rows, notices, notes


async def _reset(conn: psycopg.AsyncConnection[Any]) -> None:
    await conn.execute("TRUNCATE traffic_readings, traffic_backlog, live_log")


def _group() -> tuple[list[TrafficCount], list[TrafficCount]]:
    """A stored reading, then a group repeating it and itself, over 55 sensors (two notices)."""
    stored = [_reading("S-00", 0)]
    group = [
        _reading("S-00", 0, count=99),  # a repeat of the stored reading
        _reading("S-01", 5, count=1, lane=2),
        _reading("S-01", 5, count=2),  # a repeat of the line before: the first one stays
        _reading("S-01", 10, count=3, occupancy=12.5),  # S-01's latest
        _reading("S-02", 15, speed=None),
        _reading("S-01", 0, count=4),  # earlier than S-01's latest
    ]
    group += [_reading(f"S-{n:02d}", n, speed=30.0 + n / 7) for n in range(3, 55)]
    return stored, group


def test_one_statement_stores_skips_and_announces_as_the_general_path(db_url: str) -> None:
    async def run() -> None:
        async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
            writer = await _writer(conn)
            stored, group = _group()
            assert readings.one_statement(group) and len(group) > readings.PER_NOTICE
            everything: list[Event] = [*stored, *group]
            await writer.prepare(conn, {TrafficCount: everything})
            outcomes = []
            for way in ("general", "one statement"):
                await _reset(conn)
                await _general(conn, writer, stored)
                await conn.execute("TRUNCATE live_log, traffic_backlog")
                if way == "general":
                    repeats = await _general(conn, writer, group)
                else:
                    repeats = await readings.write_group(conn, group)
                outcomes.append((repeats, await _state(conn)))
            assert outcomes[0] == outcomes[1]
            repeats, (rows, notices, notes) = outcomes[1]
            assert repeats == {0, 2}
            assert len(rows) == 1 + len(group) - 2
            assert [n[0] for n in notices] == [readings.READINGS] * 2
            first = msgspec.json.decode(notices[0][1])["readings"]
            assert len(first) == readings.PER_NOTICE
            assert first[0][:3] == ["S-01", (T0 + timedelta(minutes=10)).isoformat(), 3]
            assert notes == [(T0, T0 + timedelta(minutes=54))]

    asyncio.run(run())


def test_a_group_of_repeats_notes_and_announces_nothing(db_url: str) -> None:
    async def run() -> None:
        async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
            writer = await _writer(conn)
            group = [_reading("S-1", 0), _reading("S-2", 0)]
            await writer.prepare(conn, {TrafficCount: list[Event](group)})
            assert await readings.write_group(conn, group) == set()
            await conn.execute("TRUNCATE live_log, traffic_backlog")
            assert await readings.write_group(conn, [*group, group[0]]) == {0, 1, 2}
            rows, notices, notes = await _state(conn)
            assert (len(rows), notices, notes) == (2, [], [])

    asyncio.run(run())


def _report(n: int, source: str, **extra: Any) -> FieldReport:
    return msgspec.convert(
        {
            "external_id": f"R-{n}",
            "source": source,
            "category": "moi_truong",
            "description": f"Phản ánh số {n} – 'quoted' \"and\" \\ back",
            "lon": 107.59 + n / 1000,
            "lat": 16.46,
            "occurred_at": (T0 + timedelta(seconds=n)).isoformat(),
            **extra,
        },
        FieldReport,
    )


def _variety(n: int, source: str) -> FieldReport:
    """Reports with and without an address, a reporter and photos' addresses."""
    if n % 3 == 0:
        return _report(n, source)
    return _report(
        n,
        source,
        address=f"{n} Lê Lợi",
        reporter={"name": "Nguyễn Văn A", "phone": None} if n % 2 else {"email": "a@b.vn"},
        media_urls=[] if n % 2 else [f"https://example.org/{n}.jpg", "https://example.org/x"],
    )


def test_few_rows_are_stored_as_the_copy_path_stores_them(db_url: str) -> None:
    count = MOST + 1  # one write of this many takes the COPY path

    async def write(
        conn: psycopg.AsyncConnection[Any], writer: EventWriter, events: list[Event]
    ) -> Written:
        async with conn.transaction():
            return await writer.write_batch(conn, type(events[0]), events, range(len(events)))

    async def run() -> None:
        async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
            writer = await _writer(conn)
            await write(conn, writer, [_variety(n, "copy") for n in range(count)])
            for start in range(0, count, 5):
                few: list[Event] = [_variety(n, "few") for n in range(start, start + 5)]
                await write(conn, writer, few[: count - start])
            repeated = await write(conn, writer, [_variety(0, "few"), _variety(1, "few")])
            assert repeated.duplicate_lines == (0, 1)
            cur = await conn.execute(
                "SELECT source, external_id, category, description, lon, lat, occurred_at,"
                " address, reporter, media_urls FROM field_reports ORDER BY external_id, source"
            )
            rows = await cur.fetchall()
            copied = [r[1:] for r in rows if r[0] == "copy"]
            few_rows = [r[1:] for r in rows if r[0] == "few"]
            assert len(copied) == count and few_rows == copied
            assert {r[7] is None for r in copied} == {True, False}
            assert {len(r[8]) for r in copied} == {0, 2}

    asyncio.run(run())


def _dossier(n: int, external_id: str) -> DossierEvent:
    return DossierEvent(
        dossier_id=f"D-{n}",
        procedure_code="P-1",
        agency="AG-1",
        event="registered",
        at=T0 + timedelta(hours=n),
        channel="online",
        source="portal",
        external_id=external_id,
    )


def test_few_dossier_events_skip_repeats_through_their_key_table(db_url: str) -> None:
    async def run() -> None:
        async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
            writer = await _writer(conn)
            first = [_dossier(1, "E-1")]
            group = [_dossier(2, "E-2"), _dossier(1, "E-1"), _dossier(3, "E-2"), _dossier(4, "E-4")]
            both: list[Event] = [*first, *group]
            await writer.prepare(conn, {DossierEvent: both})
            async with conn.transaction():
                await writer.write_batch(conn, DossierEvent, first, [7])
            async with conn.transaction():
                written = await writer.write_batch(conn, DossierEvent, group, [10, 11, 12, 13])
            assert (written.stored, written.duplicate_lines) == (2, (11, 12))
            cur = await conn.execute(
                "SELECT external_id, dossier_id FROM dossier_events ORDER BY external_id"
            )
            assert await cur.fetchall() == [("E-1", "D-1"), ("E-2", "D-2"), ("E-4", "D-4")]
            cur = await conn.execute("SELECT count(*) FROM dossier_event_keys")
            assert await cur.fetchone() == (3,)

    asyncio.run(run())


def test_concurrent_readings_isolate_the_one_the_database_refuses(
    server: RunningServer, source_key: str, sensors: list[str]
) -> None:
    with psycopg.connect(server.db_url, autocommit=True) as conn:
        conn.execute(
            "ALTER TABLE traffic_readings ADD CONSTRAINT no_thirteen CHECK (vehicle_count <> 13)"
        )
    events = [reading(sensors[i % 3], i, vehicle_count=20 + i) for i in range(12)]
    events[5]["vehicle_count"] = 13
    events.append(dict(events[0]))  # a repeat, in the same group or the next
    answers = _post_concurrently(server, source_key, events)
    refused = answers.pop(5)
    assert refused.status_code == 422, refused.text
    assert "no_thirteen" in refused.json()["error"]["message"]
    assert sorted(a.status_code for a in answers) == [200] + [201] * 11
    assert count(server, "traffic_readings") == 11
