"""The review half of ``ioc bench live``: each leaders' review query timed over many tickets and dossiers."""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

import click
import psycopg

from alerting.setup import load_book
from ioc.bench import review_data
from ioc.bench.harness import scratch_database
from ioc.settings import Settings
from ioc.store.database import with_timezone
from maps.review import period as review_period
from maps.review import queries as review_queries
from maps.review import rollups as review_rollups
from maps.review import table as review_table

_ZONE = ZoneInfo("Asia/Ho_Chi_Minh")

REVIEW_BAR_MS = 500.0


_EXACT_BY_AGENCY = """
SELECT agency, count(*),
       percentile_cont(ARRAY[0.5, 0.9]) WITHIN GROUP (ORDER BY response_working_s),
       percentile_cont(ARRAY[0.5, 0.9]) WITHIN GROUP (ORDER BY resolution_working_s),
       count(*) FILTER (WHERE sla_result IN ('early', 'on_time')), count(sla_result)
FROM tickets WHERE opened_at >= %s AND opened_at < %s GROUP BY agency"""


@dataclass
class ReviewTimes:
    tickets: int
    dossier_events: int
    dossiers: int
    load_s: float
    build_s: float
    fold_s: float
    query_ms: dict[str, float]
    exact_ms: float
    worst_error: float  # largest relative difference of a rollup percentile from the exact one


async def _timed(work: Any) -> float:
    started = time.perf_counter()
    await work
    return (time.perf_counter() - started) * 1000


async def _review_times(
    settings: Settings, url: str, tickets: int, dossier_events: int
) -> ReviewTimes:
    zone = str(_ZONE)
    async with await psycopg.AsyncConnection.connect(
        with_timezone(url, zone), autocommit=True
    ) as conn:
        started = time.perf_counter()
        book = await load_book(conn, settings.model_copy(update={"timezone": zone}))
        data = await review_data.load(conn, book, tickets, dossier_events)
        load_s = time.perf_counter() - started
        click.echo(f"building the review rollups over {tickets:,} tickets …", err=True)
        started = time.perf_counter()
        await review_rollups.refresh(conn, zone)
        build_s = time.perf_counter() - started
        await conn.execute("VACUUM (ANALYZE) review_ticket_days, review_ticket_bins")
        names = await review_queries.load_names(conn)
        query = review_period.ReviewQuery(
            data.since.date().replace(day=1),
            (data.until - timedelta(days=1)).date().replace(day=1),
            _ZONE,
        )
        query_ms: dict[str, float] = {}
        tables: dict[str, review_table.Table] = {}
        for name in (t for t in review_queries.TABLES if t != "officials"):  # needs an agency
            runs = []
            for _ in range(3):
                started = time.perf_counter()
                tables[name] = await review_queries.build_table(
                    conn, name, query, data.now, review_data.OFFICE_DAY_S, names
                )
                runs.append((time.perf_counter() - started) * 1000)
            query_ms[name] = statistics.median(runs)
        # The baseline: the same figures, exactly, from the tickets themselves.
        started = time.perf_counter()
        cur = await conn.execute(_EXACT_BY_AGENCY, (query.since, query.until))
        exact = {row[0]: row for row in await cur.fetchall()}
        exact_ms = (time.perf_counter() - started) * 1000
        worst = 0.0
        for row in tables["agencies"].rows:
            if row["agency"] is None:
                continue
            _, _, response, resolution, _, _ = exact[row["agency"]]
            for shown, true in (
                (row["response_median_h"], response[0]),
                (row["response_p90_h"], response[1]),
                (row["resolution_median_h"], resolution[0]),
                (row["resolution_p90_h"], resolution[1]),
            ):
                worst = max(worst, abs(shown * 3600 - true) / true)
        # A day's changes: 1 % of the tickets resolved again later, then folded in.
        await conn.execute(
            "UPDATE tickets SET resolution_working_s = resolution_working_s + 3600"
            " WHERE id % 100 = 0 AND resolution_working_s IS NOT NULL"
        )
        started = time.perf_counter()
        await review_rollups.refresh(conn, zone)
        fold_s = time.perf_counter() - started
    return ReviewTimes(
        data.tickets,
        data.dossier_events,
        data.dossiers,
        load_s,
        build_s,
        fold_s,
        query_ms,
        exact_ms,
        worst,
    )


def review_times(settings: Settings, tickets: int, dossier_events: int) -> ReviewTimes:
    with scratch_database(settings, "review") as url:
        click.echo(
            f"loading {tickets:,} tickets and {dossier_events:,} dossier events by COPY, "
            "folding the dossiers …",
            err=True,
        )
        return asyncio.run(_review_times(settings, url, tickets, dossier_events))
