"""Opening tickets for stored field reports, inside the ingest transaction.

Each new report is routed (in bulk), then either attached to an open ticket of the same
category close by in space and time, or opens a ticket of its own. Every change is an
append-only ticket event and a notification on the ``ioc_tickets`` channel.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final

import msgspec
import psycopg

from ioc.deadlines import DeadlineBook
from ioc.events.kinds import FieldReport
from ioc.lookup import report_code
from ioc.routing.router import Router
from ioc.store.pipelines import pipeline
from ioc.tickets.reach import Reach, cell, metres
from ioc.tickets.writing import write_tickets

CHANNEL = "ioc_tickets"


@dataclass
class _Open:
    """An open ticket a new report might join (in the database, or opened in this batch)."""

    ref: int  # ticket id, or -(position in this batch) for one not yet written
    category: str
    lon: float
    lat: float
    opened_at: datetime
    state: str


# Open tickets a batch's reports might join: by (category, cell_x), each as (cell_y, ticket).
Nearby = dict[tuple[str, int], list[tuple[int, _Open]]]


@dataclass(frozen=True)
class Opened:
    created: int
    attached: int
    # (source, external_id) -> the report's public lookup code (ioc/lookup.py), read with the
    # report ids so that the answer to a POST needs no query of its own.
    codes: dict[tuple[str, str], str] = field(default_factory=dict)


class TicketDesk:
    """Turns stored field reports into routed tickets."""

    def __init__(
        self, router: Router, book: DeadlineBook, dedupe_m: float, dedupe_s: float
    ) -> None:
        self.router = router
        self.book = book
        book.warm(datetime.now(book.office.tz))
        self._dedupe_m = dedupe_m
        self._reach = Reach(dedupe_m)
        self._window = timedelta(seconds=dedupe_s)

    async def open_for(
        self, conn: psycopg.AsyncConnection[Any], reports: Sequence[FieldReport]
    ) -> Opened:
        """Route, deduplicate and open tickets; call inside the transaction that stored them."""
        if not reports:
            return Opened(0, 0)
        # One round trip for both reads: the stored reports' ids and the open tickets near them.
        async with pipeline(conn):
            stored = await conn.execute(
                "SELECT f.id, f.source, f.external_id, f.received_at, f.lookup_secret"
                " FROM field_reports f"
                " JOIN unnest(%b::text[], %b::text[]) AS k(source, external_id)"
                " USING (source, external_id)",
                ([r.source for r in reports], [r.external_id for r in reports]),
            )
            around = await self.query_nearby(conn, reports)
            rows = await stored.fetchall()
            nearby = await self.open_nearby(around)
        ids = {(s, e): (int(i), at) for i, s, e, at, _ in rows}
        codes = {(s, e): report_code(int(i), str(c)) for i, s, e, _, c in rows if c is not None}
        new_rows, links = self.plan(
            reports, [ids[(r.source, r.external_id)] for r in reports], nearby
        )
        real = await self.insert(conn, new_rows, await self.reserve(conn, len(new_rows)))
        await self.link(conn, links, real, new_rows)
        return Opened(len(new_rows), len(links) - len(new_rows), codes)

    def plan(
        self,
        reports: Sequence[FieldReport],
        stored: Sequence[tuple[int, datetime]],
        nearby: Nearby,
    ) -> tuple[list[tuple[Any, ...]], list[tuple[int, int, bool]]]:
        """Route the reports (stored as these (id, received_at)) and pick each one's ticket:
        an open one nearby, or a new one. The new tickets' rows, and (report id, ticket ref,
        joined an existing one) per report; a new ticket's ref is -(its position + 1)."""
        decisions = self.router.route(
            [r.lon for r in reports],
            [r.lat for r in reports],
            [r.category for r in reports],
            [r.occurred_at for r in reports],
        )
        new_rows: list[tuple[Any, ...]] = []
        links: list[tuple[int, int, bool]] = []  # (report id, ticket ref, joined an existing one)
        for report, decision, (report_id, received_at) in zip(
            reports, decisions, stored, strict=True
        ):
            match = self._match(nearby, report)
            if match is not None:
                links.append((report_id, match.ref, True))
                continue
            ref = -(len(new_rows) + 1)
            plan = self.book.ticket_plan(report.category, report.occurred_at)
            new_rows.append(
                (
                    report_id,
                    report.category,
                    decision.agency,
                    decision.jurisdiction_code,
                    decision.level,
                    decision.why(),
                    report.lon,
                    report.lat,
                    report.occurred_at,
                    plan.deadline_at if plan else None,
                    received_at,
                    plan.counting if plan else None,
                    plan.allowed_s if plan else None,
                    plan.due_soon_at if plan else None,
                    "due_soon" if plan else None,
                    plan.due_soon_at if plan else None,
                )
            )
            self._remember(
                nearby,
                _Open(ref, report.category, report.lon, report.lat, report.occurred_at, "new"),
            )
            links.append((report_id, ref, False))
        return new_rows, links

    async def query_nearby(
        self, conn: psycopg.AsyncConnection[Any], reports: Sequence[FieldReport]
    ) -> psycopg.AsyncCursor[Any] | None:
        """Ask for the open tickets near the reports (None when deduplication is off)."""
        if self._dedupe_m <= 0:
            return None
        keys = sorted(
            {(r.category, *column) for r in reports for column in self._reach.columns(r.lon, r.lat)}
        )
        # One probe of the open-cells index per (category, cell column): the cells of one
        # cell_x within reach are one range of cell_y, next to each other in the index. The
        # lateral subquery (kept apart by OFFSET 0) leaves the planner no other plan, even
        # while the statistics of a fast-growing tickets table lag behind. The time window is
        # checked in _match: a time range here let the planner take (category, opened_at)
        # instead and walk the category's whole open queue for every cell.
        return await conn.execute(
            """SELECT t.id, t.category, t.lon, t.lat, t.opened_at, t.state
               FROM unnest(%b::text[], %b::int4[], %b::int4[], %b::int4[]) AS k(c, x, low, high)
               CROSS JOIN LATERAL (
                 SELECT t.id, t.category, t.lon, t.lat, t.opened_at, t.state FROM tickets t
                 WHERE t.category = k.c AND t.cell_x = k.x
                   AND t.cell_y BETWEEN k.low AND k.high
                   AND t.state NOT IN ('resolved', 'closed', 'rejected')
                 OFFSET 0) AS t""",
            tuple(list(column) for column in zip(*keys, strict=True)) if keys else ([], [], [], []),
        )

    async def open_nearby(self, cur: psycopg.AsyncCursor[Any] | None) -> Nearby:
        """The open tickets found, by category and cell column, each with its cell_y."""
        found: Nearby = {}
        if cur is None:
            return found
        seen: set[int] = set()  # columns of nearby reports overlap: a ticket may come twice
        for row in await cur.fetchall():
            if row[0] not in seen:
                seen.add(row[0])
                self._remember(found, _Open(int(row[0]), row[1], row[2], row[3], row[4], row[5]))
        return found

    def _remember(self, found: Nearby, ticket: _Open) -> None:
        if self._dedupe_m > 0:
            x, y = cell(ticket.lon, ticket.lat)
            found.setdefault((ticket.category, x), []).append((y, ticket))

    def _match(self, nearby: Nearby, report: FieldReport) -> _Open | None:
        best, best_m = None, self._dedupe_m
        for x, low, high in self._reach.columns(report.lon, report.lat):
            for y, candidate in nearby.get((report.category, x), ()):
                if not low <= y <= high:
                    continue
                if abs(candidate.opened_at - report.occurred_at) > self._window:
                    continue
                apart = metres(candidate.lon, candidate.lat, report.lon, report.lat)
                if apart <= best_m:
                    best, best_m = candidate, apart
        return best

    @staticmethod
    async def reserve(conn: psycopg.AsyncConnection[Any], count: int) -> list[int]:
        """Ids for ``count`` new tickets, taken from the tickets' sequence."""
        return await TicketDesk.reserved(await TicketDesk.query_ids(conn, count))

    @staticmethod
    async def query_ids(
        conn: psycopg.AsyncConnection[Any], count: int
    ) -> psycopg.AsyncCursor[Any] | None:
        """Ask for ``count`` new tickets' ids (in a pipeline, with other statements)."""
        if not count:
            return None
        return await conn.execute(
            "SELECT nextval((SELECT pg_get_serial_sequence('tickets', 'id')::regclass)) FROM generate_series(1, %s)",
            (count,),
        )

    @staticmethod
    async def reserved(cur: psycopg.AsyncCursor[Any] | None) -> list[int]:
        """The ids asked for by ``query_ids``."""
        return [int(r[0]) for r in await cur.fetchall()] if cur is not None else []

    @staticmethod
    async def insert(
        conn: psycopg.AsyncConnection[Any], rows: list[tuple[Any, ...]], ids: list[int]
    ) -> dict[int, int]:
        """Write new tickets (with ids from ``reserve``), their clocks and opening events
        (``ioc.tickets.writing``: a few in one statement, many by COPY).

        Returns batch ref → ticket id.
        """
        await write_tickets(conn, rows, ids)
        return {-(n + 1): ticket for n, ticket in enumerate(ids)}

    @staticmethod
    async def link(
        conn: psycopg.AsyncConnection[Any],
        links: list[tuple[int, int, bool]],
        real: dict[int, int],
        rows: Sequence[tuple[Any, ...]],
        point_reports: bool = True,
    ) -> None:
        """Point each report at its ticket (unless they were stored pointing at it already);
        count and record the attached duplicates; notify. ``rows`` are the new tickets
        planned by ``plan`` (the ticket of ref -n is ``rows[n - 1]``)."""
        # Sent together, answered together: one round trip for the three writes.
        async with pipeline(conn):
            await TicketDesk.send_links(conn, links, real, rows, point_reports)

    @staticmethod
    async def send_links(
        conn: psycopg.AsyncConnection[Any],
        links: list[tuple[int, int, bool]],
        real: dict[int, int],
        rows: Sequence[tuple[Any, ...]],
        point_reports: bool = True,
    ) -> None:
        """``link``'s statements, sent in the caller's pipeline."""
        reports = [r for r, _, _ in links]
        tickets = [real[ref] if ref < 0 else ref for _, ref, _ in links]
        attached = [(r, t) for (r, _, joined), t in zip(links, tickets, strict=True) if joined]
        if point_reports:
            await conn.execute(
                "UPDATE field_reports f SET ticket_id = v.t"
                " FROM unnest(%b::bigint[], %b::bigint[]) AS v(r, t) WHERE f.id = v.r",
                (reports, tickets),
            )
        if attached:
            await conn.execute(
                """WITH joined AS (
                     SELECT v.t AS ticket_id, count(*) AS n,
                            array_agg(v.r ORDER BY v.r) AS reports
                     FROM unnest(%b::bigint[], %b::bigint[]) AS v(r, t) GROUP BY v.t),
                   bumped AS (
                     UPDATE tickets t SET report_count = t.report_count + j.n,
                                          updated_at = now()
                     FROM joined j WHERE t.id = j.ticket_id RETURNING t.id, t.state, t.agency)
                   INSERT INTO ticket_events (ticket_id, at, actor, action, from_state,
                                              to_state, to_agency, note)
                   SELECT b.id, now(), 'router', 'attach_report', b.state, b.state, b.agency,
                          'duplicate reports attached: ' || array_to_string(j.reports, ', ')
                   FROM bumped b JOIN joined j ON j.ticket_id = b.id""",
                ([r for r, _ in attached], [t for _, t in attached]),
            )
        # The new tickets' notices are written here, from the planned rows; the tickets that
        # were there before are read back for theirs.
        fresh = new_notices(links, real, rows)
        await announce(conn, [message for _, message in sorted(fresh.items())])
        await notify(conn, sorted({t for t in tickets if t not in fresh}))


# The message of one ticket's change (over a ticket row ``t``), compact JSON; the live feeds
# send it as {"seq", "ticket", "agency", "state", "category", "reports"}.
NOTICE = """row_to_json((SELECT n FROM (SELECT t.id AS ticket, t.agency, t.state, t.category,
                                              t.report_count AS reports) AS n))::text"""
# Tickets changed together are announced in batches, ``{"tickets": [message, …]}``, one per this
# many bytes of messages (NOTIFY carries at most 8,000 bytes; a message is about a hundred),
# each batch numbered item by item (migration 0028): the hubs send each ticket on its own,
# under its own number. A batch of one is sent as its message.
BATCH_BYTES: Final = 6000
_NOTIFY = f"""WITH m AS MATERIALIZED (SELECT t.id, {NOTICE} AS m FROM tickets t
                                      WHERE t.id = ANY(%(ids)s::bigint[])),
runs AS (SELECT id, m, sum(octet_length(m) + 1) OVER (ORDER BY id) AS run FROM m)
SELECT CASE WHEN count(*) = 1 THEN ioc_announce(%(channel)s, min(m))
            ELSE ioc_announce_items(%(channel)s,
                                    '{{"tickets":[' || string_agg(m, ',' ORDER BY id) || ']}}',
                                    count(*)::int) END
FROM runs GROUP BY run / %(bytes)s"""
_NOTIFY_ONE = f"SELECT ioc_announce(%s, {NOTICE}) FROM tickets t WHERE t.id = %s"
# Messages written here (new tickets) are numbered and logged as NOTICE's are, in one statement:
# a batch of one item as its message.
_ANNOUNCE = """SELECT CASE WHEN b.n = 1 THEN ioc_announce(%(channel)s, b.p)
                           ELSE ioc_announce_items(%(channel)s, b.p, b.n) END
FROM unnest(%(payloads)b::text[], %(items)b::int4[]) AS b(p, n)"""
_message = msgspec.json.Encoder().encode


def new_notices(
    links: Sequence[tuple[int, int, bool]], real: dict[int, int], rows: Sequence[tuple[Any, ...]]
) -> dict[int, str]:
    """Ticket id -> NOTICE's message for each ticket of ``rows`` (planned by
    ``TicketDesk.plan``, state new), counting the reports of the batch that joined it."""
    joined = Counter(ref for _, ref, attached in links if attached and ref < 0)
    notices: dict[int, str] = {}
    for n, row in enumerate(rows, start=1):
        ticket = real[-n]
        notices[ticket] = _message(
            {
                "ticket": ticket,
                "agency": row[2],
                "state": "new",
                "category": row[1],
                "reports": 1 + joined[-n],
            }
        ).decode()
    return notices


async def announce(
    conn: psycopg.AsyncConnection[Any], messages: Sequence[str], batch_bytes: int = BATCH_BYTES
) -> None:
    """Log and send ticket messages (NOTICE's shape) as ``notify`` does: in batches of
    ``batch_bytes`` of messages, in the order given."""
    if not messages:
        return
    # As ``_NOTIFY``: a message goes in batch (running bytes of messages, commas counted) //
    # batch_bytes.
    groups: dict[int, list[str]] = {}
    run = 0
    for message in messages:
        run += len(message.encode()) + 1
        groups.setdefault(run // batch_bytes, []).append(message)
    payloads = [_batch(group) for group in groups.values()]
    items = [len(group) for group in groups.values()]
    await conn.execute(_ANNOUNCE, {"channel": CHANNEL, "payloads": payloads, "items": items})


def _batch(messages: list[str]) -> str:
    return messages[0] if len(messages) == 1 else '{"tickets":[' + ",".join(messages) + "]}"


async def notify(
    conn: psycopg.AsyncConnection[Any], ticket_ids: Sequence[int], batch_bytes: int = BATCH_BYTES
) -> None:
    """Tell listeners (live feeds, other processes) which tickets changed; sent on commit."""
    if len(ticket_ids) == 1:
        await conn.execute(_NOTIFY_ONE, (CHANNEL, ticket_ids[0]))
    elif ticket_ids:
        await conn.execute(
            _NOTIFY, {"channel": CHANNEL, "ids": list(ticket_ids), "bytes": batch_bytes}
        )
