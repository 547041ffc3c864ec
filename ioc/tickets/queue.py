"""The agency side of tickets: queues, one ticket and its history (the moves: ``actions``).

Every function takes the caller's Principal: an agency key sees and changes only its own
agency's tickets (another agency's ticket is "not found", so its existence does not leak),
operators and admins see and act on all, leaders see all and act on none.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, LiteralString

import msgspec
import psycopg
from psycopg import sql

from ioc.auth import Principal, Role
from ioc.errors import Forbidden, NotFound
from ioc.media.records import Media, of_tickets
from ioc.tickets.filters import Cursor, Filters
from ioc.tickets.states import OPEN_STATES

Conn = psycopg.AsyncConnection[Any]

READERS = frozenset({Role.OPERATOR, Role.AGENCY, Role.LEADER, Role.ADMIN})


class Ticket(msgspec.Struct, kw_only=True):
    """A ticket as an agency sees it: state, routing, deadline and the report (no reporter)."""

    id: int
    category: str
    state: str
    agency: str | None
    jurisdiction_code: str | None
    jurisdiction_level: str | None
    routing: dict[str, Any]
    lon: float
    lat: float
    opened_at: datetime
    deadline_at: datetime | None
    overdue: bool
    report_count: int
    assignee: str | None
    updated_at: datetime
    closed_at: datetime | None
    description: str
    address: str | None
    media_urls: list[str]
    # Photos uploaded with its reports (one ticket's detail only; empty in a queue's pages).
    media: list[Media] = msgspec.field(default_factory=list)
    # The SLA clock: warned from due_soon_at; paused while waiting for the citizen; the result
    # and the office hours used once resolved (response: until the first action).
    due_soon_at: datetime | None = None
    paused_at: datetime | None = None
    first_response_at: datetime | None = None
    resolved_at: datetime | None = None
    sla_result: str | None = None
    response_working_hours: float | None = None
    resolution_working_hours: float | None = None


class TicketEvent(msgspec.Struct, kw_only=True):
    """One append-only entry of a ticket's history."""

    id: int
    at: datetime
    actor: str
    action: str
    from_state: str | None
    to_state: str
    from_agency: str | None
    to_agency: str | None
    note: str


class Page(msgspec.Struct):
    tickets: list[Ticket]
    next: str | None


class History(msgspec.Struct):
    ticket: int
    events: list[TicketEvent]


def scope_of(who: Principal) -> str | None:
    """The one agency this caller may see, or None for all."""
    if who.role is Role.AGENCY:
        return who.agency or ""  # an agency key without an agency sees nothing
    return None


@dataclass(frozen=True)
class TicketFeed:
    """Which live ticket messages a caller receives: all (``agency`` None) or one agency's.
    A value, equal for callers who see the same, so the live hub filters once for all of them."""

    agency: str | None

    def __call__(self, message: Mapping[str, Any]) -> bool:
        if "ticket" not in message:
            return False  # alerts and readings share the hub; this feed carries tickets
        mine = self.agency
        # A departure notice (a ticket transferred away) is only for the agency it left.
        if "from_agency" in message:
            return mine is not None and message["from_agency"] == mine
        return mine is None or message.get("agency") == mine


def feed_filter(who: Principal) -> TicketFeed:
    """Which live ticket messages this caller receives."""
    who.require(READERS)
    return TicketFeed(scope_of(who))


_COLUMNS = sql.SQL(
    """t.id, t.category, t.state, t.agency, t.jurisdiction_code, t.jurisdiction_level,
       t.routing, t.lon, t.lat, t.opened_at, t.deadline_at, t.report_count, t.assignee,
       t.updated_at, t.closed_at, f.description, f.address, f.media_urls, t.due_soon_at,
       t.paused_at, t.first_response_at, t.resolved_at, t.sla_result, t.response_working_s,
       t.resolution_working_s"""
)


def _ticket(row: Sequence[Any], now: datetime) -> Ticket:
    deadline, state = row[10], row[2]
    return Ticket(
        id=row[0],
        category=row[1],
        state=state,
        agency=row[3],
        jurisdiction_code=row[4],
        jurisdiction_level=row[5],
        routing=row[6],
        lon=row[7],
        lat=row[8],
        opened_at=row[9],
        deadline_at=deadline,
        overdue=deadline is not None and deadline < now and state in OPEN_STATES,
        report_count=row[11],
        assignee=row[12],
        updated_at=row[13],
        closed_at=row[14],
        description=row[15],
        address=row[16],
        media_urls=list(row[17] or ()),
        due_soon_at=row[18],
        paused_at=row[19],
        first_response_at=row[20],
        resolved_at=row[21],
        sla_result=row[22],
        response_working_hours=None if row[23] is None else round(row[23] / 3600, 3),
        resolution_working_hours=None if row[24] is None else round(row[24] / 3600, 3),
    )


async def list_tickets(conn: Conn, who: Principal, filters: Filters, now: datetime) -> Page:
    """One page of the queue, most urgent deadline first (keyset pagination)."""
    who.require(READERS)
    scope = scope_of(who)
    if scope is not None and filters.unrouted:
        raise Forbidden("an agency key sees only its own agency's tickets, not the unrouted queue")
    if scope is not None and filters.agency not in (None, scope):
        raise Forbidden(
            f"an agency key sees only its own agency's tickets ({scope!r}), not {filters.agency!r}"
        )
    query, params = page_query(filters, scope if scope is not None else filters.agency, now)
    cur = await conn.execute(query, params)
    rows = await cur.fetchall()
    tickets = [_ticket(row, now) for row in rows[: filters.limit]]
    more = len(rows) > filters.limit
    last = tickets[-1] if tickets else None
    token = Cursor(last.deadline_at, last.id).encode() if more and last else None
    return Page(tickets, token)


def page_query(
    filters: Filters, agency: str | None, now: datetime
) -> tuple[sql.Composed, list[Any]]:
    """The SQL of one page (one more row than the limit, to tell whether another follows).

    The order is deadline ascending with NULLs last, then id. A single keyset condition for
    that order needs an OR (``(deadline, id) > cursor OR deadline IS NULL``) that no index can
    serve, so the tickets with a deadline and those without are read as two arms, each in
    index order and limited, and only those few rows are merged. Both arms order by
    (deadline_at, id), although the second has no deadlines, so that each matches an index
    on (…, deadline_at, id).
    """
    where: list[sql.Composable] = []
    params: list[Any] = []

    def add(fragment: LiteralString, *values: Any) -> None:
        where.append(sql.SQL(fragment))
        params.extend(values)

    if agency is not None:
        add("t.agency = %s", agency)
    if filters.unrouted:
        add("t.agency IS NULL")
    if filters.states:
        add("t.state = ANY(%s)", list(filters.states))
    if filters.categories:
        add("t.category = ANY(%s)", list(filters.categories))
    if filters.overdue is True:
        add("t.deadline_at < %s AND t.state = ANY(%s)", now, sorted(OPEN_STATES))
    elif filters.overdue is False:
        add(
            "NOT (coalesce(t.deadline_at < %s, false) AND t.state = ANY(%s))",
            now,
            sorted(OPEN_STATES),
        )
    if filters.bbox is not None:
        add("t.lon BETWEEN %s AND %s AND t.lat BETWEEN %s AND %s", *_box_order(filters.bbox))
    if filters.since is not None:
        add("t.opened_at >= %s", filters.since)
    if filters.until is not None:
        add("t.opened_at < %s", filters.until)
    common = sql.SQL(" AND ").join([*where, sql.SQL("true")])
    after, take = filters.after, filters.limit + 1
    if after is None:
        dated = sql.SQL("t.deadline_at IS NOT NULL")
        dated_params: list[Any] = []
        undated = sql.SQL("t.deadline_at IS NULL")
        undated_params: list[Any] = []
    elif after.deadline_at is not None:
        dated = sql.SQL("(t.deadline_at, t.id) > (%s, %s)")
        dated_params = [after.deadline_at, after.id]
        undated = sql.SQL("t.deadline_at IS NULL")
        undated_params = []
    else:  # already among the tickets without a deadline: the dated arm is done
        dated = sql.SQL("false")
        dated_params = []
        undated = sql.SQL("t.deadline_at IS NULL AND t.id > %s")
        undated_params = [after.id]
    query = sql.SQL(
        """WITH page AS (
             (SELECT t.id FROM tickets t WHERE {common} AND {dated}
              ORDER BY t.deadline_at, t.id LIMIT %s)
             UNION ALL
             (SELECT t.id FROM tickets t WHERE {common} AND {undated}
              ORDER BY t.deadline_at, t.id LIMIT %s))
           SELECT {columns} FROM page JOIN tickets t USING (id)
             JOIN field_reports f ON f.id = t.report_id
           ORDER BY t.deadline_at ASC NULLS LAST, t.id LIMIT %s"""
    ).format(common=common, dated=dated, undated=undated, columns=_COLUMNS)
    return query, [
        *params,
        *dated_params,
        take,
        *params,
        *undated_params,
        take,
        take,
    ]


def _box_order(box: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
    min_lon, min_lat, max_lon, max_lat = box
    return min_lon, max_lon, min_lat, max_lat


async def fetch_ticket(conn: Conn, ticket_id: int, now: datetime) -> Ticket | None:
    cur = await conn.execute(
        sql.SQL(
            "SELECT {} FROM tickets t JOIN field_reports f ON f.id = t.report_id WHERE t.id = %s"
        ).format(_COLUMNS),
        (ticket_id,),
    )
    row = await cur.fetchone()
    return None if row is None else _ticket(row, now)


def not_found(ticket_id: int) -> NotFound:
    return NotFound(f"no ticket {ticket_id} in your queue")


async def get_ticket(conn: Conn, who: Principal, ticket_id: int, now: datetime) -> Ticket:
    who.require(READERS)
    ticket = await fetch_ticket(conn, ticket_id, now)
    scope = scope_of(who)
    if ticket is None or (scope is not None and ticket.agency != scope):
        raise not_found(ticket_id)
    ticket.media = (await of_tickets(conn, (ticket_id,))).get(ticket_id, [])
    return ticket


async def history(conn: Conn, who: Principal, ticket_id: int) -> History:
    """The ticket's events, oldest first."""
    who.require(READERS)
    cur = await conn.execute("SELECT agency FROM tickets WHERE id = %s", (ticket_id,))
    row = await cur.fetchone()
    scope = scope_of(who)
    if row is None or (scope is not None and row[0] != scope):
        raise not_found(ticket_id)
    cur = await conn.execute(
        """SELECT id, at, actor, action, from_state, to_state, from_agency, to_agency, note
           FROM ticket_events WHERE ticket_id = %s ORDER BY id""",
        (ticket_id,),
    )
    events = [
        TicketEvent(
            id=r[0],
            at=r[1],
            actor=r[2],
            action=r[3],
            from_state=r[4],
            to_state=r[5],
            from_agency=r[6],
            to_agency=r[7],
            note=r[8],
        )
        for r in await cur.fetchall()
    ]
    return History(ticket_id, events)
