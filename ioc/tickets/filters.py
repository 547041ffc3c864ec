"""The queue's query string: filters, the page size and the resume cursor, checked field by field."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo

from ioc.params import bad as _bad
from ioc.params import cursor_error, pack_cursor, page_limit, unpack_cursor
from ioc.params import one as _one
from ioc.tickets.states import STATES

DEFAULT_LIMIT = 100
# ``agency=`` values that are not agency codes: the unrouted queue (no agency), and the
# configured catch-all agency (the queue of reports no responsibility rule claims).
NO_AGENCY = "none"
CATCH_ALL = "catch_all"
MAX_LIMIT = 500
QUERY_PARAMETERS = (
    "state",
    "overdue",
    "category",
    "bbox",
    "since",
    "until",
    "agency",
    "cursor",
    "limit",
    "api_key",
)


@dataclass(frozen=True)
class Cursor:
    """Where a page ended, in the queue's order (deadline ascending, NULLs last, then id)."""

    deadline_at: datetime | None
    id: int

    def encode(self) -> str:
        return pack_cursor(
            [None if self.deadline_at is None else self.deadline_at.isoformat(), self.id]
        )

    @classmethod
    def decode(cls, token: str) -> Cursor:
        values = unpack_cursor(token)
        try:
            deadline, ticket = values
            if type(ticket) is not int or not 0 <= ticket < 2**63:
                raise ValueError("id")
            at = None if deadline is None else datetime.fromisoformat(deadline)
            if at is not None and at.tzinfo is None:
                raise ValueError("zone")
        except (ValueError, TypeError):
            raise cursor_error(token) from None
        return cls(at, ticket)


@dataclass(frozen=True)
class Filters:
    """A queue query: what to show, and which page."""

    states: tuple[str, ...] = ()
    overdue: bool | None = None
    categories: tuple[str, ...] = ()
    bbox: tuple[float, float, float, float] | None = None
    since: datetime | None = None
    until: datetime | None = None
    agency: str | None = None
    unrouted: bool = False  # only tickets without an agency (``agency=none``)
    after: Cursor | None = None
    limit: int = DEFAULT_LIMIT


def _moment(name: str, text: str, zone: tzinfo) -> datetime:
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise _bad(
            name,
            f"{text!r} is not an ISO 8601 time; e.g. 2025-08-01, 2025-08-01T07:00:00 "
            "(read in the platform's time zone) or 2025-08-01T07:00:00+07:00",
        ) from None
    return value if value.tzinfo is not None else value.replace(tzinfo=zone)


def _bbox(text: str) -> tuple[float, float, float, float]:
    form = "min_lon,min_lat,max_lon,max_lat in degrees, e.g. 107.5,16.4,107.7,16.5"
    parts = text.split(",")
    try:
        if len(parts) != 4:
            raise ValueError
        min_lon, min_lat, max_lon, max_lat = (float(p) for p in parts)
    except ValueError:
        raise _bad("bbox", f"{text!r} is not four numbers; expected {form}") from None
    if not (-180 <= min_lon <= max_lon <= 180 and -90 <= min_lat <= max_lat <= 90):
        raise _bad(
            "bbox",
            f"{text!r} is not a box: need -180 ≤ min_lon ≤ max_lon ≤ 180 and "
            f"-90 ≤ min_lat ≤ max_lat ≤ 90; expected {form}",
        )
    return min_lon, min_lat, max_lon, max_lat


def _agency(text: str | None, catch_all: str | None) -> tuple[str | None, bool]:
    """(agency code, unrouted) of the ``agency`` parameter."""
    if not text:
        return None, False
    if text == NO_AGENCY:
        return None, True
    if text == CATCH_ALL:
        if not catch_all:
            raise _bad("agency", "no catch-all agency is configured (IOC_FALLBACK_AGENCY)")
        return catch_all, False
    return text, False


def parse_filters(
    query: Mapping[str, Sequence[str]],
    zone: tzinfo,
    categories: Iterable[str],
    catch_all: str | None = None,
) -> Filters:
    """Filters from query parameters (name → values); raises InvalidInput naming the bad one.

    ``catch_all`` is the configured catch-all agency, which ``agency=catch_all`` names.
    """
    unknown = sorted(set(query) - set(QUERY_PARAMETERS))
    if unknown:
        raise _bad(
            unknown[0],
            "unknown query parameter; accepted: "
            + ", ".join(p for p in QUERY_PARAMETERS if p != "api_key"),
        )
    states = tuple(query.get("state") or ())
    for state in states:
        if state not in STATES:
            raise _bad("state", f"{state!r} is not a ticket state; accepted: {', '.join(STATES)}")
    known = sorted(categories)
    wanted = tuple(query.get("category") or ())
    for category in wanted:
        if category not in known:
            raise _bad("category", f"{category!r} is not a category; accepted: {', '.join(known)}")
    overdue_text = _one(query, "overdue")
    overdue = None
    if overdue_text is not None:
        if overdue_text.lower() not in ("true", "false"):
            raise _bad("overdue", f"{overdue_text!r} is not a boolean; accepted: true, false")
        overdue = overdue_text.lower() == "true"
    box_text = _one(query, "bbox")
    since_text, until_text = _one(query, "since"), _one(query, "until")
    since = None if since_text is None else _moment("since", since_text, zone)
    until = None if until_text is None else _moment("until", until_text, zone)
    if since is not None and until is not None and until < since:
        raise _bad("until", f"{until_text!r} is before since ({since_text!r})")
    limit = page_limit(query, DEFAULT_LIMIT, MAX_LIMIT)
    cursor_text = _one(query, "cursor")
    agency, unrouted = _agency(_one(query, "agency"), catch_all)
    return Filters(
        states=states,
        overdue=overdue,
        categories=wanted,
        bbox=None if box_text is None else _bbox(box_text),
        since=since,
        until=until,
        agency=agency,
        unrouted=unrouted,
        after=None if not cursor_text else Cursor.decode(cursor_text),
        limit=limit,
    )
