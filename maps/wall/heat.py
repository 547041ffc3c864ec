"""The wall's heat layer: where field reports came from over the last days, counted per cell.

Reports are counted per cell of a thousandth of a degree (about 110 m), so the layer costs a
row per busy place rather than one per report, whatever the province's volume. The time range
reads the BRIN index on ``occurred_at``. No reporter data is read.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Final

import psycopg

Conn = psycopg.AsyncConnection[Any]

HEAT_DAYS: Final = 7
# The busiest cells shown, at most (a wall draws a few thousand heat points with ease).
HEAT_CELLS: Final = 20_000

_HEAT_SQL: Final = """
SELECT round(lat::numeric, 3)::float8, round(lon::numeric, 3)::float8, count(*)
FROM field_reports
WHERE occurred_at > %(since)s AND occurred_at <= %(now)s
GROUP BY 1, 2
ORDER BY 3 DESC, 1, 2
LIMIT %(cells)s"""


async def report_cells(conn: Conn, now: datetime) -> list[tuple[float, float, int]]:
    """(lat, lon, reports) per cell, for the reports of the last ``HEAT_DAYS`` days."""
    cur = await conn.execute(
        _HEAT_SQL, {"since": now - timedelta(days=HEAT_DAYS), "now": now, "cells": HEAT_CELLS}
    )
    return [(float(a), float(o), int(n)) for a, o, n in await cur.fetchall()]
