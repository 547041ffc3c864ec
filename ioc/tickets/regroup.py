"""Regrouping reports between tickets: merging a duplicate ticket into another, splitting a
wrongly grouped report back out, and listing a ticket's reports (never the reporter).

A ticket groups reports through ``field_reports.ticket_id``; ``tickets.report_id`` is the report
that opened it and ``report_count`` how many it holds. A merge moves every report of one ticket
onto another and ends the first as "rejected"; a split gives one report a ticket of its own: the
ticket it opened, brought back, if it was merged away; else a new ticket, routed for the report.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec
import psycopg
from psycopg.types.json import Jsonb

from ioc.auth import Principal
from ioc.deadlines import DeadlineBook
from ioc.errors import Conflict, NotFound
from ioc.params import bad
from ioc.routing.router import Router
from ioc.tickets.clock import on_action
from ioc.tickets.opening import notify
from ioc.tickets.queue import READERS, not_found, scope_of
from ioc.tickets.states import OPEN_STATES
from ioc.tickets.triage_steps import lock, record, restart_clock, route

Conn = psycopg.AsyncConnection[Any]


class Report(msgspec.Struct, kw_only=True):
    """One field report on a ticket, as operators and agencies see it (no reporter)."""

    id: int
    category: str
    description: str
    lon: float
    lat: float
    occurred_at: datetime
    address: str | None
    opened_ticket: bool  # the report that opened this ticket


class Reports(msgspec.Struct):
    ticket: int
    reports: list[Report]


async def reports_of(conn: Conn, who: Principal, ticket_id: int) -> Reports:
    """The reports grouped into a ticket, oldest first."""
    who.require(READERS)
    cur = await conn.execute("SELECT agency, report_id FROM tickets WHERE id = %s", (ticket_id,))
    row = await cur.fetchone()
    scope = scope_of(who)
    if row is None or (scope is not None and row[0] != scope):
        raise not_found(ticket_id)
    cur = await conn.execute(
        """SELECT id, category, description, lon, lat, occurred_at, address FROM field_reports
           WHERE ticket_id = %s ORDER BY occurred_at, id""",
        (ticket_id,),
    )
    return Reports(
        ticket_id,
        [
            Report(
                id=r[0],
                category=r[1],
                description=r[2],
                lon=r[3],
                lat=r[4],
                occurred_at=r[5],
                address=r[6],
                opened_ticket=r[0] == row[1],
            )
            for r in await cur.fetchall()
        ],
    )


async def merge(
    conn: Conn,
    row: dict[str, Any],
    into: int,
    reason: str,
    now: datetime,
    book: DeadlineBook,
    actor: str,
) -> int:
    """Move every report of the locked ticket ``row`` onto ticket ``into``; returns ``into``."""
    if into == row["id"]:
        raise bad("into", "a ticket cannot be merged into itself")
    try:
        target = await lock(conn, into)
    except NotFound:
        raise bad("into", f"there is no ticket {into}") from None
    if target["state"] not in OPEN_STATES:
        raise Conflict(
            f"ticket {into} is {target['state']!r}; a ticket can be merged only into an open one"
        )
    cur = await conn.execute(
        "UPDATE field_reports SET ticket_id = %s WHERE ticket_id = %s RETURNING id",
        (into, row["id"]),
    )
    moved = sorted(int(r[0]) for r in await cur.fetchall())
    await conn.execute(
        "UPDATE tickets SET report_count = report_count + %s, updated_at = %s WHERE id = %s",
        (len(moved), now, into),
    )
    await conn.execute(
        "UPDATE tickets SET state = 'rejected', closed_at = %s, updated_at = %s WHERE id = %s",
        (now, now, row["id"]),
    )
    listed = ", ".join(map(str, moved))
    await record(
        conn,
        row["id"],
        now,
        actor,
        "merge",
        (row["state"], "rejected"),
        (row["agency"], row["agency"]),
        f"merged into #{into} (reports {listed}): {reason}",
    )
    await record(
        conn,
        into,
        now,
        actor,
        "merge_in",
        (target["state"], target["state"]),
        (target["agency"], target["agency"]),
        f"#{row['id']} merged in (reports {listed}): {reason}",
    )
    await on_action(conn, book, row["id"], row["state"], "rejected", now)
    await notify(conn, [row["id"], into])
    return into


async def split(
    conn: Conn,
    row: dict[str, Any],
    report: int,
    reason: str,
    now: datetime,
    book: DeadlineBook,
    router: Router,
    actor: str,
) -> int:
    """Give ``report`` (on the locked ticket ``row``) a ticket of its own; returns its id."""
    cur = await conn.execute(
        """SELECT ticket_id, category, lon, lat, occurred_at FROM field_reports
           WHERE id = %s FOR UPDATE""",
        (report,),
    )
    found = await cur.fetchone()
    if found is None or found[0] != row["id"]:
        raise bad("report", f"report {report} is not on ticket {row['id']}")
    if report == row["report_id"]:
        raise Conflict(
            f"report {report} opened ticket {row['id']}; split out one of the others instead"
        )
    _, category, lon, lat, occurred = found
    cur = await conn.execute(
        "SELECT id, state, agency, category, opened_at FROM tickets WHERE report_id = %s"
        " FOR UPDATE",
        (report,),
    )
    own = await cur.fetchone()
    if own is not None:  # the report opened a ticket that was merged away: bring it back
        ticket, before, agency, category, occurred = own
        await conn.execute(
            """UPDATE tickets SET state = 'new', closed_at = NULL, assignee = NULL,
                 report_count = 1, updated_at = %s WHERE id = %s""",
            (now, ticket),
        )
        left: str | None = agency
    else:
        decision = route(router, lon, lat, category, occurred)
        cur = await conn.execute(
            """INSERT INTO tickets (report_id, category, state, agency, jurisdiction_code,
                 jurisdiction_level, routing, lon, lat, opened_at, updated_at)
               VALUES (%s, %s, 'new', %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id""",
            (
                report,
                category,
                decision.agency,
                decision.jurisdiction_code,
                decision.level,
                Jsonb(decision.why()),
                lon,
                lat,
                occurred,
                now,
            ),
        )
        created = await cur.fetchone()
        assert created is not None
        ticket, before, agency, left = int(created[0]), None, decision.agency, None
    await restart_clock(conn, book, ticket, category, occurred, now)
    await conn.execute("UPDATE field_reports SET ticket_id = %s WHERE id = %s", (ticket, report))
    await conn.execute(
        "UPDATE tickets SET report_count = report_count - 1, updated_at = %s WHERE id = %s",
        (now, row["id"]),
    )
    await record(
        conn,
        row["id"],
        now,
        actor,
        "split",
        (row["state"], row["state"]),
        (row["agency"], row["agency"]),
        f"report {report} split out into #{ticket}: {reason}",
    )
    await record(
        conn,
        ticket,
        now,
        actor,
        "split_from",
        (before, "new"),
        (left, agency),
        f"report {report} split out of #{row['id']}: {reason}",
    )
    await notify(conn, [row["id"], ticket])
    return int(ticket)
