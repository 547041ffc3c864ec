"""Keeping ``traffic_5min`` and ``traffic_hourly`` in step with readings of any age.

Aggregates refreshed only over a recent stretch never see late or replayed readings. So every
write of readings notes the time window it touched in ``traffic_backlog``, in the write's own
transaction, and upkeep (``ioc.jobs``) refreshes the aggregates over exactly those windows:
TimescaleDB recomputes the buckets of its continuous aggregates inside them (a refresh cannot
run in a transaction block); plain PostgreSQL's materialised views can only be refreshed whole,
which is then done only when something was written. Noted windows are deleted once refreshed,
so a failed or interrupted refresh is tried again on the next round.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import psycopg
from psycopg import sql

log = logging.getLogger(__name__)

Conn = psycopg.AsyncConnection[Any]

VIEWS: Final = ("traffic_5min", "traffic_hourly")
# Windows are widened to whole hours, the larger bucket: every bucket of both views they
# touch then lies wholly inside, and TimescaleDB refreshes only buckets wholly inside a window.
ALIGN: Final = timedelta(hours=1)
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Window:
    """A span [start, end) to refresh, and the backlog rows it settles."""

    start: datetime
    end: datetime
    ids: tuple[int, ...] = ()


async def note_written(conn: Conn, first: datetime, last: datetime) -> None:
    """Record that readings between ``first`` and ``last`` were written (caller's transaction)."""
    await conn.execute(
        "INSERT INTO traffic_backlog (first_at, last_at) VALUES (%s, %s)", (first, last)
    )


def _floor(moment: datetime) -> datetime:
    return _EPOCH + (moment - _EPOCH) // ALIGN * ALIGN


def merge(spans: Iterable[tuple[datetime, datetime, Sequence[int]]]) -> list[Window]:
    """Whole-hour windows covering the spans, overlapping and touching ones joined."""
    joined: list[tuple[datetime, datetime, list[int]]] = []
    for first, last, ids in sorted(spans, key=lambda s: s[0]):
        start, end = _floor(first), _floor(last) + ALIGN
        if joined and start <= joined[-1][1]:
            joined[-1] = (joined[-1][0], max(joined[-1][1], end), joined[-1][2])
            joined[-1][2].extend(ids)
        else:
            joined.append((start, end, list(ids)))
    return [Window(start, end, tuple(ids)) for start, end, ids in joined]


async def pending(conn: Conn) -> list[Window]:
    """The noted windows, merged; grouped by hour in the database so the answer stays small."""
    cur = await conn.execute(
        "SELECT min(first_at), max(last_at), array_agg(id) FROM traffic_backlog"
        " GROUP BY date_trunc('hour', first_at)"
    )
    rows: list[tuple[Any, ...]] = await cur.fetchall()
    return merge((r[0], r[1], r[2]) for r in rows)


async def _settle(conn: Conn, windows: Sequence[Window]) -> None:
    ids = [i for w in windows for i in w.ids]
    if ids:
        await conn.execute("DELETE FROM traffic_backlog WHERE id = ANY(%s)", (ids,))


async def refresh_views(conn: Conn) -> None:
    """Plain PostgreSQL: refresh both materialised views whole."""
    for view in VIEWS:
        cur = await conn.execute(
            "SELECT ispopulated FROM pg_matviews WHERE matviewname = %s", (view,)
        )
        row = await cur.fetchone()
        # CONCURRENTLY keeps readers unblocked, but needs a populated view to start from.
        mode = sql.SQL("CONCURRENTLY " if row and row[0] else "")
        await conn.execute(
            sql.SQL("REFRESH MATERIALIZED VIEW {}{}").format(mode, sql.Identifier(view))
        )


async def catch_up(conn: Conn, backend: str, force: bool = False) -> list[Window]:
    """Refresh the aggregates over every noted window; the windows refreshed.

    ``conn`` must be in autocommit mode with no transaction open. ``force`` (plain only)
    refreshes the views even with nothing noted, e.g. after old partitions were dropped.
    """
    windows = await pending(conn)
    if backend == "timescale":
        for window in windows:
            for view in VIEWS:
                await conn.execute(
                    sql.SQL("CALL refresh_continuous_aggregate({}, %s, %s)").format(
                        sql.Literal(view)
                    ),
                    (window.start, window.end),
                )
            log.info("aggregates refreshed for %s – %s", window.start, window.end)
    elif windows or force or not await _views_populated(conn):
        await refresh_views(conn)
    await _settle(conn, windows)
    return windows


async def _views_populated(conn: Conn) -> bool:
    cur = await conn.execute(
        "SELECT bool_and(ispopulated) FROM pg_matviews WHERE matviewname = ANY(%s)", (list(VIEWS),)
    )
    row = await cur.fetchone()
    return bool(row and row[0])
