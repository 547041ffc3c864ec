"""The review's ticket tables (by agency, by category, by week) and ``build_table``, which builds
any table of the review by name (definitions: the package's docstring)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Final

import psycopg
from psycopg import sql

from ioc.errors import InvalidInput
from maps.review.dossiers import dossier_table
from maps.review.officials import officials_table
from maps.review.percentiles import (
    APPROXIMATE,
    BIN_SUMS,
    EXACT,
    Pair,
    bin_percentiles,
    exact_percentiles,
    exact_rows,
)
from maps.review.period import ReviewQuery
from maps.review.satisfaction import satisfaction_table
from maps.review.table import (
    ALL,
    PERCENTILES_COLUMN,
    TICKET_COLUMNS,
    UNROUTED,
    By,
    Column,
    Table,
    equal,
    hours,
    rate,
)

Conn = psycopg.AsyncConnection[Any]


# -- keeping the rollups current -----------------------------------------------------------


# -- tickets -----------------------------------------------------------------------------

# Counts per agency and category: the rows' sums, and how many tickets each row holds.
_COUNTS: Final = sql.SQL(
    """SELECT agency, category, sum(received), sum(responded), sum(resolved), sum(early),
       sum(on_time), sum(late)
FROM review_ticket_days
WHERE day >= %(first)s AND day < %(after)s{filters}
GROUP BY 1, 2"""
)


_OVERDUE: Final = sql.SQL(
    """SELECT {key}, count(*) FROM tickets t
WHERE t.state NOT IN ('resolved', 'closed', 'rejected') AND t.deadline_at < %(now)s
  AND t.opened_at >= %(since)s AND t.opened_at < %(until)s{filters}
GROUP BY GROUPING SETS (({key}), ())"""
)


async def ticket_table(
    conn: Conn, q: ReviewQuery, by: By, now: datetime, names: Mapping[str, str]
) -> Table:
    """Tickets opened in the period, one row per agency (or category), then the total."""
    other: By = "category" if by == "agency" else "agency"
    key = sql.Identifier(by)
    mine, theirs = (q.agency, q.category) if by == "agency" else (q.category, q.agency)
    params: dict[str, Any] = {
        "first": q.first_month,
        "after": q.after,
        "since": q.since,
        "until": q.until,
        "now": now,
        "mine": mine,
        "theirs": theirs,
        "all": ALL,
        "mine_or_all": mine or ALL,
        "theirs_or_all": theirs or ALL,
    }
    chosen = [(by, "mine") if mine else None, (other, "theirs") if theirs else None]
    filters = sql.Composed([equal(c, p) for c, p in filter(None, chosen)])
    cur = await conn.execute(_COUNTS.format(filters=filters), params)
    counts: dict[str, list[int]] = {}
    received: dict[Pair, int] = {}
    members: dict[str, set[Pair]] = {}
    for agency, category, *sums in await cur.fetchall():
        pair = (str(agency), str(category))
        received[pair] = int(sums[0])
        for code in (pair[0] if by == "agency" else pair[1], ALL):
            total_so_far = counts.setdefault(code, [0] * len(sums))
            for i, value in enumerate(sums):
                total_so_far[i] += int(value)
            members.setdefault(code, set()).add(pair)
    # Bins: the rows of the other dimension's choice (or all of it), every key of this one,
    # then the total row (this dimension's choice, or all).
    theirs_rows = sql.SQL("{} = %(theirs_or_all)s").format(sql.Identifier(other))
    each = sql.SQL("{} AND {} <> %(all)s{}").format(
        theirs_rows, key, equal(by, "mine") if mine else sql.SQL("")
    )
    total = sql.SQL("{} AND {} = %(mine_or_all)s").format(theirs_rows, key)
    percentiles: dict[tuple[str, str, float], float] = {}
    for rows_wanted in (each, total):
        cur = await conn.execute(BIN_SUMS.format(key=key, filters=rows_wanted), params)
        percentiles.update(bin_percentiles(await cur.fetchall(), rows_wanted is total))
    exact = exact_rows(received, members)
    percentiles.update(await exact_percentiles(conn, q, members, exact))
    overdue_filters = sql.Composed([equal(c, p, "t.") for c, p in filter(None, chosen)])
    cur = await conn.execute(
        _OVERDUE.format(key=sql.SQL("coalesce(t.{}, '')").format(key), filters=overdue_filters),
        params,
    )
    overdue = {row[0] if row[0] is not None else ALL: int(row[1]) for row in await cur.fetchall()}
    rows = []
    ordered = sorted((k for k in counts if k != ALL), key=lambda k: (-int(counts[k][0]), k))
    for code in [ALL, *ordered] if ALL in counts else ordered:
        opened, responded, resolved, early, on_time, late = counts[code]
        figures = {
            f"{name}_{stat}_h": hours(percentiles.get((code, measure, fraction)))
            for name, measure in (("response", "r"), ("resolution", "s"))
            for stat, fraction in (("median", 0.5), ("p90", 0.9))
        }
        accuracy = None
        if any(v is not None for v in figures.values()):
            accuracy = EXACT if code in exact else APPROXIMATE
        if code == ALL:
            label = "Tổng cộng"
        elif by == "agency" and code == "":
            label = UNROUTED
        else:
            label = names.get(code, code)
        rows.append(
            {
                by: None if code == ALL else code,
                "name": label,
                "received": opened,
                "responded": responded,
                "response_median_h": figures["response_median_h"],
                "response_p90_h": figures["response_p90_h"],
                "resolved": resolved,
                "resolution_median_h": figures["resolution_median_h"],
                "resolution_p90_h": figures["resolution_p90_h"],
                "early": early,
                "on_time": on_time,
                "late": late,
                "on_time_rate": rate(early + on_time, early + on_time + late),
                "overdue_now": overdue.get(code, 0),
                "percentiles": accuracy,
            }
        )
    label = "Cơ quan" if by == "agency" else "Lĩnh vực"
    return Table(
        "agencies" if by == "agency" else "categories",
        f"Phản ánh theo {label.lower()}",
        (
            Column(by, "Mã", "text"),
            Column("name", label, "text"),
            *TICKET_COLUMNS,
            PERCENTILES_COLUMN,
        ),
        rows,
    )


_WEEKLY: Final = sql.SQL(
    """SELECT date_trunc('week', day)::date, sum(received), sum(resolved),
       sum(early) + sum(on_time), sum(early) + sum(on_time) + sum(late)
FROM review_ticket_days
WHERE day >= %(first)s AND day < %(after)s{filters}
GROUP BY 1"""
)


async def weekly_table(conn: Conn, q: ReviewQuery) -> Table:
    """Tickets opened per week (Monday first; the first and last weeks only within the period)."""
    filters = sql.Composed(
        [equal(c, c) for c, v in (("agency", q.agency), ("category", q.category)) if v]
    )
    cur = await conn.execute(
        _WEEKLY.format(filters=filters),
        {"first": q.first_month, "after": q.after, "agency": q.agency, "category": q.category},
    )
    found = {row[0]: row[1:] for row in await cur.fetchall()}
    rows = []
    week = date.fromordinal(q.first_month.toordinal() - q.first_month.weekday())
    while week < q.after:  # every week of the period, also the empty ones
        received, resolved, in_time, judged = (int(v) for v in found.get(week, (0, 0, 0, 0)))
        rows.append(
            {
                "week": week.isoformat(),
                "received": received,
                "resolved": resolved,
                "on_time_rate": rate(in_time, judged),
            }
        )
        week = date.fromordinal(week.toordinal() + 7)
    return Table(
        "weeks",
        "Phản ánh theo tuần (tuần bắt đầu thứ Hai)",
        (
            Column("week", "Tuần", "date"),
            Column("received", "Tiếp nhận", "count"),
            Column("resolved", "Đã xử lý", "count"),
            Column("on_time_rate", "Tỷ lệ đúng hạn", "rate"),
        ),
        rows,
    )


# -- dossiers ----------------------------------------------------------------------------


# -- the whole review ----------------------------------------------------------------------

TABLES: Final = ("agencies", "categories", "weeks", "dossiers", "satisfaction", "officials")


@dataclass(frozen=True)
class Names:
    """Display names of agencies and categories (also what may be chosen on the page)."""

    agencies: dict[str, str]
    categories: dict[str, str]


async def load_names(conn: Conn) -> Names:
    cur = await conn.execute("SELECT code, name_vi FROM agencies ORDER BY code")
    agencies = {str(c): str(n) for c, n in await cur.fetchall()}
    cur = await conn.execute("SELECT code, name_vi FROM categories ORDER BY code")
    return Names(agencies, {str(c): str(n) for c, n in await cur.fetchall()})


async def build_table(
    conn: Conn, name: str, q: ReviewQuery, now: datetime, day_s: float, names: Names
) -> Table:
    """One table of the review by its name (one of TABLES); the rollups must be refreshed."""
    if name == "agencies":
        return await ticket_table(conn, q, "agency", now, names.agencies)
    if name == "categories":
        return await ticket_table(conn, q, "category", now, names.categories)
    if name == "weeks":
        return await weekly_table(conn, q)
    if name == "dossiers":
        return await dossier_table(conn, q, now, day_s, names.agencies)
    if name == "officials":
        return await officials_table(conn, q, now)
    if name == "satisfaction":
        return await satisfaction_table(conn, q, names.agencies, names.categories)
    raise InvalidInput(f"unknown table {name!r}; the review has: {', '.join(TABLES)}")
