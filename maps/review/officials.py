"""The review's table by official: for one agency, its tickets opened in the period broken down
by the official they are assigned to (the ``assignee`` now; unassigned ones in a row of their
own), with the same figures as the agency table, read exactly from the tickets."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

import psycopg

from maps.review.period import ReviewQuery
from maps.review.table import TICKET_COLUMNS, Column, Table, hours, rate

Conn = psycopg.AsyncConnection[Any]

UNASSIGNED: Final = "(chưa phân công)"
_COLUMNS: Final = (
    Column("official", "Tên đăng nhập", "text"),
    Column("name", "Cán bộ", "text"),
    *TICKET_COLUMNS,
)

# Percentiles as everywhere in the review: linear interpolation (percentile_cont).
_BY_OFFICIAL: Final = """
SELECT grouping(t.assignee), t.assignee, count(*),
       count(*) FILTER (WHERE t.first_response_at IS NOT NULL),
       percentile_cont(0.5) WITHIN GROUP (ORDER BY t.response_working_s)
           FILTER (WHERE t.first_response_at IS NOT NULL),
       percentile_cont(0.9) WITHIN GROUP (ORDER BY t.response_working_s)
           FILTER (WHERE t.first_response_at IS NOT NULL),
       count(*) FILTER (WHERE t.resolved_at IS NOT NULL),
       percentile_cont(0.5) WITHIN GROUP (ORDER BY t.resolution_working_s)
           FILTER (WHERE t.resolved_at IS NOT NULL),
       percentile_cont(0.9) WITHIN GROUP (ORDER BY t.resolution_working_s)
           FILTER (WHERE t.resolved_at IS NOT NULL),
       count(*) FILTER (WHERE t.sla_result = 'early'),
       count(*) FILTER (WHERE t.sla_result = 'on_time'),
       count(*) FILTER (WHERE t.sla_result = 'late'),
       count(*) FILTER (WHERE t.state NOT IN ('resolved', 'closed', 'rejected')
                          AND t.deadline_at < %(now)s)
FROM tickets t
WHERE coalesce(t.agency, '') = %(agency)s AND t.opened_at >= %(since)s
  AND t.opened_at < %(until)s AND (%(category)s::text IS NULL OR t.category = %(category)s)
GROUP BY GROUPING SETS ((t.assignee), ())"""


async def officials_table(conn: Conn, q: ReviewQuery, now: datetime) -> Table:
    """Rows: the total, each official (most tickets first), then the unassigned tickets. Without
    a chosen agency the table is empty (it is the agency leader's view of their people)."""
    title = "Phản ánh theo cán bộ"
    if q.agency is None:
        return Table("officials", title + " (chọn một cơ quan)", _COLUMNS, [])
    params = {
        "agency": q.agency,
        "since": q.since,
        "until": q.until,
        "category": q.category,
        "now": now,
    }
    cur = await conn.execute(_BY_OFFICIAL, params)
    found = await cur.fetchall()
    logins = [row[1] for row in found if row[1] is not None]
    cur = await conn.execute("SELECT login, name FROM users WHERE login = ANY(%s)", (logins,))
    names = {str(login): str(name) for login, name in await cur.fetchall()}
    rows = []
    for row in sorted(found, key=lambda r: (-r[0], r[1] is None, -int(r[2]), r[1] or "")):
        total, login, received, responded, r50, r90, resolved, s50, s90 = row[:9]
        early, on_time, late, overdue = (int(v) for v in row[9:])
        if total:
            name = "Tổng cộng"
        elif login is None:
            name = UNASSIGNED
        else:
            name = names.get(login, login)
        rows.append(
            {
                "official": None if total or login is None else login,
                "name": name,
                "received": int(received),
                "responded": int(responded),
                "response_median_h": hours(r50),
                "response_p90_h": hours(r90),
                "resolved": int(resolved),
                "resolution_median_h": hours(s50),
                "resolution_p90_h": hours(s90),
                "early": early,
                "on_time": on_time,
                "late": late,
                "on_time_rate": rate(early + on_time, early + on_time + late),
                "overdue_now": overdue,
            }
        )
    return Table("officials", title, _COLUMNS, rows)
