"""The wall's dossier board: today's public-service figures, read set-based from ``dossiers``.

The figures follow the leaders' review (maps/review/dossiers.py): a dossier is received when it
is accepted, finished when it ends (finished_at), on time when its result came early or on the
day; overdue while open with its deadline passed. Days and months are local (IOC_TIMEZONE).
Three statements, each through an index: the open dossiers (the partial index of migration
0012), today's accepted (dossiers_accepted) and this month's finished (dossiers_finished).
"""

from __future__ import annotations

from datetime import datetime, time, timedelta, tzinfo
from typing import Any, Final

import msgspec
import psycopg

Conn = psycopg.AsyncConnection[Any]

FINISHING: Final = ("result_returned", "refused", "withdrawn", "stopped")
# The agencies shown with the most overdue dossiers.
TOP_AGENCIES: Final = 5

_OPEN_SQL: Final = """
SELECT agency, count(*),
       count(*) FILTER (WHERE deadline_at < %(now)s),
       count(*) FILTER (WHERE deadline_at >= %(now)s AND due_soon_at <= %(now)s)
FROM dossiers
WHERE state <> ALL(%(finishing)s) AND accepted_at IS NOT NULL
GROUP BY GROUPING SETS ((agency), ())"""

_RECEIVED_SQL: Final = """
SELECT channel, count(*) FROM dossiers
WHERE accepted_at >= %(day)s AND accepted_at < %(next_day)s
GROUP BY channel ORDER BY channel"""

_FINISHED_SQL: Final = """
SELECT count(*) FILTER (WHERE finished_at >= %(day)s AND state = 'result_returned'),
       count(*) FILTER (WHERE finished_at >= %(day)s AND result IS NOT NULL),
       count(*) FILTER (WHERE finished_at >= %(day)s AND result IN ('early', 'on_time')),
       count(*) FILTER (WHERE state = 'result_returned'),
       count(*) FILTER (WHERE result IS NOT NULL),
       count(*) FILTER (WHERE result IN ('early', 'on_time'))
FROM dossiers
WHERE finished_at >= %(month)s AND finished_at < %(next_day)s"""


class DossierBoard(msgspec.Struct, kw_only=True):
    """What the dossier panel shows; rates are fractions (None when nothing was finished)."""

    day: str
    received_today: int
    in_processing: int
    due_soon: int
    overdue: int
    returned_today: int
    returned_month: int
    on_time_today: float | None
    on_time_month: float | None
    channels: dict[str, int]
    top_overdue: list[tuple[str, int]]


def local_bounds(now: datetime, zone: tzinfo) -> tuple[datetime, datetime, datetime]:
    """(start of today, start of tomorrow, start of this month), local days, as aware times."""
    local = now.astimezone(zone)
    day = datetime.combine(local.date(), time(), zone)
    next_day = datetime.combine(local.date() + timedelta(days=1), time(), zone)
    month = datetime.combine(local.date().replace(day=1), time(), zone)
    return day, next_day, month


def _rate(good: int, of: int) -> float | None:
    return round(good / of, 4) if of else None


async def board(conn: Conn, now: datetime, zone: tzinfo) -> DossierBoard:
    """The board at ``now``."""
    day, next_day, month = local_bounds(now, zone)
    params = {
        "now": now,
        "day": day,
        "next_day": next_day,
        "month": month,
        "finishing": list(FINISHING),
    }
    cur = await conn.execute(_OPEN_SQL, params)
    open_rows = await cur.fetchall()
    total = next((r for r in open_rows if r[0] is None), (None, 0, 0, 0))
    ranked = sorted(
        ((str(r[0]), int(r[2])) for r in open_rows if r[0] is not None and r[2]),
        key=lambda item: (-item[1], item[0]),
    )
    cur = await conn.execute(_RECEIVED_SQL, params)
    channels = {str(c): int(n) for c, n in await cur.fetchall()}
    cur = await conn.execute(_FINISHED_SQL, params)
    row = await cur.fetchone()
    returned_today, judged_today, good_today, returned_month, judged_month, good_month = (
        int(v or 0) for v in (row or (0,) * 6)
    )
    return DossierBoard(
        day=day.date().isoformat(),
        received_today=sum(channels.values()),
        in_processing=int(total[1]),
        due_soon=int(total[3]),
        overdue=int(total[2]),
        returned_today=returned_today,
        returned_month=returned_month,
        on_time_today=_rate(good_today, judged_today),
        on_time_month=_rate(good_month, judged_month),
        channels=channels,
        top_overdue=ranked[:TOP_AGENCIES],
    )
