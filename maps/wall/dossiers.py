"""The wall's dossier board: today's public-service figures, read set-based from ``dossiers``.

The figures follow the leaders' review (maps/review/dossiers.py): a dossier is received when it
is accepted, finished when it ends (finished_at), on time when its result came early or on the
day; overdue while open with its deadline passed. Days and months are local (IOC_TIMEZONE).
Four statements, each through an index: the open dossiers counted from the partial index of
migration 0012; those due soon or late, a range of migration 0020's index by ``due_soon_at``
(so the board reads only them, not every open dossier); today's accepted (dossiers_accepted)
and this month's finished (dossiers_finished). The open-dossier predicate is spelled as the
partial indexes spell it, so every plan can use them.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, time, timedelta, tzinfo
from typing import Any, Final

import msgspec
import psycopg

Conn = psycopg.AsyncConnection[Any]

# The agencies shown with the most overdue dossiers.
TOP_AGENCIES: Final = 5

# The predicate of the partial indexes on open dossiers (migrations 0012 and 0020).
OPEN_DOSSIER: Final = (
    "{t}state NOT IN ('result_returned', 'refused', 'withdrawn', 'stopped')"
    " AND {t}accepted_at IS NOT NULL"
)
_OPEN: Final = OPEN_DOSSIER.format(t="")
_OPEN_D: Final = OPEN_DOSSIER.format(t="d.")

OPEN_SQL: Final = f"SELECT count(*) FROM dossiers WHERE {_OPEN}"

# A dossier's due_soon_at is never after its deadline: every late one is in this range too.
DUE_SQL: Final = f"""
SELECT agency, count(*) FILTER (WHERE deadline_at < %(now)s),
       count(*) FILTER (WHERE deadline_at >= %(now)s)
FROM dossiers
WHERE {_OPEN} AND due_soon_at <= %(now)s
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
    }
    cur = await conn.execute(OPEN_SQL)
    found = await cur.fetchone()
    in_processing = int(found[0]) if found else 0
    cur = await conn.execute(DUE_SQL, params)
    due_rows = await cur.fetchall()
    total = next((r for r in due_rows if r[0] is None), (None, 0, 0))
    ranked = sorted(
        ((str(r[0]), int(r[1])) for r in due_rows if r[0] is not None and r[1]),
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
        in_processing=in_processing,
        due_soon=int(total[2]),
        overdue=int(total[1]),
        returned_today=returned_today,
        returned_month=returned_month,
        on_time_today=_rate(good_today, judged_today),
        on_time_month=_rate(good_month, judged_month),
        channels=channels,
        top_overdue=ranked[:TOP_AGENCIES],
    )


# The dossier map layer: open, accepted dossiers with a place of their own or their agency's.
PLACE_COLUMNS: Final = (
    "id",
    "lon",
    "lat",
    "agency",
    "procedure",
    "state",
    "accepted_at",
    "deadline_at",
    "due_soon_at",
    "paused_at",
    "version",
)

_PLACES_SQL: Final = f"""
SELECT d.dossier_id, coalesce(d.lon, a.lon), coalesce(d.lat, a.lat), d.agency,
       d.procedure_code, d.state, d.accepted_at, d.deadline_at, d.due_soon_at, d.paused_at,
       d.event_count, {_OPEN_D}
FROM dossiers d LEFT JOIN agencies a ON a.code = d.agency"""


def _millis(moment: datetime | None) -> int | None:
    return None if moment is None else round(moment.timestamp() * 1000)


def _place(row: Sequence[Any]) -> tuple[Any, ...]:
    """A compact row; a dossier that left the layer (finished, or no place) keeps its id and
    version with no place, so the page removes it."""
    shown = bool(row[11]) and row[1] is not None
    return (
        row[0],
        round(row[1], 6) if shown else None,
        round(row[2], 6) if shown else None,
        row[3],
        row[4],
        row[5],
        _millis(row[6]),
        _millis(row[7]),
        _millis(row[8]),
        _millis(row[9]),
        row[10],
    )


async def places(conn: Conn) -> list[tuple[Any, ...]]:
    """Every dossier the layer shows."""
    cur = await conn.execute(
        _PLACES_SQL
        + f" WHERE {_OPEN_D} AND (d.lon IS NOT NULL OR a.lon IS NOT NULL) ORDER BY d.dossier_id"
    )
    return [_place(r) for r in await cur.fetchall()]


async def places_by_id(conn: Conn, ids: Sequence[str]) -> list[tuple[Any, ...]]:
    """These dossiers' rows, whatever their state (one no longer shown has no place)."""
    if not ids:
        return []
    cur = await conn.execute(
        _PLACES_SQL + " WHERE d.dossier_id = ANY(%s) ORDER BY d.dossier_id", (sorted(set(ids)),)
    )
    return [_place(r) for r in await cur.fetchall()]
