"""Leaders' review: tickets and dossiers by agency, category and week, for a period of months.

Each table is one set-based query. Ticket figures come from rollups (migration 0005) that
statement triggers keep current: counts per local day, agency and category, and histograms of
office time per local month; ``refresh`` folds the triggers' pending changes in before a
review reads. Dossier indicators come from a rollup per local month and agency (migration
0012) whose changed rows ``refresh`` recomputes from the ``dossiers`` rows; "overdue now" is
counted on the open tickets and dossiers at the time asked, through partial indexes.

Definitions (also shown on the page):

Tickets (phản ánh), the cohort opened in the period:
  received        tickets opened in the period
  responded       of those, tickets a person has acted on (``first_response_at``)
  response        office hours from opening to that first action (``response_working_s``)
  resolved        tickets resolved (``resolved_at``; reopening takes one back out)
  resolution      office hours from opening to resolution, less the time spent waiting for
                  the citizen (``resolution_working_s``)
  medians, P90    exact (linear interpolation between the two nearest tickets, numpy's and
                  PostgreSQL percentile_cont's definition) for a row of at most
                  EXACT_GROUP_MAX tickets, read from those tickets; a larger row is read from
                  2 %-wide histogram bins: within 2 % of the value of the ticket at that rank,
                  and its ``percentiles`` column says "approximate"
  on-time rate    (early + on time) / resolved tickets that had a deadline (``sla_result``)
  overdue now     tickets of the cohort still open whose deadline has passed at the time asked

Dossiers (hồ sơ TTHC), the public-service indicators of Decision 766/QĐ-TTg:
  received        dossiers accepted (tiếp nhận, ``accepted_at``) in the period
  online rate     received online / received; split into partial (một phần) and full-process
                  (toàn trình) online, each a share of received
  online payment  received dossiers paid online / received dossiers that owed a fee (a fee
                  was requested, or it was paid online)
  digitised       received dossiers with their papers digitised / received
  finished        dossiers whose result was returned in the period; early, on time and late
                  are shares of them, the on-time rate is (early + on time) / finished
  processing time mean office time the finished dossiers used, in working days
  overdue now     received dossiers still being processed whose deadline has passed
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, tzinfo
from fractions import Fraction
from typing import Any, Final, Literal

import numpy as np
import psycopg
from psycopg import sql

from ioc.errors import InvalidInput
from ioc.params import bad as _bad
from ioc.params import one

Conn = psycopg.AsyncConnection[Any]
Unit = Literal["text", "date", "count", "rate", "hours", "days", "accuracy"]
By = Literal["agency", "category"]

PARAMETERS: Final = ("since", "until", "agency", "category", "api_key")
DEFAULT_MONTHS: Final = 3
MAX_MONTHS: Final = 120
UNROUTED: Final = "(chưa định tuyến)"
ALL: Final = "*"  # review_ticket_bins: every agency / every category
BIN_BASE: Final = 1.02  # must match review_bin() in migration 0005
# Exact percentiles: rows of at most this many tickets opened in the period are computed from
# the tickets themselves (smallest rows first, at most EXACT_BUDGET tickets read per table;
# the index of migration 0010 reads just those tickets). Larger rows are read from the bins.
EXACT_GROUP_MAX: Final = 1_000
EXACT_BUDGET: Final = 5_000
EXACT: Final = "exact"
APPROXIMATE: Final = "approximate"
PERCENTILE_KEYS: Final = frozenset(
    {"response_median_h", "response_p90_h", "resolution_median_h", "resolution_p90_h"}
)
_LOCK: Final = 0x10C_2001  # serialises rollup refreshes


@dataclass(frozen=True)
class Column:
    """One column of a review table: its CSV key, its heading on the page, its unit."""

    key: str
    label: str
    unit: Unit


@dataclass(frozen=True)
class Table:
    """A finished table: rows are dicts keyed by the columns' keys."""

    name: str
    title: str
    columns: tuple[Column, ...]
    rows: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "title": self.title,
            "columns": [{"key": c.key, "label": c.label, "unit": c.unit} for c in self.columns],
            "rows": self.rows,
        }


def _next_month(month: date) -> date:
    return date(month.year + month.month // 12, month.month % 12 + 1, 1)


def _months_back(month: date, count: int) -> date:
    index = month.year * 12 + month.month - 1 - count
    return date(index // 12, index % 12 + 1, 1)


@dataclass(frozen=True)
class ReviewQuery:
    """What a leader asked for: whole local months, and optionally one agency / category."""

    first_month: date
    last_month: date
    zone: tzinfo
    agency: str | None = None
    category: str | None = None
    defaulted: bool = False  # no period was asked for: the last DEFAULT_MONTHS
    note: str | None = None  # why the period shown is not the one asked for (or is empty)

    @property
    def after(self) -> date:
        """The first day after the period."""
        return _next_month(self.last_month)

    @property
    def since(self) -> datetime:
        return datetime.combine(self.first_month, time(), tzinfo=self.zone)

    @property
    def until(self) -> datetime:
        """The end of the period (exclusive): midnight after its last day."""
        return datetime.combine(self.after, time(), tzinfo=self.zone)

    def params(self) -> dict[str, str]:
        """The query as parameters again (for links to the CSV files)."""
        out = {"since": f"{self.first_month:%Y-%m}", "until": f"{self.last_month:%Y-%m}"}
        if self.agency:
            out["agency"] = self.agency
        if self.category:
            out["category"] = self.category
        return out


def _one(query: Mapping[str, Sequence[str]], name: str) -> str | None:
    value = one(query, name)
    return value.strip() or None if value is not None else None


def _month(name: str, text: str) -> date:
    try:
        return date.fromisoformat(f"{text}-01")
    except ValueError:
        raise _bad(name, f"{text!r} is not a month; use YYYY-MM, e.g. 2025-08") from None


def parse_query(
    query: Mapping[str, Sequence[str]],
    zone: tzinfo,
    today: date,
    agencies: Sequence[str],
    categories: Sequence[str],
) -> ReviewQuery:
    """The review asked for by query parameters; raises InvalidInput naming the bad one.

    ``since`` and ``until`` are months (YYYY-MM), both included; by default the three months
    ending with the current one. Reviews run on whole months, as the public-service index is
    reported (monthly, quarterly, yearly).
    """
    unknown = sorted(set(query) - set(PARAMETERS))
    if unknown:
        raise _bad(
            unknown[0],
            "unknown query parameter; accepted: "
            + ", ".join(p for p in PARAMETERS if p != "api_key"),
        )
    since_text, until_text = _one(query, "since"), _one(query, "until")
    last = _month("until", until_text) if until_text else today.replace(day=1)
    first = _month("since", since_text) if since_text else _months_back(last, DEFAULT_MONTHS - 1)
    if last < first:
        raise _bad("until", f"{last:%Y-%m} is before since ({first:%Y-%m})")
    span = (last.year - first.year) * 12 + last.month - first.month + 1
    if span > MAX_MONTHS:
        raise _bad("since", f"the period is {span} months; at most {MAX_MONTHS}")
    agency, category = _one(query, "agency"), _one(query, "category")
    if agency is not None and agency not in agencies:
        raise _bad("agency", f"{agency!r} is not an agency; known: {', '.join(sorted(agencies))}")
    if category is not None and category not in categories:
        raise _bad(
            "category", f"{category!r} is not a category; known: {', '.join(sorted(categories))}"
        )
    defaulted = since_text is None and until_text is None
    return ReviewQuery(first, last, zone, agency, category, defaulted)


_LATEST: Final = """SELECT greatest(
  (SELECT day FROM review_ticket_days WHERE day < %(after)s AND received > 0
   ORDER BY day DESC LIMIT 1),
  (SELECT (max(accepted_at) AT TIME ZONE %(zone)s)::date FROM dossiers
   WHERE accepted_at < %(until)s),
  (SELECT (max(finished_at) AT TIME ZONE %(zone)s)::date FROM dossiers
   WHERE finished_at < %(until)s))"""


async def settle_period(conn: Conn, q: ReviewQuery, zone: str) -> ReviewQuery:
    """The default period, or the latest months with data when the default one has none.

    Only a review asked for without ``since`` and ``until`` moves: to the DEFAULT_MONTHS months
    ending with the last month that has tickets or dossiers, with a note saying so. Call after
    ``refresh``.
    """
    if not q.defaulted:
        return q
    cur = await conn.execute(_LATEST, {"after": q.after, "until": q.until, "zone": zone})
    row = await cur.fetchone()
    latest: date | None = row[0] if row else None
    asked = f"{q.first_month:%m/%Y} – {q.last_month:%m/%Y}"
    if latest is None:
        return replace(
            q, note=f"Chưa có số liệu: kỳ mặc định ({asked}) và các tháng trước đều trống."
        )
    if latest >= q.first_month:
        return q
    last = latest.replace(day=1)
    first = _months_back(last, DEFAULT_MONTHS - 1)
    return replace(
        q,
        first_month=first,
        last_month=last,
        note=(
            f"Không có số liệu trong {DEFAULT_MONTHS} tháng gần nhất ({asked}); đang hiển thị "
            f"{DEFAULT_MONTHS} tháng gần nhất có số liệu ({first:%m/%Y} – {last:%m/%Y})."
        ),
    )


# -- keeping the rollups current -----------------------------------------------------------

_REBUILD_DAYS: Final = """
INSERT INTO review_ticket_days
SELECT (opened_at AT TIME ZONE %(zone)s)::date, coalesce(agency, ''), category, count(*),
       count(first_response_at), count(resolved_at),
       count(*) FILTER (WHERE sla_result = 'early'),
       count(*) FILTER (WHERE sla_result = 'on_time'),
       count(*) FILTER (WHERE sla_result = 'late')
FROM tickets GROUP BY 1, 2, 3"""

_REBUILD_BINS: Final = """
INSERT INTO review_ticket_bins
SELECT k.month, a.agency, a.category, m.measure, review_bin(m.seconds), count(*)
FROM (SELECT date_trunc('month', opened_at AT TIME ZONE %(zone)s)::date AS month,
             coalesce(agency, '') AS agency, category, response_working_s, resolution_working_s
      FROM tickets) AS k
CROSS JOIN LATERAL (VALUES ('r'::"char", k.response_working_s),
                           ('s'::"char", k.resolution_working_s)) AS m (measure, seconds)
CROSS JOIN LATERAL (VALUES (k.agency, k.category), (k.agency, '*'), ('*', k.category),
                           ('*', '*')) AS a (agency, category)
WHERE m.seconds IS NOT NULL
GROUP BY 1, 2, 3, 4, 5"""

_FOLD_DAYS: Final = """
WITH moved AS (DELETE FROM review_ticket_days_delta RETURNING *)
INSERT INTO review_ticket_days AS t
SELECT day, agency, category, sum(received), sum(responded), sum(resolved), sum(early),
       sum(on_time), sum(late)
FROM moved GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
ON CONFLICT (day, agency, category) DO UPDATE SET
    received = t.received + EXCLUDED.received, responded = t.responded + EXCLUDED.responded,
    resolved = t.resolved + EXCLUDED.resolved, early = t.early + EXCLUDED.early,
    on_time = t.on_time + EXCLUDED.on_time, late = t.late + EXCLUDED.late"""

_FOLD_BINS: Final = """
WITH moved AS (DELETE FROM review_ticket_bins_delta RETURNING *)
INSERT INTO review_ticket_bins AS t
SELECT month, agency, category, measure, bin, sum(n) FROM moved
GROUP BY 1, 2, 3, 4, 5 ORDER BY 2, 1, 3, 4, 5
ON CONFLICT (agency, month, category, measure, bin) DO UPDATE SET n = t.n + EXCLUDED.n"""


# Dossier indicators per local month and agency (migration 0012): the received figures of
# the dossiers accepted in the month, the finished ones of those whose result came out in it.
_DOSSIER_MONTH_PARTS: Final = """
r AS (
  SELECT {month_of_accepted} AS month, d.agency, count(*) AS received,
         count(*) FILTER (WHERE d.channel = 'online') AS online,
         count(*) FILTER (WHERE d.online_level = 'partial') AS partial,
         count(*) FILTER (WHERE d.online_level = 'full_process') AS full_process,
         count(*) FILTER (WHERE d.paid_online OR {fee}) AS with_fee,
         count(*) FILTER (WHERE d.paid_online) AS paid,
         count(*) FILTER (WHERE d.digitised) AS digitised
  FROM {accepted} GROUP BY 1, 2),
f AS (
  SELECT {month_of_finished} AS month, d.agency, count(*) AS ended,
         count(*) FILTER (WHERE d.result IS NOT NULL) AS finished,
         count(*) FILTER (WHERE d.result = 'early') AS early,
         count(*) FILTER (WHERE d.result = 'on_time') AS on_time,
         count(*) FILTER (WHERE d.result = 'late') AS late,
         coalesce(sum(d.used_working_s) FILTER (WHERE d.result IS NOT NULL), 0) AS used_s,
         count(d.used_working_s) FILTER (WHERE d.result IS NOT NULL) AS used_n
  FROM {finished} GROUP BY 1, 2)"""

_DOSSIER_MONTH_VALUES: Final = """
SELECT month, agency, coalesce(r.received, 0), coalesce(r.online, 0), coalesce(r.partial, 0),
       coalesce(r.full_process, 0), coalesce(r.with_fee, 0), coalesce(r.paid, 0),
       coalesce(r.digitised, 0), coalesce(f.ended, 0), coalesce(f.finished, 0),
       coalesce(f.early, 0), coalesce(f.on_time, 0), coalesce(f.late, 0),
       coalesce(f.used_s, 0), coalesce(f.used_n, 0)"""

_FEE_EVENT: Final = """EXISTS (SELECT FROM dossier_events e WHERE e.dossier_id = d.dossier_id
                AND e.event IN ('fee_requested', 'fee_paid'))"""

_REBUILD_DOSSIERS: Final = (
    "WITH"
    + _DOSSIER_MONTH_PARTS.format(
        month_of_accepted="date_trunc('month', d.accepted_at AT TIME ZONE %(zone)s)::date",
        month_of_finished="date_trunc('month', d.finished_at AT TIME ZONE %(zone)s)::date",
        fee="fee.dossier_id IS NOT NULL",
        accepted="""dossiers d LEFT JOIN (
    SELECT DISTINCT dossier_id FROM dossier_events
    WHERE event IN ('fee_requested', 'fee_paid')) AS fee USING (dossier_id)
  WHERE d.accepted_at IS NOT NULL""",
        finished="dossiers d WHERE d.finished_at IS NOT NULL",
    )
    + "\nINSERT INTO review_dossier_months"
    + _DOSSIER_MONTH_VALUES
    + "\nFROM r FULL JOIN f USING (month, agency)"
)

# The keys the trigger logged, recomputed from their dossiers (one index range each).
_FOLD_DOSSIERS: Final = (
    """WITH moved AS (DELETE FROM review_dossier_dirty RETURNING month, agency),
k AS (
  SELECT DISTINCT month, agency, month::timestamp AT TIME ZONE %(zone)s AS since,
         (month + interval '1 month') AT TIME ZONE %(zone)s AS until
  FROM moved),"""
    + _DOSSIER_MONTH_PARTS.format(
        month_of_accepted="k.month",
        month_of_finished="k.month",
        fee=_FEE_EVENT,
        accepted="k JOIN dossiers d ON d.agency = k.agency AND d.accepted_at >= k.since"
        " AND d.accepted_at < k.until",
        finished="k JOIN dossiers d ON d.agency = k.agency AND d.finished_at >= k.since"
        " AND d.finished_at < k.until",
    )
    + "\nINSERT INTO review_dossier_months AS t"
    + _DOSSIER_MONTH_VALUES
    + """
FROM k LEFT JOIN r USING (month, agency) LEFT JOIN f USING (month, agency)
ORDER BY 1, 2
ON CONFLICT (month, agency) DO UPDATE SET
    received = EXCLUDED.received, online = EXCLUDED.online, partial = EXCLUDED.partial,
    full_process = EXCLUDED.full_process, with_fee = EXCLUDED.with_fee, paid = EXCLUDED.paid,
    digitised = EXCLUDED.digitised, ended = EXCLUDED.ended, finished = EXCLUDED.finished,
    early = EXCLUDED.early, on_time = EXCLUDED.on_time, late = EXCLUDED.late,
    used_s = EXCLUDED.used_s, used_n = EXCLUDED.used_n"""
)


async def refresh(conn: Conn, zone: str) -> bool:
    """Bring the ticket rollups up to date; True when they had to be built from the tickets.

    They are built on first use (and again if the platform's zone changes), with the tickets
    table locked against writers meanwhile; after that, only the changes the triggers logged
    since the last review are folded in. Call outside a transaction (autocommit).
    """
    cur = await conn.execute("SELECT zone FROM review_state")
    row = await cur.fetchone()
    if row is not None and row[0] == zone:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK,))
            await conn.execute(_FOLD_DAYS)
            await conn.execute(_FOLD_BINS)
            await conn.execute(_FOLD_DOSSIERS, {"zone": zone})
        return False
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK,))
        # No ticket changes while the rollups are rebuilt; from the commit on, the triggers
        # log every change in this zone.
        await conn.execute("LOCK TABLE tickets, dossiers IN SHARE ROW EXCLUSIVE MODE")
        cur = await conn.execute("SELECT zone FROM review_state")
        row = await cur.fetchone()
        if row is not None and row[0] == zone:
            return False  # another review built them while this one waited
        for table in (
            "review_ticket_days_delta",
            "review_ticket_bins_delta",
            "review_ticket_days",
            "review_ticket_bins",
            "review_dossier_dirty",
            "review_dossier_months",
        ):
            await conn.execute(sql.SQL("DELETE FROM {}").format(sql.Identifier(table)))
        await conn.execute("SET LOCAL work_mem = '256MB'")  # one pass over every ticket
        await conn.execute(_REBUILD_DAYS, {"zone": zone})
        await conn.execute(_REBUILD_BINS, {"zone": zone})
        await conn.execute(_REBUILD_DOSSIERS, {"zone": zone})
        await conn.execute("UPDATE review_state SET zone = %s, built = now()", (zone,))
        await conn.execute("ANALYZE review_ticket_days, review_ticket_bins, review_dossier_months")
    return True


# -- tickets -----------------------------------------------------------------------------

_TICKET_COLUMNS: Final = (
    Column("received", "Tiếp nhận", "count"),
    Column("responded", "Đã phản hồi", "count"),
    Column("response_median_h", "Phản hồi: trung vị (giờ HC)", "hours"),
    Column("response_p90_h", "Phản hồi: P90 (giờ HC)", "hours"),
    Column("resolved", "Đã xử lý", "count"),
    Column("resolution_median_h", "Xử lý: trung vị (giờ HC)", "hours"),
    Column("resolution_p90_h", "Xử lý: P90 (giờ HC)", "hours"),
    Column("early", "Trước hạn", "count"),
    Column("on_time", "Đúng hạn", "count"),
    Column("late", "Trễ hạn", "count"),
    Column("on_time_rate", "Tỷ lệ đúng hạn", "rate"),
    Column("overdue_now", "Đang quá hạn", "count"),
    Column("percentiles", "Trung vị, P90", "accuracy"),
)

# Counts per agency and category: the rows' sums, and how many tickets each row holds.
_COUNTS: Final = sql.SQL(
    """SELECT agency, category, sum(received), sum(responded), sum(resolved), sum(early),
       sum(on_time), sum(late)
FROM review_ticket_days
WHERE day >= %(first)s AND day < %(after)s{filters}
GROUP BY 1, 2"""
)

# The office times of the tickets of some (agency, category) pairs opened in the period: one
# range of the index of migration 0010 per pair, so only those tickets are read (OFFSET 0 keeps
# the planner from turning it into a scan of the whole period).
_TICKET_TIMES: Final = """SELECT p.agency, p.category, t.response_working_s, t.resolution_working_s
FROM unnest(%(agencies)s::text[], %(categories)s::text[]) AS p (agency, category)
CROSS JOIN LATERAL (
  SELECT response_working_s, resolution_working_s FROM tickets
  WHERE coalesce(agency, '') = p.agency AND category = p.category
    AND opened_at >= %(since)s AND opened_at < %(until)s
  OFFSET 0) AS t"""

# The bins of the rows shown, summed over the period's months. Percentiles are read from
# them by ``_bin_percentiles``.
_BIN_SUMS: Final = sql.SQL(
    """SELECT {key}, measure, bin, sum(n) FROM review_ticket_bins
WHERE month >= %(first)s AND month < %(after)s AND {filters}
GROUP BY 1, 2, 3 HAVING sum(n) > 0"""
)
_FRACTIONS: Final = (Fraction(1, 2), Fraction(9, 10))


def _bin_percentiles(
    found: Sequence[tuple[Any, ...]], total_row: bool
) -> dict[tuple[str, str, float], float]:
    """Median and P90 of each (key, measure) histogram: the bin holding rank q·(n−1),
    interpolated inside it as if its values were spread evenly on the log scale."""
    if not found:
        return {}
    codes, measures, bins, counts = (np.asarray(column) for column in zip(*found, strict=True))
    names, code_of = np.unique(codes.astype(str), return_inverse=True)
    kinds, measure_of = np.unique(measures.astype(str), return_inverse=True)
    group = code_of * len(kinds) + measure_of
    bins, counts = bins.astype(np.int64), counts.astype(np.int64)
    order = np.lexsort((bins, group))
    group, bins, counts = group[order], bins[order], counts[order]
    starts = np.flatnonzero(np.r_[True, group[1:] != group[:-1]])
    ends = np.r_[starts[1:], len(group)]
    out: dict[tuple[str, str, float], float] = {}
    for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
        g = int(group[start])
        code = ALL if total_row else str(names[g // len(kinds)])
        measure = str(kinds[g % len(kinds)])
        n_of, bin_of = counts[start:end], bins[start:end]
        above = np.cumsum(n_of)  # tickets up to and including each bin
        total = int(above[-1])
        for q in _FRACTIONS:
            # the first bin whose tickets reach past rank q·(total − 1)
            i = int(np.searchsorted(above * q.denominator, q.numerator * (total - 1), "right"))
            n, bin_ = int(n_of[i]), int(bin_of[i])
            inside = min(Fraction(1), (q * (total - 1) - (int(above[i]) - n) + Fraction(1, 2)) / n)
            value = 0.0 if bin_ < 0 else BIN_BASE ** float(bin_ + inside)
            out[(code, measure, float(q))] = value
    return out


_OVERDUE: Final = sql.SQL(
    """SELECT {key}, count(*) FROM tickets t
WHERE t.state NOT IN ('resolved', 'closed', 'rejected') AND t.deadline_at < %(now)s
  AND t.opened_at >= %(since)s AND t.opened_at < %(until)s{filters}
GROUP BY GROUPING SETS (({key}), ())"""
)


Pair = tuple[str, str]  # (agency, category) as the rollups key them


def _exact_rows(received: Mapping[Pair, int], rows: Mapping[str, set[Pair]]) -> list[str]:
    """The rows whose percentiles are computed exactly: small ones, smallest first, in budget."""
    sizes = {code: sum(received[p] for p in pairs) for code, pairs in rows.items()}
    chosen: list[str] = []
    read: set[Pair] = set()
    spent = 0
    for code in sorted(rows, key=lambda c: (sizes[c], c)):
        if sizes[code] > EXACT_GROUP_MAX:
            break
        cost = sum(received[p] for p in rows[code] - read)
        if spent + cost > EXACT_BUDGET:
            break
        chosen.append(code)
        read |= rows[code]
        spent += cost
    return chosen


async def _exact_percentiles(
    conn: Conn, q: ReviewQuery, rows: Mapping[str, set[Pair]], chosen: Sequence[str]
) -> dict[tuple[str, str, float], float]:
    """Median and P90 of each chosen row's tickets, as numpy.percentile computes them."""
    pairs = sorted(set().union(*(rows[code] for code in chosen))) if chosen else []
    if not pairs:
        return {}
    cur = await conn.execute(
        _TICKET_TIMES,
        {
            "agencies": [a for a, _ in pairs],
            "categories": [c for _, c in pairs],
            "since": q.since,
            "until": q.until,
        },
    )
    times: dict[Pair, list[tuple[float | None, float | None]]] = {}
    for agency, category, response, resolution in await cur.fetchall():
        times.setdefault((agency, category), []).append((response, resolution))
    out: dict[tuple[str, str, float], float] = {}
    for code in chosen:
        mine = [t for pair in rows[code] for t in times.get(pair, ())]
        for measure, index in (("r", 0), ("s", 1)):
            values = [value for v in mine if (value := v[index]) is not None]
            if values:
                median, p90 = np.percentile(values, [50, 90])
                out[(code, measure, 0.5)] = float(median)
                out[(code, measure, 0.9)] = float(p90)
    return out


def _hours(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds / 3600, 2)


def _rate(part: int, whole: int) -> float | None:
    return None if not whole else round(part / whole, 4)


def _equal(column: str, param: str, prefix: str = "") -> sql.Composable:
    """`` AND column = %(param)s`` (values always go as parameters)."""
    return sql.SQL(" AND {}{} = {}").format(
        sql.SQL(prefix), sql.Identifier(column), sql.Placeholder(param)
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
    filters = sql.Composed([_equal(c, p) for c, p in filter(None, chosen)])
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
        theirs_rows, key, _equal(by, "mine") if mine else sql.SQL("")
    )
    total = sql.SQL("{} AND {} = %(mine_or_all)s").format(theirs_rows, key)
    percentiles: dict[tuple[str, str, float], float] = {}
    for rows_wanted in (each, total):
        cur = await conn.execute(_BIN_SUMS.format(key=key, filters=rows_wanted), params)
        percentiles.update(_bin_percentiles(await cur.fetchall(), rows_wanted is total))
    exact = _exact_rows(received, members)
    percentiles.update(await _exact_percentiles(conn, q, members, exact))
    overdue_filters = sql.Composed([_equal(c, p, "t.") for c, p in filter(None, chosen)])
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
            f"{name}_{stat}_h": _hours(percentiles.get((code, measure, fraction)))
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
                "on_time_rate": _rate(early + on_time, early + on_time + late),
                "overdue_now": overdue.get(code, 0),
                "percentiles": accuracy,
            }
        )
    label = "Cơ quan" if by == "agency" else "Lĩnh vực"
    return Table(
        "agencies" if by == "agency" else "categories",
        f"Phản ánh theo {label.lower()}",
        (Column(by, "Mã", "text"), Column("name", label, "text"), *_TICKET_COLUMNS),
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
        [_equal(c, c) for c, v in (("agency", q.agency), ("category", q.category)) if v]
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
                "on_time_rate": _rate(in_time, judged),
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
    filters = _equal("agency", "agency") if q.agency else sql.SQL("")
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
                "online_rate": _rate(online, received),
                "partial_rate": _rate(partial, received),
                "full_process_rate": _rate(full, received),
                "with_fee": with_fee,
                "online_payment_rate": _rate(paid, with_fee),
                "digitised_rate": _rate(digitised, received),
                "finished": finished,
                "early_rate": _rate(early, finished),
                "on_time_only_rate": _rate(on_time, finished),
                "late_rate": _rate(late, finished),
                "on_time_rate": _rate(early + on_time, finished),
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


# -- the whole review ----------------------------------------------------------------------

TABLES: Final = ("agencies", "categories", "weeks", "dossiers")


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
    raise InvalidInput(f"unknown table {name!r}; the review has: {', '.join(TABLES)}")
