"""``ioc bench wall``: the wall's dossier board over many open dossiers, before and after 0020.

The dossiers are written straight into ``dossiers`` (one INSERT … generate_series): open ones
accepted over the last month across a hundred agencies, a few per cent of them due soon and a
few overdue, beside finished ones, then VACUUM ANALYZE as autovacuum would leave them. The
board is timed as the wall reads it (``maps.wall.dossiers.board``, median of a few runs); the
baseline is the query the board used before migration 0020, timed in the same run with that
migration's index dropped inside a transaction that is rolled back. Both plans are printed
from EXPLAIN (ANALYZE, BUFFERS): the rows each scan read and the buffers it touched, which do
not depend on how loaded the machine is.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, Final
from zoneinfo import ZoneInfo

import click
import psycopg

from ioc.bench.harness import machine_line, scratch_database
from ioc.settings import Settings
from maps.wall import dossiers as wall_dossiers

Conn = psycopg.AsyncConnection[Any]

_RUNS: Final = 7
_ZONE: Final = ZoneInfo("Asia/Ho_Chi_Minh")
NOW: Final = datetime(2026, 3, 16, 3, 0, tzinfo=UTC)

# The board's open-dossier statement before migration 0020 (every open dossier, from the heap).
BEFORE_SQL: Final = """
SELECT agency, count(*),
       count(*) FILTER (WHERE deadline_at < %(now)s),
       count(*) FILTER (WHERE deadline_at >= %(now)s AND due_soon_at <= %(now)s)
FROM dossiers
WHERE state <> ALL(%(finishing)s) AND accepted_at IS NOT NULL
GROUP BY GROUPING SETS ((agency), ())"""
_FINISHING: Final = ["result_returned", "refused", "withdrawn", "stopped"]

# n: a dossier's number; open ones first. An open dossier was accepted up to 10 days before
# NOW with 10 to 20 days allowed (due soon at three quarters: about one in eight is), one in
# forty 25 to 35 days before (overdue); finished ones were accepted over the year.
_LOAD_SQL: Final = """
INSERT INTO dossiers (dossier_id, source, procedure_code, agency, state, channel,
                      registered_at, accepted_at, deadline_at, sla_allowed_s, due_soon_at,
                      finished_at, result, last_event_at, event_count)
SELECT 'HS-' || n, 'bench', 'P-' || (n %% 40), 'agency-' || (n %% 100),
       CASE WHEN n <= %(open)s THEN 'in_processing' ELSE 'result_returned' END,
       (ARRAY['online', 'counter', 'postal'])[1 + n %% 3],
       a, a, a + allowed, extract(epoch FROM allowed), a + allowed * 0.75,
       CASE WHEN n > %(open)s THEN a + allowed * 0.5 END,
       CASE WHEN n > %(open)s THEN 'on_time' END,
       a, 2
FROM generate_series(1::bigint, %(open)s + %(finished)s) AS n,
     LATERAL (SELECT CASE WHEN n > %(open)s
                          THEN %(now)s - interval '365 days' * ((n * 7919) %% 1000) / 1000.0
                          WHEN n %% 40 = 0
                          THEN %(now)s - interval '1 day' * (25 + (n * 7919) %% 10)
                          ELSE %(now)s - interval '10 days' * ((n * 7919) %% 1000) / 1000.0
                     END AS a,
                     interval '1 day' * (20 - (n * 104729) %% 11) AS allowed) AS t"""


async def _median_ms(work: Callable[[], Awaitable[Any]]) -> float:
    spent = []
    for _ in range(_RUNS):
        started = time.perf_counter()
        await work()
        spent.append((time.perf_counter() - started) * 1000)
    return statistics.median(spent)


def _scans(plan: dict[str, Any]) -> list[str]:
    """Each scan node of a plan: its kind, index, rows read and buffers touched."""
    found: list[str] = []
    node_type = str(plan.get("Node Type", ""))
    if "Scan" in node_type:
        rows = int(plan.get("Actual Rows", 0)) + int(plan.get("Rows Removed by Filter", 0))
        index = f" on {plan['Index Name']}" if "Index Name" in plan else ""
        buffers = int(plan.get("Shared Hit Blocks", 0)) + int(plan.get("Shared Read Blocks", 0))
        heap = plan.get("Heap Fetches")
        fetches = f", {heap} heap fetches" if heap is not None else ""
        found.append(f"{node_type}{index}: {rows:,} rows read, {buffers:,} buffers{fetches}")
    for child in plan.get("Plans", []):
        found.extend(_scans(child))
    return found


async def _explain(conn: Conn, sql: str, params: dict[str, Any]) -> tuple[list[str], int]:
    cur = await conn.execute(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {sql}", params)
    row = await cur.fetchone()
    assert row is not None
    document = row[0] if isinstance(row[0], list) else json.loads(row[0])
    plan = document[0]["Plan"]
    buffers = int(plan.get("Shared Hit Blocks", 0)) + int(plan.get("Shared Read Blocks", 0))
    return _scans(plan), buffers


async def _bench(url: str, open_count: int, finished: int) -> dict[str, Any]:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        click.echo(f"writing {open_count:,} open and {finished:,} finished dossiers …", err=True)
        await conn.execute(_LOAD_SQL, {"open": open_count, "finished": finished, "now": NOW})
        await conn.execute("VACUUM (ANALYZE) dossiers")
        board = await wall_dossiers.board(conn, NOW, _ZONE)
        board_ms = await _median_ms(lambda: wall_dossiers.board(conn, NOW, _ZONE))
        due_params = {"now": NOW}

        async def open_part() -> None:
            await (await conn.execute(wall_dossiers.OPEN_SQL)).fetchall()
            await (await conn.execute(wall_dossiers.DUE_SQL, due_params)).fetchall()

        after_ms = await _median_ms(open_part)
        after_plans = await _explain(conn, wall_dossiers.OPEN_SQL, {})
        due_plans = await _explain(conn, wall_dossiers.DUE_SQL, due_params)
    async with await psycopg.AsyncConnection.connect(url) as conn:
        # The baseline: the schema and the query as they were before migration 0020.
        await conn.execute("DROP INDEX wall_dossiers_due")
        params = {"now": NOW, "finishing": _FINISHING}

        async def before() -> None:
            await (await conn.execute(BEFORE_SQL, params)).fetchall()

        before_ms = await _median_ms(before)
        before_plans = await _explain(conn, BEFORE_SQL, params)
        await conn.rollback()
    return {
        "board": board,
        "board_ms": board_ms,
        "after_ms": after_ms,
        "before_ms": before_ms,
        "after_plans": (after_plans, due_plans),
        "before_plans": before_plans,
    }


def run_wall_benchmark(
    settings: Settings, open_count: int, finished: int
) -> dict[str, float | int | str]:
    with scratch_database(settings, "wall") as url:
        result = asyncio.run(_bench(url, open_count, finished))
    board = result["board"]
    (count_scans, count_buffers), (due_scans, due_buffers) = result["after_plans"]
    before_scans, before_buffers = result["before_plans"]
    lines = [
        f"\nwall dossier board over {open_count:,} open dossiers ({finished:,} finished beside "
        f"them), median of {_RUNS} runs:",
        f"  open dossiers' figures before 0020 (1 statement): {result['before_ms']:8.2f} ms"
        "  (baseline, same run)",
        f"  open dossiers' figures now (2 statements):        {result['after_ms']:8.2f} ms",
        f"  the whole board now (4 statements):               {result['board_ms']:8.2f} ms",
        f"  figures: {board.in_processing:,} in processing, {board.due_soon:,} due soon, "
        f"{board.overdue:,} overdue",
        f"  plan before ({before_buffers:,} buffers):",
        *(f"    {line}" for line in before_scans),
        f"  plan now, open count ({count_buffers:,} buffers):",
        *(f"    {line}" for line in count_scans),
        f"  plan now, due soon and overdue ({due_buffers:,} buffers):",
        *(f"    {line}" for line in due_scans),
    ]
    click.echo("\n".join(lines))
    figures: dict[str, float | int | str] = {
        "open": open_count,
        "finished": finished,
        "open_figures_ms": round(result["after_ms"], 2),
        "baseline_ms": round(result["before_ms"], 2),
        "board_ms": round(result["board_ms"], 2),
        "due_buffers": due_buffers,
        "count_buffers": count_buffers,
        "baseline_buffers": before_buffers,
    }
    click.echo(machine_line("wall", figures))
    return figures
