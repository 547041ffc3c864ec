"""``ioc bench ingest``: traffic readings over HTTP, end to end, against a per-row INSERT baseline."""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import click
import msgspec
import psutil
import psycopg

from ioc.bench.harness import (
    machine_line,
    percentile,
    post_all,
    scratch_database,
    server_process,
)
from ioc.bench.lean_http import post_all_lean
from ioc.settings import Settings
from ioc.store.keys import create_key
from ioc.store.partitions import PartitionManager
from ioc.store.reference import Sensor, upsert_sensors

SENSORS = 400
BATCH, NDJSON = "/v1/events/batch", "application/x-ndjson"
_START = datetime(2025, 3, 3, tzinfo=ZoneInfo("Asia/Ho_Chi_Minh"))


def readings(count: int, offset_days: int) -> list[dict[str, Any]]:
    """Plausible 5-minute readings, every sensor at every step, from a fixed start."""
    start = _START + timedelta(days=offset_days)
    out = []
    for i in range(count):
        step, sensor = divmod(i, SENSORS)
        out.append(
            {
                "kind": "traffic_count",
                "sensor_id": f"BENCH-{sensor:04d}",
                "observed_at": (start + timedelta(minutes=5 * step)).isoformat(),
                "interval_s": 300,
                "vehicle_count": (i * 7) % 90,
                "avg_speed_kmh": 20.0 + (i % 40),
            }
        )
    return out


async def _prepare(url: str) -> str:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await upsert_sensors(
            conn,
            [
                Sensor(sensor_id=f"BENCH-{n:04d}", lon=107.5 + n / 4000, lat=16.4 + n / 4000)
                for n in range(SENSORS)
            ],
        )
        key, _ = await create_key(conn, "source", "bench", None, "ioc bench ingest")
        return key.token


async def _partitions_for(url: str, rows: list[dict[str, Any]]) -> None:
    times = [datetime.fromisoformat(r["observed_at"]) for r in rows]
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        manager = PartitionManager(enabled=True)
        await manager.load(conn)
        await manager.ensure(conn, "traffic_readings", min(times), max(times))


def per_row_baseline(url: str, rows: list[dict[str, Any]], batch_size: int, backend: str) -> float:
    """The naive writer: one INSERT statement per reading, a commit per batch. Rows/s."""
    if backend == "plain":
        asyncio.run(_partitions_for(url, rows))
    with psycopg.connect(url) as conn:
        started = time.perf_counter()
        for first in range(0, len(rows), batch_size):
            with conn.transaction(), conn.cursor() as cur:
                for r in rows[first : first + batch_size]:
                    cur.execute(
                        "INSERT INTO traffic_readings (sensor_id, observed_at, interval_s,"
                        " vehicle_count, avg_speed_kmh) VALUES (%s, %s, %s, %s, %s)"
                        " ON CONFLICT DO NOTHING",
                        (
                            r["sensor_id"],
                            r["observed_at"],
                            r["interval_s"],
                            r["vehicle_count"],
                            r["avg_speed_kmh"],
                        ),
                    )
        return len(rows) / (time.perf_counter() - started)


def raw_copy(url: str, rows: list[dict[str, Any]], backend: str) -> float:
    """The physical limit: one COPY of a prebuilt buffer of the rows, nothing else. Rows/s."""
    if backend == "plain":
        asyncio.run(_partitions_for(url, rows))
    buffer = "".join(
        f"{r['sensor_id']}\t{r['observed_at']}\t{r['interval_s']}\t{r['vehicle_count']}"
        f"\t{r['avg_speed_kmh']}\n"
        for r in rows
    ).encode()
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        started = time.perf_counter()
        with cur.copy(
            "COPY traffic_readings (sensor_id, observed_at, interval_s, vehicle_count,"
            " avg_speed_kmh) FROM STDIN"
        ) as copy:
            copy.write(buffer)
        conn.commit()
        return len(rows) / (time.perf_counter() - started)


class CpuWatch:
    """CPU spent from now on by the server process and by the backends serving its database
    (the database server may be shared: other databases' backends are left out)."""

    def __init__(self, server_pid: int, url: str) -> None:
        self._server = psutil.Process(server_pid)
        with psycopg.connect(url) as conn:
            row = conn.execute("SELECT pg_backend_pid(), current_database()").fetchone()
            assert row is not None
            self._postmaster = psutil.Process(int(row[0])).parent()
            self._tag = f" {row[1]} "  # backends are titled "postgres: user database host …"
        self._start = self._now()

    def _now(self) -> tuple[float, dict[int, float]]:
        times = self._server.cpu_times()
        database: dict[int, float] = {}
        if self._postmaster is not None:
            for process in self._postmaster.children():
                with contextlib.suppress(psutil.Error):
                    if self._tag in " ".join(process.cmdline()) + " ":
                        spent = process.cpu_times()
                        database[process.pid] = spent.user + spent.system
        return times.user + times.system, database

    def per_item(self, items: int) -> tuple[float, float]:
        """(server, database) CPU µs per item since the watch began (ended backends' share
        is not seen)."""
        server, database = self._now()
        first_server, first_database = self._start
        spent = sum(t - first_database.get(pid, 0.0) for pid, t in database.items())
        return 1e6 * (server - first_server) / items, 1e6 * spent / items


def _backend(url: str) -> str:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT value FROM ioc_meta WHERE key = 'backend'").fetchone()
    return str(row[0]) if row else "plain"


def run_ingest_bench(
    settings: Settings, events: int, batch_size: int, single: int, concurrency: int
) -> dict[str, float | int | str]:
    encoder = msgspec.json.Encoder()
    with scratch_database(settings, "ingest") as url:
        key = asyncio.run(_prepare(url))
        click.echo(f"preparing {events:,} readings in batches of {batch_size:,} …", err=True)
        rows = readings(events, 0)
        bodies = [
            b"\n".join(encoder.encode(r) for r in rows[i : i + batch_size])
            for i in range(0, len(rows), batch_size)
        ]
        with server_process(url) as server:
            # A short warm-up, so connection set-up and first partitions are not timed.
            warm = readings(batch_size, 400)
            asyncio.run(
                post_all(
                    server.url,
                    key,
                    [b"\n".join(map(encoder.encode, warm))],
                    path=BATCH,
                    content_type=NDJSON,
                    parallel=1,
                )
            )
            click.echo("batch ingest over HTTP …", err=True)
            watch = CpuWatch(server.process.pid, url)
            batch_eps = asyncio.run(
                post_all(server.url, key, bodies, path=BATCH, content_type=NDJSON, parallel=2)
            ).per_s
            batch_cpu = watch.per_item(events)
            click.echo(f"single-event POSTs ({single:,}, {concurrency} connections) …", err=True)
            single_rows = readings(single, 200)
            single_bodies = [encoder.encode(r) for r in single_rows]
            watch = CpuWatch(server.process.pid, url)
            singles, client_s = post_all_lean(
                server.url,
                key,
                single_bodies,
                path="/v1/events",
                content_type="application/json",
                parallel=concurrency,
                ok=(201,),
            )
            single_cpu = watch.per_item(single)
            single_rps, latencies = singles.per_s, singles.latencies_s
        baseline_rows = readings(min(events, 20_000), 100)
        click.echo(f"per-row INSERT baseline ({len(baseline_rows):,} rows) …", err=True)
        backend = _backend(url)
        baseline_eps = per_row_baseline(url, baseline_rows, batch_size, backend)
        # The same number of rows, shaped alike (another stretch of days), as one raw COPY.
        click.echo(f"raw COPY of {events:,} rows (the physical limit) …", err=True)
        copy_eps = raw_copy(url, readings(events, 800), backend)
    p50 = percentile(latencies, 0.50) * 1000
    p99 = percentile(latencies, 0.99) * 1000
    figures: dict[str, float | int | str] = {
        "batch_eps": round(batch_eps),
        "baseline_row_insert_eps": round(baseline_eps),
        "batch_vs_baseline": round(batch_eps / baseline_eps, 2),
        "raw_copy_eps": round(copy_eps),
        "batch_vs_raw_copy": round(batch_eps / copy_eps, 3),
        "batch_bar_eps": 150_000,
        "batch_meets_bar": int(batch_eps >= 150_000 and batch_eps >= 3 * baseline_eps),
        "single_rps": round(single_rps),
        "single_p50_ms": round(p50, 2),
        "single_p99_ms": round(p99, 2),
        "single_meets_bar": int(single_rps >= 3_000 and p99 <= 50),
        "batch_server_cpu_us": round(batch_cpu[0], 1),
        "batch_database_cpu_us": round(batch_cpu[1], 1),
        "single_client_cpu_us": round(1e6 * client_s / single, 1),
        "single_server_cpu_us": round(single_cpu[0], 1),
        "single_database_cpu_us": round(single_cpu[1], 1),
        "events": events,
        "batch_size": batch_size,
        "single_requests": single,
        "concurrency": concurrency,
    }
    click.echo(
        f"\nbatch ingest (HTTP, end to end): {batch_eps:,.0f} events/s\n"
        f"per-row INSERT baseline:          {baseline_eps:,.0f} rows/s\n"
        f"ratio:                            {batch_eps / baseline_eps:.1f}×  (bar: ≥ 150,000/s and ≥ 3×)\n"
        f"raw COPY of as many rows:         {copy_eps:,.0f} rows/s; HTTP batches reach "
        f"{batch_eps / copy_eps:.0%} of it\n"
        f"single-event POST:                {single_rps:,.0f} requests/s, p50 {p50:.1f} ms, "
        f"p99 {p99:.1f} ms  (bar: ≥ 3,000/s, p99 ≤ 50 ms)\n"
        f"CPU per reading, batches:         server {batch_cpu[0]:.1f} µs, database "
        f"{batch_cpu[1]:.1f} µs\n"
        f"CPU per single POST:              server {single_cpu[0]:.1f} µs, database "
        f"{single_cpu[1]:.1f} µs, client {1e6 * client_s / single:.1f} µs"
    )
    click.echo(machine_line("ingest", figures))
    return figures
