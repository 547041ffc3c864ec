"""The dossiers table: the public-service indicators of Decision 766/QĐ-TTg per agency."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final

import psycopg
from psycopg import sql

from maps.review.period import ReviewQuery
from maps.review.table import Column, Table, equal, rate

Conn = psycopg.AsyncConnection[Any]


_DOSSIER_COLUMNS: Final = (
    Column("received", "Tiếp nhận", "count"),
    Column("online", "Trực tuyến", "count"),
    Column("online_rate", "Tỷ lệ trực tuyến", "rate"),
    Column("partial_rate", "Trực tuyến một phần", "rate"),
    Column("full_process_rate", "Trực tuyến toàn trình", "rate"),
    Column("with_fee", "Có phí, lệ phí", "count"),
    Column("online_payment_rate", "Tỷ lệ thanh toán trực tuyến", "rate"),
    Column("digitised_rate", "Tỷ lệ số hóa", "rate"),
    Column("finished", "Đã giải quyết", "count"),
    Column("early_rate", "Trước hạn", "rate"),
    Column("on_time_only_rate", "Đúng hạn", "rate"),
    Column("late_rate", "Trễ hạn", "rate"),
    Column("on_time_rate", "Tỷ lệ đúng hạn (trước + đúng hạn)", "rate"),
    Column("avg_processing_days", "Thời gian xử lý TB (ngày LV)", "days"),
    Column("overdue_now", "Đang quá hạn", "count"),
)


# The months' rows of the dossier rollup (migration 0012), summed per agency and in all. An
# agency shows when it has a dossier accepted or ended (finished_at) in the period.
_DOSSIER_STATS: Final = sql.SQL(
    """SELECT agency, sum(received), sum(online), sum(partial), sum(full_process), sum(with_fee),
       sum(paid), sum(digitised), sum(finished), sum(early), sum(on_time), sum(late),
       sum(used_s), sum(used_n)
FROM review_dossier_months
WHERE month >= %(first)s AND month < %(after)s{filters}
GROUP BY GROUPING SETS ((agency), ())
HAVING grouping(agency) = 1 OR sum(received) + sum(ended) > 0"""
)


# Received dossiers still being processed whose deadline has passed: the few open dossiers,
# through the partial index of migration 0012.
_DOSSIER_OVERDUE: Final = sql.SQL(
    """SELECT agency, count(*) FROM dossiers
WHERE state NOT IN ('result_returned', 'refused', 'withdrawn', 'stopped')
  AND accepted_at >= %(since)s AND accepted_at < %(until)s AND deadline_at < %(now)s{filters}
GROUP BY GROUPING SETS ((agency), ())"""
)


async def dossier_table(
    conn: Conn, q: ReviewQuery, now: datetime, day_s: float, names: Mapping[str, str]
) -> Table:
    """The Decision 766 dossier indicators: the province (or the chosen agency), then each agency."""
    filters = equal("agency", "agency") if q.agency else sql.SQL("")
    params = {
        "first": q.first_month,
        "after": q.after,
        "since": q.since,
        "until": q.until,
        "now": now,
        "agency": q.agency,
    }
    cur = await conn.execute(_DOSSIER_STATS.format(filters=filters), params)
    found = await cur.fetchall()
    cur = await conn.execute(_DOSSIER_OVERDUE.format(filters=filters), params)
    overdue_of = {code: int(n) for code, n in await cur.fetchall()}
    total = [r for r in found if r[0] is None]
    each = sorted((r for r in found if r[0] is not None), key=lambda r: (-int(r[1] or 0), r[0]))
    rows = []
    for code, *counts, used_s, used_n in total + each:
        received, online, partial, full, with_fee, paid, digitised = (
            int(v or 0) for v in counts[:7]
        )
        finished, early, on_time, late = (int(v or 0) for v in counts[7:])
        used = float(used_s) / int(used_n) if used_n else None
        overdue = overdue_of.get(code, 0)
        rows.append(
            {
                "agency": code,
                "name": "Toàn tỉnh" if code is None else names.get(code, code),
                "received": received,
                "online": online,
                "online_rate": rate(online, received),
                "partial_rate": rate(partial, received),
                "full_process_rate": rate(full, received),
                "with_fee": with_fee,
                "online_payment_rate": rate(paid, with_fee),
                "digitised_rate": rate(digitised, received),
                "finished": finished,
                "early_rate": rate(early, finished),
                "on_time_only_rate": rate(on_time, finished),
                "late_rate": rate(late, finished),
                "on_time_rate": rate(early + on_time, finished),
                "avg_processing_days": None if used is None else round(float(used) / day_s, 2),
                "overdue_now": int(overdue),
            }
        )
    if q.agency:  # the chosen agency's row and the "province" row are the same dossiers
        rows = rows[1:]
    return Table(
        "dossiers",
        "Chỉ số hồ sơ TTHC (QĐ 766/QĐ-TTg): toàn tỉnh và theo cơ quan",
        (Column("agency", "Mã", "text"), Column("name", "Cơ quan", "text"), *_DOSSIER_COLUMNS),
        rows,
    )
