"""The satisfaction table: citizens' ratings of field reports and dossiers (mức độ hài lòng).

One query over ``review_rating_months`` (migration 0019): the ratings that count (one per report
or dossier, see ``ioc.ratings``) per local month they were given, kept by a trigger on ``ratings``. Share satisfied = satisfied ratings / all ratings given in the
period (a "normal" rating counts in the whole, not as satisfied). Rows: for field reports and
for dossiers, the province (or the chosen agency), then each agency, then each category
(reports) or procedure (dossiers).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import psycopg
from psycopg import sql

from maps.review.period import ReviewQuery
from maps.review.table import Column, Table, rate

Conn = psycopg.AsyncConnection[Any]

SUBJECTS: Final = {"report": "Phản ánh", "dossier": "Hồ sơ TTHC"}
_TOPIC: Final = {"report": "category", "dossier": "procedure"}

_COLUMNS: Final = (
    Column("code", "Mã", "text"),
    Column("name", "Tên", "text"),
    Column("subject", "Loại", "text"),
    Column("by", "Theo", "text"),
    Column("rated", "Lượt đánh giá", "count"),
    Column("satisfied", "Hài lòng", "count"),
    Column("normal", "Bình thường", "count"),
    Column("not_satisfied", "Không hài lòng", "count"),
    Column("satisfied_rate", "Tỷ lệ hài lòng", "rate"),
)

# The months' rows of the rating rollup (migration 0019) in the period, in three groupings.
_STATS: Final = sql.SQL(
    """SELECT subject, nullif(agency, ''), topic, grouping(agency), grouping(topic), sum(rated),
       sum(satisfied), sum(normal), sum(not_satisfied)
FROM review_rating_months
WHERE month >= %(first)s AND month < %(after)s{filters}
GROUP BY GROUPING SETS ((subject), (subject, agency), (subject, topic))
HAVING sum(rated) > 0"""
)


def _filters(q: ReviewQuery) -> sql.Composable:
    parts: list[sql.Composable] = []
    if q.agency:
        parts.append(sql.SQL(" AND agency = %(agency)s"))
    if q.category:  # the category filter chooses field reports; dossiers have procedures
        parts.append(sql.SQL(" AND (subject <> 'report' OR topic = %(category)s)"))
    return sql.Composed(parts)


async def satisfaction_table(
    conn: Conn, q: ReviewQuery, agencies: Mapping[str, str], categories: Mapping[str, str]
) -> Table:
    """Share satisfied and the counts, for reports and dossiers, in all, by agency, by topic."""
    params = {
        "first": q.first_month,
        "after": q.after,
        "agency": q.agency,
        "category": q.category,
    }
    cur = await conn.execute(_STATS.format(filters=_filters(q)), params)
    found = await cur.fetchall()
    rows: list[dict[str, Any]] = []
    for subject, label in SUBJECTS.items():
        mine = [r for r in found if r[0] == subject]
        # Each subject has its total row, with no ratings too (its share is then "—").
        total = [r for r in mine if r[3] == 1 and r[4] == 1] or [
            (subject, None, None, 1, 1, 0, 0, 0, 0)
        ]
        by_agency = [r for r in mine if r[3] == 0]
        by_topic = [r for r in mine if r[4] == 0]
        for group in (by_agency, by_topic):
            group.sort(key=lambda r: (-int(r[5]), str(r[1] if r[3] == 0 else r[2])))
        where = agencies.get(q.agency, q.agency) if q.agency else "Toàn tỉnh"
        for r in total:
            rows.append(_row(None, f"{label} — {where}", subject, "all", r))
        for r in by_agency:
            code = r[1]
            name = agencies.get(code, code) if code else "(chưa định tuyến)"
            rows.append(_row(code, name, subject, "agency", r))
        names = categories if subject == "report" else {}
        for r in by_topic:
            rows.append(_row(r[2], names.get(r[2], r[2]), subject, _TOPIC[subject], r))
    return Table(
        "satisfaction",
        "Mức độ hài lòng của người dân: phản ánh và hồ sơ TTHC",
        _COLUMNS,
        rows,
    )


def _row(code: str | None, name: str, subject: str, by: str, r: Any) -> dict[str, Any]:
    rated, satisfied, normal, unsatisfied = (int(v) for v in r[5:9])
    return {
        "code": code,
        "name": name,
        "subject": subject,
        "by": by,
        "rated": rated,
        "satisfied": satisfied,
        "normal": normal,
        "not_satisfied": unsatisfied,
        "satisfied_rate": rate(satisfied, rated),
    }
