"""The steps triage moves share: locking a ticket, history lines, restarting its clock,
re-routing a point, and the live notices."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg

from ioc.alerts.records import resolve_alerts
from ioc.deadlines import DeadlineBook
from ioc.routing.router import Decision, Router
from ioc.tickets.clock import set_clock
from ioc.tickets.opening import CHANNEL, notify
from ioc.tickets.queue import not_found

Conn = psycopg.AsyncConnection[Any]


async def lock(conn: Conn, ticket_id: int) -> dict[str, Any]:
    """The ticket's row, locked for this transaction; NotFound when there is none."""
    cur = await conn.execute(
        """SELECT id, state, agency, category, lon, lat, opened_at, deadline_at, report_id,
                  report_count FROM tickets WHERE id = %s FOR UPDATE""",
        (ticket_id,),
    )
    found = await cur.fetchone()
    if found is None:
        raise not_found(ticket_id)
    names = ("id", "state", "agency", "category", "lon", "lat", "opened_at", "deadline_at")
    return dict(zip((*names, "report_id", "report_count"), found, strict=True))


async def record(
    conn: Conn,
    ticket_id: int,
    now: datetime,
    actor: str,
    action: str,
    states: tuple[str | None, str],
    agencies: tuple[str | None, str | None],
    note: str,
) -> None:
    """One history line: who did what, from which state and agency to which, and why."""
    await conn.execute(
        """INSERT INTO ticket_events (ticket_id, at, actor, action, from_state, to_state,
                                      from_agency, to_agency, note)
           VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)""",
        (ticket_id, now, actor, action, *states, *agencies, note),
    )


async def restart_clock(
    conn: Conn, book: DeadlineBook, ticket_id: int, category: str, opened: datetime, now: datetime
) -> None:
    """Set the ticket's deadline to ``category``'s policy counted from ``opened``, and retire
    the alerts of the deadline it had."""
    plan = book.ticket_plan(category, opened)
    await conn.execute(
        """UPDATE tickets SET deadline_at = %(deadline)s, due_soon_at = %(soon)s,
             sla_unit = %(unit)s, sla_allowed_s = %(allowed)s, paused_at = NULL,
             resolved_at = NULL, resolution_working_s = NULL, sla_result = NULL
           WHERE id = %(id)s""",
        {
            "deadline": plan.deadline_at if plan else None,
            "soon": plan.due_soon_at if plan else None,
            "unit": plan.counting if plan else None,
            "allowed": plan.allowed_s if plan else None,
            "id": ticket_id,
        },
    )
    await set_clock(
        conn,
        ticket_id,
        {
            "sla_stage": "due_soon" if plan else None,
            "next_check_at": plan.due_soon_at if plan else None,
        },
    )
    await resolve_alerts(conn, "ticket", [str(ticket_id)], now, "deadline_moved", rule="deadline")


def route(router: Router, lon: float, lat: float, category: str, opened: datetime) -> Decision:
    """Where a point goes for ``category``, by the boundaries in force at ``opened``; outside
    every jurisdiction, the rule claiming the category anywhere (if one does)."""
    decision = router.route([lon], [lat], [category], [opened])[0]
    if decision.agency is None:
        decision = router.placeless(category) or decision
    return decision


async def notify_moved(conn: Conn, ticket_id: int, left: str | None, now_at: str | None) -> None:
    """Live notices: the ticket's own, and a departure for the agency it left (if any)."""
    await notify(conn, [ticket_id])
    if left is not None and left != now_at:
        await conn.execute(
            "SELECT ioc_announce(%s, json_build_object('ticket', t.id, 'agency', t.agency,"
            " 'state', t.state, 'category', t.category, 'reports', t.report_count,"
            " 'from_agency', %s::text)::text) FROM tickets t WHERE t.id = %s",
            (CHANNEL, left, ticket_id),
        )
