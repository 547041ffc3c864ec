"""``ioc bench route``: point-in-jurisdiction routing against geopandas.sjoin, and field reports
ingested end to end into routed tickets."""

from __future__ import annotations

import asyncio
import tempfile
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import click
import msgspec
import numpy as np
import psycopg
import shapely

from ioc.bench.geo import run_route_bench
from ioc.bench.harness import (
    Posted,
    cost_per_event,
    machine_line,
    percentile,
    post_all,
    scratch_database,
    server_process,
)
from ioc.bench.ingest import CpuWatch
from ioc.bench.lean_http import post_all_lean
from ioc.routing.jurisdictions import read_boundary_file
from ioc.routing.rules import apply_config, read_config
from ioc.routing.synthetic import hue_wards_file
from ioc.settings import Settings
from ioc.store.jurisdictions import save_boundary_set
from ioc.store.keys import create_key
from maps.review import rollups as review_rollups

_CONFIG = Path(__file__).resolve().parents[2] / "deploy" / "hue-responsibility.toml"
_CATEGORIES = ("moi_truong", "giao_thong", "chieu_sang", "cap_thoat_nuoc", "trat_tu_do_thi")


def _reports(
    count: int, bounds: tuple[float, float, float, float], tag: str, start: datetime
) -> list[dict[str, Any]]:
    """Reports at random places, spread over the ten minutes after ``start``.

    They are fresh, as field reports are: their tickets' clocks run, but none falls due
    while the benchmark runs (catching up on overdue clocks is ``bench sla``'s figure).
    """
    rng = np.random.default_rng(7)
    minx, miny, maxx, maxy = bounds
    step = min(1.0, 600 / max(count, 1))
    return [
        {
            "kind": "field_report",
            "external_id": f"{tag}-{n}",
            "category": _CATEGORIES[n % 5],
            "description": "Phản ánh hiện trường (benchmark)",
            "lon": float(rng.uniform(minx, maxx)),
            "lat": float(rng.uniform(miny, maxy)),
            "occurred_at": (start + timedelta(seconds=n * step)).isoformat(),
        }
        for n in range(count)
    ]


async def _prepare(
    url: str, wards: Path, zone: str
) -> tuple[str, tuple[float, float, float, float]]:
    read = read_boundary_file(wards, "ward", date(2025, 7, 1))
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await save_boundary_set(conn, read.boundaries, read.source_name)
        if _CONFIG.exists():
            await apply_config(conn, read_config(_CONFIG))
        key, _ = await create_key(conn, "source", "bench", None, "ioc bench route")
        # The whole platform on: the review's rollups are built, so every ticket write
        # also logs its change for them (migration 0005's triggers).
        await review_rollups.refresh(conn, zone)
    minx, miny, maxx, maxy = (
        float(v) for v in shapely.total_bounds(list(read.boundaries.geometries))
    )
    return key.token, (minx, miny, maxx, maxy)


def _tickets(url: str) -> tuple[int, int, int]:
    """(tickets, routed to an agency, reports linked to a ticket)."""
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT (SELECT count(*) FROM tickets), (SELECT count(agency) FROM tickets),"
            " (SELECT count(ticket_id) FROM field_reports)"
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1]), int(row[2])


def _post_batches(
    url: str, key: str, batch: list[dict[str, Any]], batch_size: int, posters: int
) -> Posted:
    """POST the reports in batches over ``posters`` connections; echoes what it does."""
    encoder = msgspec.json.Encoder()
    bodies = [
        b"\n".join(encoder.encode(r) for r in batch[i : i + batch_size])
        for i in range(0, len(batch), batch_size)
    ]
    click.echo(
        f"{len(batch):,} field reports in batches of {batch_size:,} from {posters} posters"
        " → tickets …",
        err=True,
    )
    return asyncio.run(
        post_all(
            url,
            key,
            bodies,
            path="/v1/events/batch",
            content_type="application/x-ndjson",
            parallel=posters,
        )
    )


def _larger_run(
    settings: Settings, wards: Path, reports: int, batch_size: int, posters: int
) -> Posted:
    """The batches alone, for the cost per report at a second size, in a database of its own."""
    with scratch_database(settings, "route_large") as url:
        key, bounds = asyncio.run(_prepare(url, wards, settings.timezone))
        batch = _reports(reports, bounds, "B", datetime.now(UTC) - timedelta(minutes=15))
        with server_process(url) as server:
            return _post_batches(server.url, key, batch, batch_size, posters)


def run_route_benchmark(
    settings: Settings,
    points: int,
    reports: int,
    batch_size: int,
    larger: int = 0,
    posters: int = 2,
) -> dict[str, Any]:
    """The figures; with ``larger``, the batches run again at that size to compare the cost
    per report at the two sizes (the bar: flat from 50,000 to 500,000 reports). The batches
    come from ``posters`` connections at once (two, the bar's figure)."""
    encoder = msgspec.json.Encoder()
    with tempfile.TemporaryDirectory() as work:
        wards, real = hue_wards_file(Path(work))
        click.echo(
            f"routing {points:,} random points against {'Huế' if real else 'generated'} wards "
            f"({wards.name}) with the index and with geopandas.sjoin …",
            err=True,
        )
        geo = run_route_bench(wards, n_points=points)
        with scratch_database(settings, "route") as url:
            key, bounds = asyncio.run(_prepare(url, wards, settings.timezone))
            start = datetime.now(UTC) - timedelta(minutes=15)
            batch = _reports(reports, bounds, "B", start)
            single = _reports(min(2_000, reports), bounds, "S", start)
            with server_process(url) as server:
                watch = CpuWatch(server.process.pid, url)
                batches = _post_batches(server.url, key, batch, batch_size, posters)
                batch_cpu = watch.per_item(reports)
                click.echo(f"baseline: {len(single):,} single-report POSTs …", err=True)
                # From a lean keep-alive client (aiohttp's own CPU per request, on the same
                # cores as the server, would weigh on the figure).
                watch = CpuWatch(server.process.pid, url)
                singles, client_s = post_all_lean(
                    server.url,
                    key,
                    [encoder.encode(r) for r in single],
                    path="/v1/events",
                    content_type="application/json",
                    parallel=32,
                )
                single_cpu = watch.per_item(len(single))
            opened, routed, linked = _tickets(url)
        large = _larger_run(settings, wards, larger, batch_size, posters) if larger else None
    batch_rate, single_rate = batches.per_s, singles.per_s
    # Cost per report with the tables nearly empty (first tenth) and nearly full (last tenth);
    # the very first request (warm-up: first plans, first connections) is left out.
    skip = 1 / max(len(batches.done), 1)
    early = cost_per_event(batches, skip, 0.1 + skip)
    late = cost_per_event(batches, 0.9, 1.0)
    single_p99_ms = percentile(singles.latencies_s, 0.99) * 1000
    # Wall time per report over a whole run (two requests at a time), and over its last tenth.
    sizes = [(reports, 1e6 / batch_rate, late)]
    if large is not None:
        sizes.append((larger, 1e6 / large.per_s, cost_per_event(large, 0.9, 1.0)))
    figures: dict[str, Any] = {
        "wards_file": wards.name,
        "real_boundaries": int(real),
        "points": points,
        "index_pts_per_s": geo["index_pts_per_s"],
        "sjoin_pts_per_s": geo["sjoin_pts_per_s"],
        "index_vs_sjoin": geo["ratio"],
        "agreement": geo["agreement"],
        "route_meets_bar": int(bool(geo["meets_bar"])),
        "reports": reports,
        "posters": posters,
        "reports_to_tickets_per_s": round(batch_rate),
        "report_us_first_tenth": round(early, 1),
        "report_us_last_tenth": round(late, 1),
        "single_report_posts_per_s": round(single_rate),
        "single_report_p99_ms": round(single_p99_ms, 1),
        "batch_vs_single": round(batch_rate / single_rate, 2),
        "batch_server_cpu_us": round(batch_cpu[0], 1),
        "batch_database_cpu_us": round(batch_cpu[1], 1),
        "single_server_cpu_us": round(single_cpu[0], 1),
        "single_database_cpu_us": round(single_cpu[1], 1),
        "single_client_cpu_us": round(1e6 * client_s / len(single), 1),
        **{f"report_us_at_{n}": round(cost, 1) for n, cost, _ in sizes},
        **{f"report_us_last_tenth_at_{n}": round(tail, 1) for n, _, tail in sizes[1:]},
        **({"larger_vs_smaller": round(sizes[1][1] / sizes[0][1], 2)} if large else {}),
        "tickets_opened": opened,
        "tickets_routed_to_agency": routed,
        "reports_on_a_ticket": linked,
        "tickets_meet_bar": int(
            batch_rate >= 15_000
            and late <= 1.25 * early
            and sizes[-1][1] <= 1.25 * sizes[0][1]
            and single_rate >= 1_500
            and single_p99_ms <= 50
            and linked == reports + len(single)
        ),
    }
    click.echo(
        f"\npoint → ward: {geo['index_pts_per_s']:,} points/s (index) vs {geo['sjoin_pts_per_s']:,} "
        f"points/s (geopandas.sjoin): {geo['ratio']}×, agreement {geo['agreement']:.6f}  "
        "(bar: ≥ 1,000,000/s, ≥ 5×, 100%)\n"
        f"field reports → routed tickets: {batch_rate:,.0f} reports/s in batches of "
        f"{batch_size:,} (bar: ≥ 15,000/s); request latency per report {early:,.0f} µs over the "
        f"first tenth of the batches, {late:,.0f} µs over the last (bar: flat)\n"
        f"single field-report POSTs, 32 clients: {single_rate:,.0f}/s, p99 {single_p99_ms:.1f} ms "
        f"(bar: ≥ 1,500/s, p99 ≤ 50 ms); batches are {batch_rate / single_rate:.1f}× faster\n"
        f"CPU per report: in batches server {batch_cpu[0]:,.0f} µs, database "
        f"{batch_cpu[1]:,.0f} µs; single POSTs server {single_cpu[0]:,.0f} µs, database "
        f"{single_cpu[1]:,.0f} µs, client {1e6 * client_s / len(single):,.0f} µs\n"
        f"tickets opened {opened:,} (routed to an agency: {routed:,}); every report on a ticket: "
        f"{linked:,} of {reports + len(single):,} (nearby repeats join an open ticket)"
    )
    if large is not None:
        (small_n, small_us, small_tail), (large_n, large_us, large_tail) = sizes
        click.echo(
            f"cost per report in batches, wall time over the run: {small_us:,.1f} µs at "
            f"{small_n:,} reports, {large_us:,.1f} µs at {large_n:,} ({large_us / small_us:.2f}×);"
            f" request latency per report over the last tenth: {small_tail:,.0f} µs, "
            f"{large_tail:,.0f} µs (bar: flat)"
        )
    click.echo(machine_line("route", figures))
    return figures
