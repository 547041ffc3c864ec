"""``ioc bench review``: each table of the leaders' review over a year of tickets and dossiers.

The data (``ioc.bench.review_data``) is loaded by COPY once: into a scratch database dropped
after, or, with ``--database NAME``, into a database of that name on the same server that
later runs reuse as it is (loading 5,000,000 tickets takes a long while on a small machine).
Each table is timed over the whole year and over its last month (median of a few runs, the
rollups already current). The baseline for each table is the exact query straight over the
tickets (or the dossiers) in the same run: the same figures, computed without rollups.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

import click
import psycopg

from alerting.setup import load_book
from ioc.bench import review_data
from ioc.bench.harness import machine_line, scratch_database
from ioc.settings import Settings
from ioc.store import migrate
from ioc.store.database import (
    DatabaseLocation,
    create_database,
    with_dbname,
    with_timezone,
)
from maps.review import period as review_period
from maps.review import queries as review_queries
from maps.review import rollups as review_rollups

BAR_MS = 500.0
_ZONE = ZoneInfo("Asia/Ho_Chi_Minh")
_RUNS = 3

# The baselines: each table's figures straight from the tickets or the dossiers.
_EXACT_TICKETS = """
SELECT {key}, count(*), count(first_response_at), count(resolved_at),
       percentile_cont(ARRAY[0.5, 0.9]) WITHIN GROUP (ORDER BY response_working_s),
       percentile_cont(ARRAY[0.5, 0.9]) WITHIN GROUP (ORDER BY resolution_working_s),
       count(*) FILTER (WHERE sla_result IN ('early', 'on_time')), count(sla_result),
       count(*) FILTER (WHERE state NOT IN ('resolved', 'closed', 'rejected')
                        AND deadline_at < %(now)s)
FROM tickets WHERE opened_at >= %(since)s AND opened_at < %(until)s
GROUP BY GROUPING SETS (({key}), ())"""

_EXACT_WEEKS = """
SELECT date_trunc('week', opened_at AT TIME ZONE %(zone)s)::date, count(*), count(resolved_at),
       count(*) FILTER (WHERE sla_result IN ('early', 'on_time')), count(sla_result)
FROM tickets WHERE opened_at >= %(since)s AND opened_at < %(until)s GROUP BY 1"""

_EXACT_DOSSIERS = """
WITH fee AS (
  SELECT DISTINCT dossier_id FROM dossier_events WHERE event IN ('fee_requested', 'fee_paid')),
d AS (
  SELECT d.*, d.accepted_at >= %(since)s AND d.accepted_at < %(until)s AS received,
         d.finished_at >= %(since)s AND d.finished_at < %(until)s AND d.result IS NOT NULL
           AS finished,
         d.paid_online OR fee.dossier_id IS NOT NULL AS owes_fee
  FROM dossiers d LEFT JOIN fee USING (dossier_id)
  WHERE (d.accepted_at >= %(since)s AND d.accepted_at < %(until)s)
     OR (d.finished_at >= %(since)s AND d.finished_at < %(until)s))
SELECT agency, count(*) FILTER (WHERE received),
       count(*) FILTER (WHERE received AND channel = 'online'),
       count(*) FILTER (WHERE received AND owes_fee),
       count(*) FILTER (WHERE received AND digitised),
       count(*) FILTER (WHERE finished), count(*) FILTER (WHERE finished AND result = 'late'),
       avg(used_working_s) FILTER (WHERE finished),
       count(*) FILTER (WHERE received AND state NOT IN ('result_returned', 'refused',
                                                          'withdrawn', 'stopped')
                        AND deadline_at < %(now)s)
FROM d GROUP BY GROUPING SETS ((agency), ())"""

# Three plain GROUP BYs over the period's ratings (the table reads one set of groupings).
_EXACT_SATISFACTION = """
SELECT subject, agency, NULL, count(*), count(*) FILTER (WHERE rating = 'satisfied')
FROM ratings WHERE rated_at >= %(since)s AND rated_at < %(until)s GROUP BY 1, 2
UNION ALL
SELECT subject, NULL, topic, count(*), count(*) FILTER (WHERE rating = 'satisfied')
FROM ratings WHERE rated_at >= %(since)s AND rated_at < %(until)s GROUP BY 1, 3
UNION ALL
SELECT subject, NULL, NULL, count(*), count(*) FILTER (WHERE rating = 'satisfied')
FROM ratings WHERE rated_at >= %(since)s AND rated_at < %(until)s GROUP BY 1"""

_BASELINES = {
    "agencies": _EXACT_TICKETS.format(key="agency"),
    "categories": _EXACT_TICKETS.format(key="category"),
    "weeks": _EXACT_WEEKS,
    "dossiers": _EXACT_DOSSIERS,
    "satisfaction": _EXACT_SATISFACTION,
}


@dataclass
class ReviewBench:
    tickets: int
    dossier_events: int
    load_s: float  # 0 when the database was reused
    build_s: float
    # (period, table) → (review ms, baseline ms)
    times: dict[tuple[str, str], tuple[float, float]]


async def _median_ms(work: Any, runs: int = _RUNS) -> float:
    spent = []
    for _ in range(runs):
        started = time.perf_counter()
        await work()
        spent.append((time.perf_counter() - started) * 1000)
    return statistics.median(spent)


async def _bench(settings: Settings, url: str, tickets: int, dossier_events: int) -> ReviewBench:
    zone = str(_ZONE)
    async with await psycopg.AsyncConnection.connect(
        with_timezone(url, zone), autocommit=True
    ) as conn:
        cur = await conn.execute("SELECT count(*) FROM tickets")
        found = await cur.fetchone()
        load_s = 0.0
        if found is None or found[0] == 0:
            click.echo(
                f"loading {tickets:,} tickets and {dossier_events:,} dossier events by COPY, "
                "folding the dossiers …",
                err=True,
            )
            started = time.perf_counter()
            book = await load_book(conn, settings.model_copy(update={"timezone": zone}))
            await review_data.load(conn, book, tickets, dossier_events)
            load_s = time.perf_counter() - started
        else:
            click.echo(f"reusing the {found[0]:,} tickets already loaded", err=True)
        cur = await conn.execute(
            "SELECT (SELECT count(*) FROM tickets), (SELECT count(*) FROM dossier_events)"
        )
        counts = await cur.fetchone()
        assert counts is not None
        started = time.perf_counter()
        await review_rollups.refresh(conn, zone)
        build_s = time.perf_counter() - started
        await conn.execute(
            "VACUUM (ANALYZE) review_ticket_days, review_ticket_bins, review_dossier_months"
        )
        names = await review_queries.load_names(conn)
        now = review_data.START + timedelta(days=review_data.DAYS)
        last_month = (now - timedelta(days=1)).date().replace(day=1)
        periods = {
            "year": review_period.ReviewQuery(
                review_data.START.date().replace(day=1), last_month, _ZONE
            ),
            "month": review_period.ReviewQuery(last_month, last_month, _ZONE),
        }
        times: dict[tuple[str, str], tuple[float, float]] = {}
        for period, query in periods.items():
            params = {"since": query.since, "until": query.until, "now": now, "zone": zone}
            # Each table with a whole-province baseline (``officials`` needs an agency chosen).
            for name in _BASELINES:

                async def table(name: str = name, query: review_period.ReviewQuery = query) -> None:
                    await review_queries.build_table(
                        conn, name, query, now, review_data.OFFICE_DAY_S, names
                    )

                async def baseline(name: str = name, params: dict[str, Any] = params) -> None:
                    await (await conn.execute(_BASELINES[name], params)).fetchall()

                times[(period, name)] = (await _median_ms(table), await _median_ms(baseline))
    return ReviewBench(int(counts[0]), int(counts[1]), load_s, build_s, times)


@contextlib.contextmanager
def _kept_database(settings: Settings, name: str) -> Iterator[str]:
    """A database of this name on the configured (or embedded) server, created and migrated
    if needed, kept after the run."""
    with DatabaseLocation(settings) as location:
        admin = with_dbname(location.url, "postgres")
        with psycopg.connect(admin, autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            url = with_dbname(admin, name) if exists.fetchone() else create_database(admin, name)
        migrate.upgrade(url, settings.timescale)
        yield url


def run_review_benchmark(
    settings: Settings, tickets: int, dossier_events: int, database: str | None
) -> dict[str, float | int | str]:
    place = _kept_database(settings, database) if database else scratch_database(settings, "review")
    with place as url:
        result = asyncio.run(_bench(settings, url, tickets, dossier_events))
    slowest = max(ms for ms, _ in result.times.values())
    figures: dict[str, float | int | str] = {
        "tickets": result.tickets,
        "dossier_events": result.dossier_events,
    }
    lines = []
    for (period, name), (ms, base) in result.times.items():
        figures[f"{period}_{name}_ms"] = round(ms, 1)
        figures[f"{period}_{name}_baseline_ms"] = round(base, 1)
        lines.append(
            f"  {period:<5} {name:<10} {ms:8.1f} ms ({ms / BAR_MS:.2f} of the bar)   "
            f"exact over the tickets/dossiers: {base:8.1f} ms"
        )
    figures["slowest_ms"] = round(slowest, 1)
    figures["build_s"] = round(result.build_s, 1)
    figures["load_s"] = round(result.load_s, 1)
    figures["meets_bar"] = int(slowest <= BAR_MS)
    click.echo(
        f"\nreview over {result.tickets:,} tickets and {result.dossier_events:,} dossier events, "
        f"median of {_RUNS} runs (bar: {BAR_MS:.0f} ms each):\n"
        + "\n".join(lines)
        + f"\n  rollups brought up to date in {result.build_s:.1f} s"
        + (f"; data loaded in {result.load_s:.0f} s" if result.load_s else "; data reused")
    )
    click.echo(machine_line("review", figures))
    return figures
