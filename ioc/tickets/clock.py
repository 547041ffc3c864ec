"""A ticket's SLA clock, moved along by the actions taken on the ticket.

Called inside the transaction of the action (``ioc.tickets.actions.act``), after the ticket's state has
changed: the first action by a person is the first response; waiting for the citizen pauses
the clock; resuming keeps the time that was left; resolving stops it and records the result;
reopening starts a new clock; rejecting stops it without a result.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg

from ioc.alerts.records import resolve_alerts
from ioc.deadlines import DeadlineBook, pauses_of

Conn = psycopg.AsyncConnection[Any]

_STOPPING = frozenset({"resolved", "rejected", "closed"})
_CLOCK_COLUMNS = ("sla_stage", "next_check_at")  # in ticket_clocks (migration 0024)


async def set_clock(conn: Conn, ticket_id: int, columns: dict[str, Any]) -> None:
    """Set the ticket's engine clock (``sla_stage``: the next alert level due,
    ``next_check_at``: when to look next), the columns given; the others stay as they were."""
    names = [name for name in _CLOCK_COLUMNS if name in columns]
    updates = ", ".join(f"{name} = excluded.{name}" for name in names)
    await conn.execute(
        f"""INSERT INTO ticket_clocks (ticket_id, {", ".join(names)})
            VALUES (%(id)s, {", ".join(f"%({name})s" for name in names)})
            ON CONFLICT (ticket_id) DO UPDATE SET {updates}""",
        {**columns, "id": ticket_id},
    )


async def pauses(conn: Conn, ticket_id: int) -> list[tuple[datetime, datetime | None]]:
    """The spans the ticket spent waiting for the citizen, from its history."""
    cur = await conn.execute(
        "SELECT at, to_state = 'waiting' FROM ticket_events"
        " WHERE ticket_id = %s AND (to_state = 'waiting' OR from_state = 'waiting') ORDER BY id",
        (ticket_id,),
    )
    return pauses_of([(at, bool(waiting)) for at, waiting in await cur.fetchall()])


async def on_action(
    conn: Conn, book: DeadlineBook, ticket_id: int, from_state: str, to_state: str, now: datetime
) -> None:
    cur = await conn.execute(
        """SELECT opened_at, deadline_at, sla_unit, sla_allowed_s, paused_at, first_response_at,
                  category
           FROM tickets WHERE id = %s""",
        (ticket_id,),
    )
    row = await cur.fetchone()
    if row is None:
        return
    opened, deadline, counting, allowed, paused_at, first_response, category = row
    # The engine claims due clocks by their ticket_clocks row: wait for a tick holding this one.
    await conn.execute(
        "SELECT 1 FROM ticket_clocks WHERE ticket_id = %s FOR NO KEY UPDATE", (ticket_id,)
    )
    changes: dict[str, Any] = {"last_acted_at": now}
    if first_response is None:
        changes["first_response_at"] = now
        changes["response_working_s"] = book.office.between(opened, now)
    if to_state == "waiting" and from_state != "waiting":
        changes.update(paused_at=now, next_check_at=None)
    elif from_state == "waiting" and to_state not in _STOPPING and deadline is not None:
        new_deadline, due_soon = book.resumed(counting, allowed, deadline, paused_at or now, now)
        changes.update(
            paused_at=None,
            deadline_at=new_deadline,
            due_soon_at=due_soon,
            sla_stage="due_soon",
            next_check_at=due_soon,
        )
    elif from_state == "waiting":
        changes["paused_at"] = None
        if deadline is not None:  # finished while waiting: the pause still counts as paused
            deadline, _ = book.resumed(counting, allowed, deadline, paused_at or now, now)
    if to_state == "resolved":
        spans = [(a, b or now) for a, b in await pauses(conn, ticket_id)]
        changes.update(
            resolved_at=now,
            resolution_working_s=book.working_used(opened, now, spans),
            sla_result=None if deadline is None else book.result(now, deadline),
            sla_stage=None,
            next_check_at=None,
        )
    elif to_state in _STOPPING:
        changes.update(sla_stage=None, next_check_at=None)
    elif to_state == "reopened":
        plan = book.ticket_plan(category, now)
        changes.update(
            resolved_at=None,
            resolution_working_s=None,
            sla_result=None,
            deadline_at=plan.deadline_at if plan else None,
            due_soon_at=plan.due_soon_at if plan else None,
            sla_unit=plan.counting if plan else None,
            sla_allowed_s=plan.allowed_s if plan else None,
            sla_stage="due_soon" if plan else None,
            next_check_at=plan.due_soon_at if plan else None,
        )
    clock = {name: changes.pop(name) for name in _CLOCK_COLUMNS if name in changes}
    assignments = ", ".join(f"{name} = %({name})s" for name in changes)
    await conn.execute(
        f"UPDATE tickets SET {assignments} WHERE id = %(id)s",
        {**changes, "id": ticket_id},
    )
    if clock:
        await set_clock(conn, ticket_id, clock)
    moved = "deadline_at" in changes and (changes["deadline_at"] or now) > now
    if to_state in _STOPPING or moved:
        # The old deadline's alerts no longer stand: the work is done or the clock has moved.
        await resolve_alerts(
            conn,
            "ticket",
            [str(ticket_id)],
            now,
            "subject_closed" if to_state in _STOPPING else "deadline_moved",
            rule="deadline",
        )
