"""The agency side of tickets: queues, one ticket, its history, and the moves people make.

Every function takes the caller's Principal: an agency key sees and changes only its own
agency's tickets (another agency's ticket is "not found", so its existence does not leak),
operators and admins see and act on all, leaders see all and act on none.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Annotated, Any, LiteralString

import msgspec
import psycopg
from psycopg import sql

from ioc.auth import Principal, Role
from ioc.deadlines import DeadlineBook
from ioc.errors import Conflict, Forbidden, InvalidInput, MalformedBody, NotFound
from ioc.events.validation import explain
from ioc.params import bad as _bad
from ioc.params import one as _one
from ioc.params import text as _text
from ioc.tickets.clock import on_action
from ioc.tickets.opening import CHANNEL, notify
from ioc.tickets.states import MOVES, OPEN_STATES, STATES, Action, check_move

Conn = psycopg.AsyncConnection[Any]

READERS = frozenset({Role.OPERATOR, Role.AGENCY, Role.LEADER, Role.ADMIN})
ACTORS = frozenset({Role.OPERATOR, Role.AGENCY, Role.ADMIN})
DEFAULT_LIMIT = 100
MAX_LIMIT = 500
FINAL_STATES = frozenset({"closed", "rejected"})
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

_Text = Annotated[str, msgspec.Meta(max_length=2000)]
_Name = Annotated[str, msgspec.Meta(max_length=200)]


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


class _ActionBody(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    action: _Name
    assignee: _Name | None = None
    reason: _Text = ""
    to_agency: _Name | None = None


_action_decoder = msgspec.json.Decoder(_ActionBody)


@dataclass(frozen=True)
class Cursor:
    """Where a page ended, in the queue's order (deadline ascending, NULLs last, then id)."""

    deadline_at: datetime | None
    id: int

    def encode(self) -> str:
        raw = json.dumps(
            [None if self.deadline_at is None else self.deadline_at.isoformat(), self.id]
        )
        return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, token: str) -> Cursor:
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            deadline, ticket = json.loads(raw)
            if type(ticket) is not int or not 0 <= ticket < 2**63:
                raise ValueError("id")
            at = None if deadline is None else datetime.fromisoformat(deadline)
            if at is not None and at.tzinfo is None:
                raise ValueError("zone")
        except (binascii.Error, ValueError, TypeError, UnicodeDecodeError):
            raise _bad(
                "cursor",
                f"{token[:40]!r} is not a cursor from this API; pass the 'next' value of the "
                "previous page unchanged",
            ) from None
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


def parse_filters(
    query: Mapping[str, Sequence[str]], zone: tzinfo, categories: Iterable[str]
) -> Filters:
    """Filters from query parameters (name → values); raises InvalidInput naming the bad one."""
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
    limit_text = _one(query, "limit")
    limit = DEFAULT_LIMIT
    if limit_text is not None:
        if not limit_text.strip().isdigit() or not 1 <= int(limit_text) <= MAX_LIMIT:
            raise _bad("limit", f"{limit_text!r} is not a whole number from 1 to {MAX_LIMIT}")
        limit = int(limit_text)
    cursor_text = _one(query, "cursor")
    return Filters(
        states=states,
        overdue=overdue,
        categories=wanted,
        bbox=None if box_text is None else _bbox(box_text),
        since=since,
        until=until,
        agency=_one(query, "agency") or None,
        after=None if not cursor_text else Cursor.decode(cursor_text),
        limit=limit,
    )


def decode_action(body: bytes) -> Action:
    """An action request body; raises MalformedBody (not JSON) or InvalidInput."""
    try:
        given = _action_decoder.decode(body)
    except msgspec.ValidationError as exc:
        field, reason = explain(exc)
        if field == "action":
            reason += "; accepted: " + ", ".join(MOVES)
        raise InvalidInput(
            f"{field or 'body'}: {reason}", [{"field": field, "reason": reason}]
        ) from None
    except msgspec.DecodeError as exc:
        raise MalformedBody(
            'a JSON object like {"action": "start"} is expected: ' + explain(exc)[1]
        ) from None
    for name in ("reason", "assignee", "to_agency"):
        value = getattr(given, name)
        if value is not None:
            _text(name, value)
    assignee = given.assignee.strip() if given.assignee is not None else None
    to_agency = given.to_agency.strip() if given.to_agency is not None else None
    return Action(given.action, given.reason.strip(), assignee or None, to_agency or None)


def _scope(who: Principal) -> str | None:
    """The one agency this caller may see, or None for all."""
    if who.role is Role.AGENCY:
        return who.agency or ""  # an agency key without an agency sees nothing
    return None


def feed_filter(who: Principal) -> Callable[[Mapping[str, Any]], bool]:
    """Which live ticket messages this caller receives."""
    who.require(READERS)
    mine = _scope(who)

    def accept(message: Mapping[str, Any]) -> bool:
        if "ticket" not in message:
            return False  # alerts and readings share the hub; this feed carries tickets
        # A departure notice (a ticket transferred away) is only for the agency it left.
        if "from_agency" in message:
            return mine is not None and message["from_agency"] == mine
        return mine is None or message.get("agency") == mine

    return accept


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
    scope = _scope(who)
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


async def _fetch(conn: Conn, ticket_id: int, now: datetime) -> Ticket | None:
    cur = await conn.execute(
        sql.SQL(
            "SELECT {} FROM tickets t JOIN field_reports f ON f.id = t.report_id WHERE t.id = %s"
        ).format(_COLUMNS),
        (ticket_id,),
    )
    row = await cur.fetchone()
    return None if row is None else _ticket(row, now)


def _not_found(ticket_id: int) -> NotFound:
    return NotFound(f"no ticket {ticket_id} in your queue")


async def get_ticket(conn: Conn, who: Principal, ticket_id: int, now: datetime) -> Ticket:
    who.require(READERS)
    ticket = await _fetch(conn, ticket_id, now)
    scope = _scope(who)
    if ticket is None or (scope is not None and ticket.agency != scope):
        raise _not_found(ticket_id)
    return ticket


async def history(conn: Conn, who: Principal, ticket_id: int) -> History:
    """The ticket's events, oldest first."""
    who.require(READERS)
    cur = await conn.execute("SELECT agency FROM tickets WHERE id = %s", (ticket_id,))
    row = await cur.fetchone()
    scope = _scope(who)
    if row is None or (scope is not None and row[0] != scope):
        raise _not_found(ticket_id)
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


def actor_of(who: Principal) -> str:
    """How the history names the caller: the key's label, else its role and prefix."""
    return who.label.strip() or f"{who.role.value}:{who.prefix}"


async def act(
    conn: Conn, who: Principal, ticket_id: int, action: Action, now: datetime, book: DeadlineBook
) -> Ticket:
    """Apply one action in its own transaction: lock, check, update, record, notify."""
    who.require(ACTORS)
    scope = _scope(who)
    async with conn.transaction():
        cur = await conn.execute(
            "SELECT state, agency FROM tickets WHERE id = %s FOR UPDATE", (ticket_id,)
        )
        row = await cur.fetchone()
        if row is None or (scope is not None and row[1] != scope):
            raise _not_found(ticket_id)
        state, agency = row
        target = check_move(ticket_id, state, action)
        new_agency = agency
        if action.name == "transfer":
            new_agency = await _transfer_target(conn, ticket_id, agency, action.to_agency)
        notes = [f"assignee: {action.assignee}"] if action.name == "assign" else []
        if action.reason:
            notes.append(action.reason)
        await conn.execute(
            """UPDATE tickets SET
                 state = %(target)s,
                 agency = %(agency)s,
                 assignee = CASE %(name)s WHEN 'assign' THEN %(assignee)s
                                          WHEN 'transfer' THEN NULL ELSE assignee END,
                 updated_at = %(now)s,
                 closed_at = CASE WHEN %(final)s THEN %(now)s
                                  WHEN %(target)s = 'reopened' THEN NULL ELSE closed_at END
               WHERE id = %(id)s""",
            {
                "target": target,
                "agency": new_agency,
                "name": action.name,
                "assignee": action.assignee,
                "now": now,
                "final": target in FINAL_STATES,
                "id": ticket_id,
            },
        )
        await conn.execute(
            """INSERT INTO ticket_events (ticket_id, at, actor, action, from_state, to_state,
                                          from_agency, to_agency, note)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)""",
            (
                ticket_id,
                now,
                actor_of(who),
                action.name,
                state,
                target,
                agency,
                new_agency,
                "; ".join(notes),
            ),
        )
        await on_action(conn, book, ticket_id, state, target, now)
        await notify(conn, [ticket_id])
        if new_agency != agency and agency is not None:
            await _notify_departure(conn, ticket_id, agency)
        ticket = await _fetch(conn, ticket_id, now)
    assert ticket is not None  # locked above, inside this transaction
    return ticket


async def _transfer_target(
    conn: Conn, ticket_id: int, current: str | None, to_agency: str | None
) -> str:
    cur = await conn.execute("SELECT code FROM agencies WHERE code = %s", (to_agency,))
    if to_agency is None or await cur.fetchone() is None:
        raise _bad("to_agency", f"{to_agency!r} is not a known agency code")
    if to_agency == current:
        raise Conflict(f"ticket {ticket_id} is already with agency {to_agency!r}")
    return to_agency


async def _notify_departure(conn: Conn, ticket_id: int, left: str) -> None:
    """Tell the agency a ticket left that it is gone (the ordinary notice names only the new one)."""
    await conn.execute(
        "SELECT ioc_announce(%s, json_build_object('ticket', t.id, 'agency', t.agency,"
        " 'state', t.state, 'category', t.category, 'reports', t.report_count,"
        " 'from_agency', %s::text)::text) FROM tickets t WHERE t.id = %s",
        (CHANNEL, left, ticket_id),
    )
