"""Medians and P90 of office time: exact for small rows, from the rollups' 2 %-wide bins for large ones."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from fractions import Fraction
from typing import Any, Final

import numpy as np
import psycopg
from psycopg import sql

from maps.review.period import ReviewQuery
from maps.review.table import ALL

Conn = psycopg.AsyncConnection[Any]


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
# them by ``bin_percentiles``.
BIN_SUMS: Final = sql.SQL(
    """SELECT {key}, measure, bin, sum(n) FROM review_ticket_bins
WHERE month >= %(first)s AND month < %(after)s AND {filters}
GROUP BY 1, 2, 3 HAVING sum(n) > 0"""
)


_FRACTIONS: Final = (Fraction(1, 2), Fraction(9, 10))


def bin_percentiles(
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


Pair = tuple[str, str]  # (agency, category) as the rollups key them


def exact_rows(received: Mapping[Pair, int], rows: Mapping[str, set[Pair]]) -> list[str]:
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


async def exact_percentiles(
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
