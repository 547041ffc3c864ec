"""The period a review covers: whole local months asked for by query parameters, or the latest with data."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, time, tzinfo
from typing import Any, Final

import psycopg

from ioc.params import bad as _bad
from ioc.params import one

Conn = psycopg.AsyncConnection[Any]


PARAMETERS: Final = ("since", "until", "agency", "category", "api_key")


DEFAULT_MONTHS: Final = 3


MAX_MONTHS: Final = 120


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
